//! The journal of a change in progress (`.ztd/journal.json`): which switch or rollback runs, and
//! each step's progress, written before and after every step, so an interrupted change can be
//! reported truthfully and then resumed or undone.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::stack::{Color, Stack};
use crate::state;

/// Which change moves the stack from one color to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// ztd-switch: to the new version.
    Switch,
    /// ztd-rollback: back to the previous version.
    Rollback,
}

impl Operation {
    /// `switch` or `rollback`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Switch => "switch",
            Operation::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A step of a change, as the journal names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JournalStepName {
    /// `prepare`: a rollback starts the previous color.
    Prepare,
    /// `proxy`: the front proxy is pointed at the new color.
    Proxy,
    /// `handover:<service>`: a singleton moves to the new color.
    Handover(String),
    /// `stop_old`: the rest of the old color stops.
    StopOld,
    /// `record`: the state files say the new color is active.
    Record,
}

impl JournalStepName {
    const HANDOVER: &'static str = "handover:";

    /// Whether the step moves the proxy or a singleton (what `--resume` weighs).
    pub fn moves_traffic(&self) -> bool {
        matches!(self, JournalStepName::Proxy | JournalStepName::Handover(_))
    }

    /// Whether the step comes after the proxy and the singletons moved.
    pub fn past_the_moves(&self) -> bool {
        matches!(self, JournalStepName::StopOld | JournalStepName::Record)
    }
}

impl fmt::Display for JournalStepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalStepName::Prepare => f.write_str("prepare"),
            JournalStepName::Proxy => f.write_str("proxy"),
            JournalStepName::Handover(service) => write!(f, "{}{service}", Self::HANDOVER),
            JournalStepName::StopOld => f.write_str("stop_old"),
            JournalStepName::Record => f.write_str("record"),
        }
    }
}

impl std::str::FromStr for JournalStepName {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "prepare" => Ok(JournalStepName::Prepare),
            "proxy" => Ok(JournalStepName::Proxy),
            "stop_old" => Ok(JournalStepName::StopOld),
            "record" => Ok(JournalStepName::Record),
            _ => match text.strip_prefix(Self::HANDOVER) {
                Some(service) if !service.is_empty() => {
                    Ok(JournalStepName::Handover(service.to_string()))
                }
                _ => Err(format!("unknown journal step {text:?}")),
            },
        }
    }
}

impl Serialize for JournalStepName {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JournalStepName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Begun, not known to be finished.
    Started,
    /// Finished.
    Done,
    /// Reverted after a later failure.
    Undone,
}

/// One step of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStep {
    /// `proxy`, `handover:<service>`, `stop_old`, `record`, `prepare`.
    pub name: JournalStepName,
    /// Its progress.
    pub state: StepState,
}

/// A change in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// `switch` or `rollback`.
    pub operation: Operation,
    /// The color that was active (none on a first deploy).
    pub from: Option<Color>,
    /// The color being switched to.
    pub to: Color,
    /// A stack being adopted (plain Compose project name), if the change adopts one.
    #[serde(default)]
    pub adopting: Option<String>,
    /// Set, on disk, before the first step of an undo: the change failed and is being put
    /// back, so `--resume` and `ztd-rollback` finish the undo, never the failed change.
    #[serde(default)]
    pub undoing: bool,
    /// The process that writes it.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The steps so far.
    pub steps: Vec<JournalStep>,
}

impl Journal {
    /// A new journal, written at once.
    pub fn begin(
        stack: &Stack,
        operation: Operation,
        from: Option<Color>,
        to: Color,
        adopting: Option<String>,
    ) -> Result<Journal> {
        let journal = Journal {
            operation,
            from,
            to,
            adopting,
            undoing: false,
            pid: std::process::id(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            steps: Vec::new(),
        };
        journal.save(stack)?;
        Ok(journal)
    }

    /// Record that a step begins.
    pub fn start(&mut self, stack: &Stack, name: JournalStepName) -> Result<()> {
        self.steps.push(JournalStep {
            name,
            state: StepState::Started,
        });
        self.save(stack)
    }

    /// Record that the last step with this name is done (or undone).
    pub fn mark(&mut self, stack: &Stack, name: &JournalStepName, state: StepState) -> Result<()> {
        if let Some(step) = self.steps.iter_mut().rev().find(|s| &s.name == name) {
            step.state = state;
        }
        self.save(stack)
    }

    /// Record, before anything is put back, that the change is being undone.
    pub fn begin_undo(&mut self, stack: &Stack) -> Result<()> {
        self.undoing = true;
        self.save(stack)
    }

    /// The last step that was started and is not known to be finished.
    pub fn unfinished(&self) -> Option<&JournalStep> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.state == StepState::Started)
    }

    fn save(&self, stack: &Stack) -> Result<()> {
        state::ensure_ztd_dir(stack)?;
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| Error::State(format!("journal: {e}")))?;
        state::write_atomic(&stack.journal_path(), &text, 0o600)
    }

    /// The change is over: remove the journal.
    pub fn finish(self, stack: &Stack) -> Result<()> {
        match std::fs::remove_file(stack.journal_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::State(format!(
                "{}: {e}",
                stack.journal_path().display()
            ))),
        }
    }
}

/// The journal on disk, if a change is in progress or was interrupted.
pub fn read(stack: &Stack) -> Result<Option<Journal>> {
    let path = stack.journal_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::State(format!("{} is not a valid journal: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::State(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_recorded_and_the_journal_removed_at_the_end() {
        let dir = std::env::temp_dir().join(format!("ztd-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let stack = Stack {
            dir: dir.clone(),
            name: "t".into(),
        };
        let mut journal = Journal::begin(
            &stack,
            Operation::Switch,
            Some(Color::Blue),
            Color::Green,
            None,
        )
        .expect("begin");
        journal
            .start(&stack, JournalStepName::Proxy)
            .expect("start");
        assert_eq!(
            read(&stack)
                .expect("read")
                .expect("some")
                .unfinished()
                .map(|s| s.name.clone()),
            Some(JournalStepName::Proxy)
        );
        journal
            .mark(&stack, &JournalStepName::Proxy, StepState::Done)
            .expect("mark");
        assert_eq!(
            read(&stack).expect("read").expect("some").unfinished(),
            None
        );
        journal.begin_undo(&stack).expect("undo");
        assert!(read(&stack).expect("read").expect("some").undoing);
        journal.finish(&stack).expect("finish");
        assert_eq!(read(&stack).expect("read"), None);
        std::fs::remove_dir_all(dir).ok();
    }

    /// A journal written by an earlier version, as it was on disk, loads and says the same.
    #[test]
    fn a_journal_from_an_earlier_version_loads() {
        let text = r#"{
  "operation": "rollback",
  "from": "blue",
  "to": "green",
  "adopting": null,
  "undoing": false,
  "pid": 4242,
  "started_at": "2026-11-29T10:00:00.000Z",
  "steps": [
    {"name": "prepare", "state": "done"},
    {"name": "proxy", "state": "done"},
    {"name": "handover:trading-bot", "state": "undone"},
    {"name": "stop_old", "state": "done"},
    {"name": "record", "state": "started"}
  ]
}"#;
        let journal: Journal = serde_json::from_str(text).expect("an old journal loads");
        assert_eq!(journal.operation, Operation::Rollback);
        let names: Vec<JournalStepName> = journal.steps.iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            [
                JournalStepName::Prepare,
                JournalStepName::Proxy,
                JournalStepName::Handover("trading-bot".into()),
                JournalStepName::StopOld,
                JournalStepName::Record,
            ]
        );
        let again: serde_json::Value = serde_json::to_value(&journal).expect("encode");
        let before: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(again, before, "written back the same");
        let old = r#"{"operation":"switch","from":null,"to":"green","pid":1,"started_at":"x","steps":[]}"#;
        let journal: Journal =
            serde_json::from_str(old).expect("older still: no adopting, no undoing");
        assert_eq!(journal.operation, Operation::Switch);
        assert!(serde_json::from_str::<JournalStepName>("\"handover:\"").is_err());
        assert!(serde_json::from_str::<JournalStepName>("\"sideways\"").is_err());
    }
}
