//! The connection to Docker: where the engine is, which API version to
//! speak, and whether it is a Swarm manager this daemon can work with.
//!
//! The engine is found the way the `docker` CLI finds it: `DOCKER_HOST`
//! (`unix://`, `tcp://`, `https://`; `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH` for TLS), else the local socket
//! `/var/run/docker.sock`. The API version is negotiated down to what the
//! engine speaks (Debian's engine 20.10 speaks 1.41).
//!
//! This module also classifies bollard's errors for the rest of `swarm`:
//! "Docker is away" (retry with back-off), "the service changed under us"
//! (re-read and retry), or anything else.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::LocalNodeState;

/// How long one request may take to answer before it counts as failed.
/// Streams (the event stream) are not bounded by it once they answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon cannot work with the engine it was pointed at. Each
/// message is one line that names the engine and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No engine answers at the endpoint.
    #[error(
        "cannot reach the docker engine at {endpoint} ({cause}); start dockerd (examples/setup.sh does) or set DOCKER_HOST to a reachable swarm manager"
    )]
    Unreachable {
        /// Where we looked.
        endpoint: String,
        /// The innermost cause bollard reported (refused, no socket...).
        cause: String,
    },
    /// The engine answers but is not part of a Swarm.
    #[error(
        "the docker engine at {endpoint} is not part of a swarm (swarm state: {state}); run `docker swarm init` there, or set DOCKER_HOST to a swarm manager"
    )]
    NotInSwarm {
        /// Where we looked.
        endpoint: String,
        /// `LocalNodeState` as the engine reports it.
        state: String,
    },
    /// The engine is a Swarm worker: it cannot list or update services.
    #[error(
        "the docker engine at {endpoint} is a swarm worker, not a manager; set DOCKER_HOST to a manager node (services are read and scaled through a manager)"
    )]
    NotManager {
        /// Where we looked.
        endpoint: String,
    },
}

/// A connected engine that is a Swarm manager.
#[derive(Debug, Clone)]
pub struct SwarmClient {
    /// The bollard client, version negotiated.
    pub docker: Docker,
    /// `DOCKER_HOST` or the local socket: for log lines.
    pub endpoint: String,
    /// This manager's Swarm node id.
    pub node_id: String,
    /// Engine version and API version, for the startup log line.
    pub version: String,
}

/// Where the engine is expected, as the user would write it.
pub fn endpoint() -> String {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Connect, negotiate the API version and check that the engine is an
/// active Swarm manager.
pub async fn connect() -> Result<SwarmClient, ConnectError> {
    connect_to(&endpoint()).await
}

/// [`connect`] to the engine at `endpoint` (`unix://`, `tcp://`, `https://`).
pub async fn connect_to(endpoint: &str) -> Result<SwarmClient, ConnectError> {
    connect_checked(endpoint, true).await
}

/// Connect to this node's own engine (`DOCKER_HOST` or the local socket)
/// and check that it is an active Swarm node, manager or worker: every
/// node runs an agent in multi-node mode.
pub async fn connect_node() -> Result<SwarmClient, ConnectError> {
    connect_checked(&endpoint(), false).await
}

async fn connect_checked(endpoint: &str, need_manager: bool) -> Result<SwarmClient, ConnectError> {
    let endpoint = endpoint.to_string();
    let unreachable =
        |err: DockerError| ConnectError::Unreachable { endpoint: endpoint.clone(), cause: root_cause(&err) };
    let docker = Docker::connect_with_host(&endpoint).map_err(unreachable)?.with_timeout(REQUEST_TIMEOUT);
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    let info = docker.info().await.map_err(unreachable)?;
    let swarm = info.swarm.unwrap_or_default();
    match swarm.local_node_state {
        Some(LocalNodeState::ACTIVE) => {}
        other => {
            let state = other.map_or_else(|| "unknown".to_string(), |s| s.to_string());
            let state = if state.is_empty() { "inactive".to_string() } else { state };
            return Err(ConnectError::NotInSwarm { endpoint, state });
        }
    }
    if need_manager && swarm.control_available != Some(true) {
        return Err(ConnectError::NotManager { endpoint });
    }
    let api = docker.client_version();
    let version = format!(
        "engine {}, API {}.{}",
        info.server_version.unwrap_or_else(|| "unknown".into()),
        api.major_version,
        api.minor_version
    );
    Ok(SwarmClient { docker, endpoint, node_id: swarm.node_id.unwrap_or_default(), version })
}

/// The innermost error of a chain: "connection refused" says more than
/// "client error (Connect)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Docker did not answer (down, restarting, network): worth retrying.
pub fn is_unreachable(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::IOError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
    ) || matches!(err, DockerError::DockerResponseServerError { status_code, .. } if *status_code == 503)
}

/// The service changed between our read and our write (Swarm's optimistic
/// concurrency on the spec's version): re-read and decide again.
pub fn is_version_conflict(err: &DockerError) -> bool {
    match err {
        DockerError::DockerResponseServerError { message, .. } => {
            message.contains("update out of sequence") || message.contains("version mismatch")
        }
        _ => false,
    }
}

/// The object is gone (404).
pub fn is_not_found(err: &DockerError) -> bool {
    matches!(err, DockerError::DockerResponseServerError { status_code: 404, .. })
}

/// An RFC 3339 time as Docker writes it (`2026-11-28T04:10:21.041417123Z`,
/// or with an offset) in nanoseconds since the Unix epoch; `None` if it
/// does not parse.
pub fn rfc3339_unix_ns(rfc3339: &str) -> Option<i128> {
    let (date, rest) = rfc3339.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    // Time, fraction and offset: 04:10:21.041417123Z or ...+02:00.
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let offset = match zone.as_bytes().first() {
        Some(b'+' | b'-') => {
            let (h, m) = zone[1..].split_once(':')?;
            let seconds = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if zone.starts_with('-') { -seconds } else { seconds }
        }
        _ => 0,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let nanos: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(i128::from(seconds) * 1_000_000_000 + nanos.parse::<i128>().ok()?)
}

/// Back-off between retries while Docker is away: doubles from `BASE` up
/// to `MAX`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next delay.
    next: Duration,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// A back-off at its first, shortest delay.
    pub fn new() -> Self {
        Backoff { next: Self::BASE }
    }

    /// The delay to wait now; the one after is twice as long, up to `MAX`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Start again from the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.next = Self::BASE;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    /// A fake engine on a Unix socket: answers `/version` and `/info` with
    /// the given swarm state, every other path with 404.
    async fn fake_engine(dir: &std::path::Path, swarm: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let (status, body) = if path.ends_with("/version") {
                        ("200 OK", r#"{"Version":"20.10.24","ApiVersion":"1.41"}"#.to_string())
                    } else if path.ends_with("/info") {
                        ("200 OK", format!(r#"{{"ServerVersion":"20.10.24","Swarm":{swarm}}}"#))
                    } else {
                        ("404 Not Found", r#"{"message":"no such route"}"#.to_string())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        format!("unix://{}", path.display())
    }

    #[tokio::test]
    async fn refuses_an_engine_that_is_not_a_swarm_manager() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = fake_engine(dir.path(), r#"{"LocalNodeState":"inactive"}"#).await;
        let err = connect_to(&endpoint).await.expect_err("not in a swarm");
        assert!(matches!(err, ConnectError::NotInSwarm { ref state, .. } if state == "inactive"), "{err}");
        assert!(err.to_string().contains("docker swarm init"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let worker = r#"{"LocalNodeState":"active","ControlAvailable":false,"NodeID":"n1"}"#;
        let endpoint = fake_engine(dir.path(), worker).await;
        let err = connect_to(&endpoint).await.expect_err("a worker");
        assert!(matches!(err, ConnectError::NotManager { .. }), "{err}");
        assert!(err.to_string().contains("set DOCKER_HOST to a manager"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let manager = r#"{"LocalNodeState":"active","ControlAvailable":true,"NodeID":"n1"}"#;
        let endpoint = fake_engine(dir.path(), manager).await;
        let client = connect_to(&endpoint).await.expect("a manager");
        assert_eq!(client.node_id, "n1");
        assert!(client.version.contains("API 1.41"), "{}", client.version);
    }

    #[tokio::test]
    async fn refuses_an_endpoint_where_nothing_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = format!("unix://{}", dir.path().join("absent.sock").display());
        let err = connect_to(&endpoint).await.expect_err("nothing there");
        let line = err.to_string();
        assert!(matches!(err, ConnectError::Unreachable { .. }));
        assert!(line.contains(&endpoint) && line.contains("start dockerd") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn errors_are_classified() {
        let conflict = DockerError::DockerResponseServerError {
            status_code: 500,
            message: "rpc error: code = Unknown desc = update out of sequence".into(),
        };
        assert!(is_version_conflict(&conflict));
        assert!(!is_unreachable(&conflict));
        let gone = DockerError::DockerResponseServerError { status_code: 404, message: "service web not found".into() };
        assert!(is_not_found(&gone) && !is_version_conflict(&gone));
        assert!(is_unreachable(&DockerError::RequestTimeoutError));
        let io = DockerError::IOError { err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused) };
        assert!(is_unreachable(&io));
    }
}
