//! The folder watcher against a real folder (inotify) and real compiled
//! policies: what reaches the loop, and what the policy set holds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Change, ReloadSettings, watch};
use crate::daemon::testing::{MISBEHAVE, THRESHOLD, component};
use crate::policy::{PolicySet, Runtime, RuntimeConfig};

/// Write `bytes` as `name` in `dir` the way a deploy does: a temporary
/// file renamed into place (complete when it appears).
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, bytes).expect("write");
    std::fs::rename(&temporary, dir.join(name)).expect("rename");
}

/// The next change, within 20 s (a compile on a busy machine).
async fn next(changes: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(20), changes.recv()).await.expect("a change in time").expect("watching")
}

/// No change within `wait`.
async fn quiet(changes: &mut mpsc::UnboundedReceiver<Change>, wait: Duration) {
    if let Ok(Some(change)) = tokio::time::timeout(wait, changes.recv()).await {
        panic!("unexpected change {change:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_reloads_unchanged_bytes_are_skipped_and_a_bad_file_keeps_the_last_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let set = PolicySet::default();
    let (tx, mut changes) = mpsc::unbounded_channel();
    let settings = ReloadSettings { debounce: Duration::from_millis(20), ..ReloadSettings::default() };
    let _watch = watch(runtime.clone(), dir.path(), set.clone(), settings, tx).await.expect("watching");
    assert!(set.names().is_empty());

    // A new file: loaded.
    let (threshold, other) = (component(THRESHOLD), component(MISBEHAVE));
    put(dir.path(), "p.wasm", &threshold);
    assert_eq!(next(&mut changes).await, Change::Loaded("p".into()));
    let first = set.get("p").expect("loaded").sha256();
    let compiles = runtime.compiles();

    // The same bytes again (a redeploy of the same build): nothing to do.
    put(dir.path(), "p.wasm", &threshold);
    quiet(&mut changes, Duration::from_millis(500)).await;
    assert_eq!(runtime.compiles(), compiles, "unchanged bytes compiled again");
    assert_eq!(set.stats().reloads.load(Ordering::Relaxed), 0);

    // Other bytes: a new version replaces the running one.
    put(dir.path(), "p.wasm", &other);
    assert_eq!(next(&mut changes).await, Change::Reloaded("p".into()));
    let second = set.get("p").expect("loaded").sha256();
    assert_ne!(second, first);

    // A file that is no component: refused, and the last good one runs on.
    put(dir.path(), "p.wasm", b"not a component");
    match next(&mut changes).await {
        Change::Rejected { name, error } => assert!(name == "p" && !error.is_empty(), "{error}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(set.get("p").map(|slot| slot.sha256()), Some(second));
    assert_eq!(set.stats().rejections.load(Ordering::Relaxed), 1);

    // Deleted: unloaded.
    std::fs::remove_file(dir.path().join("p.wasm")).expect("remove");
    assert_eq!(next(&mut changes).await, Change::Unloaded("p".into()));
    assert!(set.get("p").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_is_loaded_at_start_and_only_wasm_files_directly_in_it_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), "threshold.wasm", &component(THRESHOLD));
    std::fs::write(dir.path().join("notes.txt"), "not a policy").expect("write");
    std::fs::create_dir(dir.path().join("nested.wasm")).expect("mkdir");
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let set = PolicySet::default();
    let (tx, mut changes) = mpsc::unbounded_channel();
    let _watch = watch(runtime, dir.path(), set.clone(), ReloadSettings::default(), tx).await.expect("watching");
    // The initial load is done when watch returns.
    assert_eq!(set.names(), ["threshold"]);
    let mut initial = Vec::new();
    while let Ok(change) = changes.try_recv() {
        initial.push(change);
    }
    assert!(initial.contains(&Change::Loaded("threshold".into())), "{initial:?}");
    assert!(
        initial.iter().all(|c| !matches!(c, Change::Loaded(n) if n != "threshold")),
        "only *.wasm regular files load: {initial:?}"
    );
}
