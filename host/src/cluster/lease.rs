//! Leadership by a lease kept in Swarm's own Raft store: an alternative to
//! following the Raft leader ([`super::docker::watch_leadership`]) with the
//! same output, a `watch::Receiver<Leadership>`.
//!
//! Following the Raft leader moves decisions when Swarm moves leadership,
//! but not when the autoscaler on the leader dies while its engine lives:
//! then nobody decides until Swarm restarts that task. The lease moves
//! decisions in that case too, without any consensus of our own: the lease
//! is three labels on the autoscaler's own service, written with Swarm's
//! optimistic concurrency (the service version), so two managers can never
//! both take it.
//!
//! - `autoscaler.decider`: node id of the holder;
//! - `autoscaler.decider.epoch`: bumped on every takeover (a fencing
//!   number for audit lines);
//! - `autoscaler.decider.renewed`: bumped by the holder every `renew`.
//!
//! A standby takes over when the service's version has not changed for
//! `expire` *on its own clock* (no clock is compared across machines). The
//! holder steps down when it has not renewed for `expire / 2`, so it stops
//! deciding before anyone else may start. Labels on the service, not on its
//! task template, do not restart tasks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::UpdateServiceOptions;
use tokio::sync::watch;

use super::Leadership;

/// Label names of the lease.
pub const HOLDER: &str = "autoscaler.decider";
/// See [`HOLDER`].
pub const EPOCH: &str = "autoscaler.decider.epoch";
/// See [`HOLDER`].
pub const RENEWED: &str = "autoscaler.decider.renewed";

/// Timing of the lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// The holder writes this often (default 1 s).
    pub renew: Duration,
    /// A standby takes over after this long without a change (default 3 s).
    pub expire: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming { renew: Duration::from_secs(1), expire: Duration::from_secs(3) }
    }
}

/// What one manager knows about the lease between two reads.
#[derive(Debug)]
struct Observer {
    /// This node.
    me: String,
    /// Last service version seen, and when (our clock) it was first seen.
    seen: Option<(u64, Instant)>,
    /// When we last renewed successfully while holding it.
    renewed: Option<Instant>,
}

/// What to do after reading the lease.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// We hold it: write `renewed + 1`.
    Renew { epoch: u64, renewed: u64 },
    /// Free or expired: write ourselves with `epoch + 1`.
    Take { epoch: u64 },
    /// Someone else holds it and it is alive.
    Wait { holder: String },
}

impl Observer {
    /// Decide from the labels and version just read, at `now`.
    fn step(&mut self, labels: &HashMap<String, String>, version: u64, now: Instant, timing: LeaseTiming) -> Step {
        let number = |key: &str| labels.get(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let epoch = number(EPOCH);
        let holder = labels.get(HOLDER).cloned().unwrap_or_default();
        let changed_at = match self.seen {
            Some((v, at)) if v == version => at,
            _ => now,
        };
        self.seen = Some((version, changed_at));
        if holder == self.me {
            return Step::Renew { epoch, renewed: number(RENEWED) };
        }
        if holder.is_empty() || now.duration_since(changed_at) >= timing.expire {
            return Step::Take { epoch };
        }
        Step::Wait { holder }
    }

    /// Whether we may decide now: we renewed within `expire / 2`.
    fn holding(&self, now: Instant, timing: LeaseTiming) -> bool {
        self.renewed.is_some_and(|at| now.duration_since(at) < timing.expire / 2)
    }
}

/// Read and renew or take the lease on `service` every `timing.renew`,
/// publishing whether this node (`node_id`) holds it and where the holder
/// listens (`port`). Run it on managers only: workers cannot update
/// services.
pub fn watch_lease(
    docker: Docker,
    service: String,
    node_id: String,
    port: u16,
    timing: LeaseTiming,
) -> watch::Receiver<Leadership> {
    let (tx, rx) = watch::channel(Leadership::default());
    tokio::spawn(async move {
        let mut observer = Observer { me: node_id, seen: None, renewed: None };
        let mut tick = tokio::time::interval(timing.renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut holder_addr: Option<(String, Option<String>)> = None;
        loop {
            tick.tick().await;
            if let Err(err) = round(&docker, &service, &mut observer, timing, port, &mut holder_addr).await {
                tracing::debug!(error = %err, service, "cluster: lease round failed");
            }
            let now = Leadership {
                is_leader: observer.holding(Instant::now(), timing),
                leader_addr: holder_addr.as_ref().and_then(|(_, addr)| addr.clone()),
            };
            if now.is_leader != tx.borrow().is_leader {
                tracing::info!(
                    service,
                    leader = now.is_leader,
                    "cluster: decider lease {}",
                    if now.is_leader { "taken: deciding" } else { "lost: not deciding" }
                );
            }
            tx.send_if_modified(|current| std::mem::replace(current, now.clone()) != now);
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

async fn round(
    docker: &Docker,
    service: &str,
    observer: &mut Observer,
    timing: LeaseTiming,
    port: u16,
    holder_addr: &mut Option<(String, Option<String>)>,
) -> Result<(), bollard::errors::Error> {
    let current = docker.inspect_service(service, None).await?;
    let version = current.version.and_then(|v| v.index).unwrap_or(0);
    let Some(mut spec) = current.spec else { return Ok(()) };
    let mut labels = spec.labels.clone().unwrap_or_default();
    let now = Instant::now();
    let step = observer.step(&labels, version, now, timing);
    match &step {
        Step::Renew { epoch, renewed } => {
            labels.insert(EPOCH.into(), epoch.to_string());
            labels.insert(RENEWED.into(), (renewed + 1).to_string());
        }
        Step::Take { epoch } => {
            labels.insert(HOLDER.into(), observer.me.clone());
            labels.insert(EPOCH.into(), (epoch + 1).to_string());
            labels.insert(RENEWED.into(), "0".into());
        }
        Step::Wait { holder } => {
            if holder_addr.as_ref().map(|(h, _)| h) != Some(holder) {
                *holder_addr = Some((holder.clone(), manager_addr(docker, holder, port).await));
            }
            return Ok(());
        }
    }
    spec.labels = Some(labels);
    let version = i32::try_from(version).unwrap_or(i32::MAX);
    // A conflict means someone else wrote first: the next round reads it.
    docker.update_service(service, spec, UpdateServiceOptions { version, ..Default::default() }, None).await?;
    if let Step::Take { epoch } = step {
        tracing::info!(service, epoch = epoch + 1, "cluster: took the decider lease");
    }
    observer.renewed = Some(now);
    let me = observer.me.clone();
    if holder_addr.as_ref().map(|(h, _)| h) != Some(&me) {
        *holder_addr = Some((me.clone(), manager_addr(docker, &me, port).await));
    }
    Ok(())
}

/// The channel address of manager `node_id`.
async fn manager_addr(docker: &Docker, node_id: &str, port: u16) -> Option<String> {
    let node = docker.inspect_node(node_id).await.ok()?;
    let addr = node.manager_status?.addr?;
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h).to_string();
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_free_lease_is_taken_a_held_one_renewed_a_live_one_respected() {
        let t = LeaseTiming::default();
        let start = Instant::now();
        let mut me = Observer { me: "m1".into(), seen: None, renewed: None };
        assert_eq!(me.step(&labels(&[]), 10, start, t), Step::Take { epoch: 0 });
        let mine = labels(&[(HOLDER, "m1"), (EPOCH, "4"), (RENEWED, "7")]);
        assert_eq!(me.step(&mine, 11, start, t), Step::Renew { epoch: 4, renewed: 7 });
        let theirs = labels(&[(HOLDER, "m2"), (EPOCH, "5")]);
        assert_eq!(me.step(&theirs, 12, start, t), Step::Wait { holder: "m2".into() });
        // The holder keeps renewing: every read sees a new version.
        for i in 1..10u64 {
            let at = start + Duration::from_secs(i);
            assert_eq!(me.step(&theirs, 12 + i, at, t), Step::Wait { holder: "m2".into() });
        }
    }

    #[test]
    fn a_lease_unchanged_for_the_expiry_on_our_clock_is_taken_over() {
        let t = LeaseTiming::default();
        let start = Instant::now();
        let mut me = Observer { me: "m1".into(), seen: None, renewed: None };
        let theirs = labels(&[(HOLDER, "m2"), (EPOCH, "5"), (RENEWED, "9")]);
        assert!(matches!(me.step(&theirs, 20, start, t), Step::Wait { .. }));
        assert!(matches!(me.step(&theirs, 20, start + Duration::from_secs(2), t), Step::Wait { .. }));
        assert_eq!(me.step(&theirs, 20, start + Duration::from_secs(3), t), Step::Take { epoch: 5 });
    }

    #[test]
    fn the_holder_stops_deciding_before_anyone_may_take_over() {
        let t = LeaseTiming::default();
        let start = Instant::now();
        let me = Observer { me: "m1".into(), seen: None, renewed: Some(start) };
        assert!(me.holding(start + Duration::from_millis(1400), t));
        assert!(!me.holding(start + Duration::from_millis(1500), t), "steps down at expire/2");
        assert!(!Observer { me: "m1".into(), seen: None, renewed: None }.holding(start, t));
    }
}
