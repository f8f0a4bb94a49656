//! Recovery: resuming or undoing a switch that was killed (from its journal), rolling back to the
//! previous color (its kept containers, or new ones from the image ids recorded at its deploy),
//! all within `ROLLBACK_TIMEOUT`, and cleaning up a color that is not active.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::compose::Compose;
use crate::detect::{self, Detection};
use crate::engine::{ContainerInfo, ContainerQuery, Engine, RunState};
use crate::error::{Error, ExitStatus, Result};
use crate::health::{self, Target};
use crate::journal::{self, Journal, JournalStepName, Operation, StepState};
use crate::labels::SwitchMode;
use crate::proxy::{self, Proxy};
use crate::render::read_color_meta;
use crate::render::{self, DeployMeta};
use crate::report::steps::{StepDetail, Steps};
use crate::shared::attach_shared;
use crate::stack::{Color, Stack};
use crate::state::{self, DeployLock};
use crate::switch::{
    Move, SwitchOptions, SwitchOutcome, execute, port_holders, record_move, restore_restart_policy,
    retire, take_over_ports,
};
use crate::units::millis_since;
use crate::up::start_services;
use crate::{info, warn};

/// How an interrupted change was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Carried through to its target.
    Finished,
    /// Put back to the color it started from.
    Undone,
}

/// What a resumed move adds to its history line.
#[derive(Debug, serde::Serialize)]
struct ResumedDetail {
    resumed: bool,
}

/// The history line of a resumed change.
#[derive(Debug, serde::Serialize)]
struct ResumeEvent<'a> {
    operation: Operation,
    from: Option<Color>,
    to: Color,
    interrupted_at: &'a str,
    resolution: Resolution,
}

/// The history line of a rollback that reached its deadline.
#[derive(Debug, serde::Serialize)]
struct TimeoutEvent<'a> {
    from: Color,
    to: Color,
    at_step: &'a str,
}

/// The history line of a rollback that stopped a candidate never switched to.
#[derive(Debug, serde::Serialize)]
struct AbandonEvent {
    abandoned: Color,
    active: Option<Color>,
}

/// The history line of a cleanup.
#[derive(Debug, serde::Serialize)]
struct CleanupEvent<'a> {
    color: Color,
    removed: &'a [String],
}

/// Whether finishing an interrupted change is quicker than undoing it: finish once at least
/// half of its proxy and handover steps are done, or once it got past them; undo before that.
/// A first deploy or an adoption has nothing to go back to, so it is finished. A change that
/// was being undone when it was interrupted is always undone.
fn should_finish(journal: &Journal, to_meta: &DeployMeta) -> bool {
    if journal.undoing {
        return false;
    }
    if journal.from.is_none() {
        return true;
    }
    let past = journal.steps.iter().any(|s| s.name.past_the_moves());
    let total = usize::from(!to_meta.listeners.is_empty())
        + to_meta
            .services
            .iter()
            .filter(|s| s.mode == SwitchMode::Handover)
            .count();
    let done = journal
        .steps
        .iter()
        .filter(|s| s.state == StepState::Done && s.name.moves_traffic())
        .count();
    past || total == 0 || (done > 0 && done * 2 >= total)
}

/// `ztd-switch --resume`: finish or undo the change a journal records, whichever is quicker,
/// so that exactly one color is active with the proxy pointing at it.
pub async fn resume<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
) -> Result<SwitchOutcome> {
    let started = Instant::now();
    let _lock = DeployLock::acquire(stack, "ztd-switch --resume")?;
    let Some(journal) = journal::read(stack)? else {
        let detection = detect::detect(engine, stack).await?;
        return Ok(SwitchOutcome::report(
            "ztd-switch",
            stack,
            ExitStatus::Success,
            json!({
                "resumed": false,
                "reason": "no switch or rollback was interrupted",
                "active": detection.active,
                "target": detection.active,
            }),
        ));
    };
    let to_meta = read_color_meta(stack, journal.to)?.ok_or_else(|| {
        Error::State(format!(
            "the rendered file of {} is gone; cannot resume",
            journal.to
        ))
    })?;
    let resolution = if should_finish(&journal, &to_meta) {
        Resolution::Finished
    } else {
        Resolution::Undone
    };
    let value = resolve(
        engine,
        stack,
        opts,
        &journal,
        resolution,
        "ztd-switch",
        started,
    )
    .await?;
    Ok(SwitchOutcome {
        json: value,
        status: ExitStatus::Success,
    })
}

/// Bring a journaled change to `resolution` and record it. The lock must be held.
async fn resolve<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    journal: &Journal,
    resolution: Resolution,
    tool: &str,
    started: Instant,
) -> Result<Value> {
    let interrupted_at = journal
        .unfinished()
        .map(|s| s.name.to_string())
        .or_else(|| journal.steps.last().map(|s| format!("after {}", s.name)))
        .unwrap_or_else(|| "before its first step".into());
    let mut journal = journal.clone();
    let mut resolution = resolution;
    info!(
        "the {} {} -> {} was interrupted at {interrupted_at}: {}",
        journal.operation,
        journal.from.map_or("nothing".into(), |c| c.to_string()),
        journal.to,
        if resolution == Resolution::Finished {
            "finishing it"
        } else {
            "undoing it"
        }
    );
    let mut steps = Steps::default();
    let operation = journal.operation;
    let mut detection;
    loop {
        let (keep, other) = match resolution {
            Resolution::Finished => (Some(journal.to), journal.from),
            Resolution::Undone => (journal.from, Some(journal.to)),
        };
        detection = detect::detect(engine, stack).await?;
        let other_side: Vec<ContainerInfo> = match other {
            Some(color) => detection.color(color).containers.clone(),
            None => detection.legacy.clone(),
        };
        // Finishing stops the other side (kept for rollback). Undoing a switch leaves its
        // target running as the deploy candidate, as before the switch; undoing a rollback
        // stops the color it was bringing back, as it was before.
        let retire_other = resolution == Resolution::Finished || operation == Operation::Rollback;
        let unhealthy = converge(
            engine,
            stack,
            opts,
            &detection,
            keep,
            &other_side,
            retire_other,
            &mut steps,
        )
        .await?;
        if resolution == Resolution::Undone || unhealthy.is_empty() || journal.from.is_none() {
            break;
        }
        // The change would have been undone had it not been interrupted: undo it now, marked
        // on disk first like any undo.
        warn!(
            "{} is not healthy in {}: undoing the {} instead",
            unhealthy.join(", "),
            journal.to,
            journal.operation
        );
        journal.begin_undo(stack)?;
        resolution = Resolution::Undone;
    }
    let keep = match resolution {
        Resolution::Finished => Some(journal.to),
        Resolution::Undone => journal.from,
    };
    if let (Resolution::Undone, Some(from)) = (resolution, journal.from) {
        // The records may already name the target if the change was killed while writing them.
        state::write_current_deployment(stack, from)?;
        state::update(stack, |record| {
            record.active = Some(from);
            record.candidate = (operation == Operation::Switch).then_some(journal.to);
        })?;
    }
    if resolution == Resolution::Finished {
        let images: BTreeMap<String, String> = detection
            .color(journal.to)
            .containers
            .iter()
            .map(|c| (c.service.clone(), c.image_id.clone()))
            .collect();
        record_move(
            stack,
            operation,
            journal.from,
            journal.to,
            images,
            &ResumedDetail { resumed: true },
        )?;
    }
    state::record_event(
        stack,
        "resume",
        &ResumeEvent {
            operation,
            from: journal.from,
            to: journal.to,
            interrupted_at: &interrupted_at,
            resolution,
        },
    )?;
    journal.clone().finish(stack)?;
    let active = keep;
    info!(
        "{} is active",
        active.map_or("nothing".into(), |c| c.to_string())
    );
    Ok(crate::output::object(
        tool,
        stack,
        true,
        json!({
            "resumed": true,
            "operation": journal.operation,
            "resolution": if resolution == Resolution::Finished { "finished" } else { "undone" },
            "interrupted_at": interrupted_at,
            "from": journal.from,
            "to": journal.to,
            "active": active,
            "target": active,
            "steps": steps,
            "duration_ms": millis_since(started),
        }),
    ))
}

/// Make `keep` the only active color whatever state a killed change left: its services run, the
/// proxy points at it, every singleton runs only there (the other side's stopped first), and,
/// when `retire_other`, the rest of the other side is stopped (kept). Every action checks the
/// current state first, so it can run again after being killed itself. Returns the singletons
/// that did not come up healthy in `keep`.
#[allow(clippy::too_many_arguments)]
async fn converge<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    detection: &Detection,
    keep: Option<Color>,
    other_side: &[ContainerInfo],
    retire_other: bool,
    steps: &mut Steps,
) -> Result<Vec<String>> {
    let mut unhealthy = Vec::new();
    let keep_meta = match keep {
        Some(color) => read_color_meta(stack, color)?,
        None => None,
    };
    let keep_containers: Vec<ContainerInfo> = keep
        .map(|c| detection.color(c).containers.clone())
        .unwrap_or_default();
    let handover_services: Vec<String> = keep_meta
        .iter()
        .flat_map(|m| m.services.iter())
        .filter(|s| s.mode == SwitchMode::Handover)
        .map(|s| s.name.clone())
        .collect();
    let is_handover = |c: &ContainerInfo| {
        handover_services.contains(&c.service)
            || c.settings_or_default().switch == SwitchMode::Handover
    };

    // 1. The kept color's other services run.
    let started = Instant::now();
    let idle: Vec<&ContainerInfo> = keep_containers
        .iter()
        .filter(|c| !is_handover(c) && !c.state.is_up())
        .collect();
    for result in join_all(
        idle.iter()
            .map(|c| start_kept(engine, c, keep_meta.as_ref())),
    )
    .await
    {
        result?;
    }
    steps.record(
        "services",
        started,
        true,
        StepDetail {
            started: Some(idle.len()),
            ..StepDetail::default()
        },
    );

    // 2. The proxy points at it.
    let listeners = keep_meta
        .as_ref()
        .map(|m| m.listeners.clone())
        .unwrap_or_default();
    let proxy = Proxy::new(engine, stack);
    if let Some(status) = proxy.status().await? {
        let started = Instant::now();
        if let Some(meta) = &keep_meta {
            proxy.connect(&proxy::networks_for(meta)).await?;
        }
        let listeners = if listeners.is_empty() {
            // Nothing to serve: keep the ports the proxy has, answering that nothing is active.
            read_color_meta(stack, keep.map_or(Color::Green, Color::other))?
                .map(|m| m.listeners)
                .unwrap_or_default()
        } else {
            listeners
        };
        let routes = proxy::routes_to(&listeners, keep);
        if status != RunState::Running {
            let holders = port_holders(&listeners, other_side);
            take_over_ports(engine, stack, opts, &listeners, keep, &holders).await?;
        }
        proxy
            .point_to(&routes, keep, &BTreeMap::new(), opts.drain_timeout)
            .await?;
        steps.record(
            "proxy",
            started,
            true,
            StepDetail {
                color: keep,
                ..StepDetail::default()
            },
        );
    }

    // 3. Each singleton: the other side's stops first, then the kept one runs.
    for container in other_side.iter().filter(|c| is_handover(c)) {
        let started = Instant::now();
        let current = fresh(engine, container).await?;
        if let Some(current) = current {
            retire(engine, opts, &current).await?;
        }
        steps.record(
            &format!("retire:{}", container.name),
            started,
            true,
            StepDetail::default(),
        );
    }
    for service in &handover_services {
        let Some(container) = keep_containers.iter().find(|c| &c.service == service) else {
            continue;
        };
        let started = Instant::now();
        let current = fresh(engine, container)
            .await?
            .unwrap_or_else(|| container.clone());
        if !current.state.is_up() {
            engine.start(&current.id).await?;
        }
        let settings = current.settings()?;
        if let Some(activate) = &settings.activate {
            let out = engine
                .exec(&current.id, activate, opts.drain_timeout)
                .await?;
            if out.exit_code != Some(0) {
                warn!(
                    "{service}: ztd.activate in {} did not succeed: {}",
                    current.name,
                    out.output.trim()
                );
            }
        }
        if let (Some(color), Some(meta)) = (keep, &keep_meta) {
            let target = Target {
                stack,
                color,
                active: true,
                service: Some(service),
            };
            let report = health::wait(engine, &target, &opts.policy, opts.health_deadline).await?;
            if !report.healthy() {
                warn!(
                    "{service}: {} is not healthy: {}",
                    current.name,
                    report.summary_line()
                );
                unhealthy.push(service.clone());
            }
            restore_restart_policy(engine, Some(meta), &current).await?;
        }
        steps.record(
            &format!("handover:{service}"),
            started,
            true,
            StepDetail::default(),
        );
    }

    // 4. The rest of the other side stops (kept for rollback).
    if retire_other {
        let started = Instant::now();
        let mut retired = 0;
        for container in other_side {
            if let Some(current) = fresh(engine, container).await?
                && current.state.is_up()
            {
                retire(engine, opts, &current).await?;
                retired += 1;
            }
        }
        steps.record(
            "stop_old",
            started,
            true,
            StepDetail {
                stopped: Some(retired),
                ..StepDetail::default()
            },
        );
    }
    Ok(unhealthy)
}

/// The container as it is now, or `None` if it was removed.
async fn fresh<E: Engine>(engine: &E, container: &ContainerInfo) -> Result<Option<ContainerInfo>> {
    match engine.inspect(&container.id).await {
        Ok(info) => Ok(Some(info)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Start a kept container with the restart policy its deploy asked for.
async fn start_kept<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    meta: Option<&DeployMeta>,
) -> Result<()> {
    restore_restart_policy(engine, meta, container).await?;
    engine.start(&container.id).await
}

/// What `ztd-rollback` was asked to do.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The switch settings (timeouts, health).
    pub switch: SwitchOptions,
    /// The hard deadline of the whole rollback (`ROLLBACK_TIMEOUT`).
    pub timeout: Duration,
}

/// `ztd-rollback`: back to the previous color. Also undoes an interrupted switch, and stops a
/// deploy candidate that was never switched to.
pub async fn rollback<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    opts: &RollbackOptions,
) -> Result<SwitchOutcome> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Lock first, then look: nothing acts on a detection made before the lock was held.
    let lock = DeployLock::acquire(stack, "ztd-rollback")?;
    let detection = detect::detect(engine, stack).await?;
    if let Some(journal) = &detection.journal {
        let resolution = if journal.from.is_some() || journal.undoing {
            Resolution::Undone
        } else {
            Resolution::Finished
        };
        let value = resolve(
            engine,
            stack,
            &opts.switch,
            journal,
            resolution,
            "ztd-rollback",
            started,
        )
        .await?;
        return Ok(SwitchOutcome {
            json: value,
            status: ExitStatus::Success,
        });
    }
    if let Some(conflict) = &detection.conflict {
        return Err(Error::State(format!("cannot roll back: {conflict}")));
    }
    let record = state::read_state(stack)?.unwrap_or_default();
    if let Some(candidate) = record.candidate.filter(|c| Some(*c) != detection.active) {
        let outcome =
            abandon_candidate(engine, stack, &opts.switch, &detection, candidate, started).await;
        drop(lock);
        return outcome;
    }
    let refuse = |reason: String| {
        warn!("{reason}");
        Ok(SwitchOutcome::report(
            "ztd-rollback",
            stack,
            ExitStatus::Negative,
            json!({
                "active": detection.active,
                "target": detection.active,
                "refused": reason,
            }),
        ))
    };
    let (Some(active), Some(previous)) = (detection.active, record.previous) else {
        return refuse("no previous deployment to roll back to".into());
    };
    let Some(previous_meta) = read_color_meta(stack, previous)? else {
        return refuse(format!(
            "{previous} was cleaned up: there is nothing to roll back to"
        ));
    };
    // Journaled before the first container of the previous color starts: a rollback killed
    // while preparing it is undone by --resume or another ztd-rollback.
    let mut journal = Journal::begin(stack, Operation::Rollback, Some(active), previous, None)?;
    journal.start(stack, JournalStepName::Prepare)?;
    let work = async {
        let prepared = async {
            prepare(engine, compose, stack, &previous_meta, &record).await?;
            let target = Target {
                stack,
                color: previous,
                active: false,
                service: None,
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            health::wait(
                engine,
                &target,
                &opts.switch.policy,
                opts.switch.health_deadline.min(remaining),
            )
            .await
        }
        .await;
        if !prepared.as_ref().is_ok_and(|health| health.healthy()) {
            // Put the previous color back to rest: nothing changed.
            let detection = detect::detect(engine, stack).await?;
            for container in &detection.color(previous).containers {
                retire(engine, &opts.switch, container).await?;
            }
            journal.clone().finish(stack)?;
            let health = prepared?;
            warn!(
                "rollback refused: {previous} does not come back healthy: {}",
                health.summary_line()
            );
            return Ok(SwitchOutcome::report(
                "ztd-rollback",
                stack,
                ExitStatus::Negative,
                json!({
                    "from": active,
                    "to": previous,
                    "active": active,
                    "target": active,
                    "refused": format!("{previous} does not come back healthy: {}", health.summary_line()),
                    "health": health.to_json(),
                    "duration_ms": millis_since(started),
                }),
            ));
        }
        journal.mark(stack, &JournalStepName::Prepare, StepState::Done)?;
        let detection = detect::detect(engine, stack).await?;
        let plan = Move {
            operation: Operation::Rollback,
            from: Some(active),
            to: previous,
            to_meta: previous_meta.clone(),
            from_meta: read_color_meta(stack, active)?,
            old: detection.color(active).containers.clone(),
            new: detection.color(previous).containers.clone(),
            adopting: None,
        };
        execute(engine, stack, &opts.switch, plan, started, Some(journal)).await
    };
    let outcome = tokio::time::timeout_at(deadline, work).await;
    drop(lock);
    match outcome {
        Ok(result) => result,
        Err(_) => {
            let journal = journal::read(stack)?;
            let where_ = journal
                .as_ref()
                .and_then(|j| j.unfinished().map(|s| s.name.to_string()))
                .unwrap_or_else(|| "while preparing the previous color".into());
            warn!(
                "ROLLBACK_TIMEOUT ({}s) reached at {where_}; run ztd-switch --resume or ztd-rollback again",
                opts.timeout.as_secs()
            );
            state::record_event(
                stack,
                "rollback_timeout",
                &TimeoutEvent {
                    from: active,
                    to: previous,
                    at_step: &where_,
                },
            )?;
            // Left part-way: exit 6, as for any change left incomplete.
            Ok(SwitchOutcome::report(
                "ztd-rollback",
                stack,
                ExitStatus::Incomplete,
                json!({
                    "from": active,
                    "to": previous,
                    "target": previous,
                    "timed_out": true,
                    "timeout_s": opts.timeout.as_secs_f64(),
                    "stopped_at": where_,
                    "journal": journal,
                    "duration_ms": millis_since(started),
                }),
            ))
        }
    }
}

/// Stop a deploy candidate that was never switched to: the stack is as before the deploy.
async fn abandon_candidate<E: Engine>(
    engine: &E,
    stack: &Stack,
    opts: &SwitchOptions,
    detection: &Detection,
    candidate: Color,
    started: Instant,
) -> Result<SwitchOutcome> {
    info!("{candidate} was deployed but never switched to: stopping it (kept for inspection)");
    let mut stopped = Vec::new();
    for container in &detection.color(candidate).containers {
        if container.state.is_up() {
            retire(engine, opts, container).await?;
            stopped.push(container.name.clone());
        }
    }
    state::update(stack, |record| record.candidate = None)?;
    state::record_event(
        stack,
        "rollback",
        &AbandonEvent {
            abandoned: candidate,
            active: detection.active,
        },
    )?;
    Ok(SwitchOutcome::report(
        "ztd-rollback",
        stack,
        ExitStatus::Success,
        json!({
            "abandoned": candidate,
            "stopped": stopped,
            "active": detection.active,
            "target": detection.active,
            "duration_ms": millis_since(started),
        }),
    ))
}

/// Make the previous color runnable again: its kept containers, or, where they were removed,
/// new ones from the image ids recorded at its deploy; its services started (singletons wait for
/// the handover).
async fn prepare<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    meta: &DeployMeta,
    record: &state::StateFile,
) -> Result<()> {
    let path = stack.rendered_compose_path(meta.color);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    let mut model = render::parse_rendered(&text)?;
    let containers = engine.list(&ContainerQuery::project(&meta.project)).await?;
    let missing: Vec<&str> = meta
        .services
        .iter()
        .filter(|s| !containers.iter().any(|c| c.service == s.name))
        .map(|s| s.name.as_str())
        .collect();
    let mut file = path.clone();
    if !missing.is_empty() {
        info!(
            "{}: recreating {} from the images recorded at its deploy",
            meta.color,
            missing.join(", ")
        );
        let images = record
            .deployments
            .get(&meta.color)
            .map(|d| d.images.clone())
            .unwrap_or_default();
        if let Some(services) = model.get_mut("services").and_then(Value::as_object_mut) {
            for (name, service) in services.iter_mut() {
                let id = images.get(name).ok_or_else(|| {
                    Error::State(format!(
                        "no image id was recorded for {name} in {}; cannot recreate it",
                        meta.color
                    ))
                })?;
                service["image"] = Value::from(id.clone());
                if let Some(fields) = service.as_object_mut() {
                    fields.remove("build");
                    fields.insert("pull_policy".into(), Value::from("never"));
                }
            }
        }
        file = stack.ztd_dir().join(format!("rollback-{}.yml", meta.color));
        state::write_atomic(&file, render::rendered_text(&model).as_bytes(), 0o600)?;
        compose
            .run(
                stack,
                &meta.project,
                &file,
                &["up", "--no-start", "--remove-orphans"],
            )
            .await?;
        attach_shared(engine, stack, meta).await?;
    }
    let proxy = Proxy::new(engine, stack);
    if proxy.status().await?.is_some() {
        proxy.connect(&proxy::networks_for(meta)).await?;
    }
    let containers = engine.list(&ContainerQuery::project(&meta.project)).await?;
    for service in meta
        .services
        .iter()
        .filter(|s| s.mode != SwitchMode::Handover)
    {
        if let Some(container) = containers.iter().find(|c| c.service == service.name) {
            restore_restart_policy(engine, Some(meta), container).await?;
        }
    }
    let starting: Vec<&str> = meta
        .services
        .iter()
        .filter(|s| s.mode != SwitchMode::Handover)
        .filter(|s| {
            containers
                .iter()
                .any(|c| c.service == s.name && !c.state.is_up())
        })
        .map(|s| s.name.as_str())
        .collect();
    if !starting.is_empty() {
        start_services(engine, compose, stack, &file, meta, &model, &starting).await?;
    }
    Ok(())
}

/// `ztd-rollback --cleanup COLOR`: remove a color that is not active: its containers, networks
/// and rendered file. The active color is refused.
pub async fn cleanup<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    color: Color,
) -> Result<SwitchOutcome> {
    let started = Instant::now();
    // Lock first, then look: the color that became active meanwhile is never removed.
    let _lock = DeployLock::acquire(stack, "ztd-rollback --cleanup")?;
    let detection = detect::detect(engine, stack).await?;
    if detection.interrupted {
        return Err(Error::Incomplete(
            "a switch was interrupted: run ztd-switch --resume or ztd-rollback first".into(),
        ));
    }
    if detection.active == Some(color) {
        warn!("refusing to clean up {color}: it is the active color");
        return Ok(SwitchOutcome::report(
            "ztd-rollback",
            stack,
            ExitStatus::Negative,
            json!({
                "cleanup": color,
                "active": detection.active,
                "target": detection.active,
                "refused": format!("{color} is the active color"),
            }),
        ));
    }
    let view = detection.color(color);
    let meta = read_color_meta(stack, color)?;
    // Containers of other projects attached to the color's networks would keep them alive.
    if let Some(meta) = &meta {
        let mut attached: Vec<String> = detection.shared.iter().map(|c| c.id.clone()).collect();
        attached.push(stack.proxy_container());
        for network in meta.networks.values() {
            for container in &attached {
                engine.disconnect(network, container).await?;
            }
        }
    }
    let path = stack.rendered_compose_path(color);
    let removed: Vec<String> = view.containers.iter().map(|c| c.name.clone()).collect();
    // Compose finds a project's containers by label: without the rendered file, a file that
    // only names the project is enough for `down`.
    let empty = stack.ztd_dir().join("empty-compose.yml");
    let file = if path.exists() {
        Some(path.clone())
    } else if !view.containers.is_empty() {
        state::write_atomic(
            &empty,
            format!("name: {}\nservices: {{}}\n", view.project).as_bytes(),
            0o644,
        )?;
        Some(empty.clone())
    } else {
        None
    };
    if let Some(file) = file {
        let down = compose
            .run(
                stack,
                &view.project,
                &file,
                &["down", "--remove-orphans", "--timeout", "10"],
            )
            .await;
        let _ = std::fs::remove_file(&empty);
        down?;
    }
    for file in [
        path.clone(),
        stack.ztd_dir().join(format!("rollback-{color}.yml")),
    ] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::State(format!("{}: {e}", file.display()))),
        }
    }
    state::update(stack, |record| {
        record.deployments.remove(&color);
        if record.previous == Some(color) {
            record.previous = None;
        }
        if record.candidate == Some(color) {
            record.candidate = None;
        }
    })?;
    state::record_event(
        stack,
        "cleanup",
        &CleanupEvent {
            color,
            removed: &removed,
        },
    )?;
    info!("{color} removed ({} containers)", removed.len());
    Ok(SwitchOutcome::report(
        "ztd-rollback",
        stack,
        ExitStatus::Success,
        json!({
            "cleanup": color,
            "removed": removed,
            "active": detection.active,
            "target": detection.active,
            "duration_ms": millis_since(started),
        }),
    ))
}
