//! Reloading the upstream file: on SIGHUP, or when its modification time
//! or size changes (checked every `every`). A file that does not load is
//! refused with its error logged, and the running pool keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::conf::{self, FromMethod};
use crate::server::Proxy;

/// Loads `path` and swaps it into `proxy`'s pool.
///
/// # Errors
///
/// The file's error, a method the running policy type cannot take, or the
/// pool's refusal; the pool is unchanged then.
pub fn reload<P>(proxy: &Proxy<P>, path: &Path) -> Result<(), String>
where
    P: FromMethod,
    P::State: Send,
{
    let upstream = conf::load(path)?;
    let policy = P::from_method(&upstream.method).ok_or_else(|| {
        format!(
            "{}: the balancing method changed to '{}'; that needs a restart",
            path.display(),
            conf::method_text(&upstream.method)
        )
    })?;
    let key = conf::key_spec(&upstream.method)?;
    proxy
        .reconfigure(policy, key, upstream.backends)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Watches `path` for changes and SIGHUP for ever, reloading `proxy`.
///
/// # Errors
///
/// The SIGHUP handler cannot be installed.
pub async fn watch<P>(proxy: Arc<Proxy<P>>, path: PathBuf, every: Duration) -> std::io::Result<()>
where
    P: FromMethod,
    P::State: Send,
{
    let mut hangup = signal(SignalKind::hangup())?;
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(every);
    loop {
        let cause = tokio::select! {
            _ = tick.tick() => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
            _ = hangup.recv() => {
                seen = stamp(&path);
                "SIGHUP"
            }
        };
        if let Err(e) = reload(&proxy, &path) {
            tracing::error!("reload refused ({cause}), the previous pool keeps serving: {e}");
        }
    }
}

/// What tells a changed file apart: its modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
