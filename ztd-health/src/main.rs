//! ztd-health: check every container of a color at once and answer healthy or not, as JSON,
//! or as one status line with the monitoring-plugin codes for cron and monitoring systems.

use std::process::ExitCode;

use clap::Parser;
use ztd_core::cli::{self, Context, HealthArgs, StackArgs, WithProject};
use ztd_core::docker::DockerEngine;
use ztd_core::health::{self, HealthBody, HealthReport, Looking};
use ztd_core::output::{self, Level};
use ztd_core::report::health as health_printer;
use ztd_core::report::live::StatusLine;
use ztd_core::report::{Printed, Report};
use ztd_core::stack::{Color, Stack};
use ztd_core::{Error, validate, warn};

const AFTER_HELP: &str = "\
Checks, per container: running; Docker's HEALTHCHECK (starting, healthy, unhealthy, or none);
restart count; an HTTP probe (labels ztd.health.http, ztd.health.port) and a TCP probe
(ztd.health.tcp) sent to the container's address; error lines in its log since it started
(ztd.logs.error); memory and CPU when a ceiling is set (--max-memory, --max-cpu or the labels;
the engine answers stats only at its next one-second sample, so they are not read otherwise).
A container with no HEALTHCHECK and no probe passes once it has been up --min-uptime. Error
lines in the log are a warning unless a limit is set (--max-log-errors).

Settings: flags > environment (HEALTH_CHECK_RETRIES, HEALTH_CHECK_INTERVAL, ZTD_MIN_UPTIME,
DEPLOYMENT_LOG_LEVEL) > defaults. Per-service ztd.* labels override the threshold flags.
Each call to the engine gives up after ZTD_ENGINE_TIMEOUT (10s): exit 3 (UNKNOWN with --nagios).

Exit codes:
  0  healthy (warnings allowed)       1  unhealthy, or nothing deployed
  2  bad usage                        3  Docker engine unreachable
  4  Docker engine failed a request   5  bad state file, bad ztd.* label, or a state conflict
With --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, and one status line instead of JSON.

Examples:
  ztd-health                         # the active color, once
  ztd-health green --wait            # until green is healthy, or give up after 10 x 5s
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch
  */5 * * * * cd /srv/shop && ztd-health --nagios   # cron";

/// Check the health of one color of a stack.
#[derive(Debug, Parser)]
#[command(name = "ztd-health", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The color to check [default: the upstream tool's target on stdin, else the active color]
    #[arg(value_parser = cli::color_arg)]
    color: Option<Color>,
    /// Keep checking until healthy or until --timeout has passed; returns as soon as the color
    /// is healthy
    #[arg(long)]
    wait: bool,
    /// How long the check may take (bare numbers are seconds): a wait gives up unhealthy after
    /// it (exit 1); a single check gives up with exit 3 (UNKNOWN with --nagios), as a
    /// monitoring plugin's timeout [default: a wait: --retries x --retry-interval, 50s; a
    /// single check: none]
    #[arg(short = 't', long, value_name = "DURATION", env = "ZTD_HEALTH_TIMEOUT", value_parser = cli::duration_arg)]
    timeout: Option<std::time::Duration>,
    /// Print one status line and use the monitoring-plugin exit codes
    #[arg(long, conflicts_with_all = ["report", "validate", "wait"])]
    nagios: bool,
    /// Run the validation checks (containers, health endpoints, resources, logs, connectivity,
    /// configuration) instead of the health check
    #[arg(long, conflicts_with = "wait")]
    validate: bool,
    /// Print the report of the replaced scripts instead of JSON: one line per container and a
    /// CRITICAL/WARNING/SUCCESS line (exit 0 OK, 1 warnings, 2 critical or nothing deployed), or
    /// with --validate "Checking <name>... PASS|FAIL" and a summary (exit 0 or 1)
    #[arg(long)]
    report: bool,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    stack: StackArgs,
}

const TOOL: &str = "ztd-health";

/// What stdout carries: JSON, the scripts' report (`--report`), or a plugin line (`--nagios`).
/// Read from the raw arguments, so a usage error is printed the mode's way too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Json,
    Report,
    Nagios,
}

impl Mode {
    fn of(args: &[std::ffi::OsString]) -> Mode {
        if args.iter().any(|a| a == "--report") {
            Mode::Report
        } else if args.iter().any(|a| a == "--nagios") {
            Mode::Nagios
        } else {
            Mode::Json
        }
    }
}

fn main() -> ExitCode {
    let mode = Mode::of(&std::env::args_os().skip(1).collect::<Vec<_>>());
    let cli = match mode {
        Mode::Json => match cli::parse_args::<Cli>(TOOL) {
            Ok(cli) => cli,
            Err(code) => return code,
        },
        _ => match cli::try_parse_args::<Cli>(TOOL) {
            Ok(cli) => cli,
            Err(cli::ParseStop::Printed) => return ExitCode::SUCCESS,
            Err(cli::ParseStop::Usage(m)) if mode == Mode::Report => {
                return print(health_printer::report_usage_error(&m));
            }
            Err(cli::ParseStop::Usage(m)) => return print(health_printer::nagios_unknown(&m)),
        },
    };
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        let wait = cli.wait.then(|| cli.health.deadline(cli.timeout));
        let unsupported = [
            ("--nagios", cli.nagios),
            ("--report", cli.report),
            ("--validate", cli.validate),
        ];
        return ztd_core::swarm::tools::health(cli.stack, cli.color, wait, &unsupported);
    }
    let (floor, on_error): (Level, fn(&Error) -> Printed) = match (mode, cli.validate) {
        (Mode::Json, _) => return cli::run(TOOL, || json(cli)),
        (Mode::Report, true) => (Level::Warn, health_printer::validation_report_error),
        (Mode::Report, false) => (Level::Warn, health_printer::service_report_error),
        (Mode::Nagios, _) => (Level::Debug, |err| {
            health_printer::nagios_unknown(err.message())
        }),
    };
    cli::run_with(TOOL, floor, || text(cli), on_error)
}

fn print(printed: Printed) -> ExitCode {
    output::print_text(&printed.text);
    ExitCode::from(printed.status.code())
}

/// The JSON report: of the validation or of the health check, passing a failed upstream on.
async fn json(cli: Cli) -> Result<Printed, (Error, Option<String>)> {
    let (stack, requested) = match cli::context(&cli.stack, cli.color, true, true).await? {
        Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
        Context::Act { stack, color, .. } => (stack, color),
    };
    let engine = DockerEngine::connect().await.in_project(&stack)?;
    let policy = cli.health.policy();
    if cli.validate {
        let body = validate::run(&engine, &stack, requested, &policy).await;
        let body = body.in_project(&stack)?;
        return Ok(Printed::json(&Report::new(
            TOOL,
            &stack,
            body.color(),
            body,
        )));
    }
    let body = check(&engine, &stack, requested, &cli).await;
    let body = body.in_project(&stack)?;
    if let HealthBody::NothingDeployed(_) = body {
        warn!("nothing is deployed in {}", stack.name);
    }
    Ok(Printed::json(&Report::new(
        TOOL,
        &stack,
        body.color(),
        body,
    )))
}

/// Check `color` once (bounded by --timeout when given), or wait until --timeout, with the
/// live status on a terminal.
async fn check(
    engine: &DockerEngine,
    stack: &Stack,
    color: Option<Color>,
    cli: &Cli,
) -> Result<HealthBody, Error> {
    let looking = if cli.wait {
        Looking::Wait {
            deadline: cli.health.deadline(cli.timeout),
        }
    } else {
        Looking::Once {
            timeout: cli.timeout,
        }
    };
    let status = StatusLine::start();
    let observe =
        |report: &HealthReport, left| status.set(health_printer::wait_status(report, left));
    let policy = cli.health.policy();
    health::run(engine, stack, color, &policy, looking, observe).await
}

/// The text modes: the scripts' reports or the plugin line. They never read stdin.
async fn text(cli: Cli) -> Result<Printed, (Error, Option<String>)> {
    let stack = cli.stack.resolve_named(None).await.no_project()?;
    let engine = DockerEngine::connect().await.in_project(&stack)?;
    let policy = cli.health.policy();
    if cli.validate {
        let body = validate::run(&engine, &stack, cli.color, &policy).await;
        return Ok(health_printer::validation_report(
            &body.in_project(&stack)?,
            ztd_core::report::style::stdout_colored(),
        ));
    }
    let body = check(&engine, &stack, cli.color, &cli).await;
    let body = body.in_project(&stack)?;
    Ok(if cli.nagios {
        health_printer::nagios(&stack, &body)
    } else {
        health_printer::service_report(&body)
    })
}
