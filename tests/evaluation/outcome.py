#!/usr/bin/env python3
"""Outcomes: requests served within their SLO, at what cost, on a
multi-service application under open-loop traces.

    tests/evaluation/outcome.py run [--traces step,spike] [--autoscalers A,B]
                                    [--runs 3] [--time-scale 1] [--doc]
    tests/evaluation/outcome.py smoke          # CI: 60 s of the step trace, push-proportional
    tests/evaluation/outcome.py oracle --trace step [--time-scale 1]
    tests/evaluation/outcome.py list
    tests/evaluation/outcome.py summary [--doc]    # medians of every run's figures in OUT, no run

The application (examples/app, docs/evaluation.md "Outcomes"): `oc-front`
calls `oc-catalog` (CPU-heavy), `oc-cart` (memory grows with the request
rate) and `oc-recommend` (bursty: a CPU cost 6x higher 8 s in every 40 s)
over HTTP/1.1 keep-alive on the attachable overlay network `outcome-net`,
every service with `--endpoint-mode dnsrr` (no IPVS here), callers
spreading requests over every address the name resolves to. The open-loop
load generator (examples/app `loadgen`) runs in a container on the same
network and plays a trace of tests/evaluation/traces against `oc-front`.

An autoscaler is a named entry of tests/evaluation/autoscalers.json: the
daemon's flags, a policy and the services' labels (or `fixed`: replica
counts from the oracle, no daemon).

Per run: share of requests over the SLO (SLO_MS at the front) or failed,
p50/p99/p99.9 (a failed request counts as the load generator's timeout),
replica-seconds (running containers, sampled every second), CPU-seconds
(the containers' cgroup CPU usage), scale actions and reversals within 60 s
(from the daemon's audit log), seconds out of SLO, and for each step of
the trace the time until the SLO holds again. The oracle (fewest replicas
whose CPU demand stays under ORACLE_UTIL of their limit, from the trace and
the per-request costs) is printed beside. Medians over --runs. Writes
OUT/summary.csv, OUT/summary.svg and per run OUT/TRACE.AUTOSCALER.N.csv
(per second) and .svg (timeline); the per-request records stay in --work.

Runs as root (eBPF, dockerd). Takes the machine's test lock
(/tmp/swarm-autoscaler-tests.lock) unless --lock-held (tests/run.sh holds it).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import log, machine, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "evaluation"
TRACES = HERE / "traces"
CONFIGS = HERE / "autoscalers.json"
OUT = ROOT / "docs" / "evaluation" / "outcomes"
IMAGE = os.environ.get("APP_IMAGE", "swarm-autoscaler-app:local")
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
HOST = TARGET_DIR / "release" / "host"
NETWORK = "outcome-net"
PREFIX = "oc-"
SLO_MS = 250.0
TIMEOUT_MS = 5000
ORACLE_UTIL = 0.8
MAX_REPLICAS = 6
# A second counts as within the SLO when at most this share of its requests
# is over the SLO or failed; after a load step the SLO "holds again" from the
# first second that starts HOLD_S good seconds in a row.
GOOD_SECOND_SHARE = 0.01
HOLD_S = 15

# The application: per service, its environment (examples/app/src/bin/app.rs),
# CPU limit, memory limit and its CPU cost per front request in ms (normal,
# and during a burst), for the oracle.
BURST_PERIOD_S, BURST_LEN_S = 40, 8
APP = {
    "front": {"env": {"CPU_MS": "3", "CALLS": f"{PREFIX}catalog:8080,{PREFIX}cart:8080,{PREFIX}recommend:8080"},
              "cpus": 0.25, "memory": "128M", "cost_ms": 3.0, "burst_ms": 3.0},
    "catalog": {"env": {"CPU_MS": "12"}, "cpus": 0.25, "memory": "128M", "cost_ms": 12.0, "burst_ms": 12.0},
    "cart": {"env": {"CPU_MS": "2", "STORE_MB": "64", "KEEP_KB": "256", "KEEP_S": "30"},
             "cpus": 0.25, "memory": "512M", "cost_ms": 2.0, "burst_ms": 2.0},
    "recommend": {"env": {"CPU_MS": "2", "BURST_CPU_MS": "12", "BURST_PERIOD_S": str(BURST_PERIOD_S),
                          "BURST_LEN_S": str(BURST_LEN_S)},
                  "cpus": 0.25, "memory": "128M", "cost_ms": 2.0, "burst_ms": 12.0},
}
SERVICES = list(APP)
COLORS = {"front": "#1f77b4", "catalog": "#d62728", "cart": "#2ca02c", "recommend": "#9467bd"}


# ---------------------------------------------------------------- traces, oracle

def read_trace(name: str) -> list[tuple[float, float]]:
    points = []
    for line in (TRACES / f"{name}.trace").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            t, r = line.split()
            points.append((float(t), float(r)))
    return points


def rate_at(points: list[tuple[float, float]], t: float) -> float:
    for (t0, r0), (t1, r1) in zip(points, points[1:]):
        if t0 <= t < t1:
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
    return points[-1][1]


def trace_rates(points: list[tuple[float, float]], scale: float) -> list[float]:
    """Offered rate in each second of the scaled trace."""
    end = points[-1][0] * scale
    return [rate_at(points, (s + 0.5) / scale) for s in range(int(math.ceil(end)))]


def steps(points: list[tuple[float, float]], scale: float) -> list[tuple[float, float, float]]:
    """The trace's steps (two points at one second): (second, rate before, after)."""
    return [(t0 * scale, r0, r1) for (t0, r0), (t1, r1) in zip(points, points[1:]) if t0 == t1 and r0 != r1]


def bursting(unix_s: float) -> bool:
    return int(unix_s) % BURST_PERIOD_S < BURST_LEN_S


def need(service: str, rate: float, burst: bool) -> int:
    spec = APP[service]
    cost = spec["burst_ms"] if burst else spec["cost_ms"]
    return max(1, math.ceil(rate * cost / 1000.0 / (spec["cpus"] * ORACLE_UTIL) - 1e-9))


def oracle(rates: list[float], t0_unix: float | None) -> dict[str, list[int]]:
    """Fewest replicas per service and second whose CPU demand stays under
    ORACLE_UTIL of their limit. Bursts of oc-recommend fall on the wall
    clock: known only once the run's zero is (t0_unix); before, the burst
    cost is assumed at every second (sizing for the worst case)."""
    return {s: [need(s, r, True if t0_unix is None else bursting(t0_unix + i)) for i, r in enumerate(rates)]
            for s in SERVICES}


def fixed_counts(points: list[tuple[float, float]], scale: float, kind: str) -> dict[str, int]:
    rates = trace_rates(points, scale)
    if kind == "peak":
        return {s: max(need(s, r, True) for r in rates) for s in SERVICES}
    mean = statistics.fmean(rates)
    duty = BURST_LEN_S / BURST_PERIOD_S
    out = {}
    for s in SERVICES:
        cost = APP[s]["cost_ms"] * (1 - duty) + APP[s]["burst_ms"] * duty
        out[s] = max(1, math.ceil(mean * cost / 1000.0 / (APP[s]["cpus"] * ORACLE_UTIL) - 1e-9))
    return out


# ---------------------------------------------------------------- the application

def load_configs() -> dict[str, dict]:
    return {k: v for k, v in json.loads(CONFIGS.read_text()).items() if not k.startswith("_")}


def service_labels(config: dict, service: str) -> dict[str, str]:
    labels = {"enable": "true", "policy": config["policy"], "min": "1", "max": str(MAX_REPLICAS)}
    labels.update(config.get("labels", {}))
    labels.update(config.get("service_labels", {}).get(service, {}))
    return {(k if k.startswith("autoscale.") else f"autoscale.{k}"): str(v) for k, v in labels.items()}


def remove_app() -> None:
    names = [n for n in run("docker", "service", "ls", "--format", "{{.Name}}", check=False).splitlines()
             if n.startswith(PREFIX)]
    if names:
        run("docker", "service", "rm", *names, check=False)
    run("docker", "rm", "-f", f"{PREFIX}loadgen", check=False)
    deadline = time.time() + 60
    while time.time() < deadline and any(s.startswith(PREFIX) for s in containers().values()):
        time.sleep(0.5)


def ensure_network() -> None:
    if subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True).returncode != 0:
        run("docker", "network", "create", "-d", "overlay", "--attachable", NETWORK)


def deploy(labels: dict[str, dict[str, str]], replicas: dict[str, int]) -> None:
    remove_app()
    ensure_network()
    for s in SERVICES:
        spec = APP[s]
        cmd = ["docker", "service", "create", "--detach", "--quiet", "--name", PREFIX + s, "--network", NETWORK,
               "--endpoint-mode", "dnsrr", "--replicas", str(replicas[s]), "--limit-cpu", str(spec["cpus"]),
               "--limit-memory", spec["memory"], "--stop-grace-period", "1s"]
        for k, v in spec["env"].items():
            cmd += ["--env", f"{k}={v}"]
        for k, v in labels.get(s, {}).items():
            cmd += ["--label", f"{k}={v}"]
        run(*cmd, IMAGE)
    deadline = time.time() + 180
    while time.time() < deadline:
        counts = running_counts()
        if all(counts.get(s, 0) == replicas[s] for s in SERVICES):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the application did not start: {running_counts()}")


def containers() -> dict[str, str]:
    """Running containers: full id -> service name."""
    out = run("docker", "ps", "--no-trunc", "--format", '{{.ID}} {{.Label "com.docker.swarm.service.name"}}',
              check=False)
    return {p[0]: p[1] for p in (line.split() for line in out.splitlines()) if len(p) == 2}


def running_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in containers().values():
        if name.startswith(PREFIX):
            counts[name[len(PREFIX):]] = counts.get(name[len(PREFIX):], 0) + 1
    return counts


def cpu_ns(cid: str) -> int | None:
    """A container's cgroup CPU usage, in ns (v1 cpuacct, v2 hybrid or systemd)."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1),
                        (f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage", 1),
                        (f"/sys/fs/cgroup/unified/docker/{cid}/cpu.stat", 1000),
                        (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1000),
                        (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", 1000)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if scale == 1:
            return int(text.strip())
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) * 1000
    return None


class Sampler:
    """Every second: running and desired replicas per service, and the
    cumulative CPU time of each service's containers."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, dict[str, int], dict[str, int], dict[str, float]]] = []
        self.first: dict[str, int] = {}
        self.last: dict[str, tuple[str, int]] = {}
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.baseline()
        self.thread.start()

    def baseline(self) -> None:
        for cid, name in containers().items():
            if name.startswith(PREFIX) and (v := cpu_ns(cid)) is not None:
                self.first[cid] = v

    def _loop(self) -> None:
        while not self.stop_flag.is_set():
            t = time.time()
            running: dict[str, int] = {}
            for cid, name in containers().items():
                if not name.startswith(PREFIX) or name == f"{PREFIX}loadgen":
                    continue
                s = name[len(PREFIX):]
                running[s] = running.get(s, 0) + 1
                v = cpu_ns(cid)
                if v is not None:
                    self.first.setdefault(cid, 0)  # started after the baseline: all its CPU counts
                    self.last[cid] = (s, v)
            desired = {}
            for line in run("docker", "service", "ls", "--format", "{{.Name}} {{.Replicas}}", check=False).splitlines():
                name, _, reps = line.partition(" ")
                if name.startswith(PREFIX) and "/" in reps:
                    desired[name[len(PREFIX):]] = int(reps.split("/")[1].split()[0])
            cpu: dict[str, float] = {s: 0.0 for s in SERVICES}
            for cid, (s, v) in self.last.items():
                cpu[s] = cpu.get(s, 0.0) + (v - self.first.get(cid, 0)) / 1e9
            self.rows.append((t, running, desired, cpu))
            self.stop_flag.wait(max(0.0, 1.0 - (time.time() - t)))

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=10)


class Daemon:
    def __init__(self, flags: list[str], policies: Path, workdir: Path):
        self.audit = workdir / "audit.jsonl"
        self.logfile = workdir / "host.log"
        self.audit.unlink(missing_ok=True)
        cmd = [str(HOST), "--policies", str(policies), "--audit-log", str(self.audit), "--metrics-addr", "", *flags]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"),
                                     env=dict(os.environ, RUST_LOG="info"))
        time.sleep(4)
        if self.proc.poll() is not None:
            raise RuntimeError(f"host exited at start; see {self.logfile}")

    def records(self) -> list[dict]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- one run

@dataclass
class Run:
    trace: str
    autoscaler: str
    index: int
    figures: dict = field(default_factory=dict)
    seconds: list[dict] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    replicas: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    oracle: dict[str, list[int]] = field(default_factory=dict)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def one_run(trace: str, name: str, config: dict, index: int, scale: float, work: Path) -> Run:
    points = read_trace(trace)
    rundir = work / f"{trace}.{name}.{index}"
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    shutil.copy(TRACES / f"{trace}.trace", rundir / "trace")
    fixed = config.get("fixed")
    if fixed:
        replicas = fixed_counts(points, scale, fixed)
        labels: dict[str, dict[str, str]] = {}
    else:
        replicas = {s: 1 for s in SERVICES}
        labels = {s: service_labels(config, s) for s in SERVICES}
    log(f"{trace} x {name} #{index}: deploying {replicas}")
    deploy(labels, replicas)
    daemon = None
    if not fixed:
        policies = ROOT / config.get("policies_dir", "policies")
        daemon = Daemon(config.get("daemon", []), policies, rundir)
    time.sleep(6)  # the daemon's inventory, and a few idle samples
    load_before = loadavg()
    sampler = Sampler()
    log(f"{trace} x {name} #{index}: playing {points[-1][0] * scale:.0f} s, load average {load_before}")
    try:
        done = subprocess.run(
            ["docker", "run", "--rm", "--name", f"{PREFIX}loadgen", "--network", NETWORK, "-v", f"{rundir}:/out",
             "--entrypoint", "/loadgen", IMAGE, "--trace", "/out/trace", "--target", f"{PREFIX}front:8080",
             "--time-scale", str(scale), "--timeout-ms", str(TIMEOUT_MS), "--out", "/out/requests.csv"],
            text=True, capture_output=True, timeout=points[-1][0] * scale + 120)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
        log(done.stderr.strip().splitlines()[-1])
    finally:
        sampler.stop()
        if daemon:
            daemon.stop()
    load_after = loadavg()
    records = daemon.records() if daemon else []
    result = analyse(trace, name, index, scale, points, rundir, sampler, records)
    result.figures["load_avg"] = f"{load_before} -> {load_after}"
    return result


def analyse(trace: str, name: str, index: int, scale: float, points: list[tuple[float, float]], rundir: Path,
            sampler: Sampler, records: list[dict]) -> Run:
    lines = (rundir / "requests.csv").read_text().splitlines()
    t0 = int(lines[0].split("=", 1)[1]) / 1000.0
    reqs = []
    for row in csv.DictReader(lines[1:]):
        ok = row["status"] == "200"
        lat = float(row["latency_ms"]) if ok else max(float(row["latency_ms"]), TIMEOUT_MS)
        reqs.append((float(row["sched_ms"]) / 1000.0, lat, ok))
    rates = trace_rates(points, scale)
    duration = len(rates)
    r = Run(trace, name, index)
    r.oracle = oracle(rates, t0)
    # Per second of the schedule.
    by_second: list[list[tuple[float, bool]]] = [[] for _ in range(duration)]
    for sched, lat, ok in reqs:
        by_second[min(int(sched), duration - 1)].append((lat, ok))
    good = []
    for s, items in enumerate(by_second):
        lats = sorted(lat for lat, _ in items)
        bad = sum(1 for lat, ok in items if not ok or lat > SLO_MS)
        r.seconds.append({"second": s, "offered_rps": round(rates[s], 2), "requests": len(items),
                          "failed": sum(1 for _, ok in items if not ok), "over_slo": bad,
                          "p99_ms": round(quantile(lats, 0.99), 1) if lats else ""})
        good.append(not items or bad / len(items) <= GOOD_SECOND_SHARE)
    # Replicas and CPU from the sampler, on the run's clock.
    samples = [(t - t0, run_, des, cpu) for t, run_, des, cpu in sampler.rows]
    for sec in r.seconds:
        s = sec["second"]
        near = min(samples, key=lambda x: abs(x[0] - s)) if samples else (0, {}, {}, {})
        for svc in SERVICES:
            sec[f"{svc}_running"] = near[1].get(svc, 0)
            sec[f"{svc}_desired"] = near[2].get(svc, 0)
            sec[f"{svc}_oracle"] = r.oracle[svc][s]
    r.replicas = [(t, run_) for t, run_, _, _ in samples]
    inside = [x for x in samples if 0 <= x[0] <= duration]
    replica_s = {svc: 0.0 for svc in SERVICES}
    for (ta, ra, _, _), (tb, _, _, _) in zip(inside, inside[1:]):
        for svc in SERVICES:
            replica_s[svc] += ra.get(svc, 0) * (tb - ta)
    if inside:  # the first and last partial seconds
        span = inside[-1][0] - inside[0][0]
        for svc in SERVICES:
            replica_s[svc] *= duration / span if span > 0 else 1
    cpu_s = {svc: (inside[-1][3].get(svc, 0.0) - inside[0][3].get(svc, 0.0)) if inside else 0.0 for svc in SERVICES}
    # Decisions.
    applied = [rec for rec in records if rec.get("outcome") == "applied" and rec.get("to") != rec.get("from")]
    reversals = 0
    last: dict[str, tuple[float, int]] = {}
    for rec in sorted(applied, key=lambda x: x["time_unix_ms"]):
        svc = rec["service"][len(PREFIX):] if rec["service"].startswith(PREFIX) else rec["service"]
        t = rec["time_unix_ms"] / 1000.0 - t0
        direction = 1 if rec["to"] > rec["from"] else -1
        if svc in last and last[svc][1] == -direction and t - last[svc][0] <= 60:
            reversals += 1
        last[svc] = (t, direction)
        r.actions.append({"t": round(t, 2), "service": svc, "from": rec["from"], "to": rec["to"],
                          "reason": rec.get("reason", "")})
    # Time from each step of the trace until the SLO holds again.
    recoveries = []
    step_list = steps(points, scale)
    for i, (ts, before, after) in enumerate(step_list):
        end = step_list[i + 1][0] if i + 1 < len(step_list) else duration
        start, stop = int(ts), int(end)
        back = None
        for s in range(start, stop):
            window = good[s:min(s + HOLD_S, stop)]
            if window and all(window):
                back = max(0.0, s - ts)
                break
        recoveries.append(back if back is not None else float(stop - start))
    lats = sorted(lat for _, lat, _ in reqs)
    n = len(reqs)
    over = sum(1 for _, lat, ok in reqs if not ok or lat > SLO_MS)
    oracle_rs = sum(sum(v) for v in r.oracle.values())
    r.figures = {
        "trace": trace, "autoscaler": name, "run": index, "time_scale": scale, "duration_s": duration,
        "requests": n, "failed": sum(1 for _, _, ok in reqs if not ok),
        "over_slo_pct": round(100.0 * over / n, 3) if n else 0.0,
        "p50_ms": round(quantile(lats, 0.5), 1), "p99_ms": round(quantile(lats, 0.99), 1),
        "p999_ms": round(quantile(lats, 0.999), 1),
        "replica_s": round(sum(replica_s.values()), 1),
        **{f"replica_s_{svc}": round(replica_s[svc], 1) for svc in SERVICES},
        "oracle_replica_s": oracle_rs,
        "cpu_s": round(sum(cpu_s.values()), 1),
        **{f"cpu_ms_per_req_{svc}": round(1000 * cpu_s[svc] / n, 2) if n else 0.0 for svc in SERVICES},
        "actions": len(applied), "reversals_60s": reversals,
        "seconds_out_of_slo": sum(1 for g in good if not g),
        "recovery_s_max": round(max(recoveries), 1) if recoveries else "",
        "recovery_s": " ".join(f"{x:g}" for x in recoveries),
    }
    return r


def quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


# ---------------------------------------------------------------- output

def write_run(r: Run, out: Path) -> None:
    stem = out / f"{r.trace}.{r.autoscaler}.{r.index}"
    with open(f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(r.seconds[0]))
        w.writeheader()
        w.writerows(r.seconds)
    if r.actions:
        with open(f"{stem}.actions.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(r.actions[0]))
            w.writeheader()
            w.writerows(r.actions)
    Path(f"{stem}.svg").write_text(timeline_svg(r))
    Path(f"{stem}.json").write_text(json.dumps(r.figures, indent=1) + "\n")


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def timeline_svg(r: Run) -> str:
    """Load and p99 per second (top), replicas per service with the oracle's
    total and the applied decisions (bottom)."""
    w, left, right = 960, 60, 60
    top_h, bot_h, gap = 200, 220, 50
    dur = max(1, len(r.seconds))
    x = lambda s: left + (w - left - right) * s / dur  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{top_h + bot_h + gap + 90}" '
             f'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="16" font-size="13">{esc(r.trace)} x {esc(r.autoscaler)} (run {r.index}): '
             f'{r.figures["over_slo_pct"]}% over {SLO_MS:g} ms or failed, p99 {r.figures["p99_ms"]} ms, '
             f'{r.figures["replica_s"]} replica-s (oracle {r.figures["oracle_replica_s"]})</text>']
    y0 = 30
    max_rate = max(s["offered_rps"] for s in r.seconds) * 1.1 or 1
    yr = lambda v: y0 + top_h - top_h * v / max_rate  # noqa: E731
    # p99 on a log scale, 10 ms to 10 s, right axis.
    yl = lambda ms: y0 + top_h - top_h * (math.log10(min(max(ms, 10), 10000)) - 1) / 3  # noqa: E731
    parts.append(f'<rect x="{left}" y="{y0}" width="{w - left - right}" height="{top_h}" fill="none" stroke="#999"/>')
    for ms in (10, 100, 1000, 10000):
        parts.append(f'<text x="{w - right + 4}" y="{yl(ms) + 4:.1f}" fill="#e6550d">{ms:g} ms</text>')
    parts.append(f'<line x1="{left}" x2="{w - right}" y1="{yl(SLO_MS):.1f}" y2="{yl(SLO_MS):.1f}" '
                 f'stroke="#e6550d" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{left + 4}" y="{yl(SLO_MS) - 3:.1f}" fill="#e6550d">SLO {SLO_MS:g} ms</text>')
    for v in (0, max_rate / 2, max_rate / 1.1):
        parts.append(f'<text x="{left - 4}" y="{yr(v) + 4:.1f}" text-anchor="end">{v:.0f}/s</text>')
    pts = " ".join(f"{x(s['second']):.1f},{yr(s['offered_rps']):.1f}" for s in r.seconds)
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#555" stroke-width="1.5"/>')
    p99 = " ".join(f"{x(s['second']):.1f},{yl(s['p99_ms']):.1f}" for s in r.seconds if s["p99_ms"] != "")
    parts.append(f'<polyline points="{p99}" fill="none" stroke="#e6550d" stroke-width="1"/>')
    for s in r.seconds:
        if s["failed"]:
            parts.append(f'<rect x="{x(s["second"]):.1f}" y="{y0}" width="{max(1.0, x(1) - x(0)):.1f}" height="4" '
                         f'fill="#000"/>')
    parts.append(f'<text x="{left}" y="{y0 + top_h + 14}">grey: offered load (req/s, left); orange: p99 per second '
                 f'(log, right); black ticks: seconds with failures</text>')
    y1 = y0 + top_h + gap
    max_rep = max([MAX_REPLICAS] + [sum(s[f"{svc}_running"] for svc in SERVICES) for s in r.seconds]) + 1
    yp = lambda v: y1 + bot_h - bot_h * v / max_rep  # noqa: E731
    parts.append(f'<rect x="{left}" y="{y1}" width="{w - left - right}" height="{bot_h}" fill="none" stroke="#999"/>')
    for v in range(0, max_rep + 1, 2):
        parts.append(f'<text x="{left - 4}" y="{yp(v) + 4:.1f}" text-anchor="end">{v}</text>')
    total = " ".join(f"{x(s['second']):.1f},{yp(sum(s[f'{svc}_running'] for svc in SERVICES)):.1f}" for s in r.seconds)
    parts.append(f'<polyline points="{total}" fill="none" stroke="#000" stroke-width="1.5"/>')
    orc = " ".join(f"{x(s['second']):.1f},{yp(sum(s[f'{svc}_oracle'] for svc in SERVICES)):.1f}" for s in r.seconds)
    parts.append(f'<polyline points="{orc}" fill="none" stroke="#000" stroke-dasharray="3 3"/>')
    for svc in SERVICES:
        pts = []
        for s in r.seconds:
            pts.append(f"{x(s['second']):.1f},{yp(s[f'{svc}_running']):.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{COLORS[svc]}" stroke-width="1.5"/>')
    for a in r.actions:
        up = a["to"] > a["from"]
        ax, ay = x(a["t"]), yp(a["to"])
        tri = f"{ax - 4:.1f},{ay + 6:.1f} {ax + 4:.1f},{ay + 6:.1f} {ax:.1f},{ay - 2:.1f}" if up else \
            f"{ax - 4:.1f},{ay - 6:.1f} {ax + 4:.1f},{ay - 6:.1f} {ax:.1f},{ay + 2:.1f}"
        parts.append(f'<polygon points="{tri}" fill="{COLORS.get(a["service"], "#000")}">'
                     f'<title>{esc(a["service"])} {a["from"]} -&gt; {a["to"]}: {esc(a["reason"])}</title></polygon>')
    ly = y1 + bot_h + 16
    legend = [("total running", "#000")] + [(svc, COLORS[svc]) for svc in SERVICES]
    lx = left
    for label, color in legend:
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{ly}">{label}</text>')
        lx += 110
    parts.append(f'<text x="{lx}" y="{ly}">dashed: oracle total; triangles: applied decisions</text>')
    parts.append(f'<text x="{left}" y="{ly + 18}">replicas running per service; x: seconds of the trace '
                 f'(0 to {dur} s)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


SUMMARY_FIELDS = ["trace", "autoscaler", "runs", "over_slo_pct", "failed", "p50_ms", "p99_ms", "p999_ms",
                  "replica_s", "oracle_replica_s", "cpu_s", "actions", "reversals_60s", "seconds_out_of_slo",
                  "recovery_s_max", "load_avg"]


def summarise(runs: list[Run]) -> list[dict]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.trace, r.autoscaler), []).append(r)
    rows = []
    for (trace, name), rs in groups.items():
        row: dict = {"trace": trace, "autoscaler": name, "runs": len(rs)}
        for k in SUMMARY_FIELDS[3:-1]:
            vals = [x.figures[k] for x in rs if x.figures.get(k, "") != ""]
            row[k] = round(statistics.median(vals), 3) if vals else ""
        row["load_avg"] = "; ".join(x.figures["load_avg"] for x in rs)
        rows.append(row)
    return rows


def summary_svg(rows: list[dict]) -> str:
    """Per trace, one bar per autoscaler: share over the SLO (left) and
    replica-seconds with the oracle's as a line (right)."""
    traces = list(dict.fromkeys(r["trace"] for r in rows))
    bar, w = 16, 960
    height = 40 + sum(30 + bar * sum(1 for r in rows if r["trace"] == t) for t in traces)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" '
             f'font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="10" y="16" font-size="13">Requests over {SLO_MS:g} ms or failed (%, left) and '
             f'replica-seconds (right; the line is the oracle), medians</text>']
    y = 40
    max_over = max([float(r["over_slo_pct"] or 0) for r in rows] + [1.0])
    max_rs = max([float(r["replica_s"] or 0) for r in rows] + [float(r["oracle_replica_s"] or 0) for r in rows] + [1])
    lx, lw, rx, rw = 170, 300, 600, 300
    for t in traces:
        parts.append(f'<text x="10" y="{y + 12}" font-weight="bold">{esc(t)}</text>')
        y += 18
        for r in (r for r in rows if r["trace"] == t):
            over, rs = float(r["over_slo_pct"] or 0), float(r["replica_s"] or 0)
            parts.append(f'<text x="{lx - 6}" y="{y + 11}" text-anchor="end">{esc(r["autoscaler"])}</text>')
            parts.append(f'<rect x="{lx}" y="{y + 2}" width="{lw * over / max_over:.1f}" height="{bar - 4}" '
                         f'fill="#e6550d"/><text x="{lx + lw * over / max_over + 4:.1f}" y="{y + 11}">{over:g}%</text>')
            parts.append(f'<rect x="{rx}" y="{y + 2}" width="{rw * rs / max_rs:.1f}" height="{bar - 4}" '
                         f'fill="#3182bd"/><text x="{rx + rw * rs / max_rs + 4:.1f}" y="{y + 11}">{rs:g}</text>')
            orc = float(r["oracle_replica_s"] or 0)
            parts.append(f'<line x1="{rx + rw * orc / max_rs:.1f}" x2="{rx + rw * orc / max_rs:.1f}" y1="{y}" '
                         f'y2="{y + bar}" stroke="#000"/>')
            y += bar
        y += 12
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def markdown(rows: list[dict]) -> str:
    head = ("| trace | autoscaler | runs | over SLO or failed | failed | p50 | p99 | p99.9 | replica-s (oracle) "
            "| CPU-s | actions | reversals < 60 s | s out of SLO | back within SLO after a step (max) "
            "| load average |\n|" + "---|" * 15)
    lines = [head]
    for r in rows:
        lines.append(f"| {r['trace']} | {r['autoscaler']} | {int(r['runs'])} | {r['over_slo_pct']}% | {r['failed']:g} "
                     f"| {r['p50_ms']:g} ms | {r['p99_ms']:g} ms | {r['p999_ms']:g} ms "
                     f"| {r['replica_s']:g} ({r['oracle_replica_s']:g}) | {r['cpu_s']:g} | {r['actions']:g} "
                     f"| {r['reversals_60s']:g} | {r['seconds_out_of_slo']:g} | "
                     f"{'' if r['recovery_s_max'] == '' else format(r['recovery_s_max'], 'g') + ' s'} "
                     f"| {r['load_avg']} |")
    return "\n".join(lines)


def update_doc(body: str) -> None:
    doc = ROOT / "docs" / "evaluation.md"
    text = doc.read_text()
    begin, end = "<!-- outcomes:begin -->", "<!-- outcomes:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


# ---------------------------------------------------------------- commands

def prepare() -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
    subprocess.run(["cargo", "build", "--release", "-p", "host", "--quiet"], cwd=ROOT, env=env, check=True)
    subprocess.run([str(ROOT / "policies/build.sh")], env=env, check=True)
    subprocess.run([str(ROOT / "examples/app/build-image.sh")], env=env, check=True)


def take_lock() -> object:
    f = open(os.environ.get("SWARM_AUTOSCALER_TEST_LOCK", "/tmp/swarm-autoscaler-tests.lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another test run holds the test lock; waiting for it")
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def print_oracle(trace: str, scale: float) -> None:
    points = read_trace(trace)
    rates = trace_rates(points, scale)
    orc = oracle(rates, None)
    print(f"oracle for {trace} (time scale {scale:g}, {len(rates)} s; bursts of recommend assumed everywhere): "
          f"{sum(sum(v) for v in orc.values())} replica-s")
    print(f"  fixed-peak: {fixed_counts(points, scale, 'peak')}  fixed-mean: {fixed_counts(points, scale, 'mean')}")


def write_summary(out: Path, rows: list[dict]) -> list[dict]:
    """Medians over every run's figures file in `out` (TRACE.AUTOSCALER.N.json),
    so that runs made one command at a time (--first-run 2, 3) add up to
    medians of 3; `rows` (this invocation's) and rows of summary.csv with no
    figures files fill in the rest. Writes summary.csv and summary.svg."""
    stored = summarise([Run(f["trace"], f["autoscaler"], int(f["run"]), figures=f)
                        for f in (json.loads(p.read_text()) for p in sorted(out.glob("*.json")))])
    done = {(r["trace"], r["autoscaler"]) for r in stored}
    rows = stored + [r for r in rows if (r["trace"], r["autoscaler"]) not in done]
    if (out / "summary.csv").exists():
        new = {(r["trace"], r["autoscaler"]) for r in rows}
        with open(out / "summary.csv", newline="") as f:
            kept = [{k: (float(v) if k not in ("trace", "autoscaler", "load_avg") and v != "" else v)
                     for k, v in r.items()} for r in csv.DictReader(f) if (r["trace"], r["autoscaler"]) not in new]
        rows = kept + rows
    rows.sort(key=lambda r: (r["trace"] != "step", r["trace"]))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
    (out / "summary.svg").write_text(summary_svg(rows))
    return rows


def document(out: Path, command: str, rows: list[dict]) -> None:
    """The summary table into docs/evaluation.md."""
    table = markdown(rows)
    print(table)
    rel = out.relative_to(ROOT / "docs") if out.is_relative_to(ROOT / "docs") else out
    update_doc(f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; medians over the runs counted in `runs` "
               f"({command}; `tests/evaluation/outcome.py summary --doc` rebuilds this table from every run's "
               f"figures file). SLO: {SLO_MS:g} ms per request at the front.\n\n{table}\n\n"
               f"![summary]({rel}/summary.svg)")


def run_matrix(traces: list[str], names: list[str], runs: int, scale: float, out: Path, work: Path,
               doc: bool, first: int = 1) -> list[dict]:
    configs = load_configs()
    unknown = [n for n in names if n not in configs]
    if unknown:
        sys.exit(f"unknown autoscalers {unknown}; see {CONFIGS}")
    out.mkdir(parents=True, exist_ok=True)
    all_runs = []
    try:
        for trace in traces:
            print_oracle(trace, scale)
            for i in range(first, first + runs):
                for name in names:
                    r = one_run(trace, name, configs[name], i, scale, work)
                    write_run(r, out)
                    log(json.dumps(r.figures))
                    all_runs.append(r)
    finally:
        remove_app()
    rows = write_summary(out, summarise(all_runs))
    if doc:
        document(out, f"`tests/evaluation/outcome.py run --traces {','.join(traces)} --autoscalers {','.join(names)} "
                      f"--runs {runs} --time-scale {scale:g} --doc`", rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["run", "smoke", "oracle", "list", "summary"])
    parser.add_argument("--traces", default="step,spike,ramp,diurnal,bursts")
    parser.add_argument("--trace", default="step", help="for oracle")
    parser.add_argument("--autoscalers", default="push-threshold,push-proportional,hpa,pull-5s,fixed-peak,fixed-mean")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first-run", type=int, default=1,
                        help="number the runs from here (run 2 and 3 later, one command each, into one median)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="0.5 plays every trace in half the time")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/swarm-autoscaler-outcomes"),
                        help="per-request records, audit logs, daemon logs")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/evaluation.md")
    parser.add_argument("--no-build", action="store_true", help="skip the builds")
    parser.add_argument("--lock-held", action="store_true", help="the caller holds the test lock (tests/run.sh)")
    args = parser.parse_args()
    if args.what == "list":
        for name, c in load_configs().items():
            print(f"{name}: {json.dumps(c)}")
        print("traces:", " ".join(sorted(p.stem for p in TRACES.glob("*.trace"))))
        return
    if args.what == "oracle":
        print_oracle(args.trace, args.time_scale)
        return
    if args.what == "summary":
        rows = write_summary(args.out, [])
        if args.doc:
            document(args.out, "runs made one command each", rows)
        else:
            print(markdown(rows))
        return
    if os.geteuid() != 0:
        sys.exit("outcome.py needs root: it loads eBPF programs and drives dockerd")
    lock = None if args.lock_held else take_lock()
    if not args.no_build:
        prepare()
    log(f"machine: {machine()}")
    if args.what == "smoke":
        out = args.work / "smoke"
        shutil.rmtree(out, ignore_errors=True)
        scale = 60.0 / read_trace("step")[-1][0]
        rows = run_matrix(["step"], ["push-proportional"], 1, scale, out, args.work, doc=False)
        missing = [k for k in SUMMARY_FIELDS if rows[0].get(k, "") == "" or
                   (isinstance(rows[0][k], float) and math.isnan(rows[0][k]))]
        files = [out / "summary.csv", out / "summary.svg", out / "step.push-proportional.1.csv",
                 out / "step.push-proportional.1.svg"]
        if missing or not all(f.exists() for f in files) or not rows[0]["replica_s"] > 0:
            sys.exit(f"smoke: figures missing {missing} or files missing {[str(f) for f in files if not f.exists()]}")
        print("smoke: the run completed and reported every figure")
    else:
        run_matrix(args.traces.split(","), args.autoscalers.split(","), args.runs, args.time_scale, args.out,
                   args.work, args.doc, args.first_run)
    del lock


if __name__ == "__main__":
    main()
