//! `host policy new NAME --lang L` for every language, as a new user would
//! use it: create the project with the built `host`, run its `build.sh`
//! (which installs what is missing), then its `test.sh`, which runs the
//! component through `host policy check` and `host policy run` (and, for
//! Rust, the native unit tests first). The projects are created in a
//! temporary folder outside the repository.
//!
//! The toolchains come from examples/setup.sh in CI; elsewhere build.sh
//! installs them (npm, pip, rustup), which needs the registries.
//!
//! The Python, JavaScript and C templates start from the shipped
//! `threshold` policy's rule on CPU alone: on the same states they decide
//! the same targets (policies/threshold.wasm, built by policies/build.sh).

mod common;

use common::{host_exe, rust_target};
use std::path::{Path, PathBuf};
use std::process::Command;

use host::model::{Event, Metric, State, Unit};
use host::policy::{LoadedPolicy, Runtime, RuntimeConfig};

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOST", host_exe())
        .env("CARGO_TARGET_DIR", rust_target())
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {}: {e}", dir.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{stdout}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Creates, builds and tests a project; returns its component and the
/// temporary folder that holds it (removed when dropped).
fn scaffold_build_and_test(lang: &str) -> (PathBuf, tempfile::TempDir) {
    let parent = tempfile::tempdir().expect("tempdir");
    let name = format!("my-{lang}-policy");
    let created = run(parent.path(), host_exe(), &["policy", "new", &name, "--lang", lang]);
    assert!(created.contains("./build.sh") && created.contains(&format!("autoscale.policy={name}")), "{created}");
    let dir = parent.path().join(&name);
    let built = run(&dir, "./build.sh", &[]);
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "build.sh left no {}: {built}", wasm.display());
    let tested = run(&dir, "./test.sh", &[]);
    assert!(tested.contains("OK, a component of world autoscaler:policy/policy"), "{tested}");
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");
    // Every template is written for the contract this daemon calls current.
    assert!(tested.contains("contract version: ") && tested.contains(" (current)"), "{tested}");
    // The template declares its settings: check lists them.
    assert!(tested.contains("cpu.upper") && tested.contains("cpu.lower"), "{tested}");
    (wasm, parent)
}

/// The target a policy asks for on a service at `current` of [1, 5] with
/// mean CPU `mean` and these labels, if any.
fn target(policy: &mut LoadedPolicy, current: u32, mean: f64, labels: &[(&str, &str)]) -> Option<u32> {
    let settings = policy.resolve(labels).expect("the labels fit the policy");
    let state = State::replicas(current, 1, 5).with_cpu(&[mean, mean]).with_settings(settings);
    let decision = policy.decide(&Event::cpu(mean), &state).expect("call");
    decision.map(|d| d.target().unwrap_or_else(|| panic!("a scale decision, got {d:?}")))
}

/// The template's component decides like the shipped threshold policy on
/// CPU: every replica count of [1, 5] and mean CPU from 0 to 1 in tenths
/// (the thresholds themselves included), at two bands.
fn agrees_with_threshold(lang: &str, wasm: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root");
    let threshold = repo.join("policies/threshold.wasm");
    let threshold = std::fs::read(&threshold)
        .unwrap_or_else(|e| panic!("{}: {e}; build it with policies/build.sh", threshold.display()));
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut reference = runtime.load("threshold", &threshold).expect("threshold loads");
    let mut template = runtime.load(lang, &std::fs::read(wasm).expect("wasm")).expect("template loads");
    for labels in [[("cpu.upper", "0.8"), ("cpu.lower", "0.3")], [("cpu.upper", "0.6"), ("cpu.lower", "0.5")]] {
        for current in 1..=5 {
            for tenth in 0..=10 {
                let mean = f64::from(tenth) / 10.0;
                assert_eq!(
                    target(&mut template, current, mean, &labels),
                    target(&mut reference, current, mean, &labels),
                    "{lang}: {current} replicas at mean cpu {mean} with {labels:?}"
                );
            }
        }
    }
}

/// The template's `demand` helper (the Rust SDK's `State::demand()` in
/// Rust) gives what the SDK's does: the larger of the service's in-flight
/// and queue sums over the reporting replicas, never their sum, nothing
/// when neither is reported. The template's reason for a scale says it.
fn reports_demand_like_the_sdk(lang: &str, wasm: &Path) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut template = runtime.load(lang, &std::fs::read(wasm).expect("wasm")).expect("template loads");
    let settings = template.resolve::<&str, &str>(&[]).expect("default settings");
    let (inflight, queue) = (Metric::named("inflight"), Metric::named("queue"));
    // In flight per replica and replicas warming, the same for the queue,
    // and how the reason must end (None: it names no demand).
    type Case = (&'static [f64], u32, &'static [f64], u32, Option<&'static str>);
    let cases: [Case; 6] = [
        // 10 requests arrived, 4 of them still in accept queues: 10, not 14.
        (&[6.0, 4.0], 0, &[3.0, 1.0], 0, Some("(demand 10)")),
        // Connections waiting with no request yet: the queue is the larger.
        (&[1.0], 0, &[5.0], 0, Some("(demand 5)")),
        (&[7.0], 0, &[], 0, Some("(demand 7)")),
        (&[], 0, &[2.0], 0, Some("(demand 2)")),
        // Every replica warming up: not reported.
        (&[], 2, &[], 2, None),
        (&[], 0, &[], 0, None),
    ];
    for (flight, flight_warming, queued, queue_warming, expected) in cases {
        let mut state = State::replicas(2, 1, 5).with_cpu(&[0.9, 0.9]).with_settings(settings.clone());
        if !flight.is_empty() || flight_warming > 0 {
            state = state.with_metric(inflight.clone(), Unit::Count, flight, flight_warming);
        }
        if !queued.is_empty() || queue_warming > 0 {
            state = state.with_metric(queue.clone(), Unit::Count, queued, queue_warming);
        }
        let decision = template.decide(&Event::cpu(0.9), &state).expect("call").expect("a hot service scales");
        match expected {
            Some(said) => assert!(decision.reason.ends_with(said), "{lang}: {flight:?} / {queued:?}: {decision:?}"),
            None => assert!(!decision.reason.contains("demand"), "{lang}: nothing reported: {decision:?}"),
        }
    }
}

#[test]
fn rust_project_builds_and_passes_its_tests() {
    let (wasm, _project) = scaffold_build_and_test("rust");
    reports_demand_like_the_sdk("rust", &wasm);
}

#[test]
fn python_project_builds_and_passes_its_tests() {
    let (wasm, _project) = scaffold_build_and_test("python");
    agrees_with_threshold("python", &wasm);
    reports_demand_like_the_sdk("python", &wasm);
}

#[test]
fn js_project_builds_and_passes_its_tests() {
    let (wasm, _project) = scaffold_build_and_test("js");
    agrees_with_threshold("js", &wasm);
    reports_demand_like_the_sdk("js", &wasm);
}

#[test]
fn c_project_builds_and_passes_its_tests() {
    let (wasm, _project) = scaffold_build_and_test("c");
    agrees_with_threshold("c", &wasm);
    reports_demand_like_the_sdk("c", &wasm);
}

#[test]
fn an_existing_folder_is_never_overwritten() {
    let parent = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(parent.path().join("taken")).expect("mkdir");
    let out = Command::new(host_exe())
        .args(["policy", "new", "taken", "--lang", "c"])
        .current_dir(parent.path())
        .output()
        .expect("run host");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_dir(parent.path().join("taken")).expect("dir").count(), 0);
}

/// A Rust project made by `host policy new` builds with nothing but the
/// `host` binary and cargo: the binary is copied alone to a folder outside
/// the checkout and run from there with a HOME outside it, so the
/// checkout's sdk/ is out of its reach; the project carries the SDK (no
/// path into the checkout), builds offline with its build.sh (the SDK's
/// dependencies are in the cargo registry already), and passes `host
/// policy check`.
#[test]
fn a_rust_project_builds_with_only_the_host_binary() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").canonicalize().expect("repo");
    let alone = tempfile::tempdir().expect("tempdir");
    let bin = alone.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let copied = bin.join("host");
    std::fs::copy(host_exe(), &copied).expect("copy host");
    let home = alone.path().join("home");
    let work = alone.path().join("work");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&work).expect("work");
    // cargo and rustup keep finding the installed toolchain and registry.
    let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(|| real_home.join(".cargo"), PathBuf::from);
    let rustup_home = std::env::var_os("RUSTUP_HOME").map_or_else(|| real_home.join(".rustup"), PathBuf::from);
    let sh = |dir: &Path, program: &Path, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("HOME", &home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", rust_target().join("alone"))
            .env_remove("AUTOSCALER_SDK")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{} {args:?} in {} failed:\n{text}", program.display(), dir.display());
        text
    };
    sh(&work, &copied, &["policy", "new", "alone", "--lang", "rust"]);
    let dir = work.join("alone");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(!manifest.contains(repo.to_str().expect("utf-8 path")), "a path into the checkout: {manifest}");
    assert!(manifest.contains(r#"autoscaler-sdk = { path = "sdk" }"#), "{manifest}");
    sh(&dir, &dir.join("build.sh"), &[]);
    let wasm = dir.join("alone.wasm");
    assert!(wasm.is_file(), "build.sh left no {}", wasm.display());
    let checked = sh(&dir, &copied, &["policy", "check", "alone.wasm"]);
    assert!(checked.contains("OK, a component of world autoscaler:policy/policy"), "{checked}");
    assert!(checked.contains("cpu.upper"), "{checked}");
}
