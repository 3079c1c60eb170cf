//! Command-line and environment configuration. Every default lives here.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::RuntimeConfig;

/// Push-based horizontal autoscaler for Docker Swarm.
///
/// Without a subcommand, runs the daemon: loads every policy in `--policies`
/// and feeds it the events the probes push.
#[derive(Debug, Parser)]
#[command(name = "host", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with a policy component without a cluster.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `host policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Say whether FILE is a policy component this daemon can run, its
    /// contract version and imports, and why not if it cannot. Exit 0 only if
    /// it can run.
    Check {
        /// The `.wasm` component to check.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run `decide` once and print the decision as JSON (`null` for none).
    Run {
        /// The `.wasm` component to run.
        file: PathBuf,
        /// The event, as JSON with the WIT field names, or @FILE.
        #[arg(long)]
        event: String,
        /// The service state, as JSON with the WIT field names, or @FILE.
        #[arg(long)]
        state: String,
    },
}

/// Options of the daemon.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Folder of policy components (`NAME.wasm`); the name is the file stem.
    #[arg(long, env = "AUTOSCALER_POLICIES", default_value = "./policies")]
    pub policies: PathBuf,
}

/// Limits of the policy sandbox and the compile cache.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Time budget of one `decide` call, in milliseconds.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_TIME_LIMIT_MS", default_value_t = 10)]
    pub policy_time_limit_ms: u64,

    /// Memory cap of one policy instance, in MiB.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_MEMORY_LIMIT_MIB", default_value_t = 64)]
    pub policy_memory_limit_mib: usize,

    /// Failed calls in a row before a policy is quarantined until its file changes.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_MAX_FAILURES", default_value_t = 5)]
    pub policy_max_failures: u32,

    /// Directory for compiled policies, reused across restarts. Empty keeps
    /// the cache in memory only. Default: $XDG_CACHE_HOME/swarm-autoscaler,
    /// else ~/.cache/swarm-autoscaler.
    #[arg(long, global = true, env = "AUTOSCALER_CACHE_DIR",
          value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeArgs {
    /// The runtime configuration these flags describe.
    pub fn runtime_config(&self) -> RuntimeConfig {
        let cache_dir = match &self.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => default_cache_dir(),
        };
        RuntimeConfig {
            time_limit: Duration::from_millis(self.policy_time_limit_ms.max(1)),
            memory_limit: self.policy_memory_limit_mib.max(1) << 20,
            max_consecutive_failures: self.policy_max_failures.max(1),
            cache_dir,
            ..RuntimeConfig::default()
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("swarm-autoscaler"))
}

/// Logging options.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, env = "AUTOSCALER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_limits() {
        let cli = Cli::try_parse_from(["host"]).expect("parse");
        let rt = cli.runtime.runtime_config();
        assert_eq!(rt.time_limit, Duration::from_millis(10));
        assert_eq!(rt.memory_limit, 64 << 20);
        assert_eq!(rt.max_consecutive_failures, 5);
        assert_eq!(cli.daemon.policies, PathBuf::from("./policies"));
    }

    #[test]
    fn empty_cache_dir_means_memory_only() {
        let cli = Cli::try_parse_from(["host", "--cache-dir", ""]).expect("parse");
        assert_eq!(cli.runtime.runtime_config().cache_dir, None);
    }

    #[test]
    fn policy_run_takes_event_and_state() {
        let cli = Cli::try_parse_from(["host", "policy", "run", "p.wasm", "--event", "{}", "--state", "@s.json"])
            .expect("parse");
        assert!(matches!(cli.command, Some(Command::Policy(PolicyCommand::Run { .. }))));
    }
}
