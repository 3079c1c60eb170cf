//! The one grammar for values people write: durations, booleans and
//! quantities, the same in flags, environment variables and service labels.
//!
//! A leaf module: it imports nothing from the crate, and every other module
//! that reads a human-written value calls it, so `--cooldown-up 30s`,
//! `AUTOSCALER_PROBE_WINDOW=100ms` and `autoscale.cooldown.up=30s` accept
//! and refuse exactly the same text.

use std::time::Duration;

/// What a duration looks like, quoted in every refusal.
pub const DURATION_FORMS: &str = "a number with a unit: us, ms, s, m or h (250us, 500ms, 30s, 2m, 1h), or 0";

/// The longest duration accepted anywhere.
const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Parse a duration: a number with a unit (`us`, `µs`, `ms`, `s`, `m`,
/// `min`, `h`), or `0` alone. A bare non-zero number is refused: seconds or
/// milliseconds would be a guess. At most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<f64>() else {
        return Err(format!("is not a duration; write {DURATION_FORMS}"));
    };
    let scale = match unit.trim() {
        "" if number == 0.0 => 0.0,
        "" => return Err(format!("has no unit; write {DURATION_FORMS}")),
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("has an unknown unit {other:?}; write {DURATION_FORMS}")),
    };
    let seconds = number * scale;
    if !seconds.is_finite() || seconds > MAX_DURATION.as_secs_f64() {
        return Err("is out of range; give at most a day".to_string());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// [`parse_duration`] for values where zero makes no sense (a window, an
/// interval, an age bound).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("must be above zero; write {DURATION_FORMS}")),
        duration => Ok(duration),
    }
}

/// What a boolean looks like, quoted in every refusal.
pub const BOOL_FORMS: &str = "true or false (also yes/no, on/off, 1/0)";

/// Parse a boolean: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The SDK's quantity parser, compiled into the daemon from the same file
/// so that the daemon and the policies read quantities alike: plain
/// numbers, SI suffixes `k M G T`, binary suffixes `Ki Mi Gi Ti`.
#[path = "../../sdk/src/settings.rs"]
#[allow(dead_code, reason = "the daemon uses parse_quantity only; SettingError serves policies")]
mod quantity;

pub use quantity::parse_quantity;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_except_zero() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 250us "), Ok(Duration::from_micros(250)));
        let bare = parse_duration("15").expect_err("a bare number is a guess");
        assert!(bare.contains("no unit") && bare.contains("500ms"), "{bare}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("25h").is_err());
    }

    #[test]
    fn positive_durations_refuse_zero() {
        assert_eq!(parse_positive_duration("100ms"), Ok(Duration::from_millis(100)));
        assert!(parse_positive_duration("0").expect_err("zero").contains("above zero"));
        assert!(parse_positive_duration("15").is_err());
    }

    #[test]
    fn booleans_and_quantities() {
        assert_eq!(parse_bool(" Yes "), Some(true));
        assert_eq!(parse_bool("OFF"), Some(false));
        assert_eq!(parse_bool("enabled"), None);
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
    }
}
