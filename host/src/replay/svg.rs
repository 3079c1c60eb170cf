//! `host replay --svg FILE`: one chart per service, replicas over time for
//! each replayed policy (step lines) and the recorded replicas (dashed),
//! against the service mean of the metric the policies decide on (shaded,
//! right axis with its unit), the daemon's upper threshold and each
//! policy's own declared settings on that metric (`cpu.target`, in the
//! policy's colour). Policies that agree stay visible: each line has its own
//! dash pattern and a small vertical offset. Labels are drawn inside the
//! plot. Plain SVG written by hand: no dependency, opens in any browser.

use std::fmt::Write as _;

use super::PolicyRun;
use crate::model::Unit;

const WIDTH: f64 = 900.0;
const CHART_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 72.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 36.0;
/// Line colours for the policies, in order (colour-blind safe).
const COLOURS: [&str; 6] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];
/// Dash patterns for the policies, in order, so lines that coincide still
/// show every policy.
const DASHES: [&str; 6] = ["none", "10,4", "3,3", "12,3,3,3", "6,6", "1,4"];
/// Vertical offset between policies' lines, px.
const OFFSET: f64 = 2.5;

/// A unit in words, for the metric axis.
fn unit_words(unit: Option<&Unit>) -> String {
    match unit {
        None => String::new(),
        Some(Unit::FractionOfLimit) => "fraction of the limit".into(),
        Some(Unit::Cores) => "cores".into(),
        Some(Unit::Bytes) => "bytes".into(),
        Some(Unit::Count) => "count".into(),
        Some(Unit::PerSecond) => "per second".into(),
        Some(Unit::Seconds) => "seconds".into(),
        Some(Unit::Other(name)) => name.clone(),
    }
}

/// Draw `runs` (the same trace replayed by each policy) as an SVG document.
pub fn render(runs: &[PolicyRun]) -> String {
    let services: Vec<&str> =
        runs.first().map(|r| r.services.iter().map(|s| s.name.as_str()).collect()).unwrap_or_default();
    let panel = CHART_HEIGHT + MARGIN_TOP + MARGIN_BOTTOM;
    let height = panel * services.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (row, name) in services.iter().enumerate() {
        let top = row as f64 * panel + MARGIN_TOP;
        draw_service(&mut out, runs, name, top);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_service(out: &mut String, runs: &[PolicyRun], name: &str, top: f64) {
    let services: Vec<_> = runs.iter().filter_map(|r| r.services.iter().find(|s| s.name == name)).collect();
    let Some(first) = services.first() else { return };
    let end_ns = services.iter().map(|s| s.span_ns.1).max().unwrap_or(0).max(1);
    let start_ns = services.iter().map(|s| s.span_ns.0).min().unwrap_or(0).min(end_ns - 1);
    let max_replicas =
        services.iter().flat_map(|s| s.replicas.iter().chain(&s.recorded).map(|(_, r)| *r)).max().unwrap_or(1).max(1);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let x = |t: u64| MARGIN_LEFT + (t.saturating_sub(start_ns)) as f64 / (end_ns - start_ns) as f64 * plot_w;
    let y_rep = |r: u32| top + CHART_HEIGHT - f64::from(r) / f64::from(max_replicas + 1) * CHART_HEIGHT;

    // The metric, shaded, on its own scale (right axis), with the daemon's
    // upper threshold and each policy's own settings on it.
    let plot_right = MARGIN_LEFT + plot_w;
    if let Some(metric) = &first.drawn {
        let upper = first.watched.as_ref().map(|(_, u)| *u);
        let declared = services.iter().flat_map(|s| s.declared.iter().map(|(_, v)| *v));
        let peak = first
            .metric
            .iter()
            .map(|(_, v)| *v)
            .chain(upper)
            .chain(declared)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE)
            * 1.1;
        let y_m = |v: f64| top + CHART_HEIGHT - v / peak * CHART_HEIGHT;
        let mut path = format!("M{:.1},{:.1}", x(start_ns), y_m(0.0));
        for (t, v) in &first.metric {
            let _ = write!(path, " L{:.1},{:.1}", x(*t), y_m(*v));
        }
        let _ = write!(path, " L{:.1},{:.1} Z", x(end_ns), y_m(0.0));
        let _ = writeln!(out, r##"<path d="{path}" fill="#999" fill-opacity="0.25" stroke="none"/>"##);
        for i in 0..=4 {
            let v = peak / 1.1 / 4.0 * f64::from(i);
            let y = y_m(v);
            let _ = writeln!(
                out,
                r##"<line x1="{plot_right:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#999"/><text x="{:.1}" y="{:.1}" fill="#666">{}</text>"##,
                plot_right + 4.0,
                plot_right + 6.0,
                y + 4.0,
                figure(v)
            );
        }
        let unit = unit_words(first.unit.as_ref());
        let axis = if unit.is_empty() { format!("{metric} mean") } else { format!("{metric} mean ({unit})") };
        let middle = top + CHART_HEIGHT / 2.0;
        let ax = WIDTH - 10.0;
        let _ = writeln!(
            out,
            r##"<text x="{ax:.1}" y="{middle:.1}" transform="rotate(90 {ax:.1} {middle:.1})" text-anchor="middle" fill="#666">{}, shaded</text>"##,
            escape(&axis)
        );
        // Labels of equal thresholds are stacked, not drawn over each other.
        let mut taken: Vec<f64> = Vec::new();
        let mut threshold = |v: f64, colour: &str, label: String, dash: &str| {
            let y = y_m(v);
            let mut text_y = y - 4.0;
            while taken.iter().any(|t| (t - text_y).abs() < 12.0) {
                text_y -= 12.0;
            }
            taken.push(text_y);
            let _ = writeln!(
                out,
                r##"<line x1="{MARGIN_LEFT}" x2="{plot_right:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}" stroke-opacity="0.7" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{colour}">{}</text>"##,
                plot_right - 4.0,
                text_y,
                escape(&label)
            );
        };
        if let Some(upper) = upper {
            threshold(upper, "#666", format!("{metric} upper {upper}"), "2,3");
        }
        for (i, service) in services.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            for (name, v) in &service.declared {
                threshold(*v, colour, format!("{}: {name} {}", runs[i].policy, figure(*v)), "1,3");
            }
        }
    }

    // Axes and replica grid.
    let _ =
        writeln!(out, r#"<text x="{MARGIN_LEFT}" y="{:.1}" font-weight="bold">{}</text>"#, top - 22.0, escape(name));
    for r in 0..=max_replicas + 1 {
        let y = y_rep(r);
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN_LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{r}</text>"##,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            y + 4.0
        );
    }
    let span_s = (end_ns - start_ns) as f64 / 1e9;
    for i in 0..=5 {
        let t = start_ns + (end_ns - start_ns) / 5 * i;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"#,
            x(t),
            top + CHART_HEIGHT + 16.0,
            span_s / 5.0 * i as f64
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">replicas</text>"#,
        top + CHART_HEIGHT / 2.0,
        top + CHART_HEIGHT / 2.0
    );

    // Recorded replicas, then each policy's.
    let step = |points: &[(u64, u32)]| {
        let mut path = String::new();
        let mut last: Option<u32> = None;
        for (t, r) in points {
            match last {
                None => {
                    let _ = write!(path, "M{:.1},{:.1}", x(*t), y_rep(*r));
                }
                Some(_) => {
                    let _ = write!(path, " H{:.1} V{:.1}", x(*t), y_rep(*r));
                }
            }
            last = Some(*r);
        }
        let _ = write!(path, " H{:.1}", x(end_ns));
        path
    };
    if !first.recorded.is_empty() {
        let _ = writeln!(
            out,
            r##"<path d="{}" fill="none" stroke="#444" stroke-width="1.5" stroke-dasharray="6,4"/>"##,
            step(&first.recorded)
        );
    }
    let mut legend_x = MARGIN_LEFT + 140.0;
    let _ = writeln!(out, r##"<text x="{legend_x:.1}" y="{:.1}" fill="#444">- - recorded</text>"##, top - 22.0);
    legend_x += 90.0;
    let count = runs.len() as f64;
    for (i, (run, service)) in runs.iter().zip(&services).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = DASHES[i % DASHES.len()];
        // Centred offsets: lines that coincide are drawn side by side.
        let dy = (i as f64 - (count - 1.0) / 2.0) * OFFSET;
        let _ = writeln!(
            out,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-opacity="0.85" stroke-dasharray="{dash}" transform="translate(0 {dy:.1})"/>"#,
            step(&service.replicas)
        );
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
            legend_x + 22.0,
            top - 26.0,
            top - 26.0,
            legend_x + 26.0,
            top - 22.0,
            escape(&run.policy)
        );
        legend_x += 36.0 + 7.0 * run.policy.len() as f64;
    }
}

/// A value in few digits.
fn figure(v: f64) -> String {
    let text = if v == 0.0 || (0.01..1e4).contains(&v.abs()) { format!("{v:.3}") } else { format!("{v:.2e}") };
    if text.contains('e') { text } else { text.trim_end_matches('0').trim_end_matches('.').to_string() }
}

/// Text safe inside SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::ServiceRun;

    fn run(policy: &str, declared: &[(&str, f64)]) -> PolicyRun {
        let service = ServiceRun {
            name: "web".into(),
            replicas: vec![(0, 2), (5_000_000_000, 3)],
            watched: Some(("cpu".into(), 0.8)),
            drawn: Some("cpu".into()),
            metric: vec![(0, 0.5), (10_000_000_000, 0.9)],
            unit: Some(Unit::FractionOfLimit),
            declared: declared.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            span_ns: (0, 10_000_000_000),
            ..ServiceRun::default()
        };
        PolicyRun { policy: policy.into(), services: vec![service], ..PolicyRun::default() }
    }

    #[test]
    fn agreeing_policies_stay_visible_and_their_settings_are_drawn() {
        let svg = render(&[run("threshold", &[("cpu.upper", 0.8)]), run("proportional", &[("cpu.target", 0.5)])]);
        let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<path") && l.contains("translate")).collect();
        assert_eq!(lines.len(), 2, "{svg}");
        let shift = |l: &str| l.split("transform=").nth(1).map(str::to_string);
        assert_ne!(shift(lines[0]), shift(lines[1]), "the same steps, drawn apart: {svg}");
        assert!(lines[1].contains(r#"stroke-dasharray="10,4""#), "{svg}");
        assert!(svg.contains("cpu mean (fraction of the limit), shaded"), "the metric axis with its unit: {svg}");
        assert!(svg.contains("proportional: cpu.target 0.5") && svg.contains("threshold: cpu.upper 0.8"), "{svg}");
        // Labels end inside the plot, never past the right edge.
        for label in svg.lines().filter(|l| l.contains("cpu upper 0.8")) {
            assert!(label.contains(r#"text-anchor="end""#), "{label}");
        }
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(figure(0.5), "0.5");
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(1.0e9), "1.00e9");
        assert_eq!(figure(0.225), "0.225");
    }
}
