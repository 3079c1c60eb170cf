//! Synthetic traces, for tests and benchmarks of `host replay`: a service
//! whose total CPU load follows a function of time, spread evenly over a
//! fixed number of replicas (as a daemon in `--dry-run` would have recorded
//! it), written through the real [`Recorder`]. Shipped traces are recorded
//! from the demo, not made here.

use std::path::Path;

use crate::model::{Direction, Event, Metric, State, Unit};
use crate::swarm::ActuatorOptions;

use super::Recorder;

/// The policy name synthetic records carry: no policy answered them.
pub const SYNTHETIC: &str = "synthetic";

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// Length of the trace, s.
    pub seconds: u32,
    /// Replicas, constant over the trace.
    pub replicas: u32,
    /// Total CPU load of the service at second `t` (1.0 = one replica's
    /// limit); each replica reports its share, with a small jitter.
    pub load: fn(f64) -> f64,
    /// The service's `autoscale.*` labels without the prefix.
    pub labels: Vec<(String, String)>,
}

/// Labels of a threshold-policy service: 1-6 replicas, band 0.3-0.8,
/// cooldowns 10 s up and 30 s down.
pub fn threshold_labels() -> Vec<(String, String)> {
    [
        ("cooldown.down", "30s"),
        ("cooldown.up", "10s"),
        ("cpu.lower", "0.3"),
        ("cpu.upper", "0.8"),
        ("enable", "true"),
        ("max", "6"),
        ("min", "1"),
        ("policy", "threshold"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Write `spec` to `path` (appending, like `--record`); returns the records
/// written. Every replica reports a sample of CPU, memory and connections
/// each second (memory and connections follow its CPU), as the eBPF probe
/// does, and a crossing when its CPU crosses `cpu.upper` or `cpu.lower`.
pub fn write(path: &Path, spec: &Synthetic) -> anyhow::Result<usize> {
    const SEC: u64 = 1_000_000_000;
    let start = 3_600 * SEC;
    let number = |key: &str| spec.labels.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<f64>().ok());
    let (upper, lower) = (number("cpu.upper"), number("cpu.lower"));
    let mut recorder = Recorder::create_at(path, &ActuatorOptions::default(), start)?;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut jitter = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f64 / 1000.0 * 0.04 - 0.02
    };
    let n = spec.replicas.max(1);
    let mut last = vec![None::<f64>; n as usize];
    let mut records = 0;
    for second in 0..spec.seconds {
        let share = (spec.load)(f64::from(second)) / f64::from(n);
        let values: Vec<f64> = (0..n).map(|_| (share + jitter()).max(0.0)).collect();
        for (i, value) in values.iter().copied().enumerate() {
            let now = start + u64::from(second) * SEC + u64::try_from(i).unwrap_or(0) * (SEC / u64::from(n));
            let container = format!("{:064x}", i + 1);
            let base = Event::cpu(value).of(&container, "s1", "web").at(now - 2_000_000);
            let mut events = Vec::new();
            for threshold in [upper, lower].into_iter().flatten() {
                if let Some(before) = last[i]
                    && (before >= threshold) != (value >= threshold)
                {
                    let way = if value >= threshold { Direction::Up } else { Direction::Down };
                    events.push(base.clone().crossing(threshold, way));
                }
            }
            // The probe's periodic sample: every metric of the replica.
            let memory = |v: f64| 64e6 + 128e6 * v;
            let connections = |v: f64| (40.0 * v).round();
            events.push(base.clone());
            let mut other = base.clone();
            (other.metric, other.unit, other.value) = (Metric::Memory, Unit::Bytes, memory(value));
            events.push(other.clone());
            (other.metric, other.unit, other.value) = (Metric::Connections, Unit::Count, connections(value));
            events.push(other);
            last[i] = Some(value);
            let mut state = State::replicas(spec.replicas, 1, 6)
                .with_metric(Metric::Cpu, Unit::FractionOfLimit, &values, 0)
                .with_metric(Metric::Memory, Unit::Bytes, &values.iter().map(|v| memory(*v)).collect::<Vec<_>>(), 0)
                .with_metric(
                    Metric::Connections,
                    Unit::Count,
                    &values.iter().map(|v| connections(*v)).collect::<Vec<_>>(),
                    0,
                );
            state.now_ns = now;
            for event in events {
                // No live policy answered: the recorded policy is named
                // `synthetic`, so no replay compares itself with it.
                recorder.record(SYNTHETIC, &spec.labels, &event, &state, now + 20_000, None);
                records += 1;
            }
        }
    }
    recorder.flush();
    anyhow::ensure!(recorder.errors() == 0, "writing {} failed", path.display());
    Ok(records)
}

/// One hour of waves (10-minute period, between 0.4 and 3.2 replicas'
/// worth of CPU) over 3 replicas, three metrics each a second (about 33,000
/// calls): the benchmark's trace.
pub fn hour(path: &Path) -> anyhow::Result<usize> {
    let waves = |t: f64| 1.8 + 1.4 * (t / 600.0 * std::f64::consts::TAU).sin();
    write(path, &Synthetic { seconds: 3_600, replicas: 3, load: waves, labels: threshold_labels() })
}
