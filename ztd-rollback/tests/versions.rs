//! Retained versions against the real Docker engine: `ztd-rollback --list` after three deploys,
//! `--to` an older version under load (zero failed requests, the singleton never in both
//! colors), the active and an unknown version refused, and a version's image kept through a
//! rebuilt tag and `docker image prune`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ztd_core::ops::versions::VersionList;
use ztd_core::recover::RollbackOutcome;
use ztd_core::report::Report;
use ztd_testkit::{
    EventLog, LoadLoop, TestStack, ever_overlapped, example_stack, free_port, require_engine, sh,
    testapp_image,
};

fn list(stack: &TestStack) -> VersionList {
    let out = stack.run("ztd-rollback", &["--list"]);
    out.expect_code(0);
    let report: Report<VersionList> = out.decode();
    assert_eq!(report.envelope.tool, "ztd-rollback", "{}", out.stdout);
    report.body
}

/// The app's version as served on the proxy port.
fn served(port: u16) -> String {
    let (_, _, body) = ztd_testkit::http_get(port, "/version").unwrap();
    body.trim().to_string()
}

#[test]
fn three_versions_are_listed_and_the_first_comes_back_under_load() {
    require_engine!();
    let stack = TestStack::new("versions");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    for version in ["v1", "v2", "v3"] {
        stack.deploy(version, &[]).expect_code(0);
    }
    assert_eq!(served(port), "v3");

    let listed = list(&stack);
    assert_eq!(listed.versions.len(), 3, "{listed:?}");
    let web = stack.service("web");
    for entry in &listed.versions {
        assert!(
            entry
                .images
                .get(&web)
                .is_some_and(|id| id.starts_with("sha256:")),
            "{entry:?}"
        );
    }
    assert!(listed.versions[0].active);
    assert!(listed.versions[1..].iter().all(|v| !v.active));
    assert_eq!(Some(listed.versions[0].color), listed.active);
    let first = listed.versions[2].clone();
    assert!(
        stack
            .dir
            .join(format!(".ztd/versions/{}.yml", first.version))
            .exists()
    );

    let load = LoadLoop::start(port, "/version");
    let events = EventLog::start(&format!("deployment.service={}", stack.service("bot")));
    let out = stack.run("ztd-rollback", &["--to", &first.version]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let events = events.stop();
    let report = load.stop();
    out.expect_code(0);
    let rolled: Report<RollbackOutcome> = out.decode();
    assert!(
        matches!(rolled.body, RollbackOutcome::RolledBack(_)),
        "{}",
        out.stdout
    );
    assert_eq!(served(port), "v1");
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert!(
        report.bodies.iter().any(|b| b == "v1"),
        "{:?}",
        report.bodies
    );
    assert!(
        !ever_overlapped(
            &events,
            &stack.container("bot", "blue"),
            &stack.container("bot", "green")
        ),
        "the singleton ran in both colors: {events:?}"
    );
    let listed = list(&stack);
    let active: Vec<&str> = listed
        .versions
        .iter()
        .filter(|v| v.active)
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(active, [first.version.as_str()]);

    stack
        .run("ztd-rollback", &["--to", &first.version])
        .expect_code(2)
        .expect_one_line_error("active version");
    stack
        .run("ztd-rollback", &["--to", "v9"])
        .expect_code(5)
        .expect_one_line_error("retained");
    stack
        .run_with("ztd-up", &[], &[("ZTD_KEEP_VERSIONS", "none")], None)
        .expect_code(2)
        .expect_one_line_error("ZTD_KEEP_VERSIONS");
}

#[test]
fn a_kept_version_image_survives_a_rebuilt_tag_and_a_prune() {
    require_engine!();
    let stack = TestStack::new("keepimg");
    let port = free_port();
    let image = format!(
        "ztd-vtest-{}:latest",
        stack.id.trim_matches('-').to_lowercase()
    );
    let label = format!("ztdvtest={}", stack.id.trim_matches('-'));
    let build = |rev: &str| {
        let dir = stack.dir.join(format!("build-{rev}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM {}\nLABEL {label} rev={rev}\n", testapp_image()),
        )
        .unwrap();
        sh(
            "docker",
            &["build", "-q", "-t", &image, dir.to_str().unwrap()],
        );
    };
    build("a");
    stack.write_compose(&example_stack(&stack, port).replace(&testapp_image(), &image));
    stack.deploy("v1", &[]).expect_code(0);
    let first = list(&stack).versions[0].clone();
    let old_id = first.images[&stack.service("web")].clone();

    build("b");
    stack.deploy("v2", &[]).expect_code(0);
    stack
        .run(
            "ztd-rollback",
            &["--cleanup", first.color.to_string().as_str()],
        )
        .expect_code(0);
    sh(
        "docker",
        &[
            "image",
            "prune",
            "-f",
            "--filter",
            &format!("label={label}"),
        ],
    );
    let kept = sh(
        "docker",
        &["image", "inspect", "--format", "{{.RepoTags}}", &old_id],
    );
    assert!(kept.contains("ztd-keep/"), "{kept}");
    drop(stack);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &image])
        .output();
}
