//! The Kubernetes HPA's proportional rule, `desired = ceil(current * metric
//! / target)`, with its tolerance, and the float error a ratio carries.
//!
//! `3 * 0.8 / 0.6` is 4.000000000000001 in `f64`, and a plain `ceil` makes
//! that 5 replicas where the arithmetic says 4. [`ceil`] takes a value
//! within [`FLOAT_SLACK`] (relative) of a whole number as that number.

/// How far (relative to the value) above a whole number a product may be
/// and still count as that number: a few `f64` ulps of rounding error, far
/// below any difference a metric can make.
pub const FLOAT_SLACK: f64 = 1e-9;

/// Kubernetes' default tolerance: the HPA holds while `metric / target` is
/// within 10 % of 1.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// `x` rounded up, taking a value within [`FLOAT_SLACK`] of a whole number
/// as that number; saturates at the ends of `i64` (NaN gives 0).
///
/// ```
/// assert_eq!(autoscaler_sdk::hpa::ceil(3.0 * 0.8 / 0.6), 4);
/// assert_eq!(autoscaler_sdk::hpa::ceil(4.2), 5);
/// ```
pub fn ceil(x: f64) -> i64 {
    if x.is_nan() {
        return 0;
    }
    let near = x.round();
    let up = if (x - near).abs() <= FLOAT_SLACK * near.abs().max(1.0) { near } else { x.ceil() };
    if up >= i64::MAX as f64 {
        i64::MAX
    } else if up <= i64::MIN as f64 {
        i64::MIN
    } else {
        up as i64
    }
}

/// The HPA rule for `current` replicas whose metric is `metric` against
/// `target`: `current` while `metric / target` is within `tolerance` of 1
/// (say [`DEFAULT_TOLERANCE`]), else `ceil(current * metric / target)`
/// without the float error (see [`ceil`]). A `target` that is not above 0,
/// or a metric that is not a number, gives `current`. The result is not
/// bounded by min/max: the daemon clamps.
///
/// ```
/// use autoscaler_sdk::hpa::hpa_desired;
/// assert_eq!(hpa_desired(3, 0.8, 0.6, 0.1), 4);
/// assert_eq!(hpa_desired(3, 0.62, 0.6, 0.1), 3); // within the tolerance
/// ```
pub fn hpa_desired(current: u32, metric: f64, target: f64, tolerance: f64) -> u32 {
    if target.is_nan() || target <= 0.0 || !metric.is_finite() {
        return current;
    }
    let ratio = metric / target;
    if (ratio - 1.0).abs() <= tolerance {
        return current;
    }
    let desired = ceil(f64::from(current) * metric / target);
    u32::try_from(desired.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_error_does_not_add_a_replica() {
        let x = 3.0 * 0.8 / 0.6;
        assert!(x > 4.0, "the float error this guards against: {x}");
        assert_eq!(ceil(x), 4);
        assert_eq!(hpa_desired(3, 0.8, 0.6, 0.0), 4);
        assert_eq!(ceil(4.01), 5);
        assert_eq!(ceil(3.999_999_999_9), 4);
        assert_eq!(ceil(-0.5), 0);
        assert_eq!(ceil(f64::NAN), 0);
        assert_eq!(ceil(1e300), i64::MAX);
    }

    #[test]
    fn the_tolerance_holds_and_the_rule_scales_both_ways() {
        assert_eq!(hpa_desired(4, 0.54, 0.5, 0.1), 4, "ratio 1.08 is within 10 %");
        assert_eq!(hpa_desired(4, 0.56, 0.5, 0.1), 5, "ceil(4 * 1.12) = 5");
        assert_eq!(hpa_desired(4, 0.1, 0.5, 0.1), 1, "ceil(4 * 0.2) = 1");
        assert_eq!(hpa_desired(4, 0.0, 0.5, 0.1), 0, "the daemon clamps to min");
        assert_eq!(hpa_desired(4, 0.9, 0.0, 0.1), 4, "no target, no change");
        assert_eq!(hpa_desired(4, f64::NAN, 0.5, 0.1), 4);
    }
}
