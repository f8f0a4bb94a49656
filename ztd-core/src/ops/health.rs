//! Health: every container of a color checked at once (run state, Docker's HEALTHCHECK,
//! restarts, HTTP and TCP probes, log errors, memory, CPU), and a wait that re-checks on engine
//! events and short probe ticks until the color is healthy or the deadline passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, future::join_all};
use serde::{Deserialize, Serialize};

use crate::detect::detect;
use crate::engine::{ContainerInfo, ContainerQuery, DockerHealth, Engine, LogQuery, RunState};
use crate::error::{Error, ExitStatus, Result};
use crate::labels::{self, ServiceSettings, SwitchMode};
use crate::probe::{self, ProbeKind, ProbeResult};
use crate::report::Outcome;
use crate::stack::{Color, Stack};
use crate::state;
use crate::units::{MemoryLimit, format_bytes, format_duration, millis};

/// How often a wait re-runs probes and uptime checks between engine events.
const PROBE_TICK: Duration = Duration::from_millis(100);
/// The tick while a container polled was started within [`JUST_STARTED`].
const FRESH_PROBE_TICK: Duration = Duration::from_millis(20);
/// How long after its start a container counts as just started.
const JUST_STARTED: Duration = Duration::from_secs(3);
/// How often a wait re-checks at the latest, in case an engine event was missed.
const SAFETY_TICK: Duration = Duration::from_secs(1);

/// The thresholds of a health check; per-service `ztd.*` labels override them.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// A container with no HEALTHCHECK and no probe passes once up this long.
    pub min_uptime: Duration,
    /// Connect and read timeout of each probe.
    pub probe_timeout: Duration,
    /// Restarts allowed.
    pub max_restarts: u64,
    /// Error lines allowed; `None`: any error line is a warning, never a failure.
    pub max_log_errors: Option<u64>,
    /// Memory ceiling; `None`: memory is not sampled. (The engine answers a stats request only
    /// at its next collection tick, up to a second away, so resources are read only when a
    /// ceiling asks for them.)
    pub max_memory: Option<MemoryLimit>,
    /// CPU ceiling in percent of one core; `None`: CPU is not sampled.
    pub max_cpu: Option<f64>,
    /// How long CPU is sampled when a ceiling is set.
    pub cpu_window: Duration,
    /// The most log lines read per container.
    pub log_tail: usize,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            min_uptime: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
            max_restarts: 0,
            max_log_errors: None,
            max_memory: None,
            max_cpu: None,
            cpu_window: Duration::from_millis(500),
            log_tail: 10_000,
        }
    }
}

/// Whether a container is a handover service waiting, not started, for its switch: a
/// `ztd.switch=handover` service without `ztd.activate`, not up, in a color that is not the
/// active one. It is standby, not a failure (with `ztd.activate` it runs in standby and is
/// judged like any other container).
pub fn waits_for_handover(
    container: &ContainerInfo,
    settings: &ServiceSettings,
    color_is_active: bool,
) -> bool {
    settings.switch == SwitchMode::Handover
        && settings.activate.is_none()
        && !color_is_active
        && !container.state.is_up()
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Not applicable or not reached.
    Skip,
    /// Passed.
    Pass,
    /// Passed with a warning.
    Warn,
    /// Failed.
    Fail,
}

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The run state.
    Running,
    /// Docker's HEALTHCHECK.
    DockerHealth,
    /// The restart count.
    Restarts,
    /// The HTTP probe.
    Http,
    /// The TCP probe.
    Tcp,
    /// The minimum uptime of a container with no HEALTHCHECK and no probe.
    Uptime,
    /// Error lines in the log.
    LogErrors,
    /// Memory against its ceiling.
    Memory,
    /// CPU against its ceiling.
    Cpu,
}

/// One check of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What it looks at.
    pub name: CheckName,
    /// Its verdict.
    pub status: CheckStatus,
    /// What it saw.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
}

/// The verdict on one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Every check passed.
    Healthy,
    /// Passed, with warnings.
    Warning,
    /// A check failed.
    Unhealthy,
    /// A handover service of a color that is not active, created and waiting for the switch.
    Standby,
}

/// One container's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerHealth {
    /// Container name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Run state.
    pub state: RunState,
    /// Docker's HEALTHCHECK status.
    pub health: DockerHealth,
    /// The verdict.
    pub status: ContainerStatus,
    /// Every check.
    pub checks: Vec<Check>,
    /// Whether waiting longer cannot help (exited for good, restarted too often, a final check).
    #[serde(skip)]
    pub settled: bool,
    /// When the uptime check will pass, if that is all it waits for.
    #[serde(skip)]
    pub uptime_due_in: Option<Duration>,
    /// Whether a probe or uptime check is pending (polled, not announced by events).
    #[serde(skip)]
    pub polls: bool,
    /// Whether it started moments ago (its probes are polled on a shorter tick).
    #[serde(skip)]
    pub just_started: bool,
}

impl ContainerHealth {
    /// The first failed or warning check, for one-line summaries.
    pub fn reason(&self) -> Option<String> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, CheckStatus::Fail | CheckStatus::Warn))
            .max_by_key(|c| c.status)
            .map(|c| c.detail.clone())
    }

    /// Whether the check of this name has one of these verdicts.
    pub fn has(&self, name: CheckName, statuses: &[CheckStatus]) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && statuses.contains(&c.status))
    }
}

/// The overall word on a color.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Healthy, no warnings.
    Healthy,
    /// Healthy, with warnings.
    Warning,
    /// Not healthy.
    Unhealthy,
}

/// How many containers got each verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// All of them.
    pub containers: usize,
    /// Healthy.
    pub healthy: usize,
    /// Healthy with warnings.
    pub warning: usize,
    /// Unhealthy.
    pub unhealthy: usize,
    /// Waiting for their handover.
    pub standby: usize,
}

/// The report on one color.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The color checked.
    pub color: Color,
    /// At least one container, none unhealthy, no problem.
    pub healthy: bool,
    /// The overall word.
    pub status: HealthStatus,
    /// Why the color is unhealthy when no single container says so (no containers).
    pub problem: Option<String>,
    /// The count of each verdict.
    pub summary: Summary,
    /// How long the check (or the whole wait) took, in milliseconds.
    pub duration_ms: f64,
    /// How many rounds a wait ran.
    pub rounds: u32,
    /// Every container.
    pub containers: Vec<ContainerHealth>,
}

impl HealthReport {
    /// The report on `color` from its containers' verdicts (`problem` when it has none).
    pub fn new(
        color: Color,
        containers: Vec<ContainerHealth>,
        problem: Option<String>,
    ) -> HealthReport {
        let count = |status| containers.iter().filter(|c| c.status == status).count();
        let summary = Summary {
            containers: containers.len(),
            healthy: count(ContainerStatus::Healthy),
            warning: count(ContainerStatus::Warning),
            unhealthy: count(ContainerStatus::Unhealthy),
            standby: count(ContainerStatus::Standby),
        };
        let healthy = problem.is_none() && !containers.is_empty() && summary.unhealthy == 0;
        let status = match (healthy, summary.warning) {
            (false, _) => HealthStatus::Unhealthy,
            (true, 0) => HealthStatus::Healthy,
            (true, _) => HealthStatus::Warning,
        };
        HealthReport {
            color,
            healthy,
            status,
            problem,
            summary,
            duration_ms: 0.0,
            rounds: 0,
            containers,
        }
    }

    /// Healthy: at least one container, none unhealthy.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Count of containers with a verdict.
    pub fn count(&self, status: ContainerStatus) -> usize {
        self.containers
            .iter()
            .filter(|c| c.status == status)
            .count()
    }

    /// One line for humans and monitoring systems.
    pub fn summary_line(&self) -> String {
        let total = self.containers.len();
        if let Some(problem) = &self.problem {
            return format!("{}: {problem}", self.color);
        }
        let with = |status: ContainerStatus| -> Vec<String> {
            self.containers
                .iter()
                .filter(|c| c.status == status)
                .map(|c| format!("{}: {}", c.name, c.reason().unwrap_or_default()))
                .collect()
        };
        let bad = with(ContainerStatus::Unhealthy);
        if !bad.is_empty() {
            return format!(
                "{}: {}/{total} containers unhealthy ({})",
                self.color,
                bad.len(),
                bad.join("; ")
            );
        }
        let warned = with(ContainerStatus::Warning);
        let up = total - self.count(ContainerStatus::Standby);
        if warned.is_empty() {
            format!("{}: {up}/{total} containers healthy", self.color)
        } else {
            format!(
                "{}: {up}/{total} containers up, {} with warnings ({})",
                self.color,
                warned.len(),
                warned.join("; ")
            )
        }
    }
}

/// ztd-health's report body: the color it checked, or that nothing is deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HealthBody {
    /// A color was checked, once or until healthy.
    Checked {
        /// Whether it waited (`--wait`).
        waited: bool,
        /// What it found.
        #[serde(flatten)]
        report: HealthReport,
    },
    /// No color named and none active: nothing to check.
    NothingDeployed(NothingDeployed),
}

/// The body of a ztd-health that found nothing to check: no color, unhealthy, no containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NothingDeployed {
    /// Always none.
    pub color: Option<Color>,
    /// Always false.
    pub healthy: bool,
    /// Always unhealthy.
    pub status: HealthStatus,
    /// `nothing is deployed`.
    pub problem: String,
    /// Always empty.
    pub containers: Vec<ContainerHealth>,
}

impl Default for NothingDeployed {
    fn default() -> Self {
        NothingDeployed {
            color: None,
            healthy: false,
            status: HealthStatus::Unhealthy,
            problem: "nothing is deployed".into(),
            containers: Vec::new(),
        }
    }
}

impl HealthBody {
    /// The color checked, handed on as the report's `target`.
    pub fn color(&self) -> Option<Color> {
        match self {
            HealthBody::Checked { report, .. } => Some(report.color),
            HealthBody::NothingDeployed(_) => None,
        }
    }
}

impl Outcome for HealthBody {
    /// 0 healthy (warnings allowed), 1 unhealthy or nothing deployed.
    fn status(&self) -> ExitStatus {
        match self {
            HealthBody::Checked { report, .. } if report.healthy() => ExitStatus::Success,
            _ => ExitStatus::Negative,
        }
    }
}

/// The color to act on and whether it is the active one: `requested`, else the active color;
/// `None` when none was named and nothing is deployed. Not knowing which color is active is a
/// state error.
pub async fn color_to_check<E: Engine>(
    engine: &E,
    stack: &Stack,
    requested: Option<Color>,
) -> Result<Option<(Color, bool)>> {
    if let Some(color) = requested {
        let state_file = state::read_state(stack)?;
        let candidate = state_file.as_ref().and_then(|s| s.candidate);
        let recorded = state::read_current_deployment(stack)?.or(state_file.and_then(|s| s.active));
        let active = match recorded {
            Some(active) => active == color,
            None => candidate != Some(color),
        };
        return Ok(Some((color, active)));
    }
    let detection = detect(engine, stack).await?;
    if let Some(conflict) = detection.conflict {
        return Err(Error::State(format!(
            "cannot tell which color is active: {conflict}; name a color"
        )));
    }
    Ok(detection.active.map(|active| (active, true)))
}

/// How long ztd-health looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looking {
    /// One check, given up (exit 3) if it takes longer than the timeout, as a monitoring
    /// plugin's `-t`.
    Once {
        /// The longest the check may take.
        timeout: Option<Duration>,
    },
    /// Until healthy or until the deadline.
    Wait {
        /// When the wait gives up unhealthy.
        deadline: Duration,
    },
}

/// ztd-health: check `requested` (else the active color) once or until healthy, handing each
/// round of a wait and the time left to `observe`. Nothing deployed is an answer, not an error.
pub async fn run<E: Engine>(
    engine: &E,
    stack: &Stack,
    requested: Option<Color>,
    policy: &HealthPolicy,
    looking: Looking,
    observe: impl FnMut(&HealthReport, Duration),
) -> Result<HealthBody> {
    if let Looking::Once {
        timeout: Some(limit),
    } = looking
    {
        let once = Looking::Once { timeout: None };
        let checked = Box::pin(run(engine, stack, requested, policy, once, observe));
        return tokio::time::timeout(limit, checked)
            .await
            .unwrap_or_else(|_| {
                Err(Error::EngineUnreachable(format!(
                    "the health check took longer than its timeout ({})",
                    format_duration(limit)
                )))
            });
    }
    let Some((color, active)) = color_to_check(engine, stack, requested).await? else {
        return Ok(HealthBody::NothingDeployed(NothingDeployed::default()));
    };
    let target = Target {
        stack,
        color,
        active,
        service: None,
    };
    let report = match looking {
        Looking::Wait { deadline } => {
            crate::info!(
                "waiting up to {} for {color} to become healthy",
                format_duration(deadline)
            );
            wait_observed(engine, &target, policy, deadline, observe).await?
        }
        Looking::Once { .. } => check(engine, &target, policy).await?,
    };
    if report.healthy() {
        crate::info!("{}", report.summary_line());
    } else {
        crate::warn!("{}", report.summary_line());
    }
    Ok(HealthBody::Checked {
        waited: matches!(looking, Looking::Wait { .. }),
        report,
    })
}

/// How deep one round of checks goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// State, HEALTHCHECK, restarts, probes, uptime: what a wait polls.
    Quick,
    /// Everything, logs and resources included.
    Full,
}

/// What a health check needs to know of the stack.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The stack.
    pub stack: &'a Stack,
    /// The color to check.
    pub color: Color,
    /// Whether that color is the active one (a standby handover service is then not expected).
    pub active: bool,
    /// Only this service, if set.
    pub service: Option<&'a str>,
}

/// Check every container of a color once.
pub async fn check<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
) -> Result<HealthReport> {
    let started = Instant::now();
    let mut report = round(engine, target, policy, Depth::Full).await?;
    report.duration_ms = millis(started.elapsed());
    report.rounds = 1;
    Ok(report)
}

/// Check until healthy or until `deadline` has passed; returns as soon as the color is healthy.
/// Re-checks when the engine reports a change to one of the color's containers, on a short tick
/// while a probe or an uptime check is pending, and at the moment an uptime check comes due.
pub async fn wait<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    deadline: Duration,
) -> Result<HealthReport> {
    wait_observed(engine, target, policy, deadline, |_, _| {}).await
}

/// [`wait`], handing each unsettled round and the time left to `observe`.
pub async fn wait_observed<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    deadline: Duration,
    mut observe: impl FnMut(&HealthReport, Duration),
) -> Result<HealthReport> {
    let started = Instant::now();
    let query = ContainerQuery::project(&target.stack.color_project(target.color));
    let mut events = engine.events(&query).await?;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let containers = color_containers(engine, target).await?;
        let quick = round_on(engine, target, policy, Depth::Quick, &containers).await?;
        // Healthy: the full round looks again (logs and resources too) at the containers just
        // listed, milliseconds ago.
        let mut report = if quick.healthy() {
            round_on(engine, target, policy, Depth::Full, &containers).await?
        } else {
            quick
        };
        let elapsed = started.elapsed();
        let settled =
            report.healthy() || report.containers.iter().any(|c| c.settled) || elapsed >= deadline;
        if settled {
            report.duration_ms = millis(elapsed);
            report.rounds = rounds;
            return Ok(report);
        }
        observe(&report, deadline - elapsed);
        let pause = next_pause(&report).min(deadline - elapsed);
        crate::debug!(
            "{}: not healthy yet ({}); next check within {}",
            target.color,
            report.summary_line(),
            format_duration(pause)
        );
        tokio::select! {
            event = events.next() => {
                match event {
                    Some(Ok(event)) => crate::debug!("event: {} {}", event.container_name, event.action),
                    // The event stream broke: fall back to ticks.
                    Some(Err(_)) | None => {
                        events = futures_util::stream::pending().boxed();
                    }
                }
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// How long a wait may sleep before the next round: a short tick while something is polled,
/// the safety tick otherwise, and never past the moment an uptime check comes due.
fn next_pause(report: &HealthReport) -> Duration {
    let polls = report.problem.is_some() || report.containers.iter().any(|c| c.polls);
    // A container polled within its first seconds is about to answer: look again soon.
    let fresh = report.containers.iter().any(|c| c.polls && c.just_started);
    let pause = if fresh {
        FRESH_PROBE_TICK
    } else if polls {
        PROBE_TICK
    } else {
        SAFETY_TICK
    };
    match report
        .containers
        .iter()
        .filter_map(|c| c.uptime_due_in)
        .min()
    {
        Some(due) => pause.min(due + Duration::from_millis(5)),
        None => pause,
    }
}

async fn round<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    depth: Depth,
) -> Result<HealthReport> {
    let containers = color_containers(engine, target).await?;
    round_on(engine, target, policy, depth, &containers).await
}

/// The containers of the target's color (of its one service, if set), one-off runs left out.
async fn color_containers<E: Engine>(
    engine: &E,
    target: &Target<'_>,
) -> Result<Vec<ContainerInfo>> {
    let project = target.stack.color_project(target.color);
    let mut query = ContainerQuery::project(&project);
    // One service (a handover's wait): the engine picks its containers, so that a wait on one
    // singleton does not inspect every container of the color on each round.
    if let Some(service) = target.service {
        query
            .labels
            .push(format!("{}={service}", labels::DEPLOYMENT_SERVICE));
    }
    Ok(engine
        .list(&query)
        .await?
        .into_iter()
        .filter(|c| c.labels.get(labels::COMPOSE_ONEOFF).map(String::as_str) != Some("True"))
        .filter(|c| target.service.is_none_or(|s| s == c.service))
        .collect())
}

/// One round of checks on `containers`, the target's as just listed.
async fn round_on<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    depth: Depth,
    containers: &[ContainerInfo],
) -> Result<HealthReport> {
    let project = target.stack.color_project(target.color);
    let mut settings = BTreeMap::new();
    for container in containers {
        settings.insert(container.id.clone(), container.settings()?);
    }
    let checks = containers.iter().map(|container| {
        check_container(
            engine,
            container,
            &settings[&container.id],
            policy,
            depth,
            target.active,
        )
    });
    let reports = join_all(checks).await;
    let problem = containers
        .is_empty()
        .then(|| format!("no containers in Compose project {project}"));
    Ok(HealthReport::new(target.color, reports, problem))
}

struct Timer(Instant);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now())
    }
    fn check(&self, name: CheckName, status: CheckStatus, detail: String) -> Check {
        Check {
            name,
            status,
            detail,
            duration_ms: millis(self.0.elapsed()),
        }
    }
}

/// A container's report from its checks: unhealthy on any failure, a warning on any warning.
fn container_health(
    container: &ContainerInfo,
    checks: Vec<Check>,
    status: Option<ContainerStatus>,
    settled: bool,
) -> ContainerHealth {
    let status = status.unwrap_or_else(|| {
        if checks.iter().any(|c| c.status == CheckStatus::Fail) {
            ContainerStatus::Unhealthy
        } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
            ContainerStatus::Warning
        } else {
            ContainerStatus::Healthy
        }
    });
    ContainerHealth {
        name: container.name.clone(),
        service: container.service.clone(),
        state: container.state,
        health: container.health,
        status,
        checks,
        settled,
        uptime_due_in: None,
        polls: false,
        just_started: false,
    }
}

async fn check_container<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
    depth: Depth,
    color_is_active: bool,
) -> ContainerHealth {
    if waits_for_handover(container, settings, color_is_active) {
        return standby_health(container);
    }
    // The run state and the restarts: a container that does not run stops here.
    let now = Utc::now();
    let (running, exited_for_good) = running_check(container, now);
    let (restarts, restarted_too_often) = restarts_check(container, settings, policy);
    let mut settled = exited_for_good || restarted_too_often;
    let mut checks = vec![running, restarts];
    if container.state != RunState::Running {
        let unhealthy = Some(ContainerStatus::Unhealthy);
        return container_health(container, checks, unhealthy, settled);
    }
    // HEALTHCHECK, probes, and in a full round the log and resources, all at once.
    let full = depth == Depth::Full;
    let (docker_health, probes, logs, resources) = tokio::join!(
        docker_health_check(engine, container, settings),
        probe_checks(engine, container, settings, policy),
        async { full.then_some(log_check(engine, container, settings, policy).await) },
        async {
            if full {
                resource_checks(engine, container, settings, policy).await
            } else {
                Vec::new()
            }
        },
    );
    let probed = probes.iter().any(|c| c.status != CheckStatus::Skip);
    // A HEALTHCHECK ztd runs itself while Docker says `starting` is polled like a probe.
    let mut polls = probes.iter().any(|c| c.status == CheckStatus::Fail)
        || (docker_health.status == CheckStatus::Fail
            && runs_healthcheck_early(container, settings));
    checks.push(docker_health);
    checks.extend(probes);
    // No HEALTHCHECK and no probe: the uptime decides.
    let mut uptime_due_in = None;
    if container.health == DockerHealth::None && !probed {
        let (uptime, due) = uptime_check(container, settings, policy, now);
        polls |= due.is_some();
        uptime_due_in = due;
        checks.push(uptime);
    }
    // Log errors, memory and CPU do not get better by waiting: a failure there is final.
    let quick_failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    checks.extend(logs);
    checks.extend(resources);
    let failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    settled |= failed && !quick_failed;
    let mut health = container_health(container, checks, None, settled);
    health.uptime_due_in = uptime_due_in;
    health.polls = polls;
    health.just_started = container.uptime(now).is_some_and(|up| up < JUST_STARTED);
    health
}

/// A handover service waiting for its switch: standby, its run state skipped.
fn standby_health(container: &ContainerInfo) -> ContainerHealth {
    let state = format!("{:?}", container.state).to_lowercase();
    let detail = format!("{state}, waiting for its handover");
    let check = Timer::start().check(CheckName::Running, CheckStatus::Skip, detail);
    container_health(
        container,
        vec![check],
        Some(ContainerStatus::Standby),
        false,
    )
}

/// The `running` check, and whether the container exited for good (no restart will come).
fn running_check(container: &ContainerInfo, now: DateTime<Utc>) -> (Check, bool) {
    let timer = Timer::start();
    let mut exited_for_good = false;
    let detail = match container.state {
        RunState::Running => format!(
            "running for {}",
            container
                .uptime(now)
                .map(format_duration)
                .unwrap_or_else(|| "?".into())
        ),
        RunState::Restarting => "restarting (crash loop)".into(),
        RunState::Exited | RunState::Dead => {
            let word = if container.state == RunState::Dead {
                "dead"
            } else {
                "exited"
            };
            let mut detail = format!("{word} with code {}", container.exit_code.unwrap_or(-1));
            if container.oom_killed {
                detail.push_str(" (killed for lack of memory)");
            }
            exited_for_good = !container.will_restart();
            detail
        }
        RunState::Created => "created, not started".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    let status = if container.state == RunState::Running {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    };
    (
        timer.check(CheckName::Running, status, detail),
        exited_for_good,
    )
}

/// The `restarts` check, and whether it failed (restarts only grow).
fn restarts_check(
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> (Check, bool) {
    let timer = Timer::start();
    let max_restarts = settings.max_restarts.unwrap_or(policy.max_restarts);
    let count = container.restart_count;
    if count > max_restarts {
        let detail = format!("restarted {count} times (allowed {max_restarts})");
        (
            timer.check(CheckName::Restarts, CheckStatus::Fail, detail),
            true,
        )
    } else {
        let detail = format!("restarted {count} times");
        (
            timer.check(CheckName::Restarts, CheckStatus::Pass, detail),
            false,
        )
    }
}

/// Docker's HEALTHCHECK status. While it says `starting` (the engine runs the first check only
/// an `interval` after the start), ztd runs the same command itself, as the engine would, so a
/// wait ends when the check passes rather than at the engine's next interval.
async fn docker_health_check<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
) -> Check {
    let timer = Timer::start();
    let (status, detail) = match container.health {
        DockerHealth::None => (CheckStatus::Skip, "no HEALTHCHECK".to_string()),
        DockerHealth::Starting => match &container.healthcheck {
            Some(command) if runs_healthcheck_early(container, settings) => {
                run_healthcheck(engine, container, command).await
            }
            _ => (CheckStatus::Fail, "starting".to_string()),
        },
        DockerHealth::Healthy => (CheckStatus::Pass, "healthy".to_string()),
        DockerHealth::Unhealthy => (CheckStatus::Fail, "unhealthy".to_string()),
    };
    timer.check(CheckName::DockerHealth, status, detail)
}

/// Whether ztd runs this container's HEALTHCHECK itself while Docker says `starting`: it has
/// one, it runs, and its `ztd.health.early` label does not say `false`.
fn runs_healthcheck_early(container: &ContainerInfo, settings: &ServiceSettings) -> bool {
    container.health == DockerHealth::Starting
        && container.state == RunState::Running
        && container.healthcheck.is_some()
        && settings.health_early != Some(false)
}

/// Run a HEALTHCHECK command in the container: a pass on exit 0, as for the engine.
async fn run_healthcheck<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    command: &crate::engine::HealthcheckCommand,
) -> (CheckStatus, String) {
    match engine
        .exec(&container.id, &command.argv, command.timeout)
        .await
    {
        Ok(out) if out.exit_code == Some(0) => (
            CheckStatus::Pass,
            "starting; its HEALTHCHECK passes (run by ztd before the engine's first check)"
                .to_string(),
        ),
        Ok(out) => {
            let code = out
                .exit_code
                .map_or_else(|| "timed out".to_string(), |c| format!("exits {c}"));
            let said = crate::error::one_line(&out.output);
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            };
            (
                CheckStatus::Fail,
                format!("starting; its HEALTHCHECK {code} when run now{said}"),
            )
        }
        Err(err) => (
            CheckStatus::Fail,
            format!("starting; its HEALTHCHECK could not be run: {err}"),
        ),
    }
}

/// The `http` and `tcp` checks the probe labels ask for, sent at once.
async fn probe_checks<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> Vec<Check> {
    let remote = engine.remote_host();
    let targets = probe::probe_targets(container, settings, remote.as_deref());
    join_all(targets.iter().map(|target| async move {
        let timer = Timer::start();
        let name = match target.kind {
            ProbeKind::Http(_) => CheckName::Http,
            ProbeKind::Tcp => CheckName::Tcp,
        };
        match target.run(policy.probe_timeout).await {
            ProbeResult::Skipped(reason) => timer.check(name, CheckStatus::Skip, reason),
            ProbeResult::Done(outcome) if outcome.ok => {
                timer.check(name, CheckStatus::Pass, outcome.detail)
            }
            ProbeResult::Done(outcome) => timer.check(name, CheckStatus::Fail, outcome.detail),
        }
    }))
    .await
}

/// The `uptime` check, and how long until it passes when it does not yet.
fn uptime_check(
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
    now: DateTime<Utc>,
) -> (Check, Option<Duration>) {
    let timer = Timer::start();
    let needed = settings.min_uptime.unwrap_or(policy.min_uptime);
    let uptime = container.uptime(now).unwrap_or_default();
    if uptime >= needed {
        let detail = format!(
            "up {} (no healthcheck or probe; needs {})",
            format_duration(uptime),
            format_duration(needed)
        );
        (
            timer.check(CheckName::Uptime, CheckStatus::Pass, detail),
            None,
        )
    } else {
        let detail = format!(
            "up {}, needs {} (no healthcheck or probe)",
            format_duration(uptime),
            format_duration(needed)
        );
        let check = timer.check(CheckName::Uptime, CheckStatus::Fail, detail);
        (check, Some(needed - uptime))
    }
}

async fn log_check<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> Check {
    let timer = Timer::start();
    let query = LogQuery {
        since: container.run_log_start(),
        tail: Some(policy.log_tail),
    };
    let lines = match engine.logs(&container.id, query).await {
        Ok(lines) => lines,
        Err(err) => {
            return timer.check(
                CheckName::LogErrors,
                CheckStatus::Warn,
                format!("cannot read logs: {err}"),
            );
        }
    };
    let pattern = settings.error_pattern();
    let matching: Vec<&str> = lines
        .iter()
        .filter(|l| pattern.is_match(&l.text))
        .map(|l| l.text.as_str())
        .collect();
    let count = matching.len() as u64;
    if count == 0 {
        return timer.check(
            CheckName::LogErrors,
            CheckStatus::Pass,
            format!("no error lines in {} lines since start", lines.len()),
        );
    }
    let example: String = matching[0].chars().take(120).collect();
    let detail = format!("{count} error lines since start, e.g. {example:?}");
    let max = settings.max_log_errors.or(policy.max_log_errors);
    let status = match max {
        Some(max) if count > max => CheckStatus::Fail,
        Some(_) => CheckStatus::Pass,
        None => CheckStatus::Warn,
    };
    timer.check(CheckName::LogErrors, status, detail)
}

/// The `memory` and `cpu` checks, when a ceiling asks for them.
async fn resource_checks<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> Vec<Check> {
    let max_memory = settings.max_memory.or(policy.max_memory);
    let max_cpu = settings.max_cpu.or(policy.max_cpu);
    if max_memory.is_none() && max_cpu.is_none() {
        return Vec::new();
    }
    let timer = Timer::start();
    let first = match engine.stats(&container.id).await {
        Ok(sample) => sample,
        Err(err) => {
            return vec![timer.check(
                CheckName::Memory,
                CheckStatus::Warn,
                format!("cannot read stats: {err}"),
            )];
        }
    };
    let mut checks = Vec::new();
    if let Some(limit) = max_memory {
        let status = if limit.exceeded(first.memory_usage, first.memory_limit) {
            CheckStatus::Fail
        } else {
            CheckStatus::Pass
        };
        let detail = format!(
            "{} of {} ({:.1}%; allowed {limit})",
            format_bytes(first.memory_usage),
            format_bytes(first.memory_limit),
            first.memory_percent()
        );
        checks.push(timer.check(CheckName::Memory, status, detail));
    }
    if let Some(max_cpu) = max_cpu {
        checks.push(cpu_check(engine, container, &first, max_cpu, policy).await);
    }
    checks
}

/// CPU over `policy.cpu_window` since the `first` sample, against `max_cpu`.
async fn cpu_check<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    first: &crate::engine::ResourceSample,
    max_cpu: f64,
    policy: &HealthPolicy,
) -> Check {
    let timer = Timer::start();
    tokio::time::sleep(policy.cpu_window).await;
    let (status, detail) = match engine.stats(&container.id).await {
        Ok(second) => match second.cpu_percent_since(first) {
            Some(pct) => (
                if pct > max_cpu {
                    CheckStatus::Fail
                } else {
                    CheckStatus::Pass
                },
                format!(
                    "{pct:.1}% over {} (allowed {max_cpu}%)",
                    format_duration(policy.cpu_window)
                ),
            ),
            None => (CheckStatus::Warn, "no CPU figures from the engine".into()),
        },
        Err(err) => (CheckStatus::Warn, format!("cannot read stats: {err}")),
    };
    timer.check(CheckName::Cpu, status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ResourceSample;
    use crate::fake::{FakeEngine, container};

    fn stack() -> Stack {
        Stack {
            dir: std::env::temp_dir(),
            name: "shop".into(),
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn checked(engine: &FakeEngine, policy: &HealthPolicy) -> HealthReport {
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        run(check(engine, &target, policy)).expect("check")
    }

    fn check_named<'a>(report: &'a HealthReport, container: &str, name: CheckName) -> &'a Check {
        report
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| c.checks.iter().find(|k| k.name == name))
            .unwrap_or_else(|| panic!("no check {name:?} on {container}"))
    }

    #[test]
    fn the_report_prints_target_after_ok_then_its_fields_and_decodes_back() {
        use crate::report::{Report, json_line};
        let mut report = HealthReport::new(Color::Green, Vec::new(), Some("none".into()));
        report.duration_ms = 1.5;
        report.rounds = 1;
        let body = HealthBody::Checked {
            waited: true,
            report: report.clone(),
        };
        let printed = json_line(&Report::new(
            "ztd-health",
            &stack(),
            body.color(),
            body.clone(),
        ));
        let dir = serde_json::to_string(&stack().dir).expect("dir");
        assert_eq!(
            printed,
            format!(
                "{{\"tool\":\"ztd-health\",\"project\":\"shop\",\"project_dir\":{dir},\"ok\":false,\"target\":\"green\",\"waited\":true,\"color\":\"green\",\"healthy\":false,\"status\":\"unhealthy\",\"problem\":\"none\",\"summary\":{{\"containers\":0,\"healthy\":0,\"warning\":0,\"unhealthy\":0,\"standby\":0}},\"duration_ms\":1.5,\"rounds\":1,\"containers\":[]}}\n"
            )
        );
        let decoded: Report<HealthBody> = serde_json::from_str(&printed).expect("decode");
        assert_eq!(decoded.body, body);
        assert_eq!(decoded.envelope.target, Some(Color::Green));

        let none = HealthBody::NothingDeployed(NothingDeployed::default());
        let printed = json_line(&Report::new(
            "ztd-health",
            &stack(),
            none.color(),
            none.clone(),
        ));
        assert!(
            printed.ends_with(
                "\"ok\":false,\"target\":null,\"color\":null,\"healthy\":false,\"status\":\"unhealthy\",\"problem\":\"nothing is deployed\",\"containers\":[]}\n"
            ),
            "{printed}"
        );
        let decoded: Report<HealthBody> = serde_json::from_str(&printed).expect("decode");
        assert_eq!(decoded.body, none);
        assert_eq!(decoded.body.status(), ExitStatus::Negative);
    }

    #[test]
    fn running_containers_past_the_minimum_uptime_are_healthy() {
        let engine = FakeEngine::with(vec![
            container("web-green", "shop-green", Color::Green, RunState::Running),
            container(
                "worker-green",
                "shop-green",
                Color::Green,
                RunState::Running,
            ),
        ]);
        let report = checked(&engine, &HealthPolicy::default());
        assert!(report.healthy(), "{}", report.summary_line());
        assert_eq!(report.count(ContainerStatus::Healthy), 2);
        assert_eq!(
            check_named(&report, "web-green", CheckName::Uptime).status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn a_remote_engine_skips_address_probes_and_still_checks_uptime() {
        let mut web = container("web-green", "shop-green", Color::Green, RunState::Running);
        web.labels
            .insert("ztd.health.http".into(), "/health".into());
        web.labels.insert("ztd.health.port".into(), "8080".into());
        web.labels.insert("ztd.health.tcp".into(), "8080".into());
        web.apply_labels();
        let engine = FakeEngine::with(vec![web]);
        engine.set_remote_host("tcp://10.0.0.9:2375");
        let report = checked(&engine, &HealthPolicy::default());
        for name in [CheckName::Http, CheckName::Tcp] {
            let probe = check_named(&report, "web-green", name);
            assert_eq!(probe.status, CheckStatus::Skip, "{name:?}");
            assert_eq!(
                probe.detail,
                "skipped: the engine at tcp://10.0.0.9:2375 is remote"
            );
        }
        // With its probes skipped, the container is judged by its uptime, as one without any.
        assert_eq!(
            check_named(&report, "web-green", CheckName::Uptime).status,
            CheckStatus::Pass
        );
        assert!(report.healthy(), "{}", report.summary_line());
    }

    #[test]
    fn a_young_container_without_healthcheck_waits_for_its_uptime() {
        let mut young = container("web-green", "shop-green", Color::Green, RunState::Running);
        young.started_at = Some(Utc::now() - chrono::Duration::seconds(3));
        let engine = FakeEngine::with(vec![young]);
        let report = checked(&engine, &HealthPolicy::default());
        assert!(!report.healthy());
        let c = &report.containers[0];
        assert!(c.uptime_due_in.expect("due") <= Duration::from_secs(7));
        assert!(!c.settled, "uptime improves by waiting");
    }

    #[test]
    fn docker_health_states_are_distinct_results() {
        let mut starting = container("a-green", "shop-green", Color::Green, RunState::Running);
        starting.health = DockerHealth::Starting;
        let mut unhealthy = container("b-green", "shop-green", Color::Green, RunState::Running);
        unhealthy.health = DockerHealth::Unhealthy;
        let mut healthy = container("c-green", "shop-green", Color::Green, RunState::Running);
        healthy.health = DockerHealth::Healthy;
        healthy.started_at = Some(Utc::now());
        let engine = FakeEngine::with(vec![starting, unhealthy, healthy]);
        let report = checked(&engine, &HealthPolicy::default());
        assert_eq!(
            check_named(&report, "a-green", CheckName::DockerHealth).detail,
            "starting"
        );
        assert_eq!(
            check_named(&report, "b-green", CheckName::DockerHealth).detail,
            "unhealthy"
        );
        assert_eq!(
            check_named(&report, "c-green", CheckName::DockerHealth).status,
            CheckStatus::Pass
        );
        assert_eq!(
            report.count(ContainerStatus::Healthy),
            1,
            "a fresh container passes on its HEALTHCHECK alone"
        );
    }

    #[test]
    fn a_starting_healthcheck_is_run_at_once_and_passes_or_fails_on_its_exit_code() {
        let command = crate::engine::HealthcheckCommand {
            argv: vec!["/probe".into()],
            timeout: Duration::from_secs(2),
        };
        let starting = |name: &str| {
            let mut c = container(name, "shop-green", Color::Green, RunState::Running);
            c.health = DockerHealth::Starting;
            c.healthcheck = Some(command.clone());
            c
        };
        let mut late = starting("late-green");
        late.labels
            .insert("ztd.health.early".into(), "false".into());
        let engine = FakeEngine::with(vec![starting("ok-green"), starting("bad-green"), late]);
        engine.set_exec_result(
            "id-bad-green",
            crate::engine::ExecOutput {
                exit_code: Some(1),
                output: "503 Service Unavailable\n".into(),
            },
        );
        let report = checked(&engine, &HealthPolicy::default());
        let ok = check_named(&report, "ok-green", CheckName::DockerHealth);
        assert_eq!(ok.status, CheckStatus::Pass, "{}", ok.detail);
        assert!(ok.detail.contains("run by ztd"), "{}", ok.detail);
        let bad = check_named(&report, "bad-green", CheckName::DockerHealth);
        assert_eq!(bad.status, CheckStatus::Fail);
        assert_eq!(
            bad.detail,
            "starting; its HEALTHCHECK exits 1 when run now: 503 Service Unavailable"
        );
        let late = check_named(&report, "late-green", CheckName::DockerHealth);
        assert_eq!(
            (late.status, late.detail.as_str()),
            (CheckStatus::Fail, "starting")
        );
    }

    #[test]
    fn an_exited_container_without_restart_policy_is_settled_unhealthy() {
        let mut exited = container("web-green", "shop-green", Color::Green, RunState::Exited);
        exited.exit_code = Some(3);
        let engine = FakeEngine::with(vec![exited]);
        let report = checked(&engine, &HealthPolicy::default());
        let c = &report.containers[0];
        assert_eq!(c.status, ContainerStatus::Unhealthy);
        assert!(c.settled);
        assert!(c.reason().expect("reason").contains("code 3"));
    }

    #[test]
    fn restarts_beyond_the_limit_fail() {
        let mut looping = container("web-green", "shop-green", Color::Green, RunState::Running);
        looping.restart_count = 2;
        let engine = FakeEngine::with(vec![looping]);
        let report = checked(&engine, &HealthPolicy::default());
        assert_eq!(
            check_named(&report, "web-green", CheckName::Restarts).status,
            CheckStatus::Fail
        );
        let lenient = HealthPolicy {
            max_restarts: 5,
            ..Default::default()
        };
        assert!(checked(&engine, &lenient).healthy());
    }

    #[test]
    fn error_lines_warn_by_default_and_fail_beyond_an_explicit_limit() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        let now = Utc::now();
        engine.set_logs(
            "web-green",
            &[
                (
                    now - chrono::Duration::seconds(62),
                    "ERROR before this start",
                ),
                (
                    now - chrono::Duration::milliseconds(60_500),
                    "ERROR stamped just before StartedAt",
                ),
                (now, "ERROR: database unreachable"),
                (now, "an errorless line"),
                (now, "Exception in thread main"),
            ],
        );
        let report = checked(&engine, &HealthPolicy::default());
        let logs = check_named(&report, "web-green", CheckName::LogErrors);
        assert_eq!(logs.status, CheckStatus::Warn);
        assert!(logs.detail.starts_with("3 error lines"), "{}", logs.detail);
        assert!(report.healthy(), "warnings do not make a color unhealthy");
        let strict = HealthPolicy {
            max_log_errors: Some(2),
            ..Default::default()
        };
        let report = checked(&engine, &strict);
        assert!(!report.healthy());
        assert!(
            report.containers[0].settled,
            "log errors do not go away by waiting"
        );
    }

    #[test]
    fn memory_is_read_only_against_a_ceiling_and_fails_over_it() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        engine.set_stats(
            "web-green",
            ResourceSample {
                memory_usage: 95,
                memory_limit: 100,
                online_cpus: 1,
                ..Default::default()
            },
        );
        let report = checked(&engine, &HealthPolicy::default());
        assert!(
            report.containers[0]
                .checks
                .iter()
                .all(|c| c.name != CheckName::Memory)
        );
        let strict = HealthPolicy {
            max_memory: Some(MemoryLimit::Percent(50.0)),
            ..Default::default()
        };
        let report = checked(&engine, &strict);
        assert!(!report.healthy());
        assert_eq!(
            check_named(&report, "web-green", CheckName::Memory).status,
            CheckStatus::Fail
        );
        let lenient = HealthPolicy {
            max_memory: Some(MemoryLimit::Bytes(1 << 20)),
            ..Default::default()
        };
        assert!(checked(&engine, &lenient).healthy());
    }

    #[test]
    fn a_standby_handover_service_of_the_candidate_is_not_a_failure() {
        let mut worker = container(
            "worker-green",
            "shop-green",
            Color::Green,
            RunState::Created,
        );
        worker.labels.insert("ztd.switch".into(), "handover".into());
        let web = container("web-green", "shop-green", Color::Green, RunState::Running);
        let engine = FakeEngine::with(vec![worker, web]);
        let stack = stack();
        let candidate = Target {
            stack: &stack,
            color: Color::Green,
            active: false,
            service: None,
        };
        let report = run(check(&engine, &candidate, &HealthPolicy::default())).expect("check");
        assert!(report.healthy(), "{}", report.summary_line());
        assert_eq!(report.count(ContainerStatus::Standby), 1);
        let active = Target {
            active: true,
            ..candidate
        };
        let report = run(check(&engine, &active, &HealthPolicy::default())).expect("check");
        assert!(!report.healthy(), "in the active color it must run");
    }

    #[test]
    fn a_bad_label_is_a_config_error() {
        let mut web = container("web-green", "shop-green", Color::Green, RunState::Running);
        web.labels.insert("ztd.health.port".into(), "http".into());
        let engine = FakeEngine::with(vec![web]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let err = run(check(&engine, &target, &HealthPolicy::default())).expect_err("bad label");
        assert_eq!(err.exit_status().code(), 5);
    }

    #[test]
    fn no_containers_is_unhealthy_with_a_reason() {
        let report = checked(&FakeEngine::default(), &HealthPolicy::default());
        assert!(!report.healthy());
        assert!(report.summary_line().contains("no containers"));
    }

    #[test]
    fn wait_returns_when_the_uptime_comes_due_not_at_the_deadline() {
        let mut young = container("web-green", "shop-green", Color::Green, RunState::Running);
        young.started_at = Some(Utc::now() - chrono::Duration::milliseconds(9_700));
        let engine = FakeEngine::with(vec![young]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let report = run(wait(
            &engine,
            &target,
            &HealthPolicy::default(),
            Duration::from_secs(30),
        ))
        .expect("wait");
        assert!(report.healthy());
        assert!(report.duration_ms < 5000.0, "{}", report.duration_ms);
    }

    #[test]
    fn wait_gives_up_at_once_on_a_container_that_exited_for_good() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Exited,
        )]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let report = run(wait(
            &engine,
            &target,
            &HealthPolicy::default(),
            Duration::from_secs(30),
        ))
        .expect("wait");
        assert!(!report.healthy());
        assert_eq!(report.rounds, 1);
    }
}
