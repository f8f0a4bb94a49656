//! ztd-rollback: put the previous color back in service, undo an interrupted switch, or clean up
//! a color that is not active.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ztd_core::cli::{self, StackArgs, SwitchArgs, WithProject};
use ztd_core::compose::Compose;
use ztd_core::docker::DockerEngine;
use ztd_core::ops::versions;
use ztd_core::recover::{RollbackOptions, cleanup, rollback, rollback_to};
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

--list prints the retained versions (ZTD_KEEP_VERSIONS of them, 5 by default; each deploy by
ztd-up records one): version, color, time, image ids, git ref, the one serving marked active.
--to VERSION brings a retained version back as a blue-green deploy: the standby color is
rendered again from the version's saved files with its images pinned to the recorded ids
(kept by ztd-keep/<project>-<service>:<version> tags), health-checked, and the proxy and the
singletons are moved to it as above. The active version is refused (exit 2); an unknown one
exits 5 naming the retained ones.

--cleanup COLOR removes that color's containers, networks and rendered file. The active color
is refused (exit 2, nothing changed, as every tool refuses a color it cannot act on); an
unknown color is a usage error (exit 2 too).

Ctrl-C, SIGTERM or SIGHUP finishes the current step, puts everything back, releases the lock
and exits 130.

Exit codes:
  0  rolled back (or cleaned up)  1  refused (no previous color to go back to)
  2  bad usage, or --cleanup names the active color (--to the active version)
  3  Docker engine unreachable    4  the engine failed a request
  5  state conflict (--to an unknown version)
  6  left incomplete (or timed out): resume   7  another deploy holds the lock
  130 interrupted

Examples:
  ztd-rollback
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch || ztd-rollback
  ztd-rollback --cleanup green
  ztd-rollback --list
  ztd-rollback --to green-20261129-135114";

/// Roll back to the previous color, undo an interrupted switch, or clean up a color.
#[derive(Debug, Parser)]
#[command(name = "ztd-rollback", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// With --orchestrator swarm: clear the cluster lock of a deploy that died on another
    /// machine (its journal stays, for --resume or a rollback)
    #[arg(long, conflicts_with_all = ["cleanup", "list", "to"])]
    break_lock: bool,
    /// Remove this color (not the active one): containers, networks and rendered file
    #[arg(long, value_name = "COLOR", value_parser = cli::color_arg, conflicts_with_all = ["list", "to"])]
    cleanup: Option<Color>,
    /// List the retained versions (newest first, the serving one marked active)
    #[arg(long, conflicts_with = "to")]
    list: bool,
    /// Bring this retained version back as a blue-green deploy to the standby color
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
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
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        if cli.break_lock {
            return ztd_core::swarm::tools::break_lock(cli.stack);
        }
        let options = ztd_core::swarm::ops::SwarmSwitchOptions {
            to: None,
            force: false,
            resume: false,
            health_deadline: cli.switch.health.deadline(cli.switch.health_timeout),
            stop_timeout: cli.switch.stop_timeout,
        };
        let unsupported = [
            ("--cleanup", cli.cleanup.is_some()),
            ("--list", cli.list),
            ("--to", cli.to.is_some()),
        ];
        return ztd_core::swarm::tools::switch("ztd-rollback", cli.stack, options, &unsupported);
    }
    if cli.break_lock {
        return cli::fail(
            "ztd-rollback",
            None,
            &ztd_core::Error::Usage(
                "--break-lock is for the cluster lock of --orchestrator swarm (a local lock is freed when its process ends)".into(),
            ),
        );
    }
    cli::run("ztd-rollback", || async move {
        signals::install();
        let stack = cli.stack.resolve_named(None).await.no_project()?;
        if cli.list {
            let listed = versions::list(&stack).in_project(&stack)?;
            let active = listed.active;
            return Ok(Printed::json(&Report::new(
                "ztd-rollback",
                &stack,
                active,
                listed,
            )));
        }
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
        let rolled = match &cli.to {
            Some(version) => rollback_to(&engine, &compose, &stack, &options, version).await,
            None => rollback(&engine, &compose, &stack, &options).await,
        }
        .in_project(&stack)?;
        Ok(Printed::json(&Report::new(
            "ztd-rollback",
            &stack,
            rolled.target(),
            rolled,
        )))
    })
}
