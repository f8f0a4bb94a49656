//! Deploying a color beside the active one: render it from the user's compose file, build it,
//! start it as its own Compose project (handover services wait for the switch), keep the shared
//! services running once for both colors, and make sure the front proxy owns the host ports.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::compose::Compose;
use crate::detect::{self, Detection};
use crate::engine::{ContainerQuery, Engine, RunState, VolumeSpec};
use crate::error::{Error, Result};
use crate::labels;
use crate::labels::SwitchMode;
use crate::overrides::EnvSettings;
use crate::proxy::{Proxy, Route};
use crate::render::{self, BuildInfo, DeployMeta, Plan, RenderOptions, read_color_meta};
use crate::report::steps::{StepDetail, Steps};
use crate::shared::{attach_shared, shared_compose_path};
use crate::stack::{Color, Sources, Stack, model_name};
use crate::state::{self, DeployLock, DeploymentRecord};
use crate::units::millis_since;
use crate::{info, signals, warn};

/// What `ztd-up` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The color to deploy to (default: the target, the standby).
    pub color: Option<Color>,
    /// Print the plan and the rendered file; change nothing.
    pub dry_run: bool,
    /// Skip building images.
    pub no_build: bool,
    /// What Compose is told about the user's project (files, env files, profiles, name).
    pub sources: Sources,
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

/// Deploy a color. Returns the JSON report.
pub async fn up<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &UpOptions,
) -> Result<Value> {
    let started = Instant::now();
    let mut steps = Steps::default();
    // Bad input first: Compose resolves the project (files, overrides, `.env`, `name:`,
    // profiles) before anything is created, not even the lock. Its model names the project;
    // the variables of the deploy (VERSION...) depend on the target, predicted from the state
    // files and checked against the engine below.
    let predicted = opts.color.unwrap_or_else(|| predicted_target(stack));
    let reading = Instant::now();
    // The model as Compose resolves it for a deploy of `color` (its VERSION and the like).
    let read_model = |stack: Stack, color: Color| async move {
        let build = BuildInfo::now(color, &stack.dir);
        let config = compose
            .config(
                &stack,
                &opts.sources,
                &build.variables(color),
                compose.quick_limit(),
            )
            .await?;
        Ok::<_, Error>((build, config))
    };
    let (mut build, mut config) = read_model(stack.clone(), predicted).await?;
    let resolved = match &opts.sources.name {
        Some(_) => stack.clone(),
        None => stack.named(model_name(&config)?),
    };
    let stack = &resolved;
    let env = EnvSettings::from_env()?;
    // Lock first, then look: nothing acts on a detection made before the lock was held.
    let _lock = if opts.dry_run {
        None
    } else {
        Some(DeployLock::acquire(stack, "ztd-up")?)
    };
    let detection = detect::detect(engine, stack).await?;
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot deploy: {conflict}")));
    }
    if detection.interrupted {
        return Err(Error::Incomplete(
            "a switch was interrupted: run ztd-switch --resume or ztd-rollback first".into(),
        ));
    }
    let target = opts.color.unwrap_or(detection.target());
    if detection.active == Some(target) {
        return Err(Error::Usage(format!(
            "{target} is the active color: deploy to {} (the standby)",
            target.other()
        )));
    }
    if target != predicted {
        // The engine disagrees with the state files' guess: read the model again with the
        // right color's variables.
        (build, config) = read_model(stack.clone(), target).await?;
    }
    steps.record("read compose file", reading, true, StepDetail::default());
    let container_names = choose_container_names(engine, stack, &config, target).await?;
    // Rendering with other container names, should another deploy take one meanwhile.
    let render_named = |container_names| {
        render::render_with(
            &config,
            stack,
            target,
            &build,
            &RenderOptions {
                env: env.clone(),
                container_names,
            },
        )
    };
    let mut plan = render_named(container_names)?;
    let both = run_in_both_colors(&plan.meta);
    let twice_now = detection.active.is_some() || !detection.legacy.is_empty();
    for service in &both {
        let line = format!(
            "{service} runs in both colors until the switch; if it must never run twice, label it `ztd.switch: handover` (or list it in ZTD_HANDOVER)"
        );
        if twice_now {
            warn!("{line}");
        } else {
            info!("{line}");
        }
    }

    if opts.dry_run {
        describe(&plan, &detection, true);
        return Ok(crate::output::object(
            "ztd-up",
            stack,
            true,
            json!({
                "dry_run": true,
                "run_in_both_colors": both,
                "active": detection.active,
                "target": target,
                "version": build.version,
                "plan": plan.meta,
                "rendered": render::redact(&plan.color_model),
                "shared_rendered": plan.shared_model.as_ref().map(render::redact),
            }),
        ));
    }

    check_names_free(engine, &plan.meta).await?;
    signals::check("before anything changed")?;
    describe(&plan, &detection, false);
    let rendered_path = stack.rendered_compose_path(target);
    state::write_atomic(
        &rendered_path,
        render::rendered_text(&plan.color_model).as_bytes(),
        0o600,
    )?;
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
            },
        );
    })?;
    state::append_history(
        stack,
        &json!({"event": "up", "at": build.build_date, "color": target, "version": build.version, "active": detection.active}),
    )?;

    // The candidate is recorded: from here on, whatever a signal stops, ztd-rollback cleans.
    let project = stack.color_project(target);
    let deployed = deploy(
        engine,
        compose,
        stack,
        Rendering {
            plan: &mut plan,
            config: &config,
            render_named: &render_named,
        },
        &detection,
        opts,
        &rendered_path,
        &mut steps,
    )
    .await;
    if let Err(err) = deployed {
        if !signals::interrupted() && !matches!(err, Error::Interrupted(_)) {
            return Err(err);
        }
        return Err(stop_interrupted(engine, stack, target, &err).await);
    }

    let containers = engine.list(&ContainerQuery::project(&project)).await?;
    let images: BTreeMap<String, String> = containers
        .iter()
        .map(|c| (c.service.clone(), c.image_id.clone()))
        .collect();
    state::update(stack, |record| {
        if let Some(deployment) = record.deployments.get_mut(&target) {
            deployment.images = images;
        }
    })?;
    info!(
        "{target} is up as {project} ({}); next: ztd-health {target} --wait, then ztd-switch",
        build.version
    );
    Ok(crate::output::object(
        "ztd-up",
        stack,
        true,
        json!({
            "active": detection.active,
            "target": target,
            "version": build.version,
            "compose_project": project,
            "rendered_file": rendered_path,
            "services": plan.meta.services.iter().map(|s| {
                let container = containers.iter().find(|c| c.service == s.name);
                json!({
                    "service": s.name,
                    "mode": s.mode,
                    "container": s.container,
                    "state": container.map(|c| c.state),
                    "image_id": container.map(|c| c.image_id.clone()),
                })
            }).collect::<Vec<_>>(),
            "shared": plan.meta.shared.iter().map(|s| &s.service).collect::<Vec<_>>(),
            "run_in_both_colors": both,
            "listeners": plan.meta.listeners,
            "steps": steps,
            "duration_ms": millis_since(started),
        }),
    ))
}

/// The plan of a deploy and how to render it again with other container names.
struct Rendering<'a> {
    plan: &'a mut Plan,
    config: &'a Value,
    render_named: &'a dyn Fn(BTreeMap<String, String>) -> Result<Plan>,
}

/// Whether a failed create says a container name is taken (Docker's "Conflict. The container
/// name ... is already in use").
fn name_taken(err: &Error) -> bool {
    matches!(err, Error::Engine(message) if message.contains("is already in use by container"))
}

/// The steps of a deploy once its candidate is recorded: volumes, shared services, build,
/// create, start, front proxy; a signal is looked for before each of them.
#[allow(clippy::too_many_arguments)]
async fn deploy<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    rendering: Rendering<'_>,
    detection: &Detection,
    opts: &UpOptions,
    rendered_path: &std::path::Path,
    steps: &mut Steps,
) -> Result<()> {
    let Rendering {
        plan,
        config,
        render_named,
    } = rendering;
    signals::check("before its next step")?;
    steps
        .run("volumes", async {
            for volume in &plan.meta.volumes {
                engine
                    .ensure_volume(&VolumeSpec {
                        name: volume.name.clone(),
                        driver: volume.driver.clone(),
                        driver_opts: volume.driver_opts.clone(),
                        labels: [
                            (labels::COMPOSE_PROJECT.to_string(), stack.name.clone()),
                            ("com.docker.compose.volume".to_string(), volume.key.clone()),
                        ]
                        .into(),
                    })
                    .await?;
            }
            Ok(())
        })
        .await?;

    signals::check("before its next step")?;
    if let Some(shared_model) = &plan.shared_model {
        let path = shared_compose_path(stack);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::State(format!("{}: {e}", parent.display())))?;
        }
        let text = render::rendered_text(shared_model);
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
        let running = engine
            .list(&ContainerQuery::project(&stack.shared_project()))
            .await?;
        let all_running = plan.meta.shared.iter().all(|s| {
            running
                .iter()
                .any(|c| c.service == s.service && c.state == RunState::Running)
        });
        if unchanged && all_running {
            crate::debug!("shared services run unchanged; leaving them alone");
        } else {
            state::write_atomic(&path, text.as_bytes(), 0o600)?;
            steps
                .run(
                    "shared services",
                    compose.run(
                        stack,
                        &stack.shared_project(),
                        &path,
                        &["up", "-d", "--no-recreate", "--remove-orphans"],
                    ),
                )
                .await?;
        }
    }
    let project = &plan.meta.project.clone();
    signals::check("before its next step")?;
    if !opts.no_build && plan.meta.services.iter().any(|s| s.build) {
        steps
            .run(
                "build",
                compose.run(stack, project, rendered_path, &["build"]),
            )
            .await?;
    }
    signals::check("before its next step")?;
    crate::fault::pause("up:before-create").await;
    let create = ["up", "--no-start", "--remove-orphans"];
    let created = steps
        .run(
            "create",
            compose.run(stack, project, rendered_path, &create),
        )
        .await;
    match created {
        Err(err) if name_taken(&err) => {
            // Another project took a name chosen for this color since it was chosen (two
            // stacks deploying at once): choose again, as then, and create once more.
            warn!("a container name was taken meanwhile ({err}); choosing the names again");
            let names = choose_container_names(engine, stack, config, plan.meta.color).await?;
            *plan = render_named(names)?;
            check_names_free(engine, &plan.meta).await?;
            state::write_atomic(
                rendered_path,
                render::rendered_text(&plan.color_model).as_bytes(),
                0o600,
            )?;
            steps
                .run(
                    "create",
                    compose.run(stack, project, rendered_path, &create),
                )
                .await?;
        }
        other => other?,
    }
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
                    rendered_path,
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
    if !only_started {
        let mut args = vec!["up", "-d", "--no-recreate"];
        args.extend(starting);
        return compose
            .run(stack, &meta.project, rendered_path, &args)
            .await;
    }
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
        for result in
            futures_util::future::join_all(containers.iter().map(|c| engine.start(c))).await
        {
            result?;
        }
        started.extend(wave);
    }
    Ok(())
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
