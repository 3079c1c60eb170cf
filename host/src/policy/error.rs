//! Why a policy could not be loaded or a call failed, and what `host
//! policy check` reports: the runtime's outward-facing words. Every message
//! names the policy and puts the cause first.

use super::health::Quarantine;
use super::{CONTRACT_VERSION, WORLD};
use crate::model::SettingSpec;
use crate::model::settings::SettingProblem;

/// Why a policy could not be loaded or a call failed. Every message names
/// the policy and says what happened.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bytes are not a WebAssembly component.
    #[error("policy {policy}: not a WebAssembly component: {reason}")]
    NotAComponent { policy: String, reason: String },
    /// Cranelift rejected the component.
    #[error("policy {policy}: failed to compile: {reason}")]
    Compile { policy: String, reason: String },
    /// Compiling was stopped by its time or memory bound.
    #[error("policy {policy}: compile stopped: {reason}")]
    CompileLimit { policy: String, reason: String },
    /// The component is not of world `policy`, or needs imports we do not offer.
    #[error("policy {policy}: does not fit world {WORLD} of contract {CONTRACT_VERSION}: {reason}")]
    WrongWorld { policy: String, reason: String },
    /// The component was built for another version of the contract.
    #[error(
        "policy {policy}: built for contract autoscaler:policy@{built_for}, but this daemon runs \
         {CONTRACT_VERSION}; rebuild it against wit/policy.wit (or the SDK) of {CONTRACT_VERSION} \
         (CHANGELOG.md says what changed)"
    )]
    OtherContract { policy: String, built_for: String },
    /// The settings the policy declared are unusable (too many, duplicated).
    #[error("policy {policy}: declares unusable settings: {reason}")]
    Declaration { policy: String, reason: String },
    /// The service's settings do not fit what the policy declared.
    #[error("policy {policy}: settings do not fit its declaration: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Settings { policy: String, problems: Vec<SettingProblem> },
    /// The state's settings were not parsed for this version of the policy
    /// (another count or type than it declares): a call that raced a
    /// reload, or a hand-written state. Not the policy's failure.
    #[error(
        "policy {policy}: the settings passed do not fit its declaration ({reason}); they were parsed for \
         another version of it, or written by hand"
    )]
    SettingsMismatch { policy: String, reason: String },
    /// Creating an instance failed (a trap in its start code, limits).
    #[error("policy {policy}: failed to instantiate: {reason}")]
    Instantiate { policy: String, reason: String },
    /// The call ran past its time limit and was interrupted.
    #[error("policy {policy}: interrupted after exceeding its time limit of {limit_ms} ms{waiting}")]
    Timeout {
        policy: String,
        limit_ms: u128,
        /// Empty, or a note that the time was spent waiting in a host call.
        waiting: &'static str,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("policy {policy}: stopped at its memory limit of {limit_mib} MiB{what}")]
    MemoryLimit {
        policy: String,
        limit_mib: usize,
        /// Empty, or which other cap (tables) was hit.
        what: &'static str,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("policy {policy}: trapped: {reason}")]
    Trap { policy: String, reason: String },
    /// Too many failures, in a row or among its recent calls; calls are
    /// refused until it is reloaded.
    #[error("policy {policy}: quarantined after {why}; change its file to load it again")]
    Quarantined { policy: String, why: Quarantine },
}

impl PolicyError {
    /// A short stable label for metrics and audit logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::NotAComponent { .. } => "not-a-component",
            PolicyError::Compile { .. } => "compile",
            PolicyError::CompileLimit { .. } => "compile-limit",
            PolicyError::WrongWorld { .. } => "refused-import",
            PolicyError::OtherContract { .. } => "contract-version",
            PolicyError::Declaration { .. } => "declaration",
            PolicyError::Settings { .. } => "settings",
            PolicyError::SettingsMismatch { .. } => "settings-mismatch",
            PolicyError::Instantiate { .. } => "instantiate",
            PolicyError::Timeout { .. } => "timeout",
            PolicyError::MemoryLimit { .. } => "memory",
            PolicyError::Trap { .. } => "trap",
            PolicyError::Quarantined { .. } => "quarantined",
        }
    }
}

/// What `host policy check` reports about a file; JSON in the WIT's
/// kebab-case, like every other name the JSON carries.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inspection {
    /// The contract version the component was built against, if it says.
    pub contract_version: Option<String>,
    /// The settings it declares.
    pub settings: Vec<SettingSpec>,
    /// Every import name of the component.
    pub imports: Vec<String>,
    /// Every export name of the component.
    pub exports: Vec<String>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Where the compiled code came from.
    pub origin: &'static str,
    /// Time to compile or load from cache.
    pub load_ms: f64,
}

/// The causes in a wasmtime error chain, outermost first, on one line:
/// wasmtime wraps a host or trap error in a "wasm backtrace" context whose
/// text is a header and frame list, not a cause; those are left out.
pub fn cause_chain(err: &wasmtime::Error) -> String {
    let causes: Vec<String> = err
        .chain()
        .filter_map(|cause| {
            let text = cause.to_string();
            let line = text.lines().map(str::trim).find(|l| !l.is_empty())?.to_string();
            (!line.starts_with("error while executing at wasm backtrace")).then_some(line)
        })
        .collect();
    if causes.is_empty() {
        return "unknown error (wasmtime gave no cause)".into();
    }
    causes.join(": ")
}
