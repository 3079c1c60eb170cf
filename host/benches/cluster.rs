//! `cargo bench -p host --bench cluster`: what the agent channel adds to
//! the event path of a node that is not the leader. A decider and an agent
//! run in this process over real TCP on loopback, authenticated and MAC'd
//! as in production:
//! - latency: one event at a time from `AgentHandle::forward` to the
//!   decider's event queue (prints `forward_us_p50`, `forward_us_p99`);
//! - throughput: events pushed as fast as `forward` takes them, for 2 s
//!   (prints `events_per_sec` delivered and the share dropped).
//!
//! Both ways nodes authenticate are measured: the shared token over plain
//! TCP (`transport=token`), and mutual TLS with this machine's own swarm
//! node certificate (`transport=swarm-mtls`, as root on a swarm node: the
//! decider and the agent both present /var/lib/docker/swarm/certificates,
//! the agent under the certificate's node id); without readable swarm
//! certificates that half is skipped with the reason.
//!
//! Loopback only: across machines add the network's round trip.

mod common;

use std::time::{Duration, Instant};

use host::cluster::{
    AgentHandle, ChannelSettings, Credentials, DEFAULT_CERT_DIR, Decider, Leadership, SwarmCerts, Token,
};
use host::model::{EventKind, Metric, Unit, monotonic_ns};
use host::probe::{ProbeEvent, Reading};
use tokio::sync::{mpsc, watch};

const SAMPLES: usize = 2_000;

fn event(value: f64) -> ProbeEvent {
    ProbeEvent::Reading(Reading {
        container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        metric: Metric::CPU,
        value,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        timestamp_ns: monotonic_ns(),
    })
}

fn main() -> anyhow::Result<()> {
    println!("machine: {}", common::machine());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let token = Token::new(b"benchmark token, 32 bytes long..").map_err(|_| anyhow::anyhow!("token"))?;
    println!("transport=token");
    runtime.block_on(run(Credentials::Token(token), "bench-node".into()))?;
    let certs = SwarmCerts::new(DEFAULT_CERT_DIR);
    match certs.identity() {
        Ok(me) => {
            println!("transport=swarm-mtls node={} role={}", me.node_id, me.role);
            runtime.block_on(run(Credentials::Swarm { certs, token: None }, me.node_id))
        }
        Err(err) => {
            println!("transport=swarm-mtls SKIPPED: {err}");
            Ok(())
        }
    }
}

async fn run(credentials: Credentials, node_id: String) -> anyhow::Result<()> {
    let settings = ChannelSettings { listen: "127.0.0.1:0".parse()?, ..ChannelSettings::default() };
    let (_leader, leadership) = watch::channel(Leadership { is_leader: true, leader_addr: None });
    let (events_tx, mut events) = mpsc::channel(1 << 16);
    let (membership_tx, _membership) = mpsc::unbounded_channel();
    let decider = Decider::bind(settings.clone(), credentials.clone(), leadership, events_tx, membership_tx).await?;
    let agent =
        AgentHandle::spawn(settings, credentials, node_id, "bench".into(), vec![decider.local_addr().to_string()]);
    let start = Instant::now();
    while !agent.is_connected() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(5), "the agent did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Latency: the send time travels in the value (exact below 2^53 ns).
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let sent = monotonic_ns();
        agent.forward(event(sent as f64));
        let got = events.recv().await.ok_or_else(|| anyhow::anyhow!("decider stopped"))?;
        let ProbeEvent::Reading(got) = got.event else { anyhow::bail!("a reading was sent") };
        latencies.push((monotonic_ns() - got.value as u64) as f64 / 1_000.0);
    }
    let p50 = common::percentile(&mut latencies, 50);
    let p99 = common::percentile(&mut latencies, 99);
    println!("forward_us_p50={p50:.1} forward_us_p99={p99:.1} samples={SAMPLES}");

    // Throughput: a producer as fast as forward() goes, a consumer draining.
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline.into(), events.recv()).await {
            n += 1;
        }
        n
    });
    let before = agent.stats();
    let started = Instant::now();
    let mut pushed = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..256 {
            agent.forward(event(0.5));
        }
        pushed += 256;
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = consumer.await?;
    let dropped = agent.stats().dropped - before.dropped + decider.stats().dropped;
    println!(
        "events_per_sec={:.0} pushed={pushed} delivered={delivered} dropped_pct={:.1}",
        delivered as f64 / elapsed,
        100.0 * dropped as f64 / pushed as f64
    );
    Ok(())
}
