//! Threshold crossing rules, the same in the kernel (`ebpf/probe.bpf.c`,
//! `check_band`) and in the cgroupfs probe.
//!
//! Each threshold is watched on its own: a crossing is a change of "value at
//! or above the threshold". A container starts inside its band (below the
//! upper threshold, at or above the lower one), so a first reading above the
//! upper threshold is an upward crossing and one below the lower threshold a
//! downward crossing.
//!
//! With hysteresis `h` (connections only), a value that crossed the upper
//! threshold upward crosses back only below `upper - h`, and one that
//! crossed the lower threshold downward crosses back only at `lower + h`:
//! a count hovering at a threshold does not push an event per connection.

use crate::model::{Band, Crossing, Direction};

/// Which side of its thresholds a metric was on at the last reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandState {
    /// Last value was at or above the upper threshold.
    above_upper: bool,
    /// Last value was at or above the lower threshold.
    above_lower: bool,
}

impl Default for BandState {
    fn default() -> Self {
        BandState { above_upper: false, above_lower: true }
    }
}

impl BandState {
    /// Feed one reading; returns the crossings it makes (at most two, when
    /// a value jumps over the whole band at once), upper first.
    pub fn update(&mut self, band: &Band, value: f64) -> Vec<Crossing> {
        self.update_with_hysteresis(band, value, 0.0)
    }

    /// [`BandState::update`] with hysteresis `hysteresis` (see the module).
    pub fn update_with_hysteresis(&mut self, band: &Band, value: f64, hysteresis: f64) -> Vec<Crossing> {
        let mut out = Vec::new();
        if let Some(upper) = band.upper {
            let above = if self.above_upper { value + hysteresis >= upper } else { value >= upper };
            if above != self.above_upper {
                out.push(Crossing { threshold: upper, direction: if above { Direction::Up } else { Direction::Down } });
            }
            self.above_upper = above;
        }
        if let Some(lower) = band.lower {
            let above = if self.above_lower { value >= lower } else { value >= lower + hysteresis };
            if above != self.above_lower {
                out.push(Crossing { threshold: lower, direction: if above { Direction::Up } else { Direction::Down } });
            }
            self.above_lower = above;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(v: Vec<Crossing>) -> Vec<(f64, Direction)> {
        v.into_iter().map(|c| (c.threshold, c.direction)).collect()
    }

    #[test]
    fn crossings_in_both_directions_once_each() {
        let band = Band { upper: Some(0.8), lower: Some(0.2) };
        let mut s = BandState::default();
        assert!(s.update(&band, 0.5).is_empty());
        assert_eq!(dirs(s.update(&band, 0.9)), vec![(0.8, Direction::Up)]);
        assert!(s.update(&band, 0.95).is_empty());
        assert_eq!(dirs(s.update(&band, 0.5)), vec![(0.8, Direction::Down)]);
        assert_eq!(dirs(s.update(&band, 0.1)), vec![(0.2, Direction::Down)]);
        assert!(s.update(&band, 0.0).is_empty());
        assert_eq!(dirs(s.update(&band, 0.9)), vec![(0.8, Direction::Up), (0.2, Direction::Up)]);
    }

    #[test]
    fn hysteresis_keeps_a_hovering_count_quiet() {
        let band = Band { upper: Some(10.0), lower: Some(2.0) };
        let mut s = BandState::default();
        assert_eq!(dirs(s.update_with_hysteresis(&band, 10.0, 1.0)), vec![(10.0, Direction::Up)]);
        assert!(s.update_with_hysteresis(&band, 9.0, 1.0).is_empty(), "9 + 1 is still at the threshold");
        assert!(s.update_with_hysteresis(&band, 10.0, 1.0).is_empty());
        assert_eq!(dirs(s.update_with_hysteresis(&band, 8.0, 1.0)), vec![(10.0, Direction::Down)]);
        assert_eq!(dirs(s.update_with_hysteresis(&band, 1.0, 1.0)), vec![(2.0, Direction::Down)]);
        assert!(s.update_with_hysteresis(&band, 2.0, 1.0).is_empty(), "back at lower, not lower + 1");
        assert_eq!(dirs(s.update_with_hysteresis(&band, 3.0, 1.0)), vec![(2.0, Direction::Up)]);
    }

    #[test]
    fn first_reading_outside_the_band_is_a_crossing() {
        let band = Band { upper: Some(10.0), lower: Some(2.0) };
        assert_eq!(dirs(BandState::default().update(&band, 11.0)), vec![(10.0, Direction::Up)]);
        assert_eq!(dirs(BandState::default().update(&band, 1.0)), vec![(2.0, Direction::Down)]);
        assert!(BandState::default().update(&Band::default(), 1e9).is_empty());
    }
}
