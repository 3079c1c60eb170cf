//! `host replay`: load the trace and the policies, replay, print a summary
//! and the decisions per policy, draw the SVG.
//!
//! Output on stdout: for each policy, comment lines starting with `#` (the
//! summary, one line per service) followed by its decisions as JSON lines
//! ([`super::DecisionLine`]), so `grep -v '^#'` leaves pure JSON lines.
//!
//! Strict as the daemon: a `--label` that neither the daemon nor any of the
//! policies reads, or whose value does not parse as a policy declares it,
//! is refused before anything runs ([`super::settings`]); a replay in which
//! a call failed (a trap, settings that do not fit) ends in an error after
//! its output, so the command exits non-zero.

use std::path::Path;

use anyhow::Context as _;

use super::{LoadModel, PolicyRun, ReplayOptions, replay_logging, settings, svg, trace};
use crate::policy::{LogRate, Runtime, RuntimeConfig};

/// What `host replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayRequest<'a> {
    /// The trace file.
    pub trace: &'a Path,
    /// The policy components, in order.
    pub policies: &'a [std::path::PathBuf],
    /// `autoscale.*` labels over the recorded ones.
    pub labels: &'a [(String, String)],
    /// Where to draw the SVG, if anywhere.
    pub svg: Option<&'a Path>,
    /// How the service view follows the replayed replicas.
    pub load: LoadModel,
    /// Print the summaries only.
    pub quiet: bool,
}

/// Run `host replay`; every policy's summary and decisions go to `out`.
pub fn run(
    runtime: &Runtime,
    request: &ReplayRequest<'_>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<PolicyRun>> {
    let trace = trace::read(request.trace)?;
    if trace.torn_lines > 0 {
        tracing::warn!(
            "trace {}: skipped a torn last line (the recording daemon was stopped mid-write)",
            request.trace.display()
        );
    }
    // Full label names, whether given with the prefix or not.
    let labels = settings::without_prefix(request.labels).into_iter().map(|(k, v)| (format!("autoscale.{k}"), v));
    let options = ReplayOptions { labels: labels.collect(), load: request.load, actuator: None };
    // The policies run in a runtime of their own that keeps their log
    // lines, unbudgeted: the replay counts them on the trace's time.
    let rate = runtime.config().log_rate;
    let unbudgeted = LogRate { lines_per_sec: u32::MAX, bytes_per_sec: u32::MAX };
    let runtime = &Runtime::new(RuntimeConfig { log_rate: unbudgeted, ..runtime.config().clone() })?;
    runtime.capture_policy_log();
    let take = || runtime.captured_policy_log();
    let mut policies = Vec::new();
    for path in request.policies {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: not a policy file name (NAME.wasm)", path.display()))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading policy {}", path.display()))?;
        let policy = runtime.load(name, &bytes).with_context(|| format!("loading {}", path.display()))?;
        policies.push((path, policy));
    }
    check_labels(request.labels, policies.iter().map(|(_, p)| p))?;
    let mut runs = Vec::new();
    for (path, mut policy) in policies {
        let run = replay_logging(&trace, &mut policy, &options, Some((&take, rate)));
        summarise(out, &run, path, trace.records.len())?;
        if !request.quiet {
            for (t, line) in &run.log {
                writeln!(out, "#   log at {:.3} s: {line}", *t as f64 / 1e9)?;
            }
            for line in &run.decisions {
                serde_json::to_writer(&mut *out, line)?;
                out.write_all(b"\n")?;
            }
        }
        runs.push(run);
    }
    if let Some(file) = request.svg {
        std::fs::write(file, svg::render(&runs)).with_context(|| format!("writing {}", file.display()))?;
    }
    out.flush()?;
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.errors > 0)
        .map(|r| {
            let first = r.first_error.as_deref().unwrap_or("unknown");
            format!("policy {}: {} of {} records failed (first: {first})", r.policy, r.errors, trace.records.len())
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("\n"));
    }
    Ok(runs)
}

/// Refuse `--label`s no one reads or whose values do not parse: a label
/// is fine when the daemon or one of the policies reads it and every
/// policy that declares it can parse its value.
fn check_labels<'a>(
    given: &[(String, String)],
    policies: impl Iterator<Item = &'a crate::policy::LoadedPolicy> + Clone,
) -> anyhow::Result<()> {
    let given = settings::without_prefix(given);
    let mut problems = Vec::new();
    for label in &given {
        let one = std::slice::from_ref(label);
        let found: Vec<Vec<String>> = policies.clone().map(|p| settings::problems(one, settings::info(p))).collect();
        let unread = found.iter().all(|f| f.iter().any(|p| p.contains("is not known")));
        let bad = found.iter().flatten().filter(|p| !p.contains("is not known"));
        match found.first() {
            // The message with a suggestion, if a policy has one.
            Some(first) if unread => {
                let hinted = found.iter().find(|f| f.iter().any(|p| p.contains("did you mean")));
                problems.extend(hinted.unwrap_or(first).iter().cloned());
            }
            _ => problems.extend(bad.cloned()),
        }
    }
    problems.dedup();
    if problems.is_empty() { Ok(()) } else { anyhow::bail!("--label: {}", problems.join("; ")) }
}

fn summarise(out: &mut dyn std::io::Write, run: &PolicyRun, path: &Path, records: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "# policy {} ({}): {records} events, {} calls, {} decisions, {} errors, replayed in {:.3} s",
        run.policy,
        path.display(),
        run.calls,
        run.decisions.len(),
        run.errors,
        run.elapsed_s
    )?;
    if let Some(err) = &run.first_error {
        writeln!(out, "#   first error: {err}")?;
    }
    for line in &run.settings {
        writeln!(out, "#   {line}")?;
    }
    if run.log_dropped > 0 {
        writeln!(
            out,
            "#   {} log lines dropped (over the policy's log budget, counted on the trace's time)",
            run.log_dropped
        )?;
    }
    if run.in_step > 0 {
        writeln!(
            out,
            "#   as recorded: {} of {} calls made at the live replica count answered as live",
            run.same_as_live, run.in_step
        )?;
        if let Some(first) = &run.first_difference {
            writeln!(out, "#   first different answer: {first}")?;
        }
    }
    for s in &run.services {
        let span_s = s.span_ns.1.saturating_sub(s.span_ns.0) as f64 / 1e9;
        let above = match &s.watched {
            Some((metric, upper)) => {
                format!("{:.1} s above the upper threshold ({metric} mean >= {upper})", s.above_upper_s)
            }
            None => "no upper threshold set".to_string(),
        };
        writeln!(
            out,
            "#   service {}: {} scale actions ({} up, {} down), {:.1} replica-seconds over {span_s:.1} s, {above}, ends at {} replicas",
            s.name,
            s.scale_ups + s.scale_downs,
            s.scale_ups,
            s.scale_downs,
            s.replica_seconds,
            s.replicas.last().map_or(0, |(_, r)| *r)
        )?;
    }
    Ok(())
}
