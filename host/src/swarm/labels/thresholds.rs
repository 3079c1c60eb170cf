//! The threshold labels of every metric of the table
//! ([`crate::model::METRICS`]): `autoscale.<name>.upper` and `.lower`, and
//! the band a `<name>.target` implies when neither is set. Each metric's
//! row says how its values parse ([`LabelValue`]) and what a wrong one
//! should look like.

use std::collections::HashMap;

use crate::model::metrics::{Edge, LabelValue, MetricDef};
use crate::model::{Band, METRICS, Thresholds};
use crate::units::{parse_duration, parse_number, parse_quantity};

use super::{DEFAULT_TOLERANCE, PREFIX};

/// A label value in a metric's unit, if it is one.
fn value_of(def: &MetricDef, text: &str) -> Option<f64> {
    match def.label_value {
        LabelValue::Number => parse_number(text),
        LabelValue::Quantity => parse_quantity(text),
        LabelValue::Duration => parse_duration(text).ok().map(|d| d.as_secs_f64()),
    }
}

/// The thresholds `labels` set, every metric of the table. Each malformed
/// label goes to `fail(label, value, problem)` and leaves its edge off.
pub(super) fn parse(labels: &HashMap<String, String>, fail: &mut dyn FnMut(&str, Option<&str>, &str)) -> Thresholds {
    let mut thresholds = Thresholds::default();
    for def in METRICS {
        let mut side = |edge: Edge| {
            let label = format!("{PREFIX}{}", def.label(edge));
            let value = labels.get(&label)?;
            match value_of(def, value) {
                Some(v) if v >= 0.0 => Some(v),
                _ => {
                    fail(&label, Some(value), &format!("is not {}", def.label_hint));
                    None
                }
            }
        };
        let (upper, lower) = (side(Edge::Upper), side(Edge::Lower));
        if let (Some(up), Some(low)) = (upper, lower)
            && low >= up
        {
            let label = format!("{PREFIX}{}", def.label(Edge::Lower));
            let value = labels.get(&label).map(String::as_str);
            fail(&label, value, &format!("must be below {}={up}", def.label(Edge::Upper)));
        }
        thresholds.set(&def.metric(), Band { upper, lower });
    }
    derive_bands_from_targets(labels, &mut thresholds);
    thresholds
}

/// A metric watched through a `<metric>.target` (the `proportional` policy's
/// setting) but without explicit thresholds gets the band
/// `target * (1 ± tolerance)`, so its containers still push a crossing the
/// moment the policy would act, instead of waiting for the next sample.
fn derive_bands_from_targets(labels: &HashMap<String, String>, thresholds: &mut Thresholds) {
    let tolerance = labels
        .get(&format!("{PREFIX}tolerance"))
        .and_then(|t| parse_number(t))
        .filter(|t| (0.0..1.0).contains(t))
        .unwrap_or(DEFAULT_TOLERANCE);
    for def in METRICS {
        let band = thresholds.band_of(def);
        if band.upper.is_some() || band.lower.is_some() {
            continue;
        }
        let target = labels.get(&format!("{PREFIX}{}", def.label(Edge::Target))).and_then(|t| value_of(def, t));
        if let Some(target) = target.filter(|t| *t > 0.0) {
            let band = Band { upper: Some(target * (1.0 + tolerance)), lower: Some(target * (1.0 - tolerance)) };
            thresholds.set(&def.metric(), band);
        }
    }
}
