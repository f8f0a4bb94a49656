//! ztd-monitor's printers, apart from the watching: one JSON line per record of the stream,
//! and the live view redrawn each round in the spirit of the replaced monitor script.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::engine::DockerHealth;
use crate::monitor::{Record, Sample};
use crate::report::json_line;
use crate::stack::{Color, Stack};
use crate::units::format_bytes;
use std::time::Duration;

/// One line of the stream: the tool and the project, then the record (`type`, `ok`, `time`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamLine {
    /// `ztd-monitor`.
    pub tool: String,
    /// The base Compose project name.
    pub project: String,
    /// The sample, event or error.
    #[serde(flatten)]
    pub record: Record,
}

/// The stream's line for `record`, newline included.
pub fn stream_line(stack: &Stack, record: Record) -> String {
    json_line(&StreamLine {
        tool: "ztd-monitor".into(),
        project: stack.name.clone(),
        record,
    })
}

/// ANSI colours, or none.
struct Palette {
    bold: &'static str,
    dim: &'static str,
    red: &'static str,
    green: &'static str,
    yellow: &'static str,
    reset: &'static str,
}

impl Palette {
    fn new(color: bool) -> Palette {
        if color {
            Palette {
                bold: "\x1b[1m",
                dim: "\x1b[2m",
                red: "\x1b[0;31m",
                green: "\x1b[0;32m",
                yellow: "\x1b[1;33m",
                reset: "\x1b[0m",
            }
        } else {
            Palette {
                bold: "",
                dim: "",
                red: "",
                green: "",
                yellow: "",
                reset: "",
            }
        }
    }
}

/// The live view of one round as a whole screen: cleared, then redrawn.
pub fn view_screen(
    stack: &Stack,
    active: Option<Color>,
    samples: &[Sample],
    color: bool,
) -> String {
    format!(
        "\x1b[H\x1b[2J{}",
        render_view(stack, active, samples, color)
    )
}

/// The live view of one round: a banner while both colors run, then each color's health,
/// containers, resources and recent logs. `color` adds ANSI colours.
pub fn render_view(
    stack: &Stack,
    active: Option<Color>,
    samples: &[Sample],
    color: bool,
) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}ztd-monitor{} {} {}{} (refresh every ~2s; Ctrl-C to stop){}",
        p.bold,
        p.reset,
        stack.name,
        p.dim,
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
        p.reset
    );
    let up = |c: Color| samples.iter().any(|s| s.color == c && s.state.is_up());
    if up(Color::Blue) && up(Color::Green) {
        let _ = writeln!(
            out,
            "{}TRANSITION IN PROGRESS - Both deployments active{}",
            p.yellow, p.reset
        );
    }
    for c in Color::ALL {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.color == c).collect();
        color_section(&mut out, &p, c, active == Some(c), &mine);
    }
    out
}

/// One color's part of the view.
fn color_section(out: &mut String, p: &Palette, c: Color, active: bool, mine: &[&Sample]) {
    let role = if active { "active" } else { "standby" };
    let running = mine.iter().filter(|s| s.state.is_up()).count();
    let _ = writeln!(
        out,
        "\n{}=== {} DEPLOYMENT ({role}) ==={}  {running}/{} containers up",
        p.bold,
        c.as_str().to_uppercase(),
        p.reset,
        mine.len()
    );
    if mine.is_empty() {
        let _ = writeln!(out, "  {}no containers{}", p.dim, p.reset);
        return;
    }
    let _ = writeln!(out, "  Health:");
    for s in mine {
        let (mark, word) = health_mark(p, s);
        let _ = writeln!(out, "    {mark} {} {word}", s.container);
    }
    let _ = writeln!(out, "  Containers:");
    let _ = writeln!(
        out,
        "    {:<28} {:<10} {:<9} {:>8}",
        "NAME", "STATE", "HEALTH", "RESTARTS"
    );
    for s in mine {
        let _ = writeln!(
            out,
            "    {:<28} {:<10} {:<9} {:>8}",
            s.container,
            format!("{:?}", s.state).to_lowercase(),
            format!("{:?}", s.health).to_lowercase(),
            s.restart_count
        );
    }
    let _ = writeln!(out, "  Resources:");
    for s in mine.iter().filter(|s| s.memory_bytes.is_some()) {
        let _ = writeln!(
            out,
            "    {:<28} CPU {:>6}  MEM {} / {}",
            s.container,
            s.cpu_percent
                .map_or("-".to_string(), |p| format!("{p:.1}%")),
            format_bytes(s.memory_bytes.unwrap_or_default()),
            format_bytes(s.memory_limit.unwrap_or_default())
        );
    }
    recent_logs(out, p, mine);
}

/// A container's mark and word in the Health part.
fn health_mark(p: &Palette, s: &Sample) -> (String, String) {
    if s.standby {
        (format!("{}-{}", p.dim, p.reset), "standby".to_string())
    } else if s.ok() {
        let word = if s.health == DockerHealth::Healthy {
            "healthy"
        } else {
            "up"
        };
        (format!("{}✓{}", p.green, p.reset), word.into())
    } else {
        let unhealthy = if s.health == DockerHealth::Unhealthy {
            ", unhealthy"
        } else {
            ""
        };
        (
            format!("{}✗{}", p.red, p.reset),
            format!("{:?}", s.state).to_lowercase() + unhealthy,
        )
    }
}

/// The Logs part: the last lines of each container.
fn recent_logs(out: &mut String, p: &Palette, mine: &[&Sample]) {
    let _ = writeln!(out, "  Logs:");
    let mut any = false;
    for s in mine {
        for line in &s.recent_logs {
            any = true;
            let _ = writeln!(out, "    {}{}:{} {line}", p.dim, s.container, p.reset);
        }
    }
    if !any {
        let _ = writeln!(out, "    {}No recent logs{}", p.dim, p.reset);
    }
}

/// The live status of a watch window: `watching green: 14 s of 30 s, clean`.
pub fn window_status(color: Color, watched: Duration, window: Duration) -> String {
    format!(
        "watching {color}: {} of {}, clean",
        crate::report::live::seconds(watched),
        crate::report::live::seconds(window)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunState;
    use crate::monitor::{ErrorRecord, EventRecord, SampleRecord};

    fn stack() -> Stack {
        Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        }
    }

    fn sample() -> Sample {
        Sample {
            color: Color::Blue,
            container: "web-blue".into(),
            service: "web".into(),
            state: RunState::Running,
            health: DockerHealth::Healthy,
            restart_count: 0,
            cpu_percent: Some(1.5),
            memory_bytes: Some(1024),
            memory_limit: Some(4096),
            new_error_lines: 2,
            probe_ms: None,
            probe_ok: None,
            standby: false,
            log_flood: None,
            id: "id-web".into(),
            settings: Default::default(),
            recent_logs: vec!["GET / 200".into()],
        }
    }

    #[test]
    fn each_record_is_one_line_led_by_tool_project_type_ok_time_and_decodes_back() {
        let line = stream_line(
            &stack(),
            Record::Sample(Box::new(SampleRecord {
                ok: true,
                time: "2026-01-01T00:00:00.000Z".into(),
                sample: sample(),
            })),
        );
        assert_eq!(
            line,
            "{\"tool\":\"ztd-monitor\",\"project\":\"shop\",\"type\":\"sample\",\"ok\":true,\"time\":\"2026-01-01T00:00:00.000Z\",\"color\":\"blue\",\"container\":\"web-blue\",\"service\":\"web\",\"state\":\"running\",\"health\":\"healthy\",\"restart_count\":0,\"cpu_percent\":1.5,\"memory_bytes\":1024,\"memory_limit\":4096,\"new_error_lines\":2,\"probe_ms\":null,\"probe_ok\":null,\"standby\":false}\n"
        );
        let decoded: StreamLine = serde_json::from_str(&line).expect("decode");
        let Record::Sample(record) = decoded.record else {
            panic!("a sample");
        };
        assert_eq!(record.sample.new_error_lines, 2);
        assert_eq!(record.sample.container, "web-blue");

        let event = EventRecord {
            ok: false,
            time: "t".into(),
            color: Some("blue".into()),
            container: "web-blue".into(),
            action: "die".into(),
            exit_code: Some("3".into()),
            signal: None,
        };
        let line = stream_line(&stack(), Record::Event(event.clone()));
        assert_eq!(
            line,
            "{\"tool\":\"ztd-monitor\",\"project\":\"shop\",\"type\":\"event\",\"ok\":false,\"time\":\"t\",\"color\":\"blue\",\"container\":\"web-blue\",\"action\":\"die\",\"exit_code\":\"3\"}\n"
        );
        let decoded: StreamLine = serde_json::from_str(&line).expect("decode");
        assert!(matches!(decoded.record, Record::Event(e) if e == event));

        let error = ErrorRecord {
            ok: false,
            time: "t".into(),
            message: "engine gone".into(),
        };
        let line = stream_line(&stack(), Record::Error(error.clone()));
        assert_eq!(
            line,
            "{\"tool\":\"ztd-monitor\",\"project\":\"shop\",\"type\":\"error\",\"ok\":false,\"time\":\"t\",\"message\":\"engine gone\"}\n"
        );
        let decoded: StreamLine = serde_json::from_str(&line).expect("decode");
        assert!(matches!(decoded.record, Record::Error(e) if e == error));
    }

    #[test]
    fn the_view_shows_each_color_and_the_transition_banner() {
        let mut green = sample();
        green.color = Color::Green;
        green.container = "web-green".into();
        green.recent_logs.clear();
        let view = render_view(&stack(), Some(Color::Blue), &[sample(), green], false);
        for needle in [
            "ztd-monitor shop ",
            "TRANSITION IN PROGRESS - Both deployments active",
            "=== BLUE DEPLOYMENT (active) ===  1/1 containers up",
            "=== GREEN DEPLOYMENT (standby) ===",
            "    ✓ web-blue healthy",
            "    web-blue: GET / 200",
            "    No recent logs",
        ] {
            assert!(view.contains(needle), "{needle:?} in\n{view}");
        }
        assert!(view_screen(&stack(), None, &[], false).starts_with("\x1b[H\x1b[2J"));
    }
}
