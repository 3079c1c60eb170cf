//! Reconnect back-off with jitter: the delay doubles from a base up to a
//! cap, and each wait is drawn from the upper half of the current delay so
//! that the agents of a whole swarm, cut off together when the leader
//! went away, do not all knock on the new leader in the same millisecond.

use std::time::Duration;

/// Exponential back-off with "equal jitter" (half fixed, half random).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    base: Duration,
    /// Largest delay.
    max: Duration,
    /// Failures since the last success.
    attempt: u32,
    /// xorshift64 state for the jitter; never zero.
    rng: u64,
}

impl Backoff {
    /// A back-off from `base` to `max`, seeded from the kernel.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let seed = super::auth::nonce().map(|n| u64::from_le_bytes(n[..8].try_into().unwrap_or([1; 8]))).unwrap_or(1);
        Backoff::with_seed(base, max, seed)
    }

    /// The same with a fixed seed (tests).
    pub fn with_seed(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { base, max: max.max(base), attempt: 0, rng: seed.max(1) }
    }

    /// The delay before the next attempt: in `[d/2, d]` where `d` doubles
    /// from `base` with every call, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        d / 2 + d.mul_f64(fraction / 2.0)
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The cap, for log lines.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_up_to_the_cap_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::with_seed(ms(100), ms(1000), 42);
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000];
        for d in bounds {
            let got = b.next_delay();
            assert!(got >= ms(d) / 2 && got <= ms(d), "{got:?} not within [{}, {d}] ms", d / 2);
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
    }

    #[test]
    fn two_agents_seeded_differently_do_not_wait_the_same() {
        let ms = Duration::from_millis;
        let mut a = Backoff::with_seed(ms(100), ms(5000), 1);
        let mut b = Backoff::with_seed(ms(100), ms(5000), 2);
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 10, "jitter spreads the retries");
    }

    #[test]
    fn a_long_outage_does_not_overflow() {
        let mut b = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), 7);
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }
}
