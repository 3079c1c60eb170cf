//! A fake Docker Engine API for the scale harness (issue 25): HTTP/1.1 on
//! a unix socket, serving what the daemon reads of a Swarm manager for N
//! nodes, S services and R replicas each, and applying `service update`
//! writes the way Swarm does (version check, replicas, labels), starting
//! or removing its simulated tasks after a configurable delay.
//!
//! Served: `/version`, `/_ping`, `/info` (this manager, leader, active),
//! `/nodes`, `/services`, `/services/{id}`, `POST /services/{id}/update`,
//! `/tasks` (filters `desired-state`, `service`, `node`), `/tasks/{id}`,
//! `/events` (a chunked stream of service events), `/containers/json`
//! (empty: the simulated containers live on other nodes). Anything else is
//! a 404, counted, so a harness sees what it missed.
//!
//! It records what a harness measures: when each service update was
//! written, and how many task listings, tasks and bytes it served.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// The manager's node id (no simulated task runs on it).
pub const MANAGER: &str = "mgr";

/// How the fake swarm starts.
#[derive(Debug, Clone)]
pub struct SwarmShape {
    /// Worker nodes, `node0`..
    pub nodes: usize,
    /// Services, `svc0000`.., each with these labels.
    pub services: usize,
    /// Replicas of each service at start.
    pub replicas: usize,
    /// Labels of every service.
    pub labels: Vec<(String, String)>,
    /// From an accepted update to its tasks started or removed.
    pub task_delay: Duration,
    /// The manager's channel address the nodes list says (host:port).
    pub manager_addr: String,
}

/// One recorded service update.
#[derive(Debug, Clone)]
pub struct Write {
    /// Service name.
    pub service: String,
    /// When it was accepted.
    pub at: Instant,
    /// Replicas it set.
    pub replicas: u64,
}

/// What the fake served, for the harness.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `GET /tasks` calls.
    pub task_lists: u64,
    /// Tasks in their answers.
    pub tasks: u64,
    /// Bytes of their answers.
    pub task_bytes: u64,
    /// Requests answered 404 by path (what the fake does not serve).
    pub unknown: BTreeMap<String, u64>,
    /// Updates refused for a stale version.
    pub out_of_sequence: u64,
}

#[derive(Debug)]
struct Task {
    id: String,
    container: String,
    node: String,
}

#[derive(Debug)]
struct Service {
    id: String,
    name: String,
    version: u64,
    replicas: u64,
    labels: BTreeMap<String, String>,
    tasks: Vec<Task>,
}

#[derive(Debug, Default)]
struct State {
    nodes: Vec<String>,
    services: BTreeMap<String, Service>,
    next_task: u64,
    writes: Vec<Write>,
    served: Served,
    subscribers: Vec<mpsc::UnboundedSender<String>>,
}

/// A running fake engine. Dropping it stops serving.
#[derive(Debug)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    task: tokio::task::AbortHandle,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TIME: &str = "2026-01-01T00:00:00.000000000Z";

impl State {
    fn start_task(&mut self, service: &str) {
        let n = self.next_task;
        self.next_task += 1;
        let node = self.nodes[(n as usize) % self.nodes.len()].clone();
        let task = Task { id: format!("task{n:021}"), container: format!("{n:064x}"), node };
        if let Some(s) = self.services.get_mut(service) {
            s.tasks.push(task);
        }
    }

    fn converge(&mut self, service: &str) {
        let Some(s) = self.services.get(service) else { return };
        let (want, have) = (s.replicas as usize, s.tasks.len());
        for _ in have..want {
            self.start_task(service);
        }
        if let Some(s) = self.services.get_mut(service) {
            s.tasks.truncate(want);
        }
    }

    fn event(&mut self, id: &str, name: &str, action: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let line = json!({
            "Type": "service", "Action": action, "scope": "swarm",
            "Actor": {"ID": id, "Attributes": {"name": name}},
            "time": now.as_secs(), "timeNano": now.as_nanos() as u64,
        })
        .to_string();
        self.subscribers.retain(|tx| tx.send(line.clone()).is_ok());
    }
}

fn service_json(s: &Service) -> Value {
    json!({
        "ID": s.id, "Version": {"Index": s.version}, "CreatedAt": TIME, "UpdatedAt": TIME,
        "Spec": {
            "Name": s.name, "Labels": s.labels,
            "TaskTemplate": {"ContainerSpec": {"Image": "sleeper:latest"}, "ForceUpdate": 0},
            "Mode": {"Replicated": {"Replicas": s.replicas}},
            "EndpointSpec": {"Mode": "vip"},
        },
        "Endpoint": {"Spec": {"Mode": "vip"}},
    })
}

/// A task as Swarm lists it, with a spec of the usual size (a real task
/// carries its service's whole task template).
fn task_json(s: &Service, t: &Task) -> Value {
    json!({
        "ID": t.id, "Version": {"Index": s.version}, "CreatedAt": TIME, "UpdatedAt": TIME,
        "Labels": {}, "ServiceID": s.id, "Slot": 1, "NodeID": t.node, "DesiredState": "running",
        "Spec": {
            "ContainerSpec": {"Image": "sleeper:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "Labels": {"com.docker.stack.namespace": "bench"}, "Init": false,
                "DNSConfig": {}, "Isolation": "default"},
            "Resources": {"Limits": {"NanoCPUs": 500000000, "MemoryBytes": 268435456}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "Delay": 5000000000u64, "MaxAttempts": 0},
            "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
            "ForceUpdate": 0,
        },
        "Status": {"Timestamp": TIME, "State": "running", "Message": "started",
            "ContainerStatus": {"ContainerID": t.container, "PID": 4242, "ExitCode": 0},
            "PortStatus": {}},
        "NetworksAttachments": [{"Network": {"ID": "ingressnetworkid0000000000", "Spec": {"Name": "ingress"}},
            "Addresses": ["10.0.0.7/24"]}],
    })
}

impl FakeEngine {
    /// Serve `shape` on a unix socket at `socket`.
    pub async fn start(socket: &Path, shape: SwarmShape) -> std::io::Result<FakeEngine> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let mut state =
            State { nodes: (0..shape.nodes.max(1)).map(|i| format!("node{i}")).collect(), ..State::default() };
        for i in 0..shape.services {
            let s = Service {
                id: format!("svcid{i:020}"),
                name: format!("svc{i:04}"),
                version: 10,
                replicas: shape.replicas as u64,
                labels: shape.labels.iter().cloned().collect(),
                tasks: Vec::new(),
            };
            let id = s.id.clone();
            state.services.insert(id.clone(), s);
            state.converge(&id);
        }
        let state = Arc::new(Mutex::new(state));
        let shape = Arc::new(shape);
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, st.clone(), shape.clone()));
            }
        })
        .abort_handle();
        Ok(FakeEngine { state, task })
    }

    /// Every update accepted so far.
    pub fn writes(&self) -> Vec<Write> {
        lock(&self.state).writes.clone()
    }

    /// What was served so far.
    pub fn served(&self) -> Served {
        lock(&self.state).served.clone()
    }

    /// Service name -> (replicas asked, containers running and their nodes).
    pub fn services(&self) -> BTreeMap<String, (u64, Vec<(String, String)>)> {
        let state = lock(&self.state);
        state
            .services
            .values()
            .map(|s| {
                (s.name.clone(), (s.replicas, s.tasks.iter().map(|t| (t.container.clone(), t.node.clone())).collect()))
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn connection(stream: UnixStream, state: Arc<Mutex<State>>, shape: Arc<SwarmShape>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        // Strip the API version prefix: /v1.47/info -> /info.
        let path = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |at| &rest[at..]),
            None => path,
        }
        .to_string();
        let query = parse_query(query);
        if method == "GET" && path == "/events" {
            events(write, &state).await;
            return;
        }
        let (code, answer) = answer(&method, &path, &query, &body, &state, &shape);
        let text = answer.to_string();
        if path == "/tasks" {
            lock(&state).served.task_bytes += text.len() as u64;
        }
        let reason = if code == 200 { "OK" } else { "Error" };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nApi-Version: 1.47\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn events(mut write: tokio::net::unix::OwnedWriteHalf, state: &Arc<Mutex<State>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(state).subscribers.push(tx);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if write.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while let Some(line) = rx.recv().await {
        let chunk = format!("{:x}\r\n{line}\n\r\n", line.len() + 1);
        if write.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.unwrap_or(b'%'));
                i += if hex.is_some() { 3 } else { 1 };
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `filters` as Docker encodes them: `{"name":["a","b"]}` or `{"name":{"a":true}}`.
fn filter(query: &HashMap<String, String>, name: &str) -> Option<Vec<String>> {
    let filters: Value = serde_json::from_str(query.get("filters")?).ok()?;
    match filters.get(name)? {
        Value::Array(values) => Some(values.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
        Value::Object(map) => Some(map.keys().cloned().collect()),
        _ => None,
    }
}

fn answer(
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    state: &Arc<Mutex<State>>,
    shape: &Arc<SwarmShape>,
) -> (u16, Value) {
    let mut st = lock(state);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => (200, json!("OK")),
        ("GET", ["version"]) => (
            200,
            json!({"Version": "27.3.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}),
        ),
        ("GET", ["info"]) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (
                200,
                json!({
                    "ID": "fake-engine", "Name": MANAGER, "ServerVersion": "27.3.1",
                    "SystemTime": unix_rfc3339(now.as_secs()),
                    "Swarm": {"NodeID": MANAGER, "NodeAddr": "127.0.0.1", "LocalNodeState": "active",
                        "ControlAvailable": true, "Nodes": st.nodes.len() + 1, "Managers": 1,
                        "RemoteManagers": [{"NodeID": MANAGER, "Addr": shape.manager_addr}]},
                }),
            )
        }
        ("GET", ["nodes"]) => {
            let mut nodes = vec![json!({"ID": MANAGER, "Spec": {"Role": "manager", "Availability": "active"},
                "Description": {"Hostname": MANAGER}, "Status": {"State": "ready", "Addr": "127.0.0.1"},
                "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": shape.manager_addr}})];
            if filter(query, "role").is_none_or(|r| r.iter().any(|r| r == "worker")) {
                nodes.extend(st.nodes.iter().map(|n| {
                    json!({"ID": n, "Spec": {"Role": "worker", "Availability": "active"},
                        "Description": {"Hostname": n}, "Status": {"State": "ready", "Addr": "127.0.0.1"}})
                }));
            }
            (200, Value::Array(nodes))
        }
        ("GET", ["services"]) => (200, Value::Array(st.services.values().map(service_json).collect())),
        ("GET", ["services", id]) => match find(&st, id) {
            Some(s) => (200, service_json(&st.services[&s])),
            None => not_found(&format!("service {id} not found")),
        },
        ("POST", ["services", id, "update"]) => {
            let Some(id) = find(&st, id) else { return not_found(&format!("service {id} not found")) };
            let version: u64 = query.get("version").and_then(|v| v.parse().ok()).unwrap_or(0);
            let spec: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let s = st.services.get_mut(&id).expect("found");
            if version != s.version {
                st.served.out_of_sequence += 1;
                return (500, json!({"message": "rpc error: code = Unknown desc = update out of sequence"}));
            }
            s.version += 1;
            if let Some(labels) = spec["Labels"].as_object() {
                s.labels = labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect();
            }
            if let Some(replicas) = spec["Mode"]["Replicated"]["Replicas"].as_u64() {
                s.replicas = replicas;
            }
            let write = Write { service: s.name.clone(), at: Instant::now(), replicas: s.replicas };
            let name = s.name.clone();
            st.writes.push(write);
            st.event(&id, &name, "update");
            let (state, delay) = (state.clone(), shape.task_delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                lock(&state).converge(&id);
            });
            (200, json!({"Warnings": []}))
        }
        ("GET", ["tasks"]) => {
            let running = filter(query, "desired-state").is_none_or(|d| d.iter().any(|d| d == "running"));
            let services = filter(query, "service");
            let node = filter(query, "node");
            if let Some(services) = &services
                && let Some(missing) = services.iter().find(|s| find(&st, s).is_none())
            {
                return not_found(&format!("service {missing} not found"));
            }
            let mut tasks = Vec::new();
            for s in st.services.values() {
                if services.as_ref().is_some_and(|ids| !ids.contains(&s.id) && !ids.contains(&s.name)) || !running {
                    continue;
                }
                for t in &s.tasks {
                    if node.as_ref().is_none_or(|n| n.contains(&t.node)) {
                        tasks.push(task_json(s, t));
                    }
                }
            }
            st.served.task_lists += 1;
            st.served.tasks += tasks.len() as u64;
            (200, Value::Array(tasks))
        }
        ("GET", ["tasks", id]) => {
            for s in st.services.values() {
                if let Some(t) = s.tasks.iter().find(|t| t.id == *id) {
                    return (200, task_json(s, t));
                }
            }
            not_found(&format!("task {id} not found"))
        }
        ("GET", ["containers", "json"]) => (200, json!([])),
        _ => {
            *st.served.unknown.entry(format!("{method} {path}")).or_default() += 1;
            not_found(&format!("the fake engine does not serve {method} {path}"))
        }
    }
}

fn find(st: &State, id_or_name: &str) -> Option<String> {
    if st.services.contains_key(id_or_name) {
        return Some(id_or_name.to_string());
    }
    st.services.values().find(|s| s.name == id_or_name).map(|s| s.id.clone())
}

fn not_found(message: &str) -> (u16, Value) {
    (404, json!({ "message": message }))
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn unix_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}
