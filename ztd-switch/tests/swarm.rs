//! `--orchestrator swarm` against a real 3-node Swarm (three engines in network namespaces on
//! this machine): deploys and a rollback under a load loop on every node, a handover refused
//! while the old singleton's node is cut off (and forced), two deploys through two managers,
//! kills mid-switch, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ztd_testkit::swarm::{NODES, SwarmBed, addr, docker, host};
use ztd_testkit::{EventLog, LoadLoop, http_get_at, require_engine, sh, testapp_image};

const PORT: u16 = 8080;
const PIPELINE: &str = "ztd-detect | ztd-up | ztd-health --wait | ztd-switch";

/// A web service on a published port (two replicas), a side service and a handover singleton.
fn stack_yaml() -> String {
    let image = testapp_image();
    format!(
        "services:
  web:
    image: {image}
    ports: [\"{PORT}:8080\"]
    environment:
      VERSION: ${{APP_VERSION:-v1}}
    deploy:
      replicas: 2
  side:
    image: {image}
    environment:
      VERSION: ${{APP_VERSION:-v1}}
  bot:
    image: {image}
    environment:
      VERSION: ${{APP_VERSION:-v1}}
      HEALTH_FAIL: ${{BOT_HEALTH_FAIL:-0}}
    labels:
      ztd.switch: handover
    healthcheck:
      test: [\"CMD\", \"/ztd-testapp\", \"probe\"]
      interval: 1s
      timeout: 2s
      retries: 3
"
    )
}

fn deploy(bed: &SwarmBed, via: u8, version: &str) -> ztd_testkit::ToolOutput {
    bed.run(via, PIPELINE, &[("APP_VERSION", version)])
}

/// What node `n` answers on the published port right now.
fn serves(n: u8) -> String {
    http_get_at(&addr(n), PORT, "/")
        .map(|(status, _, body)| format!("{status} {}", body.trim()))
        .unwrap_or_else(|e| e)
}

/// Assert every node in `nodes` serves `version` of `color`, asked the instant a tool returned.
fn all_serve(nodes: &[u8], version: &str, color: &str) {
    for n in nodes {
        let seen = serves(*n);
        assert!(
            seen.starts_with("200") && seen.contains(version) && seen.contains(color),
            "node so-n{n} serves {seen:?}, not {version} ({color})"
        );
    }
}

/// The bot tasks' containers that run now, across the nodes that answer.
fn running_bots(bed: &SwarmBed) -> Vec<String> {
    let prefixes = [
        format!("{}-blue_bot.", bed.stack()),
        format!("{}-green_bot.", bed.stack()),
    ];
    let mut out = Vec::new();
    for n in NODES {
        if let Ok(names) = docker(
            n,
            &[
                "ps",
                "--filter",
                "label=com.docker.swarm.service.name",
                "--format",
                "{{.Names}}",
            ],
        ) {
            out.extend(
                names
                    .lines()
                    .filter(|l| prefixes.iter().any(|p| l.starts_with(p.as_str())))
                    .map(|l| format!("so-n{n}:{l}")),
            );
        }
    }
    out
}

#[test]
fn three_deploys_and_a_rollback_lose_no_request_on_any_node() {
    require_engine!();
    let Some(bed) = SwarmBed::start(
        "three_deploys_and_a_rollback_lose_no_request_on_any_node",
        "deploys",
    ) else {
        return;
    };
    bed.write_compose(&stack_yaml());
    deploy(&bed, 1, "v1").expect_code(0);
    all_serve(&NODES, "v1", "green");
    // Every bot container start and stop, on every node, while the network is whole.
    let events: Vec<EventLog> = NODES
        .iter()
        .map(|n| EventLog::start_on(Some(&host(*n)), "com.docker.swarm.service.name"))
        .collect();
    let loads: Vec<LoadLoop> = NODES
        .iter()
        .map(|n| LoadLoop::start_at(&addr(*n), PORT, "/"))
        .collect();
    let mut color = "green";
    for version in ["v2", "v3", "v4"] {
        let switched = deploy(&bed, (version.as_bytes()[1] - b'0') % 3 + 1, version);
        switched.expect_code(0);
        color = if color == "green" { "blue" } else { "green" };
        all_serve(&NODES, version, color);
        assert_eq!(switched.json["outcome"], "switched", "{}", switched.stdout);
        assert_eq!(switched.json["proxy"].as_array().map(Vec::len), Some(3));
        let handover = &switched.json["handovers"][0];
        assert_eq!(handover["service"], "bot");
        assert_eq!(handover["unconfirmed"], Value::Array(vec![]));
    }
    let rolled = bed.run(2, "ztd-rollback", &[]);
    rolled.expect_code(0);
    all_serve(&NODES, "v3", "green");
    // Health from the cluster's view: the tasks, and each node's proxy on the active color.
    let health = bed.run(3, "ztd-health", &[]);
    health.expect_code(0);
    let proxies = health.json["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 3, "{}", health.stdout);
    assert!(
        proxies
            .iter()
            .all(|p| p["color"] == "green" && p["status"] == 200),
        "{}",
        health.stdout
    );
    let reports: Vec<_> = loads.into_iter().map(LoadLoop::stop).collect();
    for (n, report) in NODES.iter().zip(&reports) {
        assert!(
            report.total > 100,
            "so-n{n}: only {} requests",
            report.total
        );
        assert_eq!(report.failed, 0, "so-n{n}: {:?}", report.errors);
    }
    let seen: Vec<_> = events.into_iter().flat_map(EventLog::stop).collect();
    let bots: std::collections::BTreeSet<&str> = seen
        .iter()
        .filter(|e| e.name.contains("_bot."))
        .map(|e| e.name.as_str())
        .collect();
    assert!(bots.len() >= 4, "every switch hands the bot over: {bots:?}");
    for a in &bots {
        for b in &bots {
            assert!(
                a >= b || !ztd_testkit::ever_overlapped(&seen, a, b),
                "{a} and {b} ran at the same time"
            );
        }
    }
    // ztd-detect reports the orchestrator, the nodes and each color's tasks.
    let detected = bed.detect(3);
    assert_eq!(detected["orchestrator"], "swarm");
    assert_eq!(detected["active"], "green");
    assert_eq!(detected["nodes"].as_array().map(Vec::len), Some(3));
    let green = &detected["colors"]["green"]["services"];
    let web = green
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap();
    assert_eq!(web["running"], 2, "{web}");
    assert_eq!(web["tasks"].as_array().map(Vec::len), Some(2), "{web}");
    assert_eq!(running_bots(&bed).len(), 1, "one bot runs");
    // The handovers changed the singletons' replicas and placement, and nothing else of them.
    for color in ["blue", "green"] {
        let healthcheck = docker(
            1,
            &[
                "service",
                "inspect",
                &format!("{}-{color}_bot", bed.stack()),
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}",
            ],
        )
        .unwrap();
        assert_eq!(
            healthcheck.trim(),
            r#"["CMD","/ztd-testapp","probe"]"#,
            "{color}"
        );
    }
}

#[test]
fn a_cut_off_singleton_node_refuses_the_handover_unless_forced() {
    require_engine!();
    let Some(bed) = SwarmBed::start(
        "a_cut_off_singleton_node_refuses_the_handover_unless_forced",
        "fence",
    ) else {
        return;
    };
    bed.write_compose(&stack_yaml());
    deploy(&bed, 1, "v1").expect_code(0);
    deploy(&bed, 1, "v2").expect_code(0);
    let detected = bed.detect(1);
    let bot = detected["colors"]["blue"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bot")
        .unwrap()
        .clone();
    let node: u8 = bot["tasks"][0]["node"]
        .as_str()
        .unwrap()
        .trim_start_matches("so-n")
        .parse()
        .unwrap();
    let via = if node == 1 { 2 } else { 1 };
    let others: Vec<u8> = NODES.iter().copied().filter(|n| *n != node).collect();
    bed.cut(node, true);
    assert!(
        bed.wait_node(via, node, "down", Duration::from_secs(60)),
        "so-n{node} never went down"
    );
    let refused = deploy(&bed, via, "v3");
    refused.expect_code(1);
    assert_eq!(refused.json["outcome"], "refused", "{}", refused.stdout);
    assert!(
        refused.json["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("so-n{node}")),
        "{}",
        refused.stdout
    );
    all_serve(&others, "v2", "blue");
    let after = bed.detect(via);
    assert_eq!(after["journal"], Value::Null);
    assert_eq!(after["lock"], Value::Null);
    let forced = bed.run(via, "ztd-switch --force green", &[]);
    forced.expect_code(0);
    assert_eq!(forced.json["forced"], true, "{}", forced.stdout);
    assert_eq!(
        forced.json["handovers"][0]["unconfirmed"],
        serde_json::json!([format!("so-n{node}")])
    );
    assert_eq!(
        forced.json["unreachable_nodes"],
        serde_json::json!([format!("so-n{node}")])
    );
    all_serve(&others, "v3", "green");
    let health = bed.run(via, "ztd-health", &[]);
    health.expect_code(0);
    assert_eq!(
        health.json["proxies"].as_array().map(Vec::len),
        Some(2),
        "{}",
        health.stdout
    );
    bed.cut(node, false);
    assert!(
        bed.wait_whole(Duration::from_secs(120)),
        "the swarm did not heal"
    );
    // Once its node is back, the old copy is stopped there: one bot again.
    assert!(
        ztd_testkit::eventually(Duration::from_secs(60), || running_bots(&bed).len() == 1),
        "bots: {:?}",
        running_bots(&bed)
    );
    // Its proxy still serves what it served when it was cut off: health says so, and the next
    // deploy brings it up to date before anything else.
    let stale = bed.run(via, "ztd-health", &[]);
    stale.expect_code(1);
    assert!(
        stale.json["problems"]
            .to_string()
            .contains(&format!("so-n{node}")),
        "{}",
        stale.stdout
    );
    let up = bed.run(via, "ztd-detect | ztd-up", &[("APP_VERSION", "v4")]);
    // Shown if what follows fails: what ztd-up said about the stale proxy.
    eprintln!("ztd-up after the heal said: {}", up.stderr);
    up.expect_code(0);
    all_serve(&NODES, "v3", "green");
    bed.run(via, "ztd-health", &[]).expect_code(0);
}

#[test]
fn two_deploys_through_two_managers_one_runs_and_the_other_names_the_holder() {
    require_engine!();
    let Some(bed) = SwarmBed::start(
        "two_deploys_through_two_managers_one_runs_and_the_other_names_the_holder",
        "lock",
    ) else {
        return;
    };
    bed.write_compose(&stack_yaml());
    // Only the nodes labelled ztd.edge=true publish the ports.
    for n in [1, 2] {
        docker(
            1,
            &[
                "node",
                "update",
                "--label-add",
                "ztd.edge=true",
                &format!("so-n{n}"),
            ],
        )
        .unwrap();
    }
    deploy(&bed, 1, "v1").expect_code(0);
    all_serve(&[1, 2], "v1", "green");
    assert!(
        http_get_at(&addr(3), PORT, "/").is_err(),
        "so-n3 is no edge node"
    );
    let health = bed.run(3, "ztd-health", &[]);
    health.expect_code(0);
    assert_eq!(
        health.json["proxies"].as_array().map(Vec::len),
        Some(2),
        "{}",
        health.stdout
    );
    // Both start at once; whoever takes the lock holds it for 3 s.
    let pause = [("ZTD_PAUSE", "swarm:locked=3s"), ("APP_VERSION", "v2")];
    let a = bed.spawn(1, "ztd-up blue </dev/null", &pause);
    let b = bed.spawn(2, "ztd-up blue </dev/null", &pause);
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut codes: Vec<i32> = outputs
        .iter()
        .map(|o| o.status.code().unwrap_or(-1))
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![0, 7], "{outputs:?}");
    let loser = outputs.iter().find(|o| o.status.code() == Some(7)).unwrap();
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains("holds the cluster lock") && stderr.contains("ztd-up (pid"),
        "{stderr}"
    );
    // A holder killed on this machine leaves a lock the next deploy takes over.
    let mut holder = bed.spawn(
        1,
        "exec ztd-up blue </dev/null",
        &[("ZTD_PAUSE", "swarm:locked=60s"), ("APP_VERSION", "v3")],
    );
    assert!(ztd_testkit::eventually(Duration::from_secs(20), || bed
        .detect(2)["lock"]["tool"]
        == "ztd-up"));
    holder.kill().unwrap();
    let _ = holder.wait();
    bed.run(2, "ztd-up blue", &[("APP_VERSION", "v3")])
        .expect_code(0);
    // A holder that died elsewhere is broken explicitly.
    let mut away = bed.spawn(
        1,
        "exec ztd-up blue </dev/null",
        &[("ZTD_PAUSE", "swarm:locked=60s")],
    );
    assert!(ztd_testkit::eventually(Duration::from_secs(20), || bed
        .detect(2)["lock"]["tool"]
        == "ztd-up"));
    away.kill().unwrap();
    let _ = away.wait();
    let broken = bed.run(3, "ztd-rollback --break-lock", &[]);
    broken.expect_code(0);
    assert_eq!(broken.json["was_held_by"]["tool"], "ztd-up");
    assert_eq!(bed.detect(3)["lock"], Value::Null);
}

#[test]
fn a_switch_killed_at_each_step_is_resumed_or_rolled_back_without_a_failed_request() {
    require_engine!();
    let Some(bed) = SwarmBed::start(
        "a_switch_killed_at_each_step_is_resumed_or_rolled_back_without_a_failed_request",
        "kill",
    ) else {
        return;
    };
    bed.write_compose(&stack_yaml());
    deploy(&bed, 1, "v1").expect_code(0);
    let loads: Vec<LoadLoop> = NODES
        .iter()
        .map(|n| LoadLoop::start_at(&addr(*n), PORT, "/"))
        .collect();
    let mut active = ("v1".to_string(), "green");
    let steps = [
        ("swarm:proxy", "resume"),
        ("swarm:handover_start", "rollback"),
        ("swarm:handover_start", "resume"),
        ("swarm:stop_old", "rollback"),
    ];
    for (i, (point, then)) in steps.iter().enumerate() {
        let version = format!("k{i}");
        let to = if active.1 == "green" { "blue" } else { "green" };
        bed.run(
            1,
            "ztd-detect | ztd-up | ztd-health --wait",
            &[("APP_VERSION", &version)],
        )
        .expect_code(0);
        let killed = bed.run(2, &format!("ztd-switch {to}"), &[("ZTD_FAULT", point)]);
        assert_eq!(killed.code, -1, "{point}: {}", killed.stderr);
        let detected = bed.run(3, "ztd-detect", &[]);
        detected.expect_code(6);
        assert_eq!(detected.json["interrupted"], true);
        // The journal, kept in the cluster, records every service's version and replicas.
        let before = detected.json["journal"]["before"].as_array().unwrap();
        assert!(before.len() >= 6, "{}", detected.stdout);
        assert!(
            before
                .iter()
                .all(|s| s["version"].as_u64().unwrap_or(0) > 0)
        );
        // The singleton never runs twice, whatever step the switch died at.
        assert!(
            running_bots(&bed).len() <= 1,
            "{point}: {:?}",
            running_bots(&bed)
        );
        let finished = if *then == "resume" {
            bed.run(3, "ztd-switch --resume", &[])
        } else {
            bed.run(3, "ztd-rollback", &[])
        };
        finished.expect_code(0);
        if *then == "resume" {
            active = (version.clone(), to);
        }
        all_serve(&NODES, &active.0, active.1);
        assert_eq!(bed.detect(1)["journal"], Value::Null, "{point}");
        assert_eq!(running_bots(&bed).len(), 1, "{point}");
    }
    // A switch whose new singleton never turns healthy is undone; killed while undoing, it
    // stays undone: ztd-rollback finishes the undo, never the failed switch.
    let to = if active.1 == "green" { "blue" } else { "green" };
    let failing = [("APP_VERSION", "bad"), ("BOT_HEALTH_FAIL", "1")];
    bed.run(1, "ztd-detect | ztd-up | ztd-health --wait", &failing)
        .expect_code(0);
    let killed = bed.run(
        2,
        &format!("ztd-switch --health-timeout 5s {to}"),
        &[("ZTD_FAULT", "swarm:undo")],
    );
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    let detected = bed.run(3, "ztd-detect", &[]);
    detected.expect_code(6);
    assert_eq!(
        detected.json["journal"]["phase"], "undoing",
        "{}",
        detected.stdout
    );
    bed.run(3, "ztd-rollback", &[]).expect_code(0);
    all_serve(&NODES, &active.0, active.1);
    assert_eq!(bed.detect(1)["active"], active.1);
    assert_eq!(running_bots(&bed).len(), 1);
    for (n, report) in NODES.iter().zip(loads.into_iter().map(LoadLoop::stop)) {
        assert_eq!(report.failed, 0, "so-n{n}: {:?}", report.errors);
    }
}

#[test]
fn bad_orchestrator_input_changes_nothing() {
    require_engine!();
    let dir = std::env::temp_dir().join(format!("ztd-swarm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), stack_yaml()).unwrap();
    let before = sh("docker", &["ps", "-aq"]);
    let run = |script: &str, env: &[(&str, &str)]| {
        let started = std::time::Instant::now();
        let mut command = std::process::Command::new("bash");
        command
            .args(["-c", script])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null());
        ztd_testkit::tool_env(&mut command, env);
        ztd_testkit::ToolOutput::from_output(&command.output().unwrap(), started)
    };
    run("ztd-up --orchestrator kubernetes", &[])
        .expect_code(2)
        .expect_one_line_error("kubernetes");
    run("ztd-detect", &[("ZTD_ORCHESTRATOR", "nomad")])
        .expect_code(2)
        .expect_one_line_error("nomad");
    run("ztd-up --orchestrator swarm --dry-run", &[])
        .expect_code(2)
        .expect_one_line_error("--dry-run");
    // This machine's own engine is not a Swarm manager.
    run("ztd-up --orchestrator swarm </dev/null", &[])
        .expect_code(5)
        .expect_one_line_error("not a manager of an active swarm");
    run("ztd-rollback --break-lock", &[])
        .expect_code(2)
        .expect_one_line_error("--break-lock");
    assert_eq!(sh("docker", &["ps", "-aq"]), before, "nothing was made");
    assert!(!dir.join(".ztd").exists(), "no state was written");
    let _ = std::fs::remove_dir_all(&dir);
}
