//! ztd-up: deploy a new version of a Compose stack as the standby color, beside the active one.

use std::process::ExitCode;

use clap::Parser;
use ztd_core::cli::{self, Context, StackArgs, WithProject};
use ztd_core::compose::Compose;
use ztd_core::docker::DockerEngine;
use ztd_core::error::Error;
use ztd_core::pull::{self, PullPolicy};
use ztd_core::report::Printed;
use ztd_core::signals;
use ztd_core::stack::Color;
use ztd_core::up::{UpOptions, up};

/// `--pull`'s value.
fn pull_arg(value: &str) -> Result<PullPolicy, String> {
    value
        .parse()
        .map_err(|e: ztd_core::Error| e.message().to_string())
}

const AFTER_HELP: &str = "\
What it does: reads your project as docker compose would from the project dir (-f, COMPOSE_FILE,
override files, .env, --env-file, name:, --profile, COMPOSE_PROFILES; one `docker compose config`
with your environment untouched), then renders the color's own Compose project into
docker-compose.<COLOR>.yml (readable by its owner only: it holds the resolved environment):
containers named <service>-<COLOR>, the deployment.* labels, DEPLOYMENT_COLOR and
DEPLOYMENT_MODE=blue-green in the environment, the build args DEPLOYMENT_COLOR, BUILD_DATE,
VCS_REF and VERSION (VERSION=<COLOR>-YYYYmmdd-HHMMSS is also set for ${VERSION} in your file),
its own networks, your named volumes shared by both colors, and no published ports: the front
proxy (<name>-ztd-proxy, nginx) owns them and forwards to the active color. Then it builds and
starts the project <name>-<COLOR>. Services labelled ztd.switch=handover are created but not
started (or started in standby when they have ztd.activate) until the switch;
ztd.switch=shared services run once for both colors (project <name>-shared) and are never
touched by a deploy. Writes .rollback_state, and records the color as the deploy candidate.

Requires Compose v2 (the docker compose plugin, or set ZTD_COMPOSE); Compose v1 is refused.

Pulls first, before anything of the color is created: a service without build: is pulled on
every deploy when its image names a registry (host.domain/..., host:port/...), else only when
missing; its pull_policy (always, missing, never, build) says otherwise, and --pull (ZTD_PULL)
overrides both. A failed pull, or a missing image under never, refuses the deploy (exit 4,
nothing changed). Each service's image id and repository digest are recorded.

Exit codes:
  0  deployed (not yet active: run ztd-health --wait, then ztd-switch)
  1  the upstream tool failed (its report is passed on)
  2  bad usage, or COLOR is the active color
  3  Docker engine unreachable     4  Compose or the engine failed (pull, build, create, start)
  5  Compose cannot read the project (no compose file, a missing -f file, invalid YAML: its
     own reason on one line), a bad ztd.* label, no Compose v2, or a state conflict
  6  an interrupted switch must be resumed or rolled back first
  7  another deploy holds the lock
  130 interrupted by Ctrl-C, SIGTERM or SIGHUP: what the new color had started is stopped
      (nothing changed when the signal came before the first change); ztd-rollback abandons
      the candidate

Examples:
  ztd-up --dry-run          # the plan and the rendered file, secrets redacted; changes nothing
  ztd-up                    # deploy to the standby color
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch";

/// Deploy a new version as the standby color, beside the active one.
#[derive(Debug, Parser)]
#[command(name = "ztd-up", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The color to deploy to [default: the upstream tool's target on stdin, else the standby]
    #[arg(value_parser = cli::color_arg)]
    color: Option<Color>,
    /// Print the plan and the rendered compose file (environment values redacted); change nothing
    #[arg(long)]
    dry_run: bool,
    /// Do not build images (use what is there)
    #[arg(long)]
    no_build: bool,
    /// Pull the images of services without `build:`: always, missing (only when absent) or
    /// never (a missing image refuses the deploy) [env: ZTD_PULL; default: each service's
    /// pull_policy, else always for an image that names its registry, missing for any other]
    #[arg(long, value_name = "POLICY", value_parser = pull_arg)]
    pull: Option<PullPolicy>,
    #[command(flatten)]
    stack: StackArgs,
}

fn main() -> ExitCode {
    let cli = match cli::parse_args::<Cli>("ztd-up") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        let unsupported = [
            ("--dry-run", cli.dry_run),
            ("--no-build", cli.no_build),
            ("--pull", cli.pull.is_some()),
        ];
        return ztd_core::swarm::tools::up(cli.stack, cli.color, &unsupported);
    }
    cli::run("ztd-up", || async move {
        // Compose runs in its own process group, out of reach of a terminal's Ctrl-C: note the
        // signal so the running Compose command is stopped with its group and the tool exits 130.
        signals::install();
        // While the upstream report comes, the engine and Compose are asked their versions
        // (left unanswered when the report is only passed on: a hung engine does not delay it).
        let engine = tokio::spawn(DockerEngine::connect());
        let compose = tokio::spawn(Compose::find());
        let (stack, color, sources) = match cli::context(&cli.stack, cli.color, true, false).await?
        {
            Context::PassOn(upstream) => {
                engine.abort();
                compose.abort();
                return Ok(Printed::json(&upstream));
            }
            Context::Act {
                stack,
                color,
                sources,
                ..
            } => (stack, color, sources),
        };
        let pull = match cli.pull {
            Some(policy) => Some(policy),
            None => pull::from_env().in_project(&stack)?,
        };
        let asked = |e: tokio::task::JoinError| Error::Engine(format!("cannot ask: {e}"));
        let engine = engine
            .await
            .map_err(asked)
            .in_project(&stack)?
            .in_project(&stack)?;
        let compose = compose
            .await
            .map_err(asked)
            .in_project(&stack)?
            .in_project(&stack)?
            .on(engine.endpoint());
        let options = UpOptions {
            color,
            dry_run: cli.dry_run,
            no_build: cli.no_build,
            pull,
            sources,
        };
        let report = up(&engine, &compose, &stack, &options)
            .await
            .in_project(&stack)?;
        Ok(Printed::json(&report))
    })
}
