//! Reports and printers: the envelope every tool's JSON object shares, the typed report a tool
//! hands to its printer, the upstream object read from stdin, and the printers themselves.
//!
//! The rule: an operation returns a typed report; only a printer turns it into text.

pub mod health;
pub mod live;
pub mod monitor;
pub mod output;
pub mod steps;
pub mod style;
pub mod summary;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, ExitStatus, Result};
use crate::stack::{Color, Stack};

/// The fields every tool's object starts with, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The tool that printed it (`ztd-health`).
    pub tool: String,
    /// The base Compose project name.
    pub project: String,
    /// The project directory (state lives there).
    pub project_dir: PathBuf,
    /// Whether the tool did what it was asked (exit 0).
    pub ok: bool,
    /// The color the next tool in a pipeline acts on, if any.
    pub target: Option<Color>,
}

/// What a tool's report says about its exit status: every body maps its outcome to exactly one.
pub trait Outcome {
    /// The exit status this result answers with.
    fn status(&self) -> ExitStatus;
}

/// A tool's report: the envelope, then the tool's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<B> {
    /// `tool, project, project_dir, ok, target`.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// The tool's own fields.
    #[serde(flatten)]
    pub body: B,
}

impl<B: Outcome> Report<B> {
    /// `tool`'s report on `stack`, handing `target` on; `ok` follows the body's outcome.
    pub fn new(tool: &str, stack: &Stack, target: Option<Color>, body: B) -> Report<B> {
        Report {
            envelope: Envelope {
                tool: tool.to_string(),
                project: stack.name.clone(),
                project_dir: stack.dir.clone(),
                ok: body.status() == ExitStatus::Success,
                target,
            },
            body,
        }
    }
}

impl<B: Outcome> Outcome for Report<B> {
    fn status(&self) -> ExitStatus {
        self.body.status()
    }
}

/// The object a tool prints when it stops on an error: `ok: false` plus the error, so a
/// downstream tool in a pipeline passes it on instead of acting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// The tool that failed.
    pub tool: String,
    /// The project, when it was known.
    pub project: Option<String>,
    /// Always false.
    pub ok: bool,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error inside an [`ErrorReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The error's kind (`state`, `engine_unreachable`, …).
    pub kind: String,
    /// The exit code the tool answered with.
    pub exit_code: u8,
    /// The one-line message also printed on stderr.
    pub message: String,
}

impl ErrorReport {
    /// The report of `err` in `tool`.
    pub fn new(tool: &str, project: Option<&str>, err: &Error) -> ErrorReport {
        ErrorReport {
            tool: tool.to_string(),
            project: project.map(str::to_string),
            ok: false,
            error: ErrorDetail {
                kind: err.kind().to_string(),
                exit_code: err.exit_status().code(),
                message: err.message().to_string(),
            },
        }
    }
}

impl Outcome for ErrorReport {
    fn status(&self) -> ExitStatus {
        ExitStatus::from_code(self.error.exit_code).unwrap_or(ExitStatus::Negative)
    }
}

/// The upstream tool's object read from stdin: the envelope's fields, typed, and the whole
/// object as it came, to be passed on unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Its `project`, if any.
    pub project: Option<String>,
    /// Its `project_dir`, if any.
    pub project_dir: Option<PathBuf>,
    /// Whether it failed (`ok: false`): its report is passed on and nothing is done.
    pub failed: bool,
    /// The color it hands on.
    pub target: Option<Color>,
    /// The object as read.
    pub object: Map<String, Value>,
}

impl Upstream {
    /// Parse what an upstream tool printed: one JSON object, or a JSON Lines stream whose last
    /// object counts. Empty means no upstream.
    pub fn parse(text: &str) -> Result<Option<Upstream>> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(value) => value,
            Err(_) => {
                let last = trimmed
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                serde_json::from_str(last).map_err(|e| {
                    Error::Usage(format!(
                        "stdin is not the JSON of a ztd tool ({e}); pass a color or redirect stdin from /dev/null"
                    ))
                })?
            }
        };
        let Value::Object(object) = value else {
            return Err(Error::Usage(
                "stdin is not the JSON object of a ztd tool; pass a color or redirect stdin from /dev/null".into(),
            ));
        };
        let text_field = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
        let target = match object.get("target") {
            None | Some(Value::Null) => None,
            Some(Value::String(color)) => Some(color.parse().map_err(|_| {
                Error::Usage(format!(
                    "upstream JSON has target {color:?}, expected blue or green"
                ))
            })?),
            Some(other) => {
                return Err(Error::Usage(format!(
                    "upstream JSON has target {other}, expected blue or green"
                )));
            }
        };
        Ok(Some(Upstream {
            project: text_field("project"),
            project_dir: text_field("project_dir").map(PathBuf::from),
            failed: object.get("ok") == Some(&Value::Bool(false)),
            target,
            object,
        }))
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.object.serialize(serializer)
    }
}

impl Outcome for Upstream {
    /// A failed upstream object passed on answers 1; one passed on in a pipeline, 0.
    fn status(&self) -> ExitStatus {
        if self.failed {
            ExitStatus::Negative
        } else {
            ExitStatus::Success
        }
    }
}

/// A report's short summary for a person at a terminal (stdout is a terminal and no `--json`).
pub trait Human {
    /// A few lines, each ending in a newline.
    fn human(&self) -> String;
}

/// What a tool hands back to the harness: the text its printer made, the summary for a person
/// at a terminal, and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    /// Written to stdout as it is (JSON, or a text mode's lines).
    pub text: String,
    /// Written instead on a terminal, when the report has a human summary.
    pub human: Option<String>,
    /// The exit status.
    pub status: ExitStatus,
}

impl Printed {
    /// A report as one line of JSON (its human summary on a terminal), with the exit status its
    /// outcome maps to.
    pub fn json<R: Serialize + Outcome + Human>(report: &R) -> Printed {
        Printed {
            text: json_line(report),
            human: Some(report.human()),
            status: report.status(),
        }
    }

    /// Text made by another printer (a text mode: the same on a terminal), with its status.
    pub fn text(text: String, status: ExitStatus) -> Printed {
        Printed {
            text,
            human: None,
            status,
        }
    }
}

/// One value as a line of JSON. The report types serialize infallibly (string keys, no
/// non-finite floats by construction); should one ever fail, the line says so as JSON.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_else(|e| {
        let detail = serde_json::to_string(&e.to_string()).unwrap_or_default();
        format!("{{\"ok\":false,\"error\":{{\"kind\":\"output\",\"message\":{detail}}}}}")
    });
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Body {
        healthy: bool,
    }

    impl Outcome for Body {
        fn status(&self) -> ExitStatus {
            if self.healthy {
                ExitStatus::Success
            } else {
                ExitStatus::Negative
            }
        }
    }

    impl Human for Report<Body> {
        fn human(&self) -> String {
            format!("healthy: {}\n", self.body.healthy)
        }
    }

    fn stack() -> Stack {
        Stack {
            dir: PathBuf::from("/srv/shop"),
            name: "shop".into(),
        }
    }

    #[test]
    fn a_report_prints_the_envelope_first_and_decodes_back() {
        let report = Report::new(
            "ztd-health",
            &stack(),
            Some(Color::Green),
            Body { healthy: false },
        );
        let printed = Printed::json(&report);
        assert_eq!(
            printed.text,
            "{\"tool\":\"ztd-health\",\"project\":\"shop\",\"project_dir\":\"/srv/shop\",\"ok\":false,\"target\":\"green\",\"healthy\":false}\n"
        );
        assert_eq!(printed.status, ExitStatus::Negative);
        assert_eq!(printed.human.as_deref(), Some("healthy: false\n"));
        let decoded: Report<Body> = serde_json::from_str(&printed.text).expect("decode");
        assert_eq!(decoded, report);
    }

    #[test]
    fn upstream_is_the_last_json_object_and_empty_means_none() {
        assert_eq!(Upstream::parse(""), Ok(None));
        assert_eq!(Upstream::parse("  \n"), Ok(None));
        let v =
            Upstream::parse("{\"a\":1}\n{\"target\":\"blue\",\"ok\":true,\"project\":\"shop\"}\n")
                .expect("parse")
                .expect("some");
        assert_eq!(v.target, Some(Color::Blue));
        assert_eq!(v.project.as_deref(), Some("shop"));
        assert!(!v.failed);
        assert!(matches!(Upstream::parse("not json"), Err(Error::Usage(_))));
        assert!(matches!(Upstream::parse("[1]"), Err(Error::Usage(_))));
        assert!(matches!(
            Upstream::parse("{\"target\":\"red\"}"),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            Upstream::parse("{\"target\":3}"),
            Err(Error::Usage(_))
        ));
        let failed = Upstream::parse("{\"ok\":false,\"z\":1,\"a\":2}")
            .expect("parse")
            .expect("some");
        assert!(failed.failed);
        // Passed on exactly as it came, keys in their order.
        assert_eq!(json_line(&failed), "{\"ok\":false,\"z\":1,\"a\":2}\n");
    }

    #[test]
    fn error_reports_carry_kind_and_code() {
        let report = ErrorReport::new("ztd-health", Some("shop"), &Error::State("bad".into()));
        assert_eq!(report.error.exit_code, 5);
        assert_eq!(report.error.kind, "state");
        assert_eq!(report.status(), ExitStatus::StateOrConfig);
        assert_eq!(
            json_line(&report),
            "{\"tool\":\"ztd-health\",\"project\":\"shop\",\"ok\":false,\"error\":{\"kind\":\"state\",\"exit_code\":5,\"message\":\"bad\"}}\n"
        );
    }
}
