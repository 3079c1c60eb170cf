#!/usr/bin/env python3
"""Push versus pull, measured side by side on the real Swarm of this machine.

    tests/evaluation/evaluate.py scale-latency [--reps 10]
    tests/evaluation/evaluate.py overhead [--window 20]
    tests/evaluation/evaluate.py zero-to-one [--tries 20]
    tests/evaluation/evaluate.py multinode [--reps 10]
    tests/evaluation/evaluate.py all

scale-latency: for each mode (push: the eBPF probe; pull-15s and pull-5s: the
cgroupfs probe at those intervals, the Kubernetes HPA sync period and the
collection period of Reflex), repeat: one replica under steady low load, then
a step to heavy load, and time from load start to
  event         the threshold-crossing event (its kernel/probe timestamp),
  decision      the policy's decision,
  spec-updated  the service spec written with more replicas,
  task-running  the new task's container started,
  serving       the new replica answering HTTP requests.
Writes docs/evaluation/scale-latency.csv, docs/evaluation/scale-latency.svg and
the tables in docs/evaluation.md.

overhead: the daemon's CPU time and peak RSS over a fixed window, idle and
under load, with 1, 10 and 50 tracked containers, push versus pull at 1 s,
and the eBPF programs' own cost from kernel.bpf_stats_enabled. Writes
docs/evaluation/overhead.csv and its table in docs/evaluation.md.

zero-to-one: two services with autoscale.min=0 go idle: one is frozen
(autoscale.zero=freeze: its one replica paused), the other removed
(autoscale.zero=remove: 0 replicas, its port held by the kernel). Then a
client on 127.0.0.1 connects to each, sends a request and times connect ->
first byte of the response: for the frozen one that needs the kernel's wake
event, the daemon's unpause and the replica's answer; for the removed one
the kernel holds the connection attempt, the daemon scales the service back
to one replica through Swarm, and the client's SYN retransmit (about 1 s
after the first) reaches the new replica. The same request goes to an
unfrozen replica of a third service in the same run. Writes
docs/evaluation/zero-to-one.csv and its table in docs/evaluation.md.

multinode: the push mode's scale-latency stages for a service on the worker
of a 3-node test swarm (tests/cluster/up.sh 3; brought up and removed if
none runs): `host --cluster` on every node, in the node's network
namespace, the leader deciding on events the worker's agent forwarded.
Shown beside the single-node push figures of scale-latency.csv. Writes
docs/evaluation/multinode.csv and its table in docs/evaluation.md. Load goes
to the worker's address on the test swarm's bridge (10.77.0.4).

Runs as root (eBPF, dockerd). Only loopback traffic: the demo service runs
on the host network (SO_REUSEPORT) and load goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUT = DOCS / "evaluation"
SERVICE = "autoscale-eval"
PORT = 18080
IMAGE = os.environ.get("DEMO_IMAGE", "swarm-autoscaler-demo:local")
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
HOST = TARGET_DIR / "release" / "host"
# Load steps start at a random point of this span (the longest poll period).
PHASE_SPREAD_S = 15.0
STAGES = ["event", "decision", "spec-updated", "task-running", "serving"]
MODES = {
    "push": ["--probe", "ebpf"],
    "pull-15s": ["--probe", "cgroupfs", "--interval", "15s"],
    "pull-5s": ["--probe", "cgroupfs", "--interval", "5s"],
}
# Published means from Reflex's evaluation (github.com/r-ushil/swarm-autoscaler,
# evaluation/scale-latency/results/stats.csv): load start to scale-up decision,
# seconds. Theirs, measured elsewhere, shown beside ours for context only.
REFLEX_REFERENCE = {"Kubernetes HPA": 26.5, "Reflex (Go, push)": 7.7, "Knative": 4.7}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True, capture: bool = True) -> str:
    done = subprocess.run(cmd, check=False, text=True, capture_output=capture)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return (done.stdout or "").strip()


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    engine = run("docker", "version", "--format", "{{.Server.Version}}", check=False)
    return f"{cpu}, {os.cpu_count()} cores, kernel {platform.release()}, Docker Engine {engine}"


def prepare() -> None:
    """Everything the runs need, built and started (idempotent)."""
    if os.geteuid() != 0:
        sys.exit("evaluate.py needs root: it loads eBPF programs and drives dockerd")
    run(str(ROOT / "examples/setup.sh"), capture=False)
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
    subprocess.run(["cargo", "build", "--release", "-p", "host", "--quiet"], cwd=ROOT, env=env, check=True)
    subprocess.run([str(ROOT / "policies/build.sh")], env=env, check=True)
    subprocess.run([str(ROOT / "examples/demo/build-image.sh")], env=env, check=True)


def remove_service() -> None:
    run("docker", "service", "rm", SERVICE, check=False)
    deadline = time.time() + 60
    while time.time() < deadline and run("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}", check=False):
        time.sleep(0.5)


def create_service(labels: dict[str, str], replicas: int = 1) -> None:
    remove_service()
    cmd = ["docker", "service", "create", "--detach", "--quiet", "--name", SERVICE, "--network", "host",
           "--replicas", str(replicas), "--limit-cpu", "0.5", "--env", f"PORT={PORT}",
           "--stop-grace-period", "1s"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    run(*cmd, IMAGE)
    wait_running(replicas, timeout=180)


def running_containers() -> list[str]:
    out = run("docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={SERVICE}",
              "--filter", "status=running", check=False)
    return [line for line in out.splitlines() if line]


def wait_running(n: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(running_containers()) == n:
            return
        time.sleep(0.25)
    raise RuntimeError(f"{SERVICE}: {len(running_containers())} containers running, wanted {n}")


def scale(n: int) -> None:
    """Set the replicas by hand, as an operator would. A daemon still
    reacting to the last load step may move them again: retry until they
    settle at `n`."""
    for _ in range(5):
        run("docker", "service", "scale", "--detach", f"{SERVICE}={n}")
        try:
            wait_running(n, timeout=60)
            time.sleep(1)
            if len(running_containers()) == n:
                return
        except RuntimeError:
            pass
    raise RuntimeError(f"{SERVICE}: could not settle at {n} replicas")


def get(path: str, timeout: float = 2.0, host: str = "127.0.0.1") -> str | None:
    req = urllib.request.Request(f"http://{host}:{PORT}{path}", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode(errors="replace")
    except OSError:
        return None


class Daemon:
    """`host --policies ./policies` as a child process, with an audit log."""

    def __init__(self, name: str, flags: list[str], extra: list[str] | None = None,
                 prefix: list[str] | None = None, env: dict[str, str] | None = None):
        self.audit = OUT / f".audit-{name}.jsonl"
        self.logfile = OUT / f".host-{name}.log"
        self.audit.unlink(missing_ok=True)
        cmd = [*(prefix or []), str(HOST), "--policies", str(ROOT / "policies"), "--audit-log", str(self.audit),
               "--metrics-addr", "", *flags, *(extra or [])]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"),
                                     env=dict(os.environ, RUST_LOG="info", **(env or {})))
        time.sleep(4)  # load policies, probes and the Swarm inventory
        if self.proc.poll() is not None:
            raise RuntimeError(f"host exited at start; see {self.logfile}")

    def audit_records(self, offset: int) -> tuple[list[dict], int]:
        if not self.audit.exists():
            return [], offset
        with open(self.audit) as f:
            f.seek(offset)
            data = f.read()
        complete = data[: data.rfind("\n") + 1]
        records = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return records, offset + len(complete.encode())

    def audit_size(self) -> int:
        return self.audit.stat().st_size if self.audit.exists() else 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Load:
    """Requests to the demo service from a few threads until stopped."""

    def __init__(self, path: str, threads: int, pause: float, host: str = "127.0.0.1"):
        self.stop_flag = threading.Event()
        self.host = host
        self.threads = [threading.Thread(target=self._loop, args=(path, pause), daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _loop(self, path: str, pause: float) -> None:
        while not self.stop_flag.is_set():
            get(path, timeout=10, host=self.host)
            if pause:
                time.sleep(pause)

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=15)


class ContainerStarts:
    """Docker's event stream of this service's container starts, in CLOCK_MONOTONIC ns."""

    def __init__(self, service: str = SERVICE, docker_host: str | None = None):
        self.starts: list[tuple[int, str]] = []
        # Wall clock to monotonic: Docker reports wall-clock nanoseconds.
        self.offset = time.time_ns() - time.monotonic_ns()
        env = dict(os.environ, DOCKER_HOST=docker_host) if docker_host else None
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=start",
             "--filter", f"label=com.docker.swarm.service.name={service}", "--format", "{{.TimeNano}} {{.ID}}"],
            stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            wall, cid = line.split()
            self.starts.append((int(wall) - self.offset, cid))

    def first_after(self, t0: int, known: set[str]) -> tuple[int, str] | None:
        for mono, cid in list(self.starts):
            if mono >= t0 and cid not in known:
                return mono, cid
        return None

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@dataclass
class Results:
    """Seconds from load start, per mode and stage."""
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, mode: str, stage: str, seconds: float) -> None:
        self.samples.setdefault(mode, {}).setdefault(stage, []).append(seconds)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def one_repetition(daemon: Daemon, starts: ContainerStarts, results: Results, mode: str, timeout: float) -> None:
    scale(1)
    known = set(running_containers())
    low = Load("/", threads=1, pause=0.2)
    # Steady low load, for 3 s plus a random part of the longest poll
    # period: without it every repetition would start at the same phase of
    # the pull probe's timer and the pull figures would not be a fair sample.
    time.sleep(3 + random.uniform(0, PHASE_SPREAD_S))
    offset = daemon.audit_size()
    t0 = time.monotonic_ns()
    heavy = Load("/burn?ms=50", threads=6, pause=0.0)
    try:
        record = None
        deadline = time.monotonic() + timeout
        while record is None and time.monotonic() < deadline:
            records, offset = daemon.audit_records(offset)
            for r in records:
                if r.get("outcome") == "applied" and (r.get("to") or 0) > (r.get("from") or 0):
                    record = r
                    break
            time.sleep(0.01)
        if record is None:
            raise RuntimeError(f"{mode}: no scale-up within {timeout} s; see {daemon.logfile}")
        event_ns = record["event"]["timestamp_ns"]
        results.add(mode, "event", (event_ns - t0) / 1e9)
        results.add(mode, "decision", (event_ns + record["event_to_decision_us"] * 1000 - t0) / 1e9)
        results.add(mode, "spec-updated", (event_ns + record["event_to_outcome_us"] * 1000 - t0) / 1e9)
        started = None
        while started is None and time.monotonic() < deadline + 60:
            started = starts.first_after(t0, known)
            time.sleep(0.01)
        if started is None:
            raise RuntimeError(f"{mode}: the new task never started")
        results.add(mode, "task-running", (started[0] - t0) / 1e9)
        short = started[1][:12]
        while time.monotonic() < deadline + 120:
            body = get("/", timeout=1.0)
            if body and short in body:
                results.add(mode, "serving", (time.monotonic_ns() - t0) / 1e9)
                break
            time.sleep(0.005)
        log(f"{mode}: " + ", ".join(f"{s} {results.samples[mode][s][-1]:.3f}s" for s in STAGES if s in results.samples[mode]))
    finally:
        heavy.stop()
        low.stop()
        # Let the last windows drain so that the next reset is not answered
        # with a scale-up for load that has already stopped.
        time.sleep(2)


def scale_latency(reps: int) -> Results:
    labels = {
        "autoscale.enable": "true", "autoscale.policy": "threshold", "autoscale.min": "1", "autoscale.max": "3",
        "autoscale.cpu.upper": "0.6", "autoscale.cpu.lower": "0.02",
        "autoscale.cooldown.up": "0s", "autoscale.cooldown.down": "60m", "autoscale.step.max": "1",
    }
    create_service(labels)
    results = Results()
    starts = ContainerStarts()
    try:
        for mode, flags in MODES.items():
            log(f"mode {mode}: {reps} repetitions")
            daemon = Daemon(mode, flags)
            try:
                for _ in range(reps):
                    one_repetition(daemon, starts, results, mode, timeout=90)
            finally:
                daemon.stop()
    finally:
        starts.close()
        remove_service()
    return results


# --- multinode: a service on the worker of a 3-node test swarm --------------

CLUSTER_ENV = Path("/var/lib/swarm-autoscaler-cluster/cluster.env")
MULTI_SERVICE = "autoscale-eval-worker"
MULTI_MODE = "push, worker node"


def cluster_vars() -> dict[str, str]:
    return dict(line.split("=", 1) for line in CLUSTER_ENV.read_text().splitlines() if "=" in line)


def node_docker(vars: dict[str, str], k: int, *args: str, check: bool = True) -> str:
    return run("env", f"DOCKER_HOST={vars[f'NODE{k}_DOCKER_HOST']}", "docker", *args, check=check)


def worker_containers(vars: dict[str, str]) -> list[str]:
    out = node_docker(vars, 3, "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={MULTI_SERVICE}",
                      "--filter", "status=running", check=False)
    return [line for line in out.splitlines() if line]


def settle_worker(vars: dict[str, str], n: int) -> None:
    """Scale the worker's service by hand to `n` and wait until it runs so."""
    for _ in range(5):
        node_docker(vars, 1, "service", "scale", "--detach", f"{MULTI_SERVICE}={n}")
        deadline = time.time() + 60
        while time.time() < deadline and len(worker_containers(vars)) != n:
            time.sleep(0.25)
        time.sleep(1)
        if len(worker_containers(vars)) == n:
            return
    raise RuntimeError(f"{MULTI_SERVICE}: could not settle at {n} replicas")


def multinode_latency(reps: int) -> Results:
    """The push mode's stages for a service pinned to node3 (a worker)."""
    brought_up = False
    if not CLUSTER_ENV.exists():
        run(str(ROOT / "tests/cluster/up.sh"), "3", capture=False)
        brought_up = True
    vars = cluster_vars()
    if (vars.get("NODE1_ROLE"), vars.get("NODE3_ROLE")) != ("manager", "worker"):
        raise RuntimeError(f"the test swarm is not `up.sh 3`: {vars}")
    worker = vars["NODE3_ADDR"]
    token = OUT / ".cluster-token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    daemons = []
    results = Results()
    starts = None
    try:
        for k in (1, 2, 3):
            daemons.append(Daemon(f"node{k}", MODES["push"], ["--cluster", "--cluster-token-file", str(token)],
                                  prefix=["nsenter", f"--net=/var/run/netns/sacl-n{k}"],
                                  env={"DOCKER_HOST": vars[f"NODE{k}_DOCKER_HOST"]}))
        deadline = time.time() + 120
        while not all("connected to the decider" in d.logfile.read_text() for d in daemons):
            if time.time() > deadline:
                raise RuntimeError("the agents did not all connect; see docs/evaluation/.host-node*.log")
            time.sleep(0.25)
        labels = {
            "autoscale.enable": "true", "autoscale.policy": "threshold", "autoscale.min": "1", "autoscale.max": "3",
            "autoscale.cpu.upper": "0.6", "autoscale.cpu.lower": "0.02",
            "autoscale.cooldown.up": "0s", "autoscale.cooldown.down": "60m", "autoscale.step.max": "1",
        }
        node_docker(vars, 1, "service", "rm", MULTI_SERVICE, check=False)
        cmd = ["service", "create", "--detach", "--quiet", "--no-resolve-image", "--name", MULTI_SERVICE,
               "--network", "host", "--constraint", "node.hostname==node3", "--limit-cpu", "0.5",
               "--env", f"PORT={PORT}", "--stop-grace-period", "1s"]
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        node_docker(vars, 1, *cmd, IMAGE)
        starts = ContainerStarts(MULTI_SERVICE, vars["NODE3_DOCKER_HOST"])
        managers = daemons[:2]
        log(f"{MULTI_MODE}: {reps} repetitions")
        for _ in range(reps):
            settle_worker(vars, 1)
            known = set(worker_containers(vars))
            low = Load("/", threads=1, pause=0.2, host=worker)
            time.sleep(3 + random.uniform(0, 2))
            offsets = [d.audit_size() for d in managers]
            t0 = time.monotonic_ns()
            heavy = Load("/burn?ms=50", threads=6, pause=0.0, host=worker)
            try:
                record = None
                deadline = time.monotonic() + 90
                while record is None and time.monotonic() < deadline:
                    for i, d in enumerate(managers):
                        records, offsets[i] = d.audit_records(offsets[i])
                        record = record or next((r for r in records if r.get("outcome") == "applied"
                                                 and (r.get("to") or 0) > (r.get("from") or 0)), None)
                    time.sleep(0.01)
                if record is None:
                    raise RuntimeError(f"{MULTI_MODE}: no scale-up within 90 s; see docs/evaluation/.host-node*.log")
                # One kernel, one CLOCK_MONOTONIC: the event's timestamp (re-based
                # by the decider from its age) compares with t0 directly.
                event_ns = record["event"]["timestamp_ns"]
                results.add(MULTI_MODE, "event", (event_ns - t0) / 1e9)
                results.add(MULTI_MODE, "decision", (event_ns + record["event_to_decision_us"] * 1000 - t0) / 1e9)
                results.add(MULTI_MODE, "spec-updated", (event_ns + record["event_to_outcome_us"] * 1000 - t0) / 1e9)
                started = None
                while started is None and time.monotonic() < deadline + 60:
                    started = starts.first_after(t0, known)
                    time.sleep(0.01)
                if started is not None:
                    results.add(MULTI_MODE, "task-running", (started[0] - t0) / 1e9)
                    while time.monotonic() < deadline + 120:
                        body = get("/", timeout=1.0, host=worker)
                        if body and started[1][:12] in body:
                            results.add(MULTI_MODE, "serving", (time.monotonic_ns() - t0) / 1e9)
                            break
                        time.sleep(0.005)
                samples = results.samples[MULTI_MODE]
                log(f"{MULTI_MODE}: " + ", ".join(f"{s} {samples[s][-1]:.3f}s" for s in STAGES if s in samples))
            finally:
                heavy.stop()
                low.stop()
                time.sleep(2)
    finally:
        if starts:
            starts.close()
        node_docker(vars, 1, "service", "rm", MULTI_SERVICE, check=False)
        for d in daemons:
            d.stop()
        token.unlink(missing_ok=True)
        if brought_up:
            run(str(ROOT / "tests/cluster/down.sh"), check=False)
    return results


def write_multinode(results: Results, reps: int) -> str:
    """multinode.csv, and a table beside the single-node push figures."""
    rows = []
    for stage in STAGES:
        values = results.samples.get(MULTI_MODE, {}).get(stage, [])
        if values:
            rows.append([MULTI_MODE, stage, len(values), statistics.mean(values), statistics.median(values), p95(values)])
    with open(OUT / "multinode.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "stage", "n", "mean_s", "median_s", "p95_s"])
        for row in rows:
            w.writerow([row[0], row[1], row[2], f"{row[3]:.4f}", f"{row[4]:.4f}", f"{row[5]:.4f}"])
        f.write(f"# {machine()}; 3-node test swarm, service on the worker; {reps} repetitions; {time.strftime('%Y-%m-%d')}\n")
    single: dict[str, str] = {}
    csv_path = OUT / "scale-latency.csv"
    if csv_path.exists():
        for r in csv.reader(line for line in csv_path.read_text().splitlines() if not line.startswith("#")):
            if r and r[0] == "push":
                single[r[1]] = r[4]
    lines = ["| stage | single node, push: median s | worker of a 3-node swarm, push: median s (p95) | n |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[1]} | {single.get(r[1], 'n/a')} | {r[4]:.3f} ({r[5]:.3f}) | {r[2]} |")
    return "\n".join(lines)


def write_latency(results: Results, reps: int) -> list[list]:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in MODES:
        for stage in STAGES:
            values = results.samples.get(mode, {}).get(stage, [])
            if values:
                rows.append([mode, stage, len(values), statistics.mean(values), statistics.median(values), p95(values)])
    with open(OUT / "scale-latency.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "stage", "n", "mean_s", "median_s", "p95_s"])
        for row in rows:
            w.writerow([row[0], row[1], row[2], f"{row[3]:.4f}", f"{row[4]:.4f}", f"{row[5]:.4f}"])
        # The header stays the first line; the machine goes last, as a comment.
        f.write(f"# {machine()}; {reps} repetitions per mode; {time.strftime('%Y-%m-%d')}\n")
    write_chart(rows)
    return rows


def write_chart(rows: list[list]) -> None:
    """Grouped bars of median seconds per stage, one colour per mode (log scale)."""
    import math
    colours = {"push": "#2b8a3e", "pull-5s": "#e67700", "pull-15s": "#c92a2a"}
    width, height, left, bottom, top = 760, 360, 70, 60, 30
    plot_h = height - bottom - top
    medians = {(r[0], r[1]): r[4] for r in rows}
    lo, hi = 0.001, max([v for v in medians.values()] + [1.0]) * 1.5
    def y(v: float) -> float:
        v = max(v, lo)
        return top + plot_h * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
    group_w = (width - left - 20) / len(STAGES)
    bar_w = group_w / (len(MODES) + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="14">Load start to each stage, median seconds (log scale)</text>']
    tick = lo
    while tick <= hi:
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
        tick *= 10
    for i, stage in enumerate(STAGES):
        x0 = left + i * group_w
        for j, mode in enumerate(MODES):
            v = medians.get((mode, stage))
            if v is None:
                continue
            x = x0 + (j + 0.5) * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar_w * 0.9:.1f}" height="{top + plot_h - y(v):.1f}" fill="{colours[mode]}"><title>{mode} {stage}: {v:.3f} s</title></rect>')
        parts.append(f'<text x="{x0 + group_w / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle">{stage}</text>')
    for j, mode in enumerate(MODES):
        parts.append(f'<rect x="{left + j * 110}" y="{height - 22}" width="12" height="12" fill="{colours[mode]}"/>')
        parts.append(f'<text x="{left + j * 110 + 16}" y="{height - 12}">{mode}</text>')
    parts.append("</svg>")
    (OUT / "scale-latency.svg").write_text("\n".join(parts) + "\n")


def latency_markdown(rows: list[list], reps: int) -> str:
    lines = ["| mode | stage | n | mean s | median s | p95 s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} |")
    push = {r[1]: r for r in rows if r[0] == "push"}
    lines += ["", "Ratios pull / push (median; mean in brackets):", "",
              "| stage | pull-5s / push | pull-15s / push |", "|---|---|---|"]
    for stage in STAGES:
        cells = []
        for mode in ["pull-5s", "pull-15s"]:
            pull = next((r for r in rows if r[0] == mode and r[1] == stage), None)
            if pull and stage in push and push[stage][4] > 0:
                cells.append(f"{pull[4] / push[stage][4]:.1f}x ({pull[3] / push[stage][3]:.1f}x)")
            else:
                cells.append("n/a")
        lines.append(f"| {stage} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def bpf_stats() -> dict[str, float]:
    """ns per run of each of our programs, from bpftool with bpf_stats on."""
    out = run("bpftool", "prog", "show", "--json", check=False)
    stats = {}
    for prog in json.loads(out or "[]"):
        name = prog.get("name", "")
        if prog.get("run_cnt") and any(k in name for k in ("sched", "sock", "timer", "probe")):
            stats[name] = prog["run_time_ns"] / prog["run_cnt"]
    return stats


def overhead(window: float) -> list[list]:
    labels = {
        "autoscale.enable": "true", "autoscale.policy": "threshold", "autoscale.min": "1", "autoscale.max": "60",
        "autoscale.cpu.upper": "0.9", "autoscale.cpu.lower": "0.01",
    }
    rows = []
    create_service(labels, replicas=1)
    try:
        for n in (1, 10, 50):
            scale(n)
            for mode, flags in (("push", ["--probe", "ebpf"]), ("pull-1s", ["--probe", "cgroupfs", "--interval", "1s"])):
                run("sysctl", "-q", "kernel.bpf_stats_enabled=1")
                daemon = Daemon(f"overhead-{mode}-{n}", flags, ["--dry-run"])
                try:
                    for phase in ("idle", "load"):
                        load = Load("/burn?ms=20", threads=4, pause=0.05) if phase == "load" else None
                        before = daemon.cpu_seconds()
                        time.sleep(window)
                        cpu = daemon.cpu_seconds() - before
                        if load:
                            load.stop()
                        rows.append([mode, n, phase, window, cpu, cpu / window * 100, daemon.peak_rss_kib() / 1024])
                        log(f"overhead {mode} n={n} {phase}: {cpu / window * 100:.2f}% of a core, peak RSS {rows[-1][6]:.1f} MiB")
                    if mode == "push":
                        for name, ns in bpf_stats().items():
                            rows.append([f"bpf:{name}", n, "ns-per-run", 0, 0, ns, 0])
                finally:
                    daemon.stop()
                    run("sysctl", "-q", "kernel.bpf_stats_enabled=0", check=False)
    finally:
        remove_service()
    with open(OUT / "overhead.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "containers", "phase", "window_s", "cpu_s", "cpu_percent_of_core", "peak_rss_mib"])
        for r in rows:
            w.writerow([r[0], r[1], r[2], r[3], f"{r[4]:.3f}", f"{r[5]:.3f}", f"{r[6]:.1f}"])
        f.write(f"# {machine()}; window {window} s; {time.strftime('%Y-%m-%d')}\n")
    return rows


def overhead_markdown(rows: list[list]) -> str:
    lines = ["| probe | containers | phase | daemon CPU, % of a core | peak RSS MiB |", "|---|---|---|---|---|"]
    for r in rows:
        if not str(r[0]).startswith("bpf:"):
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[5]:.2f} | {r[6]:.1f} |")
    bpf = [r for r in rows if str(r[0]).startswith("bpf:")]
    if bpf:
        lines += ["", "eBPF programs' own cost (bpf_stats, average ns per run, during the push windows):", "",
                  "| program | containers | ns per run |", "|---|---|---|"]
        for r in bpf:
            lines.append(f"| {r[0][4:]} | {r[1]} | {r[5]:.0f} |")
    return "\n".join(lines)


ZERO_SERVICE, ZERO_PORT = "autoscale-eval-zero", 18094
REMOVE_SERVICE, REMOVE_PORT = "autoscale-eval-remove", 18095
WARM_SERVICE, WARM_PORT = "autoscale-eval-warm", 18096
# Idle to first response, seconds, as the issue quotes them: others'
# figures, measured elsewhere, for context only.
ZERO_REFERENCE = {"Knative (scale from zero)": 1.0, "Reflex (Swarm 0 -> 1)": 1.5, "KEDA": 2.0}


def service_containers(name: str) -> list[str]:
    out = run("docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={name}", check=False)
    return [line for line in out.splitlines() if line]


def create_named(name: str, port: int, labels: dict[str, str]) -> None:
    run("docker", "service", "rm", name, check=False)
    deadline = time.time() + 60
    while service_containers(name) and time.time() < deadline:
        time.sleep(0.5)
    cmd = ["docker", "service", "create", "--detach", "--quiet", "--name", name, "--network", "host",
           "--limit-cpu", "0.5", "--env", f"PORT={port}", "--stop-grace-period", "1s"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    run(*cmd, IMAGE)
    deadline = time.time() + 120
    while len(service_containers(name)) != 1 or first_byte(port) is None:
        if time.time() > deadline:
            raise RuntimeError(f"{name} did not start answering on port {port}")
        time.sleep(0.5)


def spec_replicas(name: str) -> int | None:
    out = run("docker", "service", "inspect", name, "--format", "{{.Spec.Mode.Replicated.Replicas}}", check=False)
    return int(out) if out.isdigit() else None


def paused(container: str) -> bool:
    return run("docker", "inspect", "--format", "{{.State.Paused}}", container, check=False) == "true"


def first_byte(port: int, timeout: float = 10.0) -> float | None:
    """Seconds from connect() to the first byte of the response, on a new
    connection to 127.0.0.1:port; None if it failed. Reads the whole answer."""
    import socket
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            first = conn.recv(1)
            took = time.perf_counter() - start
            while conn.recv(4096):
                pass
    except OSError:
        return None
    return took if first else None


def zero_to_one(tries: int) -> list[list]:
    """Frozen, removed and unfrozen: connect -> first byte, `tries` times each."""
    labels = {"autoscale.enable": "true", "autoscale.policy": "threshold", "autoscale.min": "0",
              "autoscale.max": "2", "autoscale.cpu.upper": "0.8", "autoscale.cpu.lower": "0.1",
              "autoscale.idle": "2s"}
    remove_service()
    create_named(ZERO_SERVICE, ZERO_PORT, labels)
    create_named(REMOVE_SERVICE, REMOVE_PORT,
                 {**labels, "autoscale.zero": "remove", "autoscale.port": str(REMOVE_PORT)})
    create_named(WARM_SERVICE, WARM_PORT, {})
    daemon = Daemon("zero", MODES["push"])
    rows: list[list] = []

    def at_zero() -> bool:
        frozen = service_containers(ZERO_SERVICE)
        return (len(frozen) == 1 and paused(frozen[0])
                and spec_replicas(REMOVE_SERVICE) == 0 and not service_containers(REMOVE_SERVICE))

    def last(records: list[dict], service: str, what: str, key: str) -> float | None:
        found = [r for r in records if r.get("zero") == what and r.get("service") == service]
        return found[-1][key] / 1000 if found and found[-1].get(key) is not None else None

    try:
        offset = daemon.audit_size()
        for i in range(tries):
            deadline = time.time() + 90
            while not at_zero():
                if time.time() > deadline:
                    raise RuntimeError(f"{ZERO_SERVICE} not frozen or {REMOVE_SERVICE} not removed within 90 s; "
                                       f"see {daemon.logfile}")
                time.sleep(0.1)
            time.sleep(random.uniform(0.2, 0.6))
            frozen = first_byte(ZERO_PORT)
            warm = first_byte(WARM_PORT)
            removed = first_byte(REMOVE_PORT, timeout=20.0)
            time.sleep(0.5)  # the woken and restored records reach the audit log
            records, offset = daemon.audit_records(offset)
            wake_ms, unpause_ms = (last(records, ZERO_SERVICE, "woken", k) for k in ("wake_us", "docker_us"))
            restore_ms, update_ms = (last(records, REMOVE_SERVICE, "restored", k) for k in ("wake_us", "docker_us"))
            if frozen is None or warm is None or removed is None:
                raise RuntimeError(f"try {i + 1}: a request failed (frozen {frozen}, removed {removed}, "
                                   f"unfrozen {warm}); see {daemon.logfile}")
            rows.append([i + 1, round(frozen * 1000, 2), round(warm * 1000, 2), wake_ms, unpause_ms,
                         round(removed * 1000, 1), restore_ms, update_ms])
            log(f"zero-to-one {i + 1}/{tries}: frozen {frozen * 1000:.1f} ms, removed {removed * 1000:.0f} ms, "
                f"unfrozen {warm * 1000:.2f} ms; kernel connection -> running {wake_ms} ms, unpause {unpause_ms} ms; "
                f"held attempt -> listening {restore_ms} ms, service update {update_ms} ms")
    finally:
        daemon.stop()
        for name in (ZERO_SERVICE, REMOVE_SERVICE, WARM_SERVICE):
            run("docker", "service", "rm", name, check=False)
    with open(OUT / "zero-to-one.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["try", "frozen_first_byte_ms", "unfrozen_first_byte_ms", "wake_ms", "unpause_ms",
                    "removed_first_byte_ms", "restore_ms", "restore_update_ms"])
        w.writerows(rows)
    return rows


def zero_markdown(rows: list[list]) -> str:
    def stats(col: int) -> str:
        values = [r[col] for r in rows if r[col] is not None]
        if not values:
            return "n/a | n/a | n/a"
        return f"{statistics.median(values):.1f} | {p95(values):.1f} | {max(values):.1f}"
    lines = ["| replica | median ms | p95 ms | max ms |", "|---|---|---|---|",
             f"| frozen (`autoscale.zero=freeze`): connect -> first byte | {stats(1)} |",
             f"| removed (`autoscale.zero=remove`): connect -> first byte | {stats(5)} |",
             f"| unfrozen replica, same run: connect -> first byte | {stats(2)} |",
             f"| frozen: kernel's connection -> Docker's unpause returned (audit `wake_us`) | {stats(3)} |",
             f"| frozen: Docker's unpause alone (audit `docker_us`) | {stats(4)} |",
             f"| removed: kernel's first held attempt -> new replica listening (audit `wake_us`) | {stats(6)} |",
             f"| removed: the service update 0 -> 1 alone (audit `docker_us`) | {stats(7)} |",
             "", "For context, idle to first response as published elsewhere (not measured here):", "",
             "| system | seconds |", "|---|---|"]
    lines += [f"| {name} | {secs} |" for name, secs in ZERO_REFERENCE.items()]
    return "\n".join(lines)


def update_doc(section: str, body: str) -> None:
    """Replace the block between markers in docs/evaluation.md."""
    doc = DOCS / "evaluation.md"
    text = doc.read_text() if doc.exists() else "# Evaluation\n"  # the prose around the blocks is kept
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["scale-latency", "overhead", "zero-to-one", "multinode", "all"])
    parser.add_argument("--tries", type=int, default=20, help="zero-to-one tries (default 20)")
    parser.add_argument("--reps", type=int, default=10, help="repetitions per mode (default 10)")
    parser.add_argument("--window", type=float, default=20.0, help="overhead window in seconds (default 20)")
    parser.add_argument("--no-build", action="store_true", help="skip setup and builds")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.no_build:
        prepare()
    log(f"machine: {machine()}")
    if args.what in ("scale-latency", "all"):
        results = scale_latency(args.reps)
        rows = write_latency(results, args.reps)
        table = latency_markdown(rows, args.reps)
        print(table)
        update_doc("scale-latency", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, {args.reps} repetitions per mode "
                   f"(`tests/evaluation/evaluate.py scale-latency`).\n\n{table}\n\n![load start to each stage, median seconds per mode](evaluation/scale-latency.svg)")
    if args.what in ("multinode", "all"):
        results = multinode_latency(args.reps)
        table = write_multinode(results, args.reps)
        print(table)
        update_doc("multinode", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, {args.reps} repetitions "
                   f"(`tests/evaluation/evaluate.py multinode`): load start to each stage for a service pinned to "
                   f"the worker of a 3-node test swarm (tests/cluster/up.sh 3), its events forwarded by the "
                   f"worker's agent to the leader, beside the single-node push figures of the scale-latency run.\n\n{table}")
    if args.what in ("overhead", "all"):
        rows = overhead(args.window)
        table = overhead_markdown(rows)
        print(table)
        update_doc("overhead", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, {args.window:g} s windows "
                   f"(`tests/evaluation/evaluate.py overhead`).\n\n{table}")
    if args.what in ("zero-to-one", "all"):
        rows = zero_to_one(args.tries)
        table = zero_markdown(rows)
        print(table)
        update_doc("zero-to-one", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, {args.tries} tries "
                   f"(`tests/evaluation/evaluate.py zero-to-one`): a client on 127.0.0.1 opens a new connection "
                   f"to each service, sends one request and times connect -> first byte of the response.\n\n{table}")


if __name__ == "__main__":
    main()
