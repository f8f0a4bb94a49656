//! Whether a stream gets colours, decided in one place the way terminal tools agree on: never
//! with `NO_COLOR` set (non-empty) or `TERM=dumb` or `CLICOLOR=0`, always with `CLICOLOR_FORCE`,
//! else only on a terminal (anstream's rules, shared with clap's own help).

use anstream::{AutoStream, ColorChoice};

/// Whether stderr (progress, the live status) gets colours.
pub fn stderr_colored() -> bool {
    AutoStream::choice(&std::io::stderr()) != ColorChoice::Never
}

/// Whether stdout (the human summary, the scripts' report lines) gets colours.
pub fn stdout_colored() -> bool {
    AutoStream::choice(&std::io::stdout()) != ColorChoice::Never
}

/// `text` in the colour `ansi` (an SGR sequence such as `"\x1b[0;31m"`) when `colored`.
pub fn paint(colored: bool, ansi: &str, text: &str) -> String {
    if colored {
        format!("{ansi}{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
