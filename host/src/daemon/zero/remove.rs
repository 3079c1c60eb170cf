//! Scale to zero by removal (`autoscale.zero=remove`): parking a service's
//! ports, the spec writes from 1 to 0 and back, the look for a listener,
//! and bringing removals in line with the inventory. See the module doc of
//! [`super`].

use super::*;

impl Zero {
    /// The kernel held a connection attempt to a parked port.
    pub fn on_port_attempt(&mut self, port: u16, kernel_ns: u64) {
        let Some(id) = self.removal_of(port) else { return };
        self.busy.insert(id.clone(), Instant::now());
        let Some(r) = self.removals.get_mut(&id) else { return };
        r.attempt_ns.get_or_insert(kernel_ns);
        match r.step {
            Step::Parking => r.abort = true,
            Step::Reparking | Step::Removing => {
                r.come_back.get_or_insert_with(|| "a connection attempt".into());
            }
            Step::Removed => self.restore(&id, "a connection attempt"),
            Step::Restoring | Step::Unparking => {}
        }
    }

    /// A socket started listening on a parked port.
    pub fn on_port_listen(&mut self, port: u16) {
        let Some(id) = self.removal_of(port) else { return };
        let Some(r) = self.removals.get_mut(&id) else { return };
        r.listened = true;
        if r.step == Step::Restoring && !r.writing && r.replica.is_none() {
            self.unpark(&id);
        }
    }

    pub(super) fn removal_of(&self, port: u16) -> Option<String> {
        self.removals.iter().find(|(_, r)| r.ports.contains(&port)).map(|(id, _)| id.clone())
    }

    pub(super) fn try_remove(
        &mut self,
        (service_id, service): (&str, &str),
        ports: &[u16],
        (spec, running): (u32, &[String]),
        reason: String,
    ) -> bool {
        // Zero from one replica: more scale in first.
        let [container] = running else { return false };
        if spec != 1 || self.removals.contains_key(service_id) {
            return false;
        }
        if self.refused(service_id, service, ports) {
            return false;
        }
        self.busy.insert(service_id.to_string(), Instant::now());
        if self.dry_run {
            tracing::info!(target: "audit", service = %service, "dry-run: would remove {service} (1 -> 0 replicas, port {} held): {reason}", join(ports));
            return false;
        }
        self.removals
            .insert(service_id.to_string(), Removal::new(service, ports, Step::Parking, Some(container), reason));
        self.work.push(Work::Park {
            service_id: service_id.to_string(),
            ports: ports.to_vec(),
            mode: ParkMode::Hold,
            count: Some(container.clone()),
        });
        true
    }

    /// Why the service cannot be removed now, if it cannot.
    pub(super) fn removal_refusal(&self, service_id: &str, ports: &[u16]) -> Option<String> {
        if self.cluster {
            return Some(
                "autoscale.zero=remove is not supported with --cluster yet: a removed service's next replica may start on any node, and the connection attempts that must bring it back arrive at a node the decider cannot see (use autoscale.zero=freeze)".into(),
            );
        }
        for port in ports {
            let others: Vec<&str> = self
                .claims
                .get(port)
                .into_iter()
                .flatten()
                .filter(|(id, _)| id != service_id)
                .map(|(_, name)| name.as_str())
                .collect();
            if !others.is_empty() {
                return Some(format!(
                    "port {port} is also the port of service {}: the kernel cannot tell whose connection attempt it holds (give each service its own autoscale.port, or use autoscale.zero=freeze)",
                    others.join(", ")
                ));
            }
        }
        None
    }

    /// Whether the service may not be removed now: for as long as it shares
    /// a port or runs in multi-node mode, or for good with these ports (the
    /// probe refused to park them).
    pub(super) fn refused(&mut self, service_id: &str, service: &str, ports: &[u16]) -> bool {
        if let Some(why) = self.removal_refusal(service_id, ports) {
            self.refuse_removal((service_id, service), ports, why, false);
            return true;
        }
        match self.refused_removal.get(service_id) {
            Some(r) if r.lasting && r.ports == ports => true,
            Some(_) => {
                self.refused_removal.remove(service_id);
                false
            }
            None => false,
        }
    }

    /// Refuse to remove the service, said once per (ports, reason);
    /// `lasting`: until its ports change, whatever else does.
    pub(super) fn refuse_removal(
        &mut self,
        (service_id, service): (&str, &str),
        ports: &[u16],
        reason: String,
        lasting: bool,
    ) {
        let said = Refusal { ports: ports.to_vec(), reason: reason.clone(), lasting };
        if self.refused_removal.get(service_id) == Some(&said) {
            return;
        }
        self.refused_removal.insert(service_id.to_string(), said);
        self.audit.record_zero(&ZeroRecord {
            time_unix_ms: unix_ms(),
            service: service.to_string(),
            service_id: service_id.to_string(),
            container: String::new(),
            zero: ZeroOutcome::Refused,
            reason,
            docker_us: 0,
            wake_us: None,
            ports: ports.to_vec(),
        });
    }

    /// Bring a removed service back to one replica.
    pub(super) fn restore(&mut self, service_id: &str, reason: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.step = Step::Restoring;
        r.writing = true;
        r.since = Instant::now();
        r.restore_reason = reason.to_string();
        r.took = None;
        self.work.push(Work::Write { service_id: service_id.to_string(), service: r.service.clone(), to: 1 });
    }

    pub(super) fn unpark(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.step = Step::Unparking;
        self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: r.ports.clone() });
    }

    /// Look for a listener on a restoring (or removed) service's ports, at
    /// most every [`LISTEN_CHECK`].
    pub(super) fn look(&mut self, service_id: &str, now: Instant) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        // A listener while the old replica runs may be the old replica's.
        if r.replica.is_some() || r.looking || r.looked.is_some_and(|at| now.duration_since(at) < LISTEN_CHECK) {
            return;
        }
        r.looking = true;
        r.looked = Some(now);
        self.work.push(Work::CheckListening { service_id: service_id.to_string(), ports: r.ports.clone() });
    }

    /// The removed replica's container is gone: no socket of it can take a
    /// connection any more.
    pub(super) fn replica_gone(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.replica = None;
        match r.step {
            Step::Removed | Step::Restoring if r.mode == ParkMode::Hold => {
                r.mode = ParkMode::Lookup;
                self.work.push(Work::Park {
                    service_id: service_id.to_string(),
                    ports: r.ports.clone(),
                    mode: ParkMode::Lookup,
                    count: None,
                });
            }
            _ => {}
        }
        match self.removals.get(service_id).map(|r| (r.step, r.listened, r.writing)) {
            Some((Step::Restoring, true, false)) => self.unpark(service_id),
            Some((Step::Restoring | Step::Removed, _, _)) => self.look(service_id, Instant::now()),
            _ => {}
        }
    }

    /// When [`Zero::tick`] must run next, if anything waits for time.
    pub fn next_tick(&self) -> Option<Instant> {
        self.removals
            .values()
            .filter(|r| r.step == Step::Restoring && !r.writing)
            .map(|r| {
                let timeout = r.since + LISTEN_TIMEOUT;
                // Nothing to look at while the old replica runs, or while a
                // look is in flight: only the timeout.
                match (&r.replica, r.looking) {
                    (None, false) => r.looked.map_or(r.since, |at| at + LISTEN_CHECK).min(timeout),
                    _ => timeout,
                }
            })
            .min()
    }

    /// Look at restoring services' ports; unpark those that waited past
    /// [`LISTEN_TIMEOUT`].
    pub fn tick(&mut self) {
        let now = Instant::now();
        let restoring: Vec<(String, Instant)> = self
            .removals
            .iter()
            .filter(|(_, r)| r.step == Step::Restoring && !r.writing)
            .map(|(id, r)| (id.clone(), r.since))
            .collect();
        for (id, since) in restoring {
            if now.duration_since(since) >= LISTEN_TIMEOUT {
                if let Some(r) = self.removals.get_mut(&id) {
                    tracing::warn!(
                        service = %r.service,
                        "{} came back but nothing listened on port {} within {}: unparked (check autoscale.port)",
                        r.service, join(&r.ports), crate::units::human_duration(LISTEN_TIMEOUT)
                    );
                    r.restore_reason = format!(
                        "{}; nothing listened within {}",
                        r.restore_reason,
                        crate::units::human_duration(LISTEN_TIMEOUT)
                    );
                    r.attempt_ns = None;
                }
                self.unpark(&id);
            } else {
                self.look(&id, now);
            }
        }
    }

    /// Bring scale to zero in line with the inventory after a change:
    /// - services found at 0 replicas with `autoscale.zero=remove` are
    ///   parked; one scaled up by an operator while removed waits for its
    ///   replica to listen; a removed replica that is gone no longer counts;
    /// - services that no longer ask for removal are restored, and those
    ///   gone from Swarm unparked;
    /// - frozen replicas of services that no longer ask to be frozen thaw.
    pub fn reconcile(&mut self, inventory: &Inventory) {
        // Every service's ports: an autoscaled one's as resolved, any
        // other's as its spec publishes them.
        self.claims.clear();
        for entry in inventory.services() {
            let ports = entry.config().map_or(&entry.published, |config| &config.ports);
            for port in ports {
                self.claims.entry(*port).or_default().push((entry.id.clone(), entry.name.clone()));
            }
        }
        let now = Instant::now();
        for entry in inventory.active() {
            let Some(config) = entry.config() else { continue };
            if config.zero.map(|z| z.mode) != Some(ZeroMode::Remove) {
                self.refused_removal.remove(&entry.id);
                continue;
            }
            if self.refused_removal.get(&entry.id).is_some_and(|r| r.ports != config.ports) {
                self.refused_removal.remove(&entry.id);
            }
            match self.removals.get_mut(&entry.id) {
                None if entry.replicas == 0 => {
                    let running: Vec<String> = inventory.containers_of(&entry.id).map(|c| c.id.clone()).collect();
                    self.repark((&entry.id, &entry.name), &config.ports, running.first().cloned());
                }
                Some(r) if r.ports != config.ports => {
                    self.release_removal(&entry.id.clone(), "its ports changed");
                }
                Some(r) if r.step == Step::Removed && entry.replicas >= 1 => {
                    r.step = Step::Restoring;
                    r.since = now;
                    r.restore_reason = format!("scaled to {} replicas by someone else", entry.replicas);
                    let id = entry.id.clone();
                    self.look(&id, now);
                }
                _ => {}
            }
        }
        let ids: Vec<String> = self.removals.keys().cloned().collect();
        for id in ids {
            match inventory.service(&id) {
                None => self.forget_removal(&id),
                Some(entry) if entry.config().and_then(|c| c.zero).map(|z| z.mode) != Some(ZeroMode::Remove) => {
                    self.release_removal(&id, "its service no longer scales to zero by removal");
                }
                Some(_) => {}
            }
            let replica = self.removals.get(&id).and_then(|r| r.replica.clone());
            if let Some(replica) = replica
                && inventory.container(&replica).is_none()
            {
                self.replica_gone(&id);
            }
        }
        self.refused_removal.retain(|id, _| inventory.service(id).is_some());
        // Frozen replicas of services that no longer ask to be frozen thaw.
        for service_id in self.services() {
            let zero = inventory.service(&service_id).and_then(|s| s.config()).and_then(|c| c.zero);
            if zero.map(|z| z.mode) != Some(ZeroMode::Freeze) {
                self.release(&service_id, "its service no longer scales to zero by freezing");
            }
        }
    }

    /// A service found at zero replicas that asks for removal: park its
    /// ports (in hold mode while a replica may still run).
    pub(super) fn repark(&mut self, (service_id, service): (&str, &str), ports: &[u16], replica: Option<String>) {
        if self.refused(service_id, service, ports) {
            return;
        }
        if self.dry_run {
            tracing::info!(target: "audit", service = %service, "dry-run: would hold port {} of {service} (at 0 replicas)", join(ports));
            let said = Refusal { ports: ports.to_vec(), reason: "dry run".into(), lasting: true };
            self.refused_removal.insert(service_id.to_string(), said);
            return;
        }
        // With no replica, a listener on the port is not this service's
        // (a read of /proc/net/tcp{,6}, only for a service found at zero).
        if replica.is_none()
            && let Some(port) = ports.iter().find(|p| (self.port_taken)(**p))
        {
            let why = format!(
                "port {port} is not this service's: something else on this host listens on it while the service has no replica (give the service its own autoscale.port, or stop the other listener)"
            );
            // Not lasting: looked at again at the next reconcile.
            self.refuse_removal((service_id, service), ports, why, false);
            return;
        }
        let mode = if replica.is_some() { ParkMode::Hold } else { ParkMode::Lookup };
        let mut removal = Removal::new(service, ports, Step::Reparking, replica.as_ref(), "found at 0 replicas".into());
        removal.mode = mode;
        self.removals.insert(service_id.to_string(), removal);
        self.work.push(Work::Park { service_id: service_id.to_string(), ports: ports.to_vec(), mode, count: None });
    }

    /// The service no longer asks for removal: back to one replica.
    pub(super) fn release_removal(&mut self, service_id: &str, reason: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        match r.step {
            Step::Parking => {
                r.abort = true;
                r.forget = true;
            }
            Step::Reparking | Step::Removing => {
                r.come_back.get_or_insert_with(|| reason.to_string());
            }
            Step::Removed => self.restore(service_id, reason),
            Step::Restoring | Step::Unparking => {}
        }
    }

    /// The service is gone from Swarm: unpark its ports, without a record.
    pub(super) fn forget_removal(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.forget = true;
        match r.step {
            // The step in flight ends first and sees `forget`.
            Step::Parking | Step::Reparking | Step::Removing | Step::Unparking => {}
            Step::Restoring if r.writing => {}
            Step::Removed | Step::Restoring => self.unpark(service_id),
        }
    }

    pub(super) fn record_removal_now(&self, service_id: &str, zero: ZeroOutcome, reason: String) {
        if let Some(r) = self.removals.get(service_id) {
            self.record_removal(service_id, r, zero, reason, None);
        }
    }

    pub(super) fn record_removal(
        &self,
        service_id: &str,
        r: &Removal,
        zero: ZeroOutcome,
        reason: String,
        wake: Option<Duration>,
    ) {
        self.audit.record_zero(&ZeroRecord {
            time_unix_ms: unix_ms(),
            service: r.service.clone(),
            service_id: service_id.to_string(),
            container: r.replica.clone().unwrap_or_default(),
            zero,
            reason,
            docker_us: r.took.map_or(0, |t| t.as_micros() as u64),
            wake_us: wake.map(|w| w.as_micros() as u64),
            ports: r.ports.clone(),
        });
    }
}

impl Removal {
    pub(super) fn new(service: &str, ports: &[u16], step: Step, replica: Option<&String>, reason: String) -> Removal {
        Removal {
            service: service.to_string(),
            ports: ports.to_vec(),
            step,
            mode: ParkMode::Hold,
            replica: replica.cloned(),
            reason,
            attempt_ns: None,
            come_back: None,
            abort: false,
            writing: false,
            took: None,
            restore_reason: String::new(),
            listened: false,
            since: Instant::now(),
            looked: None,
            looking: false,
            warned_foreign: false,
            forget: false,
        }
    }
}
