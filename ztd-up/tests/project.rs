//! ztd deploys the project `docker compose` would run from the same directory, files and
//! environment: a top-level `name:`, an override file and `.env`, `COMPOSE_FILE`, profiles, and
//! a missing `-f` file refused without a change. Against the real engine and Compose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use ztd_core::report::{ErrorReport, Report};
use ztd_core::stack::Color;
use ztd_core::up::{Deployed, DryRun, UpBody};
use ztd_testkit::{
    LoadLoop, PIPELINE, TestStack, ToolOutput, free_port, require_engine, testapp_image, tool_env,
};

/// Run a shell script in `dir` with the built tools, none of the user's Compose variables but
/// those in `env`.
fn run_in(dir: &Path, script: &str, env: &[(&str, &str)]) -> ToolOutput {
    let started = Instant::now();
    let mut command = Command::new("bash");
    command
        .args(["-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tool_env(&mut command, env);
    let output = command.output().expect("bash");
    ToolOutput::from_output(&output, started)
}

/// ztd-up's report.
fn up_report(out: &ToolOutput) -> Report<UpBody> {
    serde_json::from_value(out.json.clone())
        .unwrap_or_else(|e| panic!("not ztd-up's report ({e}): {}", out.stdout))
}

/// The report of a ztd-up that deployed.
fn deployed(out: &ToolOutput) -> Deployed {
    match up_report(out).body {
        UpBody::Deployed(deployed) => deployed,
        UpBody::DryRun(_) => panic!("a dry run: {}", out.stdout),
    }
}

/// The report of a ztd-up --dry-run.
fn dry_run(out: &ToolOutput) -> DryRun {
    match up_report(out).body {
        UpBody::DryRun(dry) => *dry,
        UpBody::Deployed(_) => panic!("not a dry run: {}", out.stdout),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// `KEY=value` entries of a container's environment.
fn environment(stack: &TestStack, container: &str) -> Vec<String> {
    stack.inspect(container)["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

#[test]
fn name_override_and_dotenv_are_deployed_under_load() {
    require_engine!();
    let stack = TestStack::new("p-name");
    // The files live in a directory whose name is not the project's: only `name:` names it.
    let app = stack.dir.join("app");
    std::fs::create_dir(&app).unwrap();
    let (id, image, port) = (&stack.id, testapp_image(), free_port());
    write(
        &app.join("compose.yaml"),
        &format!(
            "name: {}\nservices:\n  web{id}:\n    image: {image}\n    ports: [\"127.0.0.1:${{WEB_PORT:?}}:8080\"]\n    environment:\n      VERSION: ${{APP_VERSION:-v1}}\n    labels:\n      ztd.health.http: /health\n",
            stack.name
        ),
    );
    write(
        &app.join("compose.override.yaml"),
        &format!(
            "services:\n  web{id}:\n    environment:\n      FROM_OVERRIDE: \"yes\"\n  extra{id}:\n    image: {image}\n    labels:\n      ztd.health.tcp: \"8080\"\n"
        ),
    );
    write(&app.join(".env"), &format!("WEB_PORT={port}\n"));

    let detect = run_in(&app, "ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["project"], stack.name.as_str(), "from name:");

    run_in(&app, PIPELINE, &[("APP_VERSION", "v1")]).expect_code(0);
    let load = LoadLoop::start(port, "/");
    let second = run_in(&app, PIPELINE, &[("APP_VERSION", "v2")]);
    let report = load.stop();
    second.expect_code(0);
    assert_eq!(second.json["project"], stack.name.as_str());
    assert_eq!(second.json["to"], "blue");
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert!(report.total > 10, "the load loop ran: {}", report.total);

    let web = format!("web{id}-blue");
    let env = environment(&stack, &web);
    assert!(env.contains(&"FROM_OVERRIDE=yes".to_string()), "{env:?}");
    assert!(env.contains(&"VERSION=v2".to_string()), "{env:?}");
    let labels = &stack.inspect(&web)["Config"]["Labels"];
    assert_eq!(
        labels["com.docker.compose.project"],
        stack.project("blue").as_str()
    );
    assert!(
        stack.container_id(&format!("extra{id}-blue")).is_some(),
        "the override's service runs"
    );
    assert_eq!(
        std::fs::read_to_string(app.join(".current_deployment")).unwrap(),
        "blue\n",
        "state lives in the project dir"
    );
}

#[test]
fn compose_file_selects_and_merges_the_files() {
    require_engine!();
    let stack = TestStack::new("p-file");
    let (id, image) = (&stack.id, testapp_image());
    write(
        &stack.dir.join("base.yml"),
        &format!(
            "services:\n  app{id}:\n    image: {image}\n    environment:\n      STAGE: base\n    labels:\n      stage: base\n"
        ),
    );
    write(
        &stack.dir.join("prod.yml"),
        &format!(
            "services:\n  app{id}:\n    environment:\n      STAGE: prod\n    labels:\n      stage: prod\n"
        ),
    );
    let out = stack.run_with(
        "ztd-up",
        &[],
        &[("COMPOSE_FILE", "base.yml:prod.yml")],
        None,
    );
    out.expect_code(0);
    let report = up_report(&out);
    assert_eq!(report.envelope.target, Some(Color::Green));
    assert_eq!(deployed(&out).compose_project, stack.project("green"));
    let env = environment(&stack, &format!("app{id}-green"));
    assert!(env.contains(&"STAGE=prod".to_string()), "{env:?}");
    // Compose's path separator is honoured too.
    let dry = stack.run_with(
        "ztd-up",
        &["--dry-run", "blue"],
        &[
            ("COMPOSE_FILE", "base.yml;prod.yml"),
            ("COMPOSE_PATH_SEPARATOR", ";"),
        ],
        None,
    );
    dry.expect_code(0);
    let plan = dry_run(&dry);
    assert!(plan.dry_run);
    let rendered = &plan.rendered["services"][format!("app{id}")];
    assert_eq!(rendered["labels"]["stage"], "prod", "{rendered}");
}

#[test]
fn a_service_behind_a_profile_runs_only_with_the_profile_on() {
    require_engine!();
    let stack = TestStack::new("p-prof");
    let (id, image) = (&stack.id, testapp_image());
    stack.write_compose(&format!(
        "services:\n  app{id}:\n    image: {image}\n  debug{id}:\n    image: {image}\n    profiles: [debug]\n"
    ));
    stack.run("ztd-up", &["green"]).expect_code(0);
    assert!(stack.container_id(&format!("app{id}-green")).is_some());
    assert!(
        stack.container_id(&format!("debug{id}-green")).is_none(),
        "profile off"
    );

    let dry = stack.run("ztd-up", &["--dry-run", "--profile", "debug", "blue"]);
    dry.expect_code(0);
    assert!(
        dry_run(&dry).rendered["services"][format!("debug{id}")].is_object(),
        "--profile"
    );

    stack
        .run_with("ztd-up", &["blue"], &[("COMPOSE_PROFILES", "debug")], None)
        .expect_code(0);
    assert!(
        stack.container_id(&format!("debug{id}-blue")).is_some(),
        "COMPOSE_PROFILES"
    );
}

#[test]
fn a_missing_file_is_refused_in_one_line_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("p-bad");
    let (id, image) = (&stack.id, testapp_image());
    stack.write_compose(&format!("services:\n  app{id}:\n    image: {image}\n"));
    let before = stack.snapshot();
    let out = stack.run("ztd-up", &["-f", "missing.yml"]);
    out.expect_code(5).expect_one_line_error("missing.yml");
    let report: ErrorReport = serde_json::from_value(out.json.clone()).expect("an error report");
    assert!(!report.ok);
    assert_eq!(report.error.exit_code, 5);
    assert_eq!(stack.snapshot(), before, "ztd-up changed nothing");
    // The read-only tools still answer, under the name they can tell without Compose.
    let detect = stack.run("ztd-detect", &["-f", "missing.yml"]);
    detect.expect_code(0);
    assert_eq!(detect.json["project"], stack.name.as_str());
    assert_eq!(stack.snapshot(), before, "ztd-detect changed nothing");
}

#[test]
fn files_that_live_elsewhere_keep_their_build_context_env_file_and_bind_mounts() {
    require_engine!();
    let stack = TestStack::new("p-away");
    // The state lives in the stack's directory; the compose file, its build context, env file
    // and bind-mounted folder live in another one, named with relative paths.
    let away = stack.dir.with_extension("files");
    let _ = std::fs::remove_dir_all(&away);
    std::fs::create_dir_all(away.join("ctx")).unwrap();
    std::fs::create_dir_all(away.join("data")).unwrap();
    let (id, image) = (&stack.id, testapp_image());
    write(
        &away.join("ctx/Dockerfile"),
        &format!("FROM {image}\nCOPY hello.txt /hello.txt\n"),
    );
    write(&away.join("ctx/hello.txt"), "built from the context\n");
    write(&away.join("app.env"), "FROM_ENV_FILE=yes\n");
    write(&away.join("data/seen.txt"), "mounted\n");
    write(
        &away.join("compose.yaml"),
        &format!(
            "services:\n  web{id}:\n    build: ./ctx\n    image: ztd-test-away{id}:latest\n    env_file: ./app.env\n    volumes: [\"./data:/data:ro\"]\n    labels:\n      ztd.health.tcp: \"8080\"\n"
        ),
    );
    let file = away.join("compose.yaml").to_string_lossy().into_owned();
    let up = stack.run("ztd-up", &["-f", &file]);
    let cleanup = || {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("ztd-test-away{id}:latest")])
            .output();
        let _ = std::fs::remove_dir_all(&away);
    };
    if up.code != 0 {
        cleanup();
    }
    up.expect_code(0);
    let container = stack.container("web", "green");
    let env = environment(&stack, &container);
    let inspected = stack.inspect(&container);
    let copied = Command::new("docker")
        .args(["cp", &format!("{container}:/hello.txt"), "-"])
        .output()
        .unwrap();
    let mounts = inspected["Mounts"].clone();
    cleanup();
    assert!(env.contains(&"FROM_ENV_FILE=yes".to_string()), "{env:?}");
    assert!(
        String::from_utf8_lossy(&copied.stdout).contains("built from the context"),
        "the image was built from ./ctx"
    );
    let source = mounts[0]["Source"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        Path::new(&source),
        away.join("data"),
        "the bind mount resolves where the compose file lives: {mounts}"
    );
}

/// The docker-compose plugin binary installed here (the user's, else a system one).
fn installed_plugin() -> Option<std::path::PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    [
        format!("{home}/.docker/cli-plugins/docker-compose"),
        "/usr/local/lib/docker/cli-plugins/docker-compose".into(),
        "/usr/local/libexec/docker/cli-plugins/docker-compose".into(),
        "/usr/lib/docker/cli-plugins/docker-compose".into(),
        "/usr/libexec/docker/cli-plugins/docker-compose".into(),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

/// A plugin directory in a fresh `DOCKER_CONFIG` whose `docker-compose` logs whether the docker
/// CLI ran it, then runs the real plugin.
fn plugin_wrapper(stack: &TestStack, real: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let config = stack.dir.join("docker-config");
    std::fs::create_dir_all(config.join("cli-plugins")).unwrap();
    let log = stack.dir.join("plugin.log");
    let wrapper = config.join("cli-plugins/docker-compose");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\n[ \"$1\" = docker-cli-plugin-metadata ] || echo \"${{DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND:+via-docker}} $*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.display()
        ),
    );
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (config, log)
}

#[test]
fn compose_is_the_plugin_docker_compose_would_run_called_without_the_cli() {
    require_engine!();
    let Some(real) = installed_plugin() else {
        eprintln!("skipped: Compose is not installed as a docker CLI plugin here");
        return;
    };
    let stack = TestStack::new("plugin");
    stack.write_compose(&ztd_testkit::example_stack(&stack, free_port()));
    let (config, log) = plugin_wrapper(&stack, &real);
    let config_text = config.to_string_lossy().into_owned();
    let env = [("DOCKER_CONFIG", config_text.as_str())];
    stack
        .run_with("ztd-up", &["--dry-run"], &env, None)
        .expect_code(0);
    let direct = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(direct.lines().any(|l| l.starts_with(" config")), "{direct}");
    assert!(
        !direct.contains("via-docker"),
        "run without the CLI: {direct}"
    );

    // A CLI config that names more plugin directories: ztd asks `docker compose` itself.
    std::fs::remove_file(&log).unwrap();
    write(&config.join("config.json"), "{\"cliPluginsExtraDirs\": []}");
    stack
        .run_with("ztd-up", &["--dry-run"], &env, None)
        .expect_code(0);
    let via = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        via.lines()
            .any(|l| l.starts_with("via-docker compose config")),
        "{via}"
    );
}
