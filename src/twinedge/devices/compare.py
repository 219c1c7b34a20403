"""The same scenario two ways: what ``twinedge run`` predicts and what ``serve`` +
``devices`` measured, side by side (``twinedge devices ... --compare``).

The simulation runs the scenario (all its entities: the devices are its first ``count``,
moved by the same mobility models from the same seed) for the virtual time the devices
ran, with the placement and migration policies the live orchestrator uses. Rates are
compared per twin and minute, so a fleet of the first N devices and the full scenario
compare. Each row says whether the two are the same quantity.

Latency is compared as a mean over the same twins (the first ``count`` entities): the
prediction splits it into the model's terms (:func:`predict`); the measurement, with
link emulation (:mod:`twinedge.devices.links`), into the modelled network delay each
report waited and the rest, the live system's own time.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np

from twinedge.devices.errors import DevicesError
from twinedge.engine.simulation import build_simulation
from twinedge.scenario.schema import Scenario
from twinedge.world import World, models


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


def predict(
    sc: Scenario,
    *,
    seed: int,
    steps: int,
    placement: Any,
    migration: Any,
    count: int,
    rates_hz: float | np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Simulate ``sc`` and measure the latency of its first ``count`` twins, in parts.

    The simulation is :func:`twinedge.engine.simulate`'s (same streams, same policies),
    stepped here so that every step's latency of each twin is split into the terms the
    model adds: the radio uplink and the backbone (:meth:`twinedge.world.World.network_ms`,
    the function the device emulator delays reports by), the host's durable commit
    (``commit_ms`` of the host each twin is on, or its ``commit_curve_ms`` at the host's
    report rate), the service time with queueing (the rest of the twin's latency) and
    the migration downtime still to sit out.

    ``rates_hz``: the report rates of the first ``count`` twins' devices, in place of
    their ``update_hz`` (a host's report rate is what its commit curve is read at; it
    changes no other latency term).

    Returns:
        ``(parts, summary, n_entities)``: the means over the first ``count`` twins and
        every step (``mean_ms``, ``uplink_mean_ms``, ``backbone_mean_ms``,
        ``commit_mean_ms``, ``service_mean_ms``, ``downtime_mean_ms``, ``twin_steps``),
        the run's summary (all its twins) and how many twins it placed.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> parts, summary, n = predict(load_scenario("city-small"), seed=0, steps=2,
        ...                             placement="greedy", migration="threshold", count=200)
        >>> n, parts["twin_steps"], abs(parts["mean_ms"] - summary["mean_latency_ms"]) < 1e-9
        (200, 400, True)
    """
    sim = build_simulation(sc, seed=seed, steps=steps, placement=placement, migration=migration)
    w, s = sim.world, sim.state
    n = min(int(count), w.n_entities)
    if rates_hz is not None:  # the devices' rates (the world's arrays are its own)
        w.update_hz = np.asarray(w.update_hz, dtype=float).copy()
        r = np.asarray(rates_hz, dtype=float)
        w.update_hz[:n] = r if r.ndim == 0 else r[:n]
    idx = np.arange(n)
    total = np.zeros(6)  # experienced, uplink, backbone, commit, service, downtime
    report_hz = np.zeros(w.n_hosts)
    sim.reset()
    while not sim.done:
        sim.observe()
        experienced = sim.experienced_ms[:n]
        latency = s.latency_ms[:n]
        _, up, back = w.network_ms(s.xy_m[:n], s.host[:n], idx)
        commit = s.commit_ms(w)[s.host[:n]]
        report_hz += s.report_hz
        total += (
            experienced.sum(),
            up.sum(),
            back.sum(),
            commit.sum(),
            (latency - up - back - commit).sum(),
            (experienced - latency).sum(),
        )
        sim.decide()
    res = sim.result()
    twin_steps = n * steps
    model = model_values(w, n, report_hz / max(steps, 1))
    mean = total / max(twin_steps, 1)
    parts = {
        "mean_ms": float(mean[0]),
        "uplink_mean_ms": float(mean[1]),
        "backbone_mean_ms": float(mean[2]),
        "commit_mean_ms": float(mean[3]),
        "service_mean_ms": float(mean[4]),
        "downtime_mean_ms": float(mean[5]),
        "twin_steps": twin_steps,
        "model": model,
    }
    return parts, res.summary, w.n_entities


def model_values(world: World, n: int, report_hz: np.ndarray | None = None) -> dict[str, Any]:
    """The scenario values the prediction's processing part comes from: every host's
    ``commit_ms`` and ``cpu_ghz``, and the first ``n`` twins' mean ``work_gcycles``
    (``twinedge calibrate`` measures the first and the last on a machine). With commit
    curves, also every host's ``commit_curve_ms``, its mean report rate over the run
    (``report_hz``, ``(H,)``), the spacing of its reports and the commit the curve gives
    there (``commit_at_rate_ms``).

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> w = build_world(load_scenario("examples/two-sites-fleet.yaml"), np.random.default_rng(0))
        >>> model_values(w, 50)
        {'commit_ms': {'edge-1': 0.0, 'edge-2': 0.0}, 'cpu_ghz': {'edge-1': 10.0, 'edge-2': 10.0}, 'work_gcycles_mean': 0.001}
    """
    n = min(n, world.n_entities)
    out: dict[str, Any] = {
        "commit_ms": dict(zip(world.host_ids, world.host_commit_ms.tolist(), strict=True)),
        "cpu_ghz": dict(zip(world.host_ids, world.host_cpu_ghz.tolist(), strict=True)),
        "work_gcycles_mean": round(float(world.work_gcycles[:n].mean()), 9) if n else None,
    }
    curve = world.host_commit_curve
    if curve is not None:
        gap, ms = curve
        out["commit_curve_ms"] = {
            h: [[float(g), float(c)] for g, c in zip(gap[j], ms[j], strict=True)]
            for j, h in enumerate(world.host_ids)
        }
        out["commit_curve_ms"] = {  # without the padding
            h: [p for k, p in enumerate(pts) if k == 0 or p != pts[k - 1]]
            for h, pts in out["commit_curve_ms"].items()
        }
        if report_hz is not None:
            hz = np.asarray(report_hz, dtype=float)
            spacing = models.report_gap_ms(hz)
            at = world.commit_ms_at(np.arange(world.n_hosts), hz)
            out["report_hz"] = {
                h: round(float(v), 4) for h, v in zip(world.host_ids, hz, strict=True)
            }
            out["report_gap_ms"] = {
                h: round(float(v), 4) for h, v in zip(world.host_ids, spacing, strict=True)
            }
            out["commit_at_rate_ms"] = {
                h: round(float(v), 4) for h, v in zip(world.host_ids, at, strict=True)
            }
    return out


def model_line(model: dict[str, Any]) -> str:
    """:func:`model_values` on one line (a value shared by every host once)."""

    def per_host(d: dict[str, float]) -> str:
        values = set(d.values())
        if len(values) == 1:
            return f"{next(iter(values)):g} (every host)"
        return ", ".join(f"{h} {v:g}" for h, v in d.items())

    def curves(d: dict[str, list[list[float]]]) -> str:
        text = {h: "[" + ", ".join(f"[{g:g}, {c:g}]" for g, c in pts) + "]" for h, pts in d.items()}
        if len(set(text.values())) == 1:
            return f"{next(iter(text.values()))} (every host)"
        return ", ".join(f"{h} {t}" for h, t in text.items())

    commit = f"commit_ms {per_host(model['commit_ms'])}"
    if "commit_curve_ms" in model:
        commit = f"commit_curve_ms {curves(model['commit_curve_ms'])}"
        if "report_hz" in model:
            commit += "; at each host's report rate " + ", ".join(
                f"{h} {hz:g}/s ({model['report_gap_ms'][h]:g} ms apart): "
                f"{model['commit_at_rate_ms'][h]:g} ms"
                for h, hz in model["report_hz"].items()
            )
    return (
        f"{commit}; cpu_ghz {per_host(model['cpu_ghz'])}; "
        f"work_gcycles {model['work_gcycles_mean']} (mean of the twins compared); "
        "calibrate them with twinedge calibrate"
    )


def compare(sc: Scenario, summary: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Predicted (a simulation) and measured (the devices' summary and the live
    orchestrator's status) side by side.

    Parameters:
        sc: the scenario the devices ran.
        summary: ``run_fleet``'s summary (its ``virtual_t_s``, ``seed``, ``count``, totals;
            with link emulation, ``total.link``).
        status: the live orchestrator's status.

    Returns:
        ``{"steps", "policies", "predicted", "measured", "rows": [{"quantity",
        "predicted", "measured", "ratio", "comparable", "note"}], "note"}``.
    """
    t_s = float(summary["virtual_t_s"])
    steps = max(1, math.ceil(t_s / sc.run.step_s - 1e-9))
    placement, migration = status["placement"], status["migration"]
    n_live = int(summary["count"])
    rates = summary.get("rate_hz") or {}
    parts, p, n_sim = predict(
        sc,
        seed=int(summary["seed"]),
        steps=steps,
        placement=placement,
        migration=migration,
        count=n_live,
        # the devices' rate when they shared one (else their scenario update_hz)
        rates_hz=float(rates["min"]) if rates and rates["min"] == rates["max"] else None,
    )
    minutes = max(t_s, 1e-9) / 60.0
    link = summary["total"].get("link")
    scale = float(summary.get("options", {}).get("link_delay_scale", 1.0))

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
        )
    ]
    network_ms = parts["uplink_mean_ms"] + parts["backbone_mean_ms"]
    processing_ms = parts["commit_mean_ms"] + parts["service_mean_ms"] + parts["downtime_mean_ms"]
    used = parts["model"]
    if link is None or not link["reports"]:
        why = (
            "run with --emulate-links: without it the devices' reports cross no modelled network"
            if link is None
            else "no report was acknowledged by a twin host of the network (serve "
            "without host processes acknowledges at the core, a path the model does not have)"
        )
        rows.append(
            row(
                "mean latency, ms",
                round(parts["mean_ms"], 4),
                summary["total"]["latency_ms"].get("mean"),
                False,
                "not the same quantity: " + why,
            )
        )
    else:
        same = n_live <= n_sim and scale == 1.0
        rows += [
            row(
                "mean latency, ms",
                round(parts["mean_ms"], 4),
                link["mean_ms"],
                same,
                "predicted: the model's latency of the first "
                f"{min(n_live, n_sim)} twins (uplink + backbone + service with queueing + "
                "migration downtime), every step; measured: the modelled delay of a report's "
                "path + its first PUBLISH written to a twin host's connection -> its PUBACK read "
                "(the emulator's own time left out)"
                + ("" if scale == 1.0 else f" (delays scaled by {scale:g}: not the model's)"),
            ),
            row(
                "network (radio uplink + backbone), ms",
                round(network_ms, 4),
                link["network_mean_ms"],
                same,
                "the same model function (World.network_ms) on both sides: equal by "
                "construction but for the update size (the scenario's update_bytes vs the "
                "report's bytes), the instants positions are taken (step ends vs report "
                "times) and the host each twin is on at the time (each face's orchestrator "
                "decides)",
            ),
            row(
                "of which the backbone (access point -> the twin's host), ms",
                round(parts["backbone_mean_ms"], 4),
                link["backbone_mean_ms"],
                same,
                "the model's backbone latency to the host each twin is on: where the two "
                "differ, the orchestrators put (or moved) twins on different hosts",
            ),
            row(
                "processing (model: commit + service + migration downtime; live: the rest), ms",
                round(processing_ms, 4),
                link["live_mean_ms"],
                same,
                f"model: the host's durable commit, commit_ms ({parts['commit_mean_ms']:.4f} "
                f"ms), plus work_gcycles / host cpu_ghz stretched by M/M/1 queueing at the "
                f"CPU its twins reserve ({parts['service_mean_ms']:.4f} ms), plus migration "
                f"downtime ({parts['downtime_mean_ms']:.4f} ms); live, from the PUBLISH "
                "written to the PUBACK read: the loopback, the host's MQTT server, its "
                "behaviour and durable commit before the PUBACK, its queueing, and the waits "
                "of reports caught by a migration, on this machine",
            ),
            row(
                "the emulator's own time, left out of the measurement, ms",
                0.0,
                link["emulator_mean_ms"],
                False,
                f"its timers waking after the modelled delay ({link['timer_late_mean_ms']} ms), "
                f"building and writing the PUBLISH ({link['send_mean_ms']} ms), waking the "
                f"report's task after its PUBACK was read ({link['resume_mean_ms']} ms)",
            ),
        ]
    rows.append(
        row(
            "twins placed",
            n_sim,
            status["placements_total"],
            n_live == n_sim,
            "the simulation places every entity of the scenario; live, the devices that ran",
        )
    )
    return {
        "virtual_t_s": t_s,
        "steps": steps,
        "policies": {"placement": placement, "migration": migration},
        "model": used,
        "simulated_twins": n_sim,
        "live_twins": n_live,
        "predicted": {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in parts.items()
            if k != "model"
        },
        "measured": link,
        "rows": rows,
        "note": NOTE,
    }


NOTE = (
    "With link emulation both sides take the network part from the same model, so they "
    "agree on it by construction; what the comparison tests is which host each twin is "
    "on (the orchestrator's placements and migrations, live vs simulated) and the live "
    "system's own time (MQTT, the host's durable commit, queueing, migrations) against "
    "the model's processing time (commit_ms + service time). The radio, the backbone and their variability are not "
    "validated: they are the model's on both sides."
)


def table(c: dict[str, Any]) -> str:
    """The comparison as text lines."""
    lines = [
        f"predicted (twinedge run, {c['simulated_twins']} twins, {c['steps']} steps) vs measured "
        f"(serve + devices, {c['live_twins']} twins, {c['virtual_t_s']:.0f} s); policies "
        f"{c['policies']['placement']} + {c['policies']['migration']}",
        "  model values used: " + model_line(c["model"]),
    ]

    def num(x: Any) -> Any:
        return round(x, 4) if isinstance(x, float) else x

    for r in c["rows"]:
        ratio = f"  ratio {r['ratio']}" if r["ratio"] is not None else ""
        mark = "" if r["comparable"] else "  (not compared)"
        lines.append(
            f"  {r['quantity']}: predicted {num(r['predicted'])}, "
            f"measured {num(r['measured'])}{ratio}{mark}"
        )
    if c["measured"] is not None and c["measured"]["reports"]:
        lines.append("  " + c["note"])
    return "\n".join(lines)
