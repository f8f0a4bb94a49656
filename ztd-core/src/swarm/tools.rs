//! The six tools' entry points with `--orchestrator swarm`: each reads its place in the
//! pipeline as with Compose (a named color, else the upstream report's target), connects to the
//! cluster and prints the operation's report with the same envelope and exit codes.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{self, Context, StackArgs, WithProject};
use crate::error::{Error, Result};
use crate::report::{Human, Outcome, Printed, Report};
use crate::stack::{Color, Sources, Stack};
use crate::swarm::Cluster;
use crate::swarm::ops::{self, SwarmSwitchOptions};

/// Refuse, as a usage error, flags that mean nothing on a Swarm cluster yet.
fn refuse(tool: &str, given: &[(&str, bool)]) -> std::result::Result<(), (Error, Option<String>)> {
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err((
            Error::Usage(format!(
                "{tool}: {flag} is not supported with --orchestrator swarm"
            )),
            None,
        )),
        None => Ok(()),
    }
}

/// `ztd-detect --orchestrator swarm`.
pub fn detect(stack_args: StackArgs) -> ExitCode {
    cli::run("ztd-detect", || async move {
        let stack = stack_args.resolve_named(None).await.no_project()?;
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let (detection, target) = ops::detect(&cluster, &stack).await.in_project(&stack)?;
        Ok(Printed::json(&Report::new(
            "ztd-detect",
            &stack,
            Some(target),
            detection,
        )))
    })
}

/// `ztd-switch` and `ztd-rollback` with `--orchestrator swarm`.
pub fn switch(
    tool: &'static str,
    stack_args: StackArgs,
    options: SwarmSwitchOptions,
    unsupported: &[(&str, bool)],
) -> ExitCode {
    let refused = refuse(tool, unsupported);
    cli::run(tool, || async move {
        refused?;
        crate::signals::install();
        let reads_upstream = tool == "ztd-switch" && !options.resume;
        let (stack, to) = match cli::context(&stack_args, options.to, reads_upstream, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act { stack, color, .. } => (stack, color),
        };
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let options = SwarmSwitchOptions { to, ..options };
        let report = ops::switch(&cluster, &stack, tool, &options)
            .await
            .in_project(&stack)?;
        let target = Some(report.to);
        Ok(Printed::json(&Report::new(tool, &stack, target, report)))
    })
}

/// `ztd-rollback --orchestrator swarm --break-lock`.
pub fn break_lock(stack_args: StackArgs) -> ExitCode {
    cli::run("ztd-rollback", || async move {
        let stack = stack_args.resolve_named(None).await.no_project()?;
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let report = ops::break_lock(&cluster, &stack).await.in_project(&stack)?;
        Ok(Printed::json(&Report::new(
            "ztd-rollback",
            &stack,
            None,
            report,
        )))
    })
}

/// A report about one color, which the tool hands on as its target.
trait OfColor {
    fn color(&self) -> Color;
}

impl OfColor for ops::SwarmUpReport {
    fn color(&self) -> Color {
        self.color
    }
}

impl OfColor for ops::SwarmHealthReport {
    fn color(&self) -> Color {
        self.color
    }
}

impl OfColor for ops::SwarmMonitorReport {
    fn color(&self) -> Color {
        self.color
    }
}

/// A tool that acts on one color: its place in the pipeline (a named color, else the upstream
/// report's target), the cluster, then `op`, whose report hands its color on.
fn on_color<R>(
    tool: &'static str,
    stack_args: StackArgs,
    color: Option<Color>,
    unsupported: &[(&str, bool)],
    op: impl AsyncFnOnce(&Cluster, &Stack, Option<Color>, &Sources) -> Result<R>,
) -> ExitCode
where
    R: Serialize + Outcome + OfColor,
    Report<R>: Human,
{
    let refused = refuse(tool, unsupported);
    cli::run(tool, || async move {
        refused?;
        crate::signals::install();
        let (stack, color, sources) = match cli::context(&stack_args, color, true, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act {
                stack,
                color,
                sources,
                ..
            } => (stack, color, sources),
        };
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let report = op(&cluster, &stack, color, &sources)
            .await
            .in_project(&stack)?;
        let target = report.color();
        Ok(Printed::json(&Report::new(
            tool,
            &stack,
            Some(target),
            report,
        )))
    })
}

/// `ztd-up --orchestrator swarm`.
pub fn up(stack_args: StackArgs, color: Option<Color>, unsupported: &[(&str, bool)]) -> ExitCode {
    on_color(
        "ztd-up",
        stack_args,
        color,
        unsupported,
        async |cluster, stack, color, sources| ops::up(cluster, stack, sources, color).await,
    )
}

/// `ztd-health --orchestrator swarm`.
pub fn health(
    stack_args: StackArgs,
    color: Option<Color>,
    wait: Option<Duration>,
    unsupported: &[(&str, bool)],
) -> ExitCode {
    on_color(
        "ztd-health",
        stack_args,
        color,
        unsupported,
        async |cluster, stack, color, _| ops::health(cluster, stack, color, wait).await,
    )
}

/// `ztd-monitor --orchestrator swarm`.
pub fn monitor(
    stack_args: StackArgs,
    color: Option<Color>,
    window: Duration,
    unsupported: &[(&str, bool)],
) -> ExitCode {
    on_color(
        "ztd-monitor",
        stack_args,
        color,
        unsupported,
        async |cluster, stack, color, _| ops::monitor(cluster, stack, color, window).await,
    )
}
