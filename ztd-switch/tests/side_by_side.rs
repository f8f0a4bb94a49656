//! Two stacks on one engine whose compose files use the same service names: each deploys, serves
//! through its own proxy and redeploys under load, the second one's containers named per project
//! because the first holds the compatible `<service>-<color>` names, and that choice is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ztd_core::report::Report;
use ztd_core::stack::Color;
use ztd_core::switch::{MoveReport, SwitchOutcome};
use ztd_testkit::{
    LoadLoop, TestStack, ToolOutput, free_port, http_get, require_engine, testapp_image,
};

/// The same service names in every stack: `web` on a host port, `bot` a singleton, `side` beside.
fn same_names(port: u16) -> String {
    let image = testapp_image();
    format!(
        r#"services:
  web:
    image: {image}
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      VERSION: ${{APP_VERSION:-v1}}
    labels:
      ztd.health.http: /health
  bot:
    image: {image}
    environment:
      VERSION: ${{APP_VERSION:-v1}}
    labels:
      ztd.switch: handover
      ztd.drain: /ztd-testapp drain
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 300ms
      timeout: 2s
      retries: 2
  side:
    image: {image}
    labels:
      ztd.health.tcp: "8080"
"#
    )
}

/// The move of a deploy whose ztd-switch switched.
fn switched(out: &ToolOutput) -> MoveReport {
    let report: Report<SwitchOutcome> = out.decode();
    assert_eq!(
        (report.envelope.tool.as_str(), report.envelope.ok),
        ("ztd-switch", true)
    );
    match report.body {
        SwitchOutcome::Switched(moved) => moved,
        other => panic!("not switched: {other:?}"),
    }
}

fn body_of(port: u16) -> (u16, Option<String>, String) {
    http_get(port, "/").unwrap()
}

#[test]
fn two_stacks_with_the_same_service_names_deploy_and_serve_side_by_side() {
    require_engine!();
    let (a, b) = (TestStack::new("n-a"), TestStack::new("n-b"));
    let (pa, pb) = (free_port(), free_port());
    a.write_compose(&same_names(pa));
    b.write_compose(&same_names(pb));

    a.deploy("v1", &[]).expect_code(0);
    let second = b.deploy("v1", &[]);
    second.expect_code(0);
    for (stack, port) in [(&a, pa), (&b, pb)] {
        let (status, color, body) = body_of(port);
        assert_eq!(
            (status, color.as_deref()),
            (200, Some("green")),
            "{}",
            stack.name
        );
        assert!(body.starts_with("hello from v1 (green)"), "{body}");
    }
    // The first stack holds (or someone else holds) web-green: the second names per project.
    let a_web = a.container_of("green", "web");
    assert!(
        a_web == "web-green" || a_web == format!("{}-green-web-1", a.name),
        "{a_web}"
    );
    let b_web = b.container_of("green", "web");
    assert_eq!(b_web, format!("{}-green-web-1", b.name));
    assert_eq!(
        b.container_of("green", "bot"),
        format!("{}-green-bot-1", b.name)
    );
    let rendered = std::fs::read_to_string(b.dir.join("docker-compose.green.yml")).unwrap();
    assert!(
        rendered.contains(&format!("\"container\": \"{}-green-web-1\"", b.name)),
        "the chosen name is recorded in the rendered metadata"
    );
    let conf = std::fs::read_to_string(b.dir.join(".ztd/proxy/conf/nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("proxy_pass http://{}-green-web-1:8080;", b.name)),
        "the proxy forwards to the recorded name: {conf}"
    );

    // Both redeploy while both are under load: no request fails on either.
    let (load_a, load_b) = (LoadLoop::start(pa, "/"), LoadLoop::start(pb, "/"));
    for stack in [&a, &b] {
        let out = stack.deploy("v2", &[]);
        out.expect_code(0);
        let moved = switched(&out);
        assert_eq!(moved.to, Color::Blue);
        assert_eq!(moved.handovers[0].service, "bot");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (report_a, report_b) = (load_a.stop(), load_b.stop());
    for (name, report) in [("a", &report_a), ("b", &report_b)] {
        assert_eq!(report.failed, 0, "stack {name}: {:?}", report.errors);
        assert!(report.total > 50, "stack {name}: {}", report.total);
        assert!(
            report
                .bodies
                .iter()
                .any(|b| b.starts_with("hello from v2 (blue)")),
            "stack {name} served v2: {:?}",
            report.bodies
        );
    }
    assert_eq!(
        b.container_of("blue", "web"),
        format!("{}-blue-web-1", b.name)
    );

    // The choice is stable: with the first stack gone (web-green is free again), the second
    // stack's next green deploy keeps the per-project name it recorded.
    drop(a);
    let third = b.deploy("v3", &[]);
    third.expect_code(0);
    assert_eq!(switched(&third).to, Color::Green);
    assert_eq!(
        b.container_of("green", "web"),
        format!("{}-green-web-1", b.name)
    );
    let (status, color, body) = body_of(pb);
    assert_eq!((status, color.as_deref()), (200, Some("green")));
    assert!(body.starts_with("hello from v3 (green)"), "{body}");
}
