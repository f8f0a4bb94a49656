//! Deploying a color beside the active one: render it from the user's compose file, build it,
//! start it as its own Compose project (handover services wait for the switch), keep the shared
//! services running once for both colors, and make sure the front proxy owns the host ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compose::Compose;
use crate::detect::{self, Detection};
use crate::engine::{ContainerInfo, ContainerQuery, Engine, RunState, VolumeSpec};
use crate::error::{Error, ExitStatus, Result};
use crate::labels;
use crate::labels::SwitchMode;
use crate::overrides::EnvSettings;
use crate::proxy::{Proxy, Route};
use crate::pull::{self, PullPolicy};
use crate::render::{self, BuildInfo, DeployMeta, Listener, Plan, RenderOptions, read_color_meta};
use crate::report::steps::{StepDetail, Steps};
use crate::report::{Outcome, Report};
use crate::shared::{attach_shared, shared_compose_path};
use crate::stack::{Color, Sources, Stack, model_name};
use crate::state::{self, DeployLock, DeploymentRecord};
use crate::units::millis_since;
use crate::{info, signals, warn};

/// The tool whose report `up` returns.
const TOOL: &str = "ztd-up";

/// What `ztd-up` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The color to deploy to (default: the target, the standby).
    pub color: Option<Color>,
    /// Print the plan and the rendered file; change nothing.
    pub dry_run: bool,
    /// Skip building images.
    pub no_build: bool,
    /// `--pull` or `ZTD_PULL`: how every pulled service's image is pulled, over its
    /// `pull_policy` (default: each service's own, else `always` for an image that names its
    /// registry and `missing` for any other).
    pub pull: Option<PullPolicy>,
    /// What Compose is told about the user's project (files, env files, profiles, name).
    pub sources: Sources,
}

/// `ztd-up`'s report body: what a deploy did, or what a dry run would do. Its envelope's
/// `target` is the color deployed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UpBody {
    /// `--dry-run`: the plan and the rendered files; nothing changed.
    DryRun(Box<DryRun>),
    /// The color is up beside the active one, not yet switched to.
    Deployed(Deployed),
}

impl Outcome for UpBody {
    /// Both answer 0: a deploy that fails ends in an error, not in this report.
    fn status(&self) -> ExitStatus {
        match self {
            UpBody::DryRun(_) | UpBody::Deployed(_) => ExitStatus::Success,
        }
    }
}

/// What a dry run would deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    /// Always true: it tells a dry run's report from a deploy's.
    pub dry_run: bool,
    /// The services that would run in both colors until the switch.
    pub run_in_both_colors: Vec<String>,
    /// The active color, if any.
    pub active: Option<Color>,
    /// The version it would deploy.
    pub version: String,
    /// The plan: the rendered file's metadata.
    pub plan: DeployMeta,
    /// The color's rendered Compose file, environment values and build args redacted.
    pub rendered: Value,
    /// The shared project's rendered file, redacted, when a service is shared.
    pub shared_rendered: Option<Value>,
}

/// What a deploy started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// The active color, if any (unchanged by a deploy).
    pub active: Option<Color>,
    /// The version deployed.
    pub version: String,
    /// The color's Compose project.
    pub compose_project: String,
    /// Where its rendered file was written.
    pub rendered_file: PathBuf,
    /// Each of its services.
    pub services: Vec<DeployedService>,
    /// The shared services.
    pub shared: Vec<String>,
    /// The services that run in both colors until the switch.
    pub run_in_both_colors: Vec<String>,
    /// The front proxy's listeners.
    pub listeners: Vec<Listener>,
    /// The timed steps.
    pub steps: Steps,
    /// How long the whole deploy took.
    pub duration_ms: f64,
}

/// One service of a deployed color.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedService {
    /// Its name.
    pub service: String,
    /// How it switches.
    pub mode: SwitchMode,
    /// Its container's name.
    pub container: String,
    /// Its container's state, when it has one.
    pub state: Option<RunState>,
    /// Its container's image, when it has one.
    pub image_id: Option<String>,
    /// Its image's repository digest, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl DryRun {
    fn new(detection: &Detection, plan: &Plan, run_in_both_colors: Vec<String>) -> DryRun {
        DryRun {
            dry_run: true,
            run_in_both_colors,
            active: detection.active,
            version: plan.meta.build.version.clone(),
            plan: plan.meta.clone(),
            rendered: render::redact(&plan.color_model),
            shared_rendered: plan.shared_model.as_ref().map(render::redact),
        }
    }
}

/// The history event a deploy appends.
#[derive(Debug, Serialize)]
struct UpEvent<'a> {
    event: &'static str,
    at: &'a str,
    color: Color,
    version: &'a str,
    active: Option<Color>,
}

/// How long a container of an interrupted deploy gets to stop before it is killed.
const INTERRUPT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the next deploy goes by the state files alone (the standby of the recorded active
/// color, else green), before the engine is asked.
fn predicted_target(stack: &Stack) -> Color {
    let recorded = state::read_state(stack)
        .ok()
        .flatten()
        .and_then(|s| s.active)
        .or_else(|| state::read_current_deployment(stack).ok().flatten());
    recorded.map_or(Color::Green, Color::other)
}

/// Deploy a color, or with `dry_run` say how; returns `ztd-up`'s report.
pub async fn up<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &UpOptions,
) -> Result<Report<UpBody>> {
    let started = Instant::now();
    let keep = crate::versions::keep_from_env()?;
    let mut steps = Steps::default();
    let reading = Instant::now();
    let read = read_and_lock(engine, compose, stack, opts).await?;
    steps.record("read compose file", reading, true, StepDetail::default());
    let (stack, detection, target, build) =
        (&read.stack, &read.detection, read.target, &read.build);
    let renderer = Renderer {
        config: &read.config,
        stack,
        color: target,
        build,
        env: &read.env,
    };
    let mut plan = renderer.choose_names_and_render(engine).await?;
    let both = run_in_both_colors(&plan.meta);
    name_run_in_both_colors(&both, detection);

    if opts.dry_run {
        describe(&plan, detection, true);
        let body = UpBody::DryRun(Box::new(DryRun::new(detection, &plan, both)));
        return Ok(Report::new(TOOL, stack, Some(target), body));
    }

    check_names_free(engine, &plan.meta).await?;
    signals::check("before anything changed")?;
    // Pulled before anything of the color is written or created: a pull refused or failed
    // leaves everything as it was.
    steps
        .run(
            "pull",
            pull::pull_images(
                engine,
                compose,
                stack,
                &plan.meta.project,
                &plan.color_model,
                opts.pull,
            ),
        )
        .await?;
    signals::check("before anything changed")?;
    describe(&plan, detection, false);
    let rendered_path = stack.rendered_compose_path(target);
    state::write_atomic(
        &rendered_path,
        render::rendered_text(&plan.color_model).as_bytes(),
        0o600,
    )?;
    record_candidate(stack, detection, target, build)?;

    // The candidate is recorded: from here on, whatever a signal stops, ztd-rollback cleans.
    let deployment = Deployment {
        engine,
        compose,
        stack,
        rendered_path: &rendered_path,
    };
    let deployed = deployment
        .run(&renderer, &mut plan, detection, opts.no_build, &mut steps)
        .await;
    if let Err(err) = deployed {
        if !signals::interrupted() && !matches!(err, Error::Interrupted(_)) {
            return Err(err);
        }
        return Err(stop_interrupted(engine, stack, target, &err).await);
    }

    let project = stack.color_project(target);
    let containers = engine.list(&ContainerQuery::project(&project)).await?;
    let (images, digests) = deployed_images(engine, &plan, &containers).await;
    crate::ops::versions::record(
        engine,
        stack,
        &crate::ops::versions::NewVersion {
            color: target,
            build,
            images: &images,
            digests: &digests,
            config: &read.config,
            keep,
        },
    )
    .await?;
    info!(
        "{target} is up as {project} ({}); next: ztd-health {target} --wait, then ztd-switch",
        build.version
    );
    let body = UpBody::Deployed(Deployed {
        active: detection.active,
        version: build.version.clone(),
        compose_project: project,
        rendered_file: rendered_path,
        services: deployed_services(&plan.meta, &containers, &digests),
        shared: plan.meta.shared.iter().map(|s| s.service.clone()).collect(),
        run_in_both_colors: both,
        listeners: plan.meta.listeners.clone(),
        steps,
        duration_ms: millis_since(started),
    });
    Ok(Report::new(TOOL, stack, Some(target), body))
}

/// A deploy read and checked: the model as Compose resolves it for the target, the lock held
/// (but for a dry run).
struct Read {
    /// The stack, named as the model names it.
    stack: Stack,
    /// Held until the deploy ends.
    _lock: Option<DeployLock>,
    /// What is deployed, looked at with the lock held.
    detection: Detection,
    /// The color to deploy to.
    target: Color,
    /// The deploy's version and build metadata.
    build: BuildInfo,
    /// Compose's model of the user's project.
    config: Value,
    /// `ZTD_HANDOVER` and `ZTD_DRAIN_*`.
    env: EnvSettings,
}

/// Read the project, take the lock and look at what is deployed.
async fn read_and_lock<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &UpOptions,
) -> Result<Read> {
    // Bad input first: Compose resolves the project (files, overrides, `.env`, `name:`,
    // profiles) before anything is created, not even the lock. Its model names the project;
    // the variables of the deploy (VERSION...) depend on the target, predicted from the state
    // files and checked against the engine below.
    let predicted = opts.color.unwrap_or_else(|| predicted_target(stack));
    let (mut build, mut config) = read_model(compose, stack, &opts.sources, predicted).await?;
    let stack = match &opts.sources.name {
        Some(_) => stack.clone(),
        None => stack.named(model_name(&config)?),
    };
    let env = EnvSettings::from_env()?;
    // Lock first, then look: nothing acts on a detection made before the lock was held.
    let lock = if opts.dry_run {
        None
    } else {
        Some(DeployLock::acquire(&stack, TOOL)?)
    };
    let detection = detect::detect(engine, &stack).await?;
    let target = deploy_target(&detection, opts.color)?;
    if target != predicted {
        // The engine disagrees with the state files' guess: read the model again with the
        // right color's variables.
        (build, config) = read_model(compose, &stack, &opts.sources, target).await?;
    }
    Ok(Read {
        stack,
        _lock: lock,
        detection,
        target,
        build,
        config,
        env,
    })
}

/// The model as Compose resolves it for a deploy of `color` (its VERSION and the like), with
/// the build metadata of that deploy.
async fn read_model(
    compose: &Compose,
    stack: &Stack,
    sources: &Sources,
    color: Color,
) -> Result<(BuildInfo, Value)> {
    let build = BuildInfo::now(color, &stack.dir);
    let config = compose
        .config(
            stack,
            sources,
            &build.variables(color),
            compose.quick_limit(),
        )
        .await?;
    Ok((build, config))
}

/// The color to deploy to: the one asked for, else the detection's target. Refused on a
/// conflict, an interrupted switch, or when it is the active color.
fn deploy_target(detection: &Detection, asked: Option<Color>) -> Result<Color> {
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot deploy: {conflict}")));
    }
    if detection.interrupted {
        return Err(Error::Incomplete(
            "a switch was interrupted: run ztd-switch --resume or ztd-rollback first".into(),
        ));
    }
    let target = asked.unwrap_or(detection.target());
    if detection.active == Some(target) {
        return Err(Error::Usage(format!(
            "{target} is the active color: deploy to {} (the standby)",
            target.other()
        )));
    }
    Ok(target)
}

/// Name each service that runs in both colors until the switch: a warning when two copies run
/// from now on (a color or a stack being adopted runs already), a note otherwise.
fn name_run_in_both_colors(both: &[String], detection: &Detection) {
    let twice_now = detection.active.is_some() || !detection.legacy.is_empty();
    for service in both {
        let line = format!(
            "{service} runs in both colors until the switch; if it must never run twice, label it `ztd.switch: handover` (or list it in ZTD_HANDOVER)"
        );
        if twice_now {
            warn!("{line}");
        } else {
            info!("{line}");
        }
    }
}

/// Record `target` as the deploy candidate: `.rollback_state`, the state file and the history.
fn record_candidate(
    stack: &Stack,
    detection: &Detection,
    target: Color,
    build: &BuildInfo,
) -> Result<()> {
    state::write_rollback_state(stack, detection.active.unwrap_or(target.other()), target)?;
    state::update(stack, |record| {
        record.candidate = Some(target);
        record.project = Some(stack.name.clone());
        if record.previous == Some(target) {
            // The color kept for rollback is being replaced by the new version.
            record.previous = None;
        }
        record.deployments.insert(
            target,
            DeploymentRecord {
                version: Some(build.version.clone()),
                deployed_at: Some(build.build_date.clone()),
                images: BTreeMap::new(),
                digests: BTreeMap::new(),
            },
        );
    })?;
    let event = UpEvent {
        event: "up",
        at: &build.build_date,
        color: target,
        version: &build.version,
        active: detection.active,
    };
    state::append_history(stack, &event)
}

/// The image each deployed container runs, and its repository digest where it has one (the
/// version record writes both to the state file).
async fn deployed_images<E: Engine>(
    engine: &E,
    plan: &Plan,
    containers: &[ContainerInfo],
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let images: BTreeMap<String, String> = containers
        .iter()
        .map(|c| (c.service.clone(), c.image_id.clone()))
        .collect();
    let references: BTreeMap<String, String> = plan
        .color_model
        .get("services")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, s)| Some((name.clone(), s.get("image")?.as_str()?.to_string())))
        .collect();
    let digests = pull::digests(engine, &images, &references).await;
    (images, digests)
}

/// Each planned service with its container as the engine lists it.
fn deployed_services(
    meta: &DeployMeta,
    containers: &[ContainerInfo],
    digests: &BTreeMap<String, String>,
) -> Vec<DeployedService> {
    meta.services
        .iter()
        .map(|s| {
            let container = containers.iter().find(|c| c.service == s.name);
            DeployedService {
                service: s.name.clone(),
                mode: s.mode,
                container: s.container.clone(),
                state: container.map(|c| c.state),
                image_id: container.map(|c| c.image_id.clone()),
                digest: digests.get(&s.name).cloned(),
            }
        })
        .collect()
}

/// What renders the color, again with other container names should another deploy take one.
struct Renderer<'a> {
    config: &'a Value,
    stack: &'a Stack,
    color: Color,
    build: &'a BuildInfo,
    env: &'a EnvSettings,
}

impl Renderer<'_> {
    /// Choose the container names as the engine stands now, and render with them.
    async fn choose_names_and_render<E: Engine>(&self, engine: &E) -> Result<Plan> {
        let names = choose_container_names(engine, self.stack, self.config, self.color).await?;
        render::render_with(
            self.config,
            self.stack,
            self.color,
            self.build,
            &RenderOptions {
                env: self.env.clone(),
                container_names: names,
            },
        )
    }
}

/// Whether a failed create says a container name is taken (Docker's "Conflict. The container
/// name ... is already in use").
fn name_taken(err: &Error) -> bool {
    matches!(err, Error::Engine(message) if message.contains("is already in use by container"))
}

/// What the steps of a deploy act with, once its candidate is recorded.
struct Deployment<'a, E> {
    engine: &'a E,
    compose: &'a Compose,
    stack: &'a Stack,
    /// The color's rendered file.
    rendered_path: &'a Path,
}

impl<E: Engine> Deployment<'_, E> {
    /// The steps of a deploy: volumes, shared services, build, create, start, front proxy; a
    /// signal is looked for before each of them.
    async fn run(
        &self,
        renderer: &Renderer<'_>,
        plan: &mut Plan,
        detection: &Detection,
        no_build: bool,
        steps: &mut Steps,
    ) -> Result<()> {
        let (engine, compose, stack) = (self.engine, self.compose, self.stack);
        signals::check("before its next step")?;
        steps.run("volumes", self.volumes(&plan.meta)).await?;

        signals::check("before its next step")?;
        if let Some(shared_model) = &plan.shared_model {
            self.shared_services(&plan.meta, shared_model, steps)
                .await?;
        }
        signals::check("before its next step")?;
        if !no_build && plan.meta.services.iter().any(|s| s.build) {
            steps
                .run(
                    "build",
                    compose.run(stack, &plan.meta.project, self.rendered_path, &["build"]),
                )
                .await?;
        }
        signals::check("before its next step")?;
        crate::fault::pause("up:before-create").await;
        self.create(renderer, plan, steps).await?;
        signals::check("before its next step")?;
        steps
            .run(
                "attach shared services",
                attach_shared(engine, stack, &plan.meta),
            )
            .await?;
        let starting: Vec<&str> = plan
            .meta
            .services
            .iter()
            .filter(|s| s.start_at_up)
            .map(|s| s.name.as_str())
            .collect();
        signals::check("before its next step")?;
        if !starting.is_empty() {
            steps
                .run(
                    "start",
                    start_in_waves(
                        engine,
                        compose,
                        stack,
                        self.rendered_path,
                        &plan.meta,
                        &plan.color_model,
                        &starting,
                        true,
                    ),
                )
                .await?;
        }

        signals::check("before its next step")?;
        if !plan.meta.listeners.is_empty() {
            steps
                .run(
                    "front proxy",
                    ensure_proxy(engine, compose, stack, &plan.meta, detection),
                )
                .await?;
        }

        signals::check("before its last step")
    }

    /// Create the named volumes both colors use.
    async fn volumes(&self, meta: &DeployMeta) -> Result<()> {
        for volume in &meta.volumes {
            self.engine
                .ensure_volume(&VolumeSpec {
                    name: volume.name.clone(),
                    driver: volume.driver.clone(),
                    driver_opts: volume.driver_opts.clone(),
                    labels: [
                        (labels::COMPOSE_PROJECT.to_string(), self.stack.name.clone()),
                        ("com.docker.compose.volume".to_string(), volume.key.clone()),
                    ]
                    .into(),
                })
                .await?;
        }
        Ok(())
    }

    /// Start the shared services, unless their file is unchanged and they all run.
    async fn shared_services(
        &self,
        meta: &DeployMeta,
        shared_model: &Value,
        steps: &mut Steps,
    ) -> Result<()> {
        let stack = self.stack;
        let path = shared_compose_path(stack);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::State(format!("{}: {e}", parent.display())))?;
        }
        let text = render::rendered_text(shared_model);
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
        let running = self
            .engine
            .list(&ContainerQuery::project(&stack.shared_project()))
            .await?;
        let all_running = meta.shared.iter().all(|s| {
            running
                .iter()
                .any(|c| c.service == s.service && c.state == RunState::Running)
        });
        if unchanged && all_running {
            crate::debug!("shared services run unchanged; leaving them alone");
            return Ok(());
        }
        state::write_atomic(&path, text.as_bytes(), 0o600)?;
        steps
            .run(
                "shared services",
                self.compose.run(
                    stack,
                    &stack.shared_project(),
                    &path,
                    &["up", "-d", "--no-recreate", "--remove-orphans"],
                ),
            )
            .await
    }

    /// Create the color's containers; when a chosen name was taken meanwhile, choose the names
    /// again, rewrite the rendered file and create once more.
    async fn create(
        &self,
        renderer: &Renderer<'_>,
        plan: &mut Plan,
        steps: &mut Steps,
    ) -> Result<()> {
        let (stack, project) = (self.stack, plan.meta.project.clone());
        let create = ["up", "--no-start", "--remove-orphans"];
        let created = steps
            .run(
                "create",
                self.compose
                    .run(stack, &project, self.rendered_path, &create),
            )
            .await;
        match created {
            Err(err) if name_taken(&err) => {
                // Another project took a name chosen for this color since it was chosen (two
                // stacks deploying at once): choose again, as then, and create once more.
                warn!("a container name was taken meanwhile ({err}); choosing the names again");
                *plan = renderer.choose_names_and_render(self.engine).await?;
                check_names_free(self.engine, &plan.meta).await?;
                state::write_atomic(
                    self.rendered_path,
                    render::rendered_text(&plan.color_model).as_bytes(),
                    0o600,
                )?;
                steps
                    .run(
                        "create",
                        self.compose
                            .run(stack, &project, self.rendered_path, &create),
                    )
                    .await
            }
            other => other,
        }
    }
}

/// How many containers a deploy starts at once.
const START_CONCURRENCY: usize = 8;

/// After a signal: stop every container of the candidate that runs, so the stack is as before
/// the deploy but for the stopped candidate, which `ztd-rollback` abandons. Returns the error
/// to end with (exit 130).
async fn stop_interrupted<E: Engine>(
    engine: &E,
    stack: &Stack,
    target: Color,
    cause: &Error,
) -> Error {
    warn!("interrupted: stopping what {target} started");
    let project = stack.color_project(target);
    let mut stopped = 0;
    let mut left = Vec::new();
    match engine.list(&ContainerQuery::project(&project)).await {
        Ok(containers) => {
            for container in containers.iter().filter(|c| c.state.is_up()) {
                match engine.stop(&container.id, INTERRUPT_STOP_TIMEOUT).await {
                    Ok(()) | Err(Error::NotFound(_)) => stopped += 1,
                    Err(err) => {
                        warn!("cannot stop {}: {err}", container.name);
                        left.push(container.name.clone());
                    }
                }
            }
        }
        Err(err) => {
            warn!("cannot list {project}: {err}");
            left.push(project.clone());
        }
    }
    let what = if matches!(cause, Error::Interrupted(_)) {
        cause.message().to_string()
    } else {
        format!("interrupted by a signal ({})", cause.message())
    };
    let left = if left.is_empty() {
        String::new()
    } else {
        format!("; still running: {}", left.join(", "))
    };
    Error::Interrupted(format!(
        "{what}: stopped {stopped} containers of {target}{left}; ztd-rollback abandons the candidate"
    ))
}

/// Start the created containers of these services: straight through the engine, all at once or
/// in waves along `depends_on` (each wave once the previous one runs); through Compose when a
/// dependency waits for a health or completion condition, which Compose knows how to honour.
pub async fn start_services<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    rendered_path: &std::path::Path,
    meta: &DeployMeta,
    model: &Value,
    starting: &[&str],
) -> Result<()> {
    start_in_waves(
        engine,
        compose,
        stack,
        rendered_path,
        meta,
        model,
        starting,
        false,
    )
    .await
}

/// As `start_services`; with `stop_on_signal`, a signal ends it between two waves.
#[allow(clippy::too_many_arguments)]
async fn start_in_waves<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    rendered_path: &std::path::Path,
    meta: &DeployMeta,
    model: &Value,
    starting: &[&str],
    stop_on_signal: bool,
) -> Result<()> {
    let Some(depends) = depends_within(model, starting) else {
        let mut args = vec!["up", "-d", "--no-recreate"];
        args.extend(starting);
        return compose
            .run(stack, &meta.project, rendered_path, &args)
            .await;
    };
    let mut started: Vec<&str> = Vec::new();
    while started.len() < starting.len() {
        if stop_on_signal {
            signals::check("between two start waves")?;
        }
        let wave: Vec<&str> = starting
            .iter()
            .copied()
            .filter(|s| !started.contains(s))
            .filter(|s| depends[s].iter().all(|d| started.contains(&d.as_str())))
            .collect();
        if wave.is_empty() {
            return Err(Error::State("the services' depends_on form a cycle".into()));
        }
        let containers: Vec<String> = wave
            .iter()
            .filter_map(|s| meta.service(s).map(|p| p.container.clone()))
            .collect();
        // A few at a time: the engine starts them one after another anyway, and a start queued
        // behind dozens of others would outlast the engine call's deadline.
        let results: Vec<Result<()>> =
            futures_util::stream::iter(containers.iter().map(|c| engine.start(c)))
                .buffer_unordered(START_CONCURRENCY)
                .collect()
                .await;
        for result in results {
            result?;
        }
        started.extend(wave);
    }
    Ok(())
}

/// What each starting service depends on among the starting ones, in the rendered model; `None`
/// when a dependency waits for more than its start (health, completion), which only Compose
/// honours.
fn depends_within<'a>(
    model: &Value,
    starting: &[&'a str],
) -> Option<BTreeMap<&'a str, Vec<String>>> {
    let services = model.get("services").and_then(Value::as_object);
    let mut depends: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut only_started = true;
    for name in starting {
        let deps = services
            .and_then(|s| s.get(*name))
            .and_then(|s| s.get("depends_on"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut within = Vec::new();
        for (dep, settings) in deps {
            if !starting.contains(&dep.as_str()) {
                continue;
            }
            let condition = settings
                .get("condition")
                .and_then(Value::as_str)
                .unwrap_or("service_started");
            only_started &= condition == "service_started";
            within.push(dep);
        }
        depends.insert(name, within);
    }
    only_started.then_some(depends)
}

/// The services that run in both colors from `ztd-up` until the switch without being proxied:
/// unlabelled services (`ztd.switch` unset) started at `up`.
pub fn run_in_both_colors(meta: &DeployMeta) -> Vec<String> {
    meta.services
        .iter()
        .filter(|s| s.mode == SwitchMode::Side && s.start_at_up)
        .map(|s| s.name.clone())
        .collect()
}

/// The container name of each service of `color`. The compatible `<service>-<color>` where the
/// compose file sets `container_name`, or where no container of another project holds it;
/// otherwise Compose's own per-project name `<project>-<color>-<service>-1`. A name recorded by
/// this color's last deploy is kept while no other project holds it, so the choice is stable.
pub async fn choose_container_names<E: Engine>(
    engine: &E,
    stack: &Stack,
    config: &Value,
    color: Color,
) -> Result<BTreeMap<String, String>> {
    let project = stack.color_project(color);
    // An unreadable old rendered file is rewritten by this deploy: choose afresh then.
    let recorded = read_color_meta(stack, color).ok().flatten();
    let mut names = BTreeMap::new();
    let services = config
        .get("services")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, service) in &services {
        let compatible = render::compatible_container_name(name, color);
        if service.get("container_name").is_some() {
            names.insert(name.clone(), compatible);
            continue;
        }
        let candidate = recorded
            .as_ref()
            .and_then(|m| m.service(name))
            .map_or(compatible, |s| s.container.clone());
        let held_elsewhere = match engine.inspect(&candidate).await {
            Ok(holder) => holder.project.as_deref() != Some(project.as_str()),
            Err(Error::NotFound(_)) => false,
            Err(err) => return Err(err),
        };
        let chosen = if held_elsewhere {
            format!("{project}-{name}-1")
        } else {
            candidate
        };
        names.insert(name.clone(), chosen);
    }
    Ok(names)
}

/// Refuse, before anything changes, when another project holds a chosen container name (a
/// `container_name` in the compose file asks for `<service>-<color>`, whoever holds it).
async fn check_names_free<E: Engine>(engine: &E, meta: &DeployMeta) -> Result<()> {
    for service in &meta.services {
        match engine.inspect(&service.container).await {
            Ok(other) if other.project.as_deref() != Some(meta.project.as_str()) => {
                return Err(Error::State(format!(
                    "container name {} is taken by {}: the compose file sets container_name for {}, so ztd names it <service>-<color>; without container_name it gets a per-project name",
                    service.container,
                    other
                        .project
                        .map_or("a container outside Compose".to_string(), |p| format!(
                            "Compose project {p}"
                        )),
                    service.name
                )));
            }
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn ensure_proxy<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    meta: &DeployMeta,
    detection: &Detection,
) -> Result<()> {
    // Routes keep serving the active color; ports only the new version publishes answer 503.
    let active_meta = match detection.active {
        Some(active) => read_color_meta(stack, active)?,
        None => None,
    };
    let routes: Vec<Route> = meta
        .listeners
        .iter()
        .map(|l| {
            let served = active_meta.as_ref().and_then(|m| {
                m.listeners
                    .iter()
                    .find(|a| a.port == l.port && a.protocol == l.protocol)
                    .map(|a| a.upstream(m.color))
            });
            Route {
                listener: l.clone(),
                upstream: served,
            }
        })
        .collect();
    let color = if routes.iter().any(|r| r.upstream.is_some()) {
        detection.active
    } else {
        None
    };
    // A stack being adopted still holds the ports: create the proxy, start it at the switch.
    let ports_held = detection
        .legacy
        .iter()
        .any(|c| c.state == RunState::Running);
    let proxy = Proxy::new(engine, stack);
    proxy
        .ensure(compose, &meta.listeners, &routes, color, !ports_held)
        .await?;
    if let (Some(active_meta), true) = (
        &active_meta,
        proxy.status().await? == Some(RunState::Running),
    ) {
        // The proxy may have been recreated: make sure it still reaches the active color.
        proxy
            .connect(&crate::proxy::networks_for(active_meta))
            .await?;
    }
    proxy.connect(&crate::proxy::networks_for(meta)).await
}

fn describe(plan: &Plan, detection: &Detection, dry_run: bool) {
    let meta = &plan.meta;
    let verb = if dry_run { "would deploy" } else { "deploying" };
    info!(
        "{verb} {} as {} ({}), active: {}",
        meta.color,
        meta.project,
        meta.build.version,
        detection
            .active
            .map_or("none".to_string(), |c| c.to_string())
    );
    for service in &meta.services {
        let when = if service.start_at_up {
            "start now"
        } else {
            "start at the switch"
        };
        info!(
            "  {} -> {} ({:?}, {when})",
            service.name, service.container, service.mode
        );
    }
    for shared in &meta.shared {
        info!("  {} (shared by both colors, left running)", shared.service);
    }
    for listener in &meta.listeners {
        info!(
            "  port {}{} -> {}:{} through the front proxy ({:?})",
            listener
                .host_ip
                .as_deref()
                .map(|ip| format!("{ip}:"))
                .unwrap_or_default(),
            listener.port,
            listener.service,
            listener.target,
            listener.protocol
        );
    }
    if !detection.legacy.is_empty() {
        info!(
            "  adopting {} containers of Compose project {} at the switch",
            detection.legacy.len(),
            detection.legacy[0].project.clone().unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Printed;
    use serde_json::json;

    fn stack() -> Stack {
        Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        }
    }

    fn plan() -> Plan {
        let config = json!({
            "name": "shop",
            "services": {
                "web": {"image": "web:1", "environment": {"SECRET": "hunter2"},
                        "ports": [{"target": 8080, "published": "80", "protocol": "tcp"}]},
                "worker": {"image": "worker:1"}
            }
        });
        let build = BuildInfo {
            version: "green-20261126-031141".into(),
            build_date: "2026-11-26T03:11:41Z".into(),
            vcs_ref: "abc1234".into(),
        };
        render::render(&config, &stack(), Color::Green, &build).expect("render")
    }

    fn keys(line: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(line).expect("json");
        value.as_object().expect("object").keys().cloned().collect()
    }

    #[test]
    fn a_dry_run_report_keeps_its_fields_and_decodes_back() {
        let plan = plan();
        let body = UpBody::DryRun(Box::new(DryRun {
            dry_run: true,
            run_in_both_colors: run_in_both_colors(&plan.meta),
            active: Some(Color::Blue),
            version: plan.meta.build.version.clone(),
            plan: plan.meta.clone(),
            rendered: render::redact(&plan.color_model),
            shared_rendered: None,
        }));
        let report = Report::new(TOOL, &stack(), Some(Color::Green), body);
        let printed = Printed::json(&report);
        assert_eq!(printed.status, ExitStatus::Success);
        assert_eq!(
            keys(&printed.text),
            [
                "tool",
                "project",
                "project_dir",
                "ok",
                "target",
                "dry_run",
                "run_in_both_colors",
                "active",
                "version",
                "plan",
                "rendered",
                "shared_rendered"
            ]
        );
        assert!(printed.text.contains("\"run_in_both_colors\":[\"worker\"]"));
        assert!(!printed.text.contains("hunter2"), "redacted");
        assert!(printed.text.contains("\"shared_rendered\":null"));
        let decoded: Report<UpBody> = serde_json::from_str(&printed.text).expect("decode");
        assert_eq!(decoded, report);
    }

    #[test]
    fn a_deploy_report_keeps_its_fields_and_decodes_back() {
        let plan = plan();
        let mut steps = Steps::default();
        steps.record("create", Instant::now(), true, StepDetail::default());
        let body = UpBody::Deployed(Deployed {
            active: None,
            version: plan.meta.build.version.clone(),
            compose_project: "shop-green".into(),
            rendered_file: "/srv/shop/docker-compose.green.yml".into(),
            services: deployed_services(&plan.meta, &[], &BTreeMap::new()),
            shared: Vec::new(),
            run_in_both_colors: run_in_both_colors(&plan.meta),
            listeners: plan.meta.listeners.clone(),
            steps,
            duration_ms: 12.5,
        });
        let report = Report::new(TOOL, &stack(), Some(Color::Green), body);
        let printed = Printed::json(&report);
        assert_eq!(printed.status, ExitStatus::Success);
        assert_eq!(
            keys(&printed.text),
            [
                "tool",
                "project",
                "project_dir",
                "ok",
                "target",
                "active",
                "version",
                "compose_project",
                "rendered_file",
                "services",
                "shared",
                "run_in_both_colors",
                "listeners",
                "steps",
                "duration_ms"
            ]
        );
        assert!(printed.text.contains(
            "{\"service\":\"web\",\"mode\":\"proxy\",\"container\":\"web-green\",\"state\":null,\"image_id\":null}"
        ));
        let decoded: Report<UpBody> = serde_json::from_str(&printed.text).expect("decode");
        assert_eq!(decoded, report);
    }

    #[test]
    fn the_target_is_refused_on_a_conflict_an_interruption_or_when_active() {
        let detection =
            |active: Option<Color>, conflict: Option<&str>, interrupted: bool| Detection {
                active,
                standby: active.map(Color::other),
                recorded: Default::default(),
                colors: BTreeMap::new(),
                shared: Vec::new(),
                legacy: Vec::new(),
                journal: None,
                interrupted,
                conflict: conflict.map(str::to_string),
                lock: None,
            };
        assert_eq!(
            deploy_target(&detection(None, None, false), None),
            Ok(Color::Green)
        );
        assert_eq!(
            deploy_target(&detection(Some(Color::Green), None, false), None),
            Ok(Color::Blue)
        );
        assert!(matches!(
            deploy_target(
                &detection(Some(Color::Green), None, false),
                Some(Color::Green)
            ),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            deploy_target(&detection(None, Some("both active"), false), None),
            Err(Error::State(_))
        ));
        assert!(matches!(
            deploy_target(&detection(None, None, true), None),
            Err(Error::Incomplete(_))
        ));
    }

    #[test]
    fn waves_follow_depends_on_unless_a_condition_needs_compose() {
        let model = json!({"services": {
            "web": {"depends_on": {"db": {"condition": "service_started"}, "cache": {"condition": "service_started"}}},
            "db": {},
            "api": {"depends_on": {"db": {"condition": "service_healthy"}}}
        }});
        let depends = depends_within(&model, &["web", "db"]).expect("waves");
        assert_eq!(
            depends["web"],
            vec!["db".to_string()],
            "cache is not starting"
        );
        assert!(depends["db"].is_empty());
        assert_eq!(depends_within(&model, &["api", "db"]), None);
        assert!(
            depends_within(&model, &["api"]).is_some(),
            "db is not starting"
        );
    }
}
