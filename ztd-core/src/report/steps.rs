//! The timed steps of a deploy, switch or rollback, as its report lists them.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::info;
use crate::proxy::ProxySwitch;
use crate::stack::Color;
use crate::units::millis;

/// One timed step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `proxy`, `handover:<service>`, `stop_old`, `build`, …
    pub name: String,
    /// When it began, in milliseconds since the Unix epoch: steps of the tools of one pipeline
    /// line up on one timeline (`make bench` prints it).
    #[serde(default)]
    pub started_unix_ms: u64,
    /// How long it took.
    pub duration_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// What the step reports beside its timing.
    #[serde(flatten)]
    pub detail: StepDetail,
}

impl Step {
    fn timed(name: &str, started: Instant, ended: Instant, ok: bool, detail: StepDetail) -> Step {
        let since_start = started.elapsed();
        let began = SystemTime::now()
            .checked_sub(since_start)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        Step {
            name: name.to_string(),
            started_unix_ms: u64::try_from(began.as_millis()).unwrap_or(u64::MAX),
            duration_ms: millis(ended.saturating_duration_since(started)),
            ok,
            detail,
        }
    }
}

/// What a step reports beside its timing; each field only on the steps that have it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepDetail {
    /// The proxy step of a switch: what the flip did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ProxySwitch>,
    /// The proxy step of an adoption: how long the host ports were closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_gap_ms: Option<f64>,
    /// The proxy step of a rollback: the color it points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    /// How many containers a step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<usize>,
    /// How many containers a step stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<usize>,
}

/// Timings of the steps of a run, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Steps(Vec<Step>);

impl Steps {
    /// Time an async step.
    pub async fn run<T, F: std::future::Future<Output = Result<T>>>(
        &mut self,
        name: &str,
        step: F,
    ) -> Result<T> {
        let started = Instant::now();
        info!("{name}...");
        let result = step.await;
        self.record(name, started, result.is_ok(), StepDetail::default());
        result
    }

    /// Record a step that began at `started` and has just ended.
    pub fn record(&mut self, name: &str, started: Instant, ok: bool, detail: StepDetail) {
        let step = Step::timed(name, started, Instant::now(), ok, detail);
        self.0.push(step);
    }

    /// Record, at `index` among the steps, a step that ran from `started` to `ended` beside the
    /// steps recorded since (a step run at the same time as others).
    pub fn insert(
        &mut self,
        index: usize,
        name: &str,
        (started, ended): (Instant, Instant),
        ok: bool,
        detail: StepDetail,
    ) {
        let step = Step::timed(name, started, ended, ok, detail);
        self.0.insert(index.min(self.0.len()), step);
    }

    /// How many steps are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no step is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The steps in order.
    pub fn list(&self) -> &[Step] {
        &self.0
    }
}
