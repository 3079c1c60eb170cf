//! The grammar of setting values as people write them in labels: plain
//! numbers, quantities, durations and booleans.
//!
//! A leaf module that uses only `std`: the daemon compiles this same file
//! into its `units` module (`#[path]`), so a label's value and a declared
//! default are read alike by the daemon and by the SDK's
//! `testing::StateBuilder`. Keep it free of crate paths for that reason.

use std::time::Duration;

/// Parse `0.8`, `250`, `64k`, `1.5G`, `512Mi`: SI suffixes k M G T are powers
/// of 1000, binary suffixes Ki Mi Gi Ti powers of 1024. Docker's own memory
/// forms are read as Docker reads them, in powers of 1024: `b`, `kb`, `mb`,
/// `gb`, `tb` in any case (`512MB`) and the lowercase `m`, `g`, `t`
/// (`512m`, `1g`). Returns `None` for anything else, including NaN and
/// infinities.
pub fn parse_quantity(raw: &str) -> Option<f64> {
    const KI: f64 = 1024.0;
    let raw = raw.trim();
    let split = raw.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(raw.len());
    let (number, suffix) = raw.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => KI,
        "Mi" => KI * KI,
        "Gi" => KI * KI * KI,
        "Ti" => KI * KI * KI * KI,
        // Docker's forms (`docker service create --limit-memory 512m`).
        "m" => KI * KI,
        "g" => KI * KI * KI,
        "t" => KI * KI * KI * KI,
        other => match other.to_ascii_lowercase().as_str() {
            "b" => 1.0,
            "kb" => KI,
            "mb" => KI * KI,
            "gb" => KI * KI * KI,
            "tb" => KI * KI * KI * KI,
            _ => return None,
        },
    };
    let value: f64 = number.trim().parse().ok()?;
    let value = value * factor;
    value.is_finite().then_some(value)
}

/// Parse a plain number (`0.8`, `3`, `-1`, `1e3`): no suffix, finite.
pub fn parse_number(raw: &str) -> Option<f64> {
    let raw = raw.trim();
    // `inf` and `nan` parse as f64 but are no one's setting.
    let value: f64 = raw.parse().ok()?;
    value.is_finite().then_some(value)
}

/// What a duration looks like, quoted in every refusal.
pub const DURATION_FORMS: &str = "a number with a unit: us, ms, s, m or h (250us, 500ms, 30s, 2m, 1h), or 0";

/// The longest duration accepted anywhere.
const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Parse a duration: a number with a unit (`us`, `µs`, `ms`, `s`, `m`,
/// `min`, `h`), or `0` alone. A bare non-zero number is refused: seconds or
/// milliseconds would be a guess. At most a day. The error says what is
/// wrong with the text, to follow the label's name.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("0.75"), Some(0.75));
        assert_eq!(parse_quantity(" 2k "), Some(2000.0));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("64MB"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("512m"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1g"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("100b"), Some(100.0));
        assert_eq!(parse_quantity("64XB"), None);
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("NaN"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn plain_numbers_take_no_suffix() {
        assert_eq!(parse_number(" 0.8 "), Some(0.8));
        assert_eq!(parse_number("3"), Some(3.0));
        assert_eq!(parse_number("2k"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
    }

    #[test]
    fn durations_need_a_unit_except_zero() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("15").expect_err("bare").contains("no unit"));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("25h").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
