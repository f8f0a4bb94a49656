//! A fake engine for unit tests: containers, logs and stats held in memory, so the logic can
//! be tested without Docker. Every promise is also tested against the real engine.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use crate::engine::{
    ContainerInfo, ContainerQuery, DockerHealth, Engine, EventStream, ExecOutput, LogLine,
    LogQuery, ProcessInfo, ResourceSample, RunState, VolumeSpec,
};
use crate::error::{Error, Result};
use crate::labels;
use crate::stack::Color;

/// Containers and their data, in memory.
#[derive(Debug, Default)]
pub struct FakeEngine {
    containers: Mutex<Vec<ContainerInfo>>,
    logs: Mutex<HashMap<String, Vec<LogLine>>>,
    stats: Mutex<HashMap<String, ResourceSample>>,
    exec_results: Mutex<HashMap<String, ExecOutput>>,
    failing: AtomicBool,
    log_delay: Mutex<Option<Duration>>,
}

/// A container of a colored Compose project, started a minute ago.
pub fn container(name: &str, project: &str, color: Color, state: RunState) -> ContainerInfo {
    let service = name
        .strip_suffix(&format!("-{color}"))
        .unwrap_or(name)
        .to_string();
    let mut info = ContainerInfo {
        id: format!("id-{name}"),
        name: name.to_string(),
        service: String::new(),
        color: None,
        project: None,
        state,
        health: DockerHealth::None,
        restart_count: 0,
        image: "app:latest".into(),
        image_id: "sha256:0123".into(),
        version: None,
        started_at: Some(Utc::now() - chrono::Duration::seconds(60)),
        finished_at: None,
        exit_code: Some(0),
        oom_killed: false,
        restart_policy: "no".into(),
        addresses: vec!["127.0.0.1".into()],
        exposed_ports: vec![],
        published_ports: vec![],
        networks: Default::default(),
        deployment_color_env: Some(color.to_string()),
        labels: [
            (labels::COMPOSE_PROJECT.to_string(), project.to_string()),
            (labels::COMPOSE_SERVICE.to_string(), service.clone()),
            (labels::DEPLOYMENT_COLOR.to_string(), color.to_string()),
            (labels::DEPLOYMENT_SERVICE.to_string(), service),
        ]
        .into(),
    };
    info.apply_labels();
    info
}

impl FakeEngine {
    /// An engine holding these containers.
    pub fn with(containers: Vec<ContainerInfo>) -> FakeEngine {
        FakeEngine {
            containers: Mutex::new(containers),
            ..Default::default()
        }
    }

    /// Give a container log lines, each stamped at the given time.
    pub fn set_logs(&self, name: &str, lines: &[(DateTime<Utc>, &str)]) {
        let lines = lines
            .iter()
            .map(|(timestamp, text)| LogLine {
                timestamp: *timestamp,
                text: text.to_string(),
            })
            .collect();
        self.lock_logs().insert(format!("id-{name}"), lines);
    }

    /// Give a container a resource sample.
    pub fn set_stats(&self, name: &str, sample: ResourceSample) {
        if let Ok(mut stats) = self.stats.lock() {
            stats.insert(format!("id-{name}"), sample);
        }
    }

    /// Make listing containers and reading their stats fail, as an engine in trouble does.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Make every log read take this long, as a log flood does.
    pub fn set_log_delay(&self, delay: Duration) {
        *self.log_delay.lock().unwrap_or_else(|e| e.into_inner()) = Some(delay);
    }

    fn check_failing(&self) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(Error::Engine("the fake engine is failing".into()))
        } else {
            Ok(())
        }
    }

    /// The state of a container now.
    pub fn state_of(&self, name: &str) -> Option<RunState> {
        self.lock_containers()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.state)
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, Vec<ContainerInfo>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<LogLine>>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, id: &str, state: RunState) -> Result<()> {
        let mut containers = self.lock_containers();
        let found = containers
            .iter_mut()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| Error::NotFound(format!("No such container: {id}")))?;
        found.state = state;
        Ok(())
    }
}

fn matches(info: &ContainerInfo, query: &ContainerQuery) -> bool {
    (query.all || info.state.is_up())
        && query
            .labels
            .iter()
            .all(|filter| match filter.split_once('=') {
                Some((key, value)) => info.labels.get(key).map(String::as_str) == Some(value),
                None => info.labels.contains_key(filter),
            })
}

impl Engine for FakeEngine {
    async fn list(&self, query: &ContainerQuery) -> Result<Vec<ContainerInfo>> {
        self.check_failing()?;
        Ok(self
            .lock_containers()
            .iter()
            .filter(|c| matches(c, query))
            .cloned()
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        self.lock_containers()
            .iter()
            .find(|c| c.id == id || c.name == id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No such container: {id}")))
    }

    async fn exec(&self, id: &str, _argv: &[String], _timeout: Duration) -> Result<ExecOutput> {
        Ok(self
            .exec_results
            .lock()
            .ok()
            .and_then(|r| r.get(id).cloned())
            .unwrap_or(ExecOutput {
                exit_code: Some(0),
                output: String::new(),
            }))
    }

    async fn logs(&self, id: &str, query: LogQuery) -> Result<Vec<LogLine>> {
        let delay = *self.log_delay.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let lines: Vec<LogLine> = self
            .lock_logs()
            .get(id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| query.since.is_none_or(|since| l.timestamp >= since))
            .collect();
        let skip = query
            .tail
            .map_or(0, |tail| lines.len().saturating_sub(tail));
        Ok(lines.into_iter().skip(skip).collect())
    }

    async fn stats(&self, id: &str) -> Result<ResourceSample> {
        self.check_failing()?;
        Ok(self
            .stats
            .lock()
            .ok()
            .and_then(|s| s.get(id).copied())
            .unwrap_or(ResourceSample {
                memory_usage: 10 << 20,
                memory_limit: 1 << 30,
                online_cpus: 1,
                ..Default::default()
            }))
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.set_state(id, RunState::Running)
    }

    async fn stop(&self, id: &str, _timeout: Duration) -> Result<()> {
        self.set_state(id, RunState::Exited)
    }

    async fn kill(&self, id: &str, _signal: &str) -> Result<()> {
        self.set_state(id, RunState::Exited)
    }

    async fn connect(&self, _network: &str, _id: &str, _aliases: &[String]) -> Result<()> {
        Ok(())
    }

    async fn disconnect(&self, _network: &str, _id: &str) -> Result<()> {
        Ok(())
    }

    async fn ensure_volume(&self, _volume: &VolumeSpec) -> Result<()> {
        Ok(())
    }

    async fn set_restart_policy(&self, id: &str, policy: &str) -> Result<()> {
        let mut containers = self.lock_containers();
        let found = containers
            .iter_mut()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| Error::NotFound(format!("No such container: {id}")))?;
        found.restart_policy = policy.to_string();
        Ok(())
    }

    async fn processes(&self, _id: &str) -> Result<Vec<ProcessInfo>> {
        Ok(Vec::new())
    }

    async fn events(&self, _query: &ContainerQuery) -> Result<EventStream> {
        Ok(futures_util::stream::pending().boxed())
    }
}
