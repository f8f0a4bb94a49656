//! ztd-health: check every container of a color at once and answer healthy or not, as JSON,
//! or as one status line with the monitoring-plugin codes for cron and monitoring systems.

use std::process::ExitCode;

use clap::Parser;
use serde_json::{Value, json};
use std::io::IsTerminal;
use ztd_core::cli::{self, Context, HealthArgs, StackArgs, WithProject};
use ztd_core::detect::detect;
use ztd_core::docker::DockerEngine;
use ztd_core::health::{self, HealthReport, Target};
use ztd_core::report::Printed;
use ztd_core::stack::{Color, Stack};
use ztd_core::{Error, info, output, state, validate, warn};

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
    /// Keep checking until healthy or until retries x interval has passed; returns as soon as
    /// the color is healthy
    #[arg(long)]
    wait: bool,
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

/// The monitoring-plugin codes.
const NAGIOS_OK: u8 = 0;
const NAGIOS_WARNING: u8 = 1;
const NAGIOS_CRITICAL: u8 = 2;
const NAGIOS_UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--report") {
        return match cli::try_parse_args::<Cli>("ztd-health") {
            Ok(cli) => report_main(cli),
            Err(cli::ParseStop::Printed) => ExitCode::SUCCESS,
            Err(cli::ParseStop::Usage(message)) => {
                output::print_error_line(&format!("ERROR: {message}"));
                ExitCode::from(2)
            }
        };
    }
    let cli = if std::env::args().any(|a| a == "--nagios") {
        match cli::try_parse_args::<Cli>("ztd-health") {
            Ok(cli) => cli,
            Err(cli::ParseStop::Printed) => return ExitCode::SUCCESS,
            Err(cli::ParseStop::Usage(message)) => {
                return nagios_line(NAGIOS_UNKNOWN, &message, "");
            }
        }
    } else {
        match cli::parse_args::<Cli>("ztd-health") {
            Ok(cli) => cli,
            Err(code) => return code,
        }
    };
    if cli.nagios {
        return nagios_main(cli);
    }
    cli::run("ztd-health", || async move {
        let (stack, requested) = match cli::context(&cli.stack, cli.color, true, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act { stack, color, .. } => (stack, color),
        };
        if cli.validate {
            let json = match run_validation(&cli, &stack, requested)
                .await
                .in_project(&stack)?
            {
                Some((color, checks)) => {
                    let fields = validate::to_json(color, &checks);
                    let ok = fields["ok"] == Value::Bool(true);
                    output::object("ztd-health", &stack, ok, fields)
                }
                None => output::object(
                    "ztd-health",
                    &stack,
                    false,
                    json!({"validate": true, "color": null, "target": null,
                           "problem": "nothing is deployed"}),
                ),
            };
            return Ok(cli::printed_from_ok(&json));
        }
        let outcome = evaluate(&cli, &stack, requested).await.in_project(&stack)?;
        Ok(cli::printed_from_ok(&outcome_json(&stack, &outcome)))
    })
}

/// What a run found: a report, or nothing deployed to check.
enum Outcome {
    Checked { report: HealthReport, waited: bool },
    NothingDeployed,
}

/// The color to act on and whether it is the active one: `requested`, else the active color.
async fn choose_color(
    engine: &DockerEngine,
    stack: &Stack,
    requested: Option<Color>,
) -> Result<Option<(Color, bool)>, Error> {
    Ok(Some(match requested {
        Some(color) => {
            let state_file = state::read_state(stack)?;
            let candidate = state_file.as_ref().and_then(|s| s.candidate);
            let recorded =
                state::read_current_deployment(stack)?.or(state_file.and_then(|s| s.active));
            let active = match recorded {
                Some(active) => active == color,
                None => candidate != Some(color),
            };
            (color, active)
        }
        None => {
            let detection = detect(engine, stack).await?;
            if let Some(conflict) = detection.conflict {
                return Err(Error::State(format!(
                    "cannot tell which color is active: {conflict}; name a color"
                )));
            }
            match detection.active {
                Some(active) => (active, true),
                None => return Ok(None),
            }
        }
    }))
}

async fn run_validation(
    cli: &Cli,
    stack: &Stack,
    requested: Option<Color>,
) -> Result<Option<(Color, Vec<validate::ValidationCheck>)>, Error> {
    let engine = DockerEngine::connect().await?;
    let Some((color, active)) = choose_color(&engine, stack, requested).await? else {
        return Ok(None);
    };
    let checks = validate::validate(&engine, stack, color, active, &cli.health.policy()).await?;
    Ok(Some((color, checks)))
}

async fn evaluate(cli: &Cli, stack: &Stack, requested: Option<Color>) -> Result<Outcome, Error> {
    let engine = DockerEngine::connect().await?;
    let Some((color, active)) = choose_color(&engine, stack, requested).await? else {
        return Ok(Outcome::NothingDeployed);
    };
    let target = Target {
        stack,
        color,
        active,
        service: None,
    };
    let policy = cli.health.policy();
    let report = if cli.wait {
        let deadline = cli.health.deadline();
        info!(
            "waiting up to {} for {color} to become healthy",
            ztd_core::units::format_duration(deadline)
        );
        health::wait(&engine, &target, &policy, deadline).await?
    } else {
        health::check(&engine, &target, &policy).await?
    };
    if report.healthy() {
        info!("{}", report.summary_line());
    } else {
        warn!("{}", report.summary_line());
    }
    Ok(Outcome::Checked {
        report,
        waited: cli.wait,
    })
}

fn outcome_json(stack: &Stack, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Checked { report, waited } => {
            let mut fields = json!({"waited": waited});
            if let (Value::Object(fields), Value::Object(more)) = (&mut fields, report.to_json()) {
                fields.extend(more);
            }
            output::object("ztd-health", stack, report.healthy(), fields)
        }
        Outcome::NothingDeployed => {
            warn!("nothing is deployed in {}", stack.name);
            output::object(
                "ztd-health",
                stack,
                false,
                json!({"color": null, "target": null, "healthy": false, "status": "unhealthy",
                       "problem": "nothing is deployed", "containers": []}),
            )
        }
    }
}

/// `--report`: the replaced scripts' human report and exit codes.
fn report_main(cli: Cli) -> ExitCode {
    let _ = ztd_core::output::init_at("ztd-health", ztd_core::output::Level::Warn);
    let colors = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::print_error_line(&format!("ERROR: cannot start: {e}"));
            return ExitCode::from(2);
        }
    };
    let (red, reset) = if colors {
        ("\x1b[0;31m", "\x1b[0m")
    } else {
        ("", "")
    };
    if cli.validate {
        let result = runtime.block_on(async {
            let stack = cli.stack.resolve_named(None).await?;
            run_validation(&cli, &stack, cli.color).await
        });
        return match result {
            Ok(Some((color, checks))) => {
                let (text, passed) = validate::report(color, &checks, colors);
                output::print_text(&text);
                ExitCode::from(if passed { 0 } else { 1 })
            }
            Ok(None) => {
                output::print_text(&format!("{red}No deployment found to validate{reset}\n"));
                ExitCode::from(1)
            }
            Err(err) => {
                output::print_error_line(&format!("ERROR: {err}"));
                ExitCode::from(1)
            }
        };
    }
    let result = runtime.block_on(async {
        let stack = cli.stack.resolve_named(None).await?;
        evaluate(&cli, &stack, cli.color).await
    });
    match result {
        Ok(Outcome::Checked { report, .. }) => {
            let (text, code) = health::service_report(&report);
            output::print_text(&text);
            ExitCode::from(code)
        }
        Ok(Outcome::NothingDeployed) => {
            output::print_text("ERROR: No active deployment found\n");
            ExitCode::from(2)
        }
        Err(err) => {
            output::print_text(&format!("ERROR: {err}\n"));
            ExitCode::from(2)
        }
    }
}

fn nagios_main(cli: Cli) -> ExitCode {
    let _ = ztd_core::output::init("ztd-health");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return nagios_line(NAGIOS_UNKNOWN, &format!("cannot start: {e}"), ""),
    };
    let result = runtime.block_on(async {
        let stack = cli.stack.resolve_named(None).await?;
        let outcome = evaluate(&cli, &stack, cli.color).await?;
        Ok::<_, Error>((stack, outcome))
    });
    match result {
        Ok((stack, Outcome::NothingDeployed)) => nagios_line(
            NAGIOS_CRITICAL,
            &format!("{}: nothing is deployed", stack.name),
            "",
        ),
        Ok((stack, Outcome::Checked { report, .. })) => {
            let code = match report.status_word() {
                "healthy" => NAGIOS_OK,
                "warning" => NAGIOS_WARNING,
                _ => NAGIOS_CRITICAL,
            };
            let perfdata = format!(
                "containers={} healthy={} warning={} unhealthy={} time={:.3}s",
                report.containers.len(),
                report.count(health::ContainerStatus::Healthy),
                report.count(health::ContainerStatus::Warning),
                report.count(health::ContainerStatus::Unhealthy),
                report.duration.as_secs_f64()
            );
            nagios_line(
                code,
                &format!("{} {}", stack.name, report.summary_line()),
                &perfdata,
            )
        }
        Err(err) => nagios_line(NAGIOS_UNKNOWN, err.message(), ""),
    }
}

fn nagios_line(code: u8, text: &str, perfdata: &str) -> ExitCode {
    let word = match code {
        NAGIOS_OK => "OK",
        NAGIOS_WARNING => "WARNING",
        NAGIOS_CRITICAL => "CRITICAL",
        _ => "UNKNOWN",
    };
    let text = text.replace('|', "/");
    if perfdata.is_empty() {
        output::print_text(&format!("ZTD-HEALTH {word} - {text}\n"));
    } else {
        output::print_text(&format!("ZTD-HEALTH {word} - {text} | {perfdata}\n"));
    }
    ExitCode::from(code)
}
