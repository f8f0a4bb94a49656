//! The human printers: what a person at a terminal reads on stdout instead of the JSON (which
//! `--json` brings back, and every pipe gets): a few lines that say what happened and what to do
//! next.

use crate::detect::{ColorStatus, Detection};
use crate::health::{ContainerStatus, HealthBody};
use crate::monitor::{Findings, WindowBody, WindowReport};
use crate::ops::versions::VersionList;
use crate::recover::{CleanupOutcome, Resolution, Resolved, ResumeOutcome, RollbackOutcome};
use crate::report::{Human, Report, Upstream};
use crate::stack::Color;
use crate::switch::{MoveReport, SwitchOutcome};
use crate::up::UpBody;
use crate::validate::ValidationBody;

impl Human for Upstream {
    fn human(&self) -> String {
        let tool = self
            .object
            .get("tool")
            .and_then(|t| t.as_str())
            .unwrap_or("the upstream tool");
        let why = self
            .object
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .map_or(String::new(), |m| format!(": {m}"));
        if self.failed {
            format!("{tool} failed{why}; nothing done\n")
        } else {
            format!("{tool}'s report passed on\n")
        }
    }
}

/// `blue running (2/2 up)`.
fn color_line(detection: &Detection, color: Color) -> String {
    let view = detection.color(color);
    let up = view.containers.iter().filter(|c| c.state.is_up()).count();
    let status = match view.status {
        ColorStatus::Absent => return format!("{color} absent"),
        ColorStatus::Stopped => "stopped",
        ColorStatus::Partial => "partly running",
        ColorStatus::Running => "running",
    };
    format!("{color} {status} ({up}/{} up)", view.containers.len())
}

impl Human for Report<Detection> {
    fn human(&self) -> String {
        let d = &self.body;
        let project = &self.envelope.project;
        let mut text = match d.active {
            Some(active) => format!(
                "{project}: {active} is active; {}, {}\n",
                color_line(d, Color::Blue),
                color_line(d, Color::Green)
            ),
            None => format!("{project}: nothing is active\n"),
        };
        if d.interrupted {
            text.push_str(
                "an interrupted switch must be finished: ztd-switch --resume (or ztd-rollback)\n",
            );
        }
        if let Some(conflict) = &d.conflict {
            text.push_str(&format!("conflict: {conflict}\n"));
        }
        if let Some(lock) = &d.lock {
            text.push_str(&format!("locked by {} (pid {})\n", lock.tool, lock.pid));
        }
        text.push_str(&format!("the next deploy goes to {}\n", d.target()));
        text
    }
}

impl Human for Report<HealthBody> {
    fn human(&self) -> String {
        match &self.body {
            HealthBody::NothingDeployed(_) => {
                format!("{}: nothing is deployed\n", self.envelope.project)
            }
            HealthBody::Checked { report, .. } => {
                let mut text = format!("{}\n", report.summary_line());
                for container in &report.containers {
                    if let (ContainerStatus::Unhealthy | ContainerStatus::Warning, Some(reason)) =
                        (container.status, container.reason())
                    {
                        text.push_str(&format!("  {}: {reason}\n", container.name));
                    }
                }
                text
            }
        }
    }
}

impl Human for Report<ValidationBody> {
    fn human(&self) -> String {
        match &self.body {
            ValidationBody::NothingDeployed(_) => {
                format!(
                    "{}: nothing is deployed to validate\n",
                    self.envelope.project
                )
            }
            ValidationBody::Validated(v) => {
                let mut text = format!(
                    "{}: {} checks passed, {} failed\n",
                    v.color, v.passed, v.failed
                );
                for check in v.checks.iter().filter(|c| !c.pass) {
                    text.push_str(&format!("  {}: {}\n", check.name, check.detail));
                }
                text
            }
        }
    }
}

impl Human for Report<UpBody> {
    fn human(&self) -> String {
        let target = self
            .envelope
            .target
            .map_or_else(|| "?".to_string(), |c| c.to_string());
        match &self.body {
            UpBody::DryRun(plan) => format!(
                "would deploy {} to {target} ({} services); nothing changed (--json shows the plan \
                 and the rendered file)\n",
                plan.version,
                plan.plan.services.len()
            ),
            UpBody::Deployed(deployed) => format!(
                "deployed {} to {target} ({} services) in {:.1} s, beside {}\nnext: ztd-health \
                 --wait {target}, then ztd-switch {target}\n",
                deployed.version,
                deployed.services.len(),
                deployed.duration_ms / 1000.0,
                deployed
                    .active
                    .map_or_else(|| "nothing active".to_string(), |a| format!("{a} (active)"))
            ),
        }
    }
}

/// `green passed the 30 s window clean`, or why it tripped.
fn findings_line(findings: &Findings) -> String {
    match (&findings.reason, findings.tripped) {
        (Some(reason), true) => format!(
            "{} tripped after {:.1} s of {} s: {reason}\n",
            findings.color, findings.watched_s, findings.window_s
        ),
        _ if findings.interrupted => format!(
            "{}: watch interrupted after {:.1} s\n",
            findings.color, findings.watched_s
        ),
        _ => format!(
            "{} passed the {} s window clean ({} rounds, {} events)\n",
            findings.color, findings.window_s, findings.rounds, findings.events
        ),
    }
}

impl Human for WindowReport {
    fn human(&self) -> String {
        match self {
            WindowReport::Own(report) => match &report.body {
                WindowBody::Watched(findings) => findings_line(findings),
                WindowBody::NothingDeployed(_) => {
                    format!(
                        "{}: nothing is deployed to watch\n",
                        report.envelope.project
                    )
                }
            },
            WindowReport::PassedOn(passed) => findings_line(&passed.monitor.findings),
        }
    }
}

/// `switched shop from green to blue in 1.8 s; trading-bot handed over (gap 240 ms)`.
fn move_line(verb: &str, project: &str, moved: &MoveReport) -> String {
    let from = moved
        .from
        .map_or_else(|| "nothing".to_string(), |c| c.to_string());
    let mut text = format!(
        "{verb} {project} from {from} to {} ({}) in {:.1} s\n",
        moved.to,
        moved.version,
        moved.duration_ms / 1000.0
    );
    for handover in &moved.handovers {
        text.push_str(&format!(
            "  {} handed over: {} stopped, {} running {:.0} ms later\n",
            handover.service,
            handover.old.as_deref().unwrap_or("nothing"),
            handover.new,
            handover.gap_ms
        ));
    }
    if let Some(adopted) = &moved.adopted {
        text.push_str(&format!("  adopted the plain Compose project {adopted}\n"));
    }
    text
}

/// An undone move: why, and where things stand.
fn undone_line(project: &str, moved: &MoveReport, interrupted: bool) -> String {
    let active = moved
        .active
        .map_or_else(|| "nothing".to_string(), |c| c.to_string());
    let why = moved.undone.as_deref().unwrap_or("it failed");
    let what = if interrupted { "interrupted" } else { "undone" };
    format!(
        "{project}: the move to {} was {what} ({why}); {active} is active as before\n",
        moved.to
    )
}

impl Human for Report<SwitchOutcome> {
    fn human(&self) -> String {
        let project = &self.envelope.project;
        match &self.body {
            SwitchOutcome::Switched(moved) => move_line("switched", project, moved),
            SwitchOutcome::Undone(moved) => undone_line(project, moved, false),
            SwitchOutcome::Interrupted(moved) => undone_line(project, moved, true),
            SwitchOutcome::Refused(refusal) => {
                format!("{project}: refused, nothing changed: {}\n", refusal.refused)
            }
        }
    }
}

impl Human for Report<ResumeOutcome> {
    fn human(&self) -> String {
        let project = &self.envelope.project;
        match &self.body {
            ResumeOutcome::Resolved(resolved) => resolved_line(project, resolved),
            ResumeOutcome::NothingToResume(nothing) => {
                format!("{project}: nothing to resume ({})\n", nothing.reason)
            }
        }
    }
}

/// An interrupted change, finished or undone.
fn resolved_line(project: &str, resolved: &Resolved) -> String {
    let how = match resolved.resolution {
        Resolution::Finished => "finished",
        Resolution::Undone => "undone",
    };
    let active = resolved
        .active
        .map_or_else(|| "nothing".to_string(), |c| c.to_string());
    format!(
        "{project}: the {} interrupted at {} was {how}; {active} is active\n",
        resolved.operation.name(),
        resolved.interrupted_at
    )
}

impl Human for Report<RollbackOutcome> {
    fn human(&self) -> String {
        let project = &self.envelope.project;
        match &self.body {
            RollbackOutcome::RolledBack(moved) => move_line("rolled back", project, moved),
            RollbackOutcome::Undone(moved) => undone_line(project, moved, false),
            RollbackOutcome::Interrupted(moved) => undone_line(project, moved, true),
            RollbackOutcome::Resolved(resolved) => resolved_line(project, resolved),
            RollbackOutcome::Abandoned(abandoned) => format!(
                "{project}: abandoned the candidate {} (stopped, kept for inspection)\n",
                abandoned.abandoned
            ),
            RollbackOutcome::Refused(refusal) => {
                format!("{project}: refused, nothing changed: {}\n", refusal.refused)
            }
            RollbackOutcome::NothingToRollBack(nothing) => {
                format!("{project}: nothing to roll back: {}\n", nothing.refused)
            }
            RollbackOutcome::TimedOut(timed_out) => format!(
                "{project}: the rollback from {} to {} passed its {} s deadline at {}; finish it \
                 with ztd-switch --resume or ztd-rollback\n",
                timed_out.from, timed_out.to, timed_out.timeout_s, timed_out.stopped_at
            ),
        }
    }
}

impl Human for Report<CleanupOutcome> {
    fn human(&self) -> String {
        let project = &self.envelope.project;
        match &self.body {
            CleanupOutcome::Removed(removed) => format!(
                "{project}: removed {} ({} containers)\n",
                removed.cleanup,
                removed.removed.len()
            ),
            CleanupOutcome::Refused(refusal) => {
                format!("{project}: refused, nothing changed: {}\n", refusal.refused)
            }
        }
    }
}

impl Human for Report<VersionList> {
    fn human(&self) -> String {
        let project = &self.envelope.project;
        if self.body.versions.is_empty() {
            return format!("{project}: no version recorded yet\n");
        }
        let width = self
            .body
            .versions
            .iter()
            .map(|v| v.version.len())
            .max()
            .unwrap_or(0)
            .max("VERSION".len());
        let mut text = format!(
            "  {:width$}  {:5}  {:24}  GIT\n",
            "VERSION", "COLOR", "DEPLOYED"
        );
        for v in &self.body.versions {
            text.push_str(&format!(
                "{} {:width$}  {:5}  {:24}  {}\n",
                if v.active { "*" } else { " " },
                v.version,
                v.color.to_string(),
                v.deployed_at,
                v.git_ref.as_deref().unwrap_or("-")
            ));
        }
        text
    }
}

/// What ztd-detect says on stderr beside its JSON: the colors, conflicts, an interrupted change,
/// containers to adopt, the lock.
pub fn log_detection(project: &str, detection: &Detection) {
    let view = |color: Color| {
        let v = detection.color(color);
        let up = v.containers.iter().filter(|c| c.state.is_up()).count();
        match v.status {
            ColorStatus::Absent => format!("{color}: no containers"),
            _ => format!("{color}: {up}/{} containers up", v.containers.len()),
        }
    };
    match detection.active {
        Some(active) => crate::info!(
            "{}: active {active} ({}); {}; next deploy goes to {}",
            project,
            view(active),
            view(active.other()),
            detection.target()
        ),
        None => crate::info!(
            "{}: nothing deployed; next deploy goes to {}",
            project,
            detection.target()
        ),
    }
    if let Some(conflict) = &detection.conflict {
        crate::warn!("conflict: {conflict}");
    }
    if let (true, Some(journal)) = (detection.interrupted, &detection.journal) {
        let step = journal
            .unfinished()
            .map_or_else(|| "after its last step".into(), |s| s.name.to_string());
        crate::warn!(
            "a {} to {} was interrupted at {step}: run ztd-switch --resume or ztd-rollback",
            journal.operation,
            journal.to
        );
    }
    if !detection.legacy.is_empty() {
        crate::info!(
            "{} containers run outside ztd (Compose project {}); the first deploy adopts them",
            detection.legacy.len(),
            project
        );
    }
    if let Some(lock) = &detection.lock {
        crate::info!(
            "lock held by {} (pid {}) since {}",
            lock.tool,
            lock.pid,
            lock.since
        );
    }
}
