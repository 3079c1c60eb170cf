//! What the daemon's unit tests share: real compiled policies (the shipped
//! ones and the test fixtures, built by `policies/build.sh` and
//! `tests/fixtures/build.sh`, as tests/run.sh does first), service labels,
//! and waiting for a policy's answer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::policy_workers::Decided;
use crate::policy::{PolicySet, Runtime, RuntimeConfig};
use crate::swarm::ServiceConfig;

/// The shipped threshold policy.
pub const THRESHOLD: &str = "policies/threshold.wasm";
/// The fixture whose `autoscale.fault` setting picks a misbehaviour.
pub const MISBEHAVE: &str = "tests/fixtures/out/misbehave.wasm";
/// The time limit of a policy call in these tests: long, so that a
/// sleeping policy is slow for sure and a busy machine fails no call.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// One runtime for every test of the process (compiled code is cached by
/// content, so a policy compiles once).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig { time_limit: TIME_LIMIT, ..RuntimeConfig::default() }).expect("runtime")
    })
}

/// The bytes of a built component, by its path in the repository.
pub fn component(path: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!("{}: {e}; run policies/build.sh and tests/fixtures/build.sh (tests/run.sh does)", file.display())
    })
}

/// A policy set with each `(name, component path)` loaded.
pub fn policy_set(policies: &[(&str, &str)]) -> PolicySet {
    let set = PolicySet::default();
    for (name, path) in policies {
        set.install(runtime().load(name, &component(path)).expect("the component loads"));
    }
    set
}

/// A service's labels as Docker gives them.
pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The parsed configuration of an autoscaled service named `name`.
pub fn config(name: &str, pairs: &[(&str, &str)]) -> Arc<ServiceConfig> {
    Arc::new(crate::swarm::labels::parse(name, &labels(pairs)).expect("valid labels").expect("autoscaled"))
}

/// The next answer of the policy workers, within 10 s.
pub async fn answer(answers: &mut mpsc::Receiver<Decided>) -> Decided {
    tokio::time::timeout(Duration::from_secs(10), answers.recv())
        .await
        .expect("an answer within 10 s")
        .expect("the policy workers are running")
}

/// Whether an answer comes within `wait` (it should not).
pub async fn no_answer(answers: &mut mpsc::Receiver<Decided>, wait: Duration) -> Option<Decided> {
    tokio::time::timeout(wait, answers.recv()).await.ok().flatten()
}
