//! Watching a stack: a sample of every container of the watched colors each interval (state,
//! health, restarts, CPU, memory, new error lines counted once each, probe latency), the engine's
//! container events as they happen, a live view, and a watch window that trips on the first
//! threshold crossed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use crate::detect::detect;
use crate::engine::{
    ContainerInfo, ContainerQuery, DockerHealth, Engine, EngineEvent, LogLine, LogQuery,
    ResourceSample, RunState,
};
use crate::error::{Error, ExitStatus, Result};
use crate::health::{HealthPolicy, waits_for_handover};
use crate::labels::{self, ServiceSettings};
use crate::probe::{self, ProbeResult};
use crate::report::{Outcome, Report, Upstream};
use crate::stack::{Color, Stack};
use crate::units::{format_bytes, format_duration};

/// The tool whose report a window is.
const TOOL: &str = "ztd-monitor";

/// Error lines allowed per minute while a color is watched, unless configured.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 10.0;
/// Consecutive failed probes (or CPU samples over the ceiling) that trip a window.
const CONSECUTIVE: u32 = 2;
/// Log lines kept per container for the live view.
const RECENT_LINES: usize = 3;
/// Log lines one container may write between two rounds; more is a flood, counted as over the
/// error rate whatever the lines say (they cannot all be judged in time).
pub const MAX_LOG_LINES_PER_ROUND: usize = 10_000;

/// How to watch.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Time between samples.
    pub interval: Duration,
    /// A watch window: trip on the first threshold crossed, or pass at its end.
    pub window: Option<Duration>,
    /// Thresholds (restarts, memory, CPU, probe timeout).
    pub policy: HealthPolicy,
    /// New error lines allowed per minute.
    pub max_error_rate: f64,
    /// Keep the last log lines of each container (for the live view).
    pub keep_logs: bool,
}

/// One sample of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Its color.
    pub color: Color,
    /// Container name.
    pub container: String,
    /// Service.
    pub service: String,
    /// Run state.
    pub state: RunState,
    /// Docker health.
    pub health: DockerHealth,
    /// Restarts so far.
    pub restart_count: u64,
    /// CPU since the previous sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Memory limit.
    pub memory_limit: Option<u64>,
    /// Error lines logged since the previous sample.
    pub new_error_lines: u64,
    /// Probe latency, when the service has a probe label.
    pub probe_ms: Option<f64>,
    /// Whether the probe answered.
    pub probe_ok: Option<bool>,
    /// A singleton waiting, stopped, for its handover (not a problem).
    pub standby: bool,
    /// Why its log could not be judged this round (a flood: too many lines, or too slow to
    /// read); over the error rate in a window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_flood: Option<String>,
    /// The container id.
    #[serde(skip)]
    pub id: String,
    /// Its `ztd.*` settings (its thresholds).
    #[serde(skip)]
    pub settings: ServiceSettings,
    /// Its last log lines (live view only).
    #[serde(skip)]
    pub recent_logs: Vec<String>,
}

impl Sample {
    /// Whether nothing is wrong with it.
    pub fn ok(&self) -> bool {
        self.standby
            || (self.state == RunState::Running
                && self.health != DockerHealth::Unhealthy
                && self.probe_ok != Some(false))
    }
}

/// What tripped a watch window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    /// A container exited.
    Exited,
    /// It restarted more often than allowed.
    Restarted,
    /// It ran out of memory.
    Oom,
    /// It turned unhealthy.
    Unhealthy,
    /// Its probe failed twice in a row.
    Probe,
    /// Too many error lines (or a log flood).
    Errors,
    /// Over its memory ceiling.
    Memory,
    /// Over its CPU ceiling twice in a row.
    Cpu,
    /// It was removed.
    Removed,
    /// The color has no containers.
    NoContainers,
    /// No round of samples succeeded.
    Blind,
}

/// Why a watch window tripped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// What tripped it.
    pub kind: TripKind,
    /// The container.
    pub container: String,
    /// For humans.
    pub reason: String,
    /// How long after the window opened.
    pub after_ms: f64,
}

#[derive(Debug, Default)]
struct Tracked {
    last_log: Option<DateTime<Utc>>,
    last_stats: Option<ResourceSample>,
    baseline_restarts: Option<u64>,
    probe_failures: u32,
    probe_detail: Option<String>,
    cpu_overs: u32,
    errors: VecDeque<Instant>,
    recent: VecDeque<String>,
    log_flood: Option<String>,
}

/// The result of a watch: the trip, if any, and how much was seen.
#[derive(Debug, Clone, Default)]
pub struct WatchResult {
    /// Why it tripped.
    pub trip: Option<Trip>,
    /// Rounds of samples taken.
    pub rounds: u64,
    /// Events seen.
    pub events: u64,
    /// How long it watched.
    pub watched: Duration,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
}

/// A watcher of some colors of a stack.
#[derive(Debug)]
pub struct Monitor<'a, E: Engine> {
    engine: &'a E,
    stack: &'a Stack,
    colors: Vec<Color>,
    active: Option<Color>,
    opts: MonitorOptions,
    tracked: HashMap<String, Tracked>,
    opened: Instant,
    opened_at: DateTime<Utc>,
}

impl<'a, E: Engine> Monitor<'a, E> {
    /// Watch `colors` of `stack`; `active` is the active color (its singletons must run).
    pub fn new(
        engine: &'a E,
        stack: &'a Stack,
        colors: Vec<Color>,
        active: Option<Color>,
        opts: MonitorOptions,
    ) -> Self {
        Monitor {
            engine,
            stack,
            colors,
            active,
            opts,
            tracked: HashMap::new(),
            opened: Instant::now(),
            opened_at: Utc::now(),
        }
    }

    /// Watch until the window ends, a threshold trips, or a signal arrives; `emit` receives
    /// each sample, event and error as a record, `round` each round of samples (for the view).
    /// Rounds run beside the event stream, so an event is handled the moment it arrives even
    /// while the engine is slow to answer a round.
    pub async fn run(
        &mut self,
        mut emit: impl FnMut(Record),
        mut round: impl FnMut(&[Sample]),
    ) -> Result<WatchResult> {
        let mut result = WatchResult::default();
        let mut events = self.subscribe().await?;
        let deadline = self.opts.window.map(|w| tokio::time::Instant::now() + w);
        let mut next_round = tokio::time::Instant::now();
        let mut pending: Option<std::pin::Pin<Box<RoundFuture<'a>>>> = None;
        // The engine's silence in the last round: a window cannot pass clean on it.
        let mut unanswered: Option<Error> = None;
        let mut last_error: Option<String> = None;
        loop {
            if self.stops(&mut result, deadline, pending.is_some()) {
                break;
            }
            if pending.is_none() && tokio::time::Instant::now() >= next_round {
                next_round = tokio::time::Instant::now() + self.opts.interval;
                pending = Some(Box::pin(self.round()));
            }
            let wake = deadline.map_or(next_round, |d| d.min(next_round));
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        crate::debug!("event {} {}", event.container_name, event.action);
                        let Some(record) = event_record(&event) else { continue };
                        result.events += 1;
                        emit(record);
                        result.trip = self.judge_event(&event);
                        if result.trip.is_some() {
                            break;
                        }
                    }
                    Some(Err(err)) => {
                        emit(error_record(&err));
                        events = self.subscribe().await.unwrap_or_else(|_| stream::select_all(Vec::new()));
                    }
                    None => {
                        // The engine closed the event streams (restarted?): subscribe again.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        events = self.subscribe().await.unwrap_or_else(|_| stream::select_all(Vec::new()));
                    }
                },
                (outcome, tracked) = async {
                    match pending.as_mut() {
                        Some(round) => round.await,
                        None => std::future::pending().await,
                    }
                }, if pending.is_some() => {
                    pending = None;
                    self.tracked = tracked;
                    match outcome {
                        Ok(samples) => {
                            unanswered = None;
                            result.rounds += 1;
                            for sample in &samples {
                                emit(Record::Sample(Box::new(SampleRecord {
                                    ok: sample.ok(),
                                    time: now_stamp(),
                                    sample: sample.clone(),
                                })));
                            }
                            round(&samples);
                            result.trip = self.judge(&samples);
                            if result.trip.is_some() {
                                break;
                            }
                        }
                        Err(err) => {
                            last_error = Some(err.message().to_string());
                            emit(error_record(&err));
                            if matches!(err, Error::EngineUnreachable(_)) {
                                unanswered = Some(err);
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake), if pending.is_none() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        result.watched = self.opened.elapsed();
        self.conclude(result, unanswered, last_error)
    }

    /// Whether the watch ends now: a signal came, nobody reads the stream any more
    /// (`ztd-monitor | head -1`), or the window is over (but never judged blind while its first
    /// round is still under way).
    fn stops(
        &self,
        result: &mut WatchResult,
        deadline: Option<tokio::time::Instant>,
        pending: bool,
    ) -> bool {
        if crate::signals::interrupted() {
            result.interrupted = true;
            return true;
        }
        if self.opts.window.is_none() && crate::output::stdout_closed() {
            return true;
        }
        let now = tokio::time::Instant::now();
        deadline.is_some_and(|deadline| {
            let grace = deadline + 2 * self.call_limit();
            now >= deadline && (result.rounds > 0 || !pending || now >= grace)
        })
    }

    /// The end of a watch: a window whose engine stopped answering is an error, one that saw
    /// nothing trips as blind.
    fn conclude(
        &self,
        mut result: WatchResult,
        unanswered: Option<Error>,
        last_error: Option<String>,
    ) -> Result<WatchResult> {
        // An engine that stopped answering: exit 3 (unreachable), whatever else was seen.
        if let Some(err) = unanswered
            .filter(|_| self.opts.window.is_some() && result.trip.is_none() && !result.interrupted)
        {
            // A window whose last round got no answer was not watched: exit 3, not "clean".
            return Err(err);
        }
        if let Some(window) = self.opts.window
            && result.rounds == 0
            && result.trip.is_none()
            && !result.interrupted
        {
            // Nothing was seen: the window cannot vouch for the color.
            let colors: Vec<&str> = self.colors.iter().map(|c| c.as_str()).collect();
            result.trip = Some(self.trip(
                TripKind::Blind,
                &colors.join(","),
                format!(
                    "no round of samples of {} succeeded in the {}s window{}: it proves nothing",
                    colors.join(" and "),
                    window.as_secs_f64(),
                    last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
                ),
            ));
        }
        Ok(result)
    }

    /// A round of samples that owns what it needs (the per-container state is handed back with
    /// its output), so it can run beside the event stream.
    fn round(&mut self) -> impl std::future::Future<Output = RoundOutput> + use<'a, E> {
        sample_round(
            self.engine,
            self.stack,
            self.colors.clone(),
            self.active,
            std::mem::take(&mut self.tracked),
            self.opened_at,
            self.opts.clone(),
        )
    }

    async fn subscribe(&self) -> Result<stream::SelectAll<crate::engine::EventStream>> {
        let mut subscriptions = Vec::new();
        for color in &self.colors {
            subscriptions.push(
                self.engine
                    .events(&ContainerQuery::project(&self.stack.color_project(*color)))
                    .await?,
            );
        }
        Ok(stream::select_all(subscriptions))
    }

    /// How long one engine call of a round may take.
    fn call_limit(&self) -> Duration {
        call_limit(&self.opts)
    }

    fn elapsed_ms(&self) -> f64 {
        crate::units::millis(self.opened.elapsed())
    }

    fn trip(&self, kind: TripKind, container: &str, reason: String) -> Trip {
        Trip {
            kind,
            container: container.to_string(),
            reason,
            after_ms: self.elapsed_ms(),
        }
    }

    /// Window thresholds on a round of samples.
    fn judge(&self, samples: &[Sample]) -> Option<Trip> {
        self.opts.window?;
        if samples.is_empty() {
            let colors: Vec<&str> = self.colors.iter().map(|c| c.as_str()).collect();
            return Some(self.trip(
                TripKind::NoContainers,
                &colors.join(","),
                format!(
                    "{} has no containers: there is nothing to watch",
                    colors.join(" and ")
                ),
            ));
        }
        samples
            .iter()
            .filter(|s| !s.standby)
            .find_map(|sample| self.judge_state(sample).or_else(|| self.judge_use(sample)))
    }

    /// A container that stopped running or turned unhealthy.
    fn judge_state(&self, sample: &Sample) -> Option<Trip> {
        if sample.state != RunState::Running {
            return Some(self.trip(
                TripKind::Exited,
                &sample.container,
                format!("{} is {:?}", sample.container, sample.state).to_lowercase(),
            ));
        }
        (sample.health == DockerHealth::Unhealthy).then(|| {
            self.trip(
                TripKind::Unhealthy,
                &sample.container,
                format!("{} is unhealthy", sample.container),
            )
        })
    }

    /// A running container over one of its thresholds: restarts, probe failures, error lines,
    /// memory, CPU.
    fn judge_use(&self, sample: &Sample) -> Option<Trip> {
        let settings = &sample.settings;
        let tracked = self.tracked.get(&sample.id)?;
        let name = sample.container.as_str();
        let allowed = settings
            .max_restarts
            .unwrap_or(self.opts.policy.max_restarts);
        if let Some(base) = tracked.baseline_restarts
            && sample.restart_count > base + allowed
        {
            let times = sample.restart_count - base;
            let reason =
                format!("{name} restarted {times} times while watched (allowed {allowed})");
            return Some(self.trip(TripKind::Restarted, name, reason));
        }
        if tracked.probe_failures >= CONSECUTIVE {
            let detail = tracked.probe_detail.as_deref().unwrap_or("no detail");
            let failures = tracked.probe_failures;
            let reason = format!("{name}'s probe failed {failures} times in a row ({detail})");
            return Some(self.trip(TripKind::Probe, name, reason));
        }
        let rate = settings.max_error_rate.unwrap_or(self.opts.max_error_rate);
        if let Some(flood) = &tracked.log_flood {
            let reason =
                format!("{flood}: counted as over the error rate (allowed {rate} a minute)");
            return Some(self.trip(TripKind::Errors, name, reason));
        }
        if tracked.errors.len() as f64 > rate {
            let count = tracked.errors.len();
            let reason =
                format!("{name} logged {count} error lines in the last minute (allowed {rate})");
            return Some(self.trip(TripKind::Errors, name, reason));
        }
        if let (Some(limit), Some(usage), Some(total)) = (
            settings.max_memory.or(self.opts.policy.max_memory),
            sample.memory_bytes,
            sample.memory_limit,
        ) && limit.exceeded(usage, total)
        {
            let reason = format!(
                "{name} uses {} of memory (allowed {limit})",
                format_bytes(usage)
            );
            return Some(self.trip(TripKind::Memory, name, reason));
        }
        let cpu_ceiling = settings.max_cpu.or(self.opts.policy.max_cpu);
        (cpu_ceiling.is_some() && tracked.cpu_overs >= CONSECUTIVE).then(|| {
            let reason = format!(
                "{name} is over its CPU ceiling ({:.0}%)",
                sample.cpu_percent.unwrap_or_default()
            );
            self.trip(TripKind::Cpu, name, reason)
        })
    }

    /// Window thresholds on an engine event.
    fn judge_event(&self, event: &EngineEvent) -> Option<Trip> {
        self.opts.window?;
        let name = &event.container_name;
        match event.action.as_str() {
            "die" => {
                let code = event
                    .attributes
                    .get("exitCode")
                    .cloned()
                    .unwrap_or_default();
                Some(self.trip(
                    TripKind::Exited,
                    name,
                    format!("{name} exited (code {code})"),
                ))
            }
            "oom" => Some(self.trip(TripKind::Oom, name, format!("{name} ran out of memory"))),
            "health_status: unhealthy" => Some(self.trip(
                TripKind::Unhealthy,
                name,
                format!("{name} became unhealthy"),
            )),
            "destroy" => Some(self.trip(TripKind::Removed, name, format!("{name} was removed"))),
            _ => None,
        }
    }
}

/// What a round gives back: the samples (or the error) and the per-container state it took.
type RoundOutput = (Result<Vec<Sample>>, HashMap<String, Tracked>);
type RoundFuture<'a> = dyn std::future::Future<Output = RoundOutput> + 'a;

/// Sample every container of `colors` at once, taking the per-container state and giving it
/// back (with the gone containers forgotten).
#[allow(clippy::too_many_arguments)]
async fn sample_round<E: Engine>(
    engine: &E,
    stack: &Stack,
    colors: Vec<Color>,
    active: Option<Color>,
    mut tracked: HashMap<String, Tracked>,
    opened_at: DateTime<Utc>,
    opts: MonitorOptions,
) -> RoundOutput {
    let mut containers = Vec::new();
    for color in colors {
        match engine
            .list(&ContainerQuery::project(&stack.color_project(color)))
            .await
        {
            Ok(listed) => containers.extend(listed.into_iter().map(|c| (color, c))),
            Err(err) => return (Err(err), tracked),
        }
    }
    tracked.retain(|id, _| containers.iter().any(|(_, c)| &c.id == id));
    let futures = containers.iter().map(|(color, c)| {
        let state = tracked.remove(&c.id).unwrap_or_default();
        sample_one(
            engine,
            *color,
            c,
            state,
            active == Some(*color),
            opened_at,
            &opts,
        )
    });
    let mut samples = Vec::new();
    for (sample, state) in join_all(futures).await {
        tracked.insert(sample.id.clone(), state);
        samples.push(sample);
    }
    (Ok(samples), tracked)
}

#[allow(clippy::too_many_arguments)]
async fn sample_one<E: Engine>(
    engine: &E,
    color: Color,
    container: &ContainerInfo,
    mut tracked: Tracked,
    color_is_active: bool,
    opened_at: DateTime<Utc>,
    opts: &MonitorOptions,
) -> (Sample, Tracked) {
    let settings = container.settings_or_default();
    let standby = waits_for_handover(container, &settings, color_is_active);
    tracked
        .baseline_restarts
        .get_or_insert(container.restart_count);
    let mut sample = Sample::new(color, container, settings, standby);
    if container.state != RunState::Running {
        sample.recent_logs = tracked.recent.iter().cloned().collect();
        return (sample, tracked);
    }
    let since = tracked.last_log.unwrap_or(opened_at);
    // The first probe the labels ask for (HTTP, else TCP), where ztd-health sends it.
    let remote = engine.remote_host();
    let target = probe::probe_targets(container, &sample.settings, remote.as_deref())
        .into_iter()
        .next();
    let probe = async {
        match target?.run(opts.policy.probe_timeout).await {
            ProbeResult::Skipped(_) => None,
            ProbeResult::Done(outcome) => Some(outcome),
        }
    };
    // A container that dies mid-round can leave a stats request unanswered: bound each call.
    let limit = call_limit(opts);
    let query = LogQuery {
        since: Some(since),
        tail: None,
    };
    let (stats, logs, probed) = tokio::join!(
        tokio::time::timeout(limit, engine.stats(&container.id)),
        tokio::time::timeout(limit, engine.logs(&container.id, query)),
        probe
    );
    tracked.log_flood = None;
    if let Ok(Ok(stats)) = stats {
        tracked.take_stats(&mut sample, stats, opts);
    }
    match logs {
        Ok(Ok(lines)) => tracked.take_logs(&mut sample, &lines, opened_at, opts.keep_logs),
        Ok(Err(_)) => {}
        Err(_) => {
            tracked.log_flood = Some(format!(
                "{}'s log could not be read within {}s (a flood?)",
                container.name,
                limit.as_secs_f64()
            ));
        }
    }
    if let Some(outcome) = probed {
        tracked.take_probe(&mut sample, outcome);
    }
    sample.log_flood = tracked.log_flood.clone();
    sample.recent_logs = tracked.recent.iter().cloned().collect();
    (sample, tracked)
}

impl Sample {
    /// The sample of `container` before anything is measured.
    fn new(
        color: Color,
        container: &ContainerInfo,
        settings: ServiceSettings,
        standby: bool,
    ) -> Sample {
        Sample {
            color,
            container: container.name.clone(),
            service: container.service.clone(),
            state: container.state,
            health: container.health,
            restart_count: container.restart_count,
            cpu_percent: None,
            memory_bytes: None,
            memory_limit: None,
            new_error_lines: 0,
            probe_ms: None,
            probe_ok: None,
            standby,
            log_flood: None,
            id: container.id.clone(),
            settings,
            recent_logs: Vec::new(),
        }
    }
}

impl Tracked {
    /// Memory and CPU (since the previous stats) into the sample; CPU over its ceiling counted.
    fn take_stats(&mut self, sample: &mut Sample, stats: ResourceSample, opts: &MonitorOptions) {
        sample.memory_bytes = Some(stats.memory_usage);
        sample.memory_limit = Some(stats.memory_limit);
        sample.cpu_percent = self
            .last_stats
            .and_then(|prev| stats.cpu_percent_since(&prev))
            .map(|p| (p * 10.0).round() / 10.0);
        let ceiling = sample.settings.max_cpu.or(opts.policy.max_cpu);
        match (ceiling, sample.cpu_percent) {
            (Some(max), Some(pct)) if pct > max => self.cpu_overs += 1,
            _ => self.cpu_overs = 0,
        }
        self.last_stats = Some(stats);
    }

    /// The new log lines: each error line counted once (lines before the window do not count),
    /// a flood noted, the last lines kept for the view.
    fn take_logs(
        &mut self,
        sample: &mut Sample,
        lines: &[LogLine],
        opened_at: DateTime<Utc>,
        keep_logs: bool,
    ) {
        if lines.len() > MAX_LOG_LINES_PER_ROUND {
            self.log_flood = Some(format!(
                "{} logged {} lines in one round (more than {MAX_LOG_LINES_PER_ROUND})",
                sample.container,
                lines.len()
            ));
        }
        let pattern = sample.settings.error_pattern();
        let now = Instant::now();
        let last_seen = self.last_log;
        for line in lines
            .iter()
            .filter(|l| last_seen.is_none_or(|last| l.timestamp > last))
            .filter(|l| l.timestamp >= opened_at)
        {
            if pattern.is_match(&line.text) {
                sample.new_error_lines += 1;
                self.errors.push_back(now);
            }
            if keep_logs {
                self.recent.push_back(line.text.chars().take(160).collect());
                while self.recent.len() > RECENT_LINES {
                    self.recent.pop_front();
                }
            }
        }
        if let Some(last) = lines.last() {
            self.last_log = Some(last_seen.map_or(last.timestamp, |t| t.max(last.timestamp)));
        } else if self.last_log.is_none() {
            self.last_log = Some(opened_at);
        }
        while self
            .errors
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.errors.pop_front();
        }
    }

    /// The probe's latency and verdict; failures in a row counted, the last one's detail kept.
    fn take_probe(&mut self, sample: &mut Sample, outcome: probe::ProbeOutcome) {
        sample.probe_ms = Some((outcome.latency.as_secs_f64() * 10_000.0).round() / 10.0);
        sample.probe_ok = Some(outcome.ok);
        if outcome.ok {
            self.probe_failures = 0;
        } else {
            self.probe_failures += 1;
            self.probe_detail = Some(outcome.detail);
        }
    }
}

/// How long one engine call of a round (stats, logs) may take.
fn call_limit(opts: &MonitorOptions) -> Duration {
    opts.interval.max(Duration::from_secs(3))
}

/// One record of the stream, after its `tool` and `project`: a sample, an engine event, or an
/// error the watch went on after.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// A sample of one container.
    Sample(Box<SampleRecord>),
    /// An engine event of one container.
    Event(EventRecord),
    /// An engine error; the watch goes on.
    Error(ErrorRecord),
}

/// A sample as streamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Whether nothing is wrong with the container.
    pub ok: bool,
    /// When it was taken (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// The sample.
    #[serde(flatten)]
    pub sample: Sample,
}

/// An engine event as streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// False for `die`, `oom`, `destroy` and `health_status: unhealthy`.
    pub ok: bool,
    /// When it was seen (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// The container's `deployment.color` label, if any.
    pub color: Option<String>,
    /// The container's name.
    pub container: String,
    /// `start`, `die`, `oom`, `restart`, `kill`, `stop`, `destroy`, `pause`, `unpause`,
    /// `health_status: ...`.
    pub action: String,
    /// The exit code of a `die`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
    /// The signal of a `kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// An engine error as streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Always false.
    pub ok: bool,
    /// When it happened (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// The error.
    pub message: String,
}

/// Now, as the stream stamps its records.
fn now_stamp() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The record of an engine event worth streaming, if it is one.
fn event_record(event: &EngineEvent) -> Option<Record> {
    let action = event.action.as_str();
    let interesting = matches!(
        action,
        "start" | "die" | "oom" | "restart" | "kill" | "stop" | "destroy" | "pause" | "unpause"
    ) || action.starts_with("health_status");
    if !interesting {
        return None;
    }
    let bad = matches!(action, "die" | "oom" | "destroy") || action == "health_status: unhealthy";
    Some(Record::Event(EventRecord {
        ok: !bad,
        time: now_stamp(),
        color: event.attributes.get(labels::DEPLOYMENT_COLOR).cloned(),
        container: event.container_name.clone(),
        action: action.to_string(),
        exit_code: event.attributes.get("exitCode").cloned(),
        signal: event.attributes.get("signal").cloned(),
    }))
}

/// The record of an engine error the watch goes on after (said on stderr too).
fn error_record(err: &Error) -> Record {
    crate::warn!("{err}; going on");
    Record::Error(ErrorRecord {
        ok: false,
        time: now_stamp(),
        message: err.message().to_string(),
    })
}

/// What a watch window found: its report body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    /// The color watched.
    pub color: Color,
    /// The window's length, in seconds.
    pub window_s: f64,
    /// How long it watched, in seconds.
    pub watched_s: f64,
    /// Rounds of samples taken.
    pub rounds: u64,
    /// Events seen.
    pub events: u64,
    /// Whether a threshold was crossed.
    pub tripped: bool,
    /// Why, for humans.
    pub reason: Option<String>,
    /// What tripped it.
    pub trip: Option<Trip>,
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP.
    pub interrupted: bool,
}

impl Findings {
    /// The findings of a watch of `color` for `window`.
    pub fn new(color: Color, window: Duration, result: WatchResult) -> Findings {
        Findings {
            color,
            window_s: window.as_secs_f64(),
            watched_s: result.watched.as_secs_f64(),
            rounds: result.rounds,
            events: result.events,
            tripped: result.trip.is_some(),
            reason: result.trip.as_ref().map(|t| t.reason.clone()),
            trip: result.trip,
            interrupted: result.interrupted,
        }
    }
}

impl Outcome for Findings {
    /// 0 clean, 1 tripped, 130 interrupted.
    fn status(&self) -> ExitStatus {
        if self.interrupted {
            ExitStatus::Interrupted
        } else if self.tripped {
            ExitStatus::Negative
        } else {
            ExitStatus::Success
        }
    }
}

/// The body of a window with nothing to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NothingToWatch {
    /// Always none.
    pub color: Option<Color>,
    /// `nothing is deployed`.
    pub problem: String,
}

/// A window's own report body: its findings, or that nothing is deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WindowBody {
    /// A color was watched.
    Watched(Findings),
    /// No color named and none active.
    NothingDeployed(NothingToWatch),
}

impl WindowBody {
    /// The color watched, handed on as the report's `target`.
    pub fn color(&self) -> Option<Color> {
        match self {
            WindowBody::Watched(findings) => Some(findings.color),
            WindowBody::NothingDeployed(_) => None,
        }
    }
}

impl Outcome for WindowBody {
    fn status(&self) -> ExitStatus {
        match self {
            WindowBody::Watched(findings) => findings.status(),
            WindowBody::NothingDeployed(_) => ExitStatus::Negative,
        }
    }
}

/// The `monitor` field a window adds to the upstream object: `tool`, then the findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorField {
    /// `ztd-monitor`.
    pub tool: String,
    /// What the window found.
    #[serde(flatten)]
    pub findings: Findings,
}

/// The upstream object passed on with the window's findings: its fields as they came, `ok`
/// recomputed (false when the window tripped or was interrupted), and a `monitor` field.
#[derive(Debug, Clone, PartialEq)]
pub struct PassedOn {
    /// The object read from stdin.
    pub upstream: Upstream,
    /// The findings, as the `monitor` field.
    pub monitor: MonitorField,
}

impl PassedOn {
    /// The upstream's `ok`, false as well when the window tripped or was interrupted.
    pub fn ok(&self) -> bool {
        !self.upstream.failed && self.monitor.findings.status() == ExitStatus::Success
    }
}

impl Serialize for PassedOn {
    /// The upstream's fields in their order, `ok` and `monitor` replaced in place (or added).
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let object = &self.upstream.object;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in object {
            match key.as_str() {
                "ok" => map.serialize_entry(key, &self.ok())?,
                "monitor" => map.serialize_entry(key, &self.monitor)?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        if !object.contains_key("ok") {
            map.serialize_entry("ok", &self.ok())?;
        }
        if !object.contains_key("monitor") {
            map.serialize_entry("monitor", &self.monitor)?;
        }
        map.end()
    }
}

impl Outcome for PassedOn {
    fn status(&self) -> ExitStatus {
        self.monitor.findings.status()
    }
}

/// What a watch window prints: the upstream object passed on with its findings, or its own
/// report. Exit 0 clean, 1 tripped (or nothing deployed), 130 interrupted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WindowReport {
    /// No upstream object (or nothing to watch): the window's own report.
    Own(Report<WindowBody>),
    /// The upstream object, passed on.
    PassedOn(PassedOn),
}

impl WindowReport {
    /// The report of a window over `stack`: the upstream object passed on when one came in and
    /// a color was watched, else the window's own.
    pub fn new(stack: &Stack, upstream: Option<Upstream>, body: WindowBody) -> WindowReport {
        match (upstream, body) {
            (Some(upstream), WindowBody::Watched(findings)) => WindowReport::PassedOn(PassedOn {
                upstream,
                monitor: MonitorField {
                    tool: TOOL.to_string(),
                    findings,
                },
            }),
            (_, body) => WindowReport::Own(Report::new(TOOL, stack, body.color(), body)),
        }
    }
}

impl Outcome for WindowReport {
    fn status(&self) -> ExitStatus {
        match self {
            WindowReport::Own(report) => report.status(),
            WindowReport::PassedOn(passed) => passed.status(),
        }
    }
}

/// ztd-monitor --for: watch `named` (else the active color) for the window of `opts`, handing
/// each record to `emit` and, after each round, the color, the time watched and the window to
/// `observe`; the report passes `upstream` on with the findings, or is its own.
pub async fn watch_window<E: Engine>(
    engine: &E,
    stack: &Stack,
    named: Option<Color>,
    upstream: Option<Upstream>,
    opts: MonitorOptions,
    emit: impl FnMut(Record),
    mut observe: impl FnMut(Color, Duration, Duration),
) -> Result<WindowReport> {
    let detection = detect(engine, stack).await?;
    let Some(color) = named.or(detection.active) else {
        crate::warn!("nothing is deployed: nothing to watch");
        let body = WindowBody::NothingDeployed(NothingToWatch {
            color: None,
            problem: "nothing is deployed".into(),
        });
        return Ok(WindowReport::new(stack, upstream, body));
    };
    let window = opts.window.unwrap_or_default();
    crate::info!("watching {color} for {}", format_duration(window));
    let mut monitor = Monitor::new(engine, stack, vec![color], detection.active, opts);
    let opened = Instant::now();
    let result = monitor
        .run(emit, |_| observe(color, opened.elapsed(), window))
        .await?;
    match &result.trip {
        Some(trip) => crate::warn!(
            "tripped after {:.1}s: {}",
            trip.after_ms / 1000.0,
            trip.reason
        ),
        None if result.interrupted => crate::warn!("interrupted"),
        None => crate::info!("{color} passed the {}s window clean", window.as_secs_f64()),
    }
    let body = WindowBody::Watched(Findings::new(color, window, result));
    Ok(WindowReport::new(stack, upstream, body))
}

/// The colors a stream or view watches: the one named, else both for `--both` and the view,
/// else the active one (both when none is).
pub fn watched_colors(named: Option<Color>, both: bool, active: Option<Color>) -> Vec<Color> {
    match (named, both) {
        (Some(color), _) => vec![color],
        (None, true) => Color::ALL.to_vec(),
        (None, false) => active.map_or(Color::ALL.to_vec(), |a| vec![a]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeEngine, container};

    fn stack() -> Stack {
        Stack {
            dir: std::env::temp_dir(),
            name: "shop".into(),
        }
    }

    /// Watch blue of the fake engine for `window`.
    fn watch(engine: &FakeEngine, window: Duration) -> WatchResult {
        let stack = stack();
        let opts = MonitorOptions {
            interval: Duration::from_millis(100),
            window: Some(window),
            policy: HealthPolicy::default(),
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            keep_logs: false,
        };
        let mut monitor = Monitor::new(engine, &stack, vec![Color::Blue], Some(Color::Blue), opts);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(monitor.run(|_| {}, |_| {}))
            .expect("watch")
    }

    fn running_web() -> FakeEngine {
        FakeEngine::with(vec![container(
            "web-blue",
            "shop-blue",
            Color::Blue,
            RunState::Running,
        )])
    }

    fn findings(trip: Option<Trip>) -> Findings {
        let result = WatchResult {
            trip,
            rounds: 3,
            events: 1,
            watched: Duration::from_millis(1500),
            interrupted: false,
        };
        Findings::new(Color::Blue, Duration::from_secs(2), result)
    }

    #[test]
    fn a_window_report_is_its_own_or_the_upstream_object_with_ok_and_monitor() {
        use crate::report::json_line;
        let stack = Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        };
        let trip = Trip {
            kind: TripKind::Exited,
            container: "web-blue".into(),
            reason: "web-blue exited (code 3)".into(),
            after_ms: 900.0,
        };
        let own = WindowReport::new(&stack, None, WindowBody::Watched(findings(Some(trip))));
        let line = json_line(&own);
        assert_eq!(
            line,
            "{\"tool\":\"ztd-monitor\",\"project\":\"shop\",\"project_dir\":\"/srv/shop\",\"ok\":false,\"target\":\"blue\",\"color\":\"blue\",\"window_s\":2.0,\"watched_s\":1.5,\"rounds\":3,\"events\":1,\"tripped\":true,\"reason\":\"web-blue exited (code 3)\",\"trip\":{\"kind\":\"exited\",\"container\":\"web-blue\",\"reason\":\"web-blue exited (code 3)\",\"after_ms\":900.0},\"interrupted\":false}\n"
        );
        assert_eq!(own.status(), ExitStatus::Negative);
        let decoded: Report<WindowBody> = serde_json::from_str(&line).expect("decode");
        assert_eq!(WindowReport::Own(decoded), own);

        let upstream =
            Upstream::parse("{\"tool\":\"ztd-health\",\"ok\":true,\"target\":\"blue\",\"z\":1}")
                .expect("parse")
                .expect("some");
        let passed = WindowReport::new(&stack, Some(upstream), WindowBody::Watched(findings(None)));
        let line = json_line(&passed);
        assert_eq!(
            line,
            "{\"tool\":\"ztd-health\",\"ok\":true,\"target\":\"blue\",\"z\":1,\"monitor\":{\"tool\":\"ztd-monitor\",\"color\":\"blue\",\"window_s\":2.0,\"watched_s\":1.5,\"rounds\":3,\"events\":1,\"tripped\":false,\"reason\":null,\"trip\":null,\"interrupted\":false}}\n"
        );
        assert_eq!(passed.status(), ExitStatus::Success);
        #[derive(Deserialize)]
        struct Passed {
            monitor: MonitorField,
        }
        let decoded: Passed = serde_json::from_str(&line).expect("decode");
        assert_eq!(decoded.monitor.findings, findings(None));

        // Interrupted: ok false in place, exit 130; a monitor field already there is replaced.
        let upstream = Upstream::parse("{\"monitor\":1,\"tool\":\"x\"}")
            .expect("parse")
            .expect("some");
        let mut interrupted = findings(None);
        interrupted.interrupted = true;
        let passed = WindowReport::new(&stack, Some(upstream), WindowBody::Watched(interrupted));
        assert!(json_line(&passed).starts_with("{\"monitor\":{\"tool\":\"ztd-monitor\""));
        assert!(json_line(&passed).ends_with("\"tool\":\"x\",\"ok\":false}\n"));
        assert_eq!(passed.status(), ExitStatus::Interrupted);

        // Nothing deployed: the window's own report, whatever came in.
        let nothing = WindowBody::NothingDeployed(NothingToWatch {
            color: None,
            problem: "nothing is deployed".into(),
        });
        let none = WindowReport::new(&stack, None, nothing);
        let line = json_line(&none);
        assert!(
            line.ends_with(
                "\"ok\":false,\"target\":null,\"color\":null,\"problem\":\"nothing is deployed\"}\n"
            ),
            "{line}"
        );
        assert_eq!(none.status(), ExitStatus::Negative);
    }

    #[test]
    fn a_quiet_running_color_passes_its_window() {
        let result = watch(&running_web(), Duration::from_millis(400));
        assert!(result.trip.is_none(), "{:?}", result.trip);
        assert!(result.rounds >= 2);
    }

    #[test]
    fn a_color_with_no_containers_fails_its_window() {
        let result = watch(&FakeEngine::default(), Duration::from_millis(400));
        let trip = result.trip.expect("tripped");
        assert_eq!(trip.kind, TripKind::NoContainers);
        assert!(
            trip.reason.contains("blue has no containers"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn a_window_in_which_every_round_failed_is_not_clean() {
        let engine = running_web();
        engine.set_failing(true);
        let result = watch(&engine, Duration::from_millis(400));
        assert_eq!(result.rounds, 0);
        let trip = result.trip.expect("a blind window fails");
        assert_eq!(trip.kind, TripKind::Blind);
        assert!(
            trip.reason.contains("no round of samples"),
            "{}",
            trip.reason
        );
        assert!(
            trip.reason.contains("fake engine is failing"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn more_log_lines_in_a_round_than_the_cap_trip_as_errors() {
        let engine = running_web();
        let now = Utc::now();
        let lines: Vec<(DateTime<Utc>, &str)> = (0..=MAX_LOG_LINES_PER_ROUND)
            .map(|_| (now + chrono::Duration::milliseconds(50), "GET / 200"))
            .collect();
        engine.set_logs("web-blue", &lines);
        let result = watch(&engine, Duration::from_secs(2));
        let trip = result.trip.expect("a flood trips");
        assert_eq!(trip.kind, TripKind::Errors);
        assert!(
            trip.reason.contains("lines in one round"),
            "{}",
            trip.reason
        );
        assert!(
            trip.reason.contains("over the error rate"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn an_http_probe_with_no_port_fails_as_in_ztd_health_and_trips_saying_why() {
        let mut web = container("web-blue", "shop-blue", Color::Blue, RunState::Running);
        web.labels
            .insert("ztd.health.http".into(), "/health".into());
        web.apply_labels();
        let result = watch(&FakeEngine::with(vec![web]), Duration::from_secs(2));
        let trip = result.trip.expect("an unsendable probe trips");
        assert_eq!(trip.kind, TripKind::Probe);
        assert!(
            trip.reason.contains("set ztd.health.port"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn a_log_too_slow_to_read_trips_as_errors() {
        let engine = running_web();
        engine.set_log_delay(Duration::from_secs(10));
        let result = watch(&engine, Duration::from_secs(1));
        let trip = result.trip.expect("a flood trips");
        assert_eq!(trip.kind, TripKind::Errors);
        assert!(
            trip.reason.contains("could not be read within 3s"),
            "{}",
            trip.reason
        );
    }
}
