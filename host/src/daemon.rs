//! The daemon: loads the policies folder and runs the event loop until
//! shutdown.

use std::future::Future;

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
    let set = policies.clone();
    tokio::task::spawn_blocking(move || reload::load_folder(&runtime, &dir, &set))
        .await
        .context("loading the policies folder")??;
    tracing::info!(policies = ?policies.names(), folder = %args.policies.display(), "policies loaded; waiting for events");
    shutdown.await;
    tracing::info!("shutting down");
    Ok(())
}

