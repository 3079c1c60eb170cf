//! The one grammar for values people write: durations, booleans, numbers
//! and quantities, the same in flags, environment variables, service labels
//! and the SDK.
//!
//! A leaf module: the grammar itself lives in `sdk/src/settings.rs`, compiled
//! into the daemon here from the same file, so `--cooldown-up 30s`,
//! `AUTOSCALER_PROBE_WINDOW=100ms`, `autoscale.cooldown.up=30s` and a policy
//! author's `StateBuilder::label("cooldown", "30s")` accept and refuse
//! exactly the same text. Messages name what is wrong, not the value: the
//! callers (clap, the label parser) quote it.

use std::time::Duration;

#[path = "../../sdk/src/settings.rs"]
mod grammar;

pub use grammar::{BOOL_FORMS, DURATION_FORMS, parse_bool, parse_duration, parse_number, parse_quantity};

/// [`parse_duration`] for values where zero makes no sense (a window, an
/// interval, an age bound).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("must be above zero; write {DURATION_FORMS}")),
        duration => Ok(duration),
    }
}

/// A duration for people, rounded: `850ms`, `2.3s`, `45s`, `2m30s`, `1h5m`.
/// Never Rust's Debug form (`2.345678912s`).
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 if d.is_zero() => "0s".to_string(),
        0 => format!("{}us", d.as_micros()),
        1..=999 => format!("{ms}ms"),
        1_000..=9_999 => {
            let tenths = (ms + 50) / 100;
            match tenths % 10 {
                0 => format!("{}s", tenths / 10),
                tenth => format!("{}.{tenth}s", tenths / 10),
            }
        }
        10_000..=59_999 => format!("{}s", (ms + 500) / 1000),
        60_000..=3_599_999 => {
            let s = (ms + 500) / 1000;
            match s % 60 {
                0 => format!("{}m", s / 60),
                secs => format!("{}m{secs}s", s / 60),
            }
        }
        _ => {
            let m = (ms + 30_000) / 60_000;
            match m % 60 {
                0 => format!("{}h", m / 60),
                mins => format!("{}h{mins}m", m / 60),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_for_people_are_rounded() {
        let f = |ms: u64| human_duration(Duration::from_millis(ms));
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_micros(250)), "250us");
        assert_eq!(f(850), "850ms");
        assert_eq!(f(2_345), "2.3s");
        assert_eq!(f(3_000), "3s");
        assert_eq!(f(45_400), "45s");
        assert_eq!(f(150_000), "2m30s");
        assert_eq!(f(120_000), "2m");
        assert_eq!(f(3_900_000), "1h5m");
    }

    use super::*;

    #[test]
    fn durations_need_a_unit_except_zero() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 250us "), Ok(Duration::from_micros(250)));
        let bare = parse_duration("15").expect_err("a bare number is a guess");
        assert!(bare.contains("no unit") && bare.contains("500ms"), "{bare}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
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
