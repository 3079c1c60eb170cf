//! `host policy check` and `host policy run`: test a policy component
//! without a cluster. Both run synchronously, outside any async runtime.

use std::path::Path;

use anyhow::{Context, bail};

use crate::model::{Event, State};
use crate::policy::{CONTRACT_VERSION, Runtime, SUPPORTED_VERSIONS, WORLD};

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
                "host-contract-version": CONTRACT_VERSION, "component": inspection})
        );
        return Ok(ok);
    }
    match &runnable {
        Ok(()) => println!("{}: OK, a component of world {WORLD}", file.display()),
        Err(err) => println!("{}: NOT RUNNABLE\n  {err}", file.display()),
    }
    match &inspection.contract_version {
        Some(v) if v == CONTRACT_VERSION => println!("  contract version: {v} (current)"),
        Some(v) if SUPPORTED_VERSIONS.contains(&v.as_str()) => {
            println!("  contract version: {v} (supported; the current one is {CONTRACT_VERSION})")
        }
        Some(v) => println!("  contract version: {v} (this daemon runs {})", SUPPORTED_VERSIONS.join(", ")),
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
    println!("  imports:");
    for import in &inspection.imports {
        println!("    {import}");
    }
    println!("  exports:");
    for export in &inspection.exports {
        println!("    {export}");
    }
    Ok(ok)
}

/// `host policy run FILE --event JSON --state JSON`: the decision as JSON.
pub fn run(runtime: &Runtime, file: &Path, event: &str, state: &str) -> anyhow::Result<String> {
    let event: Event = serde_json::from_str(&read_arg(event)?)
        .context("--event is not a valid event (fields use the WIT names, e.g. \"container-id\")")?;
    let state: State = serde_json::from_str(&read_arg(state)?)
        .context("--state is not a valid state (fields use the WIT names, e.g. \"current-replicas\")")?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut policy = runtime.load(&policy_name(file), &bytes)?;
    let mut state = state;
    if state.now_ns == 0 {
        state.now_ns = event.timestamp_ns;
    }
    let decision = policy.decide(&event, &state)?;
    Ok(serde_json::to_string(&decision)?)
}

/// An argument that is either inline JSON or `@path`.
fn read_arg(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None if arg.trim().is_empty() => bail!("empty JSON argument"),
        None => Ok(arg.to_string()),
    }
}
