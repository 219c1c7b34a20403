"""The edge tier on this machine: `twinedge serve --network ... --hosts local` (the core
and one `twinedge host` process per edge site) fed by `twinedge devices`.

Measures, per offered load: reports acknowledged per second (each PUBACK after the host
process's durable commit), publish -> PUBACK latency at the device (p50/p99, as the
emulator measures it; it includes each device's first report, which goes to the core's
broker and is answered with a redirect), the core's replication lag per host (host
commit -> committed in the core: p50/p99/max over the last 10,000 records, from
/healthz), and, with moving devices (``--speed-mps``), the live migrations between the
two host processes and their downtime (fence -> the target serves, measured by the core).

    python benchmarks/bench_edge.py                       # 2,000 and 10,000 reports/s offered
    python benchmarks/bench_edge.py --devices 100 --rates 10 --duration-s 5
    python benchmarks/bench_edge.py --rates 10 --duration-s 30 --speed-mps 150   # migrations under load
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def run(devices: int, rate_hz: float, duration_s: float, tmp: Path, speed_mps: float = 0.0) -> dict:
    (tmp / "bench.yaml").write_text(scenario(devices, speed_mps))
    http, mqtt = free_port(), free_port()
    data = tmp / f"data-{rate_hz}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "twinedge", "serve", "--network", str(tmp / "bench.yaml"), "--hosts", "local",
         "--cycle-s", "1", "--forecast-horizon-s", "0", "--data-dir", str(data),
         "--port", str(http), "--mqtt-port", str(mqtt), "--ledger", "none"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "w"), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        token = (data / "admin.token").read_text().strip()
        env = {**os.environ, "TWINEDGE_API_KEY": token}
        out = subprocess.run(
            [sys.executable, "-m", "twinedge", "devices", str(tmp / "bench.yaml"), "--count", str(devices),
             "--rate-hz", str(rate_hz), "--duration-s", str(duration_s), "--json", "--quiet",
             "--url", base, "--mqtt", f"mqtt://127.0.0.1:{mqtt}"],
            capture_output=True, text=True, env=env, timeout=duration_s + 300,
        )  # fmt: skip
        try:  # exit 1 with a summary: some reports were still unacknowledged at the end
            summary = json.loads(out.stdout)
        except ValueError:
            raise SystemExit(f"twinedge devices failed: {out.stderr[-2000:]}") from None
        health = httpx.get(base + "/healthz", timeout=5).json()
        status = httpx.get(
            base + "/api/2/orchestrator", headers={"Authorization": f"Bearer {token}"}
        ).json()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    total = summary["total"]
    edge = status.get("edge") or {}
    lag = {h: r.get("lag") for h, r in (health.get("replication") or {}).items()}
    return {
        "devices": devices,
        "offered_reports_per_s": devices * rate_hz,
        "duration_s": duration_s,
        "acked": total.get("acked"),
        "acked_per_s": round(total.get("acked", 0) / duration_s, 1),
        "unacked_at_end": total.get("unacked"),
        "device_errors": total.get("errors"),
        "emulator_exit": out.returncode,
        "latency_ms": total.get("latency_ms"),
        "redirects_followed": total.get("redirects_followed"),
        "replication_lag_s": lag,
        "speed_mps": speed_mps,
        "live_migrations": edge.get("live_migrations"),
        "migrations_failed": edge.get("migrations_failed"),
        "migration_downtime_ms": edge.get("downtime_ms"),
        "host_processes": edge.get("host_processes"),
        "twins_per_host": {h["id"]: h["twins"] for h in status.get("hosts", [])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rates", default="10,50", help="reports/s per device, comma-separated")
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument(
        "--speed-mps", type=float, default=0.0, help="devices move between the sites (0: static)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            run(args.devices, float(r), args.duration_s, Path(tmp), args.speed_mps)
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
