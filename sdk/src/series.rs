//! [`Series`]: recent values of one figure over time, for rules that look
//! at a window (Knative's stable and panic windows, a scale-down delay).
//!
//! A policy instance lives across calls, so it may keep one series per
//! service (keyed by `state.service_id`). Both are bounded here: a series
//! keeps at most [`Series::MAX_SAMPLES`] samples, merging samples closer
//! than its resolution, and [`PerService`] keeps at most a fixed number of
//! services, forgetting the one seen least recently. A new instance (after
//! a failed call, or a reload) starts empty: rules must decide sensibly on
//! a short history.

use std::collections::{HashMap, VecDeque};

/// Values of one figure at CLOCK_MONOTONIC times (`state.now_ns`).
#[derive(Debug, Clone)]
pub struct Series {
    /// (time, value), oldest first.
    samples: VecDeque<(u64, f64)>,
    /// Samples closer than this to the newest are merged into it (the later
    /// value wins), so a burst of events costs one sample.
    resolution_ns: u64,
}

impl Series {
    /// The most samples kept; older ones are dropped first.
    pub const MAX_SAMPLES: usize = 1024;

    /// An empty series merging samples closer than `resolution_ns`.
    pub fn new(resolution_ns: u64) -> Self {
        Series { samples: VecDeque::new(), resolution_ns }
    }

    /// Record `value` at `now_ns`; forget samples older than `keep_ns`
    /// before `now_ns`. A time before the newest sample's is taken as the
    /// newest's (the clock is monotonic; a replayed trace may repeat times).
    pub fn push(&mut self, now_ns: u64, value: f64, keep_ns: u64) {
        let newest = self.samples.back().map_or(0, |s| s.0);
        let now_ns = now_ns.max(newest);
        match self.samples.back_mut() {
            Some(last) if now_ns - last.0 < self.resolution_ns => {
                last.1 = value;
                // Keep the sample's first time: a burst does not move it.
            }
            _ => self.samples.push_back((now_ns, value)),
        }
        let oldest = now_ns.saturating_sub(keep_ns);
        while self.samples.front().is_some_and(|s| s.0 < oldest) && self.samples.len() > 1 {
            self.samples.pop_front();
        }
        while self.samples.len() > Self::MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// The samples at or after `since_ns`.
    fn since(&self, since_ns: u64) -> impl Iterator<Item = f64> + '_ {
        self.samples.iter().filter(move |s| s.0 >= since_ns).map(|s| s.1)
    }

    /// The mean of the samples at or after `since_ns`; `None` if none.
    pub fn mean_since(&self, since_ns: u64) -> Option<f64> {
        let (sum, n) = self.since(since_ns).fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    /// The largest sample at or after `since_ns`; `None` if none.
    pub fn max_since(&self, since_ns: u64) -> Option<f64> {
        self.since(since_ns).reduce(f64::max)
    }

    /// The time of the oldest sample kept.
    pub fn oldest_ns(&self) -> Option<u64> {
        self.samples.front().map(|s| s.0)
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A policy's memory of each service it decides for, bounded in count.
#[derive(Debug)]
pub struct PerService<T> {
    /// By service id: the value and when it was last used (a counter).
    entries: HashMap<String, (T, u64)>,
    /// Bumped on every use.
    uses: u64,
    /// The most services kept.
    capacity: usize,
}

impl<T> PerService<T> {
    /// Keep at most `capacity` services (at least 1).
    pub fn new(capacity: usize) -> Self {
        PerService { entries: HashMap::new(), uses: 0, capacity: capacity.max(1) }
    }

    /// The entry of `service_id`, made by `make` if it has none; the
    /// service used least recently is forgotten when the map is full.
    pub fn entry(&mut self, service_id: &str, make: impl FnOnce() -> T) -> &mut T {
        self.uses += 1;
        let uses = self.uses;
        if !self.entries.contains_key(service_id) {
            if self.entries.len() >= self.capacity {
                let stalest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(id, _)| id.clone());
                if let Some(id) = stalest {
                    self.entries.remove(&id);
                }
            }
            self.entries.insert(service_id.to_owned(), (make(), uses));
        }
        // Inserted above when missing.
        let entry = self.entries.get_mut(service_id).expect("entry present");
        entry.1 = uses;
        &mut entry.0
    }

    /// How many services are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no service is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn merges_close_samples_and_forgets_old_ones() {
        let mut s = Series::new(100 * MS);
        s.push(0, 1.0, 1000 * MS);
        s.push(50 * MS, 3.0, 1000 * MS); // merged into the first
        assert_eq!(s.len(), 1);
        assert_eq!(s.mean_since(0), Some(3.0));
        s.push(200 * MS, 5.0, 1000 * MS);
        s.push(1500 * MS, 7.0, 1000 * MS); // drops the samples before 500 ms
        assert_eq!(s.oldest_ns(), Some(1500 * MS));
        assert_eq!(s.mean_since(0), Some(7.0));
    }

    #[test]
    fn mean_and_max_over_a_window() {
        let mut s = Series::new(MS);
        for (t, v) in [(0, 1.0), (10, 2.0), (20, 6.0), (30, 3.0)] {
            s.push(t * MS, v, u64::MAX);
        }
        assert_eq!(s.mean_since(10 * MS), Some(11.0 / 3.0));
        assert_eq!(s.max_since(25 * MS), Some(3.0));
        assert_eq!(s.max_since(0), Some(6.0));
        assert_eq!(s.mean_since(31 * MS), None);
    }

    #[test]
    fn stays_bounded() {
        let mut s = Series::new(1);
        for t in 0..5000u64 {
            s.push(t * 10, t as f64, u64::MAX);
        }
        assert_eq!(s.len(), Series::MAX_SAMPLES);
        assert_eq!(s.max_since(0), Some(4999.0));
    }

    #[test]
    fn forgets_the_service_used_least_recently() {
        let mut m: PerService<u32> = PerService::new(2);
        *m.entry("a", || 1) += 1;
        *m.entry("b", || 10) += 1;
        *m.entry("a", || 0) += 1; // a used last
        *m.entry("c", || 100) += 1; // b goes
        assert_eq!(m.len(), 2);
        assert_eq!(*m.entry("a", || 0), 3);
        assert_eq!(*m.entry("b", || 0), 0, "b was forgotten");
    }
}
