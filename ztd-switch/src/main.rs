//! ztd-switch: make the deployed standby color the active one, without a failed request and
//! without ever running a singleton twice.

use std::process::ExitCode;

use clap::Parser;
use ztd_core::cli::{self, Context, StackArgs, SwitchArgs, WithProject};
use ztd_core::compose::Compose;
use ztd_core::docker::DockerEngine;
use ztd_core::hooks;
use ztd_core::recover::resume;
use ztd_core::report::{Printed, Report};
use ztd_core::stack::Color;
use ztd_core::state::DeployLock;
use ztd_core::switch::{StopOld, finish_stop_old, switch};
use ztd_core::{fault, signals};

const AFTER_HELP: &str = "\
Steps, each journaled in .ztd/journal.json and timed in the JSON report:
  1. take the deploy lock before looking at anything (.ztd/lock; exit 7 when another deploy
     holds it);
  2. refuse unless the target is healthy (exit 1, nothing changed), unless --force; then run
     each ztd.hook.pre-switch in a one-off container of the target (docker compose run): one
     that fails or times out refuses the switch too;
  3. proxy: write the front proxy's new config atomically, test it (nginx -t), reload nginx
     gracefully (SIGHUP), wait until every old worker has stopped accepting connections (so no
     new connection reaches the old color once this returns), confirm through the proxy that
     the target answers, and wait for the old workers to finish their in-flight requests;
  4. handover, per ztd.switch=handover service, at the same time as step 3 (they move
     different services): run ztd.drain in the old container (with a timeout), stop it
     (SIGTERM, then SIGKILL after the stop timeout) and confirm it stopped, then start the new
     one (or run ztd.activate in it) and wait until it is healthy (a HEALTHCHECK the engine has
     not run yet is run by ztd at once); the gap (old stopped to new running) is reported;
  5. stop the rest of the old color (kept for rollback; restart policy set to no); with a
     handover service, this begins once the proxy has moved, beside the handover (an undo
     starts it again and waits until it is healthy before the proxy points back);
  6. write .current_deployment, .ztd/state.json and a line in .ztd/history.jsonl;
     with --stop-old background, step 6 comes first and the switch answers then: a process of
     its own does step 5 with the deploy lock (its report names it: background_stop);
  7. run each ztd.hook.post-switch in the target (a failure is a warning, still exit 0).
A failure before every singleton runs healthy in the target puts everything back as it was
(proxy included; what step 5 already stopped is started again) and exits 1; the journal says
\"undoing\" first, so an undo that is killed is finished as an undo. A failure after that, in
steps 5 or 6 (the new color already serves), exits 6: --resume finishes the switch. Ctrl-C,
SIGTERM or SIGHUP finishes the current step, puts everything back, releases the lock and exits
130; one that comes before the switch begins changes nothing.

--resume finishes or undoes a switch that was killed (its journal remains and nobody holds the
lock; ztd-detect exits 6), whichever leaves exactly one active color soonest: finished once at
least half of its proxy and handover steps were done, undone before; always undone when it was
being undone. Every action checks the
current state first: the other color's singleton is stopped before this one starts.

Exit codes:
  0  switched (or resumed)  1  refused (target unhealthy) or undone after a failure
  2  bad usage, or the target is already active
  3  Docker engine unreachable     4  the engine failed a request
  5  nothing deployed in the target, or a state conflict
  6  a change was left incomplete: resume or roll back
  7  another deploy holds the lock
  130 interrupted by Ctrl-C, SIGTERM or SIGHUP (put back, or left journaled)

Examples:
  ztd-switch                 # to the candidate started by ztd-up
  ztd-switch blue             # --to blue works too
  ztd-detect | ztd-up | ztd-health --wait | ztd-switch";

/// Make the deployed standby color the active one.
#[derive(Debug, Parser)]
#[command(name = "ztd-switch", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The color to switch to [default: the upstream tool's target on stdin, else the deploy
    /// candidate, else the standby]
    #[arg(value_parser = cli::color_arg)]
    color: Option<Color>,
    /// The same as COLOR (the flag earlier versions took)
    #[arg(long, value_name = "COLOR", value_parser = cli::color_arg, conflicts_with = "color")]
    to: Option<Color>,
    /// Switch even when the target is not healthy
    #[arg(long)]
    force: bool,
    /// Finish or undo a switch that was interrupted (whichever is quicker), so exactly one
    /// color is active with the proxy pointing at it
    #[arg(long, conflicts_with_all = ["color", "to", "force"])]
    resume: bool,
    /// When the rest of the old color stops: `wait` answers once it has stopped; `background`
    /// answers once traffic and the singletons have moved and the switch is recorded, while a
    /// process of its own stops the old color, holding the deploy lock until it is done (a
    /// ztd-up or ztd-rollback meanwhile waits for it; its log: .ztd/stop-old.log)
    #[arg(long, value_name = "WHEN", env = "ZTD_STOP_OLD", default_value = "wait", value_parser = cli::stop_old_arg)]
    stop_old: StopOld,
    /// The background stop itself (started by a switch with --stop-old background)
    #[arg(long, hide = true, requires = "lock_fd", conflicts_with_all = ["color", "to", "force", "resume"])]
    finish_stop_old: bool,
    /// The deploy lock the background stop inherits
    #[arg(long, hide = true, value_name = "FD", requires = "finish_stop_old")]
    lock_fd: Option<i32>,
    #[command(flatten)]
    switch: SwitchArgs,
    #[command(flatten)]
    stack: StackArgs,
}

fn main() -> ExitCode {
    let cli = match cli::parse_args::<Cli>("ztd-switch") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.stack.orchestrator == ztd_core::swarm::Orchestrator::Swarm {
        let options = ztd_core::swarm::ops::SwarmSwitchOptions {
            to: cli.color.or(cli.to),
            force: cli.force,
            resume: cli.resume,
            health_deadline: cli.switch.health.deadline(cli.switch.health_timeout),
            stop_timeout: cli.switch.stop_timeout,
        };
        let unsupported = [
            (
                "--stop-old background",
                cli.stop_old == ztd_core::switch::StopOld::Background,
            ),
            ("--finish-stop-old", cli.finish_stop_old),
        ];
        return ztd_core::swarm::tools::switch("ztd-switch", cli.stack, options, &unsupported);
    }
    cli::run("ztd-switch", || async move {
        signals::install();
        let named = cli.color.or(cli.to);
        let reads_upstream = !cli.resume && !cli.finish_stop_old;
        let (stack, to) = match cli::context(&cli.stack, named, reads_upstream, true).await? {
            Context::PassOn(upstream) => return Ok(Printed::json(&upstream)),
            Context::Act { stack, color, .. } => (stack, color),
        };
        let engine = DockerEngine::connect().await.in_project(&stack)?;
        let mut options = cli.switch.options(to, cli.force);
        options.stop_old = cli.stop_old;
        if let (true, Some(fd)) = (cli.finish_stop_old, cli.lock_fd) {
            DeployLock::inherited(&stack, fd).in_project(&stack)?;
            let finished = finish_stop_old(&engine, &stack, &options)
                .await
                .in_project(&stack)?;
            return Ok(Printed::json(&Report::new(
                "ztd-switch",
                &stack,
                finished.target(),
                finished,
            )));
        }
        if cli.resume {
            let resumed = resume(&engine, &stack, &options).await.in_project(&stack)?;
            return Ok(Printed::json(&Report::new(
                "ztd-switch",
                &stack,
                resumed.target(),
                resumed,
            )));
        }
        // For the ztd.hook.* commands, run in one-off containers of the colors' projects.
        if hooks::may_have_hooks(&stack) {
            let compose = Compose::find().await.in_project(&stack)?;
            options.compose = Some(compose.on(engine.endpoint()));
        }
        fault::pause("switch:before").await;
        let switched = switch(&engine, &stack, &options).await.in_project(&stack)?;
        Ok(Printed::json(&Report::new(
            "ztd-switch",
            &stack,
            switched.target(),
            switched,
        )))
    })
}
