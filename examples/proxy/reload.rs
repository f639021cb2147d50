//! Reloading the upstream file: on SIGHUP, or when its modification time
//! or size changes (checked every `every`). A file that does not load is
//! refused with its error logged, and the running pool keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use upstream::policy::AnyPolicy;

use crate::conf;
use crate::server::Proxy;

/// Loads `path` and swaps it into `proxy`'s pool.
///
/// # Errors
///
/// The file's error or the pool's refusal; the pool is unchanged then.
pub fn reload(proxy: &Proxy<AnyPolicy>, path: &Path) -> Result<(), String> {
    let upstream = conf::load(path)?;
    let policy = conf::policy_for(&upstream.method);
    let key = conf::key_spec(&upstream.method).map_err(|e| format!("{}: {e}", path.display()))?;
    proxy
        .reconfigure(policy, key, upstream.backends)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Watches `path` for changes and SIGHUP for ever, reloading `proxy`.
///
/// # Errors
///
/// The SIGHUP handler cannot be installed.
pub async fn watch(
    proxy: Arc<Proxy<AnyPolicy>>,
    path: PathBuf,
    every: Duration,
) -> std::io::Result<()> {
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
