//! The HTTP server: a thread per connection, graceful stop on SIGTERM, and the behaviours the
//! environment asks for (slow or failing health, crashes, error lines, memory, standby work).

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::config::{env_duration, env_flag, env_number, port};
use crate::http;

struct App {
    started: Instant,
    version: String,
    color: String,
    stopping: AtomicBool,
    active: AtomicBool,
    in_flight: AtomicUsize,
    counter: AtomicU64,
}

fn stamp(message: &str) {
    println!("{message}");
}

/// Run the server until SIGTERM or SIGINT.
pub fn serve() -> ExitCode {
    // Block the signals in every thread; one thread waits for them synchronously.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(s);
    }
    if let Err(err) = signals.thread_block() {
        eprintln!("ztd-testapp: cannot block signals: {err}");
        return ExitCode::from(1);
    }
    let port = port();
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("ztd-testapp: cannot listen on port {port}: {err}");
            return ExitCode::from(1);
        }
    };
    let app = Arc::new(App {
        started: Instant::now(),
        version: std::env::var("VERSION").unwrap_or_else(|_| "dev".into()),
        color: std::env::var("DEPLOYMENT_COLOR").unwrap_or_default(),
        stopping: AtomicBool::new(false),
        active: AtomicBool::new(!env_flag("STANDBY")),
        in_flight: AtomicUsize::new(0),
        counter: AtomicU64::new(0),
    });
    stamp(&format!(
        "ztd-testapp {} listening on port {port}{}",
        app.version,
        if app.active.load(Ordering::SeqCst) {
            ""
        } else {
            " (standby)"
        }
    ));
    start_behaviours(&app);
    {
        let app = Arc::clone(&app);
        std::thread::spawn(move || handle_signals(&signals, &app, port));
    }
    for stream in listener.incoming() {
        if app.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        app.in_flight.fetch_add(1, Ordering::SeqCst);
        let app = Arc::clone(&app);
        std::thread::spawn(move || {
            let _ = handle(&stream, &app);
            app.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(delay) = env_duration("STOP_DELAY") {
        std::thread::sleep(delay);
    }
    stamp("ztd-testapp stopped gracefully");
    ExitCode::SUCCESS
}

fn handle_signals(signals: &SigSet, app: &App, port: u16) {
    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                app.active.store(true, Ordering::SeqCst);
                stamp("activated: now active");
            }
            Ok(Signal::SIGUSR2) => {
                app.active.store(false, Ordering::SeqCst);
                stamp("drained: now standby");
            }
            Ok(signal) => {
                stamp(&format!(
                    "received {signal}, stopping: finishing in-flight requests"
                ));
                app.stopping.store(true, Ordering::SeqCst);
                // Wake the accept loop.
                let _ = TcpStream::connect(("127.0.0.1", port));
                return;
            }
            Err(_) => return,
        }
    }
}

fn start_behaviours(app: &Arc<App>) {
    if let Some(n) = env_number("LOG_ERRORS") {
        let delay = env_duration("LOG_ERRORS_AFTER").unwrap_or_default();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            for i in 1..=n {
                eprintln!("ERROR: simulated failure {i} of {n}");
            }
        });
    }
    if let Some(mb) = env_number("MEMORY_MB") {
        let mut hog: Vec<u8> = vec![0; (mb as usize) << 20];
        for page in hog.chunks_mut(4096) {
            page[0] = 1;
        }
        stamp(&format!("holding {mb} MiB"));
        std::mem::forget(hog);
    }
    if let Some(after) = env_duration("CRASH_AFTER") {
        let code = env_number("CRASH_CODE").unwrap_or(1) as i32;
        std::thread::spawn(move || {
            std::thread::sleep(after);
            eprintln!("CRITICAL: crashing on purpose (CRASH_AFTER)");
            std::process::exit(code);
        });
    }
    if let Some(after) = env_duration("HEALTHY_AFTER") {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            if !env_flag("HEALTH_FAIL") {
                stamp("now healthy (HEALTHY_AFTER)");
            }
        });
    }
    if let Some(every) = env_duration("LOG_ERROR_EVERY") {
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                std::thread::sleep(every);
                n += 1;
                eprintln!("ERROR: periodic simulated failure {n}");
            }
        });
    }
    if let Some(every) = env_duration("LOG_EVERY") {
        let app = Arc::clone(app);
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                std::thread::sleep(every);
                if app.active.load(Ordering::SeqCst) && !app.stopping.load(Ordering::SeqCst) {
                    n += 1;
                    stamp(&format!(
                        "working: tick {n} ({} {})",
                        app.version, app.color
                    ));
                }
            }
        });
    }
}

fn healthy(app: &App) -> bool {
    if env_flag("HEALTH_FAIL") {
        return false;
    }
    match env_duration("HEALTHY_AFTER") {
        Some(after) => app.started.elapsed() >= after,
        None => true,
    }
}

fn handle(stream: &TcpStream, app: &App) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = http::read_request(stream)?;
    if request.method.is_empty() {
        return Ok(()); // a bare connect (a TCP probe, or the wake-up at stop)
    }
    let path = request.path.as_str();
    match path {
        "/health" => {
            if env_flag("HEALTH_HANG") {
                std::thread::sleep(Duration::from_secs(3600));
            }
            if healthy(app) {
                http::respond(stream, 200, "ok\n")
            } else {
                http::respond(stream, 503, "not healthy\n")
            }
        }
        "/version" => http::respond(stream, 200, &format!("{}\n", app.version)),
        "/count" => {
            let n = app.counter.fetch_add(1, Ordering::SeqCst) + 1;
            http::respond(stream, 200, &format!("{n}\n"))
        }
        "/" => {
            let visit = match std::env::var("UPSTREAM") {
                Ok(upstream) => match http::get(&upstream, "/count", Duration::from_secs(2)) {
                    Ok((200, body)) => format!(", visit {}", body.trim()),
                    Ok((status, _)) => {
                        return http::respond(
                            stream,
                            502,
                            &format!("upstream answered {status}\n"),
                        );
                    }
                    Err(err) => return http::respond(stream, 502, &format!("upstream: {err}\n")),
                },
                Err(_) => String::new(),
            };
            let color = if app.color.is_empty() {
                String::new()
            } else {
                format!(" ({})", app.color)
            };
            http::respond(
                stream,
                200,
                &format!("hello from {}{color}{visit}\n", app.version),
            )
        }
        _ if path.starts_with("/sleep/") => {
            let ms: u64 = path["/sleep/".len()..].parse().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            http::respond(stream, 200, &format!("slept {ms}ms\n"))
        }
        _ => http::respond(stream, 404, "not found\n"),
    }
}
