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

#[cfg(test)]
mod tests {
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
