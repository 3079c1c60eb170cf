//! The policy runtime against real compiled components: the shipped
//! policies and the misbehaving fixtures in `tests/fixtures/` (built by
//! `tests/fixtures/build.sh`, which `tests/run.sh` runs first).

mod common;

use common::{policy::component, repo};
use std::process::Command;
use std::time::{Duration, Instant};

use host::model::{Decision, Event, EventKind, Metric, SettingValue, State, Unit};
use host::policy::health::{self, Quarantine};
use host::policy::{LoadedPolicy, Origin, PolicyError, Runtime, RuntimeConfig};

fn runtime(config: RuntimeConfig) -> Runtime {
    Runtime::new(config).expect("runtime")
}

fn event(metric: Metric, value: f64) -> Event {
    Event {
        metric,
        value,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        container_id: "0123abcd".into(),
        service_id: "svc1".into(),
        service_name: "web".into(),
        timestamp_ns: 1_000,
    }
}

/// Service `svc1` (`web`) at `current` replicas of `[1, 6]`, no settings.
fn state(current: u32) -> State {
    State {
        service_id: "svc1".into(),
        service_name: "web".into(),
        current_replicas: current,
        min_replicas: 1,
        max_replicas: 6,
        ..State::default()
    }
}

/// The state of a service with these `labels`, parsed for `policy` as the
/// daemon parses them.
fn labelled(policy: &LoadedPolicy, current: u32, labels: &[(&str, &str)]) -> State {
    state(current).with_settings(policy.resolve(labels).expect("the labels fit the policy"))
}

fn misbehave(rt: &Runtime) -> LoadedPolicy {
    rt.load("misbehave", &component("tests/fixtures/out/misbehave.wasm")).expect("fixture loads")
}

/// The misbehave fixture's one setting, `fault`.
fn fault(name: &str) -> State {
    state(2).with_settings(vec![Some(SettingValue::Text(name.into()))].into())
}

/// After any failure the same policy must decide correctly again.
fn assert_recovers(policy: &mut LoadedPolicy) {
    let decision = policy.decide(&event(Metric::CPU, 0.5), &fault("none")).expect("recovered call");
    assert_eq!(decision, Some(Decision::scale(3, "ok")));
}

#[test]
fn shipped_threshold_policy_decides_on_the_service_mean() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = rt.load("threshold", &component("policies/threshold.wasm")).expect("loads");
    assert_eq!(policy.contract_version(), "1.0.0");
    let names: Vec<&str> = policy.settings().iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"cpu.upper") && names.contains(&"aggregate"), "{names:?}");
    let band = [("cpu.upper", "0.8"), ("cpu.lower", "0.2")];
    let hot = labelled(&policy, 2, &band).with_cpu(&[0.95, 0.91]);
    let up = policy.decide(&event(Metric::CPU, 0.93), &hot).expect("call").expect("decision");
    assert_eq!(up.target(), Some(3), "{}", up.reason);
    let idle = labelled(&policy, 2, &band).with_cpu(&[0.1, 0.05]);
    let down = policy.decide(&event(Metric::CPU, 0.1), &idle).expect("call").expect("decision");
    assert_eq!(down.target(), Some(1), "{}", down.reason);
    // One idle replica among saturated ones: the mean stays in the band.
    let mixed = labelled(&policy, 3, &band).with_cpu(&[1.0, 1.0, 0.05]);
    assert_eq!(policy.decide(&event(Metric::CPU, 0.05), &mixed).expect("call"), None);
    // A replica warming up is left out of the mean by the daemon: only the
    // hot one reports, and the service still scales out.
    let warming = labelled(&policy, 2, &band).with_metric(Metric::CPU, Unit::FractionOfLimit, &[0.9], 1);
    assert_eq!(policy.decide(&event(Metric::CPU, 0.0), &warming).expect("call").and_then(|d| d.target()), Some(3));
}

#[test]
fn shipped_proportional_policy_is_the_hpa_rule_over_the_mean() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = rt.load("proportional", &component("policies/proportional.wasm")).expect("loads");
    let target = [("cpu.target", "0.5")];
    let busy = labelled(&policy, 2, &target).with_cpu(&[0.95, 0.85]);
    let d = policy.decide(&event(Metric::CPU, 0.9), &busy).expect("call").expect("decision");
    assert_eq!(d.target(), Some(4), "ceil(2 * 0.9 / 0.5) = 4: {}", d.reason);
    let near = labelled(&policy, 2, &target).with_cpu(&[0.52, 0.52]);
    assert_eq!(policy.decide(&event(Metric::CPU, 0.52), &near).expect("call"), None, "within the tolerance");
}

#[test]
fn a_component_built_for_another_contract_version_is_refused_naming_both() {
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("old", &component("tests/fixtures/out/contract_v0_3.wasm")).expect_err("0.3 is refused");
    assert!(matches!(err, PolicyError::OtherContract { .. }), "{err}");
    assert_eq!(err.kind(), "contract-version");
    let text = err.to_string();
    assert!(
        text.contains("policy old: built for contract autoscaler:policy@0.3.0, but this daemon runs 1.0.0"),
        "{text}"
    );
}

/// An event of service `id` named `name` about `container`, and the state
/// of that service with the misbehave fixture's `whoami` fault.
fn call_of(id: &str, name: &str, container: &str) -> (Event, State) {
    let event = Event {
        service_id: id.into(),
        service_name: name.into(),
        container_id: container.into(),
        ..event(Metric::CPU, 0.5)
    };
    let state = State { service_id: id.into(), service_name: name.into(), ..fault("whoami") };
    (event, state)
}

#[test]
fn every_call_carries_its_service_and_replica() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let said = |policy: &mut LoadedPolicy, (event, state): &(Event, State)| {
        policy.decide(event, state).expect("call").expect("decision").reason
    };
    let docker_id = "4f1c0a7d2b9e4c3aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    let web = call_of("svc1", "web", docker_id);
    assert_eq!(said(&mut policy, &web), "web svc1 4f1c0a7d2b9e4c3a fault=whoami");
    // Services side by side, each with its own name and settings, and no
    // call in between to tell the policy about them.
    let api = call_of("svc2", "api", "0123abcd");
    assert_eq!(said(&mut policy, &api), "api svc2 0123abcd00000000 fault=whoami");
    let report = State { settings: fault("report").settings, ..web.1.clone() };
    assert_eq!(said(&mut policy, &(web.0.clone(), report)), "reporting 0 warming 0");
    assert_eq!(said(&mut policy, &web), "web svc1 4f1c0a7d2b9e4c3a fault=whoami");
    // After a trap the new instance needs nothing but the next call.
    let _ = policy.decide(&web.0, &fault("trap")).expect_err("trap");
    assert_eq!(said(&mut policy, &api), "api svc2 0123abcd00000000 fault=whoami");
}

#[test]
fn the_boundary_alone_decides_nothing_and_a_trap_fails_one_call() {
    // The empty fixture, without the SDK: it traps for `trap-in-decide`.
    let rt = runtime(RuntimeConfig::default());
    let mut policy = rt.load("empty", &component("tests/fixtures/out/empty.wasm")).expect("loads");
    assert_eq!((policy.contract_version(), policy.settings().len()), ("1.0.0", 0));
    let calm = state(2).with_cpu(&[0.5]);
    assert_eq!(policy.decide(&event(Metric::CPU, 0.5), &calm).expect("call"), None);
    let trap = State { service_name: "trap-in-decide".into(), ..calm.clone() };
    let err = policy.decide(&event(Metric::CPU, 0.5), &trap).expect_err("traps");
    assert!(matches!(err, PolicyError::Trap { .. }), "{err}");
    assert_eq!(policy.status().failures(), 1);
    assert_eq!(policy.decide(&event(Metric::CPU, 0.5), &calm).expect("a fresh instance"), None);
    assert_eq!(policy.status().failures(), 0);
}

#[test]
fn settings_that_do_not_fit_the_declaration_fail_with_every_problem() {
    let rt = runtime(RuntimeConfig::default());
    let policy = rt.load("threshold", &component("policies/threshold.wasm")).expect("loads");
    let err = policy.resolve(&[("cpu.upper", "lots"), ("step", "two")]).expect_err("labels do not parse");
    let text = err.to_string();
    assert!(matches!(err, PolicyError::Settings { .. }), "{text}");
    assert!(text.contains("autoscale.cpu.upper") && text.contains("autoscale.step"), "{text}");
}

#[test]
fn endless_loop_is_interrupted_within_ten_times_the_limit() {
    let limit = Duration::from_millis(10);
    let rt = runtime(RuntimeConfig { time_limit: limit, ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let started = Instant::now();
    let err = policy.decide(&event(Metric::CPU, 0.5), &fault("loop")).expect_err("must not return");
    let took = started.elapsed();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("misbehave") && err.to_string().contains("10 ms"), "{err}");
    assert!(took < limit * 10, "interrupted only after {took:?}");
    assert_recovers(&mut policy);
}

#[test]
fn unbounded_allocation_stops_at_the_memory_cap() {
    // A generous time limit so that the memory cap, not the clock, stops it.
    let rt = runtime(RuntimeConfig {
        time_limit: Duration::from_secs(5),
        memory_limit: 32 << 20,
        ..RuntimeConfig::default()
    });
    let mut policy = misbehave(&rt);
    let err = policy.decide(&event(Metric::CPU, 0.5), &fault("grow")).expect_err("must fail");
    assert!(matches!(err, PolicyError::MemoryLimit { limit_mib: 32, .. }), "{err}");
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    assert_recovers(&mut policy);
}

#[test]
fn trap_fails_one_call_only() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let err = policy.decide(&event(Metric::CPU, 0.5), &fault("trap")).expect_err("must trap");
    assert!(matches!(err, PolicyError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_recovers(&mut policy);
}

#[test]
fn files_environment_and_sockets_are_denied() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    for attempt in ["file", "env", "socket"] {
        let decision = policy
            .decide(&event(Metric::CPU, 0.5), &fault(attempt))
            .expect("the call itself succeeds")
            .expect("the fixture always decides");
        assert!(decision.reason.starts_with("denied"), "{attempt}: {}", decision.reason);
    }
}

#[test]
fn chatty_policy_output_is_bounded_and_the_call_succeeds() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    for chatter in ["print", "log-spam"] {
        let decision = policy.decide(&event(Metric::CPU, 0.5), &fault(chatter)).expect("call");
        assert_eq!(decision.and_then(|d| d.target()), Some(3), "{chatter}");
    }
}

#[test]
fn bytes_that_are_not_a_component_are_refused_with_a_reason() {
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("junk", b"definitely not wasm").expect_err("junk");
    assert!(matches!(err, PolicyError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("policy junk") && err.to_string().contains("magic"), "{err}");

    let core_module = b"\0asm\x01\0\0\0";
    let err = rt.load("core", core_module).expect_err("core module");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let mut truncated = component("policies/threshold.wasm");
    truncated.truncate(truncated.len() / 2);
    let err = rt.load("truncated", &truncated).expect_err("truncated");
    assert!(matches!(err, PolicyError::Compile { .. }), "{err}");
}

#[test]
fn component_of_another_world_is_refused_naming_the_missing_export() {
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("other", &component("tests/fixtures/out/other_world.wasm")).expect_err("wrong world");
    assert!(matches!(err, PolicyError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("of contract 1.0.0: no export `decide`"), "{err}");
    // The same runtime still runs a good policy.
    let mut good = rt.load("threshold", &component("policies/threshold.wasm")).expect("loads");
    let band = [("cpu.upper", "0.8"), ("cpu.lower", "0.2")];
    let hot = labelled(&good, 1, &band).with_cpu(&[0.9]);
    assert!(good.decide(&event(Metric::CPU, 0.9), &hot).expect("call").is_some());
}

#[test]
fn five_failures_in_a_row_quarantine_until_reloaded() {
    let rt = runtime(RuntimeConfig::default());
    let bytes = component("tests/fixtures/out/misbehave.wasm");
    let mut policy = rt.load("misbehave", &bytes).expect("loads");
    for _ in 0..4 {
        let _ = policy.decide(&event(Metric::CPU, 0.5), &fault("trap")).expect_err("trap");
    }
    assert!(!policy.is_quarantined(), "four failures are not enough");
    let _ = policy.decide(&event(Metric::CPU, 0.5), &fault("trap")).expect_err("trap");
    assert!(policy.is_quarantined());
    let err = policy.decide(&event(Metric::CPU, 0.5), &fault("none")).expect_err("quarantined");
    assert!(matches!(err, PolicyError::Quarantined { why: Quarantine::InARow(5), .. }), "{err}");
    assert!(err.to_string().contains("quarantined after 5 failed calls in a row; change its file"), "{err}");
    // Loading the file again (what a reload does) lifts it.
    let mut reloaded = rt.load("misbehave", &bytes).expect("loads");
    assert_recovers(&mut reloaded);
}

#[test]
fn a_success_resets_the_failure_count() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    for _ in 0..3 {
        for _ in 0..4 {
            let _ = policy.decide(&event(Metric::CPU, 0.5), &fault("trap")).expect_err("trap");
        }
        assert_recovers(&mut policy);
    }
    assert!(!policy.is_quarantined());
}

#[test]
fn a_policy_failing_four_calls_in_five_is_quarantined_and_no_longer_instantiated() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let mut calls = 0;
    while !policy.is_quarantined() {
        assert!(calls < 100, "still not quarantined after {calls} calls");
        if calls % 5 == 4 {
            assert_recovers(&mut policy);
        } else {
            let _ = policy.decide(&event(Metric::CPU, 0.5), &fault("trap")).expect_err("trap");
        }
        calls += 1;
    }
    // The 20th call succeeded; the 21st, a failure, is judged on the 20
    // calls before it.
    assert_eq!(calls, health::WINDOW + 1, "quarantined at its first failure once its window is full");
    assert_eq!(policy.status().failures(), 1, "one failure in a row, after the 20th call's success");
    let err = policy.decide(&event(Metric::CPU, 0.5), &fault("none")).expect_err("quarantined");
    assert!(matches!(err, PolicyError::Quarantined { why: Quarantine::Rate { failed: 16, of: 20 }, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "policy misbehave: quarantined after 16 of its last 20 calls failed; change its file to load it again"
    );
}

#[test]
fn unchanged_component_is_compiled_once_across_restarts() {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    let bytes = component("policies/proportional.wasm");

    let first = runtime(config.clone());
    let a = first.load("proportional", &bytes).expect("loads");
    let b = first.load("proportional", &bytes).expect("loads");
    assert_eq!((a.origin(), b.origin()), (Origin::Compiled, Origin::Memory));
    assert_eq!(first.compiles(), 1);

    // A new runtime (a restart) with the same cache directory.
    let second = runtime(config);
    let c = second.load("proportional", &bytes).expect("loads");
    assert_eq!(c.origin(), Origin::Disk);
    assert_eq!(second.compiles(), 0);

    // A corrupt cache entry is discarded and recompiled, not trusted.
    // (The cache dir also holds the MAC key, a file.)
    for dir in std::fs::read_dir(cache.path()).expect("cache dir").flatten().filter(|d| d.path().is_dir()) {
        for entry in std::fs::read_dir(dir.path()).expect("engine dir").flatten() {
            std::fs::write(entry.path(), b"garbage").expect("corrupt entry");
        }
    }
    let third = runtime(RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() });
    let mut d = third.load("proportional", &bytes).expect("recompiles");
    assert_eq!((d.origin(), third.compiles()), (Origin::Compiled, 1));
    let busy = labelled(&d, 2, &[("cpu.target", "0.5")]).with_cpu(&[0.9, 0.9]);
    assert!(d.decide(&event(Metric::CPU, 0.9), &busy).expect("call").is_some());
}

fn host_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .arg("--cache-dir")
        .arg("")
        .current_dir(repo())
        .output()
        .expect("run host")
}

#[test]
fn cli_check_reports_version_imports_and_refusals() {
    let ok = host_cli(&["policy", "check", "policies/threshold.wasm"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains("OK") && out.contains("contract version: 1.0.0 (current)"), "{out}");
    assert!(out.contains("autoscaler:policy/host@1.0.0") && out.contains("decide"), "{out}");
    assert!(out.contains("settings (labels autoscale.NAME") && out.contains("cpu.upper"), "{out}");
    let old = host_cli(&["policy", "check", "tests/fixtures/out/contract_v0_3.wasm"]);
    let out = String::from_utf8_lossy(&old.stdout);
    assert!(!old.status.success(), "{out}");
    assert!(out.contains("NOT RUNNABLE") && out.contains("contract version: 0.3.0 (this daemon runs 1.0.0)"), "{out}");
    assert!(out.contains("built for contract autoscaler:policy@0.3.0"), "{out}");
    let lean = host_cli(&["policy", "check", "tests/fixtures/out/empty.wasm"]);
    let out = String::from_utf8_lossy(&lean.stdout);
    assert!(lean.status.success() && out.contains("contract version: 1.0.0 (current)"), "{out}");

    let bad = host_cli(&["policy", "check", "tests/fixtures/out/other_world.wasm"]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{out}");
    assert!(out.contains("NOT RUNNABLE") && out.contains("no export `decide`"), "{out}");

    let json = host_cli(&["policy", "check", "--json", "Cargo.toml"]);
    assert!(!json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(report["ok"], false);
    assert!(report["error"].as_str().unwrap_or_default().contains("not a WebAssembly component"));

    // One naming style in the JSON (the WIT's kebab-case), and what each
    // import gets from the sandbox.
    let json = host_cli(&["policy", "check", "--json", "policies/threshold.wasm"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(report["component"]["contract-version"], "1.0.0", "{report}");
    assert!(report["component"]["load-ms"].is_number(), "{report}");
    let access = report["import-access"].as_array().expect("import-access");
    assert!(
        access
            .iter()
            .any(|a| a["import"].as_str().is_some_and(|i| i.starts_with("autoscaler:policy/host"))
                && a["allowed"] == true),
        "{report}"
    );
}

#[test]
fn cli_run_prints_the_decision_as_json_with_wit_names() {
    let event = r#"{"metric":"cpu","value":0.93,"unit":"fraction-of-limit",
        "kind":{"crossing":{"threshold":0.8,"direction":"up"}},
        "container-id":"c1","service-id":"s1","service-name":"web","timestamp-ns":42}"#;
    let state = r#"{"current-replicas":2,"min-replicas":1,"max-replicas":5,
        "metrics":[{"metric":"cpu","unit":"fraction-of-limit","reporting":2,"warming":0,
            "value":{"mean":0.9,"min":0.87,"max":0.93,"sum":1.8},"window-ns":3000000000}],
        "labels":{"cpu.upper":"0.8","cpu.lower":"0.2"}}"#;
    let run = host_cli(&["policy", "run", "policies/threshold.wasm", "--event", event, "--state", state]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(decision["action"]["scale"], 3, "{decision}");
    assert!(decision["reason"].as_str().unwrap_or_default().contains(">= cpu.upper"), "{decision}");

    let quiet = state.replace("\"cpu.upper\":\"0.8\"", "\"cpu.upper\":\"0.99\"");
    let none = host_cli(&["policy", "run", "policies/threshold.wasm", "--event", event, "--state", &quiet]);
    assert!(none.status.success());
    assert_eq!(String::from_utf8_lossy(&none.stdout).trim(), "null");

    assert!(String::from_utf8_lossy(&none.stderr).contains("the policy returned no decision"), "{none:?}");

    // Misspelt and missing fields: all of them, at once, with the name meant.
    let typo = state.replace("current-replicas", "curent-replicas").replace("\"min-replicas\":1,", "");
    let typo = host_cli(&["policy", "run", "policies/threshold.wasm", "--event", event, "--state", &typo]);
    assert!(!typo.status.success());
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("--state has an unknown field \"curent-replicas\" (did you mean \"current-replicas\"?)"),
        "{err}"
    );
    assert!(err.contains("--state is missing \"current-replicas\", \"min-replicas\""), "{err}");
    let bare = host_cli(&["policy", "run", "policies/threshold.wasm", "--event", "{}", "--state", "{}"]);
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("--event is missing \"metric\", \"value\", \"unit\", \"kind\""), "{err}");
    assert!(err.contains("--state is missing \"current-replicas\", \"min-replicas\", \"max-replicas\""), "{err}");

    let broken = host_cli(&["policy", "run", "policies/threshold.wasm", "--event", "{", "--state", state]);
    assert!(!broken.status.success());
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("--event is not a valid event"), "{err}");

    let looping = host_cli(&[
        "policy",
        "run",
        "tests/fixtures/out/misbehave.wasm",
        "--event",
        event,
        "--state",
        r#"{"current-replicas":1,"min-replicas":1,"max-replicas":2,"labels":{"fault":"loop"}}"#,
    ]);
    assert!(!looping.status.success());
    assert!(String::from_utf8_lossy(&looping.stderr).contains("time limit"));
}

/// `labels` in `--state` are judged as the daemon judges a service's
/// labels: an undeclared name is refused with the one meant, the prefix is
/// optional, a bad value is refused, and the settings the policy got are
/// printed.
#[test]
fn cli_run_is_as_strict_as_the_daemon_about_labels() {
    let event = r#"{"metric":"cpu","value":0.93,"unit":"fraction-of-limit","kind":"sample",
        "container-id":"c1","service-id":"s1","service-name":"web","timestamp-ns":42}"#;
    let state = |labels: &str| {
        format!(
            r#"{{"current-replicas":2,"min-replicas":1,"max-replicas":5,
            "metrics":[{{"metric":"cpu","unit":"fraction-of-limit","reporting":2,"warming":0,
            "value":{{"mean":0.9,"min":0.87,"max":0.93,"sum":1.8}},"window-ns":3000000000}}],
            "labels":{labels}}}"#
        )
    };
    let run = |file: &str, labels: &str| {
        let out = host_cli(&["policy", "run", file, "--event", event, "--state", &state(labels)]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run("policies/proportional.wasm", r#"{"cpu.targte":"0.6"}"#);
    assert!(!ok, "{err}");
    assert!(err.contains("autoscale.cpu.targte") && err.contains("did you mean autoscale.cpu.target"), "{err}");
    let (ok, _, err) = run("policies/proportional.wasm", r#"{"cpu.target":"most"}"#);
    assert!(!ok && err.contains("is not a quantity"), "{err}");
    let (ok, out, err) = run("policies/proportional.wasm", r#"{"autoscale.cpu.target":"0.6","cpu.upper":"0.8"}"#);
    assert!(ok, "{err}");
    assert!(out.contains("\"scale\":3"), "ceil(2 * 0.9 / 0.6) = 3: {out}");
    assert!(err.contains("settings of policy proportional: cpu.target=0.6 (given)"), "{err}");
    assert!(err.contains("tolerance=0.1 (default)") && err.contains("daemon labels: cpu.upper=0.8"), "{err}");
}
