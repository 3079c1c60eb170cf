//! Mutual TLS with swarm-style certificates made by `openssl` for each
//! test: a CA, managers and workers whose subjects and SANs are Swarm's
//! (`O=<cluster>, OU=swarm-manager|swarm-worker, CN=<node id>`, SAN
//! `swarm-manager|swarm-worker` and the node id), and a second CA. The
//! decider and agents run end to end over loopback TCP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::*;
use crate::cluster::{AgentHandle, ChannelSettings, Decider, Leadership, Membership, RemoteEvent};
use crate::model::{EventKind, Metric, Unit, monotonic_ns};
use crate::probe::{ProbeEvent, Reading};

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect(
            "these tests make their certificates with the `openssl` command: install it (apt-get install openssl)",
        );
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate authority in `dir/<name>`.
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(root: &Path, name: &str) -> Ca {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key"]);
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=swarm-ca",
                "-days",
                "2",
                "-out",
                "ca.crt",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir }
    }

    /// A node's certificate folder as Swarm lays it out, the key with the
    /// PEM headers Swarm writes.
    fn node(&self, root: &Path, node_id: &str, role: &str) -> SwarmCerts {
        let dir = root.join(format!("{node_id}-{}", self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("ca")));
        std::fs::create_dir_all(&dir).expect("mkdir");
        self.issue(&dir, node_id, role);
        SwarmCerts::new(dir)
    }

    /// (Re)issue `node_id`'s certificate into `dir`, replacing its files.
    fn issue(&self, dir: &Path, node_id: &str, role: &str) {
        let ext = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{role},DNS:{node_id}\n"
        );
        std::fs::write(dir.join("ext.cnf"), ext).expect("ext");
        openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "plain.key"]);
        let subject = format!("/O=testcluster/OU={role}/CN={node_id}");
        openssl(dir, &["req", "-new", "-key", "plain.key", "-subj", &subject, "-out", "node.csr"]);
        let ca_crt = self.dir.join("ca.crt");
        let ca_key = self.dir.join("ca.key");
        let serial = format!("0x{}", hex::encode(&crate::cluster::auth::nonce().expect("random")[..8]));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                ca_crt.to_str().expect("utf-8"),
                "-CAkey",
                ca_key.to_str().expect("utf-8"),
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "new.crt",
            ],
        );
        let key = std::fs::read_to_string(dir.join("plain.key")).expect("key");
        let key = key.replacen(
            "-----BEGIN PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nkek-version: 0\nraft-dek: CiBmYWtlIGtleQ==\n\n",
            1,
        );
        // Swarm replaces each file by a rename, as here.
        std::fs::write(dir.join("tmp.key"), key).expect("key");
        std::fs::rename(dir.join("tmp.key"), dir.join("swarm-node.key")).expect("rename");
        std::fs::rename(dir.join("new.crt"), dir.join("swarm-node.crt")).expect("rename");
        std::fs::copy(&ca_crt, dir.join("tmp-ca.crt")).expect("copy");
        std::fs::rename(dir.join("tmp-ca.crt"), dir.join("swarm-root-ca.crt")).expect("rename");
    }
}

fn settings() -> ChannelSettings {
    ChannelSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        heartbeat: Duration::from_millis(200),
        handshake_timeout: Duration::from_millis(1000),
        node_timeout: Duration::from_millis(1000),
        reconnect_base: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..ChannelSettings::default()
    }
}

struct Endpoint {
    decider: Decider,
    _leadership: watch::Sender<Leadership>,
    events: mpsc::Receiver<RemoteEvent>,
    membership: mpsc::UnboundedReceiver<Membership>,
}

async fn decider(certs: &SwarmCerts, token: Option<Token>) -> Endpoint {
    let (leadership, rx) = watch::channel(Leadership { is_leader: true, leader_addr: None });
    let (events_tx, events) = mpsc::channel(64);
    let (membership_tx, membership) = mpsc::unbounded_channel();
    let credentials = Credentials::Swarm { certs: certs.clone(), token };
    let decider = Decider::bind(settings(), credentials, rx, events_tx, membership_tx).await.expect("bind");
    Endpoint { decider, _leadership: leadership, events, membership }
}

fn agent(ep: &Endpoint, certs: &SwarmCerts, token: Option<Token>, claims: &str) -> AgentHandle {
    let addr = ep.decider.local_addr().to_string();
    let credentials = Credentials::Swarm { certs: certs.clone(), token };
    AgentHandle::spawn(settings(), credentials, claims.into(), format!("host-{claims}"), vec![addr])
}

async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The agent never gets a session while the decider refuses it, again and
/// again (each refusal counted), and no node joins the aggregates.
async fn refused_again_and_again(ep: &mut Endpoint, agent: &AgentHandle, what: &str) {
    eventually(Duration::from_secs(5), what, || ep.decider.stats().refused >= 3).await;
    assert!(!agent.is_connected(), "{what}: the agent has no session");
    assert_eq!(agent.stats().sessions, 0, "{what}: never a session");
    assert_eq!(ep.decider.stats().sessions, 0, "{what}: the decider accepted none");
    assert!(ep.membership.try_recv().is_err(), "{what}: no node joined");
    assert!(ep.decider.live_nodes().is_empty(), "{what}");
}

fn event(container: &str, value: f64) -> ProbeEvent {
    ProbeEvent::Reading(Reading {
        container_id: container.into(),
        metric: Metric::CPU,
        value,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        timestamp_ns: monotonic_ns(),
    })
}

#[test]
fn the_subject_names_node_and_role_and_swarm_key_headers_are_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let worker = ca.node(tmp.path(), "w1", WORKER_ROLE);
    let me = worker.identity().expect("a swarm-style folder loads");
    assert_eq!(me, CertIdentity { node_id: "w1".into(), role: WORKER_ROLE.into() });
    assert!(!me.is_manager());
    assert!(ca.node(tmp.path(), "m1", MANAGER_ROLE).identity().expect("loads").is_manager());
    // Garbage is not an identity.
    assert_eq!(CertIdentity::from_der(b"\x30\x03\x02\x01\x00"), None);
    assert_eq!(CertIdentity::from_der(b""), None);
}

#[test]
fn the_real_swarm_certificate_of_this_machine_names_its_node() {
    let dir = Path::new(DEFAULT_CERT_DIR);
    if std::fs::metadata(dir.join("swarm-node.key")).is_err() {
        eprintln!("SKIPPED: no readable swarm certificates in {DEFAULT_CERT_DIR} (needs root and a swarm)");
        return;
    }
    let me = SwarmCerts::new(dir).identity().expect("the real swarm files load");
    assert_eq!(me.node_id.len(), 25, "a swarm node id: {me:?}");
    assert!(me.role == MANAGER_ROLE || me.role == WORKER_ROLE, "{me:?}");
}

#[tokio::test]
async fn the_right_certificate_is_accepted_and_the_session_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let mut ep = decider(&ca.node(tmp.path(), "m1", MANAGER_ROLE), None).await;
    let agent = agent(&ep, &ca.node(tmp.path(), "w1", WORKER_ROLE), None, "w1");
    eventually(Duration::from_secs(5), "the worker connected", || agent.is_connected()).await;
    assert_eq!(ep.membership.recv().await, Some(Membership::Live { node_id: "w1".into(), hostname: "host-w1".into() }));
    agent.forward(event("c1", 0.9));
    let got = tokio::time::timeout(Duration::from_secs(3), ep.events.recv()).await.expect("in time").expect("open");
    assert_eq!(got.node_id, "w1");
    assert_eq!(ep.decider.stats().refused, 0);
}

#[tokio::test]
async fn a_worker_certificate_claiming_another_node_id_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let mut ep = decider(&ca.node(tmp.path(), "m1", MANAGER_ROLE), None).await;
    let worker = ca.node(tmp.path(), "w1", WORKER_ROLE);
    // The real w2 is connected; w1 tries to take its place.
    let real = agent(&ep, &ca.node(tmp.path(), "w2", WORKER_ROLE), None, "w2");
    eventually(Duration::from_secs(5), "w2 connected", || real.is_connected()).await;
    assert!(matches!(ep.membership.recv().await, Some(Membership::Live { node_id, .. }) if node_id == "w2"));
    let forger = agent(&ep, &worker, None, "w2");
    eventually(Duration::from_secs(5), "the forger refused", || ep.decider.stats().refused >= 3).await;
    assert_eq!(forger.stats().sessions, 0, "w1's certificate never speaks for w2");
    assert_eq!(ep.decider.stats().sessions, 1, "only the real w2's session");
    assert_eq!(real.stats().sessions, 1, "the real w2's session was never replaced");
    assert!(real.is_connected());
    // Claiming the manager's id, or a role name, fares no better.
    drop(forger);
    let before = ep.decider.stats().refused;
    let as_manager = agent(&ep, &worker, None, "m1");
    eventually(Duration::from_secs(5), "claiming m1 refused", || ep.decider.stats().refused >= before + 2).await;
    assert_eq!(as_manager.stats().sessions, 0);
    drop(as_manager);
    let before = ep.decider.stats().refused;
    let as_role = agent(&ep, &worker, None, "swarm-worker");
    eventually(Duration::from_secs(5), "claiming a SAN refused", || ep.decider.stats().refused >= before + 2).await;
    assert_eq!(as_role.stats().sessions, 0);
    assert_eq!(ep.decider.live_nodes(), vec![("w2".to_string(), "host-w2".to_string())]);
}

#[tokio::test]
async fn a_worker_certificate_cannot_serve_as_the_decider() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    // A worker runs a decider of its own with its real certificate.
    let mut ep = decider(&ca.node(tmp.path(), "w9", WORKER_ROLE), None).await;
    for (id, role) in [("w1", WORKER_ROLE), ("m1", MANAGER_ROLE)] {
        let agent = agent(&ep, &ca.node(tmp.path(), id, role), None, id);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!agent.is_connected(), "{id}'s agent refused the worker's decider");
        assert_eq!(agent.stats().sessions, 0);
    }
    let w2 = agent(&ep, &ca.node(tmp.path(), "w2", WORKER_ROLE), None, "w2");
    refused_again_and_again(&mut ep, &w2, "worker decider").await;
    // The agent's own check, on its own: a worker's certificate is refused
    // for its role even when the name check is passed.
    let worker = ca.node(tmp.path(), "w3", WORKER_ROLE);
    let manager = ca.node(tmp.path(), "m3", MANAGER_ROLE);
    let (server, _, _) = worker.current().expect("load");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tokio_rustls::TlsAcceptor::from(server).accept(tcp).await.map(|_| ())
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let err = Credentials::Swarm { certs: manager, token: None }.connect(tcp).await.expect_err("refused");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    let _ = serve.await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let other = Ca::new(tmp.path(), "other");
    let mut ep = decider(&ca.node(tmp.path(), "m1", MANAGER_ROLE), None).await;
    let stranger = agent(&ep, &other.node(tmp.path(), "w1", WORKER_ROLE), None, "w1");
    refused_again_and_again(&mut ep, &stranger, "an agent of another swarm").await;
    // A decider of another swarm, even a manager's, gets no agent of ours.
    let mut foreign = decider(&other.node(tmp.path(), "m1", MANAGER_ROLE), None).await;
    let ours = agent(&foreign, &ca.node(tmp.path(), "w2", WORKER_ROLE), None, "w2");
    refused_again_and_again(&mut foreign, &ours, "a decider of another swarm").await;
}

#[tokio::test]
async fn a_rotated_certificate_is_used_from_the_next_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let other = Ca::new(tmp.path(), "other");
    let mut ep = decider(&ca.node(tmp.path(), "m1", MANAGER_ROLE), None).await;
    // The node starts with a certificate this swarm does not trust...
    let certs = other.node(tmp.path(), "w1", WORKER_ROLE);
    let agent = agent(&ep, &certs, None, "w1");
    eventually(Duration::from_secs(5), "refused first", || ep.decider.stats().refused >= 2).await;
    assert!(!agent.is_connected());
    // ...then Swarm replaces the files: the next attempt uses them.
    ca.issue(certs.dir(), "w1", WORKER_ROLE);
    eventually(Duration::from_secs(5), "connected after the rotation", || agent.is_connected()).await;
    assert!(matches!(ep.membership.recv().await, Some(Membership::Live { node_id, .. }) if node_id == "w1"));
}

#[tokio::test]
async fn the_token_is_a_second_factor_when_configured() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(tmp.path(), "ca");
    let token = |t: &str| Some(Token::new(t.as_bytes()).expect("token"));
    let mut ep = decider(&ca.node(tmp.path(), "m1", MANAGER_ROLE), token("the deployment's token")).await;
    let w1 = ca.node(tmp.path(), "w1", WORKER_ROLE);
    let without = agent(&ep, &w1, None, "w1");
    refused_again_and_again(&mut ep, &without, "the right certificate without the token").await;
    drop(without);
    let wrong = agent(&ep, &w1, token("another token entirely"), "w1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wrong.stats().sessions, 0, "a wrong token");
    drop(wrong);
    let both = agent(&ep, &w1, token("the deployment's token"), "w1");
    eventually(Duration::from_secs(5), "certificate and token", || both.is_connected()).await;
}
