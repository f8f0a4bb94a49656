//! The test app's settings, all from the environment, with a small duration parser.

use std::time::Duration;

pub const HELP: &str = "\
ztd-testapp: a tiny HTTP server for ztd's tests and demo

Commands:
  serve (default)   serve HTTP on $PORT (default 8080)
  probe [PATH]      GET http://127.0.0.1:$PORT/PATH (default /health); exit 0 on 2xx
  activate          signal the server (PID 1, or $TESTAPP_PID) to become active (SIGUSR1)
  drain             signal it to stop working and go standby (SIGUSR2)
  sleep DUR         wait DUR and exit 0 (a slow drain command)
  exit CODE         exit with CODE (a hook that fails or succeeds)
  env NAME...       print NAME=value for each variable (what a hook sees)
  load URL [--interval DUR] [--stop-file PATH] [--for DUR]
                    GET URL in a loop until SIGINT/SIGTERM, the stop file or the time is up;
                    print {\"total\":N,\"failed\":N,...} on stdout

Routes: /health, /version, / (says hello; counts a visit at $UPSTREAM when set),
        /count (a shared counter), /sleep/MS (answers after MS milliseconds)

Environment (durations like 500ms, 3s):
  PORT               listen port (8080)
  VERSION            reported by /version and /
  HEALTH_FAIL=1      /health answers 503
  HEALTHY_AFTER=DUR  /health answers 503 until DUR after start
  HEALTH_HANG=1      /health never answers
  CRASH_AFTER=DUR    exit with CRASH_CODE (1) after DUR
  LOG_ERRORS=N       print N error lines at start
  LOG_ERRORS_AFTER=DUR  print the LOG_ERRORS lines DUR after start instead (a burst)
  LOG_ERROR_EVERY=DUR  print an error line every DUR
  LOG_EVERY=DUR      print a work line every DUR while active (a worker)
  STANDBY=1          start standby: no work lines until `activate`
  MEMORY_MB=N        allocate and touch N MiB at start
  STOP_DELAY=DUR     on SIGTERM, finish in-flight requests, then wait DUR before exiting
  UPSTREAM=HOST:PORT a service whose /count / calls (the shared database stand-in)
SIGTERM and SIGINT stop it gracefully: no new connections, in-flight requests finish, exit 0.
";

/// Parse `500ms`, `3s`, `2m` or bare seconds.
pub fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0 && value.is_finite()).then(|| Duration::from_secs_f64(value * factor))
}

/// A duration from the environment.
pub fn env_duration(name: &str) -> Option<Duration> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    match duration(&value) {
        Some(d) => Some(d),
        None => {
            eprintln!("ztd-testapp: ignoring {name}={value:?}: not a duration");
            None
        }
    }
}

/// A flag from the environment: set and not `0`/empty.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A number from the environment.
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The listen port.
pub fn port() -> u16 {
    env_number("PORT")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8080)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(duration("x"), None);
    }
}
