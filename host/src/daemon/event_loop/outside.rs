//! The loop's outside parts, each behind a small trait so that unit tests
//! drive the whole loop with fakes (as Kubernetes' `horizontal_test.go`
//! drives the HPA controller with fake clients): the probe it tells what
//! to track, the Swarm writer under the actuator, and the I/O of scale to
//! zero (Docker's pause and unpause, the probe's wake and parked ports).
//! Docker's inventory and the policies folder need no trait: they reach
//! the loop as values ([`crate::swarm::Change`], [`crate::reload::Change`])
//! that a test builds itself.

use crate::daemon::zero::{Work, ZeroIo};
use crate::model::Tracked;
use crate::probe::{ProbeHandle, ProbeStats};
use crate::swarm::writer::Writer;
use crate::swarm::{Actuator, DockerWriter};

/// Which outside parts a [`super::Loop`] drives.
pub trait Outside: 'static {
    /// Reads and writes service specs, under the actuator.
    type Writer: Writer;
    /// The probe, told which containers to account.
    type Probe: Tracker;
    /// Carries out scale to zero's work.
    type Zero: ZeroRunner<Self::Writer>;
}

/// The daemon's own parts: bollard, the running probe, Docker's pause.
#[derive(Debug)]
pub struct Real;

impl Outside for Real {
    type Writer = DockerWriter;
    type Probe = ProbeHandle;
    type Zero = ZeroIo;
}

/// What the loop asks of a probe.
pub trait Tracker: std::fmt::Debug + Send + 'static {
    /// Start accounting a container, or update its thresholds.
    fn track(&self, tracked: Tracked);
    /// Stop accounting a container.
    fn untrack(&self, container_id: &str);
    /// Events delivered and lost so far (logged at shutdown).
    fn stats(&self) -> ProbeStats;
}

impl Tracker for ProbeHandle {
    fn track(&self, tracked: Tracked) {
        ProbeHandle::track(self, tracked);
    }

    fn untrack(&self, container_id: &str) {
        ProbeHandle::untrack(self, container_id);
    }

    fn stats(&self) -> ProbeStats {
        ProbeHandle::stats(self)
    }
}

/// What the loop asks of scale to zero's I/O: start a piece of [`Work`]
/// (its end comes back as a `zero::Done`), or end one at once as failed.
pub trait ZeroRunner<W: Writer>: std::fmt::Debug + Send + 'static {
    /// Start `work`; spec writes go through `actuator`.
    fn run(&self, work: Work, actuator: &mut Actuator<W>);
    /// Multi-node mode: `work` was for a node that cannot be reached.
    fn unreachable(&self, work: Work, node: Option<&str>);
}

impl ZeroRunner<DockerWriter> for ZeroIo {
    fn run(&self, work: Work, actuator: &mut Actuator<DockerWriter>) {
        ZeroIo::run(self, work, actuator);
    }

    fn unreachable(&self, work: Work, node: Option<&str>) {
        ZeroIo::unreachable(self, work, node);
    }
}
