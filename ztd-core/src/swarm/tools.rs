//! The six tools' entry points with `--orchestrator swarm`: each reads its place in the
//! pipeline as with Compose (a named color, else the upstream report's target), connects to the
//! cluster and prints the operation's report with the same envelope and exit codes.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{self, Context, StackArgs, WithProject};
use crate::error::Error;
use crate::report::{Printed, Report};
use crate::stack::Color;
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

/// `ztd-up --orchestrator swarm`.
pub fn up(stack_args: StackArgs, color: Option<Color>, unsupported: &[(&str, bool)]) -> ExitCode {
    let refused = refuse("ztd-up", unsupported);
    cli::run("ztd-up", || async move {
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
        let report = ops::up(&cluster, &stack, &sources, color)
            .await
            .in_project(&stack)?;
        let target = Some(report.color);
        Ok(Printed::json(&Report::new(
            "ztd-up", &stack, target, report,
        )))
    })
}

/// `ztd-health --orchestrator swarm`.
pub fn health(
    stack_args: StackArgs,
    color: Option<Color>,
    wait: Option<Duration>,
    unsupported: &[(&str, bool)],
) -> ExitCode {
    let refused = refuse("ztd-health", unsupported);
    cli::run("ztd-health", || async move {
        refused?;
        crate::signals::install();
        let (stack, color) = match cli::context(&stack_args, color, true, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act { stack, color, .. } => (stack, color),
        };
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let report = ops::health(&cluster, &stack, color, wait)
            .await
            .in_project(&stack)?;
        let target = Some(report.color);
        Ok(Printed::json(&Report::new(
            "ztd-health",
            &stack,
            target,
            report,
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

/// `ztd-monitor --orchestrator swarm`.
pub fn monitor(
    stack_args: StackArgs,
    color: Option<Color>,
    window: Duration,
    unsupported: &[(&str, bool)],
) -> ExitCode {
    let refused = refuse("ztd-monitor", unsupported);
    cli::run("ztd-monitor", || async move {
        refused?;
        crate::signals::install();
        let (stack, color) = match cli::context(&stack_args, color, true, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act { stack, color, .. } => (stack, color),
        };
        let cluster = Cluster::connect().await.in_project(&stack)?;
        let report = ops::monitor(&cluster, &stack, color, window)
            .await
            .in_project(&stack)?;
        let target = Some(report.color);
        Ok(Printed::json(&Report::new(
            "ztd-monitor",
            &stack,
            target,
            report,
        )))
    })
}
