//! `autoscale.rate.up` and `autoscale.rate.period`: a scale-up rate limit in
//! the style of the Kubernetes HPA's `behavior.scaleUp.policies`.

use std::time::Duration;

/// The period of a rate limit when `autoscale.rate.period` is not set: the
/// HPA's default (and its sync period).
pub const DEFAULT_RATE_PERIOD: Duration = Duration::from_secs(15);

/// At most `percent` % more replicas, or `replicas` more (the larger of the
/// two when both are set, as the HPA's `selectPolicy: Max`), than the
/// service had at the start of the last `period`. Neither set: no limit
/// (`autoscale.rate.up=none`, to turn off a daemon-wide default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpRate {
    /// Per cent of the replicas at the start of the period.
    pub percent: Option<u32>,
    /// Replicas.
    pub replicas: Option<u32>,
    /// The period both count over.
    pub period: Duration,
}

impl UpRate {
    /// The most replicas allowed with `base` at the start of the period
    /// (at least 1 counted); `u32::MAX` without a limit.
    pub fn allowed(&self, base: u32) -> u32 {
        let base = u64::from(base.max(1));
        let by_share = self.percent.map(|p| (base * (100 + u64::from(p))).div_ceil(100));
        let by_count = self.replicas.map(|n| base + u64::from(n));
        by_share.max(by_count).map_or(u32::MAX, |most| u32::try_from(most).unwrap_or(u32::MAX))
    }

    /// No limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.percent.is_none() && self.replicas.is_none()
    }

    /// The label's value for this rate, without the period (`100%,4`).
    pub fn value(&self) -> String {
        match (self.percent, self.replicas) {
            (None, None) => "none".into(),
            (Some(p), None) => format!("{p}%"),
            (None, Some(n)) => n.to_string(),
            (Some(p), Some(n)) => format!("{p}%,{n}"),
        }
    }

    /// Parse `100%`, `4`, `100%,4` (either order) or `none`, over `period`.
    pub fn parse(value: &str, period: Duration) -> Result<UpRate, String> {
        let mut rate = UpRate { percent: None, replicas: None, period };
        let value = value.trim();
        if value.eq_ignore_ascii_case("none") {
            return Ok(rate);
        }
        const EXPECTED: &str =
            "is not a scale-up rate: a share (100%), a replica count (4), both (100%,4: the larger), or none";
        for part in value.split(',').map(str::trim) {
            let (slot, digits) = match part.strip_suffix('%') {
                Some(digits) => (&mut rate.percent, digits.trim()),
                None => (&mut rate.replicas, part),
            };
            match digits.parse::<u32>() {
                Ok(n) if n >= 1 && slot.is_none() => *slot = Some(n),
                _ => return Err(EXPECTED.to_string()),
            }
        }
        Ok(rate)
    }
}

impl std::fmt::Display for UpRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {}", self.value(), crate::units::human_duration(self.period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = DEFAULT_RATE_PERIOD;

    #[test]
    fn parses_a_share_a_count_both_or_none() {
        assert_eq!(UpRate::parse("100%", P), Ok(UpRate { percent: Some(100), replicas: None, period: P }));
        assert_eq!(UpRate::parse(" 4 ", P), Ok(UpRate { percent: None, replicas: Some(4), period: P }));
        assert_eq!(UpRate::parse("4, 100%", P), Ok(UpRate { percent: Some(100), replicas: Some(4), period: P }));
        assert!(UpRate::parse("none", P).expect("a rate").is_unlimited());
        for text in ["100%", "4", "100%,4", "none"] {
            assert_eq!(UpRate::parse(text, P).expect("a rate").value(), text, "round trip");
        }
        for bad in ["", "0", "0%", "-1", "fast", "4,5", "100%,50%", "4 replicas"] {
            assert!(UpRate::parse(bad, P).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_larger_of_share_and_count_allows() {
        // The HPA's default: +100% or +4, the larger.
        let hpa = UpRate::parse("100%,4", P).expect("a rate");
        assert_eq!([1, 2, 4, 5, 10].map(|b| hpa.allowed(b)), [5, 6, 8, 10, 20]);
        // A share rounds up: 50% of 3 is 1.5, so 5.
        assert_eq!(UpRate::parse("50%", P).expect("a rate").allowed(3), 5);
        assert_eq!(UpRate::parse("none", P).expect("a rate").allowed(3), u32::MAX);
    }
}
