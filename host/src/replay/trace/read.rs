//! Reading a trace back: [`read`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::lines::{A, Line, R, abs, metric_named, stats};
use super::{FORMAT, Header, Labels, Record, Trace, VERSION};
use crate::model::{Aggregate, Crossing, Direction, Event, EventKind, State};

/// What a reader knows of a service: id, name, policy, labels.
type ServiceDef = (String, String, String, Labels);
/// What the reader knows from the lines before a record.
#[derive(Default)]
struct Context {
    /// The clock the next record's DT counts from.
    base_ns: u64,
    /// Service number -> (id, name, policy, labels).
    services: HashMap<u32, ServiceDef>,
    /// Container number -> id.
    containers: HashMap<u32, String>,
}

impl Context {
    fn record(&mut self, r: R) -> Result<Record, String> {
        let R(
            svc,
            ctr,
            dt,
            took,
            age,
            metric,
            value,
            unit,
            crossing,
            replicas,
            min,
            max,
            up,
            down,
            hold,
            aggs,
            decision,
        ) = r;
        let (id, name, policy, labels) =
            self.services.get(&svc).ok_or_else(|| format!("service {svc} is not defined before it is used"))?;
        let container = self.containers.get(&ctr).ok_or_else(|| format!("container {ctr} is not defined"))?;
        let now = self.base_ns.saturating_add_signed(dt);
        self.base_ns = now;
        let kind = match crossing {
            None => EventKind::Sample,
            Some((threshold, way)) => EventKind::Crossing(Crossing {
                threshold,
                direction: if way == 'u' { Direction::Up } else { Direction::Down },
            }),
        };
        let event = Event {
            metric: metric_named(metric),
            value,
            unit: unit.into(),
            kind,
            container_id: container.clone(),
            service_id: id.clone(),
            service_name: name.clone(),
            timestamp_ns: now.saturating_add_signed(age.saturating_neg()),
        };
        let metrics = aggs
            .into_iter()
            .map(|A(metric, unit, reporting, warming, value, of_limit, window_ns)| Aggregate {
                metric: metric_named(metric),
                unit: unit.into(),
                reporting,
                warming,
                value: stats(value),
                of_limit: of_limit.map(stats),
                window_ns,
            })
            .collect();
        let state = State {
            service_id: id.clone(),
            service_name: name.clone(),
            settings: Default::default(),
            current_replicas: replicas,
            min_replicas: min,
            max_replicas: max,
            now_ns: now,
            last_scale_up_ns: abs(up, now),
            last_scale_down_ns: abs(down, now),
            hold_until_ns: abs(hold, now),
            metrics,
        };
        let (policy, labels) = (policy.clone(), labels.clone());
        Ok(Record { policy, labels, event, state, decided_ns: now.saturating_add(took), decision })
    }
}

/// Longest line of a trace read (a record is a few hundred bytes; a header
/// with every service's labels a few KiB).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The lines of `reader`, each at most [`MAX_LINE_BYTES`]: a longer one is
/// an error, not an allocation of whatever the file holds.
fn bounded_lines(mut reader: impl BufRead) -> impl Iterator<Item = std::io::Result<String>> {
    use std::io::Read as _;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') => Some(Err(std::io::Error::other(
                format!("a line longer than {MAX_LINE_BYTES} bytes: not a trace this daemon wrote"),
            ))),
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                Some(String::from_utf8(buf).map_err(std::io::Error::other))
            }
            Err(err) => Some(Err(err)),
        }
    })
}

/// Read a trace file. Errors name the file, the line and the cause; a torn
/// last line (a daemon killed mid-write) is skipped and counted.
pub fn read(path: &Path) -> anyhow::Result<Trace> {
    use anyhow::Context as _;
    let file = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
    let mut lines = bounded_lines(BufReader::with_capacity(1 << 20, file)).enumerate().peekable();
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut torn_lines = 0;
    let mut context = Context::default();
    while let Some((index, line)) = lines.next() {
        let line = line.with_context(|| format!("reading trace {} line {}", path.display(), index + 1))?;
        let text = line.trim_start();
        if text.is_empty() {
            continue;
        }
        let last = lines.peek().is_none();
        let at = || format!("trace {} line {}", path.display(), index + 1);
        let parsed = if text.starts_with('[') {
            serde_json::from_str::<R>(text).map(|r| {
                anyhow::ensure!(header.is_some(), "{}: a record before any header line", at());
                records.push(context.record(r).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?);
                Ok(())
            })
        } else {
            serde_json::from_str::<Line>(text).map(|line| {
                match line {
                    Line::Header(h) => {
                        if h.format != FORMAT || h.version != VERSION {
                            anyhow::bail!(
                                "{}: format {} version {}; this host reads {FORMAT} version {VERSION} (record the trace again with this host)",
                                at(),
                                h.format,
                                h.version
                            );
                        }
                        context.base_ns = h.started_monotonic_ns;
                        header.get_or_insert(h);
                    }
                    Line::Service(n, id, name, policy, labels) => {
                        context.services.insert(n, (id, name, policy, labels));
                    }
                    Line::Container(n, id) => {
                        context.containers.insert(n, id);
                    }
                }
                Ok(())
            })
        };
        match parsed {
            Ok(result) => result?,
            Err(err) if last && err.is_eof() => torn_lines += 1,
            Err(err) => anyhow::bail!("{}: {err}", at()),
        }
    }
    let header = header.with_context(|| {
        format!("trace {} has no header line; record one with `host --record FILE`", path.display())
    })?;
    Ok(Trace { header, records, torn_lines })
}
