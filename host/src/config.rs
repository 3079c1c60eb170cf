//! Command-line and environment configuration. Every default lives here.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::{CompilerSettings, LogRate, RuntimeConfig};
use crate::probe::{ProbeKind, ProbeSettings};
use crate::reload::ReloadSettings;
use crate::swarm::ActuatorOptions;
use crate::swarm::labels::UpRate;
use crate::units::{parse_duration, parse_positive_duration};

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
    /// Ask the running daemon, over its metrics endpoint, how every
    /// autoscaled service stands: policy and version, bounds, the latest
    /// value and service aggregate of each metric, the last decision,
    /// cooldowns left and configuration problems.
    Status {
        /// Only this service (name or id).
        service: Option<String>,
        /// The daemon's metrics endpoint (its --metrics-addr).
        #[arg(long, env = "AUTOSCALER_METRICS_ADDR", default_value = "127.0.0.1:9464", value_name = "ADDR")]
        addr: String,
        /// Print the daemon's JSON as it is.
        #[arg(long)]
        json: bool,
        /// Redraw every `--every` until interrupted (text only).
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Time between two redraws of `--watch` (500ms, 2s).
        #[arg(long, default_value = "1s", value_parser = crate::units::parse_positive_duration, requires = "watch")]
        every: std::time::Duration,
    },
    /// Work with a policy component without a cluster.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run policies over a trace recorded with `--record`, under the
    /// actuator's guardrails, and print what each would have done.
    Replay(ReplayArgs),
}

/// `host replay ...`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace, written by `host --record FILE`.
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// A policy component to replay; repeat to compare several.
    #[arg(long = "policy", value_name = "FILE.wasm", required = true)]
    pub policies: Vec<PathBuf>,
    /// Set a label over the recorded ones, e.g. autoscale.cpu.upper=0.7; repeatable.
    #[arg(long = "label", value_name = "autoscale.KEY=VALUE", value_parser = crate::replay::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Draw replicas over time for each policy against the metric into FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub svg: Option<PathBuf>,
    /// How the service view follows a replica count that differs from the
    /// recorded one.
    #[arg(long, value_enum, default_value_t)]
    pub load: crate::replay::LoadModel,
    /// Print the summaries only, not the decisions.
    #[arg(long)]
    pub quiet: bool,
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
    /// Create folder NAME with a ready policy project in LANG: the source
    /// with a `decide` skeleton, `build.sh` (installs what is missing and
    /// leaves NAME.wasm there) and `test.sh`.
    New {
        /// The policy's name: the folder, and the file stem of its `.wasm`.
        name: String,
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create the folder.
        #[arg(long, value_name = "DIR", default_value = ".")]
        parent: PathBuf,
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

    /// Largest policy file accepted, in MiB; bigger files are refused.
    #[arg(long, env = "AUTOSCALER_POLICY_MAX_FILE_SIZE_MIB", default_value_t = 64)]
    pub policy_max_file_size_mib: u64,

    /// Decide and log every decision (audit log included), write nothing
    /// to Swarm.
    /// `AUTOSCALER_DRY_RUN` takes what labels take: true/false, yes/no, on/off, 1/0.
    #[arg(long, env = "AUTOSCALER_DRY_RUN", value_name = "BOOL", value_parser = parse_flag, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false")]
    pub dry_run: bool,

    /// Also append every applied or skipped decision to FILE, one JSON
    /// object per line.
    #[arg(long, env = "AUTOSCALER_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Largest size of the audit log; past it the file is renamed to
    /// FILE.1 (replacing the previous one) and a new one started (64Mi,
    /// 512MB, 1g).
    #[arg(long, env = "AUTOSCALER_AUDIT_LOG_MAX_SIZE", default_value = "64Mi", value_name = "SIZE",
          value_parser = parse_size)]
    pub audit_log_max_size: u64,

    /// Least time from a scale action to the next scale-up, for services
    /// without `autoscale.cooldown.up` (30s, 500ms, 0).
    #[arg(long, env = "AUTOSCALER_COOLDOWN_UP", default_value = "10s", value_parser = parse_duration)]
    pub cooldown_up: Duration,

    /// Least time from a scale action to the next scale-down, for services
    /// without `autoscale.cooldown.down`.
    #[arg(long, env = "AUTOSCALER_COOLDOWN_DOWN", default_value = "60s", value_parser = parse_duration)]
    pub cooldown_down: Duration,

    /// Scale-up rate limit for services without `autoscale.rate.up`: at
    /// most `100%` more, `4` more, or `100%,4` (the larger) than at the
    /// start of the last `--rate-period`; `none`: no limit.
    #[arg(long, env = "AUTOSCALER_RATE_UP", default_value = "none", value_name = "RATE", value_parser = check_rate)]
    pub rate_up: String,

    /// The period of the scale-up rate limit, for services without
    /// `autoscale.rate.period`.
    #[arg(long, env = "AUTOSCALER_RATE_PERIOD", default_value = "15s", value_parser = parse_positive_duration)]
    pub rate_period: Duration,

    /// Scale-down stabilisation window for services without
    /// `autoscale.stabilization.down`: scale down no lower than the highest
    /// count the policy asked for (or kept) within it; 0: none.
    #[arg(long, env = "AUTOSCALER_STABILIZATION_DOWN", default_value = "0s", value_parser = parse_duration)]
    pub stabilization_down: Duration,

    /// Decisions whose triggering event is older than this when they could
    /// be written (Docker was away, say) are dropped, not applied.
    #[arg(long, env = "AUTOSCALER_MAX_DECISION_AGE", default_value = "10s", value_parser = parse_positive_duration)]
    pub max_decision_age: Duration,

    /// Append every event the daemon decides on, with the state it passes
    /// the policy, to FILE (a trace for `host replay`).
    #[arg(long, env = "AUTOSCALER_RECORD", value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics; empty turns it off.
    #[arg(long, env = "AUTOSCALER_METRICS_ADDR", default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub metrics_addr: String,

    /// The probe that measures the containers.
    #[command(flatten)]
    pub probe: ProbeArgs,

    /// Multi-node mode (`--cluster` and its settings).
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

impl DaemonArgs {
    /// Settings of the policies folder watcher.
    pub fn reload_settings(&self) -> ReloadSettings {
        ReloadSettings { max_file_size: self.policy_max_file_size_mib.max(1) << 20, ..ReloadSettings::default() }
    }

    /// The metrics endpoint's address, `None` when turned off.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        let addr = self.metrics_addr.trim();
        if addr.is_empty() {
            return Ok(None);
        }
        addr.parse().map(Some).map_err(|_| {
            anyhow::anyhow!("--metrics-addr {addr:?} is not an address like 127.0.0.1:9464 (empty turns metrics off)")
        })
    }

    /// Settings of the Swarm actuator.
    pub fn actuator_options(&self) -> ActuatorOptions {
        ActuatorOptions {
            dry_run: self.dry_run,
            max_decision_age: self.max_decision_age,
            cooldown_up: self.cooldown_up,
            cooldown_down: self.cooldown_down,
            rate_up: UpRate::parse(&self.rate_up, self.rate_period).ok().filter(|rate| !rate.is_unlimited()),
            stabilization_down: self.stabilization_down,
        }
    }
}

/// `--rate-up`, checked when parsed (with its period added later).
fn check_rate(value: &str) -> Result<String, String> {
    UpRate::parse(value, crate::swarm::labels::DEFAULT_RATE_PERIOD).map(|_| value.to_string())
}

/// Limits of the policy sandbox and the compile cache.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Time budget of one `decide` call, in milliseconds.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_TIME_LIMIT_MS", default_value_t = 10)]
    pub policy_time_limit_ms: u64,

    /// Memory cap of one policy instance, in MiB: the sum of all its
    /// linear memories.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_MEMORY_LIMIT_MIB", default_value_t = 64)]
    pub policy_memory_limit_mib: usize,

    /// Log lines a policy may write per second (host `log` calls and
    /// stdout/stderr together), across calls; further lines are dropped.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_LOG_LINES_PER_SEC", default_value_t = 20)]
    pub policy_log_lines_per_sec: u32,

    /// Log bytes a policy may write per second, across calls.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_LOG_BYTES_PER_SEC", default_value_t = 16384)]
    pub policy_log_bytes_per_sec: u32,

    /// Longest compilation of one policy file (in a child process); a file
    /// that takes longer is refused (30s, 2m).
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_COMPILE_TIMEOUT", default_value = "60s",
          value_parser = parse_positive_duration)]
    pub policy_compile_timeout: Duration,

    /// Address-space limit of the compiler child process, in MiB; a file
    /// whose compilation needs more is refused.
    #[arg(long, global = true, env = "AUTOSCALER_POLICY_COMPILE_MEMORY_MIB", default_value_t = 2048)]
    pub policy_compile_memory_mib: u64,

    /// Largest size of the compile cache on disk, in MiB; the least
    /// recently used entries are removed beyond it.
    #[arg(long, global = true, env = "AUTOSCALER_CACHE_MAX_MIB", default_value_t = 512)]
    pub cache_max_mib: u64,

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
            cache_max_bytes: self.cache_max_mib.max(1) << 20,
            log_rate: LogRate {
                lines_per_sec: self.policy_log_lines_per_sec.max(1),
                bytes_per_sec: self.policy_log_bytes_per_sec.max(64),
            },
            compiler: Some(CompilerSettings {
                timeout: self.policy_compile_timeout,
                memory_limit: self.policy_compile_memory_mib.max(64) << 20,
                ..CompilerSettings::this_binary()
            }),
            ..RuntimeConfig::default()
        }
    }
}

/// A boolean in the one grammar labels use.
fn parse_flag(text: &str) -> Result<bool, String> {
    crate::units::parse_bool(text).ok_or_else(|| format!("is not a boolean; write {}", crate::units::BOOL_FORMS))
}

/// A size in bytes in the one grammar (`64Mi`, `512MB`, `1g`), at least 4 KiB.
fn parse_size(text: &str) -> Result<u64, String> {
    match crate::units::parse_quantity(text) {
        Some(bytes) if bytes >= 4096.0 => Ok(bytes as u64),
        Some(_) => Err("is below 4KiB".to_string()),
        None => Err("is not a size; write 64Mi, 512MB, 1g or a number of bytes".to_string()),
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("swarm-autoscaler"))
}

/// Which probe feeds the daemon, and its timing.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// `ebpf`: the kernel pushes events (needs root or CAP_BPF+CAP_PERFMON;
    /// falls back to cgroupfs with a warning). `cgroupfs`: read cgroup files
    /// every `--interval` (the pull baseline).
    #[arg(long, env = "AUTOSCALER_PROBE", value_enum, default_value_t = ProbeChoice::Ebpf)]
    pub probe: ProbeChoice,

    /// Time between two reads of the cgroupfs probe (15s, 500ms, 1m).
    #[arg(long, env = "AUTOSCALER_PROBE_INTERVAL", default_value = "15s", value_parser = parse_positive_duration)]
    pub interval: Duration,

    /// CPU utilisation window of the eBPF probe (100ms, 1s).
    #[arg(long, env = "AUTOSCALER_PROBE_WINDOW", default_value = "100ms", value_parser = parse_positive_duration)]
    pub window: Duration,

    /// Least time between two periodic samples of one container.
    #[arg(long, env = "AUTOSCALER_PROBE_SAMPLE_INTERVAL", default_value = "1000ms", value_parser = parse_positive_duration)]
    pub sample_interval: Duration,

    /// Size of the eBPF ring buffer every container's events share: a power
    /// of two (256KiB holds about 5,000 events; 1MiB, 4MiB).
    #[arg(long, env = "AUTOSCALER_PROBE_RING_BUFFER", default_value = "256KiB", value_parser = crate::probe::parse_ring_buffer_size)]
    pub ring_buffer_size: u32,

    /// bpffs directory where the classifier holding the ports of services
    /// at zero replicas (autoscale.zero=remove) is pinned, so they stay held
    /// across a daemon restart; "" not to pin. Its parent must be a bpffs
    /// mount (mount -t bpf bpf /sys/fs/bpf), or nothing is pinned.
    #[arg(long, env = "AUTOSCALER_BPF_PIN_DIR", default_value = crate::probe::DEFAULT_PIN_DIR)]
    pub bpf_pin_dir: String,
}

/// `--probe` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeChoice {
    /// Kernel programs push through a ring buffer.
    Ebpf,
    /// Read cgroupfs on an interval.
    Cgroupfs,
}

impl ProbeArgs {
    /// How long a replica's latest reading counts in the service view:
    /// three of the probe's reporting periods, so one late sample does not
    /// drop a replica, while a replica (or node) that went silent does.
    pub fn view_window(&self) -> Duration {
        let period = match self.probe {
            ProbeChoice::Ebpf => self.sample_interval,
            ProbeChoice::Cgroupfs => self.interval.max(self.sample_interval),
        };
        period * 3
    }

    /// The probe settings these flags describe.
    pub fn settings(&self) -> ProbeSettings {
        let kind = match self.probe {
            ProbeChoice::Ebpf => ProbeKind::Ebpf,
            ProbeChoice::Cgroupfs => ProbeKind::Cgroupfs { interval: self.interval },
        };
        ProbeSettings {
            kind,
            window: self.window,
            sample_interval: self.sample_interval,
            ring_buffer_bytes: self.ring_buffer_size,
            pin_dir: (!self.bpf_pin_dir.is_empty()).then(|| PathBuf::from(&self.bpf_pin_dir)),
            ..ProbeSettings::default()
        }
    }
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
    fn probe_args_parse_humane_durations() {
        #[derive(Debug, Parser)]
        struct P {
            #[command(flatten)]
            probe: ProbeArgs,
        }
        let p = P::try_parse_from(["p"]).expect("parse");
        let s = p.probe.settings();
        assert_eq!(s.kind, ProbeKind::Ebpf);
        assert_eq!(s.window, Duration::from_millis(100));
        assert_eq!(s.sample_interval, Duration::from_millis(1000));
        let p = P::try_parse_from(["p", "--probe", "cgroupfs", "--interval", "500ms"]).expect("parse");
        assert_eq!(p.probe.settings().kind, ProbeKind::Cgroupfs { interval: Duration::from_millis(500) });
        assert!(P::try_parse_from(["p", "--interval", "15"]).is_err(), "a bare number is refused");
        assert!(P::try_parse_from(["p", "--window", "0"]).is_err(), "a window must be above zero");
        assert!(P::try_parse_from(["p", "--probe", "kprobe"]).is_err());
        assert_eq!(s.pin_dir.as_deref(), Some(std::path::Path::new(crate::probe::DEFAULT_PIN_DIR)));
        let p = P::try_parse_from(["p", "--bpf-pin-dir", ""]).expect("an empty pin dir parses");
        assert_eq!(p.probe.settings().pin_dir, None, "empty turns pinning off");
        let p = P::try_parse_from(["p", "--bpf-pin-dir", "/mnt/bpf/x"]).expect("parse");
        assert_eq!(p.probe.settings().pin_dir, Some(PathBuf::from("/mnt/bpf/x")));
    }

    #[test]
    fn actuator_flags_have_safe_defaults() {
        let cli = Cli::try_parse_from(["host"]).expect("parse");
        let opts = cli.daemon.actuator_options();
        assert!(!opts.dry_run);
        assert_eq!(opts, ActuatorOptions::default());
        assert_eq!(cli.daemon.audit_log, None);
        let cli = Cli::try_parse_from([
            "host",
            "--dry-run",
            "--audit-log",
            "a.jsonl",
            "--cooldown-up",
            "0",
            "--cooldown-down",
            "3s",
            "--probe",
            "cgroupfs",
            "--interval",
            "250ms",
        ])
        .expect("parse");
        let opts = cli.daemon.actuator_options();
        assert!(opts.dry_run);
        assert_eq!((opts.cooldown_up, opts.cooldown_down), (Duration::ZERO, Duration::from_secs(3)));
        assert_eq!(cli.daemon.audit_log, Some(PathBuf::from("a.jsonl")));
        assert_eq!(cli.daemon.probe.settings().kind, ProbeKind::Cgroupfs { interval: Duration::from_millis(250) });
        assert!(Cli::try_parse_from(["host", "--cooldown-up", "30"]).is_err(), "a cooldown needs a unit");
        let cli =
            Cli::try_parse_from(["host", "--rate-up", "100%,4", "--rate-period", "30s", "--stabilization-down", "2m"])
                .expect("parse");
        let opts = cli.daemon.actuator_options();
        let rate = UpRate { percent: Some(100), replicas: Some(4), period: Duration::from_secs(30) };
        assert_eq!((opts.rate_up, opts.stabilization_down), (Some(rate), Duration::from_secs(120)));
        assert!(Cli::try_parse_from(["host", "--rate-up", "fast"]).is_err(), "a rate is a share or a count");
    }

    #[test]
    fn booleans_and_sizes_take_the_label_grammar() {
        let cli = Cli::try_parse_from(["host", "--dry-run"]).expect("parse");
        assert!(cli.daemon.dry_run);
        for (text, want) in [("yes", true), ("off", false), ("1", true), ("FALSE", false)] {
            let cli = Cli::try_parse_from(["host", &format!("--dry-run={text}")]).expect("parse");
            assert_eq!(cli.daemon.dry_run, want, "{text}");
        }
        assert!(Cli::try_parse_from(["host", "--dry-run=maybe"]).is_err());
        let cli = Cli::try_parse_from(["host", "--audit-log-max-size", "512MB"]).expect("parse");
        assert_eq!(cli.daemon.audit_log_max_size, 512 << 20);
        assert_eq!(Cli::try_parse_from(["host"]).expect("parse").daemon.audit_log_max_size, 64 << 20);
        let cli = Cli::try_parse_from(["host", "status", "web", "--json"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::Status { service: Some(_), json: true, .. })));
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

    #[test]
    fn cluster_mode_is_off_by_default_and_takes_its_settings() {
        let cli = Cli::try_parse_from(["host"]).expect("parse");
        assert!(!cli.daemon.cluster.cluster, "single-node unless asked");
        let cli = Cli::try_parse_from([
            "host",
            "--cluster",
            "--cluster-listen",
            "10.0.0.2:9000",
            "--cluster-token-file",
            "/tmp/t",
            "--cluster-managers",
            "10.0.0.2:9000,10.0.0.3:9000",
            "--cluster-node-timeout",
            "2s",
            "--cluster-leadership",
            "lease",
            "--cluster-service",
            "autoscaler_autoscaler",
        ])
        .expect("parse");
        let c = &cli.daemon.cluster;
        assert!(c.cluster);
        assert_eq!(c.cluster_managers, ["10.0.0.2:9000", "10.0.0.3:9000"]);
        assert_eq!(c.settings().node_timeout, Duration::from_secs(2));
        assert_eq!(c.settings().listen.port(), 9000);
        assert_eq!(c.cluster_service.as_deref(), Some("autoscaler_autoscaler"));
        assert!(Cli::try_parse_from(["host", "--cluster-node-timeout", "0"]).is_err());
    }
}
