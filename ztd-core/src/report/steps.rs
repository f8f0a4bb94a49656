//! The timed steps of a deploy, switch or rollback, as its report lists them.

use std::time::Instant;

use serde_json::{Value, json};

use crate::error::Result;
use crate::info;

/// Timings of the steps of a run.
#[derive(Debug, Default)]
pub struct Steps(Vec<Value>);

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
        self.0
            .push(json!({"name": name, "duration_ms": crate::units::millis_since(started), "ok": result.is_ok()}));
        result
    }

    /// Record a step with extra fields.
    pub fn push(&mut self, name: &str, started: Instant, extra: Value) {
        let mut entry =
            json!({"name": name, "duration_ms": crate::units::millis_since(started), "ok": true});
        if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), extra) {
            entry.extend(extra);
        }
        self.0.push(entry);
    }

    /// The steps as JSON.
    pub fn to_json(&self) -> Value {
        Value::Array(self.0.clone())
    }
}
