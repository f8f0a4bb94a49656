//! Parsers for the units users type: durations ("30s", "500ms", "1m30s", bare seconds),
//! sizes ("256MiB", "512m") and memory limits given as a size or a percentage.

use std::time::Duration;

/// Parse a duration. A bare number is seconds, as the original scripts' variables were.
/// Accepts `ms`, `s`, `m`, `h` units, fractions (`1.5s`) and sums (`1m30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let input = text.trim();
    if input.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = input.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("bad duration {text:?}: missing unit"))?;
        if number_len == 0 {
            return Err(format!(
                "bad duration {text:?}: expected a number such as 30s, 500ms or 2m"
            ));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            unit => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ));
            }
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(format!("bad duration {text:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration setting from the environment: unset or empty gives `default`; a bad value (or
/// zero, which would make every wait fail at once) is refused with the variable's name.
pub fn duration_from_env(name: &str, default: Duration) -> Result<Duration, String> {
    duration_setting(name, std::env::var(name).ok().as_deref(), default)
}

/// The parsing behind [`duration_from_env`], for a value already read.
pub fn duration_setting(
    name: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!("{name}: must be more than zero")),
            Ok(d) => Ok(d),
            Err(e) => Err(format!("{name}: {e}")),
        },
    }
}

/// Format a deadline as a user would write it: `10s`, `10m`, `1h`, else as [`format_duration`].
pub fn format_deadline(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        let secs = d.as_secs();
        if secs > 0 && secs % 3600 == 0 {
            return format!("{}h", secs / 3600);
        }
        if secs > 0 && secs % 60 == 0 {
            return format!("{}m", secs / 60);
        }
        return format!("{secs}s");
    }
    format_duration(d)
}

/// Format a duration for humans: `850ms`, `12.3s`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A duration in milliseconds, rounded to the microsecond, for JSON reports.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Milliseconds since `started`, rounded to microseconds.
pub fn millis_since(started: std::time::Instant) -> f64 {
    millis(started.elapsed())
}

/// Parse a byte size: `512`, `64k`, `256m`, `1g`, `256MiB`, `1GB` (powers of 1024, as Docker).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let input = text.trim();
    let split = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let number: f64 = input[..split]
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected a number such as 256MiB"))?;
    let factor: u64 = match input[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        unit => {
            return Err(format!(
                "bad size {text:?}: unknown unit {unit:?} (use k, m or g)"
            ));
        }
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("bad size {text:?}: out of range"));
    }
    Ok(bytes as u64)
}

/// A memory ceiling: a share of the container's limit, or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLimit {
    /// Percent of the container's memory limit (or of the host's memory when it has none).
    Percent(f64),
    /// Bytes of resident memory.
    Bytes(u64),
}

impl MemoryLimit {
    /// Parse `80%` or a size such as `256MiB`.
    pub fn parse(text: &str) -> Result<MemoryLimit, String> {
        match text.trim().strip_suffix('%') {
            Some(number) => Ok(MemoryLimit::Percent(parse_percent(number)?)),
            None => parse_size(text).map(MemoryLimit::Bytes),
        }
    }

    /// Whether `usage` of `limit` bytes is over this ceiling.
    pub fn exceeded(&self, usage: u64, limit: u64) -> bool {
        match *self {
            MemoryLimit::Percent(pct) => limit > 0 && usage as f64 * 100.0 / limit as f64 > pct,
            MemoryLimit::Bytes(max) => usage > max,
        }
    }
}

impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryLimit::Percent(p) => write!(f, "{p}%"),
            MemoryLimit::Bytes(b) => write!(f, "{}", format_bytes(*b)),
        }
    }
}

/// Parse a percentage (`80`, `80%`, `150.5`); CPU may exceed 100 on several cores.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(format!(
            "bad percentage {text:?}: expected a number such as 80"
        )),
    }
}

/// Format bytes for humans, in powers of 1024.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_accepted_form() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in ["", "abc", "5x", "-1", "s", "1s2", "1e999", "ms5"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn duration_settings_default_parse_and_refuse_with_the_name() {
        let ten = Duration::from_secs(10);
        assert_eq!(duration_setting("X", None, ten), Ok(ten));
        assert_eq!(duration_setting("X", Some(""), ten), Ok(ten));
        assert_eq!(
            duration_setting("X", Some(" 2s "), ten),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            duration_setting("X", Some("1m"), ten),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            duration_setting("X", Some("15"), ten),
            Ok(Duration::from_secs(15))
        );
        for bad in ["soon", "10x", "-1", "0", "0s"] {
            let err = duration_setting("ZTD_ENGINE_TIMEOUT", Some(bad), ten).expect_err(bad);
            assert!(err.starts_with("ZTD_ENGINE_TIMEOUT: "), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn deadlines_read_as_they_are_written() {
        assert_eq!(format_deadline(Duration::from_secs(10)), "10s");
        assert_eq!(format_deadline(Duration::from_secs(600)), "10m");
        assert_eq!(format_deadline(Duration::from_secs(90)), "90s");
        assert_eq!(format_deadline(Duration::from_secs(7200)), "2h");
        assert_eq!(format_deadline(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_deadline(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn sizes_and_memory_limits() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(MemoryLimit::parse("80%"), Ok(MemoryLimit::Percent(80.0)));
        assert_eq!(MemoryLimit::parse("1m"), Ok(MemoryLimit::Bytes(1 << 20)));
        assert!(MemoryLimit::parse("x%").is_err());
        assert!(MemoryLimit::Percent(50.0).exceeded(60, 100));
        assert!(!MemoryLimit::Percent(50.0).exceeded(40, 100));
        assert!(MemoryLimit::Bytes(10).exceeded(11, 0));
    }

    #[test]
    fn human_formats() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(format_bytes(1536), "1.5KiB");
        assert_eq!(format_bytes(12), "12B");
    }
}
