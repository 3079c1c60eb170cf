//! Freeze and thaw one task container with Docker's pause and unpause (the
//! cgroup freezer): the Docker I/O of scale to zero. The decisions of when
//! to freeze and thaw are the daemon's (`daemon/zero.rs`).
//!
//! Why pause, and not the freezer file directly: Docker and Swarm then stay
//! truthful. `docker ps` says `Paused`, the task stays `Running` in Swarm
//! (the orchestrator neither restarts nor reschedules a paused task), and a
//! `docker unpause` by an operator does what they expect.
//!
//! Health checks: Docker keeps running a container's `HEALTHCHECK` while it
//! is paused; each exec fails ("container is paused") and counts as a failed
//! check, so after `retries` intervals the container turns `unhealthy`
//! (moby/moby#46203) and Swarm replaces the task. [`Freezer::health_check`]
//! lets the daemon refuse to freeze such a replica.

use std::time::{Duration, Instant};

use bollard::Docker;

/// Pauses and unpauses containers through the Docker API.
#[derive(Debug, Clone)]
pub struct Freezer {
    /// The engine the containers run on.
    pub docker: Docker,
}

impl Freezer {
    /// Pause the container; how long Docker took.
    pub async fn freeze(&self, container_id: &str) -> Result<Duration, String> {
        let start = Instant::now();
        self.docker
            .pause_container(container_id)
            .await
            .map_err(|err| format!("cannot pause container {container_id}: {err}"))?;
        Ok(start.elapsed())
    }

    /// Unpause the container; how long Docker took.
    pub async fn thaw(&self, container_id: &str) -> Result<Duration, String> {
        let start = Instant::now();
        self.docker
            .unpause_container(container_id)
            .await
            .map_err(|err| format!("cannot unpause container {container_id}: {err}"))?;
        Ok(start.elapsed())
    }

    /// Whether Docker says the container is paused.
    pub async fn is_paused(&self, container_id: &str) -> Result<bool, String> {
        let inspect = self
            .docker
            .inspect_container(container_id, None)
            .await
            .map_err(|err| format!("cannot inspect container {container_id}: {err}"))?;
        Ok(inspect.state.and_then(|s| s.paused).unwrap_or(false))
    }

    /// The container's health check command, if it has one (from the
    /// service or the image); `Err` when Docker cannot say.
    pub async fn health_check(&self, container_id: &str) -> Result<Option<Vec<String>>, String> {
        let inspect = self
            .docker
            .inspect_container(container_id, None)
            .await
            .map_err(|err| format!("cannot inspect container {container_id}: {err}"))?;
        let test = inspect.config.and_then(|c| c.healthcheck).and_then(|h| h.test).unwrap_or_default();
        Ok(has_health_check(&test).then_some(test))
    }
}

/// Whether a `HealthConfig.test` runs a check: empty inherits (none here,
/// the image's is already merged in), `["NONE"]` disables.
fn has_health_check(test: &[String]) -> bool {
    !test.is_empty() && test[0] != "NONE"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_command_is_a_health_check() {
        assert!(!has_health_check(&[]));
        assert!(!has_health_check(&["NONE".to_string()]));
        assert!(has_health_check(&["CMD".to_string(), "/probe".to_string()]));
        assert!(has_health_check(&["CMD-SHELL".to_string(), "true".to_string()]));
    }
}
