//! The live one-line status a tool shows on a terminal while people wait for it (a health wait,
//! a watch window), redrawn in place on stderr and gone when the wait ends. Nothing is drawn
//! when stderr is not a terminal, on `TERM=dumb`, or with `--quiet`; progress lines printed
//! meanwhile appear above it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::output::{self, Level};

/// The status line being drawn, if any, so log lines can be printed above it.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A status line on stderr, cleared when dropped.
#[derive(Debug)]
pub struct StatusLine {
    bar: Option<ProgressBar>,
}

impl StatusLine {
    /// A status line, drawn only for a person at a terminal.
    pub fn start() -> StatusLine {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if !std::io::stderr().is_terminal() || dumb || !output::enabled(Level::Info) {
            return StatusLine { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = Some(bar.clone());
        }
        StatusLine { bar: Some(bar) }
    }

    /// Whether anything is drawn.
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// Show `text` as the status.
    pub fn set(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = None;
            }
            bar.finish_and_clear();
        }
    }
}

/// Run `write` (a line on stderr) with the status line, if any, lifted out of the way.
pub fn above_status(write: impl FnOnce()) {
    let bar = SHOWN.lock().ok().and_then(|shown| shown.clone());
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Whole seconds, as a person reads a countdown.
pub fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64().round())
}
