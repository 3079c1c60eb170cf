//! The ends of scale to zero's I/O ([`Done`]): what each pause, unpause,
//! park, spec write and look for a listener changes in the state machine.

use super::*;

impl Zero {
    /// A piece of I/O ended.
    pub fn on_done(&mut self, done: Done) {
        match done {
            Done::Frozen { container, took } => {
                let Some(replica) = self.replicas.get_mut(&container) else { return };
                replica.phase = Phase::Frozen;
                self.metrics.observe_zero("freeze", took);
                self.record(&container, ZeroOutcome::Frozen, None, took, None);
                let Some(replica) = self.replicas.get_mut(&container) else { return };
                if let Some(kernel_ns) = replica.wake_ns.take() {
                    self.thaw(&container, Some(kernel_ns), "a connection came while it was being frozen");
                } else if let Some(reason) = replica.release.take() {
                    self.thaw(&container, None, &reason);
                }
            }
            Done::Busy { container } => {
                if let Some(replica) = self.replicas.remove(&container) {
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::NotFrozen { container, outcome, reason } => {
                // Only a replica this daemon asked to freeze: a report naming
                // any other container (a peer's, forged) must not grow the set.
                if outcome == ZeroOutcome::Refused && self.replicas.contains_key(&container) {
                    self.refused.insert(container.clone());
                }
                self.record(&container, outcome, Some(reason), Duration::ZERO, None);
                if let Some(replica) = self.replicas.remove(&container) {
                    // A failure is tried again after another idle spell, not
                    // at every reading.
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::Thawed { container, took } => {
                let Some(replica) = self.replicas.get(&container) else { return };
                let wake = replica.wake_ns.map(since_kernel);
                self.metrics.observe_zero("thaw", took);
                let outcome = match wake {
                    Some(wake) => {
                        self.metrics.observe_zero("wake", wake);
                        ZeroOutcome::Woken
                    }
                    None => ZeroOutcome::Thawed,
                };
                self.record(&container, outcome, None, took, wake);
                if let Some(replica) = self.replicas.remove(&container) {
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::FoundPaused { container, service_id, service, unpaused } => {
                let (zero, reason, took) = match unpaused {
                    Ok(took) => {
                        tracing::warn!(service = %service, "replica {container} of {service} was left paused by an earlier daemon; unpaused it");
                        (ZeroOutcome::Thawed, "found paused by an earlier daemon: unpaused".to_string(), took)
                    }
                    Err(reason) => {
                        tracing::error!(service = %service, "replica {container} of {service} was left paused by an earlier daemon and cannot be unpaused: {reason}");
                        (ZeroOutcome::Failed, format!("found paused by an earlier daemon: {reason}"), Duration::ZERO)
                    }
                };
                // It freezes again only after a whole idle spell from now.
                self.busy.insert(service_id.clone(), Instant::now());
                self.audit.record_zero(&ZeroRecord {
                    time_unix_ms: unix_ms(),
                    service,
                    service_id,
                    container,
                    zero,
                    reason,
                    docker_us: took.as_micros() as u64,
                    wake_us: None,
                    ports: Vec::new(),
                });
            }
            Done::ThawFailed { container, reason } => {
                self.record(&container, ZeroOutcome::Failed, Some(reason), Duration::ZERO, None);
                self.replicas.remove(&container);
            }
            Done::WokenOnNode { container, service: (service_id, service), took, wake } => {
                self.metrics.observe_zero("thaw", took);
                self.metrics.observe_zero("wake", wake);
                self.busy.insert(service_id.clone(), Instant::now());
                if self.replicas.contains_key(&container) {
                    if let Some(replica) = self.replicas.get_mut(&container) {
                        replica.thaw_reason = "first connection".into();
                    }
                    self.record(&container, ZeroOutcome::Woken, None, took, Some(wake));
                    self.replicas.remove(&container);
                    return;
                }
                // Frozen under an earlier leader: its node's agent kept the wake.
                self.audit.record_zero(&ZeroRecord {
                    time_unix_ms: unix_ms(),
                    service,
                    service_id,
                    container,
                    zero: ZeroOutcome::Woken,
                    reason: "first connection (frozen under an earlier decider)".into(),
                    docker_us: took.as_micros() as u64,
                    wake_us: Some(wake.as_micros() as u64),
                    ports: Vec::new(),
                });
            }
            Done::Parked { service_id, ports, mode, result } => self.parked(&service_id, &ports, mode, result),
            Done::Written { service_id, to, outcome } => self.written(&service_id, to, outcome),
            Done::Listening { service_id, listening } => self.listening(&service_id, listening),
            Done::Unparked { service_id } => {
                let Some(r) = self.removals.remove(&service_id) else { return };
                self.busy.insert(service_id.clone(), Instant::now());
                if r.forget {
                    return;
                }
                let wake = r.attempt_ns.map(since_kernel);
                if let Some(wake) = wake {
                    self.metrics.observe_zero("restore", wake);
                }
                let reason = match wake {
                    Some(_) => format!("{}: listening again", r.restore_reason),
                    None => r.restore_reason.clone(),
                };
                self.record_removal(&service_id, &r, ZeroOutcome::Restored, reason, wake);
            }
        }
    }

    pub(super) fn parked(&mut self, service_id: &str, ports: &[u16], mode: ParkMode, result: Result<i64, String>) {
        let Some(r) = self.removals.get_mut(service_id) else {
            // Forgotten meanwhile: nothing may stay parked.
            self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: ports.to_vec() });
            return;
        };
        match (r.step, result) {
            (Step::Parking | Step::Reparking, Err(reason)) => {
                let (service, ports) = (r.service.clone(), r.ports.clone());
                self.removals.remove(service_id);
                self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: ports.clone() });
                self.busy.insert(service_id.to_string(), Instant::now());
                self.refuse_removal((service_id, &service), &ports, reason, true);
            }
            (Step::Parking, Ok(open)) => {
                if r.forget || r.abort || open > 0 {
                    // A connection is open, or one was attempted: not now.
                    tracing::debug!(service = %r.service, open, "not removing {}: it has work", r.service);
                    r.forget = true;
                    self.busy.insert(service_id.to_string(), Instant::now());
                    self.unpark(service_id);
                    return;
                }
                r.step = Step::Removing;
                self.work.push(Work::Write { service_id: service_id.to_string(), service: r.service.clone(), to: 0 });
            }
            (Step::Reparking, Ok(_)) => {
                if r.forget {
                    self.unpark(service_id);
                    return;
                }
                r.step = Step::Removed;
                let reason = "found at 0 replicas with autoscale.zero=remove: its ports are held again".to_string();
                tracing::info!(service = %r.service, "service {} is at 0 replicas: port {} held", r.service, join(&r.ports));
                self.record_removal_now(service_id, ZeroOutcome::Removed, reason);
                if let Some(reason) = self.removals.get_mut(service_id).and_then(|r| r.come_back.take()) {
                    self.restore(service_id, &reason);
                } else if self.removals.get(service_id).is_some_and(|r| r.replica.is_none()) {
                    self.look(service_id, Instant::now());
                }
            }
            (_, Ok(_)) => r.mode = mode,
            (_, Err(reason)) => {
                tracing::warn!(service = %r.service, "cannot park port {} of {} in {mode:?} mode: {reason}", join(&r.ports), r.service);
            }
        }
    }

    pub(super) fn written(&mut self, service_id: &str, to: u32, outcome: ZeroWritten) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        match (to, outcome) {
            (0, ZeroWritten::Spec { replicas: 0, wrote }) => {
                r.step = Step::Removed;
                r.took = wrote;
                if let Some(took) = wrote {
                    self.metrics.observe_zero("remove", took);
                }
                let reason = r.reason.clone();
                self.record_removal_now(service_id, ZeroOutcome::Removed, reason);
                let Some(r) = self.removals.get_mut(service_id) else { return };
                if r.forget {
                    self.unpark(service_id);
                } else if let Some(reason) = r.come_back.take() {
                    self.restore(service_id, &reason);
                } else if r.replica.is_none() {
                    self.replica_gone(service_id);
                }
            }
            (0, ZeroWritten::Spec { replicas, .. }) => {
                tracing::info!(service = %r.service, "not removing {}: its spec says {replicas} replicas now", r.service);
                r.forget = true;
                self.busy.insert(service_id.to_string(), Instant::now());
                self.unpark(service_id);
            }
            (0, ZeroWritten::Failed(reason)) => {
                let reason = format!("cannot remove {}: {reason}", r.service);
                r.forget = true;
                self.record_removal_now(service_id, ZeroOutcome::Failed, reason);
                self.busy.insert(service_id.to_string(), Instant::now());
                self.unpark(service_id);
            }
            (_, ZeroWritten::Spec { wrote, .. }) => {
                r.writing = false;
                r.took = wrote;
                if r.forget || (r.listened && r.replica.is_none()) {
                    self.unpark(service_id);
                } else {
                    self.look(service_id, Instant::now());
                }
            }
            (_, ZeroWritten::Failed(reason)) => {
                // Still at 0, its ports parked: the next attempt tries again.
                r.writing = false;
                r.step = Step::Removed;
                let reason = format!("cannot restore {}: {reason}", r.service);
                self.record_removal_now(service_id, ZeroOutcome::Failed, reason);
            }
        }
    }

    pub(super) fn listening(&mut self, service_id: &str, listening: bool) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.looking = false;
        if !listening || r.replica.is_some() {
            return;
        }
        match r.step {
            Step::Restoring if !r.writing => self.unpark(service_id),
            Step::Removed if !r.warned_foreign => {
                r.warned_foreign = true;
                tracing::warn!(
                    service = %r.service,
                    "something other than {} listens on port {} while the service has no replica: connection attempts go to it and never bring {} back (check autoscale.port)",
                    r.service, join(&r.ports), r.service
                );
            }
            _ => {}
        }
    }
}
