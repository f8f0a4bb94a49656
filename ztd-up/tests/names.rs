//! Container names against the real Docker engine: a name ztd-up chose that another project
//! takes before the containers are created (two stacks deploying at once) is chosen again, and
//! the deploy goes on under the per-project name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ztd_testkit::{TestStack, bin, require_engine, sh, testapp_image, tool_env};

/// Removes a container when dropped, passing or failing.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn a_container_name_taken_while_ztd_up_runs_is_chosen_again() {
    require_engine!();
    let stack = TestStack::new("nm-race");
    let id = &stack.id;
    let image = testapp_image();
    stack.write_compose(&format!(
        "services:\n  web{id}:\n    image: {image}\n    labels:\n      ztd.health.http: /health\n"
    ));
    let mut command = Command::new(bin("ztd-up"));
    command
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tool_env(&mut command, &[("ZTD_PAUSE", "up:before-create=5s")]);
    let mut up = command.spawn().expect("ztd-up");
    let mut stderr = BufReader::new(up.stderr.take().unwrap());
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("pausing at up:before-create") {
        assert!(started.elapsed() < Duration::from_secs(60), "{seen}");
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("ztd-up ended before creating: {seen}");
        }
        seen.push_str(&line);
    }
    // Another project takes the compatible name ztd-up chose for green.
    let taken = format!("web{id}-green");
    let _removed = Removed(taken.clone());
    sh(
        "docker",
        &[
            "create",
            "--name",
            &taken,
            "--label",
            "com.docker.compose.project=somebody-else",
            &image,
        ],
    );
    let status = up.wait().unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    let mut stdout = String::new();
    up.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{seen}\n{stdout}");
    assert!(seen.contains("choosing the names again"), "{seen}");
    let chosen = format!("{}-web{id}-1", stack.project("green"));
    assert!(
        stack.container_id(&chosen).is_some(),
        "{chosen} runs: {stdout}"
    );
    let rendered = std::fs::read_to_string(stack.dir.join("docker-compose.green.yml")).unwrap();
    assert!(
        rendered.contains(&chosen),
        "the rendered file records {chosen}"
    );
    // The other project's container is untouched.
    let holder = sh(
        "docker",
        &["inspect", "--format", "{{.State.Status}}", &taken],
    );
    assert_eq!(holder.trim(), "created");
}
