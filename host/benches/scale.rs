//! `cargo bench -p host --bench scale`: the real daemon as the decider of
//! a simulated swarm (issue 25, docs/scale.md). A fake Docker Engine API on
//! a unix socket plays the Swarm manager, real agents (many in this
//! process) send one reading a second per replica over the real channel,
//! and one service at a time gets a crossing on every replica.
//!
//! Prints one row per swarm size: readings per second the decider took,
//! reading -> decision p50/p99 (the daemon's own histogram, bucket bounds),
//! crossing -> spec written p50/p99 (the fake records the write), the
//! daemon's CPU (cores) and RSS, channel bytes per second, and what the
//! task re-reads cost (listings, tasks and KiB per second).
//!
//! `SCALE_SIZES=nodes:services:replicas,...` picks the sizes (default: the
//! issue's grid up to 100 nodes, 1,000 services, 10,000 replicas);
//! `SCALE_SECONDS` the load phase (default 20); `SCALE_HOST` another `host`
//! binary (to compare a build before a change); `SCALE_CROSSINGS` the
//! crossings per run (default one per two seconds of load);
//! `SCALE_RSS_EVERY=SECONDS` samples the daemon's RSS during the load and
//! prints its least-squares slope (MiB per hour) after a warm-up of a tenth
//! of the load (at least 60 s): the one-hour leak check.

#[allow(dead_code)] // `percentile`: the harness computes its own.
mod common;

#[path = "../../tests/scale/engine.rs"]
mod engine;
#[path = "../../tests/scale/sim.rs"]
mod sim;

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    println!("machine: {}", common::machine());
    let sizes = std::env::var("SCALE_SIZES").unwrap_or_else(|_| "1:10:10,10:100:10,10:100:100,100:1000:10".into());
    let seconds: u64 = std::env::var("SCALE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let crossings: Option<usize> = std::env::var("SCALE_CROSSINGS").ok().and_then(|s| s.parse().ok());
    let rss_every: u64 = std::env::var("SCALE_RSS_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let host = std::env::var("SCALE_HOST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_host").into());
    println!("host: {host}; load phase {seconds} s");
    println!(
        "| nodes | services | replicas | readings/s | decision p50/p99 ms | written p50/p99 ms | crossings | CPU cores | RSS MiB (peak) | channel KiB/s | task lists/s | tasks/s | task KiB/s | setup s | drops |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<(String, [f64; 5])> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    for size in sizes.split(',') {
        let n: Vec<usize> = size.split(':').filter_map(|v| v.parse().ok()).collect();
        anyhow::ensure!(n.len() == 3, "SCALE_SIZES: {size} is not nodes:services:replicas");
        let run = sim::Run {
            nodes: n[0],
            services: n[1],
            replicas: n[2],
            duration: Duration::from_secs(seconds),
            crossings: crossings.unwrap_or((seconds as usize / 2).max(1)),
            task_delay: Duration::from_millis(100),
            host: host.clone().into(),
            cache_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cache"),
            rss_every: Duration::from_secs(rss_every),
        };
        let r = runtime.block_on(sim::run(&run)).map_err(|e| anyhow::anyhow!("{size}: {e}"))?;
        let drops = r.agent_dropped as f64 + r.decider_dropped + r.other_dropped;
        println!(
            "| {} | {} | {} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {}/{} | {:.2} | {:.0} ({:.0}) | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {drops} |",
            n[0],
            n[1],
            n[1] * n[2],
            r.events_per_sec,
            r.decision_ms.0,
            r.decision_ms.1,
            r.write_ms.0,
            r.write_ms.1,
            r.crossings.1,
            r.crossings.0,
            r.cpu_cores,
            r.rss_mib.0,
            r.rss_mib.1,
            r.channel_bytes_per_sec / 1024.0,
            r.task_reads.0,
            r.task_reads.1,
            r.task_reads.2,
            r.setup_ms / 1000.0,
        );
        rows.push((
            format!("{}/{}/{}", n[0], n[1], n[1] * n[2]),
            [r.events_per_sec, r.cpu_cores, r.rss_mib.1, r.write_ms.1, r.task_reads.2],
        ));
        if !r.rss_samples.is_empty() {
            let warmup = (seconds as f64 / 10.0).max(60.0);
            let samples: Vec<String> = r.rss_samples.iter().map(|(t, m)| format!("{t:.0}:{m:.1}")).collect();
            println!("  RSS samples (s:MiB): {}", samples.join(" "));
            match sim::rss_slope(&r.rss_samples, warmup) {
                Some((slope, used)) => println!(
                    "  RSS slope after {warmup:.0} s warm-up: {slope:+.2} MiB/hour over {used} samples ({}); replicas {} -> {}",
                    if slope.abs() < 1.0 { "flat" } else { "growing" },
                    n[1] * n[2],
                    r.replicas_end,
                ),
                None => println!("  RSS slope: too few samples after {warmup:.0} s"),
            }
        }
        if !r.unknown_requests.is_empty() {
            println!("  (requests the fake engine did not serve: {:?})", r.unknown_requests);
        }
    }
    if let Ok(path) = std::env::var("SCALE_SVG") {
        std::fs::write(&path, svg(&rows))?;
        println!("plot: {path}");
    }
    Ok(())
}

/// One small chart per figure, the swarm sizes along the bottom (in the
/// order run), each figure on its own linear axis from zero. Plain SVG by
/// hand, like `host replay --svg`.
fn svg(rows: &[(String, [f64; 5])]) -> String {
    use std::fmt::Write as _;
    const TITLES: [&str; 5] = [
        "readings/s the decider took",
        "daemon CPU, cores",
        "daemon peak RSS, MiB",
        "crossing -> spec written p99, ms",
        "task re-reads, KiB/s from the engine",
    ];
    let (w, h, left, top, bottom) = (460.0, 170.0, 60.0, 30.0, 40.0);
    let panel = h + top + bottom;
    let height = panel * 3.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        2.0 * (w + left + 20.0)
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, title) in TITLES.iter().enumerate() {
        let x0 = (i % 2) as f64 * (w + left + 20.0) + left;
        let y0 = (i / 2) as f64 * panel + top;
        let max = rows.iter().map(|r| r.1[i]).filter(|v| v.is_finite()).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let _ = writeln!(out, r#"<text x="{x0}" y="{}" font-weight="bold">{title}</text>"#, y0 - 10.0);
        let _ = writeln!(out, r##"<path d="M{x0},{y0} V{} H{}" fill="none" stroke="#444"/>"##, y0 + h, x0 + w);
        let _ = writeln!(out, r#"<text x="{}" y="{}" text-anchor="end">{:.3}</text>"#, x0 - 4.0, y0 + 4.0, max);
        let _ = writeln!(out, r#"<text x="{}" y="{}" text-anchor="end">0</text>"#, x0 - 4.0, y0 + h);
        let step = w / rows.len().max(1) as f64;
        let mut points = Vec::new();
        for (k, (label, values)) in rows.iter().enumerate() {
            let x = x0 + step * (k as f64 + 0.5);
            let v = if values[i].is_finite() { values[i] } else { 0.0 };
            let y = y0 + h - h * v / max;
            points.push(format!("{x:.1},{y:.1}"));
            let _ = writeln!(out, r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#0072b2"/>"##);
            let text = if v < 10.0 { format!("{v:.2}") } else { format!("{v:.0}") };
            let _ = writeln!(out, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{text}</text>"#, y - 6.0);
            let _ = writeln!(out, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#, y0 + h + 14.0);
        }
        let _ = writeln!(out, r##"<polyline points="{}" fill="none" stroke="#0072b2"/>"##, points.join(" "));
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">nodes/services/replicas</text>"##,
            x0 + w / 2.0,
            y0 + h + 30.0
        );
    }
    out.push_str("</svg>\n");
    out
}
