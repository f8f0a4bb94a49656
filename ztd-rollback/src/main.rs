//! ztd-rollback: put the previous color back in service, undo an interrupted switch, or clean up
//! a color that is not active.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ztd_core::cli::{self, StackArgs, SwitchArgs, WithProject};
use ztd_core::compose::Compose;
use ztd_core::docker::DockerEngine;
use ztd_core::recover::{RollbackOptions, cleanup, rollback};
use ztd_core::report::{Printed, Report};
use ztd_core::signals;
use ztd_core::stack::Color;

const AFTER_HELP: &str = "\
What it rolls back, in this order:
  - a switch or rollback that was interrupted (its journal remains): undone, back to the color
    it started from (a first deploy, with nothing to go back to, is finished instead);
  - a deploy candidate started by ztd-up and never switched to: stopped (kept for inspection);
  - otherwise the last switch: the previous color recorded in .ztd/state.json comes back. Its
    kept containers are started (or recreated from the image ids recorded at its deploy if they
    were removed), health-checked, and the proxy and the singletons are moved back with the same
    machinery as ztd-switch; the color rolled back from is stopped and kept for inspection.
The whole rollback is bounded by --timeout (ROLLBACK_TIMEOUT, 300 s): past it, it stops, exits 6
and reports where things stand (ztd-switch --resume or ztd-rollback finishes the job). A change
that was being undone when it was interrupted is always undone, never finished.
Writes .current_deployment, .rollback_state (advanced) and a line in .ztd/history.jsonl.

--cleanup COLOR removes that color's containers, networks and rendered file. The active color
is refused (exit 2, nothing changed, as every tool refuses a color it cannot act on); an
unknown color is a usage error (exit 2 too).

Ctrl-C, SIGTERM or SIGHUP finishes the current step, puts everything back, releases the lock
and exits 130.

Exit codes:
  0  rolled back (or cleaned up)  1  refused (no previous color to go back to)
  2  bad usage, or --cleanup names the active color
  3  Docker engine unreachable    4  the engine failed a request
  5  state conflict
  6  left incomplete (or timed out): resume   7  another deploy holds the lock
  130 interrupted

Examples:
  ztd-rollback
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch || ztd-rollback
  ztd-rollback --cleanup green";

/// Roll back to the previous color, undo an interrupted switch, or clean up a color.
#[derive(Debug, Parser)]
#[command(name = "ztd-rollback", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Remove this color (not the active one): containers, networks and rendered file
    #[arg(long, value_name = "COLOR", value_parser = cli::color_arg)]
    cleanup: Option<Color>,
    /// Hard deadline of the whole rollback (bare numbers are seconds)
    #[arg(long, value_name = "DURATION", env = "ROLLBACK_TIMEOUT", default_value = "300", value_parser = cli::duration_arg)]
    timeout: Duration,
    #[command(flatten)]
    switch: SwitchArgs,
    #[command(flatten)]
    stack: StackArgs,
}

fn main() -> ExitCode {
    let cli = match cli::parse_args::<Cli>("ztd-rollback") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli::run("ztd-rollback", || async move {
        signals::install();
        let stack = cli.stack.resolve_named(None).await.no_project()?;
        let engine = DockerEngine::connect().await.in_project(&stack)?;
        let compose = Compose::find()
            .await
            .in_project(&stack)?
            .on(engine.endpoint());
        if let Some(color) = cli.cleanup {
            let cleaned = cleanup(&engine, &compose, &stack, color)
                .await
                .in_project(&stack)?;
            return Ok(Printed::json(&Report::new(
                "ztd-rollback",
                &stack,
                cleaned.target(),
                cleaned,
            )));
        }
        let options = RollbackOptions {
            switch: cli.switch.options(None, false),
            timeout: cli.timeout,
        };
        let rolled = rollback(&engine, &compose, &stack, &options)
            .await
            .in_project(&stack)?;
        Ok(Printed::json(&Report::new(
            "ztd-rollback",
            &stack,
            rolled.target(),
            rolled,
        )))
    })
}
