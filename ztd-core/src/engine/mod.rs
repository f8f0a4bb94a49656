//! The container engine as ztd sees it: a small trait in ztd's own terms, so the logic can run
//! against the real Docker engine (`docker.rs`) or a fake one in unit tests. This folder is the
//! outside world: the engine and where it is, Compose, probes and the front proxy.

pub mod compose;
pub mod docker;
pub mod endpoint;
#[cfg(test)]
pub mod fake;
pub mod notify;
pub mod probe;
pub mod proxy;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::labels::{self, Labels, ServiceSettings};
use crate::stack::Color;

/// The run state of a container, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created, never started (or reset by `compose create`).
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Between a crash and its automatic restart.
    Restarting,
    /// Being removed.
    Removing,
    /// Stopped or crashed.
    Exited,
    /// Dead (could not be stopped or removed).
    Dead,
    /// A state this version does not know.
    Unknown,
}

impl RunState {
    /// Whether the container is up in the sense of "this color is running".
    pub fn is_up(self) -> bool {
        matches!(
            self,
            RunState::Running | RunState::Restarting | RunState::Paused
        )
    }
}

/// Docker's own HEALTHCHECK verdict; `None` when the image and compose file define none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerHealth {
    /// No HEALTHCHECK.
    None,
    /// Within the start period, or no check has finished yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// The check failed `retries` times in a row.
    Unhealthy,
}

/// A container's HEALTHCHECK command: what the engine runs in the container, and how long it
/// lets it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCommand {
    /// The command, as exec arguments (`CMD-SHELL` is run by `/bin/sh -c`).
    pub argv: Vec<String>,
    /// The check's timeout (Docker's default 30 s when unset).
    pub timeout: Duration,
}

impl HealthcheckCommand {
    /// From the engine's `test` and `timeout` (nanoseconds): `None` for no test, `NONE`, or an
    /// empty command.
    pub fn from_test(test: &[String], timeout_ns: Option<i64>) -> Option<HealthcheckCommand> {
        let argv: Vec<String> = match test.split_first()? {
            (kind, rest) if kind == "CMD" => rest.to_vec(),
            (kind, [command]) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), command.clone()]
            }
            _ => return None,
        };
        if argv.first().is_none_or(String::is_empty) {
            return None;
        }
        let timeout = timeout_ns
            .filter(|ns| *ns > 0)
            .map_or(Duration::from_secs(30), |ns| {
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            });
        Some(HealthcheckCommand { argv, timeout })
    }
}

/// One container and what ztd needs to know of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// The service (`deployment.service`, else Compose's service label, else the name).
    pub service: String,
    /// The color (`deployment.color`), if labelled.
    pub color: Option<Color>,
    /// The Compose project, if any.
    pub project: Option<String>,
    /// Run state.
    pub state: RunState,
    /// Docker HEALTHCHECK status.
    pub health: DockerHealth,
    /// How often the engine restarted it.
    pub restart_count: u64,
    /// The image reference it was created from.
    pub image: String,
    /// The image id.
    pub image_id: String,
    /// `deployment.version`.
    pub version: Option<String>,
    /// When it last started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last stopped.
    pub finished_at: Option<DateTime<Utc>>,
    /// The exit code of its last run.
    pub exit_code: Option<i64>,
    /// Whether the kernel killed it for memory.
    pub oom_killed: bool,
    /// The restart policy (`no`, `always`, `unless-stopped`, `on-failure`).
    pub restart_policy: String,
    /// Its addresses on its networks.
    #[serde(skip)]
    pub addresses: Vec<String>,
    /// The TCP ports it exposes.
    #[serde(skip)]
    pub exposed_ports: Vec<u16>,
    /// The host ports it publishes.
    #[serde(skip)]
    pub published_ports: Vec<u16>,
    /// Network name to the names it answers to there (its aliases).
    #[serde(skip)]
    pub networks: BTreeMap<String, Vec<String>>,
    /// Its HEALTHCHECK command, as the engine runs it (`None`: no HEALTHCHECK, or `NONE`).
    #[serde(skip)]
    pub healthcheck: Option<HealthcheckCommand>,
    /// The value of `DEPLOYMENT_COLOR` in its environment (no other value is kept: secrets).
    #[serde(skip)]
    pub deployment_color_env: Option<String>,
    /// All labels.
    #[serde(skip)]
    pub labels: Labels,
}

/// The containers whose bad `ztd.*` labels were already reported, so each is reported once.
static REPORTED_BAD_LABELS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl ContainerInfo {
    /// Its `ztd.*` settings, where a bad label matters: an error (exit 5) naming the container,
    /// its service and the label. Used for what is about to serve: a target's health, the new
    /// side of a switch, the color a rollback brings back.
    pub fn settings(&self) -> Result<ServiceSettings> {
        ServiceSettings::from_labels(&self.service, &self.labels).map_err(|err| {
            crate::error::Error::State(format!("container {}: {}", self.name, err.message()))
        })
    }

    /// Its `ztd.*` settings where going on is safer than stopping (retiring an old container,
    /// putting things back, watching): a bad label falls back to the defaults and is reported
    /// once per container as a warning.
    pub fn settings_or_default(&self) -> ServiceSettings {
        match self.settings() {
            Ok(settings) => settings,
            Err(err) => {
                let first = REPORTED_BAD_LABELS.lock().is_ok_and(|mut reported| {
                    let first = !reported.contains(&self.id);
                    if first {
                        reported.push(self.id.clone());
                    }
                    first
                });
                if first {
                    crate::warn!("{}; using the defaults", err.message());
                }
                ServiceSettings::default()
            }
        }
    }

    /// Whether the engine will bring this stopped container back by itself.
    pub fn will_restart(&self) -> bool {
        match self.restart_policy.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => self.exit_code.unwrap_or(0) != 0,
            _ => false,
        }
    }

    /// How long it has been up, if it is running.
    pub fn uptime(&self, now: DateTime<Utc>) -> Option<Duration> {
        if self.state != RunState::Running {
            return None;
        }
        let started = self.started_at?;
        (now - started).to_std().ok()
    }

    /// Where the log of its current run begins. The first lines of a run are stamped a little
    /// before the engine records `StartedAt`, so the window opens a second earlier, but never
    /// before the previous run ended.
    pub fn run_log_start(&self) -> Option<DateTime<Utc>> {
        let started = self.started_at?;
        let early = started - chrono::Duration::seconds(1);
        Some(match self.finished_at {
            Some(finished) if finished < started => early.max(finished),
            _ => early,
        })
    }

    /// Fill `service`, `color` and `version` from the labels.
    pub fn apply_labels(&mut self) {
        let service = self
            .labels
            .get(labels::DEPLOYMENT_SERVICE)
            .or_else(|| self.labels.get(labels::COMPOSE_SERVICE))
            .cloned();
        self.service = service.unwrap_or_else(|| self.name.clone());
        self.color = self
            .labels
            .get(labels::DEPLOYMENT_COLOR)
            .and_then(|c| c.parse().ok());
        self.version = self.labels.get(labels::DEPLOYMENT_VERSION).cloned();
        self.project = self.labels.get(labels::COMPOSE_PROJECT).cloned();
    }
}

/// Which containers to list.
#[derive(Debug, Clone, Default)]
pub struct ContainerQuery {
    /// Label filters: `key` alone or `key=value`.
    pub labels: Vec<String>,
    /// Include stopped containers.
    pub all: bool,
}

impl ContainerQuery {
    /// Every container (running or not) of a Compose project.
    pub fn project(project: &str) -> ContainerQuery {
        ContainerQuery {
            labels: vec![format!("{}={project}", labels::COMPOSE_PROJECT)],
            all: true,
        }
    }
}

/// The result of a command run in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOutput {
    /// Its exit code; `None` when it was still running at the timeout.
    pub exit_code: Option<i64>,
    /// Combined stdout and stderr, truncated to a few KiB.
    pub output: String,
}

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine recorded it.
    pub timestamp: DateTime<Utc>,
    /// The text, without the trailing newline.
    pub text: String,
}

/// Which part of a container's log to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogQuery {
    /// Only lines recorded at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only the last N lines.
    pub tail: Option<usize>,
}

/// One resource sample of a container.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ResourceSample {
    /// Memory in use, page cache excluded (as `docker stats` shows it).
    pub memory_usage: u64,
    /// The memory limit, or the host's memory when there is none.
    pub memory_limit: u64,
    /// CPU time used so far, in nanoseconds.
    pub cpu_total_ns: u64,
    /// The host's CPU time so far, in nanoseconds.
    pub system_cpu_ns: u64,
    /// CPUs the container can use.
    pub online_cpus: u32,
}

impl ResourceSample {
    /// CPU use between two samples, in percent of one core (`docker stats`' convention).
    pub fn cpu_percent_since(&self, earlier: &ResourceSample) -> Option<f64> {
        let cpu = self.cpu_total_ns.checked_sub(earlier.cpu_total_ns)? as f64;
        let system = self.system_cpu_ns.checked_sub(earlier.system_cpu_ns)? as f64;
        if system <= 0.0 {
            return None;
        }
        Some(cpu / system * f64::from(self.online_cpus.max(1)) * 100.0)
    }

    /// Memory use in percent of the limit.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            0.0
        } else {
            self.memory_usage as f64 * 100.0 / self.memory_limit as f64
        }
    }
}

/// A container event from the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineEvent {
    /// The container id.
    pub container_id: String,
    /// The container name.
    pub container_name: String,
    /// `start`, `die`, `oom`, `health_status: healthy`, ...
    pub action: String,
    /// When, in nanoseconds since the epoch.
    pub time_nano: i64,
    /// The container's labels at the time (includes `exitCode` for `die`).
    #[serde(skip)]
    pub attributes: BTreeMap<String, String>,
}

/// One process in a container, as `docker top` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its PID on the host.
    pub pid: u32,
    /// Its command line (nginx puts its role there: `nginx: worker process is shutting down`).
    pub args: String,
}

/// What the engine knows of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDetails {
    /// Its id (`sha256:...`).
    pub id: String,
    /// Its repository digests (`repo@sha256:...`), one per registry repository it came from or
    /// was pushed to; none for an image only built here.
    pub repo_digests: Vec<String>,
}

/// A named volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Its name.
    pub name: String,
    /// Driver (default when `None`).
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A stream of engine events.
pub type EventStream = BoxStream<'static, Result<EngineEvent>>;

/// The container engine, in ztd's terms. Methods take container ids or names.
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// Containers matching the query, fully inspected.
    async fn list(&self, query: &ContainerQuery) -> Result<Vec<ContainerInfo>>;
    /// One container, fully inspected.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo>;
    /// Run argv in a running container and wait up to `timeout` for it to finish.
    async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput>;
    /// Read log lines (stdout and stderr).
    async fn logs(&self, id: &str, query: LogQuery) -> Result<Vec<LogLine>>;
    /// One resource sample, without waiting for the engine's next collection cycle.
    async fn stats(&self, id: &str) -> Result<ResourceSample>;
    /// Start a container.
    async fn start(&self, id: &str) -> Result<()>;
    /// Stop a container: its stop signal, then SIGKILL after `timeout`.
    async fn stop(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Send a signal to a container's main process.
    async fn kill(&self, id: &str, signal: &str) -> Result<()>;
    /// Connect a container to a network under these aliases; already connected is fine.
    async fn connect(&self, network: &str, id: &str, aliases: &[String]) -> Result<()>;
    /// Disconnect a container from a network; not connected is fine.
    async fn disconnect(&self, network: &str, id: &str) -> Result<()>;
    /// Create a named volume unless it exists.
    async fn ensure_volume(&self, volume: &VolumeSpec) -> Result<()>;
    /// Change a container's restart policy (`no`, `always`, `unless-stopped`, `on-failure`).
    async fn set_restart_policy(&self, id: &str, policy: &str) -> Result<()>;
    /// Tag an image (by id) as `repo:tag`.
    async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<()>;
    /// Remove an image reference (a tag): the image goes only with its last reference.
    async fn untag_image(&self, reference: &str) -> Result<()>;
    /// An image by reference or id: its id and repository digests; `None` when the engine has
    /// no such image.
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>>;
    /// The processes running in a container (host PIDs and command lines).
    async fn processes(&self, id: &str) -> Result<Vec<ProcessInfo>>;
    /// Container events for containers matching the query's label filters, from the moment of
    /// this call on (none is lost before the stream is first polled).
    async fn events(&self, query: &ContainerQuery) -> Result<EventStream>;
    /// How to reach the containers' addresses: the network for a real engine; a fake engine
    /// answers for its own fake containers.
    fn prober(&self) -> std::sync::Arc<dyn crate::probe::Prober> {
        std::sync::Arc::new(crate::probe::NetProber)
    }
    /// The engine's address when it is on another machine, whose containers' addresses
    /// cannot be probed from here; `None` for a local engine.
    fn remote_host(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::container;

    #[test]
    fn a_healthcheck_test_becomes_the_command_the_engine_would_run() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cmd =
            HealthcheckCommand::from_test(&words(&["CMD", "/probe", "-q"]), Some(2_000_000_000))
                .expect("CMD");
        assert_eq!(cmd.argv, words(&["/probe", "-q"]));
        assert_eq!(cmd.timeout, Duration::from_secs(2));
        let shell =
            HealthcheckCommand::from_test(&words(&["CMD-SHELL", "curl -f localhost"]), None)
                .expect("CMD-SHELL");
        assert_eq!(shell.argv, words(&["/bin/sh", "-c", "curl -f localhost"]));
        assert_eq!(shell.timeout, Duration::from_secs(30), "Docker's default");
        for none in [&["NONE"][..], &[], &["CMD"], &["CMD", ""], &["CMD-SHELL"]] {
            assert_eq!(
                HealthcheckCommand::from_test(&words(none), None),
                None,
                "{none:?}"
            );
        }
    }

    #[test]
    fn a_bad_label_is_an_error_where_it_matters_and_the_defaults_reported_once_elsewhere() {
        let mut retiring = container("bot-blue", "shop-blue", Color::Blue, RunState::Running);
        retiring
            .labels
            .insert("ztd.stop.timeout".into(), "a while".into());
        let err = retiring.settings().expect_err("a bad label is an error");
        assert!(
            err.message().contains("container bot-blue")
                && err.message().contains("ztd.stop.timeout"),
            "{}",
            err.message()
        );
        // Where going on is safer: the defaults, and the label reported once per container.
        assert_eq!(retiring.settings_or_default().stop_timeout, None);
        assert_eq!(retiring.settings_or_default().stop_timeout, None);
        let reported = REPORTED_BAD_LABELS.lock().expect("lock");
        assert_eq!(reported.iter().filter(|id| **id == retiring.id).count(), 1);
        drop(reported);
        let mut good = container("web-blue", "shop-blue", Color::Blue, RunState::Running);
        good.labels.insert("ztd.stop.timeout".into(), "5s".into());
        assert_eq!(
            good.settings().expect("good").stop_timeout,
            Some(Duration::from_secs(5))
        );
    }
}
