//! The daemon: loads the policies folder and runs the event loop until
//! shutdown.

use std::future::Future;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::DaemonArgs;
use crate::policy::{LoadedPolicy, Runtime};

/// Resolves on Ctrl-C or SIGTERM: the shutdown signal `main` passes to [`run`].
pub async fn ctrl_c() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(args: DaemonArgs, runtime: Runtime, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let dir = args.policies.clone();
    if !dir.is_dir() {
        bail!(
            "policies folder {} does not exist or is not a folder; build the shipped policies with policies/build.sh or pass --policies DIR",
            dir.display()
        );
    }
    let loaded = tokio::task::spawn_blocking(move || load_folder(&runtime, &dir))
        .await
        .context("loading the policies folder")??;
    tracing::info!(policies = loaded.len(), folder = %args.policies.display(), "policies loaded; waiting for events");
    shutdown.await;
    tracing::info!("shutting down");
    Ok(())
}

/// Load every `*.wasm` regular file in `dir`; a bad file is logged and skipped.
fn load_folder(runtime: &Runtime, dir: &Path) -> anyhow::Result<Vec<LoadedPolicy>> {
    let mut loaded = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") || !path.is_file() {
            continue;
        }
        let name = crate::policy_cmd::policy_name(&path);
        match std::fs::read(&path) {
            Ok(bytes) => match runtime.load(&name, &bytes) {
                Ok(policy) => {
                    tracing::info!(policy = %name, sha256 = %&policy.sha256()[..12], origin = ?policy.origin(), "policy loaded");
                    loaded.push(policy);
                }
                Err(err) => tracing::error!(file = %path.display(), "policy rejected: {err}"),
            },
            Err(err) => tracing::error!(file = %path.display(), "cannot read policy: {err}"),
        }
    }
    Ok(loaded)
}
