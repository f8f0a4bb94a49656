//! The journal of a change in progress (`.ztd/journal.json`): which switch or rollback runs, and
//! each step's progress, written before and after every step, so an interrupted change can be
//! reported truthfully and then resumed or undone.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stack::{Color, Stack};
use crate::state;

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
    /// `proxy`, `handover:<service>`, `stop_old`, `record`.
    pub name: String,
    /// Its progress.
    pub state: StepState,
}

/// A change in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// `switch` or `rollback`.
    pub operation: String,
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
        operation: &str,
        from: Option<Color>,
        to: Color,
        adopting: Option<String>,
    ) -> Result<Journal> {
        let journal = Journal {
            operation: operation.to_string(),
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
    pub fn start(&mut self, stack: &Stack, name: &str) -> Result<()> {
        self.steps.push(JournalStep {
            name: name.to_string(),
            state: StepState::Started,
        });
        self.save(stack)
    }

    /// Record that the last step with this name is done (or undone).
    pub fn mark(&mut self, stack: &Stack, name: &str, state: StepState) -> Result<()> {
        if let Some(step) = self.steps.iter_mut().rev().find(|s| s.name == name) {
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
        let mut journal =
            Journal::begin(&stack, "switch", Some(Color::Blue), Color::Green, None).expect("begin");
        journal.start(&stack, "proxy").expect("start");
        assert_eq!(
            read(&stack)
                .expect("read")
                .expect("some")
                .unfinished()
                .map(|s| s.name.as_str()),
            Some("proxy")
        );
        journal
            .mark(&stack, "proxy", StepState::Done)
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
}
