//! Reloading the upstream file: on SIGHUP, or when its modification time
//! or size changes (checked every `every`). A file that does not load is
//! refused with its error logged, and the running pool keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use upstream::policy::AnyPolicy;

use crate::affinity::StickyRule;
use crate::conf::{self, PolicyName, Upstream};
use crate::server::{Proxy, Rules};

/// What a loaded file asks of the proxy: the policy (`chosen` overriding
/// the file's method) and the rules. A `sticky learn` directive equal to
/// the one in `previous` keeps its sessions.
///
/// # Errors
///
/// A key or sticky variable the proxy cannot evaluate, or a sticky
/// attribute the crate refuses; the message names the file.
pub fn plan(
    upstream: &Upstream,
    path: &Path,
    chosen: Option<PolicyName>,
    previous: Option<&Rules>,
) -> Result<(AnyPolicy, Rules), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let policy = conf::policy_for(&upstream.method, chosen);
    let key = conf::key_spec(&upstream.method, chosen).map_err(at)?;
    let previous = previous.and_then(|rules| rules.sticky.as_ref());
    let sticky = upstream
        .sticky
        .as_ref()
        .map(|directive| StickyRule::new(directive, previous))
        .transpose()
        .map_err(at)?;
    Ok((policy, Rules { key, sticky }))
}

/// Loads `path` and swaps it into `proxy`'s pool, with the `chosen` policy
/// if one was given on the command line.
///
/// # Errors
///
/// The file's error or the pool's refusal; the pool is unchanged then.
pub fn reload(
    proxy: &Proxy<AnyPolicy>,
    path: &Path,
    chosen: Option<PolicyName>,
) -> Result<(), String> {
    let upstream = conf::load(path)?;
    let (policy, rules) = plan(&upstream, path, chosen, Some(&proxy.rules()))?;
    proxy
        .reconfigure(policy, rules, upstream.backends)
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
    chosen: Option<PolicyName>,
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
        if let Err(e) = reload(&proxy, &path, chosen) {
            tracing::error!("reload refused ({cause}), the previous pool keeps serving: {e}");
        }
    }
}

/// What tells a changed file apart: its modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
