//! ztd-testapp: a tiny static HTTP server whose behaviour is set by environment, so ztd's tests
//! and demo can run real containers that are healthy, slow to start, failing, hanging, crashing,
//! logging errors, eating memory, or a singleton worker waiting to be activated.

mod config;
mod dns;
mod http;
mod load;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("serve");
    let rest = args.get(1..).unwrap_or_default();
    match command {
        "serve" => server::serve(),
        "probe" => probe(rest),
        "activate" => signal_main("SIGUSR1"),
        "drain" => signal_main("SIGUSR2"),
        "load" => load::run(rest),
        "sleep" => {
            let pause = rest
                .first()
                .and_then(|d| config::duration(d))
                .unwrap_or_default();
            std::thread::sleep(pause);
            ExitCode::SUCCESS
        }
        "exit" => {
            let code = rest.first().and_then(|c| c.parse::<u8>().ok()).unwrap_or(0);
            ExitCode::from(code)
        }
        "env" => {
            for name in rest {
                println!("{name}={}", std::env::var(name).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        "-h" | "--help" | "help" => {
            print!("{}", config::HELP);
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("ztd-testapp: unknown command {other:?} (see ztd-testapp --help)");
            ExitCode::from(2)
        }
    }
}

/// `probe [PATH]`: GET http://127.0.0.1:$PORT/PATH; exit 0 on 2xx, 1 otherwise. A HEALTHCHECK
/// for an image with no shell and no curl.
fn probe(args: &[String]) -> ExitCode {
    let path = args.first().map(String::as_str).unwrap_or("/health");
    let port = config::port();
    match http::get(
        &format!("127.0.0.1:{port}"),
        path,
        std::time::Duration::from_secs(2),
    ) {
        Ok((status, _)) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("probe: {path} answered {status}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("probe: {path}: {err}");
            ExitCode::from(1)
        }
    }
}

/// `activate` / `drain`: signal the server (PID 1 in its container).
fn signal_main(name: &str) -> ExitCode {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let signal = if name == "SIGUSR1" {
        Signal::SIGUSR1
    } else {
        Signal::SIGUSR2
    };
    let pid = std::env::var("TESTAPP_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ztd-testapp: cannot signal pid {pid}: {err}");
            ExitCode::from(1)
        }
    }
}
