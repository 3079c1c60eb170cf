//! Record and replay: what-if runs of policies over recorded traffic.
//!
//! - [`trace`]: the trace file (`host --record FILE` appends to it through a
//!   [`Recorder`]) and its reader.
//! - this module: [`replay`] runs one loaded policy over a trace under the
//!   actuator's own guardrails ([`crate::swarm::guardrails::judge`], the
//!   same function, not a copy), with each service's replica count evolving
//!   as the policy's decisions would have made it;
//! - [`svg`]: replicas over time per policy, against the metric;
//! - [`report`]: the `host replay` command (summaries, JSON lines, SVG);
//! - [`synthetic`]: made-up traces for tests and benchmarks.
//!
//! What a replay feeds the policy, per recorded call: the recorded event
//! and service view, and a state whose replica count, scale history and
//! hold come from the replay itself, with the recorded `autoscale.*` labels
//! (overridden by `--label`). Each decision is judged at the time the live
//! policy answered ([`Record::decided_ns`]), the time the actuator counts
//! cooldowns to, so a replay of the recorded policy reaches the live
//! verdicts: the trace holds exactly the calls the daemon made (after its
//! coalescing), and the guardrails are a function of what was recorded.
//! While the replayed replica count equals the recorded one the policy
//! sees exactly what the live daemon passed; when they differ, the
//! [`LoadModel`] says how the service view is adjusted.
//!
//! One lag is modelled from the recording: live, a new replica count
//! reaches the state when Docker's event about the update arrives, a few
//! milliseconds after the write, so calls in between still see the old
//! count (and the actuator refuses what they decide as made on a count
//! that is no longer current). After a scale that the recording also shows,
//! the replay shows the old count for as long as the recorded states do.
//!
//! Invariant: a replay touches no Docker, no kernel and no clock: the
//! trace's timestamps are the only time. Replaying the same trace with the
//! same policy gives the same output.

mod log;
pub mod report;
pub mod settings;
pub mod svg;
pub mod synthetic;
pub mod trace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::model::settings::resolve;
use crate::model::{Action, Decision, EventKind, Metric, SettingValue, State, Unit};
use crate::policy::{LoadedPolicy, LogRate};
use crate::swarm::ActuatorOptions;
use crate::swarm::guardrails::{History, Limits, Request, judge};
use crate::swarm::labels::{self, PREFIX, ServiceConfig};
pub use trace::{Header, Record, Recorder, Trace};

/// How the service view changes when the replayed replica count differs
/// from the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoadModel {
    /// The service's total load is as recorded and spreads evenly over its
    /// replicas: per-replica figures (mean, min, max, the event's value) are
    /// scaled by recorded / replayed replicas; sums stay as recorded. The
    /// model the Kubernetes HPA's proportional rule assumes.
    #[default]
    Spread,
    /// The service view is passed as recorded, whatever the replica count.
    Recorded,
}

/// What a replay runs with besides the trace and the policy.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// `autoscale.*` labels (full names) set over the recorded ones, in order.
    pub labels: Vec<(String, String)>,
    /// How the service view follows the replayed replica count.
    pub load: LoadModel,
    /// Cooldown defaults and decision age; `None`: the recording daemon's.
    pub actuator: Option<ActuatorOptions>,
}

/// One decision of a policy during a replay: a JSON line of the output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DecisionLine {
    /// The policy (file stem).
    pub policy: String,
    /// The service's name.
    pub service: String,
    /// Seconds since the first record of the trace.
    pub at_s: f64,
    /// The triggering event's kernel timestamp (identifies it in the trace).
    pub event_timestamp_ns: u64,
    /// The triggering event's container.
    pub container_id: String,
    /// The triggering event in words (`cpu 0.930 crossed up 0.8`).
    pub trigger: String,
    /// What the policy returned.
    pub decision: Decision,
    /// `applied`, `held` or `skipped`.
    pub outcome: &'static str,
    /// Replicas when the policy decided.
    pub from: u32,
    /// Replicas after the decision.
    pub to: u32,
    /// What the guardrails changed, one phrase each.
    pub guardrails: Vec<String>,
    /// Why it was not applied.
    pub skip: Option<String>,
}

/// One service during one policy's replay.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceRun {
    /// Swarm service name.
    pub name: String,
    /// Replicas over time: (ns since the trace start, replicas from then on).
    pub replicas: Vec<(u64, u32)>,
    /// The recorded replicas over time, the same way.
    pub recorded: Vec<(u64, u32)>,
    /// The first metric with an upper threshold: its name and threshold.
    pub watched: Option<(String, f64)>,
    /// The metric drawn: the watched one, else the first the policy has a
    /// numeric setting on.
    pub drawn: Option<String>,
    /// That metric's service mean over time, as replayed (ns, value).
    pub metric: Vec<(u64, f64)>,
    /// That metric's unit, as the trace recorded it.
    pub unit: Option<Unit>,
    /// The policy's own settings on that metric (`cpu.target`), as it got
    /// them (labels or defaults): the thresholds it decides on.
    pub declared: Vec<(String, f64)>,
    /// Scale-ups applied.
    pub scale_ups: u32,
    /// Scale-downs applied.
    pub scale_downs: u32,
    /// Integral of the replica count over the service's recorded span, s.
    pub replica_seconds: f64,
    /// Time any metric's service mean was at or above its upper threshold, s.
    pub above_upper_s: f64,
    /// First and last record time, ns since the trace start.
    pub span_ns: (u64, u64),
}

/// The result of replaying a trace with one policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyRun {
    /// The policy (file stem).
    pub policy: String,
    /// Every service in the trace, in order of first appearance.
    pub services: Vec<ServiceRun>,
    /// Every decision, in trace order.
    pub decisions: Vec<DecisionLine>,
    /// `decide` calls made.
    pub calls: u64,
    /// Records skipped because the policy failed or the labels did not fit.
    pub errors: u64,
    /// The first such failure, for the report.
    pub first_error: Option<String>,
    /// Calls of the policy the trace was recorded with, made at the
    /// recorded replica count with the recorded labels: the replay must
    /// answer them as the live policy did.
    pub in_step: u64,
    /// Of those, the calls answered exactly as live (target or hold, and reason).
    pub same_as_live: u64,
    /// The first call answered otherwise than live, for the report.
    pub first_difference: Option<String>,
    /// Wall-clock time spent in the replay, s.
    pub elapsed_s: f64,
    /// What the policy got from each service's labels, one line per
    /// service and label set ([`settings::effective`]), in trace order.
    pub settings: Vec<String>,
    /// The policy's log lines kept, (ns since the trace start, line), when
    /// the replay was given them ([`replay_logging`]).
    pub log: Vec<(u64, String)>,
    /// The policy's log lines dropped over its log budget, counted on the
    /// trace's time ([`log::TraceLog`]) and on the runtime's.
    pub log_dropped: u64,
}

/// Per-service bookkeeping while replaying.
struct Sim {
    index: usize,
    replicas: u32,
    history: History,
    /// Recorded labels (without the prefix) the cached values were made from.
    raw: Vec<(String, String)>,
    /// Labels after `--label`, parsed, with the policy's typed settings;
    /// `Err` when they do not fit (the message); `None` before the first.
    bound: Option<Result<Bound, String>>,
    last_ns: u64,
    above: bool,
    last_recorded: u32,
    /// The last scale applied by the replay, (from, ns), while the recorded
    /// states may not show it yet: live, a new count reaches the state when
    /// Docker's event arrives, a few ms to a second later.
    applied: Option<(u32, u64)>,
}

struct Bound {
    config: ServiceConfig,
    limits: Limits,
    typed: Arc<[Option<SettingValue>]>,
}

/// Replay `trace` with `policy`. Failures of single calls are counted in
/// the result, not returned: a replay reports what the policy would have
/// done, errors included.
pub fn replay(trace: &Trace, policy: &mut LoadedPolicy, options: &ReplayOptions) -> PolicyRun {
    replay_logging(trace, policy, options, None)
}

/// [`replay`], with the policy's log lines: after each call `logged` gives
/// what the policy logged during it (a runtime that captures its policies'
/// log, without a budget of its own), and they are kept or dropped by
/// `rate` counted on the trace's time.
pub fn replay_logging(
    trace: &Trace,
    policy: &mut LoadedPolicy,
    options: &ReplayOptions,
    logged: Option<(&dyn Fn() -> Vec<String>, LogRate)>,
) -> PolicyRun {
    let mut log = logged.map(|(_, rate)| log::TraceLog::new(rate));
    let started = Instant::now();
    let actuator = options.actuator.clone().unwrap_or_else(|| trace.header.actuator_options());
    let origin = trace.records.first().map_or(0, |r| r.state.now_ns);
    let mut run = PolicyRun { policy: policy.name().to_string(), ..PolicyRun::default() };
    let mut sims: HashMap<String, Sim> = HashMap::new();
    for record in &trace.records {
        let (event, recorded) = (&record.event, &record.state);
        let now = recorded.now_ns;
        let t = now.saturating_sub(origin);
        let sim = sims.entry(event.service_id.clone()).or_insert_with(|| {
            run.services.push(ServiceRun {
                name: event.service_name.clone(),
                replicas: vec![(t, recorded.current_replicas)],
                span_ns: (t, t),
                ..ServiceRun::default()
            });
            Sim {
                index: run.services.len() - 1,
                replicas: recorded.current_replicas,
                // What the actuator knew before the recording started
                // (Swarm's record of the last scale, a hold in force).
                history: History {
                    last_up_ns: recorded.last_scale_up_ns,
                    last_down_ns: recorded.last_scale_down_ns,
                    hold_until_ns: recorded.hold_until_ns,
                    ..History::default()
                },
                raw: Vec::new(),
                bound: None,
                last_ns: now,
                above: false,
                last_recorded: 0,
                applied: None,
            }
        });
        let service = &mut run.services[sim.index];
        let dt = now.saturating_sub(sim.last_ns) as f64 / 1e9;
        service.replica_seconds += dt * f64::from(sim.replicas);
        if sim.above {
            service.above_upper_s += dt;
        }
        service.span_ns.1 = t;
        sim.last_ns = now;
        if recorded.current_replicas != sim.last_recorded {
            service.recorded.push((t, recorded.current_replicas));
            sim.last_recorded = recorded.current_replicas;
        }
        if sim.bound.is_none() || sim.raw != record.labels {
            sim.raw = record.labels.clone();
            sim.bound = Some(bind(&event.service_name, &record.labels, options, &actuator, policy));
            let line = format!("service {}: {}", event.service_name, effective(&record.labels, options, policy));
            if !run.settings.contains(&line) {
                run.settings.push(line);
            }
        }
        let bound = match &sim.bound {
            Some(Ok(bound)) => bound,
            None => unreachable!("bound just above"),
            Some(Err(message)) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| message.clone());
                continue;
            }
        };
        // Right after a scale, the live state still showed the old count
        // until Docker's event arrived; show the policy what live showed,
        // and let the guardrails see the new count, as the actuator does.
        let seen = match sim.applied {
            Some((from, at)) if recorded.current_replicas == from && now.saturating_sub(at) < LAG_NS => from,
            _ => {
                sim.applied = None;
                sim.replicas
            }
        };
        // Load model: per-replica figures follow the replayed count.
        let ratio = match options.load {
            LoadModel::Spread if seen > 0 && seen != recorded.current_replicas => {
                f64::from(recorded.current_replicas) / f64::from(seen)
            }
            _ => 1.0,
        };
        let mut metrics = recorded.metrics.clone();
        let mut event = event.clone();
        if ratio != 1.0 {
            for aggregate in &mut metrics {
                for stats in std::iter::once(&mut aggregate.value).chain(aggregate.of_limit.as_mut()) {
                    stats.mean *= ratio;
                    stats.min *= ratio;
                    stats.max *= ratio;
                }
            }
            event.value *= ratio;
        }
        let watched = watched_metric(&bound.config);
        if service.watched.is_none() {
            service.watched = watched.as_ref().map(|(m, upper)| (m.name().to_string(), *upper));
        }
        // The metric drawn: the watched one, else the first the policy has
        // a numeric setting on (`cpu.target`).
        let drawn = watched.map(|(m, _)| m).or_else(|| declared_metric(policy, &bound.typed));
        if let Some(metric) = &drawn {
            if service.drawn.is_none() {
                service.drawn = Some(metric.name().to_string());
                service.declared = declared_on(metric, policy, &bound.typed);
            }
            let aggregate = metrics.iter().find(|a| &a.metric == metric);
            service.metric.push((t, aggregate.map_or(0.0, |a| a.value.mean)));
            if service.unit.is_none() {
                service.unit = aggregate.map(|a| a.unit.clone());
            }
        }
        sim.above = above_upper(&bound.config, &metrics);
        let state = State {
            service_id: recorded.service_id.clone(),
            service_name: recorded.service_name.clone(),
            settings: bound.typed.clone(),
            current_replicas: seen,
            min_replicas: bound.config.min,
            max_replicas: bound.config.max,
            now_ns: now,
            last_scale_up_ns: sim.history.last_up_ns,
            last_scale_down_ns: sim.history.last_down_ns,
            hold_until_ns: sim.history.hold_until_ns.filter(|until| *until > now),
            metrics,
        };
        run.calls += 1;
        let answer = policy.decide(&event, &state);
        if let (Some((take, _)), Some(log)) = (logged, log.as_mut()) {
            for line in take() {
                log.push(t, line);
            }
        }
        // The recorded policy, at the recorded count: it must answer as live.
        if record.policy == run.policy && seen == recorded.current_replicas && options.labels.is_empty() {
            run.in_step += 1;
            if answer.as_ref().ok().and_then(Option::as_ref) == record.decision.as_ref() {
                run.same_as_live += 1;
            } else if run.first_difference.is_none() {
                run.first_difference = Some(format!(
                    "{} at {:.3} s: live {}, replay {}",
                    event.service_name,
                    t as f64 / 1e9,
                    serde_json::to_string(&record.decision).unwrap_or_default(),
                    answer.as_ref().map_or_else(ToString::to_string, |d| serde_json::to_string(d).unwrap_or_default())
                ));
            }
        }
        let decision = match answer {
            Ok(Some(decision)) => decision,
            Ok(None) => {
                // Kept the count: the stabilisation window counts it, as live.
                sim.history.asked(record.decided_ns, seen);
                continue;
            }
            Err(err) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| err.to_string());
                continue;
            }
        };
        let now = record.decided_ns;
        let from = seen;
        let mut line = DecisionLine {
            policy: run.policy.clone(),
            service: event.service_name.clone(),
            at_s: t as f64 / 1e9,
            event_timestamp_ns: event.timestamp_ns,
            container_id: event.container_id.clone(),
            trigger: trigger(&event),
            decision: decision.clone(),
            outcome: "held",
            from,
            to: from,
            guardrails: Vec::new(),
            skip: None,
        };
        match decision.action {
            Action::Hold(for_ns) => sim.history.hold_until_ns = Some(now.saturating_add(for_ns)),
            Action::Scale(asked) => {
                let request = Request { policy: run.policy.clone(), event, decision, seen: from, decided_ns: now };
                let verdict =
                    judge(&request, asked, &bound.limits, sim.replicas, &sim.history, now, actuator.max_decision_age);
                sim.history.asked(now, asked.clamp(bound.limits.min, bound.limits.max));
                line.guardrails = verdict.adjustments.iter().map(ToString::to_string).collect();
                match verdict.skip {
                    Some(skip) => {
                        line.outcome = "skipped";
                        line.skip = Some(skip.to_string());
                    }
                    None => {
                        line.outcome = "applied";
                        line.to = verdict.target;
                        sim.history.record(sim.replicas, verdict.target, now);
                        sim.applied = Some((sim.replicas, now));
                        let from = sim.replicas;
                        sim.replicas = verdict.target;
                        if verdict.target > from {
                            service.scale_ups += 1;
                        } else {
                            service.scale_downs += 1;
                        }
                        service.replicas.push((t, verdict.target));
                    }
                }
            }
        }
        run.decisions.push(line);
    }
    run.elapsed_s = started.elapsed().as_secs_f64();
    run.log_dropped = policy.status().log_dropped();
    if let Some(log) = log {
        run.log_dropped += log.dropped;
        run.log = log.kept;
    }
    run
}

/// Longest time a recorded state may lag behind a scale the replay applied.
const LAG_NS: u64 = 2_000_000_000;

/// The labels of a service after `--label`, checked as the daemon checks
/// them, and the policy's settings resolved from them.
fn bind(
    service: &str,
    recorded: &[(String, String)],
    options: &ReplayOptions,
    actuator: &ActuatorOptions,
    policy: &LoadedPolicy,
) -> Result<Bound, String> {
    let mut labels: HashMap<String, String> =
        recorded.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.clone())).collect();
    for (key, value) in &options.labels {
        labels.insert(key.clone(), value.clone());
    }
    let config = match labels::parse(service, &labels) {
        Ok(Some(config)) => config,
        Ok(None) => return Err(format!("service {service}: autoscale.enable is not true")),
        Err(errors) => return Err(errors.to_string()),
    };
    let typed = resolve(policy.settings(), &config.settings).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("service {service}: settings do not fit policy {}: {}", policy.name(), text.join("; "))
    })?;
    let limits = Limits::new(&config, actuator);
    Ok(Bound { config, limits, typed: Arc::from(typed) })
}

/// What `policy` gets from a service's recorded labels and `--label`.
fn effective(recorded: &[(String, String)], options: &ReplayOptions, policy: &LoadedPolicy) -> String {
    let recorded = recorded.iter().map(|(k, v)| (k.clone(), v.clone(), settings::Source::Recorded));
    let given = settings::without_prefix(&options.labels).into_iter().map(|(k, v)| (k, v, settings::Source::Given));
    let labels: Vec<_> = recorded.chain(given).collect();
    settings::effective(&labels, settings::info(policy))
}

/// The first metric of the table with an upper threshold.
fn watched_metric(config: &ServiceConfig) -> Option<(Metric, f64)> {
    config.thresholds.bands().find_map(|(def, band)| band.upper.map(|u| (def.metric(), u)))
}

/// The policy's numeric settings named after a metric (`cpu.target`), with
/// the values it got: (metric, setting name, value), in declared order.
fn declared_numbers(policy: &LoadedPolicy, typed: &[Option<SettingValue>]) -> Vec<(Metric, String, f64)> {
    policy
        .settings()
        .iter()
        .zip(typed)
        .filter_map(|(spec, value)| {
            let Some(SettingValue::Number(v)) = value else { return None };
            let (metric, _) = spec.name.split_once('.')?;
            let metric = Metric::named(metric);
            metric.def().is_some().then(|| (metric, spec.name.clone(), *v))
        })
        .collect()
}

/// Without a daemon threshold: the first metric the policy has a numeric
/// setting on.
fn declared_metric(policy: &LoadedPolicy, typed: &[Option<SettingValue>]) -> Option<Metric> {
    declared_numbers(policy, typed).into_iter().next().map(|(metric, _, _)| metric)
}

/// The policy's settings on `metric`, with their values.
fn declared_on(metric: &Metric, policy: &LoadedPolicy, typed: &[Option<SettingValue>]) -> Vec<(String, f64)> {
    declared_numbers(policy, typed).into_iter().filter(|(m, _, _)| m == metric).map(|(_, n, v)| (n, v)).collect()
}

/// Whether any metric's service aggregate (the table's statistic for it)
/// is at or above its upper threshold.
fn above_upper(config: &ServiceConfig, metrics: &[crate::model::Aggregate]) -> bool {
    let t = &config.thresholds;
    metrics.iter().filter(|a| a.reporting > 0).any(|a| {
        let Some(def) = a.metric.def() else { return false };
        t.band_of(def).upper.is_some_and(|upper| def.aggregation.of(&a.value) >= upper)
    })
}

/// An event in words, as the audit log says it.
fn trigger(event: &crate::model::Event) -> String {
    let unit = match &event.unit {
        Unit::Bytes => " bytes",
        _ => "",
    };
    match event.kind {
        EventKind::Crossing(c) => {
            let way = if c.direction == crate::model::Direction::Up { "up" } else { "down" };
            format!("{} {:.3}{unit} crossed {way} {}", event.metric, event.value, c.threshold)
        }
        EventKind::Sample => format!("{} {:.3}{unit} sample", event.metric, event.value),
    }
}

/// Parse `autoscale.KEY=VALUE` (the form `--label` takes).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not autoscale.KEY=VALUE"))?;
    if !key.starts_with(PREFIX) || key.len() == PREFIX.len() {
        return Err(format!("{key:?} is not an autoscale.* label (autoscale.KEY=VALUE)"));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_the_autoscale_form() {
        assert_eq!(parse_label("autoscale.cpu.upper=0.7"), Ok(("autoscale.cpu.upper".into(), "0.7".into())));
        assert_eq!(parse_label("autoscale.max="), Ok(("autoscale.max".into(), String::new())));
        assert!(parse_label("cpu.upper=0.7").expect_err("no prefix").contains("autoscale.KEY=VALUE"));
        assert!(parse_label("autoscale.max").is_err());
        assert!(parse_label("autoscale.=3").is_err());
    }

    #[test]
    fn the_watched_metric_is_the_first_with_an_upper() {
        let labels: HashMap<String, String> = [
            ("autoscale.enable", "true"),
            ("autoscale.policy", "p"),
            ("autoscale.min", "1"),
            ("autoscale.max", "4"),
            ("autoscale.connections.upper", "40"),
            ("autoscale.cpu.lower", "0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = labels::parse("web", &labels).expect("labels").expect("enabled");
        assert_eq!(watched_metric(&config), Some((Metric::CONNECTIONS, 40.0)));
        let hot = State::replicas(2, 1, 4).with_metric(Metric::CONNECTIONS, Unit::Count, &[50.0, 40.0], 0);
        assert!(above_upper(&config, &hot.metrics));
        let cool = State::replicas(2, 1, 4).with_metric(Metric::CONNECTIONS, Unit::Count, &[50.0, 10.0], 0);
        assert!(!above_upper(&config, &cool.metrics), "the mean decides, not one replica");
    }
}
