//! The drop-in deploy script on a copy of the trading project's layout (an unlabelled
//! `ai-trading-bot` with a published port, a service behind a profile): the script makes the bot
//! a handover singleton by itself, so it never runs in both colors and keeps its own port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use ztd_testkit::{
    EventLog, TestStack, ToolOutput, ever_overlapped, free_port, http_get, require_engine,
    testapp_image, tool_env,
};

/// The base file: the bot with no labels, a side service, and `bluefin-service`; `bot_port` puts
/// the bot's published port here, `profiled` puts bluefin behind a profile here.
fn base(bot_port: Option<u16>, profiled: bool) -> String {
    let image = testapp_image();
    let ports = bot_port.map_or(String::new(), |p| {
        format!("    ports: [\"127.0.0.1:{p}:8080\"]\n")
    });
    let profile = if profiled {
        "    profiles: [\"bluefin\"]\n"
    } else {
        ""
    };
    format!(
        r#"services:
  ai-trading-bot:
    image: {image}
{ports}    environment:
      VERSION: ${{APP_VERSION:-v1}}
      LOG_EVERY: 200ms
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 300ms
      timeout: 2s
      retries: 2
    restart: unless-stopped
  mcp-omnisearch:
    image: {image}
    labels:
      ztd.health.tcp: "8080"
  bluefin-service:
    image: {image}
{profile}"#
    )
}

/// The override file of the user's layout: the bot's port, bluefin behind a profile.
fn override_file(bot_port: u16) -> String {
    format!(
        r#"services:
  ai-trading-bot:
    ports: ["127.0.0.1:{bot_port}:8080"]
  bluefin-service:
    profiles: ["bluefin"]
"#
    )
}

fn install_deploy_script(stack: &TestStack) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts")
        .join("zero-downtime-deploy.sh");
    let target = stack.dir.join("scripts");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(source, target.join("zero-downtime-deploy.sh")).unwrap();
}

fn deploy_script(stack: &TestStack, env: &[(&str, &str)]) -> ToolOutput {
    let started = Instant::now();
    let mut command = Command::new("bash");
    command
        .arg(stack.dir.join("scripts").join("zero-downtime-deploy.sh"))
        .current_dir("/")
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .env_remove("ZTD_HANDOVER")
        .env_remove("ZTD_DRAIN_AI_TRADING_BOT")
        .stdin(Stdio::null());
    tool_env(&mut command, env);
    ToolOutput::from_output(&command.output().unwrap(), started)
}

const FAST: [(&str, &str); 3] = [
    ("MIGRATION_GRACE_PERIOD", "1"),
    ("HEALTH_CHECK_INTERVAL", "1"),
    ("HEALTH_CHECK_RETRIES", "15"),
];

/// The tests here share service names: two deploys choosing container names at the same instant
/// could both pick the same free `<service>-<color>`, so they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Deploy twice with the script and check the bot's handover, its port and the profile.
fn two_deploys_hand_the_bot_over(stack: &TestStack, bot_port: u16) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    install_deploy_script(stack);
    // The script's own drain is the original's graceful shutdown, which needs the bot's python;
    // the test app drains its own way, set here as a user would override it.
    let script =
        std::fs::read_to_string(stack.dir.join("scripts/zero-downtime-deploy.sh")).unwrap();
    assert!(script.contains(r#"python -m bot.utils.graceful_shutdown || true"#));
    let mut env = FAST.to_vec();
    env.push(("APP_VERSION", "v1"));
    env.push(("ZTD_DRAIN_AI_TRADING_BOT", "/ztd-testapp drain"));
    let first = deploy_script(stack, &env);
    assert_eq!(first.code, 0, "{first:?}");
    let green_bot = stack.container_of("green", "ai-trading-bot");
    assert!(!green_bot.is_empty(), "the bot is deployed");
    let labels = &stack.inspect(&green_bot)["Config"]["Labels"];
    assert_eq!(labels["ztd.switch"], "handover", "the script names the bot");
    assert_eq!(labels["ztd.drain"], "/ztd-testapp drain");
    let (status, _, body) = http_get(bot_port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from v1 (green)"), "{body}");
    assert!(
        stack.container_of("green", "bluefin-service").is_empty(),
        "the profiled service is not deployed"
    );

    let events = EventLog::start("deployment.service=ai-trading-bot");
    let mut env = FAST.to_vec();
    env.push(("APP_VERSION", "v2"));
    env.push(("ZTD_DRAIN_AI_TRADING_BOT", "/ztd-testapp drain"));
    let second = deploy_script(stack, &env);
    let events = events.stop();
    assert_eq!(second.code, 0, "{second:?}");
    let blue_bot = stack.container_of("blue", "ai-trading-bot");
    assert!(
        events
            .iter()
            .any(|e| e.name == blue_bot && e.action == "start"),
        "{events:?}"
    );
    assert!(
        !ever_overlapped(&events, &green_bot, &blue_bot),
        "the bot ran in both colors: {events:?}"
    );
    let (status, _, body) = http_get(bot_port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from v2 (blue)"), "{body}");
    assert!(
        stack.inspect(&blue_bot)["HostConfig"]["PortBindings"]
            .as_object()
            .is_some_and(|p| !p.is_empty()),
        "the active bot publishes its port itself"
    );
    assert!(stack.container_of("blue", "bluefin-service").is_empty());
    assert!(!stack.container_of("blue", "mcp-omnisearch").is_empty());
}

#[test]
fn the_script_hands_the_bot_over_with_its_port_from_the_override_file() {
    require_engine!();
    let stack = TestStack::new("ov-bot");
    let port = free_port();
    std::fs::write(stack.dir.join("docker-compose.yml"), base(None, false)).unwrap();
    std::fs::write(
        stack.dir.join("docker-compose.override.yml"),
        override_file(port),
    )
    .unwrap();
    two_deploys_hand_the_bot_over(&stack, port);
}

#[test]
fn the_script_hands_the_bot_over_with_its_port_in_the_base_file() {
    require_engine!();
    let stack = TestStack::new("ov-base");
    let port = free_port();
    std::fs::write(stack.dir.join("docker-compose.yml"), base(Some(port), true)).unwrap();
    two_deploys_hand_the_bot_over(&stack, port);
}
