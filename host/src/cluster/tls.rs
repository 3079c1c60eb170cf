//! Node identity from Swarm's own PKI: the agent channel runs over mutual
//! TLS with the certificates every Swarm node already holds.
//!
//! Swarm gives each node a certificate from the swarm's CA, subject
//! `O=<cluster id>, OU=swarm-manager|swarm-worker, CN=<node id>`, in
//! `<data-root>/swarm/certificates` (`swarm-node.crt`, `swarm-node.key`,
//! `swarm-root-ca.crt`), and rotates it (90 days by default) by replacing
//! the files. Here:
//! - the decider (server) requires a client certificate chaining to the
//!   swarm's root CA; the node id an agent announces in its hello must be
//!   its certificate's CN (checked in `decider.rs` with [`CertIdentity`]);
//! - the agent (client) accepts only a certificate chaining to the same
//!   root, valid for the name `swarm-manager` (the SAN Swarm gives managers
//!   only) and whose OU is `swarm-manager`: a worker cannot be a decider;
//! - the files are re-read whenever one of them changed (a `stat` per
//!   handshake), so a rotated certificate is used from the next connection;
//! - the handshake of [`super::handshake`] then runs inside TLS with a
//!   "token" exported from the TLS session (RFC 5705 keying material, mixed
//!   with the shared token when one is configured as a second factor): its
//!   proofs and frame MACs bind the session to this TLS connection.
//!
//! [`Credentials::Token`] keeps the old shared-token channel over plain
//! TCP for setups without the swarm's key (an autolocked swarm encrypts
//! `swarm-node.key`; tests without a swarm): there any token holder can
//! claim any node id, see docs/security.md.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::auth::Token;

/// Where Swarm keeps a node's certificates with the default data root.
pub const DEFAULT_CERT_DIR: &str = "/var/lib/docker/swarm/certificates";

/// The OU (and SAN) of a manager's certificate.
pub const MANAGER_ROLE: &str = "swarm-manager";

/// The OU of a worker's certificate.
pub const WORKER_ROLE: &str = "swarm-worker";

const NODE_CERT: &str = "swarm-node.crt";
const NODE_KEY: &str = "swarm-node.key";
const ROOT_CA: &str = "swarm-root-ca.crt";

/// Most bytes read from one certificate or key file.
const MAX_FILE: u64 = 1024 * 1024;

/// The RFC 5705 label of the keying material the channel's handshake is
/// bound to.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-swarm-autoscaler-channel";

/// Why the certificates cannot be used, or a peer's were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error(
        "cannot read {path} ({source}); the daemon needs the node's swarm certificates (mount {DEFAULT_CERT_DIR} read-only into the task, or point --cluster-cert-dir at <data-root>/swarm/certificates)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {what}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the configuration (a key that does not match, ...).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The TLS handshake failed (the peer's certificate, or the network).
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    /// The peer's certificate verified but does not give the right to talk.
    #[error("the peer's certificate {0}")]
    Peer(String),
}

/// Who a certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The Swarm node id (the CN).
    pub node_id: String,
    /// `swarm-manager` or `swarm-worker` (the OU).
    pub role: String,
}

impl CertIdentity {
    /// Whether the certificate is a manager's.
    pub fn is_manager(&self) -> bool {
        self.role == MANAGER_ROLE
    }

    /// The identity a DER certificate's subject names.
    pub fn from_der(der: &[u8]) -> Option<CertIdentity> {
        let (node_id, role) = subject_cn_ou(der)?;
        Some(CertIdentity { node_id, role })
    }
}

/// One node's swarm certificates, read from `dir` and re-read whenever a
/// file changed.
#[derive(Debug, Clone)]
pub struct SwarmCerts {
    dir: PathBuf,
    cache: Arc<Mutex<Option<Loaded>>>,
}

/// What changes when Swarm replaces a file: inode, size, modification time.
type Stamp = Vec<(u64, u64, i64, i64)>;

#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    me: CertIdentity,
}

impl SwarmCerts {
    /// The certificates in `dir` (`<data-root>/swarm/certificates`). Nothing
    /// is read yet: see [`SwarmCerts::identity`].
    pub fn new(dir: impl Into<PathBuf>) -> SwarmCerts {
        SwarmCerts { dir: dir.into(), cache: Arc::new(Mutex::new(None)) }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Who this node's own certificate names (reads the files: the check
    /// the daemon makes at start).
    pub fn identity(&self) -> Result<CertIdentity, TlsError> {
        Ok(self.current()?.2)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn stamp(&self) -> Result<Stamp, TlsError> {
        use std::os::unix::fs::MetadataExt;
        [NODE_CERT, NODE_KEY, ROOT_CA]
            .iter()
            .map(|name| {
                let path = self.path(name);
                let m = std::fs::metadata(&path).map_err(|source| TlsError::Read { path, source })?;
                Ok((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
            })
            .collect()
    }

    /// The configurations for the files as they are now.
    fn current(&self) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>, CertIdentity), TlsError> {
        let stamp = self.stamp()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(loaded) = cache.as_ref().filter(|l| l.stamp == stamp) {
            return Ok((loaded.server.clone(), loaded.client.clone(), loaded.me.clone()));
        }
        let loaded = self.load(stamp)?;
        if cache.is_some() {
            tracing::info!(dir = %self.dir.display(), node = %loaded.me.node_id, "cluster: swarm certificates changed on disk; new connections use the new ones");
        }
        let out = (loaded.server.clone(), loaded.client.clone(), loaded.me.clone());
        *cache = Some(loaded);
        Ok(out)
    }

    fn load(&self, stamp: Stamp) -> Result<Loaded, TlsError> {
        let cert_path = self.path(NODE_CERT);
        let key_path = self.path(NODE_KEY);
        let root_path = self.path(ROOT_CA);
        let bad = |path: &Path, what: &str| TlsError::Bad { path: path.to_path_buf(), what: what.to_string() };
        let chain = certs(&cert_path)?;
        let me = CertIdentity::from_der(&chain[0]).ok_or_else(|| bad(&cert_path, "no CN and OU in the subject"))?;
        let key_pem = read_capped(&key_path)?;
        if key_pem.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err(bad(
                &key_path,
                "the key is encrypted (an autolocked swarm): use --cluster-auth token with a shared token instead",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&strip_pem_headers(&key_pem))
            .map_err(|err| bad(&key_path, &format!("no private key ({err})")))?;
        let mut roots = RootCertStore::empty();
        for root in certs(&root_path)? {
            roots.add(root).map_err(|err| bad(&root_path, &format!("not a CA certificate ({err})")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |err: rustls::Error| TlsError::Config(err.to_string());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|err| TlsError::Config(err.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        Ok(Loaded { stamp, server: Arc::new(server), client: Arc::new(client), me })
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read = |source| TlsError::Read { path: path.to_path_buf(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(read)?.take(MAX_FILE).read_to_end(&mut bytes).map_err(read)?;
    Ok(bytes)
}

/// Every certificate in a PEM file, in order; at least one.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = strip_pem_headers(&read_capped(path)?);
    let all = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Bad { path: path.to_path_buf(), what: format!("bad PEM ({err})") })?;
    if all.is_empty() {
        return Err(TlsError::Bad { path: path.to_path_buf(), what: "no certificate".into() });
    }
    Ok(all)
}

/// PEM without RFC 1421 header lines (`kek-version: 0`, `raft-dek: ...`:
/// Swarm writes them into the key file), which the PEM parser would take
/// for base64.
fn strip_pem_headers(pem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pem.len());
    for line in pem.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"-----") && line.contains(&b':') {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// One DER element: its tag, its content, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The CN and OU of a certificate's subject.
fn subject_cn_ou(der: &[u8]) -> Option<(String, String)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serial, signature, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, mut name, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let (mut cn, mut ou) = (None, None);
    while !name.is_empty() {
        let (_, mut set, rest) = tlv(name)?;
        name = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = tlv(set)?;
            set = rest;
            let (_, oid, value) = tlv(attribute)?;
            let (_, value, _) = tlv(value)?;
            let text = std::str::from_utf8(value).ok()?.to_string();
            match oid {
                [0x55, 0x04, 0x03] => cn = Some(text),
                [0x55, 0x04, 0x0b] => ou = Some(text),
                _ => {}
            }
        }
    }
    Some((cn?, ou?))
}

/// A connection the channel's frames travel on: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The reading half of a channel connection.
pub type ReadHalf = tokio::io::ReadHalf<Box<dyn Io>>;
/// The writing half of a channel connection.
pub type WriteHalf = tokio::io::WriteHalf<Box<dyn Io>>;

/// How the nodes of one deployment prove who they are.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The shared token alone, over plain TCP: any holder of the token can
    /// claim any node id and act as the decider. For setups without the
    /// swarm's keys (autolocked swarm) and tests; see docs/security.md.
    Token(Token),
    /// Mutual TLS with the swarm's node certificates; the token, when
    /// given, is a second factor (a node needs both).
    Swarm {
        /// This node's certificates.
        certs: SwarmCerts,
        /// The shared token, if one is configured.
        token: Option<Token>,
    },
}

impl From<Token> for Credentials {
    fn from(token: Token) -> Credentials {
        Credentials::Token(token)
    }
}

/// A connection after its transport's handshake: the stream, the token the
/// channel's own handshake runs with, and who the peer's certificate names.
#[derive(Debug)]
pub struct Secured {
    /// Where the frames go.
    pub stream: Box<dyn Io>,
    /// The shared token, or the TLS session's exported key (mixed with the
    /// shared token when one is configured).
    pub token: Token,
    /// The peer's certificate, with TLS.
    pub peer: Option<CertIdentity>,
}

impl std::fmt::Debug for dyn Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io(..)")
    }
}

/// The handshake token bound to a TLS session.
fn bound_token(exported: [u8; 32], token: Option<&Token>) -> Result<Token, TlsError> {
    let bytes = match token {
        Some(token) => token.mac(&[b"swarm-autoscaler tls ", &exported]),
        None => exported,
    };
    Token::new(hex::encode(bytes).as_bytes()).map_err(|_| TlsError::Config("exported key too short".into()))
}

/// What a finished TLS session says, on either side: the peer's node and
/// role from its leaf certificate, and the session's channel token (keying
/// material exported from the session, bound to `token` when one is set).
fn session_identity<D>(
    conn: &rustls::ConnectionCommon<D>,
    token: Option<&Token>,
) -> Result<(CertIdentity, Token), TlsError> {
    let peer = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| CertIdentity::from_der(leaf))
        .ok_or_else(|| TlsError::Peer("names no node (no CN/OU)".into()))?;
    let exported = conn
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(|err| TlsError::Config(err.to_string()))?;
    Ok((peer, bound_token(exported, token)?))
}

impl Credentials {
    /// Whether connections use TLS with the swarm's certificates.
    pub fn is_swarm(&self) -> bool {
        matches!(self, Credentials::Swarm { .. })
    }

    /// The decider's side of a new connection.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Secured, TlsError> {
        let (certs, token) = match self {
            Credentials::Token(token) => {
                return Ok(Secured { stream: Box::new(tcp), token: token.clone(), peer: None });
            }
            Credentials::Swarm { certs, token } => (certs, token),
        };
        let (server, _, _) = certs.current()?;
        let tls = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await.map_err(TlsError::Handshake)?;
        let (peer, token) = session_identity(&**tls.get_ref().1, token.as_ref())?;
        Ok(Secured { stream: Box::new(tls), token, peer: Some(peer) })
    }

    /// The agent's side of a new connection to a decider: with TLS, only a
    /// manager of this swarm is accepted.
    pub async fn connect(&self, tcp: TcpStream) -> Result<Secured, TlsError> {
        let (certs, token) = match self {
            Credentials::Token(token) => {
                return Ok(Secured { stream: Box::new(tcp), token: token.clone(), peer: None });
            }
            Credentials::Swarm { certs, token } => (certs, token),
        };
        let (_, client, _) = certs.current()?;
        let name = ServerName::try_from(MANAGER_ROLE).map_err(|err| TlsError::Config(err.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.map_err(TlsError::Handshake)?;
        let (peer, token) = session_identity(&**tls.get_ref().1, token.as_ref())?;
        if !peer.is_manager() {
            return Err(TlsError::Peer(format!("is {}'s, a {}: only a manager may decide", peer.node_id, peer.role)));
        }
        Ok(Secured { stream: Box::new(tls), token, peer: Some(peer) })
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
