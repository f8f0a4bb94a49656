//! Switching the active color: refuse an unhealthy target, take the lock, journal each step,
//! move the front proxy (in-flight requests finish), hand over each singleton (drain and stop
//! the old one, then start or activate the new one), stop the rest of the old color, and record
//! the result; any failure puts everything back as it was.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::compose::Compose;
use crate::detect::{self, Detection};
use crate::engine::{ContainerInfo, Engine, ExecOutput, RunState};
use crate::error::{Error, ExitStatus, Result};
use crate::health::{self, HealthPolicy, HealthReport, Target};
use crate::hooks::{self, HookKind, HookReport};
use crate::journal::{Journal, JournalStepName, Operation, StepState};
use crate::labels::{ServiceSettings, SwitchMode};
use crate::proxy::{self, Proxy, ProxySwitch};
use crate::render::{DeployMeta, Listener, read_color_meta};
use crate::report::Outcome;
use crate::report::steps::{StepDetail, Steps};
use crate::stack::{Color, Stack};
use crate::state::{self, DeployLock};
use crate::units::millis_since;
use crate::{fault, info, signals, warn};

/// What `ztd-switch` was asked to do.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// The color to switch to (default: the candidate started by ztd-up, else the standby).
    pub to: Option<Color>,
    /// Switch even if the target is not healthy.
    pub force: bool,
    /// Longest wait for in-flight requests and for a `ztd.drain` command.
    pub drain_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL when stopping a container.
    pub stop_timeout: Duration,
    /// Health thresholds.
    pub policy: HealthPolicy,
    /// How long a handed-over service may take to become healthy.
    pub health_deadline: Duration,
    /// Compose, to run the `ztd.hook.*` commands (a stack with hooks needs it).
    pub compose: Option<Compose>,
    /// Whether the switch answers once the old color is stopped, or once traffic and the
    /// singletons have moved (the old color then stops in the background, lock held).
    pub stop_old: StopOld,
}

/// When a switch stops the rest of the old color.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopOld {
    /// Before the switch answers (the default).
    #[default]
    Wait,
    /// After it answers: a process of its own stops the old color, holding the deploy lock
    /// until it is done (tools that need the lock wait for it); the journal stays until then.
    Background,
}

impl std::str::FromStr for StopOld {
    type Err = Error;
    fn from_str(text: &str) -> Result<StopOld> {
        match text.trim() {
            "wait" => Ok(StopOld::Wait),
            "background" => Ok(StopOld::Background),
            other => Err(Error::Usage(format!(
                "invalid stop-old mode {other:?}: expected wait or background"
            ))),
        }
    }
}

/// The old color being stopped in the background after a switch answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundStop {
    /// The process that stops it (and holds the deploy lock until it is done).
    pub pid: u32,
    /// The containers it stops.
    pub containers: Vec<String>,
    /// Where it writes what it says.
    pub log: std::path::PathBuf,
}

/// What a switch did: ztd-switch's report body.
///
/// Decoded from JSON, a move that was undone reads as `Undone` whether or not a signal caused it
/// (the exit status, 130, is what tells `Interrupted` apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, from = "SwitchWire")]
pub enum SwitchOutcome {
    /// The target is active.
    Switched(MoveReport),
    /// A step failed and everything was put back.
    Undone(MoveReport),
    /// A signal stopped it and everything was put back.
    Interrupted(MoveReport),
    /// The target is not healthy: nothing changed.
    Refused(Refusal),
}

/// The shapes of a switch report on the wire, told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SwitchWire {
    Moved(MoveReport),
    Refused(Refusal),
}

impl From<SwitchWire> for SwitchOutcome {
    fn from(wire: SwitchWire) -> Self {
        match wire {
            SwitchWire::Moved(report) => Moved::read(report).into(),
            SwitchWire::Refused(refusal) => SwitchOutcome::Refused(refusal),
        }
    }
}

impl From<Moved> for SwitchOutcome {
    fn from(moved: Moved) -> Self {
        match moved {
            Moved::Done(report) => SwitchOutcome::Switched(report),
            Moved::Undone(report) => SwitchOutcome::Undone(report),
            Moved::Interrupted(report) => SwitchOutcome::Interrupted(report),
        }
    }
}

impl SwitchOutcome {
    /// The color handed on: the one switched to (also when refused or undone).
    pub fn target(&self) -> Option<Color> {
        match self {
            SwitchOutcome::Switched(report)
            | SwitchOutcome::Undone(report)
            | SwitchOutcome::Interrupted(report) => Some(report.to),
            SwitchOutcome::Refused(refusal) => Some(refusal.to),
        }
    }
}

impl Outcome for SwitchOutcome {
    /// 0 switched, 1 refused or undone, 130 put back after a signal.
    fn status(&self) -> ExitStatus {
        match self {
            SwitchOutcome::Switched(_) => ExitStatus::Success,
            SwitchOutcome::Undone(_) | SwitchOutcome::Refused(_) => ExitStatus::Negative,
            SwitchOutcome::Interrupted(_) => ExitStatus::Interrupted,
        }
    }
}

/// How a move (a switch, or the flip of a rollback) ended, with its report.
#[derive(Debug, Clone, PartialEq)]
pub enum Moved {
    /// The target is active.
    Done(MoveReport),
    /// A step failed and everything was put back.
    Undone(MoveReport),
    /// A signal stopped it and everything was put back.
    Interrupted(MoveReport),
}

impl Moved {
    /// The report, whichever way the move ended.
    pub fn report_mut(&mut self) -> &mut MoveReport {
        match self {
            Moved::Done(report) | Moved::Undone(report) | Moved::Interrupted(report) => report,
        }
    }

    /// A report read back: undone when it says why, else done.
    pub fn read(report: MoveReport) -> Moved {
        if report.undone.is_some() {
            Moved::Undone(report)
        } else {
            Moved::Done(report)
        }
    }
}

/// The report of a move, done or undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveReport {
    /// The color that was active, if any.
    pub from: Option<Color>,
    /// The color moved to.
    pub to: Color,
    /// The color active now: `to`, or `from` when undone.
    pub active: Option<Color>,
    /// The plain-Compose project adopted, if any.
    pub adopted: Option<String>,
    /// Why the move was undone, if it was.
    pub undone: Option<String>,
    /// The version deployed in `to`.
    pub version: String,
    /// Each step, timed.
    pub steps: Steps,
    /// What the proxy's flip did, if the proxy moved.
    pub proxy: Option<ProxySwitch>,
    /// How long the host ports were closed while the proxy took them over (an adoption).
    pub ports_gap_ms: Option<f64>,
    /// Each singleton handed over.
    pub handovers: Vec<HandoverReport>,
    /// Each `ztd.hook.*` command that ran (left out when none did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookReport>,
    /// With `--stop-old background`: the old color still being stopped after the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_stop: Option<BackgroundStop>,
    /// The whole run.
    pub duration_ms: f64,
}

/// A move refused because its target is not healthy: nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The active color.
    pub from: Option<Color>,
    /// The color that was to become active.
    pub to: Color,
    /// The color still active.
    pub active: Option<Color>,
    /// Why, in one line.
    pub refused: String,
    /// The target's health report.
    pub health: HealthReport,
    /// The pre-switch hooks that ran, the failed one last (left out when none did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookReport>,
    /// The whole run.
    pub duration_ms: f64,
}

impl Refusal {
    /// The refusal of `to`, which `is_not` healthy (`is not healthy`, `does not come back
    /// healthy`) as `health` says, with `from` still active.
    pub fn unhealthy(
        from: Option<Color>,
        to: Color,
        is_not: &str,
        health: &HealthReport,
        started: Instant,
    ) -> Refusal {
        Refusal {
            from,
            to,
            active: from,
            refused: format!("{to} {is_not}: {}", health.summary_line()),
            health: health.clone(),
            hooks: Vec::new(),
            duration_ms: millis_since(started),
        }
    }

    /// The refusal of `to`, healthy as `health` says, because the last of its pre-switch
    /// `hooks` failed.
    pub fn hook_failed(
        from: Option<Color>,
        to: Color,
        health: &HealthReport,
        hooks: Vec<HookReport>,
        started: Instant,
    ) -> Refusal {
        let failed = hooks.last().map_or_else(
            || "a pre-switch hook failed".to_string(),
            HookReport::describe,
        );
        Refusal {
            from,
            to,
            active: from,
            refused: format!("{to} is not switched to: {failed}"),
            health: health.clone(),
            hooks,
            duration_ms: millis_since(started),
        }
    }
}

/// A step that was carried out and can be reverted.
#[derive(Debug)]
enum Done {
    /// The proxy was pointed at the new color.
    Proxy,
    /// The proxy took over the ports of an adopted stack, whose holders were stopped.
    Adopted { holders: Vec<ContainerInfo> },
    /// A singleton was handed over.
    Handover {
        old: Option<Box<ContainerInfo>>,
        new: Box<ContainerInfo>,
    },
    /// The rest of the old color was stopped while a handover went on (each as it was).
    StoppedOld { stopped: Vec<ContainerInfo> },
}

/// One handover's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverReport {
    /// The service handed over.
    pub service: String,
    /// The container it was taken from, if one ran.
    pub old: Option<String>,
    /// The container that holds it now.
    pub new: String,
    /// The exit code of `ztd.drain` in the old container, if it has one.
    pub drain_exit_code: Option<i64>,
    /// Stopping the old container.
    pub stop_ms: f64,
    /// From the old one stopped to the new one running.
    pub gap_ms: f64,
    /// Of the gap, the engine's own start of the new container (what remains is ztd's part);
    /// left out when it was not started (it ran, and `ztd.activate` made it active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<f64>,
    /// Until the new one was healthy.
    pub healthy_ms: f64,
    /// Host ports the service publishes itself: closed from the old one's stop until the new
    /// one's start (a handover service is never behind the front proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_gap: Option<PortGap>,
}

/// The note on a handover whose service publishes host ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortGap {
    /// The ports.
    pub ports: Vec<u16>,
    /// What happened to them.
    pub note: String,
}

impl PortGap {
    const NOTE: &'static str = "closed while the service was handed over (its container publishes them, not the front proxy)";
}

struct Run<'a, E: Engine> {
    engine: &'a E,
    stack: &'a Stack,
    opts: &'a SwitchOptions,
    /// What moves where.
    plan: Move,
    journal: Journal,
    steps: Steps,
    done: Vec<Done>,
    handovers: Vec<HandoverReport>,
    proxy: Option<ProxySwitch>,
    ports_gap_ms: Option<f64>,
    /// Past the point where the change is undone on failure: the rest is finished instead.
    committed: bool,
}

/// Switch the active color.
pub async fn switch<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
) -> Result<SwitchOutcome> {
    let started = Instant::now();
    // Lock first, then look: nothing acts on a detection made before the lock was held.
    let lock = DeployLock::acquire(stack, "ztd-switch")?;
    let detection = detect::detect(engine, stack).await?;
    if detection.interrupted {
        return Err(Error::Incomplete(
            "an earlier switch was interrupted: run ztd-switch --resume or ztd-rollback".into(),
        ));
    }
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot switch: {conflict}")));
    }
    let from = detection.active;
    let to = opts
        .to
        .or(detection.recorded.candidate)
        .unwrap_or(detection.target());
    if from == Some(to) {
        return Err(Error::Usage(format!("{to} is already the active color")));
    }
    let to_meta = read_color_meta(stack, to)?.ok_or_else(|| {
        Error::State(format!(
            "nothing is deployed in {to}: run ztd-up {to} first"
        ))
    })?;
    if detection.color(to).containers.is_empty() {
        return Err(Error::State(format!(
            "{to} has no containers: run ztd-up {to} first"
        )));
    }
    let from_meta = match from {
        Some(from) => read_color_meta(stack, from)?,
        None => None,
    };

    let target = Target {
        stack,
        color: to,
        active: false,
        service: None,
    };
    let health = health::check(engine, &target, &opts.policy).await?;
    if !health.healthy() && !opts.force {
        warn!("switch refused: {}", health.summary_line());
        drop(lock);
        return Ok(SwitchOutcome::Refused(Refusal::unhealthy(
            from,
            to,
            "is not healthy",
            &health,
            started,
        )));
    }
    if !health.healthy() {
        warn!("{to} is not healthy; switching anyway (--force)");
    }
    // Before anything changes: a pre-switch hook that fails leaves the stack as it is.
    let new = detection.color(to).containers.clone();
    let pre = hooks::run(
        engine,
        opts.compose.as_ref(),
        stack,
        to,
        &new,
        HookKind::PreSwitch,
    )
    .await?;
    if pre.last().is_some_and(HookReport::failed) {
        let refusal = Refusal::hook_failed(from, to, &health, pre, started);
        warn!("switch refused: {}", refusal.refused);
        drop(lock);
        return Ok(SwitchOutcome::Refused(refusal));
    }

    let (old, adopting) = old_side(&detection, stack, from);
    let plan = Move {
        operation: Operation::Switch,
        from,
        to,
        to_meta,
        from_meta,
        old,
        new,
        adopting,
    };
    check_interrupted()?;
    // What a background stop is left with.
    let old_up = plan.rest_of_old();
    let mut moved = execute(engine, stack, opts, plan, started, None).await?;
    if let (Moved::Done(report), StopOld::Background) = (&mut moved, opts.stop_old) {
        report.background_stop =
            Some(stop_in_background(engine, stack, opts, lock, &old_up).await?);
    } else {
        drop(lock);
    }
    let mut ran = pre;
    if matches!(moved, Moved::Done(_)) {
        ran.extend(
            hooks::after_move(
                engine,
                opts.compose.as_ref(),
                stack,
                to,
                &detection.color(to).containers,
            )
            .await,
        );
    }
    let report = moved.report_mut();
    report.hooks = ran;
    report.duration_ms = millis_since(started);
    Ok(SwitchOutcome::from(moved))
}

/// Stop the old side after a switch has answered: a process of this tool's own
/// (`--finish-stop-old`) gets the deploy lock and stops `old`, then finishes the journal. When
/// it cannot be started, the old side is stopped here and now.
async fn stop_in_background<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    lock: DeployLock,
    old: &[ContainerInfo],
) -> Result<BackgroundStop> {
    let log = stack.ztd_dir().join("stop-old.log");
    let containers: Vec<String> = old.iter().map(|c| c.name.clone()).collect();
    let handed = match background_stop_command(stack, opts, &log) {
        Ok(mut command) => lock.hand_over(&mut command),
        Err(err) => Err((lock, err)),
    };
    match handed {
        Ok(child) => {
            info!(
                "stopping the old side in the background (pid {}, log {})",
                child.id(),
                log.display()
            );
            Ok(BackgroundStop {
                pid: child.id(),
                containers,
                log,
            })
        }
        Err((lock, err)) => {
            // The lock is still held here: stop the old side before answering.
            warn!("{err}; stopping the old side now");
            finish_stop_old(engine, stack, opts).await?;
            drop(lock);
            Ok(BackgroundStop {
                pid: std::process::id(),
                containers,
                log,
            })
        }
    }
}

/// The command of the background stop: this same tool, on this stack, detached from the
/// terminal (its own process group: a Ctrl-C meant for the pipeline does not reach it),
/// writing to `log`.
fn background_stop_command(
    stack: &Stack,
    opts: &SwitchOptions,
    log: &std::path::Path,
) -> Result<std::process::Command> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| {
        Error::State(format!(
            "cannot find this program to stop the old side: {e}"
        ))
    })?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::State(format!("{}: {e}", log.display())))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--finish-stop-old")
        .arg("--project-directory")
        .arg(&stack.dir)
        .arg("--project-name")
        .arg(&stack.name)
        .arg("--stop-timeout")
        .arg(format!("{}ms", opts.stop_timeout.as_millis()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .process_group(0);
    Ok(command)
}

/// `ztd-switch --finish-stop-old`: the second half of a `--stop-old background` switch, run with
/// the deploy lock it inherited. Stops what still runs of the side the switch moved from, then
/// finishes the journal; a failure leaves the journal for `ztd-switch --resume`.
pub async fn finish_stop_old<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
) -> Result<crate::recover::ResumeOutcome> {
    let started = Instant::now();
    let Some(mut journal) = crate::journal::read(stack)? else {
        return Err(Error::State(
            "no switch is journaled: nothing to stop".into(),
        ));
    };
    if journal.unfinished().map(|s| &s.name) != Some(&JournalStepName::StopOld) {
        return Err(Error::State(format!(
            "the journaled {} is not waiting for the old side to stop",
            journal.operation
        )));
    }
    let detection = detect::detect(engine, stack).await?;
    let other = match journal.from {
        Some(from) => detection.color(from).containers.clone(),
        None => detection.legacy.clone(),
    };
    let up: Vec<ContainerInfo> = other.into_iter().filter(|c| c.state.is_up()).collect();
    fault::point("stop_old:start");
    let stopping = Instant::now();
    let stopped = stop_all(engine, opts, &up).await;
    let mut steps = Steps::default();
    steps.record(
        &JournalStepName::StopOld.to_string(),
        stopping,
        stopped.is_ok(),
        StepDetail {
            stopped: stopped.is_ok().then_some(up.len()),
            ..StepDetail::default()
        },
    );
    if let Err(err) = stopped {
        return Err(Error::Incomplete(format!(
            "could not stop the old side ({err}); run ztd-switch --resume"
        )));
    }
    journal.mark(stack, &JournalStepName::StopOld, StepState::Done)?;
    fault::point("stop_old:done");
    journal.clone().finish(stack)?;
    info!("stopped {} containers of the old side", up.len());
    Ok(crate::recover::ResumeOutcome::Resolved(
        crate::recover::Resolved {
            resumed: true,
            operation: journal.operation,
            resolution: crate::recover::Resolution::Finished,
            interrupted_at: JournalStepName::StopOld.to_string(),
            from: journal.from,
            to: journal.to,
            active: Some(journal.to),
            steps,
            duration_ms: millis_since(started),
        },
    ))
}

/// How many containers a switch stops at once.
const STOP_CONCURRENCY: usize = 8;

/// Retire each container, a few at a time. Every one is tried; the first failure is returned
/// once all were.
async fn stop_all<E: Engine>(
    engine: &E,
    opts: &SwitchOptions,
    containers: &[ContainerInfo],
) -> Result<()> {
    // A few at a time, for the reason ztd-up starts a few at a time.
    let results: Vec<Result<()>> =
        futures_util::stream::iter(containers.iter().map(|c| retire(engine, opts, c)))
            .buffered(STOP_CONCURRENCY)
            .collect()
            .await;
    let mut first = None;
    for (container, result) in containers.iter().zip(results) {
        if let Err(err) = result {
            warn!("could not stop {}: {err}", container.name);
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

/// A planned move from one color (or an adopted stack) to another.
#[derive(Debug, Clone)]
pub struct Move {
    /// Switch or rollback.
    pub operation: Operation,
    /// The active color, if any.
    pub from: Option<Color>,
    /// The color to make active.
    pub to: Color,
    /// What was rendered for `to`.
    pub to_meta: DeployMeta,
    /// What was rendered for `from`.
    pub from_meta: Option<DeployMeta>,
    /// The containers to take over from.
    pub old: Vec<ContainerInfo>,
    /// The containers of `to`.
    pub new: Vec<ContainerInfo>,
    /// The Compose project being adopted, if any.
    pub adopting: Option<String>,
}

impl Move {
    /// The services handed over, in the order they are.
    fn handover_services(&self) -> Vec<String> {
        self.to_meta
            .services
            .iter()
            .filter(|s| s.mode == SwitchMode::Handover)
            .map(|s| s.name.clone())
            .collect()
    }

    /// What runs of the old side but its singletons (those are handed over, not stopped).
    fn rest_of_old(&self) -> Vec<ContainerInfo> {
        self.old
            .iter()
            .filter(|c| c.state.is_up())
            .filter(|c| {
                self.to_meta
                    .service(&c.service)
                    .is_none_or(|s| s.mode != SwitchMode::Handover)
            })
            .cloned()
            .collect()
    }
}

/// Carry out a move with the lock held: journal (a new one, or the one the caller began),
/// proxy, handovers, stop the old side, record; undo on failure or interruption.
pub async fn execute<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    plan: Move,
    started: Instant,
    journal: Option<Journal>,
) -> Result<Moved> {
    let journal = match journal {
        Some(journal) => journal,
        None => Journal::begin(
            stack,
            plan.operation,
            plan.from,
            plan.to,
            plan.adopting.clone(),
        )?,
    };
    let mut run = Run {
        engine,
        stack,
        opts,
        plan,
        journal,
        steps: Steps::default(),
        done: Vec::new(),
        handovers: Vec::new(),
        proxy: None,
        ports_gap_ms: None,
        committed: false,
    };
    run.announce();
    match run.forward().await {
        Err(failure) if run.committed => Err(run.unfinished(failure)),
        Ok(()) => {
            let recorded = run.record().await;
            recorded.map_err(|failure| run.unfinished(failure))?;
            let report = run.report(None, started);
            if opts.stop_old == StopOld::Background {
                // The caller hands the lock to the process that stops the old color; the
                // journal stays until that one is done.
                run.journal.start(stack, JournalStepName::StopOld)?;
            } else {
                run.journal.clone().finish(stack)?;
            }
            info!("{} is active", run.plan.to);
            Ok(Moved::Done(report))
        }
        Err(failure) => run.put_back(failure, started).await,
    }
}

/// The history line of a change that failed and was put back.
#[derive(Debug, serde::Serialize)]
struct UndoneEvent<'a> {
    from: Option<Color>,
    to: Color,
    reason: &'a str,
}

/// The history line of a move: where from and to, then what the caller adds (`details`).
#[derive(Debug, serde::Serialize)]
struct MoveEvent<'a, D: ?Sized> {
    from: Option<Color>,
    to: Color,
    #[serde(flatten)]
    details: &'a D,
}

/// What a switch adds to its history line.
#[derive(Debug, serde::Serialize)]
struct SwitchDetails<'a> {
    adopted: &'a Option<String>,
    version: &'a str,
    handovers: &'a [HandoverReport],
    ports_gap_ms: Option<f64>,
}

/// Record that `to` is now active: `.current_deployment`, `.ztd/state.json` (with `from` kept
/// as the previous color), `.rollback_state` after a rollback, and a line of history with
/// `details` after `from` and `to`.
pub fn record_move<D: serde::Serialize + ?Sized>(
    stack: &Stack,
    operation: Operation,
    from: Option<Color>,
    to: Color,
    images: BTreeMap<String, String>,
    details: &D,
) -> Result<()> {
    state::write_current_deployment(stack, to)?;
    fault::point("record:written");
    state::update(stack, |record| {
        record.active = Some(to);
        record.previous = from;
        record.candidate = None;
        record.switched_at = Some(state::now());
        let deployment = record.deployments.entry(to).or_default();
        if deployment.images.is_empty() {
            deployment.images = images;
        }
    })?;
    if operation == Operation::Rollback
        && let Some(from) = from
    {
        // Advanced, as the original scripts' readers expect: a later rollback of this state is
        // a no-op rather than an undo of this rollback.
        state::write_rollback_state(stack, to, from)?;
    }
    state::record_event(stack, operation.name(), &MoveEvent { from, to, details })
}

/// Stop a container for good: restart policy `no` first unless it keeps a stopped container
/// stopped already (so nothing brings it back, not even a daemon restart), then its stop signal
/// with the stop timeout, then SIGKILL if it still runs. A container that is not up is left
/// alone; one removed meanwhile is done.
pub(crate) async fn retire<E: Engine>(
    engine: &E,
    opts: &SwitchOptions,
    container: &ContainerInfo,
) -> Result<()> {
    if !container.state.is_up() {
        return Ok(());
    }
    let settings = container.settings_or_default();
    if !stays_stopped(&container.restart_policy) {
        engine.set_restart_policy(&container.id, "no").await?;
    }
    engine
        .stop(
            &container.id,
            settings.stop_timeout.unwrap_or(opts.stop_timeout),
        )
        .await?;
    match engine.inspect(&container.id).await {
        Ok(after) if after.state.is_up() => engine.kill(&container.id, "SIGKILL").await,
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Whether a container with this restart policy, once stopped through the engine, stays
/// stopped, the engine's own restart included: `no`, and `unless-stopped` (the engine keeps a
/// stop made through it across its restarts). `always` comes back when the engine starts, and
/// `on-failure` after a non-zero exit; those are set to `no` first (an update is an engine
/// call of ~10 ms, which a switch stopping 50 containers paid 50 times).
fn stays_stopped(restart_policy: &str) -> bool {
    matches!(restart_policy, "" | "no" | "unless-stopped")
}

/// Give a container the restart policy its deploy asked for in `meta` (`no` when it asked for
/// none, or when the deploy is unknown).
pub(crate) async fn restore_restart_policy<E: Engine>(
    engine: &E,
    meta: Option<&DeployMeta>,
    container: &ContainerInfo,
) -> Result<()> {
    let restart = meta
        .and_then(|m| m.service(&container.service))
        .and_then(|s| s.restart.as_deref())
        .unwrap_or("no");
    engine.set_restart_policy(&container.id, restart).await
}

/// The containers of `old` that publish one of the listeners' host ports: what holds the ports
/// the proxy takes over when a plain-Compose stack is adopted.
pub(crate) fn port_holders(listeners: &[Listener], old: &[ContainerInfo]) -> Vec<ContainerInfo> {
    let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    old.iter()
        .filter(|c| c.published_ports.iter().any(|p| ports.contains(p)))
        .cloned()
        .collect()
}

/// The proxy, created but not started while `holders` (found by `port_holders`) hold the host
/// ports, takes them over: its config is written to serve `color`, every holder is stopped for
/// good (one that fails is named and the rest go on: the proxy's start is what must succeed),
/// and it starts. Returns how long the ports were closed, in milliseconds.
pub(crate) async fn take_over_ports<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    listeners: &[Listener],
    color: Option<Color>,
    holders: &[ContainerInfo],
) -> Result<f64> {
    let conf = proxy::nginx_conf(stack, &proxy::routes_to(listeners, color), color, 0);
    state::write_atomic(
        &proxy::conf_dir(stack).join("nginx.conf"),
        conf.as_bytes(),
        0o644,
    )?;
    let results = join_all(holders.iter().map(|c| retire(engine, opts, c))).await;
    for (holder, result) in holders.iter().zip(results) {
        if let Err(err) = result {
            warn!("could not stop {}: {err}", holder.name);
        }
    }
    let released = Instant::now();
    Proxy::new(engine, stack).start(listeners).await?;
    let gap_ms = millis_since(released);
    let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    info!("the proxy took over ports {ports:?} after {gap_ms:.0} ms");
    Ok(gap_ms)
}

/// Undo `take_over_ports`: the proxy stops, and the holders get their restart policies back
/// and start again.
pub(crate) async fn give_back_ports<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    holders: &[ContainerInfo],
) -> Result<()> {
    engine
        .stop(&stack.proxy_container(), opts.stop_timeout)
        .await?;
    for holder in holders {
        engine
            .set_restart_policy(&holder.id, &holder.restart_policy)
            .await?;
        engine.start(&holder.id).await?;
    }
    info!("the adopted stack holds its ports again");
    Ok(())
}

/// The error of a `ztd.drain` or `ztd.activate` (`command`) in `container` that did not exit 0.
fn command_failed(service: &str, command: &str, container: &str, out: &ExecOutput) -> Error {
    Error::Engine(format!(
        "{service}: {command} in {container} {}: {}",
        out.exit_code
            .map_or("timed out".to_string(), |c| format!("exited {c}")),
        crate::error::one_line(&out.output)
    ))
}

fn check_interrupted() -> Result<()> {
    if signals::interrupted() {
        Err(Error::Interrupted("interrupted by a signal".into()))
    } else {
        Ok(())
    }
}

/// The containers to take over from: the active color's, or those of a stack being adopted.
fn old_side(
    detection: &Detection,
    stack: &Stack,
    from: Option<Color>,
) -> (Vec<ContainerInfo>, Option<String>) {
    match from {
        Some(from) => (detection.color(from).containers.clone(), None),
        None => {
            let legacy: Vec<ContainerInfo> = detection
                .legacy
                .iter()
                .filter(|c| c.state.is_up())
                .cloned()
                .collect();
            let adopting = (!legacy.is_empty()).then(|| stack.name.clone());
            (legacy, adopting)
        }
    }
}

impl<E: Engine> Run<'_, E> {
    /// Say on stderr what moves where.
    fn announce(&self) {
        let plan = &self.plan;
        info!(
            "{} {} -> {}",
            if plan.operation == Operation::Switch {
                "switching"
            } else {
                "rolling back"
            },
            plan.adopting
                .clone()
                .or(plan.from.map(|c| c.to_string()))
                .unwrap_or_else(|| "nothing".into()),
            plan.to
        );
    }

    /// The error of a move that failed past the point of no return: `--resume` finishes it.
    fn unfinished(&self, failure: Error) -> Error {
        let to = self.plan.to;
        let message = format!(
            "{} to {to}: {to} serves and holds every singleton, but {failure}; run ztd-switch --resume to finish",
            self.plan.operation
        );
        warn!("{message}");
        Error::Incomplete(message)
    }

    /// After `failure` before the point of no return: mark the undo on disk, undo every step
    /// done, and record it. An undo that fails too leaves the journal (exit 6, or 130 when a
    /// signal caused it).
    async fn put_back(&mut self, failure: Error, started: Instant) -> Result<Moved> {
        let (operation, from, to) = (self.plan.operation, self.plan.from, self.plan.to);
        let interrupted = matches!(failure, Error::Interrupted(_));
        warn!("{operation} failed: {failure}; putting everything back");
        self.journal.begin_undo(self.stack)?;
        fault::point("undo:start");
        if let Err(undo) = self.undo().await {
            let message = format!(
                "{operation} to {to} failed ({failure}) and undoing it failed too ({undo}); run ztd-switch --resume or ztd-rollback"
            );
            return Err(if interrupted {
                Error::Interrupted(message)
            } else {
                Error::Incomplete(message)
            });
        }
        state::record_event(
            self.stack,
            &format!("{operation}_undone"),
            &UndoneEvent {
                from,
                to,
                reason: failure.message(),
            },
        )?;
        let report = self.report(Some(failure.message().to_string()), started);
        self.journal.clone().finish(self.stack)?;
        Ok(if interrupted {
            Moved::Interrupted(report)
        } else {
            Moved::Undone(report)
        })
    }

    async fn forward(&mut self) -> Result<()> {
        let proxied = !self.plan.to_meta.listeners.is_empty();
        let proxy_runs = proxied
            && Proxy::new(self.engine, self.stack).status().await? == Some(RunState::Running);
        if proxied && !proxy_runs {
            // A proxy not yet started takes the ports over from a stack being adopted (or is
            // missing): that comes first, then the handovers.
            self.proxy_step().await?;
            self.handover_steps().await?;
        } else if proxied {
            // The proxy flip and the handovers move different services: both at once.
            self.journal.start(self.stack, JournalStepName::Proxy)?;
            fault::point("proxy:start");
            self.done.push(Done::Proxy);
            // How many singletons run in the new color (`usize::MAX` once the handovers are
            // done, `None` once one failed): the rest of the old color waits until all run, so
            // its stops do not slow the singletons' starts (their gap), and is left running
            // when a handover fails (the switch is undone).
            let (started_tx, started_rx) = tokio::sync::watch::channel(Some(0usize));
            // Field by field: the moves read the plan while the progress is written.
            let mover = Mover {
                engine: self.engine,
                stack: self.stack,
                opts: self.opts,
                plan: &self.plan,
                singletons_started: Some(&started_tx),
            };
            let flipping = Instant::now();
            let step_index = self.steps.len();
            // Once traffic has moved, the rest of the old color stops while the singletons are
            // still handed over (undone, it is started again before the proxy points back).
            let singletons = mover.plan.handover_services().len();
            let stop_early = self.opts.stop_old == StopOld::Wait && singletons > 0;
            let journal = RefCell::new(&mut self.journal);
            let steps = RefCell::new(&mut self.steps);
            let done = RefCell::new(&mut self.done);
            let flip = async {
                let flipped = mover.flip_proxy().await;
                let ended = Instant::now();
                let flipped = flipped?;
                // Marked as soon as the proxy serves the new color, handovers or not.
                journal
                    .borrow_mut()
                    .mark(mover.stack, &JournalStepName::Proxy, StepState::Done)?;
                fault::point("proxy:done");
                Ok::<_, Error>((flipped, ended))
            };
            let flip_then_stop = async {
                let flipped = flip.await?;
                let mut started = started_rx.clone();
                let all_run = stop_early
                    && started
                        .wait_for(|n| n.is_none_or(|n| n >= singletons))
                        .await
                        .is_ok_and(|n| n.is_some());
                let stopped = if all_run {
                    Some(Self::stop_rest_early(&mover, &journal, &steps, &done).await)
                } else {
                    None
                };
                Ok::<_, Error>((flipped, stopped))
            };
            let handing_over = async {
                let handed_over =
                    Self::handovers(&mover, &journal, &steps, &done, &mut self.handovers).await;
                started_tx.send_replace(handed_over.is_ok().then_some(usize::MAX));
                handed_over
            };
            let (flipped, handed_over) = tokio::join!(flip_then_stop, handing_over);
            let ended = flipped
                .as_ref()
                .map_or_else(|_| Instant::now(), |((_, e), _)| *e);
            self.steps.insert(
                step_index,
                &JournalStepName::Proxy.to_string(),
                (flipping, ended),
                flipped.is_ok(),
                StepDetail {
                    result: flipped.as_ref().ok().map(|((s, _), _)| s.clone()),
                    ..StepDetail::default()
                },
            );
            match (flipped, handed_over) {
                (Ok(((switched, _), stopped)), Ok(())) => {
                    self.proxy = Some(switched);
                    if let Some(stopped) = stopped {
                        // Every singleton runs in the new color: past the point of no return.
                        self.committed = true;
                        stopped?;
                        return Ok(());
                    }
                    check_interrupted()?;
                }
                (Err(err), _) | (Ok(_), Err(err)) => return Err(err),
            }
        } else {
            self.handover_steps().await?;
        }
        // From here on the new color serves and holds every singleton: a failure finishes
        // forward (--resume), it is not undone.
        self.committed = true;
        if self.opts.stop_old == StopOld::Background {
            // Recorded first, then stopped by a process of its own (see `execute`).
            return Ok(());
        }
        self.journal.start(self.stack, JournalStepName::StopOld)?;
        fault::point("stop_old:start");
        let started = Instant::now();
        let stopped = self.stop_old().await;
        self.steps.record(
            &JournalStepName::StopOld.to_string(),
            started,
            stopped.is_ok(),
            StepDetail::default(),
        );
        stopped?;
        self.journal
            .mark(self.stack, &JournalStepName::StopOld, StepState::Done)?;
        fault::point("stop_old:done");
        Ok(())
    }

    /// The proxy step on its own: take the ports over from a stack being adopted, then flip.
    async fn proxy_step(&mut self) -> Result<()> {
        self.journal.start(self.stack, JournalStepName::Proxy)?;
        fault::point("proxy:start");
        let started = Instant::now();
        let result = self.switch_proxy().await;
        self.steps.record(
            &JournalStepName::Proxy.to_string(),
            started,
            result.is_ok(),
            StepDetail {
                result: self.proxy.clone(),
                ports_gap_ms: self.ports_gap_ms,
                ..StepDetail::default()
            },
        );
        result?;
        self.journal
            .mark(self.stack, &JournalStepName::Proxy, StepState::Done)?;
        fault::point("proxy:done");
        check_interrupted()
    }

    /// The handovers, one after another.
    async fn handover_steps(&mut self) -> Result<()> {
        let mover = Mover {
            engine: self.engine,
            stack: self.stack,
            opts: self.opts,
            plan: &self.plan,
            singletons_started: None,
        };
        Self::handovers(
            &mover,
            &RefCell::new(&mut self.journal),
            &RefCell::new(&mut self.steps),
            &RefCell::new(&mut self.done),
            &mut self.handovers,
        )
        .await
    }

    /// What moves the services, apart from what records the progress.
    fn mover(&self) -> Mover<'_, E> {
        Mover {
            engine: self.engine,
            stack: self.stack,
            opts: self.opts,
            plan: &self.plan,
            singletons_started: None,
        }
    }

    /// Hand each singleton over in turn, journaling each step.
    async fn handovers(
        mover: &Mover<'_, E>,
        journal: &RefCell<&mut Journal>,
        steps: &RefCell<&mut Steps>,
        done: &RefCell<&mut Vec<Done>>,
        handovers: &mut Vec<HandoverReport>,
    ) -> Result<()> {
        for service in mover.plan.handover_services() {
            let step = JournalStepName::Handover(service.clone());
            journal.borrow_mut().start(mover.stack, step.clone())?;
            fault::point(&format!("{step}:start"));
            let started = Instant::now();
            let (undo, result) = mover.handover(&service).await;
            done.borrow_mut().extend(undo);
            steps.borrow_mut().record(
                &step.to_string(),
                started,
                result.is_ok(),
                StepDetail::default(),
            );
            handovers.push(result?);
            journal
                .borrow_mut()
                .mark(mover.stack, &step, StepState::Done)?;
            fault::point(&format!("{step}:done"));
            check_interrupted()?;
        }
        Ok(())
    }

    /// Stop the old color but its singletons (they are handed over), journaled as `stop_old`;
    /// what stopped is recorded for the undo first.
    async fn stop_rest_early(
        mover: &Mover<'_, E>,
        journal: &RefCell<&mut Journal>,
        steps: &RefCell<&mut Steps>,
        done: &RefCell<&mut Vec<Done>>,
    ) -> Result<()> {
        let rest = mover.plan.rest_of_old();
        journal
            .borrow_mut()
            .start(mover.stack, JournalStepName::StopOld)?;
        fault::point("stop_old:start");
        let started = Instant::now();
        done.borrow_mut().push(Done::StoppedOld {
            stopped: rest.clone(),
        });
        let stopped = stop_all(mover.engine, mover.opts, &rest).await;
        steps.borrow_mut().record(
            &JournalStepName::StopOld.to_string(),
            started,
            stopped.is_ok(),
            StepDetail::default(),
        );
        stopped?;
        journal
            .borrow_mut()
            .mark(mover.stack, &JournalStepName::StopOld, StepState::Done)?;
        fault::point("stop_old:done");
        Ok(())
    }

    async fn switch_proxy(&mut self) -> Result<()> {
        let proxy = Proxy::new(self.engine, self.stack);
        let listeners = self.plan.to_meta.listeners.clone();
        proxy
            .connect(&proxy::networks_for(&self.plan.to_meta))
            .await?;
        match proxy.status().await? {
            None => {
                return Err(Error::State(
                    "the front proxy does not exist: run ztd-up again to create it".into(),
                ));
            }
            Some(RunState::Running) => {}
            Some(_) => {
                // Created but not started: the ports still belong to the stack being adopted.
                let holders = port_holders(&listeners, &self.plan.old);
                self.done.push(Done::Adopted {
                    holders: holders.clone(),
                });
                let gap_ms = take_over_ports(
                    self.engine,
                    self.stack,
                    self.opts,
                    &listeners,
                    Some(self.plan.to),
                    &holders,
                )
                .await?;
                self.ports_gap_ms = Some(gap_ms);
            }
        }
        if !matches!(self.done.last(), Some(Done::Adopted { .. })) {
            self.done.push(Done::Proxy);
        }
        let switched = self.mover().point_proxy().await?;
        self.proxy = Some(switched);
        Ok(())
    }

    /// Stop a container for good: it must not come back by its restart policy.
    async fn retire(&self, container: &ContainerInfo) -> Result<()> {
        retire(self.engine, self.opts, container).await
    }
}

/// The switch's moves, with what they read: the engine, the stack, the options and the plan.
struct Mover<'r, E: Engine> {
    engine: &'r E,
    stack: &'r Stack,
    opts: &'r SwitchOptions,
    plan: &'r Move,
    /// Counts each singleton started in the new color, for whoever waits for them.
    singletons_started: Option<&'r tokio::sync::watch::Sender<Option<usize>>>,
}

impl<E: Engine> Mover<'_, E> {
    fn probe_paths(&self) -> BTreeMap<String, String> {
        self.plan
            .to_meta
            .listeners
            .iter()
            .map(|l| {
                let path = self
                    .plan
                    .new
                    .iter()
                    .find(|c| c.service == l.service)
                    .and_then(|c| c.labels.get("ztd.health.http").cloned())
                    .unwrap_or_else(|| "/".into());
                (l.service.clone(), path)
            })
            .collect()
    }

    /// Flip a running proxy to the new color: connect it to the color's networks, then point
    /// it there.
    async fn flip_proxy(&self) -> Result<ProxySwitch> {
        Proxy::new(self.engine, self.stack)
            .connect(&proxy::networks_for(&self.plan.to_meta))
            .await?;
        self.point_proxy().await
    }

    /// Point the proxy at the new color and confirm it serves it.
    async fn point_proxy(&self) -> Result<ProxySwitch> {
        let routes = proxy::routes_to(&self.plan.to_meta.listeners, Some(self.plan.to));
        let switched = Proxy::new(self.engine, self.stack)
            .point_to(
                &routes,
                Some(self.plan.to),
                &self.probe_paths(),
                self.opts.drain_timeout,
            )
            .await?;
        info!(
            "proxy now serves {} (reload {:.0} ms, confirmed in {:.0} ms, old requests done in {:.0} ms)",
            self.plan.to, switched.reload_ms, switched.confirm_ms, switched.drain_ms
        );
        Ok(switched)
    }

    /// Hand `service` over: drain the old container, stop it, then start (or activate) the
    /// new one and wait until it is healthy. Returns what the undo must put back (set before
    /// the old one stops, so that a stop that fails half-way still gets it started again) with
    /// the outcome.
    async fn handover(&self, service: &str) -> (Option<Done>, Result<HandoverReport>) {
        let new = match self.plan.new.iter().find(|c| c.service == service) {
            Some(new) => new.clone(),
            None => {
                let missing =
                    Error::State(format!("{service} has no container in {}", self.plan.to));
                return (None, Err(missing));
            }
        };
        let old = self
            .plan
            .old
            .iter()
            .find(|c| c.service == service && c.state.is_up())
            .cloned();
        let new_settings = match new.settings() {
            Ok(settings) => settings,
            Err(err) => return (None, Err(err)),
        };
        let drain_exit_code = match &old {
            Some(old) => match self.drain(service, old).await {
                Ok(code) => code,
                Err(err) => return (None, Err(err)),
            },
            None => None,
        };
        let undo = Done::Handover {
            old: old.clone().map(Box::new),
            new: Box::new(new.clone()),
        };
        let moved = self
            .move_singleton(service, old, new, &new_settings, drain_exit_code)
            .await;
        (Some(undo), moved)
    }

    /// Stop the old container, start the new one, wait until it is healthy.
    async fn move_singleton(
        &self,
        service: &str,
        old: Option<ContainerInfo>,
        new: ContainerInfo,
        new_settings: &ServiceSettings,
        drain_exit_code: Option<i64>,
    ) -> Result<HandoverReport> {
        let stopping = Instant::now();
        if let Some(old) = &old {
            retire(self.engine, self.opts, old).await?;
        }
        let stop_ms = millis_since(stopping);
        fault::point(&format!("handover:{service}:old-stopped"));
        let stopped = Instant::now();
        let start_ms = self.bring_up(service, &new, new_settings).await?;
        let gap_ms = millis_since(stopped);
        if let Some(started) = self.singletons_started {
            started.send_modify(|n| *n = n.map(|n| n.saturating_add(1)));
        }
        info!(
            "{service}: {} -> {} handed over, gap {gap_ms:.0} ms",
            old.as_ref().map_or("(none)", |o| o.name.as_str()),
            new.name
        );
        let checking = Instant::now();
        self.wait_healthy(service, &new).await?;
        restore_restart_policy(self.engine, Some(&self.plan.to_meta), &new).await?;
        Ok(HandoverReport {
            service: service.to_string(),
            old: old.map(|o| o.name),
            new: new.name,
            drain_exit_code,
            stop_ms,
            gap_ms,
            start_ms,
            healthy_ms: millis_since(checking),
            port_gap: self.port_gap(service),
        })
    }
    /// Run the old container's `ztd.drain`, if it has one; its exit code. Anything but exit 0
    /// stops the handover.
    async fn drain(&self, service: &str, old: &ContainerInfo) -> Result<Option<i64>> {
        let settings = old.settings_or_default();
        let Some(drain) = &settings.drain else {
            return Ok(None);
        };
        let timeout = settings.drain_timeout.unwrap_or(self.opts.drain_timeout);
        info!("{service}: draining {}", old.name);
        let out = self.engine.exec(&old.id, drain, timeout).await?;
        if out.exit_code != Some(0) {
            return Err(command_failed(service, "ztd.drain", &old.name, &out));
        }
        Ok(out.exit_code)
    }

    /// Start the new container unless it runs, then run its `ztd.activate`, if it has one.
    async fn bring_up(
        &self,
        service: &str,
        new: &ContainerInfo,
        settings: &ServiceSettings,
    ) -> Result<Option<f64>> {
        let current = self.engine.inspect(&new.id).await?;
        let mut start_ms = None;
        if !current.state.is_up() {
            let starting = Instant::now();
            self.engine.start(&new.id).await?;
            start_ms = Some(millis_since(starting));
        }
        if let Some(activate) = &settings.activate {
            let out = self
                .engine
                .exec(&new.id, activate, self.opts.drain_timeout)
                .await?;
            if out.exit_code != Some(0) {
                return Err(command_failed(service, "ztd.activate", &new.name, &out));
            }
        }
        Ok(start_ms)
    }

    /// Wait until the handed-over service is healthy in the new color.
    async fn wait_healthy(&self, service: &str, new: &ContainerInfo) -> Result<()> {
        let target = Target {
            stack: self.stack,
            color: self.plan.to,
            active: true,
            service: Some(service),
        };
        let report = health::wait(
            self.engine,
            &target,
            &self.opts.policy,
            self.opts.health_deadline,
        )
        .await?;
        if !report.healthy() {
            return Err(Error::Engine(format!(
                "{service}: {} is not healthy after the handover: {}",
                new.name,
                report.summary_line()
            )));
        }
        Ok(())
    }

    /// The host ports `service` publishes itself, closed during its handover.
    fn port_gap(&self, service: &str) -> Option<PortGap> {
        self.plan
            .to_meta
            .service(service)
            .filter(|s| !s.direct_ports.is_empty())
            .map(|s| PortGap {
                ports: s.direct_ports.clone(),
                note: PortGap::NOTE.into(),
            })
    }
}

impl<E: Engine> Run<'_, E> {
    /// Stop what is left of the old side. Every container is tried; the first failure is
    /// returned once all were.
    async fn stop_old(&mut self) -> Result<()> {
        let remaining: Vec<ContainerInfo> = self
            .plan
            .old
            .iter()
            .filter(|c| c.state.is_up())
            .cloned()
            .collect();
        stop_all(self.engine, self.opts, &remaining).await
    }

    async fn record(&mut self) -> Result<()> {
        self.journal.start(self.stack, JournalStepName::Record)?;
        fault::point("record:start");
        let images: BTreeMap<String, String> = self
            .plan
            .new
            .iter()
            .map(|c| (c.service.clone(), c.image_id.clone()))
            .collect();
        record_move(
            self.stack,
            self.plan.operation,
            self.plan.from,
            self.plan.to,
            images,
            &SwitchDetails {
                adopted: &self.plan.adopting,
                version: &self.plan.to_meta.build.version,
                handovers: &self.handovers,
                ports_gap_ms: self.ports_gap_ms,
            },
        )?;
        self.journal
            .mark(self.stack, &JournalStepName::Record, StepState::Done)?;
        fault::point("record:done");
        Ok(())
    }

    async fn undo(&mut self) -> Result<()> {
        while let Some(done) = self.done.pop() {
            match done {
                Done::Handover { old, new } => {
                    let stopped = self.retire(&self.engine.inspect(&new.id).await?).await;
                    stopped?;
                    if let Some(old) = old {
                        self.engine
                            .set_restart_policy(&old.id, &old.restart_policy)
                            .await?;
                        self.engine.start(&old.id).await?;
                        let settings = old.settings_or_default();
                        if let Some(activate) = &settings.activate {
                            self.engine
                                .exec(&old.id, activate, self.opts.drain_timeout)
                                .await?;
                        }
                        info!("{}: {} is back", old.service, old.name);
                        fault::point(&format!("undo:handover:{}:done", old.service));
                    }
                }
                Done::Proxy => {
                    fault::point("undo:proxy:start");
                    let proxy = Proxy::new(self.engine, self.stack);
                    let (listeners, color) = match (&self.plan.from_meta, self.plan.from) {
                        (Some(meta), Some(from)) => (meta.listeners.clone(), Some(from)),
                        _ => (self.plan.to_meta.listeners.clone(), None),
                    };
                    let routes = proxy::routes_to(&listeners, color);
                    proxy
                        .point_to(&routes, color, &BTreeMap::new(), self.opts.drain_timeout)
                        .await?;
                    info!(
                        "proxy serves {} again",
                        color.map_or("nothing".into(), |c| c.to_string())
                    );
                }
                Done::Adopted { holders } => {
                    give_back_ports(self.engine, self.stack, self.opts, &holders).await?;
                }
                Done::StoppedOld { stopped } => self.start_again(&stopped).await?,
            }
        }
        if self.plan.operation == Operation::Rollback {
            // The color a rollback was bringing back goes back to rest, as it was before.
            for container in &self.plan.new {
                match self.engine.inspect(&container.id).await {
                    Ok(current) => self.retire(&current).await?,
                    Err(Error::NotFound(_)) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        for step in &mut self.journal.steps {
            if step.state == StepState::Done || step.state == StepState::Started {
                step.state = StepState::Undone;
            }
        }
        Ok(())
    }

    /// Start again what was stopped of the old color, as it was, and wait until each of its
    /// services is healthy there before the proxy is pointed back.
    async fn start_again(&self, stopped: &[ContainerInfo]) -> Result<()> {
        for container in stopped {
            self.engine
                .set_restart_policy(&container.id, &container.restart_policy)
                .await?;
        }
        for started in join_all(stopped.iter().map(|c| self.engine.start(&c.id))).await {
            started?;
        }
        let Some(from) = self.plan.from else {
            return Ok(());
        };
        let mut services: Vec<&str> = stopped.iter().map(|c| c.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        // They ran a moment ago: their HEALTHCHECK and probes decide, not a minimum uptime.
        let policy = HealthPolicy {
            min_uptime: Duration::ZERO,
            ..self.opts.policy.clone()
        };
        let policy = &policy;
        let waits = services.iter().map(|service| {
            let target = Target {
                stack: self.stack,
                color: from,
                active: true,
                service: Some(service),
            };
            async move {
                let report =
                    health::wait(self.engine, &target, policy, self.opts.health_deadline).await?;
                if !report.healthy() {
                    warn!(
                        "{service} is not healthy again in {from}: {}",
                        report.summary_line()
                    );
                }
                Ok::<_, Error>(())
            }
        });
        for waited in join_all(waits).await {
            waited?;
        }
        info!("{} started again in {from}", services.join(", "));
        Ok(())
    }

    fn report(&self, undone: Option<String>, started: Instant) -> MoveReport {
        MoveReport {
            from: self.plan.from,
            to: self.plan.to,
            active: if undone.is_none() {
                Some(self.plan.to)
            } else {
                self.plan.from
            },
            adopted: self.plan.adopting.clone(),
            undone,
            version: self.plan.to_meta.build.version.clone(),
            steps: self.steps.clone(),
            proxy: self.proxy.clone(),
            ports_gap_ms: self.ports_gap_ms,
            handovers: self.handovers.clone(),
            hooks: Vec::new(),
            background_stop: None,
            duration_ms: millis_since(started),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::report::{Report, json_line};

    fn stack() -> Stack {
        Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        }
    }

    fn moved(undone: Option<&str>) -> MoveReport {
        MoveReport {
            from: Some(Color::Green),
            to: Color::Blue,
            active: Some(if undone.is_some() {
                Color::Green
            } else {
                Color::Blue
            }),
            adopted: None,
            undone: undone.map(str::to_string),
            version: "blue-20261126-034801".into(),
            steps: Steps::default(),
            proxy: Some(ProxySwitch {
                generation: 1,
                reload_ms: 73.5,
                confirm_ms: 21.3,
                drain_ms: 12.0,
            }),
            ports_gap_ms: None,
            handovers: vec![HandoverReport {
                service: "bot".into(),
                old: Some("bot-green".into()),
                new: "bot-blue".into(),
                drain_exit_code: Some(0),
                stop_ms: 111.3,
                gap_ms: 240.9,
                start_ms: None,
                healthy_ms: 1067.9,
                port_gap: Some(PortGap {
                    ports: vec![8443],
                    note: PortGap::NOTE.into(),
                }),
            }],
            hooks: Vec::new(),
            background_stop: None,
            duration_ms: 1802.4,
        }
    }

    fn keys(line: &str) -> Vec<String> {
        let object: Map<String, Value> = serde_json::from_str(line).expect("object");
        object.keys().cloned().collect()
    }

    fn round_trip(outcome: SwitchOutcome) -> (String, Report<SwitchOutcome>) {
        let report = Report::new("ztd-switch", &stack(), outcome.target(), outcome);
        let line = json_line(&report);
        let decoded: Report<SwitchOutcome> = serde_json::from_str(&line).expect("decode");
        (line, decoded)
    }

    #[test]
    fn a_switch_report_has_its_fields_in_order_and_decodes_back() {
        let (line, decoded) = round_trip(SwitchOutcome::Switched(moved(None)));
        assert_eq!(
            keys(&line),
            [
                "tool",
                "project",
                "project_dir",
                "ok",
                "target",
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
                "duration_ms"
            ]
        );
        assert!(line.contains("\"ok\":true,\"target\":\"blue\","), "{line}");
        assert_eq!(decoded.body, SwitchOutcome::Switched(moved(None)));
        assert_eq!(decoded.status(), ExitStatus::Success);
        let value: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(
            value["handovers"][0]["port_gap"],
            json!({"ports": [8443], "note": PortGap::NOTE})
        );
    }

    #[test]
    fn undone_and_interrupted_switches_say_why_and_answer_1_and_130() {
        let (line, decoded) = round_trip(SwitchOutcome::Undone(moved(Some("bot: failed"))));
        assert!(line.contains("\"ok\":false,\"target\":\"blue\","), "{line}");
        assert!(line.contains("\"active\":\"green\""), "{line}");
        assert_eq!(
            decoded.body,
            SwitchOutcome::Undone(moved(Some("bot: failed")))
        );
        assert_eq!(decoded.status(), ExitStatus::Negative);
        let interrupted = SwitchOutcome::Interrupted(moved(Some("interrupted by a signal")));
        assert_eq!(interrupted.status(), ExitStatus::Interrupted);
        let (_, decoded) = round_trip(interrupted);
        assert_eq!(
            decoded.status(),
            ExitStatus::Negative,
            "JSON cannot say 130"
        );
    }

    #[test]
    fn a_refusal_keeps_its_fields_and_the_embedded_health_report() {
        let refusal = Refusal {
            from: None,
            to: Color::Green,
            active: None,
            refused: "green is not healthy: green: 1/3 containers unhealthy".into(),
            health: HealthReport::new(Color::Green, Vec::new(), Some("no containers".into())),
            hooks: Vec::new(),
            duration_ms: 12.5,
        };
        let (line, decoded) = round_trip(SwitchOutcome::Refused(refusal.clone()));
        assert_eq!(
            keys(&line),
            [
                "tool",
                "project",
                "project_dir",
                "ok",
                "target",
                "from",
                "to",
                "active",
                "refused",
                "health",
                "duration_ms"
            ]
        );
        assert!(line.contains("\"from\":null"), "{line}");
        assert_eq!(decoded.body, SwitchOutcome::Refused(refusal));
        assert_eq!(decoded.status(), ExitStatus::Negative);
    }

    #[test]
    fn hooks_that_ran_are_listed_before_the_duration_and_refuse_by_name() {
        let mut report = moved(None);
        report.hooks = vec![HookReport {
            service: "web".into(),
            hook: HookKind::PostSwitch,
            exit_code: Some(2),
            duration_ms: 310.0,
        }];
        let (line, decoded) = round_trip(SwitchOutcome::Switched(report.clone()));
        let fields = keys(&line);
        assert_eq!(fields[fields.len() - 2..], ["hooks", "duration_ms"]);
        assert!(
            line.contains(r#""hooks":[{"service":"web","hook":"post-switch","exit_code":2,"duration_ms":310.0}]"#),
            "{line}"
        );
        assert_eq!(decoded.body, SwitchOutcome::Switched(report));
        assert_eq!(
            decoded.status(),
            ExitStatus::Success,
            "a post-switch hook only warns"
        );

        let failed = HookReport {
            service: "web".into(),
            hook: HookKind::PreSwitch,
            exit_code: Some(1),
            duration_ms: 250.0,
        };
        let health = HealthReport::new(Color::Blue, Vec::new(), None);
        let refusal = Refusal::hook_failed(
            Some(Color::Green),
            Color::Blue,
            &health,
            vec![failed],
            Instant::now(),
        );
        assert_eq!(
            refusal.refused,
            "blue is not switched to: the pre-switch hook of web exited 1"
        );
        assert_eq!(refusal.active, Some(Color::Green));
        let (line, decoded) = round_trip(SwitchOutcome::Refused(refusal.clone()));
        assert!(
            line.contains(r#""hook":"pre-switch","exit_code":1"#),
            "{line}"
        );
        assert_eq!(decoded.body, SwitchOutcome::Refused(refusal));
        assert_eq!(decoded.status(), ExitStatus::Negative);
    }

    #[test]
    fn journal_step_names_are_the_report_step_names() {
        assert_eq!(JournalStepName::Proxy.to_string(), "proxy");
        assert_eq!(
            JournalStepName::Handover("bot".into()).to_string(),
            "handover:bot"
        );
        assert_eq!(JournalStepName::StopOld.to_string(), "stop_old");
    }
}
