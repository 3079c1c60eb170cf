//! A Swarm service of the demo workload (`examples/demo`), created with
//! the test's labels, waited on until it runs, removed on drop.

use std::process::Command;
use std::time::Duration;

use super::cluster::Cluster;
use super::{IMAGE, docker_at, request, unix_now, wait_until};

/// What to create; [`Service::spec`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Spec {
    name: String,
    /// The demo's port on the host network (`None`: default network, no port).
    port: Option<u16>,
    replicas: u32,
    labels: Vec<String>,
    /// More `docker service create` flags (placement, health checks...).
    args: Vec<String>,
    /// `DOCKER_HOST`s of the managers to ask, in turn (empty: the local engine).
    managers: Vec<String>,
}

/// A created service; removed on drop.
#[derive(Debug)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// The demo's port (0 without one).
    pub port: u16,
    managers: Vec<String>,
}

impl Spec {
    /// Listen on `port` on the host network, each replica also on its own
    /// port `port + 10 + slot` ([`Service::slot_port`]), with half a CPU.
    pub fn port(mut self, port: u16) -> Spec {
        self.port = Some(port);
        self
    }

    /// Start with `replicas` tasks (default 1).
    pub fn replicas(mut self, replicas: u32) -> Spec {
        self.replicas = replicas;
        self
    }

    /// Service labels.
    pub fn labels<K: AsRef<str>, V: AsRef<str>>(mut self, labels: &[(K, V)]) -> Spec {
        self.labels.extend(labels.iter().map(|(k, v)| format!("{}={}", k.as_ref(), v.as_ref())));
        self
    }

    /// More `docker service create` flags.
    pub fn args(mut self, args: &[&str]) -> Spec {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Create it on the test cluster (through whichever manager answers).
    pub fn on(mut self, cluster: &Cluster) -> Spec {
        self.managers = vec![cluster.docker_host(1).to_string(), cluster.docker_host(2).to_string()];
        self
    }

    /// Create the service (any leftover of the same name removed first).
    /// On the local engine, wait until a task runs and, with a port,
    /// answers; on the test cluster the test waits for what it needs.
    pub fn create(self) -> Service {
        let service =
            Service { name: self.name.clone(), port: self.port.unwrap_or(0), managers: self.managers.clone() };
        let _ = service.docker(&["service", "rm", &self.name]);
        let mut args: Vec<String> = ["service", "create", "--detach", "--quiet", "--name", self.name.as_str()]
            .iter()
            .map(|a| a.to_string())
            .collect();
        if !self.managers.is_empty() {
            args.push("--no-resolve-image".into());
        }
        if let Some(port) = self.port {
            let (port_env, slot_base) = (format!("PORT={port}"), format!("SLOT_PORT_BASE={}", port + 10));
            let host_network = [
                "--network",
                "host",
                "--limit-cpu",
                "0.5",
                "--env",
                port_env.as_str(),
                "--env",
                slot_base.as_str(),
                "--env",
                "SLOT={{.Task.Slot}}",
                "--stop-grace-period",
                "2s",
            ];
            args.extend(host_network.iter().map(|a| a.to_string()));
        }
        args.extend(["--replicas".to_string(), self.replicas.to_string()]);
        args.extend(self.args.iter().cloned());
        for label in &self.labels {
            args.extend(["--label".to_string(), label.clone()]);
        }
        args.push(IMAGE.to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        service.docker(&refs).unwrap_or_else(|| panic!("docker service create {} failed", self.name));
        if self.managers.is_empty() && self.replicas > 0 {
            wait_until(&format!("{} to run", service.name), Duration::from_secs(60), || service.running() >= 1);
            if self.port.is_some() {
                wait_until(&format!("{} to answer", service.name), Duration::from_secs(30), || service.answers());
            }
        }
        service
    }
}

impl Service {
    /// A service named `name` with one replica and no labels.
    pub fn spec(name: &str) -> Spec {
        Spec {
            name: name.to_string(),
            port: None,
            replicas: 1,
            labels: Vec::new(),
            args: Vec::new(),
            managers: Vec::new(),
        }
    }

    /// The docker CLI where the service lives; `None` on failure.
    fn docker(&self, args: &[&str]) -> Option<String> {
        if self.managers.is_empty() {
            return docker_at(None, args);
        }
        self.managers.iter().find_map(|host| docker_at(Some(host), args))
    }

    /// `docker service inspect --format`.
    fn inspect(&self, format: &str) -> Option<String> {
        self.docker(&["service", "inspect", &self.name, "--format", format])
    }

    /// Its id.
    pub fn id(&self) -> String {
        self.inspect("{{.ID}}").expect("service id")
    }

    /// Replicas in the spec (0 if it cannot be read).
    pub fn replicas(&self) -> u32 {
        self.inspect("{{.Spec.Mode.Replicated.Replicas}}").and_then(|r| r.parse().ok()).unwrap_or(0)
    }

    /// The spec's version index: changes on every write.
    pub fn version(&self) -> u64 {
        self.inspect("{{.Version.Index}}").and_then(|v| v.parse().ok()).expect("version")
    }

    /// The nodes (hostnames) of its tasks running now, sorted.
    pub fn running_on(&self) -> Vec<String> {
        let format = "{{.Node}} {{.CurrentState}}";
        let out = self
            .docker(&["service", "ps", &self.name, "--filter", "desired-state=running", "--format", format])
            .unwrap_or_default();
        let mut nodes: Vec<String> = out
            .lines()
            .filter(|l| l.contains(" Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        nodes.sort();
        nodes
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.running_on().len()
    }

    /// The port only the replica in Swarm slot `slot` listens on.
    pub fn slot_port(&self, slot: u16) -> u16 {
        self.port + 10 + slot
    }

    /// Whether it answers its health check on 127.0.0.1.
    pub fn answers(&self) -> bool {
        request(self.port, "/healthz").is_some_and(|body| body.starts_with("ok"))
    }

    /// Full ids of its task containers on the local engine.
    pub fn containers(&self) -> Vec<String> {
        let label = format!("label=com.docker.swarm.service.name={}", self.name);
        docker_at(None, &["ps", "-q", "--no-trunc", "--filter", &label])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether one of its containers on the local engine is paused (frozen).
    pub fn frozen(&self) -> bool {
        self.containers().iter().any(|id| {
            docker_at(None, &["inspect", "--format", "{{.State.Paused}}", id]).is_some_and(|out| out == "true")
        })
    }

    /// The Swarm labels (`com.docker.swarm.*`) of one of its running task
    /// containers on the local engine.
    pub fn task_labels(&self) -> Vec<(String, String)> {
        let container = self.containers().into_iter().next().expect("a running task container");
        let json = docker_at(None, &["inspect", &container, "--format", "{{json .Config.Labels}}"]).expect("inspect");
        let labels: std::collections::BTreeMap<String, String> = serde_json::from_str(&json).expect("labels");
        labels.into_iter().filter(|(k, _)| k.starts_with("com.docker.swarm.")).collect()
    }

    /// Container start times (Unix ns) of its tasks since `since` (Unix
    /// time), from the local engine's events.
    pub fn container_starts_since(&self, since: Duration) -> Vec<u128> {
        let since = format!("{:.3}", since.as_secs_f64());
        let until = format!("{:.3}", unix_now().as_secs_f64());
        let label = format!("label=com.docker.swarm.service.name={}", self.name);
        let args: [&str; 13] = [
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            &label,
            "--format",
            "{{.TimeNano}}",
        ];
        docker_at(None, &args).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.docker(&["service", "rm", &self.name]);
    }
}

/// Removes containers started outside Swarm (by `docker run`) however the
/// test ends.
#[derive(Debug)]
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", id]).env_remove("DOCKER_HOST").output();
        }
    }
}
