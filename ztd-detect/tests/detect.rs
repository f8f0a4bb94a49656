//! ztd-detect against the real Docker engine: what it reports, and the conflicts it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ztd_testkit::{Service, TestStack, require_engine};

#[test]
fn nothing_deployed_is_a_normal_answer_targeting_green() {
    require_engine!();
    let stack = TestStack::new("det-empty");
    let before = stack.snapshot();
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(0);
    let j = &out.json;
    assert_eq!(j["tool"], "ztd-detect");
    assert_eq!(j["project"], stack.name.as_str());
    assert_eq!(j["ok"], true);
    assert_eq!(j["active"], serde_json::Value::Null);
    assert_eq!(j["target"], "green");
    assert_eq!(j["colors"]["blue"]["status"], "absent");
    assert_eq!(j["conflict"], serde_json::Value::Null);
    assert_eq!(stack.snapshot(), before, "detect writes nothing");
}

#[test]
fn the_active_color_and_its_containers_are_reported() {
    require_engine!();
    let stack = TestStack::new("det-active");
    stack.up(
        "blue",
        &[
            Service::new("web").healthcheck("300ms"),
            Service::new("worker"),
        ],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(0);
    let j = &out.json;
    assert_eq!(j["active"], "blue");
    assert_eq!(j["standby"], "green");
    assert_eq!(j["target"], "green");
    assert_eq!(j["recorded"]["current_deployment"], "blue");
    assert_eq!(j["colors"]["blue"]["status"], "running");
    assert_eq!(
        j["colors"]["blue"]["project"],
        stack.project("blue").as_str()
    );
    let containers = j["colors"]["blue"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let web = containers
        .iter()
        .find(|c| c["service"] == stack.service("web").as_str())
        .expect("web listed");
    assert_eq!(web["name"], stack.container("web", "blue").as_str());
    assert_eq!(web["state"], "running");
    assert!(["starting", "healthy"].contains(&web["health"].as_str().unwrap()));
    assert_eq!(web["restart_count"], 0);
    assert_eq!(web["image"], ztd_testkit::testapp_image().as_str());
    assert!(web["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(web["version"], "blue-test");
    assert!(web["started_at"].as_str().unwrap().ends_with('Z'));
    let worker = containers
        .iter()
        .find(|c| c["service"] == stack.service("worker").as_str())
        .unwrap();
    assert_eq!(worker["health"], "none");
}

#[test]
fn a_running_color_without_state_files_is_adopted() {
    require_engine!();
    let stack = TestStack::new("det-adopt");
    stack.up("green", &[Service::new("web")]);
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(0);
    assert_eq!(out.json["active"], "green");
    assert_eq!(out.json["target"], "blue");
}

#[test]
fn both_colors_running_is_a_conflict_exit_5() {
    require_engine!();
    let stack = TestStack::new("det-both");
    stack.up("blue", &[Service::new("web")]);
    stack.up("green", &[Service::new("web")]);
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let before = stack.snapshot();
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(5);
    assert_eq!(out.json["ok"], false);
    let conflict = out.json["conflict"].as_str().expect("conflict named");
    assert!(conflict.contains("both colors run"), "{conflict}");
    assert!(out.stderr.contains("conflict"), "{}", out.stderr);
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn both_colors_running_without_records_is_a_conflict() {
    require_engine!();
    let stack = TestStack::new("det-both-norec");
    stack.up("blue", &[Service::new("web")]);
    stack.up("green", &[Service::new("web")]);
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(5);
    assert!(
        out.json["conflict"]
            .as_str()
            .unwrap()
            .contains("no state file")
    );
}

#[test]
fn current_deployment_naming_a_color_with_no_containers_is_a_conflict() {
    require_engine!();
    let stack = TestStack::new("det-ghost");
    stack.up("blue", &[Service::new("web")]);
    std::fs::write(stack.dir.join(".current_deployment"), "green\n").unwrap();
    let before = stack.snapshot();
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(5);
    assert_eq!(out.json["active"], "green");
    assert!(
        out.json["conflict"]
            .as_str()
            .unwrap()
            .contains("no containers")
    );
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn garbage_in_current_deployment_is_a_clear_error_exit_5() {
    require_engine!();
    let stack = TestStack::new("det-garbage");
    stack.up("blue", &[Service::new("web")]);
    std::fs::write(stack.dir.join(".current_deployment"), "purple; rm -rf /\n").unwrap();
    let before = stack.snapshot();
    let out = stack.run("ztd-detect", &[]);
    out.expect_code(5);
    out.expect_one_line_error(".current_deployment holds \"purple; rm -rf /\"");
    assert_eq!(out.json["ok"], false);
    assert_eq!(out.json["error"]["kind"], "state");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn a_corrupt_state_file_is_exit_5() {
    require_engine!();
    let stack = TestStack::new("det-badstate");
    std::fs::create_dir_all(stack.dir.join(".ztd")).unwrap();
    std::fs::write(stack.dir.join(".ztd/state.json"), "{\"active\": 7").unwrap();
    let before = stack.snapshot();
    stack
        .run("ztd-detect", &[])
        .expect_code(5)
        .expect_one_line_error("state.json");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn an_unreachable_engine_is_exit_3_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("det-nohost");
    let before = stack.snapshot();
    let out = stack.run_with(
        "ztd-detect",
        &[],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        None,
    );
    out.expect_code(3)
        .expect_one_line_error("cannot reach the Docker engine at unix:///nonexistent/docker.sock");
    assert_eq!(out.json["error"]["exit_code"], 3);
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn bad_flags_and_project_names_are_exit_2() {
    require_engine!();
    let stack = TestStack::new("det-usage");
    let before = stack.snapshot();
    stack
        .run("ztd-detect", &["--no-such-flag"])
        .expect_code(2)
        .expect_one_line_error("--no-such-flag");
    stack
        .run("ztd-detect", &["--project-name", "Bad Name"])
        .expect_code(2)
        .expect_one_line_error("bad project name");
    stack
        .run("ztd-detect", &["--project-dir", "/nonexistent/dir"])
        .expect_code(2)
        .expect_one_line_error("does not exist");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn help_teaches_the_exit_codes() {
    require_engine!();
    let stack = TestStack::new("det-help");
    let out = stack.run("ztd-detect", &["--help"]);
    out.expect_code(0);
    assert!(out.stdout.contains("Exit codes"));
    assert!(out.stdout.contains("--project-dir"));
}
