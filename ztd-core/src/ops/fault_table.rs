//! The fault table: switch, undo, rollback and resume driven through every engine call they make,
//! each call meeting each fault (an error, a hang, a kill before or after its effect), on the fake
//! engine; after each, recovery must leave exactly one active color, the proxy serving it, the
//! singleton running there only (and never in both colors at once), and no journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::compose::Compose;
use crate::detect;
use crate::engine::RunState;
use crate::error::{ExitStatus, Result};
use crate::fake::{FakeEngine, Fault, container};
use crate::health::HealthPolicy;
use crate::journal;
use crate::proxy;
use crate::recover::{self, RollbackOptions};
use crate::render::{self, BuildInfo};
use crate::report::Outcome;
use crate::stack::{Color, Stack};
use crate::state::{self, DeploymentRecord, StateFile};
use crate::switch::{self, SwitchOptions};

/// The stack's services: a web app behind the proxy, a singleton bot, a side service.
fn config() -> serde_json::Value {
    json!({
        "name": "shop",
        "networks": {"default": {"name": "shop_default", "ipam": {}}},
        "services": {
            "web": {"image": "web:1", "restart": "unless-stopped",
                    "ports": [{"target": 8080, "published": "18080", "protocol": "tcp"}],
                    "networks": {"default": null}},
            "bot": {"image": "bot:1", "restart": "unless-stopped",
                    "labels": {"ztd.switch": "handover"}, "networks": {"default": null}},
            "side": {"image": "side:1", "networks": {"default": null}}
        }
    })
}

fn switch_options() -> SwitchOptions {
    SwitchOptions {
        to: None,
        force: false,
        drain_timeout: Duration::from_secs(2),
        stop_timeout: Duration::from_secs(1),
        policy: HealthPolicy {
            min_uptime: Duration::ZERO,
            ..HealthPolicy::default()
        },
        // Long enough for a fake container, short enough for a crashing one to be given up on.
        health_deadline: Duration::from_millis(300),
        compose: None,
        stop_old: switch::StopOld::Wait,
    }
}

fn rollback_options() -> RollbackOptions {
    RollbackOptions {
        switch: switch_options(),
        timeout: Duration::from_secs(20),
    }
}

/// One stack on disk and in the fake engine: blue active with v1, green deployed with v2 and
/// waiting for the switch (its singleton created, not started).
struct Fixture {
    stack: Stack,
    engine: FakeEngine,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.stack.dir).ok();
    }
}

fn fixture(tag: &str) -> Fixture {
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ztd-fault-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let stack = Stack {
        dir,
        name: "shop".into(),
    };
    let mut containers = Vec::new();
    let mut record = StateFile {
        active: Some(Color::Blue),
        candidate: Some(Color::Green),
        ..StateFile::default()
    };
    let mut listeners = Vec::new();
    for color in [Color::Blue, Color::Green] {
        let build = BuildInfo {
            version: format!("{color}-v"),
            build_date: "2026-11-29T10:00:00Z".into(),
            vcs_ref: "abc1234".into(),
        };
        let plan = render::render(&config(), &stack, color, &build).expect("render");
        state::write_atomic(
            &stack.rendered_compose_path(color),
            render::rendered_text(&plan.color_model).as_bytes(),
            0o600,
        )
        .expect("rendered file");
        for service in &plan.meta.services {
            let up = color == Color::Blue || service.name != "bot";
            let state = if up {
                RunState::Running
            } else {
                RunState::Created
            };
            let mut info = container(&service.container, &plan.meta.project, color, state);
            info.service = service.name.clone();
            info.labels
                .insert("deployment.service".into(), service.name.clone());
            if service.name == "bot" {
                info.labels.insert("ztd.switch".into(), "handover".into());
                info.restart_policy = if up { "unless-stopped" } else { "no" }.into();
            }
            containers.push(info);
        }
        record.deployments.insert(
            color,
            DeploymentRecord {
                version: Some(build.version.clone()),
                ..DeploymentRecord::default()
            },
        );
        listeners = plan.meta.listeners.clone();
    }
    state::write_state(&stack, &record).expect("state");
    state::write_current_deployment(&stack, Color::Blue).expect("current");
    let conf = serving_blue(&stack, &listeners, &mut containers);
    let engine = FakeEngine::with(containers);
    engine.with_proxy(&stack.proxy_container(), conf);
    engine.watch_singleton(&bot(Color::Blue), &bot(Color::Green));
    Fixture { stack, engine }
}

/// The proxy's config, serving blue, and its running container; returns the config's path.
fn serving_blue(
    stack: &Stack,
    listeners: &[render::Listener],
    containers: &mut Vec<crate::engine::ContainerInfo>,
) -> PathBuf {
    let conf = proxy::conf_dir(stack).join("nginx.conf");
    std::fs::create_dir_all(proxy::conf_dir(stack)).expect("conf dir");
    let text = proxy::nginx_conf(
        stack,
        &proxy::routes_to(listeners, Some(Color::Blue)),
        Some(Color::Blue),
        1,
    );
    std::fs::write(&conf, text).expect("conf");
    let mut proxy_container = container(
        &stack.proxy_container(),
        "shop-ztd",
        Color::Blue,
        RunState::Running,
    );
    proxy_container.labels.remove("deployment.color");
    proxy_container.color = None;
    containers.push(proxy_container);
    conf
}

/// The singleton's container in `color` (rendered as `<service>-<color>`).
fn bot(color: Color) -> String {
    format!("bot-{color}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Switch,
    Resume,
    Rollback,
}

/// What an operation ended with: its exit status and its report, for messages.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    report: String,
}

impl Ended {
    fn of<O: Outcome + std::fmt::Debug>(outcome: O) -> Ended {
        Ended {
            status: outcome.status(),
            report: format!("{outcome:?}"),
        }
    }
}

/// Run an operation; `None` when an injected kill ended it (its future is dropped, as a killed
/// process's work stops, and its lock is released as the kernel releases a dead holder's).
async fn run(f: &Fixture, op: Op) -> Option<Result<Ended>> {
    let work = async {
        match op {
            Op::Switch => switch::switch(&f.engine, &f.stack, &switch_options())
                .await
                .map(Ended::of),
            Op::Resume => recover::resume(&f.engine, &f.stack, &switch_options())
                .await
                .map(Ended::of),
            Op::Rollback => recover::rollback(
                &f.engine,
                &Compose::failing(),
                &f.stack,
                &rollback_options(),
            )
            .await
            .map(Ended::of),
        }
    };
    tokio::select! {
        result = work => Some(result),
        () = f.engine.killed() => None,
    }
}

/// Exactly one active color: the records, the detection, the proxy (its config on disk and what
/// its workers serve) and the singleton agree; no journal is left; the singleton never ran in
/// both colors. Returns the active color.
async fn assert_one_active(f: &Fixture, case: &str) -> Color {
    let detection = detect::detect(&f.engine, &f.stack)
        .await
        .unwrap_or_else(|e| panic!("{case}: detect: {e}"));
    let active = detection
        .active
        .unwrap_or_else(|| panic!("{case}: no active color"));
    assert_eq!(detection.conflict, None, "{case}");
    assert!(detection.journal.is_none(), "{case}: a journal is left");
    assert_eq!(
        state::read_current_deployment(&f.stack).expect("current"),
        Some(active),
        "{case}"
    );
    assert_eq!(
        state::read_state(&f.stack)
            .expect("state")
            .and_then(|s| s.active),
        Some(active),
        "{case}"
    );
    let served = f.engine.proxy_serves().map(|(color, _)| color);
    assert_eq!(
        served.as_deref(),
        Some(active.as_str()),
        "{case}: the proxy serves another color"
    );
    let conf =
        std::fs::read_to_string(proxy::conf_dir(&f.stack).join("nginx.conf")).expect("nginx.conf");
    assert!(
        conf.contains(&format!("active color: {active};")),
        "{case}: nginx.conf points elsewhere"
    );
    let up = |color: Color| {
        detection
            .color(color)
            .containers
            .iter()
            .any(|c| c.service == "bot" && c.state.is_up())
    };
    assert!(up(active), "{case}: the singleton does not run in {active}");
    assert!(
        !up(active.other()),
        "{case}: the singleton runs in {}",
        active.other()
    );
    assert!(
        !f.engine.singleton_overlapped(),
        "{case}: the singleton ran in both colors"
    );
    active
}

/// How many engine calls a clean run of `op` makes on a fixture prepared by `prepare`.
async fn calls_of(prepare: &impl Fn() -> Fixture, op: Op) -> usize {
    let f = prepare();
    f.engine.heal();
    run(&f, op).await.expect("not killed").expect("clean run");
    f.engine.calls()
}

/// Every call of `op` × every fault, then recovery by `--resume` and by `ztd-rollback`.
/// `failed_color`, when set, is a color whose change must never be finished once its undo has
/// begun. Returns the number of cases.
async fn table(
    name: &str,
    prepare: impl Fn() -> Fixture,
    op: Op,
    undo_target: Option<Color>,
) -> usize {
    let calls = calls_of(&prepare, op).await;
    assert!(calls > 5, "{name}: only {calls} engine calls");
    let mut cases = Vec::new();
    for n in 1..=calls {
        for fault in Fault::ALL {
            for recovery in [Op::Resume, Op::Rollback] {
                let only = std::env::var("ZTD_FAULT_TABLE_ONLY").ok();
                if only.is_none_or(|o| o == format!("{name}:{n}:{fault:?}:{recovery:?}")) {
                    cases.push((n, fault, recovery));
                }
            }
        }
    }
    let count = cases.len();
    for (n, fault, recovery) in cases {
        one_case(name, &prepare, op, undo_target, calls, n, fault, recovery).await;
    }
    count
}

/// One row of the table: `op` meets `fault` at call `n`, then `recovery` runs undisturbed.
#[allow(clippy::too_many_arguments)]
async fn one_case(
    name: &str,
    prepare: &impl Fn() -> Fixture,
    op: Op,
    undo_target: Option<Color>,
    calls: usize,
    n: usize,
    fault: Fault,
    recovery: Op,
) {
    let case = format!("{name}: call {n}/{calls} {fault:?}, then {recovery:?}");
    let f = prepare();
    f.engine.inject(n, fault);
    let outcome = run(&f, op).await;
    f.engine.heal();
    match &outcome {
        Some(Ok(outcome)) => assert!(
            matches!(outcome.status, ExitStatus::Success | ExitStatus::Negative),
            "{case}: {:?}",
            outcome.status
        ),
        Some(Err(err)) => {
            // It gave up with an answer: an engine that failed or did not answer, or a change
            // left part-way, which says so.
            assert!(
                matches!(
                    err.exit_status(),
                    ExitStatus::Incomplete
                        | ExitStatus::EngineUnreachable
                        | ExitStatus::EngineFailed
                ),
                "{case}: {err}"
            );
        }
        None => {}
    }
    let left = journal::read(&f.stack).expect("journal");
    let undoing = left.as_ref().is_some_and(|j| j.undoing);
    if left.is_some() {
        let detection = detect::detect(&f.engine, &f.stack).await.expect("detect");
        assert!(
            detection.interrupted,
            "{case}: journal left but not reported"
        );
    }
    let recovered = run(&f, recovery)
        .await
        .expect("not killed")
        .unwrap_or_else(|e| panic!("{case}: recovery failed: {e}"));
    assert!(
        matches!(recovered.status, ExitStatus::Success | ExitStatus::Negative),
        "{case}: recovery exit {:?}",
        recovered.status
    );
    let active = assert_one_active(&f, &case).await;
    if undoing && let Some(color) = undo_target {
        assert_eq!(active, color, "{case}: an undo was finished the wrong way");
    }
}

/// Blue active, green deployed.
fn deployed() -> Fixture {
    fixture("deployed")
}

/// Blue active, green deployed with a singleton that crashes when started.
fn deployed_bad() -> Fixture {
    let f = fixture("bad");
    f.engine.crash_on_start(&bot(Color::Green));
    f
}

/// Green switched to and active, blue kept for a rollback.
fn switched() -> Fixture {
    let f = fixture("switched");
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runtime.block_on(switch::switch(&f.engine, &f.stack, &switch_options()))
    })
    .expect("switch");
    assert_eq!(outcome.status(), ExitStatus::Success);
    f
}

/// A switch to a green whose singleton crashes, killed in its handover (the proxy already
/// serves green, the old singleton is being stopped). The proxy flip and the handover run at
/// once, so the first engine call after which the journal shows both is searched for.
fn interrupted() -> Fixture {
    let runtime = tokio::runtime::Handle::current();
    for call in 10..80 {
        let f = deployed_bad();
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                f.engine.inject(call, Fault::KillAfter);
                assert!(run(&f, Op::Switch).await.is_none(), "killed");
                f.engine.heal();
            });
        });
        let journal = journal::read(&f.stack).expect("journal").expect("left");
        let state = |wanted: &dyn Fn(&journal::JournalStepName) -> bool| {
            journal
                .steps
                .iter()
                .find(|s| wanted(&s.name))
                .map(|s| s.state)
        };
        let proxy = state(&|n| *n == journal::JournalStepName::Proxy);
        let handover = state(&|n| matches!(n, journal::JournalStepName::Handover(_)));
        if proxy == Some(journal::StepState::Done) && handover == Some(journal::StepState::Started)
        {
            return f;
        }
    }
    panic!("no engine call is in the handover after the proxy moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_runs_end_with_one_active_color() {
    let f = deployed();
    let out = run(&f, Op::Switch).await.expect("run").expect("switch");
    assert_eq!(out.status, ExitStatus::Success);
    assert_eq!(assert_one_active(&f, "switch").await, Color::Green);

    let f = deployed_bad();
    let out = run(&f, Op::Switch).await.expect("run").expect("switch");
    assert_eq!(out.status, ExitStatus::Negative, "{}", out.report);
    assert_eq!(assert_one_active(&f, "undone").await, Color::Blue);

    let f = switched();
    let out = run(&f, Op::Rollback).await.expect("run").expect("rollback");
    assert_eq!(out.status, ExitStatus::Success, "{}", out.report);
    assert_eq!(assert_one_active(&f, "rollback").await, Color::Blue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_step_recovers_to_one_active_color() {
    let started = Instant::now();
    let mut cases = 0;
    cases += table("switch", deployed, Op::Switch, None).await;
    cases += table("undo", deployed_bad, Op::Switch, Some(Color::Blue)).await;
    cases += table("rollback", switched, Op::Rollback, Some(Color::Green)).await;
    cases += table("resume", interrupted, Op::Resume, Some(Color::Blue)).await;
    eprintln!(
        "fault table: {cases} cases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
