"""The edge tier on this machine: `twinedge serve --network ... --hosts local` (the core
and one `twinedge host` process per edge site) fed by `twinedge devices`.

Measures, per offered load: reports acknowledged per second (each PUBACK after the host
process's durable commit) and publish -> PUBACK latency at the device (p50/p99, as the
emulator measures it), both over the reports published after a warm-up (``--warmup-s``,
20 s: every device connects to the core's broker, is redirected to its host and logs in
there, each login a password hash check; the whole run's figures are given too), the core's replication lag per host (host
commit -> committed in the core: p50/p99/max over the last 10,000 records, from
/healthz), and, with moving devices (``--speed-mps``), the live migrations between the
two host processes and their downtime (fence -> the target serves, measured by the core).

    python benchmarks/bench_edge.py                       # 2,000 and 10,000 reports/s offered
    python benchmarks/bench_edge.py --devices 100 --rates 10 --duration-s 5
    python benchmarks/bench_edge.py --rates 10 --duration-s 30 --speed-mps 150   # migrations under load
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CpuSampler:
    """CPU time (user + system, every thread) of a few processes, sampled twice a second
    from /proc; :meth:`percent` is each one's use of one core between two instants."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    def _cpu_s(self, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) * self._tick_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(
                (time.monotonic(), {k: self._cpu_s(p) for k, p in self.pids.items()})
            )
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def percent(self, t0: float, t1: float) -> dict[str, float]:
        """Per process: CPU seconds between the samples nearest ``t0`` and ``t1``, per
        wall second, in percent of one core."""
        a = min(self.samples, key=lambda s: abs(s[0] - t0))
        b = min(self.samples, key=lambda s: abs(s[0] - t1))
        span = b[0] - a[0]
        if span <= 0:
            return {}
        out = {k: round((b[1][k] - a[1][k]) / span * 100, 1) for k in self.pids}
        out["all"] = round(sum(out.values()), 1)
        return out


class Core:
    """A running core: its process, HTTP base URL, MQTT port and admin token."""

    def __init__(self, proc: subprocess.Popen, base: str, mqtt_port: int, token: str, data: Path):
        self.proc, self.base, self.mqtt_port, self.token = proc, base, mqtt_port, token
        self.data = data

    def gc_pauses(self) -> dict[str, Any]:
        """The cycle collections of the core and of each host process since each
        settled its heap (``twinedge.gcpauses``): per process and generation, how many
        and the longest, in ms."""
        out: dict[str, Any] = {}
        core_gc: dict[str, dict[str, float]] = {}
        text = httpx.get(self.base + "/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                gen = sample.labels.get("generation")
                if sample.name == "twinedge_gc_pauses_total":
                    core_gc.setdefault(gen, {})["count"] = int(sample.value)
                elif sample.name == "twinedge_gc_pause_max_seconds":
                    core_gc.setdefault(gen, {})["max_ms"] = round(sample.value * 1000, 2)
        out["core"] = core_gc
        token = (self.data / "hosts.token").read_text().strip()
        for ready in sorted((self.data / "hosts").glob("*/process.json")):
            port = json.loads(ready.read_text())["control_port"]
            status = httpx.get(
                f"http://127.0.0.1:{port}/status",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            ).json()
            out[ready.parent.name] = {
                g: {"count": v["count"], "max_ms": round(v["max_s"] * 1000, 2)}
                for g, v in status["gc"]["generations"].items()
            }
        return out


def log_tail(tmp: Path) -> str:
    """The end of the core's log (the temporary directory goes away with the run)."""
    return (tmp / "serve.log").read_text(errors="replace")[-2000:]


@contextlib.contextmanager
def core(tmp: Path, tag: str, extra_args: Sequence[str] = ()) -> Iterator[Core]:
    """`twinedge serve --network tmp/bench.yaml --hosts local` on free ports (its data in
    ``tmp/tag``; ``extra_args`` appended to its command line), once it answers /healthz;
    stopped with SIGTERM afterwards."""
    http, mqtt = free_port(), free_port()
    data = tmp / tag
    serve = subprocess.Popen(
        [sys.executable, "-m", "twinedge", "serve", "--network", str(tmp / "bench.yaml"), "--hosts", "local",
         "--cycle-s", "1", "--forecast-horizon-s", "0", "--data-dir", str(data),
         "--port", str(http), "--mqtt-port", str(mqtt), "--ledger", "none", *extra_args],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "w"), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(600):
            if serve.poll() is not None:
                break
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit(f"the core did not answer /healthz within 60 s:\n{log_tail(tmp)}")
        if serve.returncode is not None:
            raise SystemExit(f"the core exited with {serve.returncode}:\n{log_tail(tmp)}")
        yield Core(serve, base, mqtt, (data / "admin.token").read_text().strip(), data)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)


def scenario(devices: int, speed_mps: float = 0.0) -> str:
    sc = (HERE / "examples" / "two-sites.yaml").read_text()
    # the robots of the example network, as many as devices, spread over both sites;
    # moving between them at speed_mps (random waypoints) when it is above 0
    mobility = (
        f"{{model: random_waypoint, speed_mps: [{speed_mps}, {speed_mps}], pause_s: [0, 0]}}"
        if speed_mps > 0
        else "{model: static}"
    )
    sc = sc.replace(
        "    count: 0\n    mobility: {model: static}",
        f"    count: {devices}\n    mobility: {mobility}",
    )
    sc = sc.replace(
        "cpu_ghz: 10, mem_gb: 16", "cpu_ghz: 1000, mem_gb: 1600"
    )  # room for every robot
    return sc


# the steps of one cut-over, in order: (name, from mark, to mark); the core fences and
# adopts itself (two calls), or the target does both on its own (one call: cut-over)
PHASES = {
    "driver.fence-call": (
        ("to_source", "driver.fence-call", "source.fence-received"),
        ("source_queue", "source.fence-received", "source.fence-batch"),
        ("source_commit", "source.fence-batch", "source.fence-durable"),
        ("from_source", "source.fence-durable", "driver.fence-answer"),
        ("to_target", "driver.fence-answer", "target.adopt-received"),
        ("target_queue", "target.adopt-received", "target.adopt-batch"),
        ("target_commit", "target.adopt-batch", "target.adopt-durable"),
        ("from_target", "target.adopt-durable", "driver.adopt-answer"),
        ("downtime", "driver.fence-call", "driver.adopt-answer"),
    ),
    "driver.cutover-call": (
        ("core_to_target", "driver.cutover-call", "target.cutover-received"),
        ("to_source", "target.fence-call", "source.fence-received"),
        ("source_queue", "source.fence-received", "source.fence-batch"),
        ("source_commit", "source.fence-batch", "source.fence-durable"),
        ("from_source", "source.fence-durable", "target.fence-answer"),
        ("target_queue", "target.fence-answer", "target.adopt-batch"),
        ("target_commit", "target.adopt-batch", "target.adopt-durable"),
        ("target_to_core", "target.adopt-durable", "driver.cutover-answer"),
        ("downtime", "target.fence-call", "target.adopt-durable"),
        ("core_call", "driver.cutover-call", "driver.cutover-answer"),
    ),
}


def cpu_ms_per_report(percent: dict[str, float], reports_per_s: float) -> dict | None:
    """Each process's CPU per report in ms from its CPU in percent of a core (1 % is 10 ms
    of CPU per second); None when no report was acknowledged."""
    if not reports_per_s:
        return None
    return {k: round(v * 10 / reports_per_s, 3) for k, v in percent.items()}


def quantiles(values: Any, digits: int = 3) -> dict | None:
    """``{"p50", "p99", "mean"}`` of ``values`` rounded to ``digits``; None when empty."""
    x = np.asarray(values, dtype=float)
    if not x.size:
        return None
    return {
        "p50": round(float(np.percentile(x, 50)), digits),
        "p99": round(float(np.percentile(x, 99)), digits),
        "mean": round(float(x.mean()), digits),
    }


def phase_breakdown(trace_dir: Path, between: tuple[float, float] | None = None) -> dict | None:
    """Where the downtime of the live migrations went, from the phase marks every
    process wrote (see ``twinedge.edge.phases``): per step, p50 / p99 / mean in ms over
    the migrations whose every mark was found (and, with ``between``, whose first mark
    lies within those two ``time.monotonic()`` instants)."""
    marks: dict[str, list[tuple[float, str]]] = {}
    for f in trace_dir.glob("phases-*.jsonl"):
        for line in f.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                m = json.loads(line)
                marks.setdefault(m["twin"], []).append((float(m["t"]), m["event"]))
    steps: dict[str, list[float]] = {}
    for events in marks.values():
        events.sort()
        calls = [i for i, (_, e) in enumerate(events) if e in PHASES]
        for k, i in enumerate(calls):
            end = calls[k + 1] if k + 1 < len(calls) else len(events)
            first: dict[str, float] = {}
            for t, e in events[i:end]:
                first.setdefault(e, t)
            path = PHASES[events[i][1]]
            if between is not None and not between[0] <= events[i][0] <= between[1]:
                continue
            if all(a in first and b in first for _, a, b in path):
                for name, a, b in path:
                    steps.setdefault(name, []).append((first[b] - first[a]) * 1000.0)
    if not steps:
        return None
    out: dict = {"migrations": len(steps["downtime"])}
    for name, v in steps.items():
        out[name] = quantiles(v, 2)
    return out


def run(
    devices: int,
    rate_hz: float,
    duration_s: float,
    tmp: Path,
    speed_mps: float = 0.0,
    warmup_s: float = 0.0,
    phases: bool = False,
) -> dict:
    (tmp / "bench.yaml").write_text(scenario(devices, speed_mps))
    trace_dir = tmp / f"phases-{rate_hz}"
    if phases:  # the core and its host processes inherit it
        os.environ["TWINEDGE_MIGRATION_TRACE"] = str(trace_dir)
    with core(tmp, f"data-{rate_hz}") as c:
        serve, base, mqtt, token = c.proc, c.base, c.mqtt_port, c.token
        env = {**os.environ, "TWINEDGE_API_KEY": token}
        auth = {"Authorization": f"Bearer {token}"}
        pids = {"core": serve.pid}
        for h, pid in (
            (httpx.get(base + "/api/2/orchestrator", headers=auth).json().get("edge") or {}).get(
                "pids"
            )
            or {}
        ).items():
            pids[h] = int(pid)
        devices_proc = subprocess.Popen(
            [sys.executable, "-m", "twinedge", "devices", str(tmp / "bench.yaml"), "--count", str(devices),
             "--rate-hz", str(rate_hz), "--duration-s", str(warmup_s + duration_s),
             "--warmup-s", str(warmup_s), "--json",
             "--url", base, "--mqtt", f"mqtt://127.0.0.1:{mqtt}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        pids["devices"] = devices_proc.pid
        cpu = CpuSampler(pids)
        clock: list[float] = []  # when the devices' clock started (their progress line says)
        errors: list[str] = []

        def read_progress() -> None:
            assert devices_proc.stderr is not None
            for line in devices_proc.stderr:
                if "devices connecting to" in line and not clock:
                    clock.append(time.monotonic())
                errors.append(line)

        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        cpu.start()
        try:
            assert devices_proc.stdout is not None
            stdout = devices_proc.stdout.read()  # the summary, at the end
            devices_proc.wait(60)
        finally:
            cpu.stop()
        reader.join(10)
        try:  # exit 1 with a summary: some reports were still unacknowledged at the end
            summary = json.loads(stdout)
        except ValueError:
            raise SystemExit(f"twinedge devices failed: {''.join(errors)[-2000:]}") from None
        steady_s = (clock[0] + warmup_s, clock[0] + warmup_s + duration_s) if clock else None
        health = httpx.get(base + "/healthz", timeout=5).json()
        status = httpx.get(base + "/api/2/orchestrator", headers=auth).json()
    total = summary["total"]
    steady = total.get("steady") or {}
    edge = status.get("edge") or {}
    replication = health.get("replication") or {}
    lag = {h: r.get("lag") for h, r in replication.items()}
    return {
        "devices": devices,
        "offered_reports_per_s": devices * rate_hz,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "acked_after_warmup": steady.get("acked"),
        "acked_per_s": steady.get("acked_per_s"),
        "latency_ms": steady.get("latency_ms"),
        "acked_in_all": total.get("acked"),
        "latency_ms_in_all": total.get("latency_ms"),
        "unacked_at_end": total.get("unacked"),
        "device_errors": total.get("errors"),
        "emulator_exit": devices_proc.returncode,
        "cpu_percent_after_warmup": cpu.percent(*steady_s) if steady_s else None,
        "cpu_ms_per_acked_report": (
            cpu_ms_per_report(cpu.percent(*steady_s), steady.get("acked_per_s") or 0)
            if steady_s
            else None
        ),
        "redirects_followed": total.get("redirects_followed"),
        "replication_lag_s": lag,
        "replication_records_per_batch": {
            h: round(r["records"] / r["batches"], 1)
            for h, r in replication.items()
            if r.get("batches")
        },
        "speed_mps": speed_mps,
        "live_migrations": edge.get("live_migrations"),
        "migrations_failed": edge.get("migrations_failed"),
        "migration_downtime_ms": edge.get("downtime_ms"),
        "migration_phases_ms": phase_breakdown(trace_dir) if phases else None,
        "host_processes": edge.get("host_processes"),
        "twins_per_host": {h["id"]: h["twins"] for h in status.get("hosts", [])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rates", default="10,50", help="reports/s per device, comma-separated")
    ap.add_argument("--duration-s", type=float, default=10.0, help="measured, after the warm-up")
    ap.add_argument(
        "--warmup-s",
        type=float,
        default=20.0,
        help="first the devices connect, log in and are redirected to their hosts (each "
        "login is a password hash check): reports of this time are not measured",
    )
    ap.add_argument(
        "--speed-mps", type=float, default=0.0, help="devices move between the sites (0: static)"
    )
    ap.add_argument(
        "--phases",
        action="store_true",
        help="break each live migration's downtime into its steps (the processes write "
        "phase marks, see twinedge.edge.phases): migration_phases_ms in the output",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            run(
                args.devices,
                float(r),
                args.duration_s,
                Path(tmp),
                args.speed_mps,
                args.warmup_s,
                args.phases,
            )
            for r in args.rates.split(",")
        ]
    print(json.dumps({
        "benchmark": "edge_tier",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
