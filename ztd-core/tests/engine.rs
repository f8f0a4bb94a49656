//! The engine layer against the real Docker engine: every trait method does what it says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use ztd_core::docker::DockerEngine;
use ztd_core::engine::{ContainerQuery, DockerHealth, Engine, LogQuery, RunState};
use ztd_core::stack::Color;
use ztd_testkit::{Service, TestStack, require_engine};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn list_inspect_exec_logs_stats_stop_start_kill_and_events() {
    require_engine!();
    let stack = TestStack::new("engine");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("LOG_ERRORS", "2")
            .env("STANDBY", "1")
            .env("LOG_EVERY", "100ms")],
    );
    let name = stack.container("web", "blue");
    runtime().block_on(async {
        let engine = DockerEngine::connect().await.expect("engine");
        let listed = engine
            .list(&ContainerQuery::project(&stack.project("blue")))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        let web = &listed[0];
        assert_eq!(web.name, name);
        assert_eq!(web.service, stack.service("web"));
        assert_eq!(web.color, Some(Color::Blue));
        assert_eq!(web.state, RunState::Running);
        assert_eq!(web.health, DockerHealth::None);
        assert_eq!(web.exposed_ports, vec![8080]);
        assert!(!web.addresses.is_empty());
        assert_eq!(engine.inspect(&name).await.unwrap().id, web.id);

        // exec: exit code and output.
        let ok = engine
            .exec(
                &name,
                &["/ztd-testapp".into(), "probe".into()],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(ok.exit_code, Some(0));
        let bad = engine
            .exec(
                &name,
                &["/ztd-testapp".into(), "probe".into(), "/nope".into()],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(bad.exit_code, Some(1));
        assert!(bad.output.contains("404"), "{}", bad.output);

        // kill with a signal: SIGUSR1 activates the standby app, which then logs work lines.
        let mut events = engine
            .events(&ContainerQuery::project(&stack.project("blue")))
            .await
            .unwrap();
        engine.kill(&name, "SIGUSR1").await.unwrap();
        let mut saw_kill = false;
        while let Ok(Some(Ok(event))) =
            tokio::time::timeout(Duration::from_secs(5), events.next()).await
        {
            if event.action == "kill" && event.container_name == name {
                assert_eq!(
                    event.attributes.get("signal").map(String::as_str),
                    Some("10")
                );
                saw_kill = true;
                break;
            }
        }
        assert!(saw_kill, "the kill event arrived");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let lines = engine
            .logs(
                &name,
                LogQuery {
                    since: web.run_log_start(),
                    tail: None,
                },
            )
            .await
            .unwrap();
        assert!(
            lines.iter().any(|l| l.text.contains("activated")),
            "{lines:?}"
        );
        assert!(lines.iter().filter(|l| l.text.starts_with("ERROR")).count() == 2);
        let tail = engine
            .logs(
                &name,
                LogQuery {
                    since: None,
                    tail: Some(1),
                },
            )
            .await
            .unwrap();
        assert_eq!(tail.len(), 1);
        let later = engine
            .logs(
                &name,
                LogQuery {
                    since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
                    tail: None,
                },
            )
            .await
            .unwrap();
        assert!(later.is_empty());

        let stats = engine.stats(&name).await.unwrap();
        assert!(stats.memory_usage > 0 && stats.memory_limit > stats.memory_usage);

        // stop: graceful (the app exits 0 on SIGTERM); start again.
        engine.stop(&name, Duration::from_secs(10)).await.unwrap();
        let stopped = engine.inspect(&name).await.unwrap();
        assert_eq!(
            (stopped.state, stopped.exit_code),
            (RunState::Exited, Some(0))
        );
        engine
            .stop(&name, Duration::from_secs(1))
            .await
            .expect("stopping a stopped container is fine");
        engine.start(&name).await.unwrap();
        assert_eq!(
            engine.inspect(&name).await.unwrap().state,
            RunState::Running
        );
        engine
            .start(&name)
            .await
            .expect("starting a running container is fine");

        let missing = engine.inspect("no-such-container-ztd").await.unwrap_err();
        assert_eq!(missing.exit_status().code(), 4);
    });
}

#[test]
fn an_exec_that_outlives_its_timeout_reports_no_exit_code() {
    require_engine!();
    let stack = TestStack::new("engine-exec");
    stack.up("blue", &[Service::new("web").env("HEALTH_HANG", "1")]);
    let name = stack.container("web", "blue");
    runtime().block_on(async {
        let engine = DockerEngine::connect().await.expect("engine");
        let started = std::time::Instant::now();
        let out = engine
            .exec(
                &name,
                &["/ztd-testapp".into(), "probe".into()],
                Duration::from_millis(500),
            )
            .await
            .unwrap();
        assert_eq!(out.exit_code, None);
        assert!(started.elapsed() < Duration::from_secs(2));
    });
}
