//! `host replay --svg FILE`: one chart per service, replicas over time for
//! each replayed policy (step lines) and the recorded replicas (dashed),
//! against the service mean of the watched metric (shaded, right axis) and
//! its upper threshold. Plain SVG written by hand: no dependency, opens in
//! any browser.

use std::fmt::Write as _;

use super::PolicyRun;

const WIDTH: f64 = 900.0;
const CHART_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 64.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 36.0;
/// Line colours for the policies, in order (colour-blind safe).
const COLOURS: [&str; 6] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];

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

    // The metric, shaded, on its own scale.
    if let Some((metric, upper)) = &first.watched {
        let peak = first.metric.iter().map(|(_, v)| *v).fold(*upper, f64::max).max(f64::MIN_POSITIVE) * 1.1;
        let y_m = |v: f64| top + CHART_HEIGHT - v / peak * CHART_HEIGHT;
        let mut path = format!("M{:.1},{:.1}", x(start_ns), y_m(0.0));
        for (t, v) in &first.metric {
            let _ = write!(path, " L{:.1},{:.1}", x(*t), y_m(*v));
        }
        let _ = write!(path, " L{:.1},{:.1} Z", x(end_ns), y_m(0.0));
        let _ = writeln!(out, r##"<path d="{path}" fill="#999" fill-opacity="0.25" stroke="none"/>"##);
        let yu = y_m(*upper);
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN_LEFT}" x2="{:.1}" y1="{yu:.1}" y2="{yu:.1}" stroke="#999" stroke-dasharray="2,3"/>"##,
            MARGIN_LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#666">{} upper {}</text>"##,
            MARGIN_LEFT + plot_w + 4.0,
            yu + 4.0,
            escape(metric),
            upper
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#666">{} mean (shaded, peak {:.2})</text>"##,
            MARGIN_LEFT + plot_w - 220.0,
            top - 6.0,
            escape(metric),
            peak / 1.1
        );
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
    for (i, (run, service)) in runs.iter().zip(&services).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            out,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-opacity="0.85"/>"#,
            step(&service.replicas)
        );
        let _ = writeln!(
            out,
            r#"<text x="{legend_x:.1}" y="{:.1}" fill="{colour}">━ {}</text>"#,
            top - 22.0,
            escape(&run.policy)
        );
        legend_x += 24.0 + 7.0 * run.policy.len() as f64;
    }
}

/// Text safe inside SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
