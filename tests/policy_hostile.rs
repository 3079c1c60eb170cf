//! Hostile policies, folder operations and compile-cache tampering: each
//! test is one way a policy file or a fault tried to freeze, starve or flood
//! the daemon (issue 10), and asserts the outcome: refused or failed with an
//! error naming the policy and the cause, within a bound, with the runtime
//! still deciding afterwards.
//!
//! Components: `tests/fixtures/out/misbehave.wasm` (Rust, built by
//! `tests/fixtures/build.sh`) and the hand-written `tests/fixtures/wat/`
//! policy, into which tests splice what they need (many memories, tables,
//! instances, a compile bomb). Compiling in a child process uses the real
//! `host` binary.

mod common;

use common::policy::component;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::model::{Event, EventKind, Metric, SettingValue, State, Unit};
use host::policy::{CompilerSettings, LoadedPolicy, LogRate, PolicyError, PolicySet, Runtime, RuntimeConfig};
use host::reload::{self, Change, ReloadSettings};

fn misbehave_bytes() -> Vec<u8> {
    component("tests/fixtures/out/misbehave.wasm")
}

/// The hand-written policy with `extra` spliced in at its EXTRA marker.
fn wat_policy(extra: &str) -> Vec<u8> {
    let text = String::from_utf8(component("tests/fixtures/wat/policy.wat")).expect("utf-8");
    assert!(text.contains(";; EXTRA"), "policy.wat lost its EXTRA marker");
    wat::parse_str(text.replace(";; EXTRA", extra)).expect("the spliced WAT parses")
}

/// `n` core instances of a module that declares one memory of `pages` pages.
fn memories(n: usize, pages: u32) -> String {
    let mut out = format!("(core module $big (memory {pages}))\n");
    for i in 0..n {
        out.push_str(&format!("(core instance $big{i} (instantiate $big))\n"));
    }
    out
}

/// A component that takes long and much memory to compile: `funcs`
/// functions of `ops` dependent arithmetic operations each.
fn compile_bomb(funcs: usize, ops: usize) -> Vec<u8> {
    let mut body = String::with_capacity(funcs * ops * 24);
    for _ in 0..funcs {
        body.push_str("(func (param i64) (result i64) (local i64 i64)\n");
        for j in 0..ops {
            let op = ["i64.add", "i64.mul", "i64.xor", "i64.rotl"][j % 4];
            body.push_str(&format!("(local.set {} ({op} (local.get 0) (local.get {})))\n", 1 + j % 2, 1 + (j + 1) % 2));
        }
        body.push_str("(local.get 1))\n");
    }
    wat_policy(&format!("(core module $bomb {body})"))
}

/// Compile bombs take both cores: one such test at a time, so that the
/// others measure their own bounds and not the machine's load.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A time limit that CPU contention from parallel tests cannot hit by
/// accident, for tests about something else.
fn relaxed() -> RuntimeConfig {
    RuntimeConfig { time_limit: Duration::from_millis(500), ..RuntimeConfig::default() }
}

fn runtime(config: RuntimeConfig) -> Runtime {
    Runtime::new(config).expect("runtime")
}

fn in_child(timeout: Duration, memory_limit: u64) -> Option<CompilerSettings> {
    Some(CompilerSettings { exe: PathBuf::from(env!("CARGO_BIN_EXE_host")), timeout, memory_limit })
}

fn event() -> Event {
    Event {
        metric: Metric::CPU,
        value: 0.5,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        container_id: "c0ffee".into(),
        service_id: "svc".into(),
        service_name: "web".into(),
        timestamp_ns: 1,
    }
}

/// A state with the misbehave fixture's one setting, `fault`.
fn fault(name: &str) -> State {
    State {
        service_id: "svc".into(),
        service_name: "web".into(),
        settings: vec![Some(SettingValue::Text(name.into()))].into(),
        current_replicas: 2,
        min_replicas: 1,
        max_replicas: 6,
        ..State::default()
    }
}

fn misbehave(rt: &Runtime) -> LoadedPolicy {
    rt.load("misbehave", &misbehave_bytes()).expect("fixture loads")
}

/// After any failure the same policy decides correctly again.
fn assert_recovers(policy: &mut LoadedPolicy) {
    let decision = policy.decide(&event(), &fault("none")).expect("recovered call").expect("a decision");
    assert_eq!((decision.target(), decision.reason.as_str()), (Some(3), "ok"));
}

/// The first line of an error names the policy and says what happened.
fn assert_names_cause(err: &PolicyError, words: &[&str]) {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains("policy "), "no policy named: {text}");
    assert!(!first.contains("backtrace"), "first line is a backtrace header: {text}");
    assert!(!first.trim_end().ends_with(':'), "first line ends without a cause: {text}");
    for word in words {
        assert!(first.contains(word), "{word:?} not in the first line: {text}");
    }
}

// ---- 1. Blocking host calls ----

#[test]
fn sleeping_policy_is_cut_at_the_time_limit() {
    let limit = Duration::from_millis(20);
    let rt = runtime(RuntimeConfig { time_limit: limit, ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let started = Instant::now();
    let err = policy.decide(&event(), &fault("sleep")).expect_err("a 30 s sleep must not return");
    let took = started.elapsed();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    assert_names_cause(&err, &["misbehave", "time limit of 20 ms", "sleep or poll"]);
    assert!(took < Duration::from_millis(500), "the sleep held the caller for {took:?}");
    assert_recovers(&mut policy);
}

#[test]
fn polling_a_clock_is_cut_at_the_time_limit() {
    let rt = runtime(RuntimeConfig { time_limit: Duration::from_millis(20), ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let started = Instant::now();
    let err = policy.decide(&event(), &fault("poll-sleep")).expect_err("a 30 s poll must not return");
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "poll held the caller for {:?}", started.elapsed());
    assert_recovers(&mut policy);
}

#[test]
fn reading_stdin_returns_at_once_with_nothing() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let decision = policy.decide(&event(), &fault("stdin")).expect("stdin is closed, not blocking").expect("decision");
    assert_eq!(decision.reason, "stdin: 0 bytes");
}

#[test]
fn a_gigabyte_of_random_bytes_is_refused_naming_the_cause() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let started = Instant::now();
    let err = policy.decide(&event(), &fault("random")).expect_err("must be refused");
    assert!(started.elapsed() < Duration::from_millis(200), "took {:?}", started.elapsed());
    assert_names_cause(&err, &["misbehave", "exceeds limit"]);
    assert_recovers(&mut policy);
}

#[test]
fn hoarding_host_handles_is_bounded() {
    let rt = runtime(RuntimeConfig { time_limit: Duration::from_secs(2), ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let err = policy.decide(&event(), &fault("handles")).expect_err("a million pollables must be refused");
    assert_names_cause(&err, &["misbehave", "resource"]);
    assert_recovers(&mut policy);
}

#[test]
fn status_readers_never_wait_for_a_slow_call() {
    // A call that takes its full (long) time limit holds the policy's lock;
    // the quarantine count that /metrics reads must not wait for it.
    let rt = Arc::new(runtime(RuntimeConfig {
        time_limit: Duration::from_millis(1500),
        max_consecutive_failures: 1,
        ..RuntimeConfig::default()
    }));
    let set = PolicySet::default();
    set.install(misbehave(&rt));
    let slot = set.get("misbehave").expect("installed");
    let caller = std::thread::spawn(move || slot.decide(&event(), &fault("sleep")));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(set.quarantined(), 0);
    let statuses = set.statuses();
    assert!(started.elapsed() < Duration::from_millis(50), "a status read waited {:?}", started.elapsed());
    assert_eq!(statuses.len(), 1);
    let err = caller.join().expect("caller").expect_err("cut at the limit");
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err}");
    assert_eq!(set.quarantined(), 1, "one failure with max 1 quarantines");
}

// ---- 2. Memory, tables, instances ----

#[test]
fn many_memories_are_bounded_by_their_sum() {
    // 24 memories of 64 MiB each: every one is within a 64 MiB cap, their
    // sum (1.5 GiB) is not.
    let bytes = wat_policy(&memories(24, 1024));
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("hoarder", &bytes).expect_err("must be refused");
    assert!(matches!(err, PolicyError::MemoryLimit { limit_mib: 64, .. }), "{err}");
    assert_names_cause(&err, &["hoarder", "memory limit of 64 MiB"]);
}

#[test]
fn memories_within_the_sum_load_and_decide() {
    let bytes = wat_policy(&memories(3, 256));
    let rt = runtime(RuntimeConfig::default());
    let mut policy = rt.load("modest", &bytes).expect("3 x 16 MiB fits in 64 MiB");
    // The hand-written policy declares no settings.
    let state = State { settings: Default::default(), ..fault("none") };
    assert_eq!(policy.decide(&event(), &state).expect("decides"), None);
}

#[test]
fn too_many_core_instances_are_refused() {
    let extra: String = std::iter::once("(core module $empty)\n".to_string())
        .chain((0..40).map(|i| format!("(core instance $e{i} (instantiate $empty))\n")))
        .collect();
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("swarm-of-instances", &wat_policy(&extra)).expect_err("must be refused");
    assert_names_cause(&err, &["swarm-of-instances", "instance"]);
}

#[test]
fn too_many_memories_in_one_module_are_refused() {
    let mems: String = (0..9).map(|_| "(memory 1)").collect();
    let extra = format!("(core module $multi {mems}) (core instance $mm (instantiate $multi))");
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("multi-memory", &wat_policy(&extra)).expect_err("must be refused");
    assert_names_cause(&err, &["multi-memory", "memor"]);
}

#[test]
fn huge_tables_are_refused_as_memory() {
    let extra = "(core module $t (table 1000000 funcref)) (core instance $ti (instantiate $t))";
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("table-hog", &wat_policy(extra)).expect_err("must be refused");
    assert!(matches!(err, PolicyError::MemoryLimit { .. }), "{err}");
    assert_names_cause(&err, &["table-hog", "table"]);
}

#[test]
fn too_many_tables_are_refused() {
    let extra: String = std::iter::once("(core module $t (table 1 funcref))\n".to_string())
        .chain((0..9).map(|i| format!("(core instance $t{i} (instantiate $t))\n")))
        .collect();
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("tables", &wat_policy(&extra)).expect_err("must be refused");
    assert_names_cause(&err, &["tables", "table"]);
}

// ---- 3. Unbounded text ----

#[test]
fn a_huge_reason_is_cut_to_one_kib_on_a_character_boundary() {
    // Building 4 MiB of text takes the guest longer than 10 ms.
    let rt = runtime(RuntimeConfig { time_limit: Duration::from_secs(2), ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let decision = policy.decide(&event(), &fault("huge-reason")).expect("decides").expect("decision");
    assert!(decision.reason.len() <= host::policy::MAX_REASON_BYTES, "{} bytes", decision.reason.len());
    assert!(decision.reason.starts_with('é'));
    assert!(decision.reason.ends_with("(cut)"), "the cut is marked: {}", &decision.reason[1000..]);
}

#[test]
fn log_budget_spans_calls() {
    let rate = LogRate { lines_per_sec: 20, bytes_per_sec: 16 << 10 };
    let rt = runtime(RuntimeConfig { log_rate: rate, ..RuntimeConfig::default() });
    let mut policy = misbehave(&rt);
    let started = Instant::now();
    for _ in 0..50 {
        policy.decide(&event(), &fault("log-steady")).expect("decides");
    }
    let seconds = started.elapsed().as_secs_f64();
    // 50 calls x 40 lines, each under the per-call cap; the budget admits
    // a burst of 20 plus 20 per second.
    let admitted_at_most = 20.0 + 20.0 * seconds;
    let dropped = policy.status().log_dropped() as f64;
    assert!(dropped >= 2000.0 - admitted_at_most, "only {dropped} of 2000 lines dropped in {seconds:.2} s");
}

// ---- 9. Errors that name no cause ----

#[test]
fn an_invalid_enum_from_the_guest_names_the_cause() {
    let rt = runtime(RuntimeConfig::default());
    let mut policy = misbehave(&rt);
    let err = policy.decide(&event(), &fault("bad-enum")).expect_err("must fail");
    assert!(matches!(err, PolicyError::Trap { .. }), "{err}");
    assert_names_cause(&err, &["misbehave", "discriminant"]);
    assert_recovers(&mut policy);
}

#[test]
fn a_component_of_another_world_names_the_missing_export() {
    let rt = runtime(RuntimeConfig::default());
    let err = rt.load("other", &component("tests/fixtures/out/other_world.wasm")).expect_err("refused");
    assert_eq!(err.kind(), "refused-import");
    assert_names_cause(&err, &["other", "no export `decide`"]);
}

// ---- 5. Compile bombs ----

#[test]
fn compile_in_a_child_loads_a_good_policy() {
    let rt = runtime(RuntimeConfig { compiler: in_child(Duration::from_secs(60), 2 << 30), ..relaxed() });
    let mut policy = misbehave(&rt);
    assert_eq!(policy.origin(), host::policy::Origin::Compiled);
    assert_recovers(&mut policy);
}

#[test]
fn python_policy_compiles_in_a_bounded_child_and_fits_the_caps() {
    // The largest real policy (an 18 MB interpreter) with the default
    // bounds: compile time and memory, instance, memory and table caps.
    let bytes = component("examples/policies/python/burst.wasm");
    let rt = runtime(RuntimeConfig {
        compiler: Some(CompilerSettings {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_host")),
            ..CompilerSettings::this_binary()
        }),
        ..RuntimeConfig::default()
    });
    let started = Instant::now();
    let mut policy = rt.load("burst", &bytes).expect("the python policy loads within the default bounds");
    println!("python policy compiled in a child in {:?}", started.elapsed());
    // The rule: an upward crossing of the configured connections.upper.
    let settings = policy.resolve(&[("burst.step", "3"), ("connections.upper", "100")]).expect("labels fit");
    let state = State { settings, max_replicas: 10, ..fault("none") };
    let crossing = Event {
        metric: Metric::CONNECTIONS,
        value: 120.0,
        unit: Unit::Count,
        kind: EventKind::Crossing(host::model::Crossing { threshold: 100.0, direction: host::model::Direction::Up }),
        ..event()
    };
    let up = policy.decide(&crossing, &state).expect("call").expect("decision");
    assert_eq!(up.target(), Some(5));
}

#[test]
fn compile_bomb_is_stopped_at_the_time_limit() {
    let _heavy = heavy();
    let bomb = compile_bomb(400, 2000);
    let rt =
        runtime(RuntimeConfig { compiler: in_child(Duration::from_millis(700), 2 << 30), ..RuntimeConfig::default() });
    let started = Instant::now();
    let err = rt.load("bomb", &bomb).expect_err("must be stopped");
    let took = started.elapsed();
    assert_eq!(err.kind(), "compile-limit", "{err}");
    assert_names_cause(&err, &["bomb", "compile"]);
    // Whichever bound strikes first: the wall clock, or RLIMIT_CPU (set to
    // the same time) on a machine where the child gets a whole core.
    let text = err.to_string();
    assert!(text.contains("longer than") || text.contains("CPU-time limit"), "{text}");
    assert!(took < Duration::from_secs(3), "stopped only after {took:?}");
}

#[test]
fn compile_bomb_is_stopped_at_the_memory_limit() {
    let _heavy = heavy();
    // One huge function: Cranelift's memory grows with a function's size.
    let bomb = compile_bomb(1, 400_000);
    let limit = 512 << 20;
    let rt = runtime(RuntimeConfig { compiler: in_child(Duration::from_secs(120), limit), ..RuntimeConfig::default() });
    // Control: a real policy compiles within the same limit.
    misbehave(&rt);
    let err = rt.load("bomb", &bomb).expect_err("must be stopped");
    assert_eq!(err.kind(), "compile-limit", "{err}");
    assert_names_cause(&err, &["bomb", "memory"]);
}

#[test]
fn cancelling_stops_a_compile_in_flight() {
    let _heavy = heavy();
    let bomb = compile_bomb(400, 2000);
    let rt = Arc::new(runtime(RuntimeConfig { compiler: in_child(Duration::from_secs(60), 2 << 30), ..relaxed() }));
    let loader = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.load("bomb", &bomb).map(drop))
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    rt.cancel_compiles();
    let err = loader.join().expect("loader").expect_err("cancelled");
    assert!(started.elapsed() < Duration::from_millis(500), "cancel took {:?}", started.elapsed());
    assert!(err.to_string().contains("shutting down"), "{err}");
}

// ---- 6. The compile cache ----

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in std::fs::read_dir(dir).expect("cache dir").flatten() {
        if sub.path().is_dir() {
            found.extend(std::fs::read_dir(sub.path()).expect("engine dir").flatten().map(|e| e.path()));
        }
    }
    found.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    found
}

/// Load misbehave once into `cache`, damage its entry with `damage`, then
/// load it with a fresh runtime: it must be compiled again and decide.
fn tampered_entry_is_a_miss(damage: impl Fn(&Path)) {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = || RuntimeConfig { cache_dir: Some(cache.path().into()), ..RuntimeConfig::default() };
    let first = runtime(config());
    misbehave(&first);
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    damage(&entries[0]);
    let second = runtime(config());
    let mut policy = misbehave(&second);
    assert_eq!(second.compiles(), 1, "the damaged entry must not be used");
    assert_recovers(&mut policy);
    // The entry was rewritten and is trusted again.
    let third = runtime(config());
    assert_eq!(misbehave(&third).origin(), host::policy::Origin::Disk);
}

#[test]
fn cache_entry_with_a_flipped_byte_is_recompiled() {
    tampered_entry_is_a_miss(|path| {
        let mut bytes = std::fs::read(path).expect("entry");
        let last = bytes.len() - 100;
        bytes[last] ^= 0xff;
        std::fs::write(path, bytes).expect("write");
    });
}

#[test]
fn cache_entry_of_garbage_is_recompiled() {
    tampered_entry_is_a_miss(|path| std::fs::write(path, vec![0x41; 4096]).expect("write"));
}

#[test]
fn cache_entry_readable_by_others_is_recompiled() {
    tampered_entry_is_a_miss(|path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    });
}

#[test]
fn cache_entry_replaced_by_a_symlink_is_recompiled() {
    tampered_entry_is_a_miss(|path| {
        let elsewhere = path.with_extension("elsewhere");
        std::fs::rename(path, &elsewhere).expect("move");
        std::os::unix::fs::symlink(&elsewhere, path).expect("symlink");
    });
}

#[test]
fn cache_is_pruned_to_its_bound() {
    let cache = tempfile::tempdir().expect("tempdir");
    let misbehave = misbehave_bytes();
    // Three distinct components; the bound holds about one and a half.
    let variants: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut bytes = misbehave.clone();
            // A custom section (id 0) at the end makes new content, same code.
            bytes.extend_from_slice(&[0, 3, 1, b'x', i]);
            bytes
        })
        .collect();
    let probe = runtime(RuntimeConfig { cache_dir: Some(cache.path().into()), ..RuntimeConfig::default() });
    probe.load("v", &variants[0]).expect("loads");
    let one = std::fs::metadata(&cache_entries(cache.path())[0]).expect("entry").len();
    let bound = one * 3 / 2;
    let rt = runtime(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        cache_max_bytes: bound,
        ..RuntimeConfig::default()
    });
    for bytes in &variants {
        rt.load("v", bytes).expect("loads");
    }
    let total: u64 = cache_entries(cache.path()).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(total <= bound, "cache holds {total} bytes, bound {bound}");
}

#[test]
fn cache_key_readable_by_others_turns_the_disk_tier_off() {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = || RuntimeConfig { cache_dir: Some(cache.path().into()), ..RuntimeConfig::default() };
    misbehave(&runtime(config()));
    std::fs::set_permissions(cache.path().join("key"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let rt = runtime(config());
    misbehave(&rt);
    assert_eq!(rt.compiles(), 1, "entries must not be trusted with a key others can read");
}

// ---- 5. The folder ----

struct Watched {
    tokio: tokio::runtime::Runtime,
    set: PolicySet,
    rx: tokio::sync::mpsc::UnboundedReceiver<Change>,
    handle: Option<reload::WatchHandle>,
}

fn watch(folder: &Path, config: RuntimeConfig) -> Watched {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let set = PolicySet::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = Arc::new(runtime(config));
    let handle = tokio.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            reload::watch(rt, folder, set.clone(), ReloadSettings::default(), tx),
        )
        .await
        .expect("the initial load must not block")
        .expect("watch")
    });
    Watched { tokio, set, rx, handle: Some(handle) }
}

impl Watched {
    /// Wait for a change matching `want`; every change seen on the way.
    fn wait(&mut self, what: &str, timeout: Duration, want: impl Fn(&Change) -> bool) -> Change {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.tokio.block_on(async { tokio::time::timeout(left, self.rx.recv()).await });
            match next {
                Ok(Some(change)) if want(&change) => return change,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("no change for {what} within {timeout:?}; loaded: {:?}", self.set.names()),
            }
        }
    }
}

fn place(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

fn rejected(name: &str) -> impl Fn(&Change) -> bool + '_ {
    move |c| matches!(c, Change::Rejected { name: n, .. } if n == name)
}

#[test]
fn fifo_in_the_folder_at_start_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    mkfifo(&dir.path().join("x.wasm"));
    place(dir.path(), "good.wasm", &misbehave_bytes());
    let started = Instant::now();
    let mut watched = watch(dir.path(), relaxed());
    assert!(started.elapsed() < Duration::from_secs(10), "start-up took {:?}", started.elapsed());
    assert!(watched.set.get("good").is_some(), "the good file still loads");
    assert_eq!(watched.set.stats().rejections_by_cause(), vec![(("x".to_string(), "not-regular-file".to_string()), 1)]);
    let _ = &mut watched;
}

#[test]
fn fifo_added_while_running_is_refused_and_others_still_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut watched = watch(dir.path(), relaxed());
    mkfifo(&dir.path().join("x.wasm"));
    let change = watched.wait("the FIFO", Duration::from_secs(5), rejected("x"));
    let Change::Rejected { error, .. } = change else { unreachable!() };
    assert!(error.contains("not a regular file"), "{error}");
    place(dir.path(), "later.wasm", &misbehave_bytes());
    watched.wait("a later file", Duration::from_secs(10), |c| *c == Change::Loaded("later".into()));
    // Shutdown is not held up either.
    let started = Instant::now();
    drop(watched.handle.take());
    drop(watched);
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
}

#[test]
fn folder_deleted_and_recreated_is_followed() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("policies");
    std::fs::create_dir(&dir).expect("mkdir");
    place(&dir, "first.wasm", &misbehave_bytes());
    let mut watched = watch(&dir, relaxed());
    assert!(watched.set.get("first").is_some());
    std::fs::remove_dir_all(&dir).expect("rm -r");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(watched.set.get("first").is_some(), "policies keep running while the folder is gone");
    std::fs::create_dir(&dir).expect("mkdir again");
    place(&dir, "second.wasm", &misbehave_bytes());
    watched.wait("the recreated folder", Duration::from_secs(10), |c| *c == Change::Loaded("second".into()));
    watched.wait("the old policy", Duration::from_secs(5), |c| *c == Change::Unloaded("first".into()));
    // And its later changes are followed too.
    place(&dir, "third.wasm", &misbehave_bytes());
    watched.wait("a file in the new folder", Duration::from_secs(10), |c| *c == Change::Loaded("third".into()));
}

#[test]
fn symlinked_folder_swapped_is_followed() {
    let parent = tempfile::tempdir().expect("tempdir");
    let (v1, v2, link) = (parent.path().join("v1"), parent.path().join("v2"), parent.path().join("current"));
    std::fs::create_dir(&v1).expect("mkdir");
    std::fs::create_dir(&v2).expect("mkdir");
    place(&v1, "old.wasm", &misbehave_bytes());
    place(&v2, "new.wasm", &misbehave_bytes());
    std::os::unix::fs::symlink(&v1, &link).expect("symlink");
    let mut watched = watch(&link, relaxed());
    assert!(watched.set.get("old").is_some());
    // Swap atomically, as deploy tools do.
    let tmp = parent.path().join("current.tmp");
    std::os::unix::fs::symlink(&v2, &tmp).expect("symlink");
    std::fs::rename(&tmp, &link).expect("swap");
    watched.wait("the new target", Duration::from_secs(10), |c| *c == Change::Loaded("new".into()));
    watched.wait("the old policy", Duration::from_secs(5), |c| *c == Change::Unloaded("old".into()));
}

#[test]
fn compile_bomb_in_the_folder_does_not_stall_other_files() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    // A limit the bomb always exceeds, even on an idle machine (it compiled
    // within 1.5 s there), while the good file compiles well within it.
    let config = RuntimeConfig { compiler: in_child(Duration::from_millis(500), 2 << 30), ..relaxed() };
    let mut watched = watch(dir.path(), config);
    place(dir.path(), "bomb.wasm", &compile_bomb(400, 2000));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    place(dir.path(), "good.wasm", &misbehave_bytes());
    // The two outcomes may come in either order: the bomb can be stopped
    // before or after the good file loads.
    let is_bomb = rejected("bomb");
    let first = watched.wait("the good file or the bomb", Duration::from_secs(10), |c| {
        *c == Change::Loaded("good".into()) || is_bomb(c)
    });
    let (good_at, change) = if first == Change::Loaded("good".into()) {
        let good_at = started.elapsed();
        (good_at, watched.wait("the bomb", Duration::from_secs(10), rejected("bomb")))
    } else {
        watched.wait("the good file", Duration::from_secs(3), |c| *c == Change::Loaded("good".into()));
        (started.elapsed(), first)
    };
    assert!(good_at < Duration::from_secs(3), "the good file waited {good_at:?}");
    let Change::Rejected { error, .. } = change else { unreachable!() };
    assert!(error.contains("longer than") || error.contains("CPU-time limit"), "{error}");
    let by_cause = watched.set.stats().rejections_by_cause();
    assert!(by_cause.contains(&(("bomb".into(), "compile-limit".into()), 1)), "{by_cause:?}");
}

#[test]
fn shutdown_during_a_compile_bomb_is_prompt() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig { compiler: in_child(Duration::from_secs(60), 2 << 30), ..relaxed() };
    let mut watched = watch(dir.path(), config);
    place(dir.path(), "bomb.wasm", &compile_bomb(400, 2000));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    drop(watched.handle.take());
    let Watched { tokio, .. } = watched;
    tokio.shutdown_timeout(Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
}
