//! ztd-monitor: watch a stack: a JSON Lines stream of samples and events, a live view on a
//! terminal, or a watch window that exits 1 as soon as the watched color misbehaves.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ztd_core::cli::{self, Context, StackArgs, ThresholdArgs, WithProject};
use ztd_core::detect::detect;
use ztd_core::docker::DockerEngine;
use ztd_core::monitor::{self, DEFAULT_MAX_ERROR_RATE, Monitor, MonitorOptions};
use ztd_core::report::Printed;
use ztd_core::report::live::StatusLine;
use ztd_core::report::monitor::{stream_line, view_screen, window_status};
use ztd_core::stack::Color;
use ztd_core::units::parse_duration;
use ztd_core::{Error, ExitStatus, output, signals};

const AFTER_HELP: &str = "\
Modes:
  stream (default when stdout is not a terminal): JSON Lines on stdout until Ctrl-C, one sample
    per container per --interval ({\"type\":\"sample\", state, health, restart_count,
    cpu_percent, memory_bytes, new_error_lines (each error line counted once), probe_ms,
    probe_ok}) and the engine's events as they happen ({\"type\":\"event\", action: start, die,
    oom, restart, health_status: ..., exit_code}). Containers that disappear and transient
    engine errors ({\"type\":\"error\"}) do not stop it. Watches COLOR, both with --both, or
    the active color.
  view (stdout is a terminal, or --view): both colors refreshed about every 2 s: health,
    containers, resources, recent logs, and a TRANSITION IN PROGRESS banner while both colors
    run. Ctrl-C stops it (exit 0).
  window (--for DURATION; --for alone takes MIGRATION_GRACE_PERIOD, 30 s): watches one color
    (COLOR, else the upstream tool's target on stdin, else the active color) and exits 1 as
    soon as a threshold is crossed: a container exits, restarts (over --max-restarts), runs out
    of memory, turns unhealthy, fails its probe twice in a row, logs more error lines per minute
    than --max-error-rate (10; label ztd.logs.max_rate), or goes over --max-memory or
    --max-cpu (twice in a row); a log flood (more than 10000 lines in a round, or a log that
    cannot be read within the round's time) counts as over the error rate. A window never
    passes blind: one over a color with no containers, or in which no round of samples
    succeeded (the engine failing throughout), fails too; one whose last round got no answer
    from the engine (ZTD_ENGINE_TIMEOUT, 10s per call) exits 3. Exits 0 when the window passes
    clean. It prints one object: the upstream object passed on with a \"monitor\" field added
    (and ok: false when tripped), or its own. --stream also prints the samples before it.

Exit codes: 0 clean (or stopped by Ctrl-C in stream and view), 1 tripped (or the upstream tool
failed), 2 bad usage, 3 engine unreachable, 4 engine failure, 5 bad label or state,
130 a window interrupted by Ctrl-C, SIGTERM or SIGHUP.

Examples:
  ztd-monitor                                  # live view
  ztd-monitor --both | jq -c 'select(.type == \"event\")'
  ztd-health --wait | ztd-monitor --for 30s | ztd-switch | ztd-monitor --for 30s || ztd-rollback";

/// Watch a stack: a stream, a live view, or a watch window that trips on trouble.
#[derive(Debug, Parser)]
#[command(name = "ztd-monitor", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The color to watch [default: see the modes]
    #[arg(value_parser = cli::color_arg, conflicts_with = "both")]
    color: Option<Color>,
    /// Watch both colors (stream mode)
    #[arg(long)]
    both: bool,
    /// Watch one color for this long and trip on the first threshold crossed [default:
    /// MIGRATION_GRACE_PERIOD, else 30s]
    #[arg(long = "for", value_name = "DURATION", num_args = 0..=1, value_parser = cli::duration_arg)]
    window: Option<Option<Duration>>,
    /// The live view, even when stdout is not a terminal
    #[arg(long, conflicts_with = "window")]
    view: bool,
    /// With --for: print the samples and events before the final object
    #[arg(long)]
    stream: bool,
    /// Time between samples
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = cli::duration_arg)]
    interval: Duration,
    /// New error lines allowed per minute in a window (label ztd.logs.max_rate overrides)
    #[arg(long, value_name = "N", env = "ZTD_MAX_ERROR_RATE", value_parser = rate_arg)]
    max_error_rate: Option<f64>,
    #[command(flatten)]
    thresholds: ThresholdArgs,
    #[command(flatten)]
    stack: StackArgs,
}

fn rate_arg(text: &str) -> Result<f64, String> {
    ztd_core::units::parse_percent(text)
        .map_err(|_| format!("bad rate {text:?}: expected error lines per minute"))
}

const TOOL: &str = "ztd-monitor";

fn main() -> ExitCode {
    let cli = match cli::parse_args::<Cli>(TOOL) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        let window = match window_length(cli.window.flatten()) {
            Ok(window) => window,
            Err(err) => return cli::fail(TOOL, None, &err),
        };
        let unsupported = [
            ("--both", cli.both),
            ("--view", cli.view),
            ("--stream", cli.stream),
        ];
        return ztd_core::swarm::tools::monitor(cli.stack, cli.color, window, &unsupported);
    }
    if cli.window.is_some() {
        cli::run(TOOL, || window(cli))
    } else {
        cli::run(TOOL, || watch(cli))
    }
}

fn options(cli: &Cli, window: Option<Duration>, keep_logs: bool) -> MonitorOptions {
    MonitorOptions {
        interval: cli.interval,
        window,
        policy: cli.thresholds.policy(),
        max_error_rate: cli.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE),
        keep_logs,
    }
}

/// The window's length: `--for DURATION`, else MIGRATION_GRACE_PERIOD, else 30s.
fn window_length(flag: Option<Duration>) -> Result<Duration, Error> {
    match (flag, std::env::var("MIGRATION_GRACE_PERIOD")) {
        (Some(length), _) => Ok(length),
        (None, Ok(text)) if !text.is_empty() => {
            parse_duration(&text).map_err(|e| Error::Usage(format!("MIGRATION_GRACE_PERIOD: {e}")))
        }
        _ => Ok(Duration::from_secs(30)),
    }
}

/// `--for`: one report at the end (the samples before it with `--stream`).
async fn window(cli: Cli) -> Result<Printed, (Error, Option<String>)> {
    signals::install();
    let length = window_length(cli.window.flatten()).no_project()?;
    let (stack, named, upstream) = match cli::context(&cli.stack, cli.color, true, true).await? {
        Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
        Context::Act {
            stack,
            color,
            upstream,
            ..
        } => (stack, color, upstream),
    };
    let engine = DockerEngine::connect().await.in_project(&stack)?;
    let opts = options(&cli, Some(length), false);
    let emit = |record| {
        if cli.stream {
            output::print_text(&stream_line(&stack, record));
        }
    };
    let status = StatusLine::start();
    let observe = |color, watched, window| status.set(window_status(color, watched, window));
    let report = monitor::watch_window(&engine, &stack, named, upstream, opts, emit, observe).await;
    drop(status);
    Ok(Printed::json(&report.in_project(&stack)?))
}

/// The stream, or the live view, until Ctrl-C or until the stream's reader goes away.
async fn watch(cli: Cli) -> Result<Printed, (Error, Option<String>)> {
    signals::install();
    let view = cli.view || std::io::stdout().is_terminal();
    let stack = cli.stack.resolve_named(None).await.no_project()?;
    let engine = DockerEngine::connect().await.no_project()?;
    let active = detect(&engine, &stack).await.no_project()?.active;
    let colors = monitor::watched_colors(cli.color, cli.both || view, active);
    let opts = options(&cli, None, view);
    let mut monitor = Monitor::new(&engine, &stack, colors, active, opts);
    let color_output = ztd_core::report::style::stdout_colored();
    let stream = |record| {
        if !view {
            output::print_text(&stream_line(&stack, record));
        }
    };
    let screen = |samples: &[_]| {
        if view {
            output::print_text(&view_screen(&stack, active, samples, color_output));
        }
    };
    monitor.run(stream, screen).await.no_project()?;
    // A reader that went away (`ztd-monitor | head -1`) ends the stream quietly.
    if !output::stdout_closed() {
        output::print_error_line("Monitoring stopped");
    }
    Ok(Printed::text(String::new(), ExitStatus::Success))
}
