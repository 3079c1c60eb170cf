//! Policies written in other languages run through the same runtime: the
//! Python example (examples/policies/python, built with componentize-py by
//! tests/run.sh) decides like its source says.

use std::path::{Path, PathBuf};

use host::model::{Crossing, Direction, Event, EventKind, Metric, State, Unit};
use host::policy::{Runtime, RuntimeConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn event(value: f64, kind: EventKind) -> Event {
    Event {
        metric: Metric::Connections,
        value,
        unit: Unit::Count,
        kind,
        container_id: "c1".into(),
        service_id: "s1".into(),
        service_name: "web".into(),
        timestamp_ns: 7,
    }
}

fn crossing(threshold: f64, direction: Direction) -> EventKind {
    EventKind::Crossing(Crossing { threshold, direction })
}

#[test]
fn python_policy_decides_through_the_runtime() {
    let file = repo().join("examples/policies/python/burst.wasm");
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        panic!("{}: {e}; build it with examples/policies/python/build.sh (tests/run.sh does)", file.display())
    });
    // Same limits as in production (the runtime allows the many core
    // instances a Python component carries).
    let cache = std::env::var_os("AUTOSCALER_TEST_CACHE_DIR").map(PathBuf::from);
    let runtime = Runtime::new(RuntimeConfig { cache_dir: cache, ..RuntimeConfig::default() }).expect("runtime");
    let mut policy = runtime.load("burst", &bytes).expect("python component loads");
    let state = State {
        current_replicas: 2,
        min_replicas: 1,
        max_replicas: 10,
        settings: vec![("burst.step".into(), "3".into()), ("connections.lower".into(), "10".into())],
        ..State::default()
    };

    let up = policy.decide(&event(120.0, crossing(100.0, Direction::Up)), &state).expect("call").expect("decision");
    assert_eq!(up.target().expect("a scale decision"), 5);
    assert!(up.reason.contains("crossed 100"), "{}", up.reason);

    let down = policy.decide(&event(4.0, crossing(10.0, Direction::Down)), &state).expect("call").expect("decision");
    assert_eq!(down.target().expect("a scale decision"), 1);

    // A downward crossing of the upper threshold is not low enough to step in.
    assert_eq!(policy.decide(&event(80.0, crossing(100.0, Direction::Down)), &state).expect("call"), None);
    // Samples are ignored.
    assert_eq!(policy.decide(&event(500.0, EventKind::Sample), &state).expect("call"), None);
}
