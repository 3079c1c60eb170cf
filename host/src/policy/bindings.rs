//! The only place `bindgen!` runs: host-side bindings of the contract
//! (`wit/policy.wit`, `autoscaler:policy@1.0.0`), plus conversions between
//! the daemon's [`crate::model`] types and the generated ones. Everything
//! else in the crate uses `crate::model`.
//!
//! A call lowers strings and lists into the component (the service's id and
//! name, the metric names, the settings and the service view); [`Args`]
//! keeps the converted arguments of the last call, so the next reuses
//! their buffers instead of allocating them anew.

use crate::model;

/// Bindings of contract 1.0.0.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
    });
}

use v1::autoscaler::policy::types as wit;

/// The world of the contract, for messages and `policy check`.
pub const WORLD: &str = "autoscaler:policy/policy";
/// The contract version these bindings implement.
pub const CONTRACT_VERSION: &str = "1.0.0";
/// Prefix of every import name this package defines.
pub const PACKAGE_PREFIX: &str = "autoscaler:policy/";

/// Whether a component built for contract `version` (as its imports name
/// it) runs on these bindings: the same major version, and not newer than
/// this one. 0.x versions were drafts with no compatibility between them.
pub fn runs(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(version), parse(CONTRACT_VERSION)) {
        (Some((major, minor)), Some((ours, our_minor))) => major == ours && major > 0 && minor <= our_minor,
        _ => false,
    }
}

fn unit_into(unit: &model::Unit, out: &mut wit::Unit) {
    *out = match unit {
        model::Unit::FractionOfLimit => wit::Unit::FractionOfLimit,
        model::Unit::Cores => wit::Unit::Cores,
        model::Unit::Bytes => wit::Unit::Bytes,
        model::Unit::Count => wit::Unit::Count,
        model::Unit::PerSecond => wit::Unit::PerSecond,
        model::Unit::Seconds => wit::Unit::Seconds,
        model::Unit::Other(name) => wit::Unit::Other(name.clone()),
    };
}

fn kind(kind: &model::EventKind) -> wit::EventKind {
    match kind {
        model::EventKind::Sample => wit::EventKind::Sample,
        model::EventKind::Crossing(c) => wit::EventKind::Crossing(wit::Crossing {
            threshold: c.threshold,
            direction: match c.direction {
                model::Direction::Up => wit::Direction::Up,
                model::Direction::Down => wit::Direction::Down,
            },
        }),
    }
}

fn stats(s: &model::Stats) -> wit::Stats {
    wit::Stats { mean: s.mean, min: s.min, max: s.max, sum: s.sum }
}

/// `a` into `out`, reusing `out`'s metric name buffer.
fn aggregate_into(a: &model::Aggregate, out: &mut wit::Aggregate) {
    set_text(&mut out.metric, a.metric.name());
    unit_into(&a.unit, &mut out.unit);
    out.reporting = a.reporting;
    out.warming = a.warming;
    out.value = stats(&a.value);
    out.of_limit = a.of_limit.as_ref().map(stats);
    out.window_ns = a.window_ns;
}

fn aggregate(a: &model::Aggregate) -> wit::Aggregate {
    let mut out = wit::Aggregate {
        metric: String::new(),
        unit: wit::Unit::Count,
        reporting: 0,
        warming: 0,
        value: wit::Stats { mean: 0.0, min: 0.0, max: 0.0, sum: 0.0 },
        of_limit: None,
        window_ns: 0,
    };
    aggregate_into(a, &mut out);
    out
}

/// `text` into `out`, reusing its buffer.
fn set_text(out: &mut String, text: &str) {
    if out != text {
        out.clear();
        out.push_str(text);
    }
}

fn setting(value: &Option<model::SettingValue>) -> Option<wit::SettingValue> {
    value.as_ref().map(|value| match value {
        model::SettingValue::Number(n) => wit::SettingValue::Number(*n),
        model::SettingValue::DurationNs(ns) => wit::SettingValue::DurationNs(*ns),
        model::SettingValue::Flag(b) => wit::SettingValue::Flag(*b),
        model::SettingValue::Text(t) => wit::SettingValue::Text(t.clone()),
    })
}

impl From<wit::Decision> for model::Decision {
    fn from(decision: wit::Decision) -> Self {
        match decision.action {
            wit::Action::Scale(n) => model::Decision::scale(n, decision.reason),
            wit::Action::Hold(ns) => model::Decision::hold(ns, decision.reason),
        }
    }
}

impl From<wit::SettingSpec> for model::SettingSpec {
    fn from(spec: wit::SettingSpec) -> Self {
        model::SettingSpec {
            name: spec.name,
            kind: match spec.kind {
                wit::SettingType::Number => model::SettingType::Number,
                wit::SettingType::Quantity => model::SettingType::Quantity,
                wit::SettingType::Duration => model::SettingType::Duration,
                wit::SettingType::Flag => model::SettingType::Flag,
                wit::SettingType::Text => model::SettingType::Text,
            },
            required: spec.required,
            default: spec.default,
            doc: spec.doc,
        }
    }
}

/// The replica as the contract names it: the first 16 hex digits of the
/// container id as a number, the first digit highest. An id with fewer
/// (hand-written ids in tests and `host policy run`) is read up to its
/// first character that is not a hex digit and padded with zeros, so that
/// the policy's `{:016x}` still starts with it.
pub fn container(id: &str) -> u64 {
    let mut number = 0u64;
    let mut digits = 0;
    // Bytes, not chars: `char::to_digit` on a decoded char made this a
    // third of converting an event.
    for &byte in id.as_bytes().iter().take(16) {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => break,
        };
        number = number << 4 | u64::from(digit);
        digits += 1;
    }
    number.checked_shl(4 * (16 - digits)).unwrap_or(0)
}

/// The arguments of `decide`, kept from one call to the next so that
/// converting the daemon's event and state reuses their strings and lists.
/// The settings are converted again only when the state brings another
/// list than the last call's (compared by pointer: the daemon shares one
/// list per service and policy version).
#[derive(Default)]
pub struct Args {
    converted: Option<(wit::Event, wit::State)>,
    /// The settings list the converted `settings` came from.
    settings_of: Option<model::Settings>,
}

impl Args {
    /// Fill the arguments from `event` and `state` and lend them out.
    pub fn fill(&mut self, event: &model::Event, state: &model::State) -> (&wit::Event, &wit::State) {
        let (e, s) = self.converted.get_or_insert_with(|| {
            let event = wit::Event {
                metric: String::new(),
                value: 0.0,
                unit: wit::Unit::Count,
                kind: wit::EventKind::Sample,
                container: 0,
                timestamp_ns: 0,
            };
            let state = wit::State {
                service_id: String::new(),
                service_name: String::new(),
                settings: Vec::new(),
                current_replicas: 0,
                min_replicas: 0,
                max_replicas: 0,
                now_ns: 0,
                last_scale_up_ns: None,
                last_scale_down_ns: None,
                hold_until_ns: None,
                metrics: Vec::new(),
            };
            (event, state)
        });
        set_text(&mut e.metric, event.metric.name());
        e.value = event.value;
        unit_into(&event.unit, &mut e.unit);
        e.kind = kind(&event.kind);
        e.container = container(&event.container_id);
        e.timestamp_ns = event.timestamp_ns;
        set_text(&mut s.service_id, &state.service_id);
        set_text(&mut s.service_name, &state.service_name);
        if !self.settings_of.as_ref().is_some_and(|of| std::sync::Arc::ptr_eq(of, &state.settings)) {
            s.settings.clear();
            s.settings.extend(state.settings.iter().map(setting));
            self.settings_of = Some(state.settings.clone());
        }
        s.current_replicas = state.current_replicas;
        s.min_replicas = state.min_replicas;
        s.max_replicas = state.max_replicas;
        s.now_ns = state.now_ns;
        s.last_scale_up_ns = state.last_scale_up_ns;
        s.last_scale_down_ns = state.last_scale_down_ns;
        s.hold_until_ns = state.hold_until_ns;
        s.metrics.truncate(state.metrics.len());
        for (out, a) in s.metrics.iter_mut().zip(&state.metrics) {
            aggregate_into(a, out);
        }
        let have = s.metrics.len();
        s.metrics.extend(state.metrics[have..].iter().map(aggregate));
        (e, s)
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args").field("converted", &self.converted.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_its_first_sixteen_hex_digits() {
        let id = "4f1c0a7d2b9e4c3aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
        assert_eq!(container(id), 0x4f1c_0a7d_2b9e_4c3a);
        assert_eq!(format!("{:016x}", container(id)), &id[..16]);
        assert_eq!(format!("{:016x}", container("0123abcd")), "0123abcd00000000");
        assert_eq!(container("c1"), 0xc100_0000_0000_0000);
        assert_eq!(container("web.1"), 0);
        assert_eq!(container("ABCDEF0123456789ffff"), 0xabcd_ef01_2345_6789);
        assert_eq!(container(""), 0);
    }

    #[test]
    fn arguments_follow_each_call_and_reuse_buffers() {
        let mut args = Args::default();
        let settings: model::Settings = vec![Some(model::SettingValue::Number(0.8)), None].into();
        let mut state = model::State::replicas(2, 1, 5).with_cpu(&[0.5]).with_metric(
            model::Metric::Connections,
            model::Unit::Count,
            &[3.0],
            1,
        );
        state.service_id = "s1".into();
        state.service_name = "web".into();
        state.settings = settings.clone();
        let event = model::Event::cpu(0.9).of("c1", "s1", "web");
        let (e, s) = args.fill(&event, &state);
        assert_eq!((e.metric.as_str(), e.container), ("cpu", 0xc100_0000_0000_0000));
        assert_eq!((s.service_id.as_str(), s.service_name.as_str()), ("s1", "web"));
        assert!(matches!(&s.settings[..], [Some(wit::SettingValue::Number(n)), None] if *n == 0.8));
        assert_eq!(s.metrics.iter().map(|a| a.metric.as_str()).collect::<Vec<_>>(), ["cpu", "connections"]);
        assert_eq!(s.metrics[1].warming, 1);

        // Fewer metrics, another settings list, another service.
        let mut next = model::State::replicas(3, 1, 5).with_metric(
            model::Metric::Other("request-rate".into()),
            model::Unit::PerSecond,
            &[40.0],
            0,
        );
        next.service_name = "api".into();
        next.settings = vec![None].into();
        let (_, s) = args.fill(&model::Event::cpu(0.1), &next);
        assert_eq!(s.metrics.len(), 1);
        assert_eq!(s.metrics[0].metric, "request-rate");
        assert!(matches!(s.metrics[0].unit, wit::Unit::PerSecond));
        assert_eq!((s.settings.len(), s.service_name.as_str(), s.current_replicas), (1, "api", 3));
    }

    #[test]
    fn only_this_major_version_runs() {
        assert!(runs("1.0.0"));
        assert!(!runs("1.1.0"), "a newer minor may import what this daemon lacks");
        assert!(!runs("0.3.0") && !runs("0.2.0") && !runs("2.0.0") && !runs("x"));
    }
}
