//! Ctrl-C and SIGTERM during a switch or a rollback: instead of dying mid-step, the tool notes
//! the signal, finishes the step it is in, puts the stack back in a consistent state (or leaves
//! it journaled), releases the lock and exits 130.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catch SIGINT and SIGTERM from now on (needs a running tokio runtime).
pub fn install() {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
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
