//! Singletons declared outside the services, against the real Docker engine: a top-level
//! `x-ztd` block makes an unlabelled service that publishes a port a handover singleton. It keeps
//! its own port (never proxied), is handed over without ever running in both colors (Docker's
//! event stream), the switch report says the port was closed during the gap, and `ztd-up` names
//! the service that runs in both colors until the switch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ztd_core::report::Report;
use ztd_core::switch::SwitchOutcome;
use ztd_testkit::{
    EventLog, TestStack, ever_overlapped, free_port, http_get, require_engine, testapp_image,
};

fn compose(stack: &TestStack, port: u16) -> String {
    let id = &stack.id;
    let image = testapp_image();
    format!(
        r#"services:
  bot{id}:
    image: {image}
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      VERSION: ${{APP_VERSION:-v1}}
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 300ms
      timeout: 2s
      retries: 2
  side{id}:
    image: {image}
x-ztd:
  services:
    bot{id}:
      switch: handover
      drain: /ztd-testapp drain
"#
    )
}

#[test]
fn an_x_ztd_singleton_keeps_its_port_and_is_handed_over_never_twice() {
    require_engine!();
    let stack = TestStack::new("x-ztd");
    let port = free_port();
    stack.write_compose(&compose(&stack, port));
    let id = &stack.id;

    let dry = stack.run("ztd-up", &["--dry-run"]);
    dry.expect_code(0);
    assert_eq!(
        dry.json["run_in_both_colors"],
        serde_json::json!([format!("side{id}")]),
        "{}",
        dry.stdout
    );
    assert_eq!(
        dry.json["plan"]["listeners"],
        serde_json::json!([]),
        "a handover service is never proxied"
    );

    stack.deploy("v1", &[]).expect_code(0);
    // The bot's own port, no proxy in between: the app answers with its version and color.
    let (_, _, body) = http_get(port, "/").unwrap();
    assert!(body.starts_with("hello from v1 (green)"), "{body}");

    let events = EventLog::start(&format!("deployment.service=bot{id}"));
    let second = stack.deploy("v2", &[]);
    let events = events.stop();
    second.expect_code(0);
    let report: Report<SwitchOutcome> = second.decode();
    let SwitchOutcome::Switched(moved) = &report.body else {
        panic!("not switched: {}", second.stdout)
    };
    let handover = &moved.handovers[0];
    assert_eq!(handover.service, format!("bot{id}"), "{}", second.stdout);
    assert_eq!(
        handover.port_gap.as_ref().map(|g| g.ports.clone()),
        Some(vec![port]),
        "{}",
        second.stdout
    );
    assert!(!ever_overlapped(
        &events,
        &stack.container("bot", "green"),
        &stack.container("bot", "blue"),
    ));
    assert!(
        events
            .iter()
            .any(|e| e.name == stack.container("bot", "blue")),
        "the event log saw the handover: {events:?}"
    );
    let (_, _, body) = http_get(port, "/").unwrap();
    assert!(body.starts_with("hello from v2 (blue)"), "{body}");
}

#[test]
fn a_bad_x_ztd_block_or_ztd_handover_is_one_line_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("x-ztd-bad");
    let port = free_port();
    stack.write_compose(&compose(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);

    let good = compose(&stack, port);
    stack.write_compose(&good.replace("switch: handover", "switch: sideways"));
    let before = stack.snapshot();
    stack
        .run("ztd-up", &[])
        .expect_code(5)
        .expect_one_line_error("ztd.switch=\"sideways\" is invalid");
    assert_eq!(
        stack.snapshot(),
        before,
        "a bad x-ztd block changes nothing"
    );

    stack.write_compose(&good);
    let before = stack.snapshot();
    stack
        .run_with("ztd-up", &[], &[("ZTD_HANDOVER", ",,")], None)
        .expect_code(2)
        .expect_one_line_error("ZTD_HANDOVER");
    assert_eq!(
        stack.snapshot(),
        before,
        "a bad ZTD_HANDOVER changes nothing"
    );
}
