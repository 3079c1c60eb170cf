//! Policies written in other languages run through the same runtime as the
//! Rust ones, with the production limits, and decide like their sources
//! say: the Python (componentize-py), JavaScript (componentize-js) and C
//! (clang + wit-bindgen + wasm-tools) examples in examples/policies/, built
//! by their build.sh (tests/run.sh runs them), all on contract 1.0.0 (one
//! self-contained `decide(event, state)`, no table of services).

mod common;

use common::repo;
use std::sync::OnceLock;

use host::model::{Action, Decision, Direction, Event, Metric, State, Unit};
use host::policy::{LoadedPolicy, Runtime, RuntimeConfig};

const SEC: u64 = 1_000_000_000;

/// One runtime for the whole binary: each component compiles once, and
/// every `load` after the first is a fresh instance of the cached code.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cache = common::policy::test_cache_dir();
        Runtime::new(RuntimeConfig { cache_dir: cache, ..RuntimeConfig::default() }).expect("runtime")
    })
}

/// Load examples/policies/<lang>/<name>.wasm with the daemon's default
/// limits, in a fresh instance.
fn load(lang: &str, name: &str) -> LoadedPolicy {
    let file = repo().join("examples/policies").join(lang).join(format!("{name}.wasm"));
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        panic!("{}: {e}; build it with examples/policies/{lang}/build.sh (tests/run.sh does)", file.display())
    });
    runtime().load(name, &bytes).unwrap_or_else(|e| panic!("{lang} policy {name} loads: {e}"))
}

/// `state` with the settings of a service labelled `labels`, parsed against
/// the policy's declaration as the daemon parses them.
fn labelled(policy: &LoadedPolicy, state: State, labels: &[(&str, &str)]) -> State {
    state.with_settings(policy.resolve(labels).expect("the labels fit the policy"))
}

fn declared(policy: &LoadedPolicy) -> Vec<String> {
    policy.settings().iter().map(|s| s.name.clone()).collect()
}

fn scale(decision: Option<Decision>) -> Option<u32> {
    decision.map(|d| d.target().unwrap_or_else(|| panic!("a scale decision, got {d:?}")))
}

/// `autoscale.*` labels without the prefix.
type Labels = &'static [(&'static str, &'static str)];

fn connections(value: f64) -> Event {
    Event::sample(Metric::CONNECTIONS, value, Unit::Count)
}

#[test]
fn python_burst_jumps_on_the_upper_crossing_only() {
    let mut policy = load("python", "burst");
    assert_eq!(policy.contract_version(), "1.0.0");
    assert_eq!(declared(&policy), ["burst.step", "cpu.upper", "cpu.lower", "connections.upper", "connections.lower"]);
    let state = labelled(
        &policy,
        State::replicas(1, 1, 10),
        &[
            ("burst.step", "2"),
            ("cpu.upper", "0.8"),
            ("cpu.lower", "0.2"),
            ("connections.upper", "100"),
            ("connections.lower", "10"),
        ],
    );
    let mut decide = |event: Event| policy.decide(&event, &state).expect("call");

    let up = decide(Event::cpu(0.93).crossing(0.8, Direction::Up)).expect("a burst");
    assert_eq!(up.action, Action::Scale(3));
    assert!(up.reason.contains("crossed 0.8 going up: 1 -> 3"), "{}", up.reason);
    // The bug of the 0.1 example: load coming back above the *lower*
    // threshold is not a burst.
    assert_eq!(decide(Event::cpu(0.25).crossing(0.2, Direction::Up)), None);
    // Load leaving the top of the band is not a lull either.
    assert_eq!(decide(Event::cpu(0.7).crossing(0.8, Direction::Down)), None);
    // Samples are ignored; memory is not watched.
    assert_eq!(decide(Event::cpu(0.99)), None);
    assert_eq!(decide(Event::sample(Metric::MEMORY, 1e9, Unit::Bytes).crossing(5e8, Direction::Up)), None);

    let state = State { current_replicas: 4, ..state.clone() };
    let down = policy.decide(&connections(4.0).crossing(10.0, Direction::Down), &state).expect("call");
    assert_eq!(scale(down), Some(3));
    let up = policy.decide(&connections(120.0).crossing(100.0, Direction::Up), &state).expect("call");
    assert_eq!(scale(up), Some(6));
    // Bounded by autoscale.max, and quiet when there is nothing to do.
    let full = State { current_replicas: 10, ..state.clone() };
    assert_eq!(policy.decide(&connections(120.0).crossing(100.0, Direction::Up), &full).expect("call"), None);
    // A step that is not a whole number: logged, and the default used.
    let odd = labelled(&policy, State::replicas(1, 1, 10), &[("burst.step", "1.5"), ("cpu.upper", "0.8")]);
    let up = policy.decide(&Event::cpu(0.93).crossing(0.8, Direction::Up), &odd).expect("call");
    assert_eq!(scale(up), Some(3));
}

#[test]
fn javascript_headroom_sizes_the_service_for_its_connections() {
    let mut policy = load("js", "headroom");
    assert_eq!(policy.contract_version(), "1.0.0");
    assert_eq!(declared(&policy), ["headroom.per-replica", "headroom.step-in"]);
    let service = |policy: &LoadedPolicy, current: u32, values: &[f64], labels: &[(&str, &str)]| {
        let state = State::replicas(current, 1, 8).with_metric(Metric::CONNECTIONS, Unit::Count, values, 0);
        labelled(policy, state, labels)
    };
    let mut decide = |labels: &[(&str, &str)], current: u32, values: &[f64]| {
        let state = service(&policy, current, values, labels);
        policy.decide(&connections(70.0), &state).expect("call")
    };

    // 140 connections at the default 50 per replica: 3 replicas.
    let out = decide(&[], 2, &[80.0, 60.0]).expect("scale out");
    assert_eq!(out.action, Action::Scale(3));
    assert!(out.reason.contains("140 connections over 2 replicas"), "{}", out.reason);
    assert_eq!(decide(&[], 2, &[40.0, 50.0]), None, "90 fit in 2");
    // Scale-in one replica at a time unless told otherwise.
    assert_eq!(scale(decide(&[], 4, &[5.0, 5.0, 5.0, 0.0])), Some(3));
    assert_eq!(scale(decide(&[("headroom.step-in", "3")], 4, &[5.0, 5.0, 5.0, 0.0])), Some(1));
    assert_eq!(scale(decide(&[("headroom.per-replica", "20")], 2, &[80.0, 60.0])), Some(7));
    assert_eq!(scale(decide(&[], 2, &[800.0, 600.0])), Some(8), "clamped to autoscale.max");
    // Settings it cannot use: logged, no decision.
    assert_eq!(decide(&[("headroom.per-replica", "0")], 2, &[80.0, 60.0]), None);
    // Other metrics, and a service with no replica reporting, are left alone.
    let cpu = service(&policy, 2, &[80.0, 60.0], &[]).with_cpu(&[0.9, 0.9]);
    assert_eq!(policy.decide(&Event::cpu(0.9), &cpu).expect("call"), None);
    let warming =
        labelled(&policy, State::replicas(2, 1, 8).with_metric(Metric::CONNECTIONS, Unit::Count, &[], 2), &[]);
    assert_eq!(policy.decide(&connections(70.0), &warming).expect("call"), None);
}

#[test]
fn c_step_adds_on_heat_and_holds_scale_in_after_a_scale_up() {
    let mut policy = load("c", "step");
    assert_eq!(policy.contract_version(), "1.0.0");
    assert_eq!(declared(&policy), ["cpu.upper", "cpu.lower", "step.size", "step.settle"]);
    let now = 3_600 * SEC;
    let service = |policy: &LoadedPolicy, mean: f64, labels: &[(&str, &str)]| {
        let mut state = labelled(policy, State::replicas(2, 1, 6).with_cpu(&[mean, mean]), labels);
        state.now_ns = now;
        state
    };
    let decide =
        |policy: &mut LoadedPolicy, state: &State| policy.decide(&Event::cpu(0.5).at(now), state).expect("call");
    // A service at `mean` CPU with `labels`, decided at once.
    let at = |policy: &mut LoadedPolicy, mean: f64, labels: &[(&str, &str)]| {
        let state = service(policy, mean, labels);
        decide(policy, &state)
    };

    let out = at(&mut policy, 0.9, &[]).expect("scale out");
    assert_eq!(out.action, Action::Scale(3));
    assert!(out.reason.starts_with("cpu mean 0.90 >= 0.75"), "{}", out.reason);
    assert_eq!(scale(at(&mut policy, 0.9, &[("step.size", "3")])), Some(5));
    assert_eq!(at(&mut policy, 0.5, &[]), None, "inside the band");
    assert_eq!(scale(at(&mut policy, 0.1, &[])), Some(1));
    assert_eq!(at(&mut policy, 0.9, &[("cpu.upper", "0.95")]), None);
    // Settings it cannot use: logged, no decision.
    assert_eq!(at(&mut policy, 0.9, &[("step.size", "1.5")]), None);

    // Cold 10 s after a scale-up: hold scale-in for the rest of step.settle.
    let mut recent = service(&policy, 0.1, &[]);
    recent.last_scale_up_ns = Some(now - 10 * SEC);
    let held = decide(&mut policy, &recent).expect("a hold");
    assert_eq!(held.action, Action::Hold(50 * SEC));
    assert!(held.reason.contains("settle"), "{}", held.reason);
    // While that hold is in force: nothing more to say.
    recent.hold_until_ns = Some(now + 50 * SEC);
    assert_eq!(decide(&mut policy, &recent), None);
    // After the settle time: scale in.
    let mut later = service(&policy, 0.1, &[]);
    later.last_scale_up_ns = Some(now - 61 * SEC);
    assert_eq!(scale(decide(&mut policy, &later)), Some(1));
}

#[test]
fn every_language_example_decides_each_call_from_its_state_alone() {
    // Contract 1.0 keeps nothing between calls: two services with
    // different settings, interleaved in one instance, get the answers
    // each gets alone.
    let cases: [(&str, &str, Event, Labels, Labels); 3] = [
        (
            "python",
            "burst",
            Event::cpu(0.93).crossing(0.8, Direction::Up),
            &[("cpu.upper", "0.8"), ("burst.step", "2")],
            &[("cpu.upper", "0.8"), ("burst.step", "4")],
        ),
        ("js", "headroom", connections(70.0), &[("headroom.per-replica", "50")], &[("headroom.per-replica", "10")]),
        ("c", "step", Event::cpu(0.9), &[("step.size", "1")], &[("step.size", "3")]),
    ];
    for (lang, name, event, a, b) in cases {
        let mut policy = load(lang, name);
        let state = |labels: &[(&str, &str)], id: &str| {
            let state = State::replicas(2, 1, 20).of(id, id).with_cpu(&[0.9, 0.9]).with_metric(
                Metric::CONNECTIONS,
                Unit::Count,
                &[80.0, 60.0],
                0,
            );
            labelled(&policy, state, labels)
        };
        let (first, second) = (state(a, "first"), state(b, "second"));
        let alone = [
            scale(policy.decide(&event, &first).expect("call")),
            scale(load(lang, name).decide(&event, &second).expect("call")),
        ];
        let mut interleaved = Vec::new();
        for _ in 0..3 {
            interleaved.push(scale(policy.decide(&event, &second).expect("call")));
            interleaved.push(scale(policy.decide(&event, &first).expect("call")));
        }
        assert_ne!(alone[0], alone[1], "{lang}: the two services should decide differently");
        assert_eq!(interleaved, [alone[1], alone[0]].repeat(3), "{lang}");
    }
}

#[test]
fn every_language_example_refuses_labels_that_do_not_parse() {
    // The runtime checks labels against each policy's declaration: the
    // same message whatever the language.
    for (lang, name, label) in
        [("python", "burst", "burst.step"), ("js", "headroom", "headroom.per-replica"), ("c", "step", "step.size")]
    {
        let policy = load(lang, name);
        let err = policy.resolve(&[(label, "lots")]).expect_err("a label that is not a number").to_string();
        assert!(err.contains(&format!("autoscale.{label}")) && err.contains("not a number"), "{lang}: {err}");
    }
}
