//! The daemon: loads the policies folder and runs the event loop until
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::DaemonArgs;
use crate::policy::Runtime;
use crate::reload::{self, PolicySet};

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
    let policies = PolicySet::default();
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    // Hot reload: loads the folder now, then follows it until dropped.
    let _watcher = reload::watch(Arc::new(runtime), &dir, policies.clone(), args.reload_settings(), changes_tx)
        .await
        .context("loading the policies folder")?;
    tracing::info!(policies = ?policies.names(), folder = %args.policies.display(), "policies loaded; waiting for events");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(change) = changes.recv() => {
                tracing::debug!(?change, "policies folder changed");
            }
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

