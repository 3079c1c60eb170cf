//! `host policy check` and `host policy run`: test a policy component
//! without a cluster. Both run synchronously, outside any async runtime.

use std::path::Path;

use anyhow::{Context, bail};

use crate::model::settings::closest;
use crate::model::{Event, State};
use crate::policy::{CONTRACT_VERSION, Runtime, WORLD};
use crate::replay::settings;

/// The policy name for a file: its stem.
pub fn policy_name(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "policy".into())
}

/// `host policy check FILE`: print a report; `Ok(true)` if the file can run.
pub fn check(runtime: &Runtime, file: &Path, json: bool) -> anyhow::Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = policy_name(file);
    let (inspection, runnable) = match runtime.inspect(&name, &bytes) {
        Ok(found) => found,
        Err(err) => {
            if json {
                println!("{}", serde_json::json!({"file": file, "ok": false, "error": err.to_string()}));
            } else {
                println!("{}: NOT RUNNABLE\n  {err}", file.display());
            }
            return Ok(false);
        }
    };
    let ok = runnable.is_ok();
    if json {
        let error = runnable.as_ref().err().map(|e| e.to_string());
        println!(
            "{}",
            serde_json::json!({"file": file, "ok": ok, "error": error, "world": WORLD,
                "host-contract-version": CONTRACT_VERSION, "component": inspection,
                "import-access": inspection.imports.iter().map(|i| {
                    let (allowed, why) = import_access(i);
                    serde_json::json!({"import": i, "allowed": allowed, "why": why})
                }).collect::<Vec<_>>()})
        );
        return Ok(ok);
    }
    match &runnable {
        Ok(()) => println!("{}: OK, a component of world {WORLD}", file.display()),
        Err(err) => println!("{}: NOT RUNNABLE\n  {err}", file.display()),
    }
    match &inspection.contract_version {
        Some(v) if v == CONTRACT_VERSION => println!("  contract version: {v} (current)"),
        Some(v) => println!("  contract version: {v} (this daemon runs {CONTRACT_VERSION})"),
        None => println!("  contract version: unknown (imports nothing from autoscaler:policy)"),
    }
    if !inspection.settings.is_empty() {
        println!("  settings (labels autoscale.NAME on a bound service):");
        for spec in &inspection.settings {
            let need = match (&spec.default, spec.required) {
                (Some(default), _) => format!("default {default}"),
                (None, true) => "required".to_string(),
                (None, false) => "optional".to_string(),
            };
            println!("    {:<22} {:<9} {:<14} {}", spec.name, spec.kind.name(), need, spec.doc);
        }
    }
    println!("  sha256: {}", inspection.sha256);
    println!("  code: {} in {:.1} ms", inspection.origin, inspection.load_ms);
    println!("  imports (what the sandbox gives each):");
    let width = inspection.imports.iter().map(String::len).max().unwrap_or(0);
    for import in &inspection.imports {
        println!("    {import:<width$}  {}", import_access(import).1);
    }
    let denied = inspection.imports.iter().filter(|i| !import_access(i).0).count();
    if denied > 0 {
        println!("  {denied} import(s) denied or refused (see above): nothing behind them reaches the host");
    }
    println!("  exports:");
    for export in &inspection.exports {
        println!("    {export}");
    }
    Ok(ok)
}

/// Fields of an event: (WIT name, required).
const EVENT_FIELDS: &[(&str, bool)] = &[
    ("metric", true),
    ("value", true),
    ("unit", true),
    ("kind", true),
    ("container-id", true),
    ("service-id", true),
    ("service-name", true),
    ("timestamp-ns", true),
];

/// Fields of a state: (WIT name, required).
const STATE_FIELDS: &[(&str, bool)] = &[
    ("service-id", false),
    ("service-name", false),
    ("settings", false),
    ("labels", false),
    ("current-replicas", true),
    ("min-replicas", true),
    ("max-replicas", true),
    ("now-ns", false),
    ("last-scale-up-ns", false),
    ("last-scale-down-ns", false),
    ("hold-until-ns", false),
    ("metrics", false),
];

/// Every unknown and every missing top-level field of `value`, at once:
/// serde stops at the first.
fn field_problems(what: &str, value: &serde_json::Value, fields: &[(&str, bool)]) -> Vec<String> {
    let Some(object) = value.as_object() else {
        return vec![format!("{what} is not a JSON object")];
    };
    let names = fields.iter().map(|(name, _)| *name);
    let mut problems = Vec::new();
    for key in object.keys() {
        if !fields.iter().any(|(name, _)| name == key) {
            let hint =
                closest(key, names.clone()).map(|near| format!(" (did you mean \"{near}\"?)")).unwrap_or_default();
            problems.push(format!("{what} has an unknown field \"{key}\"{hint}"));
        }
    }
    let missing: Vec<&str> =
        fields.iter().filter(|(name, required)| *required && !object.contains_key(*name)).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{what} is missing {}",
            missing.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
        ));
    }
    problems
}

/// `host policy run FILE --event JSON --state JSON`: the decision as JSON,
/// and what the policy logged during the call (printed to stderr; when it
/// returns no decision, that is usually why).
///
/// Besides the WIT's fields, the state may give the service's `labels`
/// (`{"cpu.upper": "0.8"}`, without the `autoscale.` prefix) instead of
/// `settings`: they are parsed against the policy's declaration as the
/// daemon parses a service's labels, and a name neither the daemon nor the
/// policy reads is refused with the closest one ([`settings::problems`]);
/// the settings the policy got are printed to stderr. A state without `service-id` and
/// `service-name` gets the event's.
pub fn run(runtime: &Runtime, file: &Path, event: &str, state: &str) -> anyhow::Result<String> {
    let event: serde_json::Value = serde_json::from_str(&read_arg(event)?)
        .context("--event is not a valid event: not JSON (fields use the WIT names, e.g. \"container-id\")")?;
    let state: serde_json::Value = serde_json::from_str(&read_arg(state)?)
        .context("--state is not a valid state: not JSON (fields use the WIT names, e.g. \"current-replicas\")")?;
    let mut problems = field_problems("--event", &event, EVENT_FIELDS);
    problems.extend(field_problems("--state", &state, STATE_FIELDS));
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let mut state = state;
    let labels = match state.as_object_mut().and_then(|o| o.remove("labels")) {
        None => None,
        Some(labels) => Some(read_labels(labels)?),
    };
    if labels.is_some() && state.get("settings").is_some() {
        bail!("--state has both \"labels\" and \"settings\"; give one (labels are parsed into settings)");
    }
    let event: Event = serde_json::from_value(event).context("--event is not a valid event")?;
    let mut state: State = serde_json::from_value(state).context("--state is not a valid state")?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    runtime.capture_policy_log();
    let mut policy = runtime.load(&policy_name(file), &bytes)?;
    if let Some(labels) = labels {
        // Judged as the daemon judges a service's labels, and refused where
        // the daemon would only warn: a label typed here is meant to count.
        let problems = settings::problems(&labels, settings::info(&policy));
        if !problems.is_empty() {
            bail!("--state labels: {}", problems.join("; "));
        }
        state.settings = policy.resolve(&labels)?;
        let given: Vec<_> = labels.into_iter().map(|(k, v)| (k, v, settings::Source::Given)).collect();
        eprintln!("{}", settings::effective(&given, settings::info(&policy)));
    } else if state.settings.is_empty() && !policy.settings().is_empty() {
        // No labels at all: the declared defaults (and a clear message for
        // a required setting).
        state.settings = policy.resolve::<&str, &str>(&[])?;
    }
    if state.service_id.is_empty() {
        state.service_id.clone_from(&event.service_id);
    }
    if state.service_name.is_empty() {
        state.service_name.clone_from(&event.service_name);
    }
    if state.now_ns == 0 {
        state.now_ns = event.timestamp_ns;
    }
    let decision = policy.decide(&event, &state);
    let logged = runtime.captured_policy_log();
    let decision = decision?;
    match (&decision, logged.is_empty()) {
        (None, true) => eprintln!("the policy returned no decision and logged nothing"),
        (None, false) => eprintln!("the policy returned no decision; it logged:"),
        (Some(_), false) => eprintln!("the policy logged:"),
        (Some(_), true) => {}
    }
    for line in &logged {
        eprintln!("  {line}");
    }
    Ok(serde_json::to_string(&decision)?)
}

/// What the sandbox does with an import, in words (see `policy/sandbox.rs`:
/// deny-by-default WASI, no preopened directory, no environment, no
/// network). `(allowed, why)`.
pub fn import_access(import: &str) -> (bool, &'static str) {
    let interface = import.split('@').next().unwrap_or(import);
    match interface {
        i if i.starts_with("autoscaler:policy/") => (true, "the policy contract"),
        i if i.starts_with("wasi:filesystem/") => {
            (false, "denied: no directory is opened to policies, every open fails")
        }
        i if i.starts_with("wasi:sockets/") => (false, "denied: no network, every socket and name lookup fails"),
        "wasi:cli/environment" => (false, "denied: empty, no environment variables or arguments"),
        "wasi:cli/stdin" => (false, "denied: stdin is closed"),
        "wasi:cli/stdout" | "wasi:cli/stderr" => (true, "to the policy log, rate-limited and bounded"),
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            (true, "at most 64 KiB per request")
        }
        i if i.starts_with("wasi:clocks/") => (true, "waits end at the call's time limit"),
        i if i.starts_with("wasi:io/") => (true, "waits end at the call's time limit"),
        i if i.starts_with("wasi:cli/") => (true, "harmless (exit, terminal queries)"),
        _ => (false, "refused: not provided by this daemon, the component cannot be loaded"),
    }
}

/// The `labels` of a `--state`: an object of strings, or a list of
/// `[name, value]` pairs; names without the `autoscale.` prefix.
fn read_labels(labels: serde_json::Value) -> anyhow::Result<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = match labels {
        // A number or flag written without quotes reads as its text.
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(v) => (k, v),
                other => (k, other.to_string()),
            })
            .collect(),
        other => serde_json::from_value(other).context(
            "--state \"labels\" is neither an object ({\"cpu.upper\": \"0.8\"}) nor a list of [name, value]",
        )?,
    };
    Ok(settings::without_prefix(&pairs))
}

/// An argument that is either inline JSON or `@path`.
fn read_arg(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None if arg.trim().is_empty() => bail!("empty JSON argument"),
        None => Ok(arg.to_string()),
    }
}
