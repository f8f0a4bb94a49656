//! ztd-health's text printers, apart from the checks: the health report and the validation
//! report of the replaced scripts (the drop-in scripts rely on their lines and exit codes), and
//! the one status line of a monitoring plugin.

use crate::error::{Error, ExitStatus};
use crate::health::{
    CheckName, CheckStatus, ContainerHealth, ContainerStatus, HealthBody, HealthReport,
    HealthStatus,
};
use crate::output;
use crate::report::Printed;
use crate::stack::Stack;
use crate::validate::{Group, ValidationBody};

/// The exit status whose code is `code` (the scripts' and the plugins' codes are small numbers
/// of their own: 0, 1, 2, 3).
fn code(code: u8) -> ExitStatus {
    ExitStatus::from_code(code).unwrap_or(ExitStatus::Negative)
}

/// The script's word on one container, and whether it is critical (`Some(true)`), a warning
/// (`Some(false)`) or OK (`None`): the first of NOT RUNNING, UNHEALTHY, RESTARTED and ERRORS IN
/// LOGS that applies.
fn service_word(container: &ContainerHealth) -> (&'static str, Option<bool>) {
    let fail = [CheckStatus::Fail];
    let quick = [
        CheckName::DockerHealth,
        CheckName::Http,
        CheckName::Tcp,
        CheckName::Uptime,
        CheckName::Memory,
        CheckName::Cpu,
    ];
    if container.status == ContainerStatus::Standby {
        ("OK", None)
    } else if container.has(CheckName::Running, &fail) {
        ("NOT RUNNING", Some(true))
    } else if quick.iter().any(|name| container.has(*name, &fail)) {
        ("UNHEALTHY", Some(true))
    } else if container.has(CheckName::Restarts, &fail) {
        ("RESTARTED", Some(false))
    } else if container.has(
        CheckName::LogErrors,
        &[CheckStatus::Warn, CheckStatus::Fail],
    ) {
        ("ERRORS IN LOGS", Some(false))
    } else {
        ("OK", None)
    }
}

/// The live status of a health wait: `green: 3/5 healthy, 12 s left`.
pub fn wait_status(report: &HealthReport, left: std::time::Duration) -> String {
    let waiting = report.count(ContainerStatus::Unhealthy);
    let mut text = format!(
        "{}: {}/{} healthy, {} left",
        report.color,
        report.containers.len() - waiting,
        report.containers.len(),
        crate::report::live::seconds(left)
    );
    if let Some(reason) = report
        .containers
        .iter()
        .find(|c| c.status == ContainerStatus::Unhealthy)
        .and_then(|c| c.reason().map(|r| format!("{}: {r}", c.name)))
    {
        text.push_str(&format!(" ({reason})"));
    }
    text
}

/// `--report`: the per-service report of the replaced health-check script: "  <container>: OK",
/// "NOT RUNNING", "UNHEALTHY", "RESTARTED" or "ERRORS IN LOGS", then a CRITICAL:, WARNING: or
/// SUCCESS: line; exit 0 all OK, 1 warnings only, 2 critical. Nothing deployed is an error line
/// and exit 2.
pub fn service_report(body: &HealthBody) -> Printed {
    let report = match body {
        HealthBody::Checked { report, .. } => report,
        HealthBody::NothingDeployed(_) => {
            return Printed::text("ERROR: No active deployment found\n".into(), code(2));
        }
    };
    let mut out = format!("Checking health of {} deployment...\n", report.color);
    let (mut critical, mut warnings) = (0, 0);
    for container in &report.containers {
        let (word, severity) = service_word(container);
        match severity {
            Some(true) => critical += 1,
            Some(false) => warnings += 1,
            None => {}
        }
        out.push_str(&format!("  {}: {word}\n", container.name));
    }
    if let Some(problem) = &report.problem {
        critical += 1;
        out.push_str(&format!("  {problem}\n"));
    }
    if critical > 0 {
        out.push_str(&format!(
            "CRITICAL: {critical} services have critical issues\n"
        ));
        Printed::text(out, code(2))
    } else if warnings > 0 {
        out.push_str(&format!("WARNING: {warnings} services have warnings\n"));
        Printed::text(out, code(1))
    } else {
        out.push_str("SUCCESS: All services healthy\n");
        Printed::text(out, code(0))
    }
}

/// `--report` stopped by an error: `ERROR: <message>` on stdout, exit 2.
pub fn service_report_error(err: &Error) -> Printed {
    Printed::text(format!("ERROR: {err}\n"), code(2))
}

/// `--report` given bad arguments: `ERROR: <message>` on stderr, exit 2.
pub fn report_usage_error(message: &str) -> Printed {
    output::print_error_line(&format!("ERROR: {message}"));
    Printed::text(String::new(), ExitStatus::Usage)
}

/// ANSI colours, or none.
struct Palette {
    green: &'static str,
    red: &'static str,
    yellow: &'static str,
    blue: &'static str,
    reset: &'static str,
}

impl Palette {
    fn new(colors: bool) -> Palette {
        if colors {
            Palette {
                green: "\x1b[0;32m",
                red: "\x1b[0;31m",
                yellow: "\x1b[1;33m",
                blue: "\x1b[0;34m",
                reset: "\x1b[0m",
            }
        } else {
            Palette {
                green: "",
                red: "",
                yellow: "",
                blue: "",
                reset: "",
            }
        }
    }
}

/// `--validate --report`: the report of the replaced validate script: sections, "Checking
/// <name>... PASS|FAIL", the summary; exit 0 when everything passed, else 1. `colors` adds ANSI
/// colours.
pub fn validation_report(body: &ValidationBody, colors: bool) -> Printed {
    let Palette {
        green,
        red,
        yellow,
        blue,
        reset,
    } = Palette::new(colors);
    let validation = match body {
        ValidationBody::Validated(validation) => validation,
        ValidationBody::NothingDeployed(_) => {
            let text = format!("{red}No deployment found to validate{reset}\n");
            return Printed::text(text, ExitStatus::Negative);
        }
    };
    let mut out = format!(
        "{blue}=== DEPLOYMENT VALIDATION: {} ==={reset}\n",
        validation.color.as_str().to_uppercase()
    );
    for group in Group::ALL {
        let mut mine = validation.checks.iter().filter(|c| c.group == group);
        let Some(first) = mine.next() else {
            continue;
        };
        out.push_str(&format!("\n{yellow}{}:{reset}\n", group.title()));
        for c in std::iter::once(first).chain(mine) {
            let word = if c.pass {
                format!("{green}PASS{reset}")
            } else {
                format!("{red}FAIL{reset} ({})", c.detail)
            };
            out.push_str(&format!("Checking {}... {word}\n", c.name));
        }
    }
    let (passed, failed) = (validation.passed, validation.failed);
    out.push_str(&format!(
        "\n=== VALIDATION SUMMARY ===\nPassed: {passed}\nFailed: {failed}\n"
    ));
    if failed == 0 {
        out.push_str(&format!("{green}✓ Deployment validation PASSED{reset}\n"));
        Printed::text(out, ExitStatus::Success)
    } else {
        out.push_str(&format!("{red}✗ Deployment validation FAILED{reset}\n"));
        Printed::text(out, ExitStatus::Negative)
    }
}

/// `--validate --report` stopped by an error: `ERROR: <message>` on stderr, exit 1.
pub fn validation_report_error(err: &Error) -> Printed {
    output::print_error_line(&format!("ERROR: {err}"));
    Printed::text(String::new(), ExitStatus::Negative)
}

/// The monitoring-plugin states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nagios {
    Ok,
    Warning,
    Critical,
    Unknown,
}

/// One plugin status line: `ZTD-HEALTH <STATE> - <text>[ | <perfdata>]`, with the plugin's code.
fn nagios_line(state: Nagios, text: &str, perfdata: &str) -> Printed {
    let (word, status) = match state {
        Nagios::Ok => ("OK", 0),
        Nagios::Warning => ("WARNING", 1),
        Nagios::Critical => ("CRITICAL", 2),
        Nagios::Unknown => ("UNKNOWN", 3),
    };
    let text = text.replace('|', "/");
    let line = if perfdata.is_empty() {
        format!("ZTD-HEALTH {word} - {text}\n")
    } else {
        format!("ZTD-HEALTH {word} - {text} | {perfdata}\n")
    };
    Printed::text(line, code(status))
}

/// `--nagios`: one status line with performance data; 0 OK, 1 WARNING, 2 CRITICAL (unhealthy
/// or nothing deployed).
pub fn nagios(stack: &Stack, body: &HealthBody) -> Printed {
    let report = match body {
        HealthBody::Checked { report, .. } => report,
        HealthBody::NothingDeployed(_) => {
            let text = format!("{}: nothing is deployed", stack.name);
            return nagios_line(Nagios::Critical, &text, "");
        }
    };
    let state = match report.status {
        HealthStatus::Healthy => Nagios::Ok,
        HealthStatus::Warning => Nagios::Warning,
        HealthStatus::Unhealthy => Nagios::Critical,
    };
    let summary = report.summary;
    let perfdata = format!(
        "containers={} healthy={} warning={} unhealthy={} time={:.3}s",
        summary.containers,
        summary.healthy,
        summary.warning,
        summary.unhealthy,
        report.duration_ms / 1000.0
    );
    let text = format!("{} {}", stack.name, report.summary_line());
    nagios_line(state, &text, &perfdata)
}

/// `--nagios` that could not check (bad usage, engine unreachable, a state conflict): UNKNOWN.
pub fn nagios_unknown(message: &str) -> Printed {
    nagios_line(Nagios::Unknown, message, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Check, HealthReport, NothingDeployed};
    use crate::stack::Color;
    use crate::validate::{Validation, ValidationCheck};

    fn container(name: &str, checks: &[(CheckName, CheckStatus)]) -> ContainerHealth {
        let checks: Vec<Check> = checks
            .iter()
            .map(|(name, status)| Check {
                name: *name,
                status: *status,
                detail: format!("{name:?} detail"),
                duration_ms: 0.0,
            })
            .collect();
        let status = if checks.iter().any(|c| c.status == CheckStatus::Fail) {
            ContainerStatus::Unhealthy
        } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
            ContainerStatus::Warning
        } else {
            ContainerStatus::Healthy
        };
        ContainerHealth {
            name: name.into(),
            service: name.into(),
            state: crate::engine::RunState::Running,
            health: crate::engine::DockerHealth::None,
            status,
            checks,
            settled: false,
            uptime_due_in: None,
            polls: false,
            just_started: false,
        }
    }

    fn checked(containers: Vec<ContainerHealth>) -> HealthBody {
        let mut report = HealthReport::new(Color::Blue, containers, None);
        report.duration_ms = 12.5;
        HealthBody::Checked {
            waited: false,
            report,
        }
    }

    #[test]
    fn the_service_report_names_each_container_and_answers_the_scripts_codes() {
        use CheckName::*;
        use CheckStatus::*;
        let body = checked(vec![
            container("web-blue", &[(Running, Pass), (Http, Pass)]),
            container("noisy-blue", &[(Running, Pass), (LogErrors, Warn)]),
        ]);
        let printed = service_report(&body);
        assert_eq!(
            printed.text,
            "Checking health of blue deployment...\n  web-blue: OK\n  noisy-blue: ERRORS IN LOGS\nWARNING: 1 services have warnings\n"
        );
        assert_eq!(printed.status.code(), 1);
        let body = checked(vec![
            container("web-blue", &[(Running, Fail)]),
            container("api-blue", &[(Running, Pass), (Http, Fail)]),
            container("loop-blue", &[(Running, Pass), (Restarts, Fail)]),
        ]);
        let printed = service_report(&body);
        assert!(printed.text.contains("  web-blue: NOT RUNNING\n"));
        assert!(printed.text.contains("  api-blue: UNHEALTHY\n"));
        assert!(printed.text.contains("  loop-blue: RESTARTED\n"));
        assert!(
            printed
                .text
                .ends_with("CRITICAL: 2 services have critical issues\n")
        );
        assert_eq!(printed.status.code(), 2);
        let ok = service_report(&checked(vec![container("web-blue", &[(Running, Pass)])]));
        assert!(ok.text.ends_with("SUCCESS: All services healthy\n"));
        assert_eq!(ok.status.code(), 0);
        let none = service_report(&HealthBody::NothingDeployed(NothingDeployed::default()));
        assert_eq!(none.text, "ERROR: No active deployment found\n");
        assert_eq!(none.status.code(), 2);
    }

    #[test]
    fn the_nagios_line_carries_the_state_the_summary_and_perfdata() {
        use CheckName::*;
        use CheckStatus::*;
        let stack = Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        };
        let printed = nagios(
            &stack,
            &checked(vec![container("web-blue", &[(Running, Pass)])]),
        );
        assert_eq!(
            printed.text,
            "ZTD-HEALTH OK - shop blue: 1/1 containers healthy | containers=1 healthy=1 warning=0 unhealthy=0 time=0.013s\n"
        );
        assert_eq!(printed.status.code(), 0);
        let warned = nagios(
            &stack,
            &checked(vec![container("web-blue", &[(LogErrors, Warn)])]),
        );
        assert!(warned.text.starts_with("ZTD-HEALTH WARNING - "));
        assert_eq!(warned.status.code(), 1);
        let none = nagios(
            &stack,
            &HealthBody::NothingDeployed(NothingDeployed::default()),
        );
        assert_eq!(
            none.text,
            "ZTD-HEALTH CRITICAL - shop: nothing is deployed\n"
        );
        assert_eq!(none.status.code(), 2);
        let unknown = nagios_unknown("bad | input");
        assert_eq!(unknown.text, "ZTD-HEALTH UNKNOWN - bad / input\n");
        assert_eq!(unknown.status.code(), 3);
    }

    #[test]
    fn the_validation_report_prints_sections_in_order_and_the_summary() {
        let checks = vec![
            ValidationCheck {
                group: Group::Network,
                name: "web-blue port 8080 accepts connections".into(),
                pass: false,
                detail: "refused".into(),
            },
            ValidationCheck {
                group: Group::Containers,
                name: "web-blue running".into(),
                pass: true,
                detail: "running".into(),
            },
        ];
        let body = ValidationBody::Validated(Validation::new(Color::Blue, checks));
        let printed = validation_report(&body, false);
        assert_eq!(
            printed.text,
            "=== DEPLOYMENT VALIDATION: BLUE ===\n\nContainer Status Checks:\nChecking web-blue running... PASS\n\nNetwork Connectivity:\nChecking web-blue port 8080 accepts connections... FAIL (refused)\n\n=== VALIDATION SUMMARY ===\nPassed: 1\nFailed: 1\n✗ Deployment validation FAILED\n"
        );
        assert_eq!(printed.status.code(), 1);
        let colored = validation_report(&body, true);
        assert!(colored.text.contains("\x1b[0;32mPASS\x1b[0m"));
    }
}
