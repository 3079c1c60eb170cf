//! The agent channel between real nodes, without the rest of the daemon:
//! run a decider on managers and an agent on any node, each against its
//! own engine (`DOCKER_HOST`), to see discovery, authentication,
//! leadership and reconnects on a real swarm. tests/cluster/channel.sh runs
//! it across the nodes of the test cluster.
//!
//! ```text
//! cluster_channel decider TOKEN_FILE          # prints `event <node> <container> <value>` lines
//! cluster_channel agent TOKEN_FILE RATE_HZ    # forwards synthetic events at RATE_HZ
//! ```
//! Logs go to stderr (RUST_LOG, default info).

use std::time::Duration;

use bollard::Docker;
use host::cluster::docker::{EngineManagers, identity, watch_leadership};
use host::cluster::{AgentHandle, ChannelSettings, Decider, Membership, Token};
use host::model::{EventKind, Metric, Unit, monotonic_ns};
use host::probe::{ProbeEvent, Reading};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cluster_channel decider TOKEN_FILE | agent TOKEN_FILE RATE_HZ";
    let (role, token_file) = match (args.get(1), args.get(2)) {
        (Some(role), Some(file)) => (role.as_str(), file),
        _ => anyhow::bail!(usage),
    };
    let token = Token::from_file(token_file.as_ref())?;
    let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
    let me = identity(&docker).await?;
    let settings = ChannelSettings::default();
    let port = settings.listen.port();
    match role {
        "decider" => {
            let leadership = watch_leadership(docker, port, settings.leader_poll);
            let (events_tx, mut events) = mpsc::channel(4096);
            let (membership_tx, mut membership) = mpsc::unbounded_channel();
            let _decider = Decider::bind(settings, token, leadership, events_tx, membership_tx).await?;
            loop {
                tokio::select! {
                    Some(e) = events.recv() => println!("event {} {:?}", e.node_id, e.event),
                    Some(m) = membership.recv() => match m {
                        Membership::Live { hostname, .. } => println!("live {hostname}"),
                        Membership::Lost { hostname, .. } => println!("lost {hostname}"),
                    },
                }
            }
        }
        "agent" => {
            let rate: f64 = args.get(3).and_then(|r| r.parse().ok()).ok_or_else(|| anyhow::anyhow!(usage))?;
            let managers = EngineManagers { docker, port };
            let agent = AgentHandle::spawn(settings, token, me.node_id, me.hostname.clone(), managers);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                n += 1;
                agent.forward(ProbeEvent::Reading(Reading {
                    container_id: format!("{}-c", me.hostname),
                    metric: Metric::CPU,
                    value: n as f64,
                    unit: Unit::FractionOfLimit,
                    kind: EventKind::Sample,
                    timestamp_ns: monotonic_ns(),
                }));
            }
        }
        _ => anyhow::bail!(usage),
    }
}
