//! What the channel needs from the node's own engine (bollard): who this
//! node is (and when Swarm changes its role), where the managers are, and
//! whether this manager is the Raft leader.
//!
//! These are the only Docker calls of `cluster`; they could move to
//! `swarm/` (the project's one module per outside system) without changing
//! the rest of this module, which sees plain values and a watch channel.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListNodesOptions;
use tokio::sync::watch;

use super::Leadership;
use super::agent::ManagerSource;

/// This node as its engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Swarm node id.
    pub node_id: String,
    /// The engine's hostname (the Swarm node's name).
    pub hostname: String,
    /// Whether the node is a manager (it runs a decider endpoint).
    pub is_manager: bool,
}

/// Read this node's identity from its engine.
pub async fn identity(docker: &Docker) -> anyhow::Result<NodeIdentity> {
    use anyhow::Context;
    let info = docker.info().await.context("reading `docker info` from the local engine")?;
    let swarm = info.swarm.unwrap_or_default();
    let node_id = swarm.node_id.filter(|id| !id.is_empty()).context(
        "the local engine is not part of a swarm: the cluster channel runs on swarm nodes (docker swarm init/join)",
    )?;
    Ok(NodeIdentity {
        node_id,
        hostname: info.name.unwrap_or_default(),
        is_manager: swarm.control_available == Some(true),
    })
}

/// Resolves once this node's engine reports the other role than
/// `is_manager` (`docker node promote` or `demote`), read every `every`;
/// returns whether the node is a manager now. A read that fails is not a
/// change: an engine that restarts keeps its role.
pub async fn role_change(docker: Docker, is_manager: bool, every: Duration) -> bool {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(me) = identity(&docker).await
            && me.is_manager != is_manager
        {
            return me.is_manager;
        }
    }
}

/// Swap the port of a manager's Swarm address (`10.0.0.2:2377`) for the
/// channel's port.
fn with_port(addr: &str, port: u16) -> Option<String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    (!host.is_empty()).then(|| format!("{host}:{port}"))
}

/// The managers as the node's own engine lists them (`docker info`:
/// Swarm.RemoteManagers), on the channel's port. Works on workers, which
/// cannot list nodes.
#[derive(Debug, Clone)]
pub struct EngineManagers {
    /// The node's own engine.
    pub docker: Docker,
    /// The port deciders listen on.
    pub port: u16,
}

impl ManagerSource for EngineManagers {
    async fn managers(&self) -> Vec<String> {
        match self.docker.info().await {
            Ok(info) => info
                .swarm
                .and_then(|s| s.remote_managers)
                .unwrap_or_default()
                .iter()
                .filter_map(|peer| peer.addr.as_deref().and_then(|a| with_port(a, self.port)))
                .collect(),
            Err(err) => {
                tracing::debug!(error = %err, "cluster: cannot read the managers from the local engine");
                Vec::new()
            }
        }
    }
}

/// Whether this node is the leader, and where the leader is, once.
pub async fn leadership(docker: &Docker, port: u16) -> Result<Leadership, bollard::errors::Error> {
    let info = docker.info().await?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.control_available != Some(true) {
        return Ok(Leadership::default());
    }
    let self_id = swarm.node_id.unwrap_or_default();
    let managers = docker
        .list_nodes(Some(ListNodesOptions {
            filters: Some([("role".to_string(), vec!["manager".to_string()])].into()),
        }))
        .await?;
    let leader = managers.iter().find(|n| n.manager_status.as_ref().and_then(|m| m.leader) == Some(true));
    Ok(Leadership {
        is_leader: leader.and_then(|n| n.id.as_deref()) == Some(self_id.as_str()),
        leader_addr: leader
            .and_then(|n| n.manager_status.as_ref())
            .and_then(|m| m.addr.as_deref())
            .and_then(|a| with_port(a, port)),
    })
}

/// Re-read [`leadership`] every `every` and publish changes. An engine that
/// does not answer counts as "not the leader": a manager that cannot reach
/// its own engine cannot apply decisions either. Each change is logged once.
pub fn watch_leadership(docker: Docker, port: u16, every: Duration) -> watch::Receiver<Leadership> {
    let (tx, rx) = watch::channel(Leadership::default());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut engine_away = false;
        loop {
            tick.tick().await;
            let now = match leadership(&docker, port).await {
                Ok(now) => {
                    engine_away = false;
                    now
                }
                Err(err) => {
                    if !engine_away {
                        tracing::warn!(error = %err, "cluster: cannot read leadership from the local engine; not deciding until it answers");
                        engine_away = true;
                    }
                    Leadership::default()
                }
            };
            let was = tx.borrow().is_leader;
            if now.is_leader != was {
                if now.is_leader {
                    tracing::info!("cluster: this manager is the swarm leader: deciding");
                } else {
                    tracing::info!(leader = ?now.leader_addr, "cluster: this node is not the swarm leader: not deciding");
                }
            }
            tx.send_if_modified(|current| {
                let changed = *current != now;
                *current = now;
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_addresses_get_the_channel_port() {
        assert_eq!(with_port("10.77.0.2:2377", 9465).as_deref(), Some("10.77.0.2:9465"));
        assert_eq!(with_port("[fd00::2]:2377", 9465).as_deref(), Some("[fd00::2]:9465"));
        assert_eq!(with_port("manager1", 9465).as_deref(), Some("manager1:9465"));
        assert_eq!(with_port(":2377", 9465), None);
    }
}
