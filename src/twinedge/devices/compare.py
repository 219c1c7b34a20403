"""The same scenario two ways: what ``twinedge run`` predicts and what ``serve`` +
``devices`` measured, side by side (``twinedge devices ... --compare``).

The simulation runs the scenario (all its entities: the devices are its first ``count``,
moved by the same mobility models from the same seed) for the virtual time the devices
ran, with the placement and migration policies the live orchestrator uses. Rates are
compared per twin and minute, so a fleet of the first N devices and the full scenario
compare. Each row says whether the two are the same quantity.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from twinedge.devices.errors import DevicesError
from twinedge.engine import simulate
from twinedge.scenario.schema import Scenario


def live_status(url: str, api_key: str) -> dict[str, Any]:
    """``GET /api/2/orchestrator`` of the service the devices ran against.

    Raises:
        DevicesError: the service runs no orchestrator, or does not answer.
    """
    try:
        r = httpx.get(
            url.rstrip("/") + "/api/2/orchestrator",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise DevicesError(f"--compare: {url} does not answer: {exc}") from None
    if r.status_code == 404:
        raise DevicesError(
            "--compare: the service runs no orchestrator; start it with twinedge serve --network SCENARIO"
        )
    if r.status_code != 200:
        raise DevicesError(
            f"--compare: GET /api/2/orchestrator answered {r.status_code}: {r.text[:200]}"
        )
    doc: dict[str, Any] = r.json()
    return doc


def compare(sc: Scenario, summary: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Predicted (a simulation) and measured (the devices' summary and the live
    orchestrator's status) side by side.

    Parameters:
        sc: the scenario the devices ran.
        summary: ``run_fleet``'s summary (its ``virtual_t_s``, ``seed``, ``count``, totals).
        status: the live orchestrator's status.

    Returns:
        ``{"steps", "policies", "rows": [{"quantity", "predicted", "measured", "ratio",
        "comparable", "note"}]}``.
    """
    t_s = float(summary["virtual_t_s"])
    steps = max(1, math.ceil(t_s / sc.run.step_s - 1e-9))
    placement, migration = status["placement"], status["migration"]
    res = simulate(
        sc, seed=int(summary["seed"]), steps=steps, placement=placement, migration=migration
    )
    p = res.summary
    n_sim = res.world.n_entities
    minutes = max(t_s, 1e-9) / 60.0
    n_live = int(summary["count"])
    lat = summary["total"]["latency_ms"]

    def row(
        quantity: str, predicted: Any, measured: Any, comparable: bool, note: str
    ) -> dict[str, Any]:
        ratio = None
        if comparable and isinstance(predicted, int | float) and isinstance(measured, int | float):
            ratio = None if predicted == 0 else round(measured / predicted, 3)
        return {
            "quantity": quantity,
            "predicted": predicted,
            "measured": measured,
            "ratio": ratio,
            "comparable": comparable,
            "note": note,
        }

    rows = [
        row(
            "migrations per twin per minute",
            round(p["migrations"] / n_sim / minutes, 4),
            round(status["migrations_total"] / max(n_live, 1) / minutes, 4),
            True,
            "same policies and mobility; the live orchestrator sees positions as reported "
            "(one report period late) and cycles on the wall clock",
        ),
        row(
            "latency p50, ms",
            round(p["p50_latency_ms"], 3),
            lat["p50"],
            False,
            "predicted: the model (radio uplink + backbone + service, with load); measured: "
            "a report's publish -> PUBACK on this machine (the host's durable commit), no radio "
            "and no backbone: not the same quantity",
        ),
        row(
            "latency p99 (predicted p95), ms",
            round(p["p95_latency_ms"], 3),
            lat["p99"],
            False,
            "as above",
        ),
        row(
            "twins placed",
            n_sim,
            status["placements_total"],
            n_live == n_sim,
            "the simulation places every entity of the scenario; live, the devices that ran",
        ),
    ]
    return {
        "virtual_t_s": t_s,
        "steps": steps,
        "policies": {"placement": placement, "migration": migration},
        "simulated_twins": n_sim,
        "live_twins": n_live,
        "rows": rows,
    }


def table(c: dict[str, Any]) -> str:
    """The comparison as text lines."""
    lines = [
        f"predicted (twinedge run, {c['simulated_twins']} twins, {c['steps']} steps) vs measured "
        f"(serve + devices, {c['live_twins']} twins, {c['virtual_t_s']:.0f} s); policies "
        f"{c['policies']['placement']} + {c['policies']['migration']}"
    ]
    for r in c["rows"]:
        ratio = f"  ratio {r['ratio']}" if r["ratio"] is not None else ""
        mark = "" if r["comparable"] else "  (not the same quantity)"
        lines.append(
            f"  {r['quantity']}: predicted {r['predicted']}, measured {r['measured']}{ratio}{mark}"
        )
    return "\n".join(lines)
