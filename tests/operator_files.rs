//! The operator files under deploy/: the Prometheus alert rules and the
//! Grafana dashboard. They are checked as Prometheus itself would (promtool:
//! every expression parses, every alert fires on the series of a misbehaving
//! daemon and stays quiet on a healthy one), and every `autoscaler_*` series
//! they name is one the daemon defines. cluster_swarm checks the same names
//! against a running manager's /metrics (cluster mode exports every family).

mod common;

use common::repo;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn alerts() -> PathBuf {
    repo().join("deploy/prometheus/alerts.yml")
}

fn dashboard() -> PathBuf {
    repo().join("deploy/grafana/swarm-autoscaler.json")
}

/// promtool, or None with a loud reason (examples/setup.sh installs it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: promtool not found: examples/setup.sh installs Debian's prometheus package");
    }
    found.then_some("promtool")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawning promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Every PromQL expression of the dashboard, with Grafana's variables
/// replaced by what "All" selects.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboard()).expect("reading the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        for target in panel["targets"].as_array().expect("every panel has targets") {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((title.to_owned(), expr.replace("$instance", ".*").replace("$service", ".*")));
        }
    }
    queries
}

/// The `autoscaler_*` names in `text`, histogram suffixes taken off.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("autoscaler_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        // A word that merely contains the prefix (e.g. a service name) is not a series.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            // The daemon's histograms are families of _bucket, _sum and _count.
            let family =
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            names.insert(family.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every series the operator files name.
fn named_series() -> BTreeSet<String> {
    let mut names = series_names(&std::fs::read_to_string(alerts()).expect("reading the alert rules"));
    for (_, expr) in dashboard_queries() {
        names.extend(series_names(&expr));
    }
    names
}

#[test]
fn alert_rules_parse_and_fire_as_their_unit_tests_expect() {
    let Some(promtool) = promtool() else { return };
    let text = run(Command::new(promtool).args(["check", "rules"]).arg(alerts()));
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
    let tests = repo().join("deploy/prometheus/alerts.test.yml");
    let text = run(Command::new(promtool).args(["test", "rules"]).arg(&tests));
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let Some(promtool) = promtool() else { return };
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "the dashboard lost panels: {queries:?}");
    // promtool checks expressions in rule files: write each query as a
    // recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in queries.iter().enumerate() {
        rules.push_str(&format!("      # {title}\n      - record: dashboard_query_{i}\n        expr: {expr:?}\n"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("writing the rules");
    let text = run(Command::new(promtool).args(["check", "rules"]).arg(&file));
    assert!(text.contains(&format!("SUCCESS: {} rules found", queries.len())), "{text}");
}

#[test]
fn dashboard_panels_have_unique_ids_and_do_not_overlap() {
    let text = std::fs::read_to_string(dashboard()).expect("reading the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(json["uid"], "swarm-autoscaler");
    let panels = json["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("a numeric id")), "duplicate id in {panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let g = &panel["gridPos"];
        let (x, y, w, h) = [&g["x"], &g["y"], &g["w"], &g["h"]].map(|v| v.as_u64().expect("grid numbers")).into();
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{} overlaps another panel", panel["title"]);
            }
        }
    }
}

#[test]
fn every_named_series_is_defined_by_the_daemon() {
    // The daemon's families are string literals in host/src (metrics.rs,
    // status.rs, daemon/): a series renamed there and not here fails.
    let mut defined = BTreeSet::new();
    let mut stack = vec![repo().join("host/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading host/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.file_name().is_some_and(|n| n == "tests.rs" || n == "testing.rs")
            {
                let text = std::fs::read_to_string(&path).expect("reading a source file");
                // Only the daemon's own code: a unit test module's made-up
                // series (`#[cfg(test)] mod tests { ... }`, by convention at
                // the end of a file, or in its own tests.rs) define nothing.
                let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
                for (at, _) in code.match_indices("\"autoscaler_") {
                    let name = &code[at + 1..];
                    let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(name.len());
                    if name[end..].starts_with('"') {
                        defined.insert(name[..end].to_owned());
                    }
                }
            }
        }
    }
    let named = named_series();
    assert!(named.len() >= 15, "too few series found in the operator files: {named:?}");
    let missing: Vec<_> = named.difference(&defined).collect();
    assert!(missing.is_empty(), "the operator files name series the daemon does not define: {missing:?}");
}

#[test]
fn series_names_are_read_as_prometheus_would() {
    let names = series_names(
        "histogram_quantile(0.99, rate(autoscaler_decide_seconds_bucket{service=\"my-autoscaler_x\"}[5m])) \
         + autoscaler_events_total",
    );
    assert_eq!(names, BTreeSet::from(["autoscaler_decide_seconds".to_owned(), "autoscaler_events_total".to_owned()]));
}
