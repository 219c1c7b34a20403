"""The live orchestrator seen over HTTP (``/api/2/orchestrator``) and in ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from twinedge.runtime.api.common import Caller
from twinedge.runtime.api.models import COMMON_RESPONSES, problem_responses
from twinedge.runtime.api.problems import problem

router = APIRouter(prefix="/api/2", responses={**COMMON_RESPONSES, **problem_responses(404)})


def _live(request: Request) -> Any:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise problem(
            404,
            "this service runs no orchestrator; start it with `twinedge serve --network SCENARIO`",
        )
    return live


@router.get("/orchestrator", operation_id="getOrchestrator", tags=["orchestrator"])
async def get_orchestrator(request: Request, p: Caller) -> dict[str, Any]:
    """The live network: policies, every host with its capacity, load and number of
    twins, and what the last cycle did (placements, migrations, its duration, an error
    such as an infeasible network). Which host runs a twin is the twin's ``_host``."""
    status: dict[str, Any] = _live(request).status()
    return status


@router.get("/orchestrator/forecast", operation_id="getForecast", tags=["orchestrator"])
async def get_forecast(request: Request, p: Caller) -> dict[str, Any]:
    """The network's own twin: the live state run ahead in the simulator (entities keep
    their reported velocities, the live policies decide): latency, deadline misses and
    migrations per step, every host's peak utilisation, and the hosts forecast to reach
    80 % (``spikes``). Refreshed every ``forecast_horizon_s``; computed on demand when
    there is none yet."""
    forecast: dict[str, Any] = await _live(request).forecast_now()
    return forecast


class OrchestratorCollector:
    """Host and migration gauges for ``/metrics``."""

    def __init__(self, live: Any) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        st = self.live.status()
        yield CounterMetricFamily(
            "twinedge_orchestrator_cycles", "Orchestrator cycles run", value=st["cycles"]
        )
        yield CounterMetricFamily(
            "twinedge_orchestrator_migrations",
            "Twins moved between hosts by the orchestrator",
            value=st["migrations_total"],
        )
        yield CounterMetricFamily(
            "twinedge_orchestrator_placements",
            "Twins placed for the first time",
            value=st["placements_total"],
        )
        last = st["last_cycle"] or {}
        yield GaugeMetricFamily(
            "twinedge_orchestrator_cycle_seconds",
            "Duration of the last orchestrator cycle (view, policies, writes)",
            value=float(last.get("duration_s", 0.0)),
        )
        yield GaugeMetricFamily(
            "twinedge_orchestrator_unplaced",
            "Twins with a position but no host after the last cycle",
            value=float(last.get("unplaced", 0)),
        )
        twins = GaugeMetricFamily("twinedge_host_twins", "Twins run by each host", labels=["host"])
        cpu = GaugeMetricFamily(
            "twinedge_host_cpu_utilisation", "Used / capacity CPU of each host", labels=["host"]
        )
        for h in st["hosts"]:
            twins.add_metric([h["id"]], h["twins"])
            cpu.add_metric([h["id"]], h["used_cpu_ghz"] / h["cpu_ghz"] if h["cpu_ghz"] else 0.0)
        yield twins
        yield cpu
        edge = st.get("edge")
        if edge:
            yield GaugeMetricFamily(
                "twinedge_edge_host_processes",
                "Edge host processes serving twins",
                value=edge["host_processes"],
            )
            yield CounterMetricFamily(
                "twinedge_edge_hosts_recovered",
                "Host processes that died and whose twins were recovered on the others",
                value=len(edge["recovered"]),
            )
            yield CounterMetricFamily(
                "twinedge_edge_live_migrations",
                "Live migrations of twins between host processes",
                value=edge["live_migrations"],
            )
            yield CounterMetricFamily(
                "twinedge_edge_migrations_failed",
                "Live migrations that failed half-way (finished later from the hosts' logs)",
                value=edge["migrations_failed"],
            )
            downtime = GaugeMetricFamily(
                "twinedge_edge_migration_downtime_seconds",
                "Measured downtime of the recent live migrations (fence to adoption), by "
                "quantile (0.5, 0.99, 1 = max)",
                labels=["quantile"],
            )
            if edge["downtime_ms"]:
                for q, key in (("0.5", "p50"), ("0.99", "p99"), ("1", "max")):
                    downtime.add_metric([q], edge["downtime_ms"][key] / 1000.0)
            yield downtime
