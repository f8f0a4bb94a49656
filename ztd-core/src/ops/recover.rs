//! Recovery: resuming or undoing a switch that was killed (from its journal), rolling back to the
//! previous color (its kept containers, or new ones from the image ids recorded at its deploy),
//! all within `ROLLBACK_TIMEOUT`, and cleaning up a color that is not active.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compose::Compose;
use crate::detect::{self, ColorView, Detection};
use crate::engine::{ContainerInfo, ContainerQuery, Engine, RunState};
use crate::error::{Error, ExitStatus, Result};
use crate::health::{self, Target};
use crate::journal::{self, Journal, JournalStepName, Operation, StepState};
use crate::labels::SwitchMode;
use crate::proxy::{self, Proxy};
use crate::render::read_color_meta;
use crate::render::{self, DeployMeta};
use crate::report::Outcome;
use crate::report::steps::{StepDetail, Steps};
use crate::shared::attach_shared;
use crate::stack::{Color, Stack};
use crate::state::{self, DeployLock};
use crate::switch::{
    Move, MoveReport, Moved, Refusal, SwitchOptions, execute, port_holders, record_move,
    restore_restart_policy, retire, take_over_ports,
};
use crate::units::millis_since;
use crate::up::start_services;
use crate::{info, warn};

/// What `ztd-switch --resume` did: its report body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResumeOutcome {
    /// An interrupted change was finished or undone.
    Resolved(Resolved),
    /// No change was interrupted: nothing to do.
    NothingToResume(NothingToResume),
}

impl ResumeOutcome {
    /// The color handed on: the active one.
    pub fn target(&self) -> Option<Color> {
        match self {
            ResumeOutcome::Resolved(resolved) => resolved.active,
            ResumeOutcome::NothingToResume(nothing) => nothing.active,
        }
    }
}

impl Outcome for ResumeOutcome {
    /// 0: exactly one color is active (a resume that cannot get there fails with an error).
    fn status(&self) -> ExitStatus {
        ExitStatus::Success
    }
}

/// An interrupted change brought to an end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// Always true.
    pub resumed: bool,
    /// The change that was interrupted.
    pub operation: Operation,
    /// Finished or undone.
    pub resolution: Resolution,
    /// The step it was interrupted at (`after <step>`, or `before its first step`).
    pub interrupted_at: String,
    /// The color it moved from.
    pub from: Option<Color>,
    /// The color it moved to.
    pub to: Color,
    /// The color active now.
    pub active: Option<Color>,
    /// What recovery did, timed.
    pub steps: Steps,
    /// The whole run.
    pub duration_ms: f64,
}

/// A resume with nothing to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NothingToResume {
    /// Always false.
    pub resumed: bool,
    /// Why nothing was done.
    pub reason: String,
    /// The active color.
    pub active: Option<Color>,
}

/// What `ztd-rollback` did: its report body.
///
/// Decoded from JSON, a rollback that was undone reads as `Undone` whether or not a signal
/// caused it (the exit status, 130, is what tells `Interrupted` apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, from = "RollbackWire")]
pub enum RollbackOutcome {
    /// The previous color is active again.
    RolledBack(MoveReport),
    /// The flip back failed and everything was put back.
    Undone(MoveReport),
    /// A signal stopped it and everything was put back.
    Interrupted(MoveReport),
    /// An interrupted switch or rollback was undone (or, with nothing to go back to, finished).
    Resolved(Resolved),
    /// A deploy candidate never switched to was stopped.
    Abandoned(Abandoned),
    /// The previous color does not come back healthy: nothing changed.
    Refused(Refusal),
    /// There is nothing to roll back to: nothing changed.
    NothingToRollBack(NothingToRollBack),
    /// `ROLLBACK_TIMEOUT` was reached: left part-way, journaled.
    TimedOut(TimedOut),
}

/// The shapes of a rollback report on the wire, told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RollbackWire {
    TimedOut(TimedOut),
    Moved(MoveReport),
    Resolved(Resolved),
    Abandoned(Abandoned),
    Refused(Refusal),
    NothingToRollBack(NothingToRollBack),
}

impl From<RollbackWire> for RollbackOutcome {
    fn from(wire: RollbackWire) -> Self {
        match wire {
            RollbackWire::TimedOut(t) => RollbackOutcome::TimedOut(t),
            RollbackWire::Moved(report) => Moved::read(report).into(),
            RollbackWire::Resolved(r) => RollbackOutcome::Resolved(r),
            RollbackWire::Abandoned(a) => RollbackOutcome::Abandoned(a),
            RollbackWire::Refused(r) => RollbackOutcome::Refused(r),
            RollbackWire::NothingToRollBack(n) => RollbackOutcome::NothingToRollBack(n),
        }
    }
}

impl From<Moved> for RollbackOutcome {
    fn from(moved: Moved) -> Self {
        match moved {
            Moved::Done(report) => RollbackOutcome::RolledBack(report),
            Moved::Undone(report) => RollbackOutcome::Undone(report),
            Moved::Interrupted(report) => RollbackOutcome::Interrupted(report),
        }
    }
}

impl RollbackOutcome {
    /// The color handed on: the one rolled back to (also when undone or timed out), else the
    /// active one.
    pub fn target(&self) -> Option<Color> {
        match self {
            RollbackOutcome::RolledBack(report)
            | RollbackOutcome::Undone(report)
            | RollbackOutcome::Interrupted(report) => Some(report.to),
            RollbackOutcome::TimedOut(timed_out) => Some(timed_out.to),
            RollbackOutcome::Resolved(resolved) => resolved.active,
            RollbackOutcome::Abandoned(abandoned) => abandoned.active,
            RollbackOutcome::Refused(refusal) => refusal.active,
            RollbackOutcome::NothingToRollBack(nothing) => nothing.active,
        }
    }
}

impl Outcome for RollbackOutcome {
    /// 0 rolled back (or resolved, or a candidate stopped), 1 refused or undone, 6 timed out,
    /// 130 put back after a signal.
    fn status(&self) -> ExitStatus {
        match self {
            RollbackOutcome::RolledBack(_)
            | RollbackOutcome::Resolved(_)
            | RollbackOutcome::Abandoned(_) => ExitStatus::Success,
            RollbackOutcome::Undone(_)
            | RollbackOutcome::Refused(_)
            | RollbackOutcome::NothingToRollBack(_) => ExitStatus::Negative,
            RollbackOutcome::TimedOut(_) => ExitStatus::Incomplete,
            RollbackOutcome::Interrupted(_) => ExitStatus::Interrupted,
        }
    }
}

/// A deploy candidate that was never switched to, stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abandoned {
    /// The candidate's color.
    pub abandoned: Color,
    /// The containers stopped (kept for inspection).
    pub stopped: Vec<String>,
    /// The color still active.
    pub active: Option<Color>,
    /// The whole run.
    pub duration_ms: f64,
}

/// A rollback refused without looking further: no previous color, or it was cleaned up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NothingToRollBack {
    /// The color still active.
    pub active: Option<Color>,
    /// Why, in one line.
    pub refused: String,
}

/// A rollback stopped by its deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedOut {
    /// The color it was rolling back from.
    pub from: Color,
    /// The color it was rolling back to.
    pub to: Color,
    /// Always true.
    pub timed_out: bool,
    /// The deadline, in seconds.
    pub timeout_s: f64,
    /// The step it stopped at.
    pub stopped_at: String,
    /// The journal left for `--resume` or another rollback.
    pub journal: Option<Journal>,
    /// The whole run.
    pub duration_ms: f64,
}

/// What `ztd-rollback --cleanup` did: its report body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CleanupOutcome {
    /// The color's containers, networks and rendered file are gone.
    Removed(Removed),
    /// The color is the active one: nothing changed.
    Refused(CleanupRefusal),
}

impl CleanupOutcome {
    /// The color handed on: the active one.
    pub fn target(&self) -> Option<Color> {
        match self {
            CleanupOutcome::Removed(removed) => removed.active,
            CleanupOutcome::Refused(refusal) => refusal.active,
        }
    }
}

impl Outcome for CleanupOutcome {
    /// 0 removed; 2 when the color named is the active one, as every tool answers a color it
    /// cannot act on (ztd-up and ztd-switch naming the active color).
    fn status(&self) -> ExitStatus {
        match self {
            CleanupOutcome::Removed(_) => ExitStatus::Success,
            CleanupOutcome::Refused(_) => ExitStatus::Usage,
        }
    }
}

/// A color removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    /// The color.
    pub cleanup: Color,
    /// Its containers, by name.
    pub removed: Vec<String>,
    /// The active color.
    pub active: Option<Color>,
    /// The whole run.
    pub duration_ms: f64,
}

/// A cleanup refused: the color is the active one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupRefusal {
    /// The color.
    pub cleanup: Color,
    /// The active color.
    pub active: Option<Color>,
    /// Why, in one line.
    pub refused: String,
}

/// How an interrupted change was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Carried through to its target.
    Finished,
    /// Put back to the color it started from.
    Undone,
}

/// What a resumed move adds to its history line.
#[derive(Debug, serde::Serialize)]
struct ResumedDetail {
    resumed: bool,
}

/// The history line of a resumed change.
#[derive(Debug, serde::Serialize)]
struct ResumeEvent<'a> {
    operation: Operation,
    from: Option<Color>,
    to: Color,
    interrupted_at: &'a str,
    resolution: Resolution,
}

/// The history line of a rollback that reached its deadline.
#[derive(Debug, serde::Serialize)]
struct TimeoutEvent<'a> {
    from: Color,
    to: Color,
    at_step: &'a str,
}

/// The history line of a rollback that stopped a candidate never switched to.
#[derive(Debug, serde::Serialize)]
struct AbandonEvent {
    abandoned: Color,
    active: Option<Color>,
}

/// The history line of a cleanup.
#[derive(Debug, serde::Serialize)]
struct CleanupEvent<'a> {
    color: Color,
    removed: &'a [String],
}

/// Whether finishing an interrupted change is quicker than undoing it: finish once at least
/// half of its proxy and handover steps are done, or once it got past them; undo before that.
/// A first deploy or an adoption has nothing to go back to, so it is finished. A change that
/// was being undone when it was interrupted is always undone.
fn should_finish(journal: &Journal, to_meta: &DeployMeta) -> bool {
    if journal.undoing {
        return false;
    }
    if journal.from.is_none() {
        return true;
    }
    let past = journal.steps.iter().any(|s| s.name.past_the_moves());
    let total = usize::from(!to_meta.listeners.is_empty())
        + to_meta
            .services
            .iter()
            .filter(|s| s.mode == SwitchMode::Handover)
            .count();
    let done = journal
        .steps
        .iter()
        .filter(|s| s.state == StepState::Done && s.name.moves_traffic())
        .count();
    past || total == 0 || (done > 0 && done * 2 >= total)
}

/// `ztd-switch --resume`: finish or undo the change a journal records, whichever is quicker,
/// so that exactly one color is active with the proxy pointing at it.
pub async fn resume<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
) -> Result<ResumeOutcome> {
    let started = Instant::now();
    let _lock = DeployLock::acquire(stack, "ztd-switch --resume")?;
    let Some(journal) = journal::read(stack)? else {
        let detection = detect::detect(engine, stack).await?;
        return Ok(ResumeOutcome::NothingToResume(NothingToResume {
            resumed: false,
            reason: "no switch or rollback was interrupted".into(),
            active: detection.active,
        }));
    };
    let to_meta = read_color_meta(stack, journal.to)?.ok_or_else(|| {
        Error::State(format!(
            "the rendered file of {} is gone; cannot resume",
            journal.to
        ))
    })?;
    let resolution = if should_finish(&journal, &to_meta) {
        Resolution::Finished
    } else {
        Resolution::Undone
    };
    let resolved = resolve(engine, stack, opts, &journal, resolution, started).await?;
    Ok(ResumeOutcome::Resolved(resolved))
}

/// Bring a journaled change to `resolution` and record it. The lock must be held.
async fn resolve<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    journal: &Journal,
    resolution: Resolution,
    started: Instant,
) -> Result<Resolved> {
    let interrupted_at = interrupted_at(journal);
    let mut journal = journal.clone();
    info!(
        "the {} {} -> {} was interrupted at {interrupted_at}: {}",
        journal.operation,
        journal.from.map_or("nothing".into(), |c| c.to_string()),
        journal.to,
        if resolution == Resolution::Finished {
            "finishing it"
        } else {
            "undoing it"
        }
    );
    let mut steps = Steps::default();
    let (resolution, detection) =
        settle(engine, stack, opts, &mut journal, resolution, &mut steps).await?;
    record_resolution(stack, &journal, resolution, &detection, &interrupted_at)?;
    journal.clone().finish(stack)?;
    let active = match resolution {
        Resolution::Finished => Some(journal.to),
        Resolution::Undone => journal.from,
    };
    info!(
        "{} is active",
        active.map_or("nothing".into(), |c| c.to_string())
    );
    Ok(Resolved {
        resumed: true,
        operation: journal.operation,
        resolution,
        interrupted_at,
        from: journal.from,
        to: journal.to,
        active,
        steps,
        duration_ms: millis_since(started),
    })
}

/// Where a journaled change stopped: its unfinished step, `after <step>`, or `before its first
/// step`.
fn interrupted_at(journal: &Journal) -> String {
    journal
        .unfinished()
        .map(|s| s.name.to_string())
        .or_else(|| journal.steps.last().map(|s| format!("after {}", s.name)))
        .unwrap_or_else(|| "before its first step".into())
}

/// Converge on `resolution`; a change being finished whose singleton does not come up healthy
/// is undone instead (marked on disk first, like any undo). Returns the resolution reached and
/// the detection it acted on.
async fn settle<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    journal: &mut Journal,
    mut resolution: Resolution,
    steps: &mut Steps,
) -> Result<(Resolution, Detection)> {
    loop {
        let (keep, other) = match resolution {
            Resolution::Finished => (Some(journal.to), journal.from),
            Resolution::Undone => (journal.from, Some(journal.to)),
        };
        let detection = detect::detect(engine, stack).await?;
        let other_side: Vec<ContainerInfo> = match other {
            Some(color) => detection.color(color).containers.clone(),
            None => detection.legacy.clone(),
        };
        // Finishing stops the other side (kept for rollback). Undoing a switch leaves its
        // target running as the deploy candidate, as before the switch; undoing a rollback
        // stops the color it was bringing back, as it was before.
        let retire_other =
            resolution == Resolution::Finished || journal.operation == Operation::Rollback;
        let unhealthy = Converge::new(engine, stack, opts, &detection, keep, &other_side)?
            .run(retire_other, steps)
            .await?;
        if resolution == Resolution::Undone || unhealthy.is_empty() || journal.from.is_none() {
            return Ok((resolution, detection));
        }
        // The change would have been undone had it not been interrupted: undo it now.
        warn!(
            "{} is not healthy in {}: undoing the {} instead",
            unhealthy.join(", "),
            journal.to,
            journal.operation
        );
        journal.begin_undo(stack)?;
        resolution = Resolution::Undone;
    }
}

/// Record how a journaled change ended: the state files name the color now active (a finished
/// move is recorded as the move itself would have), and a `resume` line in the history.
fn record_resolution(
    stack: &Stack,
    journal: &Journal,
    resolution: Resolution,
    detection: &Detection,
    interrupted_at: &str,
) -> Result<()> {
    let operation = journal.operation;
    match (resolution, journal.from) {
        (Resolution::Undone, Some(from)) => {
            // The records may already name the target if the change was killed while writing
            // them.
            state::write_current_deployment(stack, from)?;
            state::update(stack, |record| {
                record.active = Some(from);
                record.candidate = (operation == Operation::Switch).then_some(journal.to);
            })?;
        }
        (Resolution::Undone, None) => {}
        (Resolution::Finished, _) => {
            let images: BTreeMap<String, String> = detection
                .color(journal.to)
                .containers
                .iter()
                .map(|c| (c.service.clone(), c.image_id.clone()))
                .collect();
            record_move(
                stack,
                operation,
                journal.from,
                journal.to,
                images,
                &ResumedDetail { resumed: true },
            )?;
        }
    }
    state::record_event(
        stack,
        "resume",
        &ResumeEvent {
            operation,
            from: journal.from,
            to: journal.to,
            interrupted_at,
            resolution,
        },
    )
}

/// Making one color the only active one whatever state a killed change left: its services run,
/// the proxy points at it, every singleton runs only there (the other side's stopped first),
/// and, when asked, the rest of the other side is stopped (kept). Every action checks the
/// current state first, so it can run again after being killed itself.
struct Converge<'a, E: Engine> {
    engine: &'a E,
    stack: &'a Stack,
    opts: &'a SwitchOptions,
    /// The color to keep active, if any.
    keep: Option<Color>,
    /// What was rendered for it.
    keep_meta: Option<DeployMeta>,
    /// Its containers.
    keep_containers: Vec<ContainerInfo>,
    /// Its singletons.
    handover_services: Vec<String>,
    /// The containers of the other side: the other color, or the stack being adopted.
    other_side: &'a [ContainerInfo],
}

impl<'a, E: Engine> Converge<'a, E> {
    fn new(
        engine: &'a E,
        stack: &'a Stack,
        opts: &'a SwitchOptions,
        detection: &Detection,
        keep: Option<Color>,
        other_side: &'a [ContainerInfo],
    ) -> Result<Self> {
        let keep_meta = match keep {
            Some(color) => read_color_meta(stack, color)?,
            None => None,
        };
        let keep_containers = keep
            .map(|c| detection.color(c).containers.clone())
            .unwrap_or_default();
        let handover_services = keep_meta
            .iter()
            .flat_map(|m| m.services.iter())
            .filter(|s| s.mode == SwitchMode::Handover)
            .map(|s| s.name.clone())
            .collect();
        Ok(Converge {
            engine,
            stack,
            opts,
            keep,
            keep_meta,
            keep_containers,
            handover_services,
            other_side,
        })
    }

    /// Converge, timing each step in `steps`; when `retire_other`, the rest of the other side
    /// is stopped too. Returns the singletons that did not come up healthy in the kept color.
    async fn run(&self, retire_other: bool, steps: &mut Steps) -> Result<Vec<String>> {
        self.start_services(steps).await?;
        self.point_proxy(steps).await?;
        self.retire_other_singletons(steps).await?;
        let unhealthy = self.run_kept_singletons(steps).await?;
        if retire_other {
            self.stop_other_side(steps).await?;
        }
        Ok(unhealthy)
    }

    fn is_handover(&self, container: &ContainerInfo) -> bool {
        self.handover_services.contains(&container.service)
            || container.settings_or_default().switch == SwitchMode::Handover
    }

    /// Step 1: the kept color's other services run.
    async fn start_services(&self, steps: &mut Steps) -> Result<()> {
        let started = Instant::now();
        let idle: Vec<&ContainerInfo> = self
            .keep_containers
            .iter()
            .filter(|c| !self.is_handover(c) && !c.state.is_up())
            .collect();
        let starts = idle
            .iter()
            .map(|c| start_kept(self.engine, c, self.keep_meta.as_ref()));
        for result in join_all(starts).await {
            result?;
        }
        steps.record(
            "services",
            started,
            true,
            StepDetail {
                started: Some(idle.len()),
                ..StepDetail::default()
            },
        );
        Ok(())
    }

    /// Step 2: the proxy, if there is one, points at the kept color (taking the ports over from an
    /// adopted stack if it has not yet).
    async fn point_proxy(&self, steps: &mut Steps) -> Result<()> {
        let proxy = Proxy::new(self.engine, self.stack);
        let Some(status) = proxy.status().await? else {
            return Ok(());
        };
        let started = Instant::now();
        if let Some(meta) = &self.keep_meta {
            proxy.connect(&proxy::networks_for(meta)).await?;
        }
        let listeners = match &self.keep_meta {
            Some(meta) if !meta.listeners.is_empty() => meta.listeners.clone(),
            // Nothing to serve: keep the ports the proxy has, answering that nothing is active.
            _ => read_color_meta(self.stack, self.keep.map_or(Color::Green, Color::other))?
                .map(|m| m.listeners)
                .unwrap_or_default(),
        };
        if status != RunState::Running {
            let holders = port_holders(&listeners, self.other_side);
            take_over_ports(
                self.engine,
                self.stack,
                self.opts,
                &listeners,
                self.keep,
                &holders,
            )
            .await?;
        }
        let routes = proxy::routes_to(&listeners, self.keep);
        proxy
            .point_to(
                &routes,
                self.keep,
                &BTreeMap::new(),
                self.opts.drain_timeout,
            )
            .await?;
        steps.record(
            "proxy",
            started,
            true,
            StepDetail {
                color: self.keep,
                ..StepDetail::default()
            },
        );
        Ok(())
    }

    /// Step 3a: each singleton of the other side stops first.
    async fn retire_other_singletons(&self, steps: &mut Steps) -> Result<()> {
        for container in self.other_side.iter().filter(|c| self.is_handover(c)) {
            let started = Instant::now();
            if let Some(current) = fresh(self.engine, container).await? {
                retire(self.engine, self.opts, &current).await?;
            }
            steps.record(
                &format!("retire:{}", container.name),
                started,
                true,
                StepDetail::default(),
            );
        }
        Ok(())
    }

    /// Step 3b: then each singleton of the kept color runs. Returns those that are not healthy.
    async fn run_kept_singletons(&self, steps: &mut Steps) -> Result<Vec<String>> {
        let mut unhealthy = Vec::new();
        for service in &self.handover_services {
            let Some(container) = self.keep_containers.iter().find(|c| &c.service == service)
            else {
                continue;
            };
            let started = Instant::now();
            if !self.run_kept_singleton(service, container).await? {
                unhealthy.push(service.clone());
            }
            let step = JournalStepName::Handover(service.clone());
            steps.record(&step.to_string(), started, true, StepDetail::default());
        }
        Ok(unhealthy)
    }

    /// Start (or activate) one kept singleton, wait for it, and give it its restart policy.
    /// Returns whether it is healthy.
    async fn run_kept_singleton(&self, service: &str, container: &ContainerInfo) -> Result<bool> {
        let (engine, opts) = (self.engine, self.opts);
        let current = fresh(engine, container)
            .await?
            .unwrap_or_else(|| container.clone());
        if !current.state.is_up() {
            engine.start(&current.id).await?;
        }
        let settings = current.settings()?;
        if let Some(activate) = &settings.activate {
            let out = engine
                .exec(&current.id, activate, opts.drain_timeout)
                .await?;
            if out.exit_code != Some(0) {
                warn!(
                    "{service}: ztd.activate in {} did not succeed: {}",
                    current.name,
                    out.output.trim()
                );
            }
        }
        let (Some(color), Some(meta)) = (self.keep, &self.keep_meta) else {
            return Ok(true);
        };
        let target = Target {
            stack: self.stack,
            color,
            active: true,
            service: Some(service),
        };
        let report = health::wait(engine, &target, &opts.policy, opts.health_deadline).await?;
        if !report.healthy() {
            warn!(
                "{service}: {} is not healthy: {}",
                current.name,
                report.summary_line()
            );
        }
        restore_restart_policy(engine, Some(meta), &current).await?;
        Ok(report.healthy())
    }

    /// Step 4: the rest of the other side stops (kept for rollback).
    async fn stop_other_side(&self, steps: &mut Steps) -> Result<()> {
        let started = Instant::now();
        let mut retired = 0;
        for container in self.other_side {
            if let Some(current) = fresh(self.engine, container).await?
                && current.state.is_up()
            {
                retire(self.engine, self.opts, &current).await?;
                retired += 1;
            }
        }
        steps.record(
            &JournalStepName::StopOld.to_string(),
            started,
            true,
            StepDetail {
                stopped: Some(retired),
                ..StepDetail::default()
            },
        );
        Ok(())
    }
}

/// The container as it is now, or `None` if it was removed.
async fn fresh<E: Engine>(engine: &E, container: &ContainerInfo) -> Result<Option<ContainerInfo>> {
    match engine.inspect(&container.id).await {
        Ok(info) => Ok(Some(info)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Start a kept container with the restart policy its deploy asked for.
async fn start_kept<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    meta: Option<&DeployMeta>,
) -> Result<()> {
    restore_restart_policy(engine, meta, container).await?;
    engine.start(&container.id).await
}

/// What `ztd-rollback` was asked to do.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The switch settings (timeouts, health).
    pub switch: SwitchOptions,
    /// The hard deadline of the whole rollback (`ROLLBACK_TIMEOUT`).
    pub timeout: Duration,
}

/// `ztd-rollback`: back to the previous color. Also undoes an interrupted switch, and stops a
/// deploy candidate that was never switched to.
pub async fn rollback<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &RollbackOptions,
) -> Result<RollbackOutcome> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Lock first, then look: nothing acts on a detection made before the lock was held.
    let lock = DeployLock::acquire(stack, "ztd-rollback")?;
    let detection = detect::detect(engine, stack).await?;
    if let Some(journal) = &detection.journal {
        let resolution = if journal.from.is_some() || journal.undoing {
            Resolution::Undone
        } else {
            Resolution::Finished
        };
        let resolved = resolve(engine, stack, &opts.switch, journal, resolution, started).await?;
        return Ok(RollbackOutcome::Resolved(resolved));
    }
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot roll back: {conflict}")));
    }
    let record = state::read_state(stack)?.unwrap_or_default();
    if let Some(candidate) = record.candidate.filter(|c| Some(*c) != detection.active) {
        let outcome =
            abandon_candidate(engine, stack, &opts.switch, &detection, candidate, started).await;
        drop(lock);
        return outcome;
    }
    let refuse = |reason: String| {
        warn!("{reason}");
        Ok(RollbackOutcome::NothingToRollBack(NothingToRollBack {
            active: detection.active,
            refused: reason,
        }))
    };
    let (Some(active), Some(previous)) = (detection.active, record.previous) else {
        return refuse("no previous deployment to roll back to".into());
    };
    let Some(previous_meta) = read_color_meta(stack, previous)? else {
        return refuse(format!(
            "{previous} was cleaned up: there is nothing to roll back to"
        ));
    };
    // Journaled before the first container of the previous color starts: a rollback killed
    // while preparing it is undone by --resume or another ztd-rollback.
    let mut journal = Journal::begin(stack, Operation::Rollback, Some(active), previous, None)?;
    journal.start(stack, JournalStepName::Prepare)?;
    let back = Back {
        active,
        previous,
        previous_meta,
        record,
        started,
        deadline,
    };
    let outcome = tokio::time::timeout_at(
        deadline,
        bring_back(engine, compose, stack, opts, &back, journal),
    )
    .await;
    drop(lock);
    match outcome {
        Ok(result) => result,
        Err(_) => timed_out(stack, opts, &back),
    }
}

/// The history line of a rollback to a retained version.
#[derive(Debug, serde::Serialize)]
struct ToVersionEvent<'a> {
    version: &'a str,
    from: Color,
    to: Color,
}

/// `ztd-rollback --to VERSION`: bring a retained version back as a blue-green deploy. The
/// standby color is taken down and rendered again from the version's saved files with its
/// images pinned to the recorded ids, started, health-gated, and moved to as a rollback is (the
/// proxy, the singletons' handover, the old color stopped and kept). The active version is a
/// usage error (exit 2), an unknown one a state error naming the retained ones (exit 5).
pub async fn rollback_to<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &RollbackOptions,
    version: &str,
) -> Result<RollbackOutcome> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Lock first, then look.
    let lock = DeployLock::acquire(stack, "ztd-rollback --to")?;
    let detection = detect::detect(engine, stack).await?;
    if detection.interrupted {
        return Err(Error::Incomplete(
            "a switch was interrupted: run ztd-switch --resume or ztd-rollback first".into(),
        ));
    }
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot roll back: {conflict}")));
    }
    let record = state::read_state(stack)?.unwrap_or_default();
    let Some(wanted) = record
        .versions
        .iter()
        .find(|v| v.version == version)
        .cloned()
    else {
        let kept: Vec<&str> = record.versions.iter().map(|v| v.version.as_str()).collect();
        let kept = if kept.is_empty() {
            "none".to_string()
        } else {
            kept.join(", ")
        };
        return Err(Error::State(format!(
            "no retained version {version:?}; retained: {kept}"
        )));
    };
    let Some(active) = detection.active else {
        return Err(Error::State(
            "nothing is active: there is nothing to roll back from".into(),
        ));
    };
    if crate::ops::versions::active_version(&record, Some(active)) == Some(version) {
        return Err(Error::Usage(format!(
            "{version} is the active version (in {active}): name another one"
        )));
    }
    let standby = active.other();
    info!("bringing {version} back in {standby}");
    let mut journal = Journal::begin(stack, Operation::Rollback, Some(active), standby, None)?;
    journal.start(stack, JournalStepName::Prepare)?;
    let staged = tokio::time::timeout_at(
        deadline,
        restage(engine, compose, stack, &detection, standby, &wanted),
    )
    .await
    .map_err(|_| {
        Error::Incomplete(format!(
            "ROLLBACK_TIMEOUT reached while rendering {version} in {standby}; run ztd-rollback"
        ))
    })?;
    let previous_meta = staged?;
    let record = state::update(stack, |record| {
        record.candidate = None;
        record.deployments.insert(
            standby,
            state::DeploymentRecord {
                version: Some(wanted.version.clone()),
                deployed_at: Some(wanted.deployed_at.clone()),
                images: wanted.images.clone(),
                digests: wanted.digests.clone(),
            },
        );
    })?;
    let back = Back {
        active,
        previous: standby,
        previous_meta,
        record,
        started,
        deadline,
    };
    let outcome = tokio::time::timeout_at(
        deadline,
        bring_back(engine, compose, stack, opts, &back, journal),
    )
    .await;
    let outcome = match outcome {
        Ok(result) => result?,
        Err(_) => timed_out(stack, opts, &back)?,
    };
    if matches!(outcome, RollbackOutcome::RolledBack(_)) {
        state::update(stack, |record| {
            if let Some(entry) = record.versions.iter_mut().find(|v| v.version == version) {
                entry.color = standby;
            }
        })?;
        state::record_event(
            stack,
            "rollback_to_version",
            &ToVersionEvent {
                version,
                from: active,
                to: standby,
            },
        )?;
    }
    drop(lock);
    Ok(outcome)
}

/// Take the standby color down (its containers and networks; volumes stay) and write its
/// rendered file again from a retained version, images pinned: the version's own rendered file
/// when it ran in that color, else a render of the Compose model saved at its deploy.
async fn restage<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    detection: &Detection,
    standby: Color,
    wanted: &crate::versions::VersionRecord,
) -> Result<DeployMeta> {
    let saved_path = crate::versions::rendered_path(stack, &wanted.version);
    let saved = std::fs::read_to_string(&saved_path)
        .map_err(|e| Error::State(format!("{}: {e}", saved_path.display())))?;
    let saved_meta = render::read_meta(&saved)?;
    if let Some(meta) = read_color_meta(stack, standby)? {
        detach_others(engine, stack, detection, &meta).await?;
    }
    compose_down(compose, stack, standby, detection.color(standby)).await?;
    let mut model = if wanted.color == standby {
        render::parse_rendered(&saved)?
    } else {
        let path = crate::versions::config_path(stack, &wanted.version);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let names = crate::up::choose_container_names(engine, stack, &config, standby).await?;
        let options = render::RenderOptions {
            env: crate::overrides::EnvSettings::from_env()?,
            container_names: names,
        };
        render::render_with(&config, stack, standby, &saved_meta.build, &options)?.color_model
    };
    pin_images(&mut model, &wanted.images, standby)?;
    let text = render::rendered_text(&model);
    state::write_atomic(
        &stack.rendered_compose_path(standby),
        text.as_bytes(),
        0o600,
    )?;
    render::read_meta(&text)
}

/// The rollback of the last switch: the color to leave, the one to bring back, and the clock.
#[derive(Debug)]
struct Back {
    /// The active color, rolled back from.
    active: Color,
    /// The previous color, rolled back to.
    previous: Color,
    /// What was rendered for it.
    previous_meta: DeployMeta,
    /// The state file as the rollback began.
    record: state::StateFile,
    /// When the rollback began.
    started: Instant,
    /// `ROLLBACK_TIMEOUT` from then.
    deadline: tokio::time::Instant,
}

/// Bring the previous color back (journaled, its `prepare` step started): make it run and wait
/// until it is healthy, then move to it as a switch does. One that does not come back healthy
/// is put back to rest and the rollback refused.
async fn bring_back<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &RollbackOptions,
    back: &Back,
    mut journal: Journal,
) -> Result<RollbackOutcome> {
    let (active, previous) = (back.active, back.previous);
    let prepared = async {
        prepare(engine, compose, stack, &back.previous_meta, &back.record).await?;
        let target = Target {
            stack,
            color: previous,
            active: false,
            service: None,
        };
        let remaining = back
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        health::wait(
            engine,
            &target,
            &opts.switch.policy,
            opts.switch.health_deadline.min(remaining),
        )
        .await
    }
    .await;
    if !prepared.as_ref().is_ok_and(|health| health.healthy()) {
        // Put the previous color back to rest: nothing changed.
        let detection = detect::detect(engine, stack).await?;
        for container in &detection.color(previous).containers {
            retire(engine, &opts.switch, container).await?;
        }
        journal.finish(stack)?;
        let health = prepared?;
        warn!(
            "rollback refused: {previous} does not come back healthy: {}",
            health.summary_line()
        );
        return Ok(RollbackOutcome::Refused(Refusal::unhealthy(
            Some(active),
            previous,
            "does not come back healthy",
            &health,
            back.started,
        )));
    }
    journal.mark(stack, &JournalStepName::Prepare, StepState::Done)?;
    let detection = detect::detect(engine, stack).await?;
    let plan = Move {
        operation: Operation::Rollback,
        from: Some(active),
        to: previous,
        to_meta: back.previous_meta.clone(),
        from_meta: read_color_meta(stack, active)?,
        old: detection.color(active).containers.clone(),
        new: detection.color(previous).containers.clone(),
        adopting: None,
    };
    let mut moved = execute(
        engine,
        stack,
        &opts.switch,
        plan,
        back.started,
        Some(journal),
    )
    .await?;
    if matches!(moved, Moved::Done(_)) {
        let hooks = crate::hooks::after_move(
            engine,
            Some(compose),
            stack,
            previous,
            &detection.color(previous).containers,
        )
        .await;
        let report = moved.report_mut();
        report.hooks = hooks;
        report.duration_ms = millis_since(back.started);
    }
    Ok(RollbackOutcome::from(moved))
}

/// A rollback stopped by `ROLLBACK_TIMEOUT`: say where, in the history too, and leave the
/// journal for `--resume` or another rollback (exit 6, as for any change left incomplete).
fn timed_out(stack: &Stack, opts: &RollbackOptions, back: &Back) -> Result<RollbackOutcome> {
    let journal = journal::read(stack)?;
    let where_ = journal
        .as_ref()
        .and_then(|j| j.unfinished().map(|s| s.name.to_string()))
        .unwrap_or_else(|| "while preparing the previous color".into());
    warn!(
        "ROLLBACK_TIMEOUT ({}s) reached at {where_}; run ztd-switch --resume or ztd-rollback again",
        opts.timeout.as_secs()
    );
    state::record_event(
        stack,
        "rollback_timeout",
        &TimeoutEvent {
            from: back.active,
            to: back.previous,
            at_step: &where_,
        },
    )?;
    Ok(RollbackOutcome::TimedOut(TimedOut {
        from: back.active,
        to: back.previous,
        timed_out: true,
        timeout_s: opts.timeout.as_secs_f64(),
        stopped_at: where_,
        journal,
        duration_ms: millis_since(back.started),
    }))
}

/// Stop a deploy candidate that was never switched to: the stack is as before the deploy.
async fn abandon_candidate<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    detection: &Detection,
    candidate: Color,
    started: Instant,
) -> Result<RollbackOutcome> {
    info!("{candidate} was deployed but never switched to: stopping it (kept for inspection)");
    let mut stopped = Vec::new();
    for container in &detection.color(candidate).containers {
        if container.state.is_up() {
            retire(engine, opts, container).await?;
            stopped.push(container.name.clone());
        }
    }
    state::update(stack, |record| record.candidate = None)?;
    state::record_event(
        stack,
        "rollback",
        &AbandonEvent {
            abandoned: candidate,
            active: detection.active,
        },
    )?;
    Ok(RollbackOutcome::Abandoned(Abandoned {
        abandoned: candidate,
        stopped,
        active: detection.active,
        duration_ms: millis_since(started),
    }))
}

/// Make the previous color runnable again: its kept containers, or, where they were removed,
/// new ones from the image ids recorded at its deploy; its services started (singletons wait for
/// the handover).
async fn prepare<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    meta: &DeployMeta,
    record: &state::StateFile,
) -> Result<()> {
    let path = stack.rendered_compose_path(meta.color);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    let mut model = render::parse_rendered(&text)?;
    let containers = engine.list(&ContainerQuery::project(&meta.project)).await?;
    let missing: Vec<&str> = meta
        .services
        .iter()
        .filter(|s| !containers.iter().any(|c| c.service == s.name))
        .map(|s| s.name.as_str())
        .collect();
    let file = if missing.is_empty() {
        path
    } else {
        info!(
            "{}: recreating {} from the images recorded at its deploy",
            meta.color,
            missing.join(", ")
        );
        let images = record
            .deployments
            .get(&meta.color)
            .map(|d| d.images.clone())
            .unwrap_or_default();
        pin_images(&mut model, &images, meta.color)?;
        let file = stack.ztd_dir().join(format!("rollback-{}.yml", meta.color));
        state::write_atomic(&file, render::rendered_text(&model).as_bytes(), 0o600)?;
        compose
            .run(
                stack,
                &meta.project,
                &file,
                &["up", "--no-start", "--remove-orphans"],
            )
            .await?;
        attach_shared(engine, stack, meta).await?;
        file
    };
    let proxy = Proxy::new(engine, stack);
    if proxy.status().await?.is_some() {
        proxy.connect(&proxy::networks_for(meta)).await?;
    }
    let containers = engine.list(&ContainerQuery::project(&meta.project)).await?;
    for service in meta
        .services
        .iter()
        .filter(|s| s.mode != SwitchMode::Handover)
    {
        if let Some(container) = containers.iter().find(|c| c.service == service.name) {
            restore_restart_policy(engine, Some(meta), container).await?;
        }
    }
    let starting: Vec<&str> = meta
        .services
        .iter()
        .filter(|s| s.mode != SwitchMode::Handover)
        .filter(|s| {
            containers
                .iter()
                .any(|c| c.service == s.name && !c.state.is_up())
        })
        .map(|s| s.name.as_str())
        .collect();
    if !starting.is_empty() {
        start_services(engine, compose, stack, &file, meta, &model, &starting).await?;
    }
    Ok(())
}

/// Disconnect the containers of other projects (the shared services, the proxy) from a color's
/// networks: attached, they would keep the networks alive.
async fn detach_others<E: Engine>(
    engine: &E,
    stack: &Stack,
    detection: &Detection,
    meta: &DeployMeta,
) -> Result<()> {
    let mut attached: Vec<String> = detection.shared.iter().map(|c| c.id.clone()).collect();
    attached.push(stack.proxy_container());
    for network in meta.networks.values() {
        for container in &attached {
            engine.disconnect(network, container).await?;
        }
    }
    Ok(())
}

/// `docker compose down` a color's project: its containers and networks. Compose finds a
/// project's containers by label: without the rendered file, a file that only names the project
/// is enough.
async fn compose_down(
    compose: &Compose,
    stack: &Stack,
    color: Color,
    view: &ColorView,
) -> Result<()> {
    let path = stack.rendered_compose_path(color);
    let empty = stack.ztd_dir().join("empty-compose.yml");
    let file = if path.exists() {
        path
    } else if !view.containers.is_empty() {
        state::write_atomic(
            &empty,
            format!("name: {}\nservices: {{}}\n", view.project).as_bytes(),
            0o644,
        )?;
        empty.clone()
    } else {
        return Ok(());
    };
    let down = compose
        .run(
            stack,
            &view.project,
            &file,
            &["down", "--remove-orphans", "--timeout", "10"],
        )
        .await;
    let _ = std::fs::remove_file(&empty);
    down
}

/// Point every service of a rendered Compose model at the image id recorded at its deploy
/// (`images`, by service), never built nor pulled again.
fn pin_images(model: &mut Value, images: &BTreeMap<String, String>, color: Color) -> Result<()> {
    let Some(services) = model.get_mut("services").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for (name, service) in services.iter_mut() {
        let id = images.get(name).ok_or_else(|| {
            Error::State(format!(
                "no image id was recorded for {name} in {color}; cannot recreate it"
            ))
        })?;
        service["image"] = Value::from(id.clone());
        if let Some(fields) = service.as_object_mut() {
            fields.remove("build");
            fields.insert("pull_policy".into(), Value::from("never"));
        }
    }
    Ok(())
}

/// `ztd-rollback --cleanup COLOR`: remove a color that is not active: its containers, networks
/// and rendered file. The active color is refused.
pub async fn cleanup<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    color: Color,
) -> Result<CleanupOutcome> {
    let started = Instant::now();
    // Lock first, then look: the color that became active meanwhile is never removed.
    let _lock = DeployLock::acquire(stack, "ztd-rollback --cleanup")?;
    let detection = detect::detect(engine, stack).await?;
    if detection.interrupted {
        return Err(Error::Incomplete(
            "a switch was interrupted: run ztd-switch --resume or ztd-rollback first".into(),
        ));
    }
    if detection.active == Some(color) {
        warn!("refusing to clean up {color}: it is the active color");
        return Ok(CleanupOutcome::Refused(CleanupRefusal {
            cleanup: color,
            active: detection.active,
            refused: format!("{color} is the active color"),
        }));
    }
    let view = detection.color(color);
    if let Some(meta) = read_color_meta(stack, color)? {
        detach_others(engine, stack, &detection, &meta).await?;
    }
    let removed: Vec<String> = view.containers.iter().map(|c| c.name.clone()).collect();
    compose_down(compose, stack, color, view).await?;
    for file in [
        stack.rendered_compose_path(color),
        stack.ztd_dir().join(format!("rollback-{color}.yml")),
    ] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::State(format!("{}: {e}", file.display()))),
        }
    }
    state::update(stack, |record| {
        record.deployments.remove(&color);
        if record.previous == Some(color) {
            record.previous = None;
        }
        if record.candidate == Some(color) {
            record.candidate = None;
        }
    })?;
    state::record_event(
        stack,
        "cleanup",
        &CleanupEvent {
            color,
            removed: &removed,
        },
    )?;
    info!("{color} removed ({} containers)", removed.len());
    Ok(CleanupOutcome::Removed(Removed {
        cleanup: color,
        removed,
        active: detection.active,
        duration_ms: millis_since(started),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::report::{Report, json_line};

    fn stack() -> Stack {
        Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        }
    }

    fn keys(line: &str) -> Vec<String> {
        let object: Map<String, Value> = serde_json::from_str(line).expect("object");
        object.keys().cloned().collect()
    }

    const ENVELOPE: [&str; 5] = ["tool", "project", "project_dir", "ok", "target"];

    /// The rollback report of `outcome`: its line, and the outcome decoded back from it.
    fn rollback_line(outcome: RollbackOutcome) -> (String, RollbackOutcome) {
        let report = Report::new("ztd-rollback", &stack(), outcome.target(), outcome);
        let line = json_line(&report);
        let decoded: Report<RollbackOutcome> = serde_json::from_str(&line).expect("decode");
        assert_eq!(decoded.envelope, report.envelope);
        (line, decoded.body)
    }

    fn resolved() -> Resolved {
        Resolved {
            resumed: true,
            operation: Operation::Switch,
            resolution: Resolution::Undone,
            interrupted_at: "handover:bot".into(),
            from: Some(Color::Green),
            to: Color::Blue,
            active: Some(Color::Green),
            steps: Steps::default(),
            duration_ms: 900.0,
        }
    }

    /// A rollback outcome, the fields its report has after the envelope, its exit status and
    /// the target it hands on.
    type Case = (
        RollbackOutcome,
        Vec<&'static str>,
        ExitStatus,
        Option<Color>,
    );

    /// The rollbacks that moved: rolled back, and undone.
    fn move_cases() -> Vec<Case> {
        let moved = MoveReport {
            from: Some(Color::Blue),
            to: Color::Green,
            active: Some(Color::Green),
            adopted: None,
            undone: None,
            version: "green-20261126-031141".into(),
            steps: Steps::default(),
            proxy: None,
            ports_gap_ms: None,
            handovers: Vec::new(),
            hooks: Vec::new(),
            background_stop: None,
            duration_ms: 1500.0,
        };
        let move_fields = vec![
            "from",
            "to",
            "active",
            "adopted",
            "undone",
            "version",
            "steps",
            "proxy",
            "ports_gap_ms",
            "handovers",
            "duration_ms",
        ];
        let undone = MoveReport {
            active: Some(Color::Blue),
            undone: Some("bot: failed".into()),
            ..moved.clone()
        };
        vec![
            (
                RollbackOutcome::RolledBack(moved),
                move_fields.clone(),
                ExitStatus::Success,
                Some(Color::Green),
            ),
            (
                RollbackOutcome::Undone(undone),
                move_fields,
                ExitStatus::Negative,
                Some(Color::Green),
            ),
        ]
    }

    /// The rollbacks that did not move.
    fn other_cases() -> Vec<Case> {
        vec![
            (
                RollbackOutcome::Resolved(resolved()),
                vec![
                    "resumed",
                    "operation",
                    "resolution",
                    "interrupted_at",
                    "from",
                    "to",
                    "active",
                    "steps",
                    "duration_ms",
                ],
                ExitStatus::Success,
                Some(Color::Green),
            ),
            (
                RollbackOutcome::Abandoned(Abandoned {
                    abandoned: Color::Blue,
                    stopped: vec!["web-blue".into()],
                    active: Some(Color::Green),
                    duration_ms: 10.0,
                }),
                vec!["abandoned", "stopped", "active", "duration_ms"],
                ExitStatus::Success,
                Some(Color::Green),
            ),
            (
                RollbackOutcome::NothingToRollBack(NothingToRollBack {
                    active: Some(Color::Green),
                    refused: "no previous deployment to roll back to".into(),
                }),
                vec!["active", "refused"],
                ExitStatus::Negative,
                Some(Color::Green),
            ),
            (
                RollbackOutcome::Refused(Refusal {
                    from: Some(Color::Blue),
                    to: Color::Green,
                    active: Some(Color::Blue),
                    refused: "green does not come back healthy: green: no containers".into(),
                    health: crate::health::HealthReport::new(
                        Color::Green,
                        Vec::new(),
                        Some("no containers".into()),
                    ),
                    hooks: Vec::new(),
                    duration_ms: 5.0,
                }),
                vec!["from", "to", "active", "refused", "health", "duration_ms"],
                ExitStatus::Negative,
                Some(Color::Blue),
            ),
            (
                RollbackOutcome::TimedOut(TimedOut {
                    from: Color::Blue,
                    to: Color::Green,
                    timed_out: true,
                    timeout_s: 3.0,
                    stopped_at: "handover:bot".into(),
                    journal: None,
                    duration_ms: 3001.0,
                }),
                vec![
                    "from",
                    "to",
                    "timed_out",
                    "timeout_s",
                    "stopped_at",
                    "journal",
                    "duration_ms",
                ],
                ExitStatus::Incomplete,
                Some(Color::Green),
            ),
        ]
    }

    #[test]
    fn every_rollback_outcome_keeps_its_fields_and_decodes_back() {
        for (outcome, fields, status, target) in move_cases().into_iter().chain(other_cases()) {
            assert_eq!(outcome.status(), status, "{outcome:?}");
            assert_eq!(outcome.target(), target, "{outcome:?}");
            let (line, decoded) = rollback_line(outcome.clone());
            let mut expected: Vec<&str> = ENVELOPE.to_vec();
            expected.extend(fields);
            assert_eq!(keys(&line), expected, "{line}");
            assert_eq!(decoded, outcome, "{line}");
        }
    }

    #[test]
    fn resume_and_cleanup_reports_keep_their_fields_and_decode_back() {
        let nothing = ResumeOutcome::NothingToResume(NothingToResume {
            resumed: false,
            reason: "no switch or rollback was interrupted".into(),
            active: Some(Color::Blue),
        });
        for (outcome, fields) in [
            (
                ResumeOutcome::Resolved(resolved()),
                vec![
                    "resumed",
                    "operation",
                    "resolution",
                    "interrupted_at",
                    "from",
                    "to",
                    "active",
                    "steps",
                    "duration_ms",
                ],
            ),
            (nothing, vec!["resumed", "reason", "active"]),
        ] {
            let report = Report::new("ztd-switch", &stack(), outcome.target(), outcome);
            let line = json_line(&report);
            let mut expected: Vec<&str> = ENVELOPE.to_vec();
            expected.extend(fields);
            assert_eq!(keys(&line), expected, "{line}");
            assert!(line.contains("\"ok\":true"), "{line}");
            let decoded: Report<ResumeOutcome> = serde_json::from_str(&line).expect("decode");
            assert_eq!(decoded, report);
        }
        let line = json_line(&Report::new(
            "ztd-switch",
            &stack(),
            Some(Color::Green),
            ResumeOutcome::Resolved(resolved()),
        ));
        assert!(
            line.contains("\"operation\":\"switch\",\"resolution\":\"undone\""),
            "{line}"
        );

        for (outcome, fields, status) in [
            (
                CleanupOutcome::Removed(Removed {
                    cleanup: Color::Green,
                    removed: vec!["web-green".into()],
                    active: Some(Color::Blue),
                    duration_ms: 800.0,
                }),
                vec!["cleanup", "removed", "active", "duration_ms"],
                ExitStatus::Success,
            ),
            (
                CleanupOutcome::Refused(CleanupRefusal {
                    cleanup: Color::Blue,
                    active: Some(Color::Blue),
                    refused: "blue is the active color".into(),
                }),
                vec!["cleanup", "active", "refused"],
                ExitStatus::Usage,
            ),
        ] {
            let report = Report::new("ztd-rollback", &stack(), outcome.target(), outcome);
            assert_eq!(report.status(), status);
            let line = json_line(&report);
            let mut expected: Vec<&str> = ENVELOPE.to_vec();
            expected.extend(fields);
            assert_eq!(keys(&line), expected, "{line}");
            assert!(line.contains("\"target\":\"blue\""), "{line}");
            let decoded: Report<CleanupOutcome> = serde_json::from_str(&line).expect("decode");
            assert_eq!(decoded, report);
        }
    }
}
