//! The actuator's only I/O: read a service's spec and version, write its
//! replica count. [`Writer`] is a thin trait so that the worker is tested
//! with a fake; [`DockerWriter`] is the real thing (bollard).

use std::future::Future;

use bollard::Docker;
use bollard::models::{Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated};
use bollard::query_parameters::UpdateServiceOptions;

use super::client::{is_not_found, is_unreachable, is_version_conflict};
use super::guardrails::Way;
use super::inventory::spec_replicas;

/// The service label in which the actuator records its last scale, written
/// in the same update as the replicas: `up 1764326400123` (direction, Unix
/// ms). Swarm keeps it, so cooldowns survive a daemon restart and a move of
/// the decider to another manager. Not an `autoscale.*` label: it is no
/// setting.
pub const LAST_SCALE_LABEL: &str = "autoscaler.last-scale";

/// A service's spec as read right before a write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// Replicas in the spec; `None` for a service that is not replicated.
    pub replicas: Option<u32>,
    /// The spec's version index, sent back with the update.
    pub version: u64,
    /// The whole spec, written back with only the replicas changed.
    pub spec: ServiceSpec,
    /// The last scale the actuator recorded on the service
    /// ([`LAST_SCALE_LABEL`]): which way and when (Unix ns).
    pub last_scale: Option<(Way, i128)>,
}

impl Current {
    /// Read the parts the actuator uses from bollard's service.
    pub fn from_service(service: Service) -> Current {
        let spec = service.spec.unwrap_or_default();
        let replicas = spec_replicas(&spec);
        let last_scale = spec.labels.as_ref().and_then(|l| l.get(LAST_SCALE_LABEL)).and_then(|v| parse_last_scale(v));
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        Current { replicas, version, spec, last_scale }
    }
}

/// Why a read or write failed, as the worker needs to know it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Docker did not answer: back off and retry.
    #[error("docker is unreachable: {0}")]
    Unreachable(String),
    /// The spec changed since it was read: read again.
    #[error("the service changed since it was read (version conflict)")]
    Conflict,
    /// The service does not exist.
    #[error("the service does not exist")]
    NotFound,
    /// Anything else Docker refused.
    #[error("docker refused: {0}")]
    Other(String),
}

impl From<bollard::errors::Error> for WriteError {
    fn from(err: bollard::errors::Error) -> Self {
        if is_version_conflict(&err) {
            WriteError::Conflict
        } else if is_not_found(&err) {
            WriteError::NotFound
        } else if is_unreachable(&err) {
            WriteError::Unreachable(err.to_string())
        } else {
            WriteError::Other(err.to_string())
        }
    }
}

/// Reads and writes a service's spec: the actuator's only I/O.
pub trait Writer: Send + Sync + 'static {
    /// The service's current spec and version.
    fn read(&self, service_id: &str) -> impl Future<Output = Result<Current, WriteError>> + Send;
    /// Write `current.spec` with `replicas`, guarded by `current.version`,
    /// recording the scale in [`LAST_SCALE_LABEL`].
    fn scale(
        &self,
        service_id: &str,
        current: Current,
        replicas: u32,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// [`Writer::scale`] without recording it in [`LAST_SCALE_LABEL`]: scale
    /// to zero's own writes (a removed service going to 0 and coming back to
    /// 1) are no policy's scale, and must not start its cooldowns.
    fn set_replicas(
        &self,
        service_id: &str,
        current: Current,
        replicas: u32,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// The production [`Writer`]: bollard's service inspect and update.
#[derive(Debug, Clone)]
pub struct DockerWriter {
    /// The connected engine.
    pub docker: Docker,
}

impl Writer for DockerWriter {
    async fn read(&self, service_id: &str) -> Result<Current, WriteError> {
        Ok(Current::from_service(self.docker.inspect_service(service_id, None).await?))
    }

    async fn scale(&self, service_id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        self.write(service_id, current, replicas, true).await
    }

    async fn set_replicas(&self, service_id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        self.write(service_id, current, replicas, false).await
    }
}

impl DockerWriter {
    async fn write(&self, service_id: &str, current: Current, replicas: u32, mark: bool) -> Result<(), WriteError> {
        let mut spec = current.spec;
        if mark {
            let way = if current.replicas.is_some_and(|now| replicas < now) { Way::Down } else { Way::Up };
            let unix_ms = crate::model::unix_ns() / 1_000_000;
            spec.labels.get_or_insert_default().insert(LAST_SCALE_LABEL.to_string(), format!("{way} {unix_ms}"));
        }
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }),
            ..Default::default()
        });
        let version = i32::try_from(current.version)
            .map_err(|_| WriteError::Other(format!("service version {} does not fit the API", current.version)))?;
        let options = UpdateServiceOptions { version, ..Default::default() };
        self.docker.update_service(service_id, spec, options, None).await?;
        Ok(())
    }
}

/// Read a [`LAST_SCALE_LABEL`] value: `up|down UNIX_MS`.
fn parse_last_scale(value: &str) -> Option<(Way, i128)> {
    let (way, ms) = value.trim().split_once(' ')?;
    let way = match way {
        "up" => Way::Up,
        "down" => Way::Down,
        _ => return None,
    };
    Some((way, ms.trim().parse::<i128>().ok()?.checked_mul(1_000_000)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_scale_label_round_trips() {
        assert_eq!(parse_last_scale("up 1764326400123"), Some((Way::Up, 1_764_326_400_123_000_000)));
        assert_eq!(parse_last_scale("down 5"), Some((Way::Down, 5_000_000)));
        assert_eq!(parse_last_scale("sideways 5"), None);
        assert_eq!(parse_last_scale("up soon"), None);
        let mut labels = std::collections::HashMap::new();
        labels.insert(LAST_SCALE_LABEL.to_string(), "down 7".to_string());
        let service =
            Service { spec: Some(ServiceSpec { labels: Some(labels), ..Default::default() }), ..Default::default() };
        assert_eq!(Current::from_service(service).last_scale, Some((Way::Down, 7_000_000)));
    }
}
