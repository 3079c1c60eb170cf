//! `host status`: the client that asks a daemon for its `/status`, and
//! the report as text for people.

use std::fmt::Write as _;
use std::time::Duration;

use super::StatusReport;
use crate::units::human_duration;

/// `host status` as text: one block per service.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "autoscaler {} ({}); policies: {}",
        report.version,
        if report.ready { "ready" } else { "not ready" },
        if report.policies.is_empty() { "none".to_string() } else { report.policies.join(", ") }
    );
    if let Some(c) = &report.cluster {
        let _ = writeln!(
            out,
            "cluster: {}{}; agent {}; measuring {} container{}",
            c.role,
            match (c.role.as_str(), c.deciding) {
                ("manager", true) => ", deciding",
                ("manager", false) => ", not deciding",
                _ => "",
            },
            c.decider.as_ref().map_or("not connected to a decider".to_string(), |d| format!("connected to {d}")),
            c.tracking,
            if c.tracking == 1 { "" } else { "s" }
        );
        if !c.nodes.is_empty() {
            let nodes: Vec<String> = c
                .nodes
                .iter()
                .map(|n| format!("{} ({})", n.hostname, n.id.chars().take(12).collect::<String>()))
                .collect();
            let _ = writeln!(out, "nodes reporting: {}", nodes.join(", "));
        }
    }
    if let Some(a) = report.audit.as_ref().filter(|a| a.lost_records > 0 || a.failing.is_some()) {
        let now = a.failing.as_ref().map_or("writable again".to_string(), |e| format!("failing now: {e}"));
        let _ = writeln!(out, "audit log {}: {} record(s) lost ({now})", a.path, a.lost_records);
    }
    if report.services.is_empty() {
        let _ = writeln!(out, "no service has autoscale labels");
    }
    for s in &report.services {
        let _ = writeln!(out, "\n{}", s.service);
        let policy = match (&s.policy, &s.policy_version) {
            (Some(p), Some(v)) => format!(
                "{p} (version {v}{})",
                s.contract.as_ref().map(|c| format!(", contract {c}")).unwrap_or_default()
            ),
            (Some(p), None) => format!("{p} (not loaded)"),
            (None, _) => "none".to_string(),
        };
        let _ = writeln!(out, "  state:     {}", if s.autoscaled { "autoscaled" } else { "not autoscaled" });
        let _ = writeln!(out, "  policy:    {policy}");
        if let (Some(min), Some(max)) = (s.min, s.max) {
            let replicas = s.current_replicas.map(|n| format!("{n}")).unwrap_or_else(|| "?".into());
            let desired = match s.desired_replicas {
                Some(d) if Some(d) != s.current_replicas => format!(", desired {d}"),
                _ => String::new(),
            };
            let _ = writeln!(out, "  replicas:  {replicas}{desired} (bounds {min}..={max})");
        }
        // Metric names line up with each other, and with the other labels
        // while they are short.
        let width = s.metrics.iter().map(|m| m.metric.len() + 1).max().unwrap_or(0).max(10);
        for m in &s.metrics {
            let aggregate = match m.aggregate {
                Some(a) => format!(
                    "service mean {} (min {}, max {}) over {} replica{}",
                    value(a.mean, &m.unit),
                    value(a.min, &m.unit),
                    value(a.max, &m.unit),
                    m.reporting,
                    if m.reporting == 1 { "" } else { "s" }
                ),
                None => "no service aggregate yet".to_string(),
            };
            let warming = if m.warming > 0 { format!(", {} warming up", m.warming) } else { String::new() };
            let _ = writeln!(
                out,
                "  {:<width$} latest {} ({}); {aggregate}{warming}",
                format!("{}:", m.metric),
                value(m.latest, &m.unit),
                m.latest_container
            );
        }
        match &s.last_decision {
            Some(d) => {
                let change = match (d.from, d.to, d.requested) {
                    (Some(f), Some(t), _) => format!("{f} -> {t}"),
                    (_, _, Some(r)) => format!("asked {r}"),
                    _ => String::new(),
                };
                let why = d.skip.as_ref().map(|s| format!(": {s}")).unwrap_or_default();
                let times = if d.repeated > 1 {
                    format!(" ({} times since the last change)", d.repeated)
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  last:      {} {change}{why}{times}; policy: {}", d.outcome, d.reason);
            }
            None if s.autoscaled => {
                let _ = writeln!(out, "  last:      no decision yet");
            }
            None => {}
        }
        if s.autoscaled {
            let cooldown = |ms: u64| {
                if ms == 0 {
                    "ready".to_string()
                } else {
                    format!("{} to go", human_duration(Duration::from_millis(ms)))
                }
            };
            let _ = writeln!(
                out,
                "  cooldown:  up {}, down {}",
                cooldown(s.cooldown_up_remaining_ms),
                cooldown(s.cooldown_down_remaining_ms)
            );
        }
        if let Some(z) = &s.zero {
            let ago = human_duration(Duration::from_millis(report.now_unix_ms.saturating_sub(z.time_unix_ms)));
            let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
            let detail = match (z.state.as_str(), z.wake_us) {
                ("woken", Some(wake)) => {
                    format!("connection to unpaused in {} (unpause {})", ms(wake), ms(z.docker_us))
                }
                ("frozen", _) => format!("{} (pause {})", z.reason, ms(z.docker_us)),
                ("thawed", _) => format!("{} (unpause {})", z.reason, ms(z.docker_us)),
                ("removed", _) if z.docker_us > 0 => format!("{} (service update {})", z.reason, ms(z.docker_us)),
                ("restored", Some(wake)) => {
                    format!("connection attempt to listening in {} (service update {})", ms(wake), ms(z.docker_us))
                }
                _ => z.reason.clone(),
            };
            let replica = if z.container.is_empty() { String::new() } else { format!(", replica {}", z.container) };
            let _ = writeln!(out, "  zero:      {} {ago} ago{replica}: {detail}", z.state);
        }
        for p in &s.problems {
            let _ = writeln!(out, "  problem:   {p}");
        }
        for w in &s.warnings {
            let _ = writeln!(out, "  warning:   {w}");
        }
    }
    out
}

/// The largest answer `host status` reads (64 MiB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// `host status --watch`: redraw the text every `every` until interrupted.
/// A daemon that stops answering is said on the screen, and asked again.
pub fn watch(addr: &str, service: Option<&str>, every: Duration) -> anyhow::Result<()> {
    let path = match service {
        Some(name) => format!("/status/{name}"),
        None => "/status".to_string(),
    };
    loop {
        let screen = match get(addr, &path) {
            Ok((200, body)) => match serde_json::from_str::<StatusReport>(&body) {
                Ok(report) => render_text(&report),
                Err(err) => format!("the daemon on {addr} sent a status this host cannot read: {err}\n"),
            },
            Ok((code, body)) => format!("the daemon on {addr} answered {code} to {path}: {}\n", body.trim()),
            Err(err) => format!("{err:#}\n"),
        };
        // Clear the screen and home the cursor, then draw; a closed
        // terminal or pipe ends the watch.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if write!(out, "\x1b[2J\x1b[H{screen}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        std::thread::sleep(every);
    }
}

/// How long `host status` waits for the daemon.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on the daemon's endpoint at `addr`: the status code and body.
fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use anyhow::Context;
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr:?} is not an address like 127.0.0.1:9464"))?
        .next()
        .with_context(|| format!("{addr} names no address"))?;
    let mut conn = std::net::TcpStream::connect_timeout(&target, CLIENT_TIMEOUT).with_context(|| {
        format!("no autoscaler answers on {addr}; is the daemon running, and is --addr its --metrics-addr?")
    })?;
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    // A daemon's answer is a few KiB per service; anything past the cap is
    // not one, and must not fill this process's memory.
    let read = conn
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    anyhow::ensure!(read as u64 <= MAX_ANSWER_BYTES, "the answer of {addr} is over {MAX_ANSWER_BYTES} bytes");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}

/// `host status [SERVICE]`: ask the daemon at `addr` and print its answer,
/// as text or as its JSON. `Ok(false)`: the service is unknown to it.
pub fn print(addr: &str, service: Option<&str>, json: bool) -> anyhow::Result<bool> {
    let path = match service {
        Some(name) => format!("/status/{name}"),
        None => "/status".to_string(),
    };
    let (code, body) = get(addr, &path)?;
    match code {
        200 => {}
        404 if service.is_some() => {
            eprintln!("{}", body.trim());
            return Ok(false);
        }
        _ => anyhow::bail!("the daemon on {addr} answered {code} to {path}: {}", body.trim()),
    }
    if json {
        println!("{body}");
        return Ok(true);
    }
    let report: StatusReport = serde_json::from_str(&body)
        .map_err(|err| anyhow::anyhow!("the daemon on {addr} sent a status this host cannot read: {err}"))?;
    print!("{}", render_text(&report));
    Ok(true)
}

/// A value with its unit, for people.
fn value(v: f64, unit: &str) -> String {
    match unit {
        "fraction-of-limit" => format!("{:.0}% of limit", v * 100.0),
        "cores" => format!("{v:.2} cores"),
        "bytes" => format!("{:.1} MiB", v / 1_048_576.0),
        "connections" | "count" => format!("{v:.0}"),
        other => format!("{v:.3} {other}"),
    }
}
