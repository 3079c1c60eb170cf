//! Hot reload against a real folder, real files and real components: while a
//! thread sends a steady stream of events, files are added, replaced by
//! rename, rewritten in place in chunks, corrupted and fixed, deleted, and
//! bad entries (a symlink out of the folder, an oversized file, a folder
//! named `x.wasm`) are refused. Every call must get exactly one answer, from
//! the version expected at that moment, and no half-written file may ever
//! be compiled into service.

mod common;

use common::policy::component;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host::model::settings::resolve;
use host::model::{Event, State};
use host::policy::{PolicyError, PolicySet};
use host::policy::{Runtime, RuntimeConfig};
use host::reload::{self, Change, ReloadSettings};

/// Which version answered a call, read from the decision's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Absent,
    Threshold,
    Proportional,
    Misbehave,
    Failed(String),
}

/// What the current version of policy `p` answers for a service with
/// `labels`, their settings parsed for that version as the daemon parses
/// them. Settings parsed for a version that a reload replaced before the
/// call are refused (`SettingsMismatch`, not a failure): parsed again.
fn classify(set: &PolicySet, event: &Event, state: &State, labels: &[(String, String)]) -> Seen {
    let Some(slot) = set.get("p") else { return Seen::Absent };
    let answer = loop {
        let (_, _, specs) = slot.declaration();
        let Ok(settings) = resolve(&specs, labels) else { return Seen::Failed("labels do not fit".into()) };
        match slot.decide(event, &State { settings: settings.into(), ..state.clone() }) {
            Err(PolicyError::SettingsMismatch { .. }) => continue,
            answer => break answer,
        }
    };
    match answer {
        Ok(Some(d)) if d.reason.contains(">= cpu.upper") => Seen::Threshold,
        Ok(Some(d)) if d.reason.contains("/ target") => Seen::Proportional,
        Ok(Some(d)) if d.reason == "ok" => Seen::Misbehave,
        Ok(other) => Seen::Failed(format!("unexpected decision {other:?}")),
        Err(err) => Seen::Failed(err.to_string()),
    }
}

struct Stream {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    /// Call `decide` on policy `p` back to back, recording who answered.
    fn start(set: PolicySet) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let event = Event::cpu(0.95).at(1);
        // Chosen so that each shipped policy and the fixture decide, differently.
        let state = State::replicas(2, 1, 9).with_cpu(&[0.95, 0.95]);
        let labels: Vec<(String, String)> = [("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("cpu.target", "0.5")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let who = classify(&set, &event, &state, &labels);
                    seen.lock().expect("lock").push(who);
                    std::thread::sleep(Duration::from_micros(500));
                }
            })
        };
        Stream { seen, stop, thread: Some(thread) }
    }

    fn last(&self) -> Option<Seen> {
        self.seen.lock().expect("lock").last().cloned()
    }

    /// Wait until the stream's latest answer is `want`.
    fn wait_for(&self, want: Seen, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.last() == Some(want.clone()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{what}: expected {want:?}, last answer {:?}", self.last());
    }

    fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("stream thread");
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

fn rename_into_place(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

fn write_in_chunks(path: &Path, bytes: &[u8], pause: Duration) {
    let mut file = std::fs::File::create(path).expect("create");
    let third = bytes.len() / 3;
    for chunk in [&bytes[..third], &bytes[third..2 * third], &bytes[2 * third..]] {
        file.write_all(chunk).expect("write chunk");
        file.flush().expect("flush");
        std::thread::sleep(pause);
    }
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) -> Vec<Change> {
    let mut out = Vec::new();
    while let Ok(change) = rx.try_recv() {
        out.push(change);
    }
    out
}

fn wait_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Change>,
    log: &mut Vec<Change>,
    pred: impl Fn(&Change) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        log.extend(drain(rx));
        if log.iter().any(&pred) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not reported; changes so far: {log:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn folder_changes_swap_versions_without_losing_or_mixing_decisions() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let folder = dir.path();

    let threshold = component("policies/threshold.wasm");
    let proportional = component("policies/proportional.wasm");
    let misbehave = component("tests/fixtures/out/misbehave.wasm");
    let largest = threshold.len().max(proportional.len()).max(misbehave.len()) as u64;

    let runtime = Arc::new(
        Runtime::new(RuntimeConfig { cache_dir: Some(cache.path().into()), ..RuntimeConfig::default() })
            .expect("runtime"),
    );
    let set = PolicySet::default();
    let settings = ReloadSettings { max_file_size: largest + 1024, ..ReloadSettings::default() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio.block_on(reload::watch(runtime.clone(), folder, set.clone(), settings, tx)).expect("watch");
    let mut changes = Vec::new();

    let stream = Stream::start(set.clone());
    stream.wait_for(Seen::Absent, "empty folder");

    // Add.
    rename_into_place(folder, "p.wasm", &threshold);
    stream.wait_for(Seen::Threshold, "added by rename");
    wait_change(&mut rx, &mut changes, |c| *c == Change::Loaded("p".into()), "load");

    // Replace by rename.
    rename_into_place(folder, "p.wasm", &proportional);
    stream.wait_for(Seen::Proportional, "replaced by rename");

    // Replace in place, in three chunks with pauses longer than the debounce.
    let rejections_before = set.stats().rejections.load(Ordering::Relaxed);
    write_in_chunks(&folder.join("p.wasm"), &misbehave, Duration::from_millis(300));
    stream.wait_for(Seen::Misbehave, "rewritten in place in chunks");
    assert_eq!(
        set.stats().rejections.load(Ordering::Relaxed),
        rejections_before,
        "a half-written file was read: {changes:?}"
    );

    // Corrupt in place: rejected, the previous version keeps answering.
    std::fs::write(folder.join("p.wasm"), &misbehave[..misbehave.len() / 2]).expect("corrupt");
    wait_change(
        &mut rx,
        &mut changes,
        |c| matches!(c, Change::Rejected { name, .. } if name == "p"),
        "corrupt file rejected",
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(stream.last(), Some(Seen::Misbehave), "the last good version must keep running");

    // Fix it.
    rename_into_place(folder, "p.wasm", &threshold);
    stream.wait_for(Seen::Threshold, "fixed");

    // Unchanged content: no reload, no compile.
    let compiles = runtime.compiles();
    rename_into_place(folder, "p.wasm", &threshold);
    let deadline = Instant::now() + Duration::from_secs(20);
    while set.stats().unchanged.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the rewrite of identical bytes was never noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(runtime.compiles(), compiles, "identical bytes must not be compiled again");

    // Bad entries are refused, naming the file; they do not disturb `p`.
    std::fs::write(outside.path().join("evil.wasm"), &threshold).expect("outside file");
    std::os::unix::fs::symlink(outside.path().join("evil.wasm"), folder.join("evil.wasm")).expect("symlink");
    std::fs::write(folder.join("big.wasm"), vec![0u8; (largest + 4096) as usize]).expect("big file");
    std::fs::create_dir(folder.join("x.wasm")).expect("dir");
    for bad in ["evil", "big", "x"] {
        wait_change(&mut rx, &mut changes, |c| matches!(c, Change::Rejected { name, .. } if name == bad), bad);
        assert!(set.get(bad).is_none(), "{bad} must not be loaded");
    }
    let reason = |bad: &str| {
        changes
            .iter()
            .find_map(|c| match c {
                Change::Rejected { name, error } if name == bad => Some(error.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    assert!(reason("evil").contains("evil.wasm") && reason("evil").contains("outside"), "{}", reason("evil"));
    assert!(reason("big").contains("big.wasm") && reason("big").contains("limit"), "{}", reason("big"));
    assert!(reason("x").contains("x.wasm") && reason("x").contains("not a regular file"), "{}", reason("x"));

    // Delete: unloaded.
    std::fs::remove_file(folder.join("p.wasm")).expect("delete");
    stream.wait_for(Seen::Absent, "deleted");
    wait_change(&mut rx, &mut changes, |c| *c == Change::Unloaded("p".into()), "unload");

    drop(watcher);
    let seen = stream.finish();
    // Collapse runs: the versions must appear exactly in the order applied,
    // never flipping back, and no call may have failed.
    let mut order: Vec<Seen> = Vec::new();
    for who in seen {
        if let Seen::Failed(why) = &who {
            panic!("a call failed during reloads: {why}");
        }
        if order.last() != Some(&who) {
            order.push(who);
        }
    }
    assert_eq!(
        order,
        vec![Seen::Absent, Seen::Threshold, Seen::Proportional, Seen::Misbehave, Seen::Threshold, Seen::Absent]
    );
    let stats = set.stats();
    assert_eq!(stats.loads.load(Ordering::Relaxed), 1);
    assert_eq!(stats.reloads.load(Ordering::Relaxed), 3);
    assert_eq!(stats.unloads.load(Ordering::Relaxed), 1);
}

#[test]
fn startup_loads_good_files_and_skips_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("threshold.wasm"), component("policies/threshold.wasm")).expect("write");
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm garbage").expect("write");
    std::fs::write(dir.path().join("other.wasm"), component("tests/fixtures/out/other_world.wasm")).expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let set = PolicySet::default();
    let changes = reload::load_folder(&runtime, dir.path(), &set, &ReloadSettings::default()).expect("load");
    assert_eq!(set.names(), vec!["threshold".to_string()]);
    let rejected: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Rejected { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, vec!["broken", "other"]);
}
