//! Tests of label parsing.

use super::*;
use crate::model::metrics::{Edge, LabelValue};
use crate::model::{Band, METRICS, Metric};
use crate::units::parse_quantity;

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const BASE: &[(&str, &str)] =
    &[("autoscale.enable", "true"), ("autoscale.policy", "threshold"), ("autoscale.min", "1"), ("autoscale.max", "5")];

fn with(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut l = labels(BASE);
    for (k, v) in extra {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

fn errors(result: Result<Option<ServiceConfig>, LabelErrors>) -> Vec<LabelError> {
    match result {
        Err(LabelErrors(errors)) => errors,
        Ok(config) => panic!("expected label errors, got {config:?}"),
    }
}

#[test]
fn services_without_enable_or_with_false_are_left_alone() {
    assert_eq!(parse("web", &labels(&[])), Ok(None));
    assert_eq!(parse("web", &labels(&[("autoscale.policy", "threshold"), ("other", "x")])), Ok(None));
    assert_eq!(parse("web", &with(&[("autoscale.enable", "false")])), Ok(None));
}

#[test]
fn services_that_look_opted_in_are_told_why_they_are_not() {
    let mut typo = with(&[]);
    typo.remove("autoscale.enable");
    typo.insert("autoscale.enabled".into(), "true".into());
    assert_eq!(parse("web", &typo), Ok(None));
    assert_eq!(
        not_opted_in(&typo).as_deref(),
        Some(
            "it has the label autoscale.enabled=\"true\" but not autoscale.enable=true (did you mean autoscale.enable?)"
        )
    );
    let mut other = labels(&[("autoscaler.enable", "yes")]);
    assert!(not_opted_in(&other).is_some_and(|r| r.contains("autoscaler.enable")));
    other = labels(&[
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "3"),
        ("autoscale.cpu.upper", "1"),
    ]);
    assert_eq!(
        not_opted_in(&other).as_deref(),
        Some(
            "it has autoscale labels (autoscale.cpu.upper, autoscale.max, autoscale.min and 1 more) but not autoscale.enable=true"
        )
    );
    assert_eq!(not_opted_in(&with(&[("autoscale.enable", "false")])), None, "false is a choice");
    assert_eq!(not_opted_in(&labels(&[("com.example", "x")])), None);
}

#[test]
fn a_complete_service_parses() {
    let config = parse(
        "web",
        &with(&[
            ("autoscale.cpu.upper", "0.8"),
            ("autoscale.cpu.lower", "0.2"),
            ("autoscale.memory.upper", "256Mi"),
            ("autoscale.connections.upper", "100"),
            ("autoscale.cooldown.up", "5s"),
            ("autoscale.cooldown.down", "2m"),
            ("autoscale.step.max", "2"),
            ("autoscale.custom.knob", "anything"),
            ("com.example.unrelated", "x"),
        ]),
    )
    .expect("valid labels")
    .expect("opted in");
    assert_eq!(config.policy, "threshold");
    assert_eq!((config.min, config.max), (1, 5));
    assert_eq!(config.thresholds.band(&Metric::CPU), Band { upper: Some(0.8), lower: Some(0.2) });
    assert_eq!(config.thresholds.band(&Metric::MEMORY), Band { upper: Some(256.0 * 1024.0 * 1024.0), lower: None });
    assert_eq!(config.thresholds.band(&Metric::CONNECTIONS), Band { upper: Some(100.0), lower: None });
    assert_eq!(config.cooldown_up, Some(Duration::from_secs(5)));
    assert_eq!(config.cooldown_down, Some(Duration::from_secs(120)));
    assert_eq!(config.step_max, Some(2));
    // Every autoscale.* label reaches the policy, sorted, prefix removed;
    // other labels do not.
    let keys: Vec<&str> = config.settings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "connections.upper",
            "cooldown.down",
            "cooldown.up",
            "cpu.lower",
            "cpu.upper",
            "custom.knob",
            "enable",
            "max",
            "memory.upper",
            "min",
            "policy",
            "step.max"
        ]
    );
    assert!(config.settings.contains(&("custom.knob".into(), "anything".into())));
}

#[test]
fn missing_required_labels_are_each_named() {
    let errs = errors(parse("web", &labels(&[("autoscale.enable", "true")])));
    let named: Vec<&str> = errs.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(named, ["autoscale.policy", "autoscale.min", "autoscale.max"]);
    assert!(errs.iter().all(|e| e.value.is_none() && e.service == "web"));
    let text = errs[0].to_string();
    assert!(text.contains("service web") && text.contains("autoscale.policy is missing"), "{text}");
}

#[test]
fn malformed_values_name_service_label_and_value() {
    let errs = errors(parse("api", &with(&[("autoscale.max", "lots")])));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].label, "autoscale.max");
    assert_eq!(errs[0].value.as_deref(), Some("lots"));
    let text = errs[0].to_string();
    assert!(text.contains("service api") && text.contains("autoscale.max=\"lots\""), "{text}");
    assert!(text.contains("not scaled until the label is fixed"), "{text}");

    for (label, value) in [
        ("autoscale.enable", "maybe"),
        ("autoscale.policy", "../etc/passwd"),
        ("autoscale.max", "0"),
        ("autoscale.min", "-1"),
        ("autoscale.zero", "delete"),
        ("autoscale.idle", "100ms"),
        ("autoscale.cpu.upper", "high"),
        ("autoscale.cpu.lower", "-0.5"),
        ("autoscale.memory.upper", "64XB"),
        ("autoscale.connections.lower", "NaN"),
        ("autoscale.cooldown.up", "30"),
        ("autoscale.cooldown.down", "soon"),
        ("autoscale.step.max", "0"),
    ] {
        let errs = errors(parse("api", &with(&[(label, value)])));
        assert!(
            errs.iter().any(|e| e.label == label && e.value.as_deref() == Some(value)),
            "{label}={value}: {errs:?}"
        );
    }
}

#[test]
fn bounds_and_bands_must_be_ordered() {
    let errs = errors(parse("web", &with(&[("autoscale.min", "4"), ("autoscale.max", "2")])));
    assert_eq!(errs[0].label, "autoscale.max");
    assert!(errs[0].problem.contains("below autoscale.min=4"), "{}", errs[0].problem);
    let errs = errors(parse("web", &with(&[("autoscale.cpu.upper", "0.2"), ("autoscale.cpu.lower", "0.8")])));
    assert_eq!(errs[0].label, "autoscale.cpu.lower");
}

#[test]
fn all_problems_are_reported_at_once() {
    let errs = errors(parse(
        "web",
        &with(&[("autoscale.max", "x"), ("autoscale.cpu.upper", "y"), ("autoscale.step.max", "z")]),
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    let all = LabelErrors(errs).to_string();
    assert!(all.contains("autoscale.max") && all.contains("autoscale.cpu.upper") && all.contains("autoscale.step.max"));
}

#[test]
fn targets_without_bands_derive_crossing_thresholds() {
    let config = parse("web", &with(&[("autoscale.cpu.target", "0.5"), ("autoscale.tolerance", "0.2")]))
        .expect("valid")
        .expect("opted in");
    let cpu = config.thresholds.band(&Metric::CPU);
    assert!((cpu.upper.expect("upper") - 0.6).abs() < 1e-9);
    assert!((cpu.lower.expect("lower") - 0.4).abs() < 1e-9);
    // Explicit bands win over targets.
    let config = parse("web", &with(&[("autoscale.cpu.target", "0.5"), ("autoscale.cpu.upper", "0.9")]))
        .expect("valid")
        .expect("opted in");
    assert_eq!(config.thresholds.band(&Metric::CPU), Band { upper: Some(0.9), lower: None });
}

#[test]
fn min_zero_scales_to_a_frozen_replica() {
    let config = parse("web", &with(&[("autoscale.min", "0")])).expect("valid").expect("opted in");
    assert_eq!(config.min, 0);
    assert_eq!(config.zero, Some(ScaleToZero { mode: ZeroMode::Freeze, idle: DEFAULT_IDLE }));
    let config = parse("web", &with(&[("autoscale.min", "0"), ("autoscale.idle", "5s"), ("autoscale.zero", "freeze")]))
        .expect("valid")
        .expect("opted in");
    assert_eq!(config.zero.map(|z| z.idle), Some(Duration::from_secs(5)));
    // Without min=0 the zero labels change nothing.
    let config = parse("web", &with(&[("autoscale.idle", "5s")])).expect("valid").expect("opted in");
    assert_eq!(config.zero, None);
}

#[test]
fn zero_by_removal_needs_a_port_from_a_label_or_a_host_mode_publication() {
    let remove = with(&[("autoscale.min", "0"), ("autoscale.zero", "remove"), ("autoscale.port", "8080")]);
    let mut config = parse("web", &remove).expect("valid").expect("opted in");
    assert_eq!(config.zero.map(|z| z.mode), Some(ZeroMode::Remove));
    assert_eq!(config.ports, [8080]);
    let published = [Published { port: 9090, host_mode: true }, Published { port: 8080, host_mode: true }];
    resolve_ports("web", &mut config, &published).expect("ports");
    assert_eq!(config.ports, [8080, 9090], "the label and the spec's host-mode ports, once each");

    let mut unlabelled = remove.clone();
    unlabelled.remove("autoscale.port");
    let mut config = parse("web", &unlabelled).expect("valid").expect("opted in");
    resolve_ports("web", &mut config.clone(), &[Published { port: 80, host_mode: true }]).expect("host mode");
    let err = resolve_ports("web", &mut config.clone(), &[]).expect_err("no port");
    assert_eq!(err.label, "autoscale.port");
    assert!(err.short().contains("autoscale.port is missing (name the TCP port"), "{}", err.short());
    let err = resolve_ports("web", &mut config, &[Published { port: 80, host_mode: false }]).expect_err("ingress");
    assert!(err.problem.contains("publishes 80 through the ingress routing mesh"), "{}", err.problem);
    // Freeze needs no port.
    let mut freeze = parse("web", &with(&[("autoscale.min", "0")])).expect("valid").expect("opted in");
    resolve_ports("web", &mut freeze, &[]).expect("freeze holds no port");
    for bad in ["0", "70000", "http"] {
        let errs = errors(parse("web", &with(&[("autoscale.port", bad)])));
        assert_eq!(errs[0].label, "autoscale.port", "{bad}");
    }
}

#[test]
fn quantities_and_cooldowns() {
    assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
    assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
    assert_eq!(parse_quantity(" 2k "), Some(2000.0));
    assert_eq!(parse_quantity("64MB"), Some(64.0 * 1024.0 * 1024.0));
    assert_eq!(parse_quantity("512m"), Some(512.0 * 1024.0 * 1024.0));
    assert_eq!(parse_quantity("1g"), Some(1024.0 * 1024.0 * 1024.0));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("30").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn every_table_metric_has_threshold_labels() {
    for def in METRICS {
        let (upper, lower, target) = (def.label(Edge::Upper), def.label(Edge::Lower), def.label(Edge::Target));
        let known = daemon_labels();
        assert!(
            [&upper, &lower, &target].iter().all(|l| known.contains(l)),
            "{}: labels known to the daemon",
            def.name
        );
        // A value in the metric's own grammar: a quantity takes a suffix.
        let (up, expected, one, two, ten) = match def.label_value {
            LabelValue::Number => ("40", 40.0, "1", "2", "10"),
            LabelValue::Quantity => ("2Ki", 2048.0, "1", "2", "10"),
            LabelValue::Duration => ("40s", 40.0, "1s", "2s", "10s"),
        };
        let config = parse("web", &with(&[(&format!("{PREFIX}{upper}"), up), (&format!("{PREFIX}{lower}"), one)]))
            .unwrap_or_else(|e| panic!("{}: {e}", def.name))
            .expect("opted in");
        assert_eq!(config.thresholds.band_of(def), Band { upper: Some(expected), lower: Some(1.0) }, "{}", def.name);
        for (other, band) in config.thresholds.bands() {
            if other.name != def.name {
                assert_eq!(band, Band::default(), "{} set only its own band", def.name);
            }
        }
        // A malformed value names the label and the metric's unit.
        let errs = errors(parse("web", &with(&[(&format!("{PREFIX}{upper}"), "lots")])));
        assert_eq!(errs[0].label, format!("{PREFIX}{upper}"));
        assert!(errs[0].problem.contains(def.label_hint), "{:?}", errs[0]);
        // The lower edge must stay below the upper one.
        let errs =
            errors(parse("web", &with(&[(&format!("{PREFIX}{upper}"), one), (&format!("{PREFIX}{lower}"), two)])));
        assert_eq!(errs[0].label, format!("{PREFIX}{lower}"));
        // A target alone derives a band around it.
        let config = parse("web", &with(&[(&format!("{PREFIX}{target}"), ten)])).expect("valid").expect("opted in");
        let band = config.thresholds.band_of(def);
        assert!(band.upper.is_some_and(|u| (u - 11.0).abs() < 1e-9), "{}: {band:?}", def.name);
    }
}

#[test]
fn rate_and_stabilization_labels_parse_or_name_their_problem() {
    let config = parse(
        "web",
        &with(&[
            ("autoscale.rate.up", "100%,4"),
            ("autoscale.rate.period", "30s"),
            ("autoscale.stabilization.down", "5m"),
        ]),
    )
    .expect("valid labels")
    .expect("opted in");
    let rate = UpRate { percent: Some(100), replicas: Some(4), period: Duration::from_secs(30) };
    assert_eq!((config.rate_up, config.rate_period), (Some(rate), Some(Duration::from_secs(30))));
    assert_eq!(config.stabilization_down, Some(Duration::from_secs(300)));
    // Unset: the daemon's defaults apply (None here).
    let plain = parse("web", &with(&[])).expect("valid labels").expect("opted in");
    assert_eq!((plain.rate_up, plain.rate_period, plain.stabilization_down), (None, None, None));
    let bad = errors(parse(
        "web",
        &with(&[
            ("autoscale.rate.up", "fast"),
            ("autoscale.rate.period", "0"),
            ("autoscale.stabilization.down", "soon"),
        ]),
    ));
    let named: Vec<&str> = bad.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(named.len(), 3, "{bad:?}");
    for label in ["autoscale.rate.up", "autoscale.rate.period", "autoscale.stabilization.down"] {
        assert!(named.contains(&label), "{label} in {named:?}");
    }
}
