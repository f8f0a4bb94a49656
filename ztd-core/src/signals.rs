//! Ctrl-C, SIGTERM and SIGHUP (a dropped ssh session) during a deploy, a switch or a rollback:
//! instead of dying mid-step, the tool notes the signal, finishes the step it is in, puts the
//! stack back in a consistent state (or leaves it journaled), releases the lock and exits 130.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catch SIGINT, SIGTERM and SIGHUP from now on (needs a running tokio runtime).
pub fn install() {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        if let Ok(mut stream) = signal(kind) {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
                        crate::warn!("interrupted: stopping after the current step");
                    }
                }
            });
        }
    }
}

/// Whether a signal asked us to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Error::Interrupted` (exit 130) when a signal asked us to stop; `what` says what was left
/// undone.
pub fn check(what: &str) -> Result<()> {
    if interrupted() {
        Err(Error::Interrupted(format!(
            "interrupted by a signal {what}"
        )))
    } else {
        Ok(())
    }
}
