//! The one clock every part of the daemon agrees on: CLOCK_MONOTONIC, the
//! clock `bpf_ktime_get_ns` reads in the kernel, so event timestamps, decision
//! times and cooldowns compare directly.

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// Now, in nanoseconds since the Unix epoch: for wall-clock times Docker
/// reports, converted to [`monotonic_ns`] by their distance from now.
pub fn unix_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

/// The CLOCK_MONOTONIC time of a wall-clock instant (Unix ns), assuming
/// neither clock jumped in between; instants in the future map to now.
pub fn monotonic_of_unix(unix: i128) -> u64 {
    let ago = u64::try_from((unix_ns() - unix).max(0)).unwrap_or(u64::MAX);
    monotonic_ns().saturating_sub(ago)
}
