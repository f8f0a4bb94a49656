//! `ztd-testapp load`: a load loop that GETs a URL until told to stop and reports how many
//! requests failed, for the zero-downtime tests and the demo.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::config::duration;
use crate::http;

pub fn run(args: &[String]) -> ExitCode {
    let Some(url) = args.first() else {
        eprintln!("usage: ztd-testapp load URL [--interval DUR] [--stop-file PATH] [--for DUR]");
        return ExitCode::from(2);
    };
    let mut interval = Duration::from_millis(20);
    let mut stop_file = None;
    let mut limit = None;
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--interval" => interval = duration(&value).unwrap_or(interval),
            "--stop-file" => stop_file = Some(value),
            "--for" => limit = duration(&value),
            other => {
                eprintln!("load: unknown option {other}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("load: only http:// URLs");
        return ExitCode::from(2);
    };
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let _ = signals.thread_block();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = signals.wait();
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let started = Instant::now();
    let (mut total, mut failed) = (0u64, 0u64);
    let mut errors: Vec<String> = Vec::new();
    let mut worst = Duration::ZERO;
    loop {
        if stop_file
            .as_deref()
            .is_some_and(|f| std::path::Path::new(f).exists())
            || limit.is_some_and(|l| started.elapsed() >= l)
            || stop.load(std::sync::atomic::Ordering::SeqCst)
        {
            break;
        }
        let sent = Instant::now();
        total += 1;
        match http::get(host, path, Duration::from_secs(5)) {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                failed += 1;
                errors.push(format!("{status} {}", body.trim()));
            }
            Err(err) => {
                failed += 1;
                errors.push(err);
            }
        }
        worst = worst.max(sent.elapsed());
        std::thread::sleep(interval);
    }
    errors.truncate(20);
    println!(
        "{{\"total\":{total},\"failed\":{failed},\"seconds\":{:.3},\"slowest_ms\":{:.1},\"errors\":{}}}",
        started.elapsed().as_secs_f64(),
        worst.as_secs_f64() * 1000.0,
        json_strings(&errors)
    );
    ExitCode::SUCCESS
}

fn json_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            let escaped: String = s
                .chars()
                .flat_map(|c| match c {
                    '"' => "\\\"".chars().collect::<Vec<_>>(),
                    '\\' => "\\\\".chars().collect(),
                    c if c.is_control() => vec![' '],
                    c => vec![c],
                })
                .collect();
            format!("\"{escaped}\"")
        })
        .collect();
    format!("[{}]", quoted.join(","))
}
