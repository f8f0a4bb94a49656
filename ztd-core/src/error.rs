//! The one error type of ztd and its exhaustive mapping onto the exit codes of the contract.

use std::fmt;

/// Exit codes shared by every ztd tool (see the design's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done, healthy, stable.
    Success,
    /// A negative answer: unhealthy, tripped, refused or undone. The report is still printed.
    Negative,
    /// Usage or bad input.
    Usage,
    /// The Docker engine could not be reached.
    EngineUnreachable,
    /// The Docker engine refused or failed a request.
    EngineFailed,
    /// State or configuration problem.
    StateOrConfig,
    /// A change was left incomplete: resume or roll back.
    Incomplete,
    /// Another deploy holds the lock.
    Locked,
    /// Interrupted by a signal after leaving the state consistent or journaled.
    Interrupted,
}

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Negative => 1,
            ExitStatus::Usage => 2,
            ExitStatus::EngineUnreachable => 3,
            ExitStatus::EngineFailed => 4,
            ExitStatus::StateOrConfig => 5,
            ExitStatus::Incomplete => 6,
            ExitStatus::Locked => 7,
            ExitStatus::Interrupted => 130,
        }
    }

    /// The status a numeric exit code stands for, if it is one of ztd's.
    pub fn from_code(code: u8) -> Option<ExitStatus> {
        [
            ExitStatus::Success,
            ExitStatus::Negative,
            ExitStatus::Usage,
            ExitStatus::EngineUnreachable,
            ExitStatus::EngineFailed,
            ExitStatus::StateOrConfig,
            ExitStatus::Incomplete,
            ExitStatus::Locked,
            ExitStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.code() == code)
    }
}

/// Everything that can stop a ztd tool before it reaches an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A bad flag, color, duration or upstream object.
    Usage(String),
    /// No Docker engine answers at the configured address.
    EngineUnreachable(String),
    /// The engine answered but refused or failed the request.
    Engine(String),
    /// The engine does not know the named object (it may have just been removed).
    NotFound(String),
    /// A state file, compose file or `ztd.*` label is unreadable or contradictory.
    State(String),
    /// A change was started and not finished.
    Incomplete(String),
    /// Another process holds the deploy lock.
    Locked(String),
    /// Ctrl-C or SIGTERM.
    Interrupted(String),
}

/// The result type of ztd-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The exit status this error ends a tool with.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Usage(_) => ExitStatus::Usage,
            Error::EngineUnreachable(_) => ExitStatus::EngineUnreachable,
            Error::Engine(_) | Error::NotFound(_) => ExitStatus::EngineFailed,
            Error::State(_) => ExitStatus::StateOrConfig,
            Error::Incomplete(_) => ExitStatus::Incomplete,
            Error::Locked(_) => ExitStatus::Locked,
            Error::Interrupted(_) => ExitStatus::Interrupted,
        }
    }

    /// A short machine-readable name of the kind, used in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::EngineUnreachable(_) => "engine_unreachable",
            Error::Engine(_) => "engine",
            Error::NotFound(_) => "not_found",
            Error::State(_) => "state",
            Error::Incomplete(_) => "incomplete",
            Error::Locked(_) => "locked",
            Error::Interrupted(_) => "interrupted",
        }
    }

    /// The human message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Usage(m)
            | Error::EngineUnreachable(m)
            | Error::Engine(m)
            | Error::NotFound(m)
            | Error::State(m)
            | Error::Incomplete(m)
            | Error::Locked(m)
            | Error::Interrupted(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

impl From<bollard::errors::Error> for Error {
    fn from(err: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => Error::NotFound(one_line(&message)),
            B::DockerResponseServerError {
                status_code,
                message,
            } => Error::Engine(format!(
                "the Docker engine refused the request ({status_code}): {}",
                one_line(&message)
            )),
            B::IOError { .. }
            | B::HyperLegacyError { .. }
            | B::SocketNotFoundError(_)
            | B::RequestTimeoutError
            | B::HttpClientError { .. }
            | B::UnsupportedURISchemeError { .. } => Error::EngineUnreachable(format!(
                "cannot reach the Docker engine: {}",
                one_line(&err.to_string())
            )),
            other => Error::Engine(format!(
                "Docker engine request failed: {}",
                one_line(&other.to_string())
            )),
        }
    }
}

/// Collapse a possibly multi-line message into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_documented_code() {
        let cases = [
            (Error::Usage(String::new()), 2),
            (Error::EngineUnreachable(String::new()), 3),
            (Error::Engine(String::new()), 4),
            (Error::NotFound(String::new()), 4),
            (Error::State(String::new()), 5),
            (Error::Incomplete(String::new()), 6),
            (Error::Locked(String::new()), 7),
            (Error::Interrupted(String::new()), 130),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_status().code(), code, "{err:?}");
        }
    }

    #[test]
    fn engine_404_becomes_not_found_and_5xx_engine_failure() {
        let nf: Error = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        }
        .into();
        assert_eq!(nf, Error::NotFound("No such container: x".into()));
        let failed: Error = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom\nagain".into(),
        }
        .into();
        assert_eq!(failed.exit_status(), ExitStatus::EngineFailed);
        assert!(!failed.message().contains('\n'));
    }
}
