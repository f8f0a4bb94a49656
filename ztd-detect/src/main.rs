//! ztd-detect: say what is deployed in a stack, which color is active, where the next deploy
//! goes, and whether the state files and the running containers disagree.

use std::process::ExitCode;

use clap::Parser;
use ztd_core::cli::{self, StackArgs, WithProject};
use ztd_core::detect::detect;
use ztd_core::docker::DockerEngine;
use ztd_core::report::{Printed, Report, summary};

const AFTER_HELP: &str = "\
Output: one JSON object on stdout with project, active, standby, target (where the next deploy
goes: the standby, or green when nothing is deployed), recorded (what .current_deployment and
.ztd/state.json say), colors (each color's containers: name, service, state, health,
restart_count, image, version, started_at), shared, conflict and lock.

Exit codes:
  0  the state is consistent (also when nothing is deployed)
  2  bad usage
  3  the Docker engine is unreachable
  4  the Docker engine failed a request
  5  a conflict: the state files and the running containers disagree, both colors claim to be
     active, or a state file is unreadable
  6  a switch or rollback was interrupted (journal left, lock free): resume or roll back

Examples:
  ztd-detect
  ztd-detect --project-dir /srv/shop | jq -r .active
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch";

/// Say what is deployed and which color is active.
#[derive(Debug, Parser)]
#[command(name = "ztd-detect", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    stack: StackArgs,
}

fn main() -> ExitCode {
    let cli = match cli::parse_args::<Cli>("ztd-detect") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        return ztd_core::swarm::tools::detect(cli.stack);
    }
    cli::run("ztd-detect", || async move {
        let stack = cli.stack.resolve_named(None).await.no_project()?;
        let engine = DockerEngine::connect().await.in_project(&stack)?;
        let detection = detect(&engine, &stack).await.in_project(&stack)?;
        if !ztd_core::output::stdout_is_for_people() {
            summary::log_detection(&stack.name, &detection);
        }
        let target = Some(detection.target());
        Ok(Printed::json(&Report::new(
            "ztd-detect",
            &stack,
            target,
            detection,
        )))
    })
}
