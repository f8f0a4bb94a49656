//! Detection: what is deployed, which color is active, and whether the state files and the
//! containers that actually run agree. Every tool that defaults to "the active color" uses it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{ContainerInfo, ContainerQuery, Engine};
use crate::error::{ExitStatus, Result};
use crate::journal::{self, Journal};
use crate::report::Outcome;
use crate::stack::{Color, Stack};
use crate::state::{self, LockHolder};

/// How far a color is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorStatus {
    /// No containers at all.
    Absent,
    /// Containers exist, none is up.
    Stopped,
    /// Some containers are up, some not.
    Partial,
    /// Every container is up.
    Running,
}

/// One color as found on the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColorView {
    /// Its Compose project.
    pub project: String,
    /// How far it is up.
    pub status: ColorStatus,
    /// Its containers.
    pub containers: Vec<ContainerInfo>,
}

impl ColorView {
    fn new(project: String, containers: Vec<ContainerInfo>) -> ColorView {
        let up = containers.iter().filter(|c| c.state.is_up()).count();
        let status = match (containers.len(), up) {
            (0, _) => ColorStatus::Absent,
            (_, 0) => ColorStatus::Stopped,
            (n, up) if up == n => ColorStatus::Running,
            _ => ColorStatus::Partial,
        };
        ColorView {
            project,
            status,
            containers,
        }
    }

    /// Whether any of its containers is up.
    pub fn is_up(&self) -> bool {
        matches!(self.status, ColorStatus::Partial | ColorStatus::Running)
    }
}

/// What the state files say.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recorded {
    /// `.current_deployment`.
    pub current_deployment: Option<Color>,
    /// `active` in `.ztd/state.json`.
    pub state: Option<Color>,
    /// `candidate` in `.ztd/state.json`: a color started by ztd-up, not yet switched to.
    pub candidate: Option<Color>,
    /// `previous` in `.ztd/state.json`.
    pub previous: Option<Color>,
}

/// The whole picture of a stack: `ztd-detect`'s report body (its envelope's `target` is
/// [`Detection::target`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    /// The active color, if any.
    pub active: Option<Color>,
    /// The other color, when one is active.
    pub standby: Option<Color>,
    /// What the state files say.
    pub recorded: Recorded,
    /// Each color as found.
    pub colors: BTreeMap<Color, ColorView>,
    /// Services shared by both colors.
    pub shared: Vec<ContainerInfo>,
    /// Containers of the stack run outside ztd (plain `docker compose up`, project `<name>`),
    /// to be adopted by the first deploy.
    pub legacy: Vec<ContainerInfo>,
    /// A switch or rollback in progress, or interrupted.
    pub journal: Option<Journal>,
    /// Whether that change was interrupted (its journal remains and nobody holds the lock).
    pub interrupted: bool,
    /// Where the state files and the running containers disagree.
    pub conflict: Option<String>,
    /// Who holds the deploy lock now.
    pub lock: Option<LockHolder>,
}

impl Detection {
    /// The view of one color.
    pub fn color(&self, color: Color) -> &ColorView {
        // Both colors are always inserted by `detect`.
        &self.colors[&color]
    }

    /// Where the next deploy goes: the standby, or green when nothing is deployed.
    pub fn target(&self) -> Color {
        self.standby.unwrap_or(Color::Green)
    }
}

impl Outcome for Detection {
    /// 0 when the picture is clear, 6 when a change was interrupted, 5 on a conflict.
    fn status(&self) -> ExitStatus {
        if self.interrupted {
            ExitStatus::Incomplete
        } else if self.conflict.is_some() {
            ExitStatus::StateOrConfig
        } else {
            ExitStatus::Success
        }
    }
}

/// Look at the state files and the engine and say what is deployed.
pub async fn detect<E: Engine>(engine: &E, stack: &Stack) -> Result<Detection> {
    let current = state::read_current_deployment(stack)?;
    let state_file = state::read_state(stack)?;
    let recorded = Recorded {
        current_deployment: current,
        state: state_file.as_ref().and_then(|s| s.active),
        candidate: state_file.as_ref().and_then(|s| s.candidate),
        previous: state_file.as_ref().and_then(|s| s.previous),
    };
    let blue_query = ContainerQuery::project(&stack.color_project(Color::Blue));
    let green_query = ContainerQuery::project(&stack.color_project(Color::Green));
    let shared_query = ContainerQuery::project(&stack.shared_project());
    let legacy_query = ContainerQuery::project(&stack.name);
    let (blue, green, shared, legacy) = futures_util::try_join!(
        engine.list(&blue_query),
        engine.list(&green_query),
        engine.list(&shared_query),
        engine.list(&legacy_query),
    )?;
    let journal = journal::read(stack)?;
    let lock = state::lock_holder(stack);
    let mut colors = BTreeMap::new();
    colors.insert(
        Color::Blue,
        ColorView::new(stack.color_project(Color::Blue), blue),
    );
    colors.insert(
        Color::Green,
        ColorView::new(stack.color_project(Color::Green), green),
    );
    let (active, mut conflict) = judge(&recorded, &colors);
    let legacy_up = legacy.iter().any(|c| c.state.is_up());
    if conflict.is_none() && legacy_up && active.is_some_and(|a| colors[&a].is_up()) {
        conflict = Some(format!(
            "the stack also runs outside ztd (Compose project {}) beside the active color",
            stack.name
        ));
    }
    let interrupted = journal.is_some() && lock.is_none();
    if journal.is_some() && lock.is_some() {
        // A switch or rollback in progress (a background stop, say): both sides run until it
        // is done; whoever takes the lock next looks again once it is.
        conflict = None;
    }
    Ok(Detection {
        active,
        standby: active.map(Color::other),
        recorded,
        colors,
        shared,
        legacy,
        journal,
        interrupted,
        conflict,
        lock,
    })
}

/// Decide the active color and any conflict from the records and the colors found.
fn judge(
    recorded: &Recorded,
    colors: &BTreeMap<Color, ColorView>,
) -> (Option<Color>, Option<String>) {
    let up = |c: Color| colors[&c].is_up();
    if let (Some(file), Some(state)) = (recorded.current_deployment, recorded.state)
        && file != state
    {
        return (
            Some(file),
            Some(format!(
                ".current_deployment says {file} but .ztd/state.json says {state}"
            )),
        );
    }
    match recorded.current_deployment.or(recorded.state) {
        Some(active) => {
            let other = active.other();
            let conflict = if colors[&active].status == ColorStatus::Absent {
                Some(format!(
                    "{active} is recorded as active but has no containers"
                ))
            } else if up(other) && recorded.candidate != Some(other) {
                if up(active) {
                    Some(format!(
                        "both colors run: {active} is recorded as active and {other} runs too, not as a deploy candidate"
                    ))
                } else {
                    Some(format!(
                        "{active} is recorded as active but only {other} runs"
                    ))
                }
            } else {
                None
            };
            (Some(active), conflict)
        }
        // Nothing recorded: a running color is adopted as active, unless it is the candidate
        // that ztd-up just started (the first deploy, before its switch).
        None => match (
            up(Color::Blue) && recorded.candidate != Some(Color::Blue),
            up(Color::Green) && recorded.candidate != Some(Color::Green),
        ) {
            (true, true) => (
                None,
                Some("both colors run and no state file says which is active".into()),
            ),
            (true, false) => (Some(Color::Blue), None),
            (false, true) => (Some(Color::Green), None),
            (false, false) => (None, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunState;
    use crate::fake::{FakeEngine, container};

    fn stack(tag: &str) -> Stack {
        let dir = std::env::temp_dir().join(format!("ztd-detect-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Stack {
            dir,
            name: "shop".into(),
        }
    }

    fn run(engine: &FakeEngine, stack: &Stack) -> Detection {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(detect(engine, stack)).expect("detect")
    }

    #[test]
    fn nothing_deployed_targets_green() {
        let s = stack("empty");
        let d = run(&FakeEngine::default(), &s);
        assert_eq!(
            (d.active, d.standby, d.target()),
            (None, None, Color::Green)
        );
        assert_eq!(d.conflict, None);
    }

    #[test]
    fn a_running_color_without_records_is_adopted_as_active() {
        let s = stack("adopt");
        let engine = FakeEngine::with(vec![container(
            "web-blue",
            "shop-blue",
            Color::Blue,
            RunState::Running,
        )]);
        let d = run(&engine, &s);
        assert_eq!((d.active, d.target()), (Some(Color::Blue), Color::Green));
        assert_eq!(d.color(Color::Blue).status, ColorStatus::Running);
        assert_eq!(d.conflict, None);
    }

    #[test]
    fn both_colors_running_without_a_candidate_is_a_conflict() {
        let s = stack("both");
        std::fs::write(s.current_deployment_path(), "green\n").expect("write");
        let engine = FakeEngine::with(vec![
            container("web-blue", "shop-blue", Color::Blue, RunState::Running),
            container("web-green", "shop-green", Color::Green, RunState::Running),
        ]);
        let d = run(&engine, &s);
        assert_eq!(d.active, Some(Color::Green));
        assert!(d.conflict.expect("conflict").contains("both colors run"));
    }

    #[test]
    fn a_recorded_candidate_may_run_beside_the_active_color() {
        let s = stack("cand");
        let st = state::StateFile {
            active: Some(Color::Green),
            candidate: Some(Color::Blue),
            ..Default::default()
        };
        state::write_state(&s, &st).expect("state");
        let engine = FakeEngine::with(vec![
            container("web-blue", "shop-blue", Color::Blue, RunState::Running),
            container("web-green", "shop-green", Color::Green, RunState::Running),
        ]);
        let d = run(&engine, &s);
        assert_eq!((d.active, d.target()), (Some(Color::Green), Color::Blue));
        assert_eq!(d.conflict, None);
    }

    #[test]
    fn the_candidate_of_a_first_deploy_is_not_active() {
        let s = stack("first");
        let st = state::StateFile {
            candidate: Some(Color::Green),
            ..Default::default()
        };
        state::write_state(&s, &st).expect("state");
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        let d = run(&engine, &s);
        assert_eq!((d.active, d.target()), (None, Color::Green));
        assert_eq!(d.conflict, None);
    }

    #[test]
    fn records_naming_a_color_without_containers_or_disagreeing_are_conflicts() {
        let s = stack("absent");
        std::fs::write(s.current_deployment_path(), "blue\n").expect("write");
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        let d = run(&engine, &s);
        assert!(d.conflict.expect("conflict").contains("no containers"));

        let st = state::StateFile {
            active: Some(Color::Green),
            ..Default::default()
        };
        state::write_state(&s, &st).expect("state");
        let d = run(&engine, &s);
        assert!(
            d.conflict
                .expect("conflict")
                .contains("state.json says green")
        );
    }

    #[test]
    fn a_stopped_active_color_is_reported_without_conflict() {
        let s = stack("stopped");
        std::fs::write(s.current_deployment_path(), "blue\n").expect("write");
        let engine = FakeEngine::with(vec![container(
            "web-blue",
            "shop-blue",
            Color::Blue,
            RunState::Exited,
        )]);
        let d = run(&engine, &s);
        assert_eq!(d.active, Some(Color::Blue));
        assert_eq!(d.color(Color::Blue).status, ColorStatus::Stopped);
        assert_eq!(d.conflict, None);
    }
}
