//! Pulling and pinning against a real local registry (Debian's `docker-registry`): a service
//! that only names a registry image is pulled on every deploy and its digest recorded; a moved
//! tag is pulled and deployed, and `ztd-rollback` brings the old digest back; `--pull never`
//! with a missing image and a registry that is down refuse the deploy (exit 4, one line,
//! nothing changed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ztd_core::ops::versions::VersionList;
use ztd_core::report::Report;
use ztd_testkit::{TestStack, eventually, free_port, require_engine, sh, testapp_image};

/// Debian's registry server.
const REGISTRY: &str = "/usr/bin/docker-registry";

/// Whether the registry server is installed: without it the test is skipped, saying so, unless
/// ZTD_REQUIRE_ENGINE is set (`make test`), where it fails.
fn registry_or_skip(name: &str) -> bool {
    if Path::new(REGISTRY).exists() {
        return true;
    }
    assert!(
        std::env::var_os(ztd_testkit::REQUIRE_ENGINE).is_none(),
        "{name}: {REGISTRY} is missing; `mk/ensure-host.sh --tests` installs docker-registry"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped {name}: {REGISTRY} is missing (apt-get install docker-registry)"
    );
    false
}

/// A registry on 127.0.0.1 (plain HTTP: the engine trusts 127.0.0.0/8) with its own storage,
/// stopped with the test; the image references it made are removed too.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
    refs: Vec<String>,
}

impl Registry {
    /// Made before the test's stack, so it outlives the stack's containers (dropped first).
    fn start(tag: &str) -> Registry {
        let dir = std::env::temp_dir()
            .join("ztd-tests")
            .join(format!("registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            port,
            dir,
            refs: Vec::new(),
        };
        assert!(
            eventually(Duration::from_secs(20), || {
                ztd_testkit::http_get(port, "/v2/").is_ok_and(|(status, _, _)| status == 200)
            }),
            "the registry did not answer on 127.0.0.1:{port}"
        );
        registry
    }

    /// Build `FROM ztd-testapp` with `VERSION=version`, tag it `reference`, push it; its id.
    fn build_and_push(&mut self, reference: &str, version: &str) -> String {
        let context = self.dir.join(format!("image-{version}"));
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM {}\nENV VERSION={version}\nLABEL ztdtest.pull={}\n",
                testapp_image(),
                self.port
            ),
        )
        .unwrap();
        let id = sh(
            "docker",
            &["build", "-q", "-t", reference, context.to_str().unwrap()],
        )
        .trim()
        .to_string();
        sh("docker", &["push", "-q", reference]);
        self.refs.push(reference.to_string());
        self.refs.push(id.clone());
        id
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reference in &self.refs {
            let _ = Command::new("docker")
                .args(["rmi", "-f", reference])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A one-service stack on the proxy port `port` whose service only names `image`.
fn registry_stack(stack: &TestStack, port: u16, image: &str) -> String {
    format!(
        "services:\n  web{id}:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:8080\"]\n    labels:\n      ztd.health.http: /health\n",
        id = stack.id
    )
}

fn state(stack: &TestStack) -> Value {
    let text = std::fs::read_to_string(stack.dir.join(".ztd/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The digest recorded for the web service of the active color.
fn active_digest(stack: &TestStack) -> String {
    let state = state(stack);
    let active = state["active"].as_str().unwrap().to_string();
    state["deployments"][&active]["digests"][&stack.service("web")]
        .as_str()
        .unwrap_or_else(|| panic!("no digest recorded: {state}"))
        .to_string()
}

fn served(port: u16) -> String {
    let (_, _, body) = ztd_testkit::http_get(port, "/version").unwrap();
    body.trim().to_string()
}

#[test]
fn a_registry_image_is_pulled_pinned_by_digest_and_rolled_back_after_its_tag_moved() {
    require_engine!();
    if !registry_or_skip("a_registry_image_is_pulled_pinned_by_digest") {
        return;
    }
    let mut registry = Registry::start("pull");
    let stack = TestStack::new("pull");
    let reference = format!("127.0.0.1:{}/app{}:latest", registry.port, stack.id);
    let repo = reference.trim_end_matches(":latest").to_string();
    let port = free_port();

    let v1 = registry.build_and_push(&reference, "v1");
    stack.write_compose(&registry_stack(&stack, port, &reference));
    stack.deploy("x", &[]).expect_code(0);
    assert_eq!(served(port), "v1");
    let first = active_digest(&stack);
    assert!(first.starts_with(&format!("{repo}@sha256:")), "{first}");

    // A new :latest is pushed and the local tag removed: the next deploy pulls it.
    let v2 = registry.build_and_push(&reference, "v2");
    assert_ne!(v1, v2);
    sh("docker", &["rmi", &reference]);
    stack.deploy("x", &[]).expect_code(0);
    assert_eq!(served(port), "v2");
    let second = active_digest(&stack);
    assert!(second.starts_with(&format!("{repo}@sha256:")), "{second}");
    assert_ne!(first, second);

    let out = stack.run("ztd-rollback", &["--list"]);
    out.expect_code(0);
    let listed: Report<VersionList> = out.decode();
    let web = stack.service("web");
    let digests: Vec<Option<&String>> = listed
        .body
        .versions
        .iter()
        .map(|v| v.digests.get(&web))
        .collect();
    assert_eq!(digests, [Some(&second), Some(&first)], "{}", out.stdout);
    assert_eq!(out.json["versions"][1]["digests"][&web], first.as_str());

    // The tag moved, yet the rollback brings the first image back by id.
    stack.run("ztd-rollback", &[]).expect_code(0);
    assert_eq!(served(port), "v1");
    assert_eq!(active_digest(&stack), first);
    let container = stack.container_of(state(&stack)["active"].as_str().unwrap(), &web);
    assert_eq!(stack.inspect(&container)["Image"], v1.as_str());
}

#[test]
fn a_missing_image_under_never_and_a_registry_that_is_down_refuse_the_deploy() {
    require_engine!();
    if !registry_or_skip("a_missing_image_under_never_and_a_registry_that_is_down") {
        return;
    }
    let stack = TestStack::new("nopull");
    let port = free_port();
    // Nobody listens on this registry port.
    let reference = format!("127.0.0.1:{}/app{}:latest", free_port(), stack.id);
    stack.write_compose(&registry_stack(&stack, port, &reference));

    // The deploy lock's directory is the one thing a refused deploy leaves (as every refusal
    // after the lock does): made first, so the snapshots compare what matters.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(stack.dir.join(".ztd"))
        .unwrap();
    let before = stack.snapshot();
    stack
        .run("ztd-up", &["-q", "--pull", "never"])
        .expect_code(4)
        .expect_one_line_error("never");
    assert_eq!(stack.snapshot(), before);

    // Here, but the registry is down: `always` (flag, setting or the default for an image
    // that names its registry) fails on the pull.
    sh("docker", &["tag", &testapp_image(), &reference]);
    for (args, env) in [
        (&["-q", "--pull", "always"][..], &[][..]),
        (&["-q"][..], &[("ZTD_PULL", "always")][..]),
        (&["-q"][..], &[][..]),
    ] {
        stack
            .run_with("ztd-up", args, env, None)
            .expect_code(4)
            .expect_one_line_error("connection refused");
        assert_eq!(stack.snapshot(), before, "{args:?} {env:?}");
    }
    // `missing` uses the image that is here.
    stack
        .run_with("ztd-up", &["-q"], &[("ZTD_PULL", "missing")], None)
        .expect_code(0);
    let _ = Command::new("docker")
        .args(["rmi", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
