//! The `ztd.hook.*` commands against the real engine: a pre-switch hook that fails refuses the
//! switch with the old version still serving, one that succeeds runs in the new color before
//! the proxy moves, and a post-switch hook that fails only warns (after a switch and after a
//! rollback).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ztd_core::hooks::{HookKind, HookReport};
use ztd_core::report::Report;
use ztd_core::switch::SwitchOutcome;
use ztd_testkit::{
    LoadLoop, TestStack, ToolOutput, example_stack, free_port, http_get, require_engine,
};

/// The example stack with `settings` (lines such as `hook.pre-switch: exit 1`) for its web
/// service in the compose file's `x-ztd` block.
fn with_web_settings(stack: &TestStack, port: u16, settings: &[&str]) -> String {
    let mut yaml = example_stack(stack, port);
    yaml.push_str(&format!(
        "x-ztd:\n  services:\n    {}:\n",
        stack.service("web")
    ));
    for line in settings {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml
}

fn read(stack: &TestStack, file: &str) -> String {
    std::fs::read_to_string(stack.dir.join(file)).unwrap_or_default()
}

/// ztd-switch's report, decoded.
fn switch_report(out: &ToolOutput) -> Report<SwitchOutcome> {
    let report: Report<SwitchOutcome> = out.decode();
    assert_eq!(report.envelope.tool, "ztd-switch", "{}", out.stdout);
    report
}

/// The hooks a switch that switched lists.
fn switched_hooks(out: &ToolOutput) -> Vec<HookReport> {
    match switch_report(out).body {
        SwitchOutcome::Switched(moved) => moved.hooks,
        other => panic!("not switched: {other:?}\nstderr: {}", out.stderr),
    }
}

/// Where `needle` first appears in stderr, as a line number.
fn line_of(out: &ToolOutput, needle: &str) -> usize {
    out.stderr
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} on stderr:\n{}", out.stderr))
}

#[test]
fn a_failing_pre_switch_hook_refuses_the_switch_and_the_old_version_serves() {
    require_engine!();
    let stack = TestStack::new("h-refuse");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    stack.write_compose(&with_web_settings(
        &stack,
        port,
        &["hook.pre-switch: exit 1", "hook.timeout: 30s"],
    ));
    let load = LoadLoop::start(port, "/");
    let out = stack.deploy("v2", &[]);
    out.expect_code(1);
    let report = switch_report(&out);
    assert!(!report.envelope.ok);
    let SwitchOutcome::Refused(refusal) = &report.body else {
        panic!("not refused: {}", out.stdout)
    };
    let web = stack.service("web");
    assert_eq!(
        refusal.refused,
        format!("blue is not switched to: the pre-switch hook of {web} exited 1")
    );
    assert_eq!(refusal.hooks.len(), 1, "{}", out.stdout);
    assert_eq!(refusal.hooks[0].service, web);
    assert_eq!(refusal.hooks[0].hook, HookKind::PreSwitch);
    assert_eq!(refusal.hooks[0].exit_code, Some(1));
    assert!(out.stderr.contains("switch refused:"), "{}", out.stderr);

    // Nothing changed: green serves v1, the candidate is left for inspection.
    assert_eq!(read(&stack, ".current_deployment"), "green\n");
    assert!(!stack.dir.join(".ztd/journal.json").exists());
    let (_, color, body) = http_get(port, "/").unwrap();
    assert_eq!(color.as_deref(), Some("green"));
    assert!(body.starts_with("hello from v1"), "{body}");
    let candidate = stack.container_of("blue", &web);
    assert!(!candidate.is_empty(), "the candidate was removed");
    assert!(
        stack.container_id(&candidate).is_some(),
        "{candidate} stopped"
    );
    let loaded = load.stop();
    assert_eq!(loaded.failed, 0, "{:?}", loaded.errors);
}

#[test]
fn a_pre_switch_hook_runs_in_the_new_color_before_the_proxy_moves() {
    require_engine!();
    let stack = TestStack::new("h-pre");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    stack.write_compose(&with_web_settings(
        &stack,
        port,
        &["hook.pre-switch: env DEPLOYMENT_COLOR VERSION"],
    ));
    let out = stack.deploy("v2", &[]);
    out.expect_code(0);
    let hooks = switched_hooks(&out);
    let web = stack.service("web");
    assert_eq!(hooks.len(), 1, "{}", out.stdout);
    assert_eq!(
        (hooks[0].service.as_str(), hooks[0].hook, hooks[0].exit_code),
        (web.as_str(), HookKind::PreSwitch, Some(0))
    );
    assert!(hooks[0].duration_ms > 0.0);
    // The hook saw the new color's environment, and its output came before the proxy moved.
    let color = line_of(&out, &format!("{web} pre-switch| DEPLOYMENT_COLOR=blue"));
    let version = line_of(&out, &format!("{web} pre-switch| VERSION=v2"));
    let proxy = line_of(&out, "proxy now serves blue");
    assert!(color < proxy && version < proxy, "{}", out.stderr);
    // Its output is on stderr only, never in the history.
    assert!(!read(&stack, ".ztd/history.jsonl").contains("DEPLOYMENT_COLOR="));
    assert_eq!(read(&stack, ".current_deployment"), "blue\n");
    let (_, color, body) = http_get(port, "/").unwrap();
    assert_eq!(color.as_deref(), Some("blue"));
    assert!(body.starts_with("hello from v2"), "{body}");
}

#[test]
fn a_failing_post_switch_hook_warns_after_a_switch_and_after_a_rollback() {
    require_engine!();
    let stack = TestStack::new("h-post");
    let port = free_port();
    stack.write_compose(&with_web_settings(
        &stack,
        port,
        &["hook.post-switch: exit 3"],
    ));
    let web = stack.service("web");
    let out = stack.deploy("v1", &[]);
    out.expect_code(0);
    let hooks = switched_hooks(&out);
    assert_eq!(hooks.len(), 1, "{}", out.stdout);
    assert_eq!(
        (hooks[0].service.as_str(), hooks[0].hook, hooks[0].exit_code),
        (web.as_str(), HookKind::PostSwitch, Some(3))
    );
    let warned = line_of(&out, &format!("the post-switch hook of {web} exited 3"));
    assert!(line_of(&out, "green is active") < warned, "{}", out.stderr);
    assert_eq!(read(&stack, ".current_deployment"), "green\n");

    stack.deploy("v2", &[]).expect_code(0);
    let rolled = stack.run("ztd-rollback", &[]);
    rolled.expect_code(0);
    assert_eq!(read(&stack, ".current_deployment"), "green\n");
    assert_eq!(
        rolled.json["hooks"][0]["service"],
        web.as_str(),
        "{}",
        rolled.stdout
    );
    assert_eq!(rolled.json["hooks"][0]["hook"], "post-switch");
    assert_eq!(rolled.json["hooks"][0]["exit_code"], 3);
    assert!(
        rolled
            .stderr
            .contains(&format!("the post-switch hook of {web} exited 3")),
        "{}",
        rolled.stderr
    );
}
