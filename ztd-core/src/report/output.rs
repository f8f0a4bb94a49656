//! Output: one JSON value on stdout for machines, human progress on stderr, filtered by
//! `DEPLOYMENT_LOG_LEVEL` and coloured only on a terminal without `NO_COLOR`.

use std::io::{ErrorKind, IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

/// Severity of a progress message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Details for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something is off but the run goes on.
    Warn,
    /// The run fails.
    Error,
}

impl Level {
    /// Parse `DEBUG`, `INFO`, `WARN`/`WARNING` or `ERROR`, in any case.
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" | "CRITICAL" => Some(Level::Error),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    fn ansi(self) -> &'static str {
        match self {
            Level::Debug => "\x1b[2m",
            Level::Info => "\x1b[0;34m",
            Level::Warn => "\x1b[1;33m",
            Level::Error => "\x1b[0;31m",
        }
    }
}

#[derive(Debug)]
struct Logger {
    tool: String,
    threshold: Level,
    color: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// How the person asked a tool to talk, from the flags every tool shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Voice {
    /// `-q`: nothing on stdout when the tool succeeds, only errors on stderr.
    pub quiet: bool,
    /// `-v`: debug progress on stderr.
    pub verbose: bool,
    /// `--json`: the JSON report even on a terminal.
    pub json: bool,
}

static VOICE: OnceLock<Voice> = OnceLock::new();

/// Record the voice the command line asked for (once, when it is parsed).
pub fn set_voice(voice: Voice) {
    let _ = VOICE.set(voice);
}

/// The voice asked for (the defaults when none was recorded).
pub fn voice() -> Voice {
    VOICE.get().copied().unwrap_or_default()
}

/// Whether stdout gets the human summary instead of JSON: a terminal, and no `--json`.
pub fn stdout_is_for_people() -> bool {
    !voice().json && std::io::stdout().is_terminal()
}

/// Set up stderr logging for a tool. Reads `DEPLOYMENT_LOG_LEVEL` (default INFO) and `NO_COLOR`.
/// Returns an error message when the level is not one ztd knows.
pub fn init(tool: &str) -> Result<(), Error> {
    init_at(tool, Level::Debug)
}

/// As `init`, showing nothing below `floor` whatever the environment says (for modes whose
/// stdout is the whole report).
pub fn init_at(tool: &str, floor: Level) -> Result<(), Error> {
    let (threshold, problem) = match std::env::var("DEPLOYMENT_LOG_LEVEL") {
        Ok(text) if !text.is_empty() => match Level::parse(&text) {
            Some(level) => (level, None),
            None => (
                Level::Info,
                Some(Error::Usage(format!(
                    "DEPLOYMENT_LOG_LEVEL={text:?} is not one of DEBUG, INFO, WARN, ERROR"
                ))),
            ),
        },
        _ => (Level::Info, None),
    };
    let voice = voice();
    let threshold = if voice.quiet {
        Level::Error
    } else if voice.verbose {
        Level::Debug
    } else {
        threshold.max(floor)
    };
    let color = crate::report::style::stderr_colored();
    let _ = LOGGER.set(Logger {
        tool: tool.to_string(),
        threshold,
        color,
    });
    problem.map_or(Ok(()), Err)
}

/// Whether messages of this level are shown.
pub fn enabled(level: Level) -> bool {
    LOGGER
        .get()
        .map_or(level >= Level::Info, |l| level >= l.threshold)
}

/// Write one progress line to stderr.
pub fn log(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    let (tool, color) = LOGGER
        .get()
        .map_or(("ztd", false), |l| (l.tool.as_str(), l.color));
    let line = if color {
        format!(
            "{}{}: {}{}\x1b[0m\n",
            level.ansi(),
            tool,
            level_prefix(level),
            message
        )
    } else {
        format!("{tool}: {}{message}\n", level_prefix(level))
    };
    crate::report::live::above_status(|| {
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
}

fn level_prefix(level: Level) -> String {
    match level {
        Level::Info => String::new(),
        other => format!("{}: ", other.label().to_lowercase()),
    }
}

/// Log at INFO.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::output::log($crate::output::Level::Info, &format!($($arg)*)) };
}
/// Log at WARN.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::output::log($crate::output::Level::Warn, &format!($($arg)*)) };
}
/// Log at DEBUG.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::output::log($crate::output::Level::Debug, &format!($($arg)*)) };
}

/// Set once a write to stdout found its reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Print text on stdout as it is. A closed pipe (`ztd-detect | head -c1`) is not an error worth
/// reporting: the text is dropped quietly and `stdout_closed` says so from then on (never a
/// panic: Rust ignores SIGPIPE, so `println!` would panic on it).
pub fn print_text(text: &str) {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && err.kind() == ErrorKind::BrokenPipe
    {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
    }
}

/// Whether stdout's reader has gone away (a stream has no one left to write to).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Write a line to stderr as it is, ignoring a closed stderr (`eprintln!` would panic).
pub fn print_error_line(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(Level::parse("info"), Some(Level::Info));
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("Debug"), Some(Level::Debug));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Debug < Level::Error);
    }
}
