//! Prometheus metrics: counters and histograms kept in memory and served in
//! the text exposition format on `--metrics-addr` (default 127.0.0.1:9464),
//! beside the operator's pages: `/status` (every service as JSON, what
//! `host status` prints; `/status/NAME` for one), `/healthz` (the process
//! answers) and `/readyz` (Swarm and the policies folder were read).
//!
//! Hand-rolled on purpose: a handful of families, no registry crate, no
//! globals. The daemon owns one [`Metrics`] behind an `Arc` and passes it to
//! whoever counts. Values that other parts already count (probe drops,
//! reloads) are read at scrape time through [`Metrics::set_source`].
//!
//! The endpoint is bounded against slow or hostile clients: at most
//! [`MAX_CONNECTIONS`] are served at once (others get a 503 and are closed),
//! each must send its request within [`REQUEST_TIMEOUT`] and take the answer
//! within [`WRITE_TIMEOUT`], and a failing `accept` (no descriptors left)
//! backs off instead of spinning. Rendering reads only counters and
//! lock-free policy status: it never waits for a policy call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::live::History;
use crate::status::Board;

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause after a failed `accept`.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Bucket bounds (seconds) of the `decide` latency histogram.
const DECIDE_BUCKETS: &[f64] = &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2];
/// Bucket bounds (seconds) of the freeze, thaw and wake latency histogram.
const ZERO_BUCKETS: &[f64] =
    &[1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];
/// Bucket bounds (seconds) of the kernel-to-decision latency histogram
/// (20 ms: the target of docs/scale.md can be read off it).
const PIPELINE_BUCKETS: &[f64] =
    &[1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5, 1.0, 5.0];

/// A cumulative histogram.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Render with `labels` (`policy="x",` with the trailing comma, or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let braces = labels.trim_end_matches(',');
        let braces = if braces.is_empty() { String::new() } else { format!("{{{braces}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// A value read at scrape time from another part of the daemon.
type Source = Box<dyn Fn() -> f64 + Send + Sync>;
/// Failure counts kept elsewhere, by (policy, cause), read at scrape time.
type FailureSource = Box<dyn Fn() -> Vec<((String, String), u64)> + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// `autoscaler_events_total{metric}`: a metric of the table, a
    /// signal's name, or `other` (`ProbeEvent::name`), so a bounded set.
    events: BTreeMap<&'static str, u64>,
    /// `autoscaler_decisions_total{policy,outcome}`
    decisions: BTreeMap<(String, String), u64>,
    /// `autoscaler_policy_failures_total{policy,kind}`
    failures: BTreeMap<(String, String), u64>,
    /// `autoscaler_scale_actions_total{service,direction}`
    scale_actions: BTreeMap<(String, String), u64>,
    /// `autoscaler_decide_seconds{policy}`
    decide: BTreeMap<String, Histogram>,
    /// `autoscaler_zero_seconds{op}`: freeze, thaw and wake latencies.
    zero: BTreeMap<&'static str, Histogram>,
    pipeline: Option<Histogram>,
    /// Families read from elsewhere: name -> (help, type, source).
    sources: BTreeMap<String, (String, &'static str, Source)>,
    /// Load-time failures (refused files), added to `failures` at render.
    failure_source: Option<FailureSource>,
}

/// The daemon's metrics. Cheap to share (`Arc<Metrics>`).
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { inner: Mutex::new(Inner { pipeline: Some(Histogram::new(PIPELINE_BUCKETS)), ..Inner::default() }) }
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay consistent between statements; poisoning carries no meaning.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A probe event arrived for a tracked container: `name` is its
    /// metric's name in the table, or its signal's (`ProbeEvent::name`);
    /// `'static`, so the series cannot grow a label per name a node sends.
    pub fn event_received(&self, name: &'static str) {
        bump(&mut self.lock().events, name);
    }

    /// A policy call ended with `outcome` (`scale`, `none`, `error`, ...).
    pub fn decision(&self, policy: &str, outcome: &str) {
        bump(&mut self.lock().decisions, (policy.to_string(), outcome.to_string()));
    }

    /// A policy call failed; `kind` is `PolicyError::kind()` (`timeout`,
    /// `memory`, `trap`, `refused-import`, `quarantined`, ...).
    pub fn policy_failure(&self, policy: &str, kind: &str) {
        bump(&mut self.lock().failures, (policy.to_string(), kind.to_string()));
    }

    /// The actuator changed a service's replicas.
    pub fn scale_action(&self, service: &str, direction: &str) {
        bump(&mut self.lock().scale_actions, (service.to_string(), direction.to_string()));
    }

    /// Time spent in one `decide` call of `policy`.
    pub fn observe_decide(&self, policy: &str, took: Duration) {
        let mut inner = self.lock();
        if !inner.decide.contains_key(policy) {
            inner.decide.insert(policy.to_string(), Histogram::new(DECIDE_BUCKETS));
        }
        if let Some(h) = inner.decide.get_mut(policy) {
            h.observe(took.as_secs_f64());
        }
    }

    /// Time from the kernel's timestamp to the decision being handed on.
    pub fn observe_kernel_to_decision(&self, took: Duration) {
        if let Some(h) = self.lock().pipeline.as_mut() {
            h.observe(took.as_secs_f64());
        }
    }

    /// Scale to zero: `op` took `took`: `freeze` (Docker's pause), `thaw`
    /// (its unpause), `wake` (the kernel's connection to the unpause
    /// returning), `remove` (the service update to 0 replicas), `restore`
    /// (the kernel's first held connection attempt to the new replica
    /// listening).
    pub fn observe_zero(&self, op: &'static str, took: Duration) {
        self.lock().zero.entry(op).or_insert_with(|| Histogram::new(ZERO_BUCKETS)).observe(took.as_secs_f64());
    }

    /// Export a value owned elsewhere, read at every scrape. `kind` is
    /// `counter` or `gauge`.
    pub fn set_source(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        source: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.lock().sources.insert(name.to_string(), (help.to_string(), kind, Box::new(source)));
    }

    /// Add failures counted elsewhere (the policies folder counts files it
    /// refused, by policy and cause) to `autoscaler_policy_failures_total`.
    pub fn set_failure_source(&self, source: impl Fn() -> Vec<((String, String), u64)> + Send + Sync + 'static) {
        self.lock().failure_source = Some(Box::new(source));
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        family(
            &mut out,
            "autoscaler_events_total",
            "Probe events received: readings by metric, signals by name (accepted-connections, memory-limit, wake, port-syn, port-listen).",
            "counter",
        );
        for (metric, n) in &inner.events {
            let _ = writeln!(out, "autoscaler_events_total{{metric=\"{}\"}} {n}", escape(metric));
        }
        family(&mut out, "autoscaler_decisions_total", "Policy calls, by policy and outcome.", "counter");
        for ((policy, outcome), n) in &inner.decisions {
            let _ = writeln!(
                out,
                "autoscaler_decisions_total{{policy=\"{}\",outcome=\"{}\"}} {n}",
                escape(policy),
                escape(outcome)
            );
        }
        family(&mut out, "autoscaler_policy_failures_total", "Failed policy calls, by policy and cause.", "counter");
        let mut failures = inner.failures.clone();
        let rejections = inner.failure_source.as_ref().map(|f| f()).unwrap_or_default();
        for (key, n) in &rejections {
            *failures.entry(key.clone()).or_insert(0) += n;
        }
        for ((policy, kind), n) in &failures {
            let _ = writeln!(
                out,
                "autoscaler_policy_failures_total{{policy=\"{}\",kind=\"{}\"}} {n}",
                escape(policy),
                escape(kind)
            );
        }
        family(
            &mut out,
            "autoscaler_policy_rejections_total",
            "Policy files refused or failed to load, by policy and cause.",
            "counter",
        );
        for ((policy, cause), n) in &rejections {
            let _ = writeln!(
                out,
                "autoscaler_policy_rejections_total{{policy=\"{}\",cause=\"{}\"}} {n}",
                escape(policy),
                escape(cause)
            );
        }
        family(&mut out, "autoscaler_build_info", "The daemon's version and policy contract; always 1.", "gauge");
        let _ = writeln!(
            out,
            "autoscaler_build_info{{version=\"{}\",contract=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::policy::CONTRACT_VERSION
        );
        family(
            &mut out,
            "autoscaler_scale_actions_total",
            "Replica changes written to Swarm, by service and direction.",
            "counter",
        );
        for ((service, direction), n) in &inner.scale_actions {
            let _ = writeln!(
                out,
                "autoscaler_scale_actions_total{{service=\"{}\",direction=\"{}\"}} {n}",
                escape(service),
                escape(direction)
            );
        }
        family(&mut out, "autoscaler_decide_seconds", "Time of one policy decide call, by policy.", "histogram");
        for (policy, h) in &inner.decide {
            h.render(&mut out, "autoscaler_decide_seconds", &format!("policy=\"{}\",", escape(policy)));
        }
        family(
            &mut out,
            "autoscaler_kernel_to_decision_seconds",
            "Kernel timestamp to decision handed to the actuator.",
            "histogram",
        );
        if let Some(h) = &inner.pipeline {
            h.render(&mut out, "autoscaler_kernel_to_decision_seconds", "");
        }
        family(
            &mut out,
            "autoscaler_zero_seconds",
            "Scale to zero: Docker's pause (freeze), unpause (thaw), kernel connection to unpause returned (wake); service update to 0 replicas (remove), first held connection attempt to the new replica listening (restore).",
            "histogram",
        );
        for (op, h) in &inner.zero {
            h.render(&mut out, "autoscaler_zero_seconds", &format!("op=\"{op}\","));
        }
        for (name, (help, kind, source)) in &inner.sources {
            family(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {}", source());
        }
        out
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escape a label value for the text format.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serve `GET /metrics`, `/status`, `/healthz` and `/readyz` on `addr`
/// until the task is dropped. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    board: Arc<Board>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    let history = Arc::new(crate::live::History::default());
    let task = tokio::spawn(async move {
        // The live view's sampler lives and ends with the endpoint.
        let sampler = crate::live::run_sampler(board.clone(), history.clone());
        tokio::select! {
            () = sampler => {}
            () = accept_loop(listener, metrics, board, history) => {}
        }
    });
    Ok((bound, task))
}

/// The answer to one request: status line, content type, body.
fn respond(head: &str, metrics: &Metrics, board: &Board, history: &History) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !head.starts_with("GET ") {
        return ("405 Method Not Allowed", TEXT, "only GET is served\n".into());
    }
    match path {
        "/metrics" | "/" => {
            let mut body = metrics.render();
            board.render_metrics(&mut body);
            ("200 OK", "text/plain; version=0.0.4", body)
        }
        "/ui" | "/ui/" => ("200 OK", "text/html; charset=utf-8", crate::live::PAGE.into()),
        "/ui/history" => ("200 OK", JSON, serde_json::to_string(&history.answer(board, query)).unwrap_or_default()),
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" if board.ready() => ("200 OK", TEXT, "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", TEXT, "not ready: swarm not read yet\n".into()),
        "/status" => {
            let report = board.report(crate::model::monotonic_ns());
            ("200 OK", JSON, serde_json::to_string(&report).unwrap_or_default())
        }
        _ => match path.strip_prefix("/status/") {
            Some(name) if !name.is_empty() => {
                let mut report = board.report(crate::model::monotonic_ns());
                report.services.retain(|s| s.service == name || s.id == name);
                if report.services.is_empty() {
                    ("404 Not Found", TEXT, format!("no service {name} with autoscale labels\n"))
                } else {
                    ("200 OK", JSON, serde_json::to_string(&report).unwrap_or_default())
                }
            }
            _ => ("404 Not Found", TEXT, "try /metrics, /status, /ui, /healthz or /readyz\n".into()),
        },
    }
}

/// Most 503 answers to connections over [`MAX_CONNECTIONS`] in flight at
/// once (each a task for at most a second, which reads what the client
/// sent so that closing does not reset the connection before it read the
/// answer).
const MAX_BUSY: usize = 2 * MAX_CONNECTIONS;

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, board: Arc<Board>, history: Arc<History>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let busy = Arc::new(tokio::sync::Semaphore::new(MAX_BUSY));
    let mut backoff = Duration::from_millis(10);
    loop {
        let mut conn = match listener.accept().await {
            Ok((conn, _)) => {
                backoff = Duration::from_millis(10);
                conn
            }
            Err(err) => {
                // EMFILE/ENFILE/ENOMEM: accepting again at once would spin.
                tracing::warn!(
                    "metrics endpoint: accept failed ({err}); pausing {}",
                    crate::units::human_duration(backoff)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            // A flood over the cap costs a bounded number of tasks, not one each: past
            // MAX_BUSY answers in flight, the 503 is written only if the
            // socket takes it at once, and the connection is closed.
            let Ok(busy_permit) = busy.clone().try_acquire_owned() else {
                let _ = conn.try_write(BUSY);
                continue;
            };
            tokio::spawn(async move {
                let _busy = busy_permit;
                // Answer, then read what the client sent so that closing
                // does not reset the connection before it read the 503.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    conn.write_all(BUSY).await?;
                    conn.shutdown().await?;
                    let mut sink = [0u8; 4096];
                    while conn.read(&mut sink).await? > 0 {}
                    Ok::<(), std::io::Error>(())
                })
                .await;
            });
            continue;
        };
        let (metrics, board, history) = (metrics.clone(), board.clone(), history.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(head) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut conn)).await else { return };
            let head = String::from_utf8_lossy(&head);
            let (status, kind, body) = respond(&head, &metrics, &board, &history);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                conn.write_all(response.as_bytes()).await?;
                conn.shutdown().await
            })
            .await;
        });
    }
}

/// Read until the end of the request head, at most 4 KiB.
async fn read_head(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match conn.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    buf.truncate(len);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_to_decision_has_a_20_ms_bound() {
        let metrics = Metrics::default();
        metrics.observe_kernel_to_decision(Duration::from_millis(15));
        metrics.observe_kernel_to_decision(Duration::from_millis(30));
        let out = metrics.render();
        let bucket = |le: &str| format!("autoscaler_kernel_to_decision_seconds_bucket{{le=\"{le}\"}}");
        assert!(out.contains(&format!("{} 0\n", bucket("0.01"))), "{out}");
        assert!(out.contains(&format!("{} 1\n", bucket("0.02"))), "{out}");
        assert!(out.contains(&format!("{} 2\n", bucket("0.05"))), "{out}");
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(3.0);
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[tokio::test]
    async fn scrape_over_http_returns_the_counters() {
        let metrics = Arc::new(Metrics::default());
        metrics.event_received("cpu");
        metrics.event_received("cpu");
        metrics.decision("threshold", "scale");
        metrics.policy_failure("bad\"name", "timeout");
        metrics.observe_decide("threshold", Duration::from_micros(3));
        metrics.set_source("autoscaler_ring_buffer_drops_total", "Ring-buffer records lost.", "counter", || 7.0);
        let (addr, task) = serve("127.0.0.1:0".parse().expect("addr"), metrics, Arc::default()).await.expect("serve");
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
        let mut body = String::new();
        conn.read_to_string(&mut body).await.expect("response");
        task.abort();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("autoscaler_events_total{metric=\"cpu\"} 2"), "{body}");
        assert!(body.contains("autoscaler_decisions_total{policy=\"threshold\",outcome=\"scale\"} 1"), "{body}");
        assert!(body.contains("policy=\"bad\\\"name\""), "{body}");
        assert!(body.contains("autoscaler_decide_seconds_bucket{policy=\"threshold\",le=\"0.000005\"} 1"), "{body}");
        assert!(body.contains("autoscaler_decide_seconds_count{policy=\"threshold\"} 1"), "{body}");
        assert!(body.contains("autoscaler_build_info{version="), "{body}");
        assert!(body.contains("autoscaler_ring_buffer_drops_total 7"), "{body}");
    }

    async fn scrape(addr: SocketAddr) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.expect("request");
        let mut body = String::new();
        let _ = conn.read_to_string(&mut body).await;
        body
    }

    #[tokio::test]
    async fn silent_clients_cannot_starve_a_scrape() {
        let metrics = Arc::new(Metrics::default());
        let (addr, task) = serve("127.0.0.1:0".parse().expect("addr"), metrics, Arc::default()).await.expect("serve");
        // Twice the cap of clients that connect and never send a byte.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS * 2 {
            idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Over the cap: answered 503 at once rather than queued.
        let busy = tokio::time::timeout(Duration::from_secs(2), scrape(addr)).await.expect("503 in time");
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        // Silent clients are cut at the request timeout; then scrapes work.
        drop(idle.drain(..MAX_CONNECTIONS));
        let body = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(2), async {
            loop {
                let body = scrape(addr).await;
                if body.starts_with("HTTP/1.1 200") {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("a scrape succeeds once idle clients are gone or timed out");
        assert!(body.contains("autoscaler_policy_failures_total"), "{body}");
        task.abort();
    }

    #[test]
    fn operator_pages_answer() {
        let history = History::default();
        let (metrics, board) = (Metrics::default(), Board::default());
        assert_eq!(respond("GET /healthz HTTP/1.1", &metrics, &board, &history).0, "200 OK");
        assert_eq!(respond("GET /readyz HTTP/1.1", &metrics, &board, &history).0, "503 Service Unavailable");
        board.set_ready(true);
        assert_eq!(respond("GET /readyz HTTP/1.1", &metrics, &board, &history).0, "200 OK");
        board.update("s1", |s| s.service = "web".into());
        let (status, kind, body) = respond("GET /status HTTP/1.1", &metrics, &board, &history);
        assert_eq!((status, kind), ("200 OK", "application/json"));
        assert!(body.contains("\"service\":\"web\""), "{body}");
        assert_eq!(respond("GET /status/web HTTP/1.1", &metrics, &board, &history).0, "200 OK");
        assert_eq!(respond("GET /status/api HTTP/1.1", &metrics, &board, &history).0, "404 Not Found");
        assert_eq!(respond("POST /metrics HTTP/1.1", &metrics, &board, &history).0, "405 Method Not Allowed");
        let (_, _, body) = respond("GET /metrics HTTP/1.1", &metrics, &board, &history);
        assert!(body.contains("autoscaler_service_config_errors{service=\"web\"} 0"), "{body}");
    }

    #[test]
    fn failure_source_adds_load_failures_to_the_family() {
        let metrics = Metrics::default();
        metrics.policy_failure("p", "timeout");
        metrics.set_failure_source(|| vec![(("p".to_string(), "refused-import".to_string()), 2)]);
        let out = metrics.render();
        assert!(out.contains("autoscaler_policy_failures_total{policy=\"p\",kind=\"timeout\"} 1"), "{out}");
        assert!(out.contains("autoscaler_policy_failures_total{policy=\"p\",kind=\"refused-import\"} 2"), "{out}");
    }
}
