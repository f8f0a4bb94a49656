//! Fault injection for the recovery tests: `ZTD_FAULT=<point>` makes a tool kill itself with
//! SIGKILL at that point of a switch or rollback, as a crash or `kill -9` would. Points are named
//! after the journal's steps: `proxy:start`, `proxy:renamed`, `proxy:done`,
//! `handover:<service>:start`, `handover:<service>:old-stopped`, `handover:<service>:done`,
//! `stop_old:start`, `stop_old:done`, `record:start`, `record:written`, `record:done`, and in an
//! undo `undo:start` (the journal says "undoing"), `undo:handover:<service>:done`,
//! `undo:proxy:start`.
//! `ZTD_PAUSE=<point>=<duration>` makes a tool wait at a point instead (after saying so on
//! stderr), so a test can send it a signal there: `switch:before` (ztd-switch, before the switch
//! begins). Compiled in only with the `fault-injection` feature (`make test` turns it on); in
//! the binaries users install every point is an empty function.

/// Die here if `ZTD_FAULT` names this point.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if std::env::var("ZTD_FAULT").is_ok_and(|f| f == name) {
        crate::warn!("ZTD_FAULT={name}: killing myself with SIGKILL");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this line is never reached.
        std::process::abort();
    }
}

/// Without fault injection: nothing happens here.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Without fault injection: nothing happens here.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn pause(_name: &str) {}

/// Wait here if `ZTD_PAUSE` names this point (`<point>=<duration>`).
#[cfg(feature = "fault-injection")]
pub async fn pause(name: &str) {
    let Ok(setting) = std::env::var("ZTD_PAUSE") else {
        return;
    };
    let Some((point, duration)) = setting.rsplit_once('=') else {
        return;
    };
    if point != name {
        return;
    }
    if let Ok(duration) = crate::units::parse_duration(duration) {
        crate::warn!("ZTD_PAUSE={setting}: pausing at {name}");
        tokio::time::sleep(duration).await;
    }
}
