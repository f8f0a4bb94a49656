//! What every tool's command line shares: the stack flags, the health thresholds (flags >
//! environment > defaults), reading the upstream tool's JSON from stdin, and the run harness
//! that turns a result into one JSON value on stdout and an exit code.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::compose::Compose;
use crate::error::{Error, ExitStatus, Result};
use crate::health::HealthPolicy;
use crate::notify;
use crate::output;
use crate::report::{ErrorReport, Printed, Upstream, json_line};
use crate::stack::{Color, Sources, Stack, model_name};
use crate::units::{MemoryLimit, parse_duration, parse_percent};

/// How a tool talks, the same flags in every tool.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Print nothing when the tool succeeds, and only errors on stderr (for cron and
    /// monitoring); a failure still prints its report
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Show debug progress on stderr (overrides DEPLOYMENT_LOG_LEVEL)
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the JSON report on a terminal too (piped, stdout is always JSON)
    #[arg(long)]
    pub json: bool,
}

/// Which stack to act on, and how Compose finds its project.
#[derive(Debug, Clone, Default, Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// The project directory, holding the state files; Compose runs from here
    /// [default: the working directory]
    #[arg(long, value_name = "DIR", alias = "project-directory")]
    pub project_dir: Option<PathBuf>,
    /// The base Compose project name; each color runs as <NAME>-blue and <NAME>-green
    /// [default: as Compose resolves it: COMPOSE_PROJECT_NAME (environment or .env), else the
    /// top-level name: of the compose files, else the directory's name]
    #[arg(short = 'p', long, value_name = "NAME")]
    pub project_name: Option<String>,
    /// A compose file, as with docker compose -f (repeat to merge several)
    /// [default: COMPOSE_FILE, else compose.yaml (or docker-compose.yml) and its override file]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An environment file for Compose's interpolation, as with docker compose --env-file
    /// (repeatable) [default: .env in the project directory]
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Enable a Compose profile (repeatable) [default: COMPOSE_PROFILES]
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Where the stack runs: compose (Docker Compose on the engine docker talks to) or swarm
    /// (a Docker Swarm cluster, through the manager docker talks to; see the README's Beyond
    /// one machine)
    #[arg(long, value_name = "NAME", env = "ZTD_ORCHESTRATOR", default_value = "compose", value_parser = crate::swarm::orchestrator_arg)]
    pub orchestrator: crate::swarm::Orchestrator,
}

/// How long a tool that only reads may spend asking Compose for the project's name.
const NAME_LOOKUP_LIMIT: Duration = Duration::from_secs(8);

impl StackArgs {
    /// Resolve the stack without asking Compose, taking the project from the upstream object
    /// when no flag names one.
    pub fn resolve(&self, upstream: Option<&Upstream>) -> Result<Stack> {
        let (dir, name) = self.dir_and_name(upstream);
        Stack::resolve(dir.as_deref(), name.as_deref())
    }

    fn dir_and_name(&self, upstream: Option<&Upstream>) -> (Option<PathBuf>, Option<String>) {
        if self.project_dir.is_none() && self.project_name.is_none() {
            (
                upstream.and_then(|u| u.project_dir.clone()),
                upstream.and_then(|u| u.project.clone()),
            )
        } else {
            (self.project_dir.clone(), self.project_name.clone())
        }
    }

    /// What Compose is told about the project: the files and env files made absolute against
    /// the working directory (Compose runs in the project dir), the profiles, and the name
    /// given by a flag or the upstream tool.
    pub fn sources(&self, upstream: Option<&Upstream>) -> Result<Sources> {
        let absolute = |path: &PathBuf| {
            std::path::absolute(path).map_err(|e| {
                Error::Usage(format!("cannot resolve the path {}: {e}", path.display()))
            })
        };
        Ok(Sources {
            files: self.files.iter().map(absolute).collect::<Result<_>>()?,
            env_files: self.env_files.iter().map(absolute).collect::<Result<_>>()?,
            profiles: self.profiles.clone(),
            name: self.dir_and_name(upstream).1,
        })
    }

    /// Resolve the stack for a tool that may work without a valid compose file: the name of
    /// Compose's resolved model, or, when Compose cannot say, the flag, COMPOSE_PROJECT_NAME
    /// or the directory's name.
    pub async fn resolve_named(&self, upstream: Option<&Upstream>) -> Result<Stack> {
        let stack = self.resolve(upstream)?;
        let sources = self.sources(upstream)?;
        Ok(compose_named(stack, &sources).await)
    }
}

/// The stack under the project name Compose resolves from `sources`, or unchanged when a name
/// was given or Compose cannot say (no Compose, no compose file, an invalid one).
pub async fn compose_named(stack: Stack, sources: &Sources) -> Stack {
    if sources.name.is_some() {
        return stack;
    }
    if let Some(name) = known_name(&stack, sources) {
        return stack.named(name);
    }
    let lookup = async {
        let compose = Compose::find().await?;
        let model = compose
            .config(&stack, sources, &BTreeMap::new(), NAME_LOOKUP_LIMIT)
            .await?;
        model_name(&model)
    };
    match tokio::time::timeout(NAME_LOOKUP_LIMIT, lookup).await {
        Ok(Ok(name)) => stack.named(name),
        Ok(Err(err)) => {
            crate::debug!(
                "using project name {} (Compose could not resolve the project: {})",
                stack.name,
                err.message()
            );
            stack
        }
        Err(_) => {
            crate::debug!(
                "using project name {} (Compose did not resolve the project in time)",
                stack.name
            );
            stack
        }
    }
}

/// The files Compose reads by default in a project directory, overrides included.
const DEFAULT_COMPOSE_FILES: [&str; 8] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The project name when it is known without running Compose (which costs a tool that only
/// reads about a hundred milliseconds): `COMPOSE_PROJECT_NAME` from the environment or `.env`
/// (it wins over `name:` in Compose too); else the name the last `ztd-up` recorded; else the
/// directory's name, when no compose file can set another (no `-f`, `COMPOSE_FILE` or
/// `--env-file`, and no top-level `name:` in the default files).
fn known_name(stack: &Stack, sources: &Sources) -> Option<String> {
    known_name_given(
        stack,
        sources,
        std::env::var("COMPOSE_PROJECT_NAME").ok().as_deref(),
        std::env::var_os("COMPOSE_FILE").is_some(),
    )
}

/// [`known_name`] with the environment's `COMPOSE_PROJECT_NAME` and whether `COMPOSE_FILE` is
/// set given.
fn known_name_given(
    stack: &Stack,
    sources: &Sources,
    env_name: Option<&str>,
    compose_file_set: bool,
) -> Option<String> {
    let from_env = env_name.is_some_and(|n| !n.is_empty());
    let from_dotenv = sources.env_files.is_empty()
        && std::fs::read_to_string(stack.dir.join(".env"))
            .ok()
            .and_then(|text| crate::stack::dotenv_value(&text, "COMPOSE_PROJECT_NAME"))
            .is_some_and(|n| !n.is_empty());
    if from_env || from_dotenv {
        return Some(stack.name.clone());
    }
    if let Ok(Some(recorded)) = crate::state::read_state(stack)
        && let Some(name) = recorded.project
    {
        return Some(name);
    }
    let chosen_files =
        !sources.files.is_empty() || !sources.env_files.is_empty() || compose_file_set;
    let named_in_a_file = DEFAULT_COMPOSE_FILES.iter().any(|file| {
        std::fs::read_to_string(stack.dir.join(file))
            .is_ok_and(|text| text.lines().any(|line| line.starts_with("name:")))
    });
    (!chosen_files && !named_in_a_file).then(|| stack.name.clone())
}

/// Thresholds shared by every tool that judges containers (ztd-health, ztd-switch,
/// ztd-rollback, ztd-monitor). Flags > environment > defaults; `ztd.*` labels override them.
#[derive(Debug, Clone, Args)]
pub struct ThresholdArgs {
    /// Connect and read timeout of each HTTP or TCP probe
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration_arg)]
    pub probe_timeout: Duration,
    /// Restarts allowed per container (label ztd.restarts.max overrides)
    #[arg(long, value_name = "N", env = "ZTD_MAX_RESTARTS", default_value_t = 0)]
    pub max_restarts: u64,
    /// Memory ceiling as a share of the limit (80%) or a size (512MiB); unset, no ceiling
    /// (label ztd.memory.max overrides)
    #[arg(long, value_name = "LIMIT", env = "ZTD_MAX_MEMORY", value_parser = memory_arg)]
    pub max_memory: Option<MemoryLimit>,
    /// CPU ceiling in percent of one core; unset, no ceiling (label ztd.cpu.max overrides)
    #[arg(long, value_name = "PERCENT", env = "ZTD_MAX_CPU", value_parser = percent_arg)]
    pub max_cpu: Option<f64>,
}

/// Health settings of ztd-health, ztd-switch and ztd-rollback: the wait's deadline, the
/// minimum uptime, log errors and CPU sampling, and the shared thresholds.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Attempts of a health wait, the original scripts' way to set its deadline with
    /// --retry-interval
    #[arg(
        long,
        value_name = "N",
        env = "HEALTH_CHECK_RETRIES",
        default_value_t = 10
    )]
    pub retries: u32,
    /// Time per attempt of a health wait (a wait re-checks as soon as anything changes, so this
    /// only sets the deadline)
    #[arg(long, value_name = "DURATION", env = "HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = duration_arg)]
    pub retry_interval: Duration,
    /// A container with no HEALTHCHECK and no probe label passes once up this long
    #[arg(long, value_name = "DURATION", env = "ZTD_MIN_UPTIME", default_value = "10s", value_parser = duration_arg)]
    pub min_uptime: Duration,
    /// Error lines allowed in a container's log since it started; unset, any error line is a
    /// warning only (label ztd.logs.max_errors overrides)
    #[arg(long, value_name = "N")]
    pub max_log_errors: Option<u64>,
    /// How long CPU is sampled when a CPU ceiling applies
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = duration_arg)]
    pub cpu_window: Duration,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

impl ThresholdArgs {
    /// The thresholds as a policy (other settings at their defaults).
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            probe_timeout: self.probe_timeout,
            max_restarts: self.max_restarts,
            max_memory: self.max_memory,
            max_cpu: self.max_cpu,
            ..HealthPolicy::default()
        }
    }
}

impl HealthArgs {
    /// The settings as a policy.
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            min_uptime: self.min_uptime,
            max_log_errors: self.max_log_errors,
            cpu_window: self.cpu_window,
            ..self.thresholds.policy()
        }
    }

    /// The deadline of a wait: `timeout` when given, else retries x retry interval.
    pub fn deadline(&self, timeout: Option<Duration>) -> Duration {
        timeout.unwrap_or_else(|| self.retry_interval.saturating_mul(self.retries))
    }
}

/// The settings of a switch or rollback: its timeouts and the health of what it switches to.
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// Longest wait for in-flight requests to the old color and for a ztd.drain command
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub drain_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL when stopping an old container (label
    /// ztd.stop.timeout overrides)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub stop_timeout: Duration,
    /// How long a handed-over service may take to become healthy [default: --retries x
    /// --retry-interval, 50s]
    #[arg(long, value_name = "DURATION", env = "ZTD_HEALTH_TIMEOUT", value_parser = duration_arg)]
    pub health_timeout: Option<Duration>,
    #[command(flatten)]
    pub health: HealthArgs,
}

impl SwitchArgs {
    /// The options of a switch to `to` (None: the default target).
    pub fn options(&self, to: Option<Color>, force: bool) -> crate::switch::SwitchOptions {
        crate::switch::SwitchOptions {
            to,
            force,
            drain_timeout: self.drain_timeout,
            stop_timeout: self.stop_timeout,
            policy: self.health.policy(),
            health_deadline: self.health.deadline(self.health_timeout),
            compose: None,
            stop_old: crate::switch::StopOld::Wait,
        }
    }
}

/// clap value parser for durations.
pub fn duration_arg(text: &str) -> std::result::Result<Duration, String> {
    parse_duration(text)
}

/// clap value parser for `--stop-old`.
pub fn stop_old_arg(text: &str) -> std::result::Result<crate::switch::StopOld, String> {
    text.parse().map_err(|e: Error| e.message().to_string())
}

/// clap value parser for a color.
pub fn color_arg(text: &str) -> std::result::Result<Color, String> {
    text.parse::<Color>().map_err(|e| e.message().to_string())
}

fn memory_arg(text: &str) -> std::result::Result<MemoryLimit, String> {
    MemoryLimit::parse(text)
}

fn percent_arg(text: &str) -> std::result::Result<f64, String> {
    parse_percent(text)
}

/// How long stdin may stay silent before the tool says it is waiting for it.
const UPSTREAM_QUIET_NOTICE: Duration = Duration::from_secs(1);

/// The previous tool's object, if stdin carries any. A terminal is not read; an empty stdin means
/// no upstream; with several lines (a JSON Lines stream), the last object counts. A pipe that
/// says nothing for a second (`ssh host ztd-health` keeps one open) gets a note on stderr saying
/// what the tool waits for and how to skip it; Ctrl-C, SIGTERM or SIGHUP end the wait (exit 130).
pub async fn read_upstream() -> Result<Option<Upstream>> {
    if std::io::stdin().is_terminal() {
        return Ok(None);
    }
    // A thread of its own, not the runtime's blocking pool: when the tool stops waiting (a
    // signal), the process exits without waiting for a read that may never end.
    let (sender, mut reading) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map(|_| text);
        let _ = sender.send(read);
    });
    let mut noticed = false;
    let started = tokio::time::Instant::now();
    let read = loop {
        match tokio::time::timeout(Duration::from_millis(100), &mut reading).await {
            Ok(joined) => break joined,
            Err(_) if crate::signals::interrupted() => {
                return Err(Error::Interrupted(
                    "interrupted while waiting for the upstream report on stdin".into(),
                ));
            }
            Err(_) if !noticed && started.elapsed() >= UPSTREAM_QUIET_NOTICE => {
                noticed = true;
                crate::warn!(
                    "waiting for the upstream tool's report on stdin; name a color or redirect stdin from /dev/null to act without one"
                );
            }
            Err(_) => {}
        }
    };
    let text = read
        .map_err(|e| Error::Usage(format!("cannot read stdin: {e}")))?
        .map_err(|e| Error::Usage(format!("cannot read stdin: {e}")))?;
    let upstream = Upstream::parse(&text)?;
    if let Some(read) = &upstream {
        let _ = UPSTREAM_READ.set(read.object.clone());
    }
    Ok(upstream)
}

/// The upstream object this process read, so the harness does not notify again for a report
/// passed on unchanged.
static UPSTREAM_READ: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>> =
    std::sync::OnceLock::new();

/// Where a tool acts, from its arguments or the upstream tool's JSON on stdin.
#[derive(Debug)]
pub enum Context {
    /// The upstream tool failed: its report is to be passed on unchanged (exit 1).
    PassOn(Upstream),
    /// Act on this stack, on this color when one was named or handed on.
    Act {
        /// The stack (from the flags, else the upstream object, else the working directory).
        stack: Stack,
        /// The color named on the command line, else the upstream object's `target`.
        color: Option<Color>,
        /// The upstream object, if stdin carried one.
        upstream: Option<Upstream>,
        /// What Compose is told about the project.
        sources: Sources,
    },
}

/// Resolve where a tool acts. Stdin is read only when no color was named and `read_stdin`.
/// With `ask_compose`, the stack's name is the one Compose resolves (see [`compose_named`]);
/// without, the caller asks Compose itself (ztd-up, which reads the whole model anyway).
pub async fn context(
    stack: &StackArgs,
    color: Option<Color>,
    read_stdin: bool,
    ask_compose: bool,
) -> std::result::Result<Context, (Error, Option<String>)> {
    let upstream = if color.is_none() && read_stdin {
        read_upstream().await.no_project()?
    } else {
        None
    };
    if let Some(failed) = upstream.as_ref().filter(|u| u.failed) {
        crate::warn!("upstream failed; passing its report on");
        return Ok(Context::PassOn(failed.clone()));
    }
    let sources = stack.sources(upstream.as_ref()).no_project()?;
    let stack = stack.resolve(upstream.as_ref()).no_project()?;
    let stack = if ask_compose {
        compose_named(stack, &sources).await
    } else {
        stack
    };
    let color = color.or(upstream.as_ref().and_then(|u| u.target));
    Ok(Context::Act {
        stack,
        color,
        upstream,
        sources,
    })
}

/// Why the command line did not yield arguments.
#[derive(Debug)]
pub enum ParseStop {
    /// `--help` or `--version` was printed: exit 0.
    Printed,
    /// A usage error, as one line.
    Usage(String),
}

/// Parse the command line, or say why not.
pub fn try_parse_args<T: clap::Parser>(tool: &str) -> std::result::Result<T, ParseStop> {
    let parsed = T::command()
        .try_get_matches_from(std::env::args_os())
        .and_then(|matches| {
            let flag = |id: &str| {
                matches
                    .try_get_one::<bool>(id)
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(false)
            };
            output::set_voice(output::Voice {
                quiet: flag("quiet"),
                verbose: flag("verbose"),
                json: flag("json"),
            });
            T::from_arg_matches(&matches)
        });
    parsed.map_err(|err| match err.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ParseStop::Printed
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad usage")
                .trim_start_matches("error: ")
                .to_string();
            ParseStop::Usage(format!("{first} (see {tool} --help)"))
        }
    })
}

/// What `--generate KIND` prints: the tool's man page (roff) or its completion script for a
/// shell, made from the same clap definition as `--help`, so they never disagree.
pub const GENERATE_KINDS: &str = "man, bash, zsh, fish, elvish, powershell";

/// `TOOL --generate KIND` (the whole command line): print the man page or a completion script
/// on stdout. None when the command line is anything else.
fn generate<T: clap::CommandFactory>(tool: &str) -> Option<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let kind = match args.as_slice() {
        [flag, kind] if flag == "--generate" => kind.to_str().unwrap_or("?").to_string(),
        [flag] => flag.to_str()?.strip_prefix("--generate=")?.to_string(),
        _ => return None,
    };
    let mut command = T::command().bin_name(tool);
    let mut text = Vec::new();
    let made = if kind == "man" {
        clap_mangen::Man::new(command)
            .render(&mut text)
            .map_err(|e| e.to_string())
    } else {
        match kind.parse::<clap_complete::Shell>() {
            Ok(shell) => {
                clap_complete::generate(shell, &mut command, tool, &mut text);
                Ok(())
            }
            Err(_) => Err(format!(
                "--generate {kind:?}: expected one of {GENERATE_KINDS}"
            )),
        }
    };
    Some(match made {
        Ok(()) => {
            output::print_text(&String::from_utf8_lossy(&text));
            ExitCode::SUCCESS
        }
        Err(message) => {
            output::print_error_line(&format!("{tool}: error: {message}"));
            ExitCode::from(ExitStatus::Usage.code())
        }
    })
}

/// Parse the command line; a usage error is one line on stderr, an `ok: false` object on
/// stdout and exit 2. `--generate KIND` prints the man page or a completion script instead.
pub fn parse_args<T: clap::Parser>(tool: &str) -> std::result::Result<T, ExitCode> {
    if let Some(code) = generate::<T>(tool) {
        return Err(code);
    }
    match try_parse_args(tool) {
        Ok(args) => Ok(args),
        Err(ParseStop::Printed) => Err(ExitCode::SUCCESS),
        Err(ParseStop::Usage(message)) => {
            output::print_error_line(&format!("{tool}: error: {message}"));
            if !output::stdout_is_for_people() {
                output::print_text(&json_line(&ErrorReport::new(
                    tool,
                    None,
                    &Error::Usage(message),
                )));
            }
            Err(ExitCode::from(ExitStatus::Usage.code()))
        }
    }
}

/// Run a tool's body on a single-threaded runtime and turn its result into output and an exit
/// code: what its printer made, or an `ok: false` object and a one-line error on stderr.
pub fn run<F, Fut>(tool: &str, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<Printed, (Error, Option<String>)>>,
{
    if let Err(err) = output::init(tool) {
        return fail(tool, None, &err);
    }
    let destinations = match notify_settings(tool) {
        Ok(settings) => settings,
        Err(err) => return fail(tool, None, &err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(
                tool,
                None,
                &Error::State(format!("cannot start the runtime: {e}")),
            );
        }
    };
    match runtime.block_on(body()) {
        Ok(printed) => {
            send_notifications(tool, &destinations, &printed);
            deliver(&printed)
        }
        Err((err, project)) => fail(tool, project.as_deref(), &err),
    }
}

/// Where a tool that may notify sends its reports (`ZTD_NOTIFY`, `ZTD_WEBHOOK`); nowhere for a
/// tool that only reads. A bad setting is a usage error.
fn notify_settings(tool: &str) -> Result<notify::Settings> {
    if notify::may_notify(tool) {
        notify::settings()
    } else {
        Ok(notify::Settings::default())
    }
}

/// Send the printed report where the settings say, when its status is one that notifies
/// (`notify::wanted`). Bounded and harmless: stdout and the exit status stay as they are.
fn send_notifications(tool: &str, settings: &notify::Settings, printed: &Printed) {
    if !settings.any() {
        return;
    }
    let upstream = UPSTREAM_READ.get();
    if let Some(report) = notify::payload(tool, printed.status, &printed.text, upstream) {
        notify::send(settings, &report);
    }
}

/// Print what a printer made the way the person asked: nothing on success with `-q`, the human
/// summary on a terminal (unless `--json`), else the text as made; then the exit code.
fn deliver(printed: &Printed) -> ExitCode {
    let text = if output::voice().quiet && printed.status == ExitStatus::Success {
        ""
    } else if output::stdout_is_for_people() {
        printed.human.as_deref().unwrap_or(&printed.text)
    } else {
        &printed.text
    };
    output::print_text(text);
    ExitCode::from(printed.status.code())
}

/// As [`run`], for a mode whose stdout is a text report instead of JSON: stderr shows nothing
/// below `floor` (a `DEPLOYMENT_LOG_LEVEL` ztd does not know leaves the default: the report is
/// the output that matters), and an error is printed by `on_error` instead of as an `ok: false`
/// object.
pub fn run_with<F, Fut>(
    tool: &str,
    floor: output::Level,
    body: F,
    on_error: impl FnOnce(&Error) -> Printed,
) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<Printed, (Error, Option<String>)>>,
{
    let _ = output::init_at(tool, floor);
    let printed = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime
            .block_on(body())
            .unwrap_or_else(|(err, _)| on_error(&err)),
        Err(e) => on_error(&Error::State(format!("cannot start the runtime: {e}"))),
    };
    deliver(&printed)
}

/// Report an error the way every tool does: one line on stderr, an `ok: false` object on stdout
/// (on a terminal the line on stderr says it all), the error's exit code.
pub fn fail(tool: &str, project: Option<&str>, err: &Error) -> ExitCode {
    output::log(output::Level::Error, err.message());
    if !output::stdout_is_for_people() {
        output::print_text(&json_line(&ErrorReport::new(tool, project, err)));
    }
    ExitCode::from(err.exit_status().code())
}

/// Attach the project name to an error for the `ok: false` object.
pub trait WithProject<T> {
    /// Tag the error with the stack's name.
    fn in_project(self, stack: &Stack) -> std::result::Result<T, (Error, Option<String>)>;
    /// No stack known yet.
    fn no_project(self) -> std::result::Result<T, (Error, Option<String>)>;
}

impl<T> WithProject<T> for Result<T> {
    fn in_project(self, stack: &Stack) -> std::result::Result<T, (Error, Option<String>)> {
        self.map_err(|e| (e, Some(stack.name.clone())))
    }
    fn no_project(self) -> std::result::Result<T, (Error, Option<String>)> {
        self.map_err(|e| (e, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_known_without_compose_unless_a_file_may_set_it() {
        let dir = std::env::temp_dir().join(format!("ztd-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let stack = Stack {
            dir: dir.clone(),
            name: "shop".into(),
        };
        let none = Sources::default();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  web:\n    image: x\n",
        )
        .expect("file");
        assert_eq!(
            known_name_given(&stack, &none, None, false),
            Some("shop".into())
        );
        // COMPOSE_FILE or -f may name any file: ask Compose.
        assert_eq!(known_name_given(&stack, &none, None, true), None);
        let with_file = Sources {
            files: vec![dir.join("other.yml")],
            ..Sources::default()
        };
        assert_eq!(known_name_given(&stack, &with_file, None, false), None);
        // A top-level name: in an override: ask Compose, unless the environment names it.
        std::fs::write(dir.join("compose.override.yaml"), "name: trading\n").expect("file");
        assert_eq!(known_name_given(&stack, &none, None, false), None);
        assert_eq!(
            known_name_given(&stack, &none, Some("shop"), false),
            Some("shop".into())
        );
        // The name the last deploy recorded wins over asking.
        let record = crate::state::StateFile {
            project: Some("trading".into()),
            ..Default::default()
        };
        crate::state::write_state(&stack, &record).expect("state");
        assert_eq!(
            known_name_given(&stack, &none, None, true),
            Some("trading".into())
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
