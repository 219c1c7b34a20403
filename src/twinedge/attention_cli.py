"""The ``twinedge attention`` command (registered by :mod:`twinedge.cli`): the simulated
comparison of :mod:`twinedge.attention.sim`. Outside the package so that the command line
starts without loading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def attention(
    scenario: Annotated[
        str, typer.Option(help="A built-in scenario name or a scenario file whose entities move.")
    ] = "city-small",
    trace: Annotated[
        list[Path] | None,
        typer.Option(help="Path or trace files to replay instead (repeat the option)."),
    ] = None,
    copies: Annotated[int, typer.Option(help="Users walking each trace path.")] = 30,
    ticks: Annotated[int, typer.Option(help="Ticks to simulate.")] = 600,
    tick_s: Annotated[float, typer.Option(help="Seconds per tick.")] = 0.1,
    subscribers: Annotated[int, typer.Option(help="Subscribing entities.")] = 20,
    radius_m: Annotated[float, typer.Option(help="Radius of each subscriber's region, m.")] = 200.0,
    share: Annotated[float, typer.Option(help="Budget as a share of the full stream.")] = 0.1,
    max_staleness_s: Annotated[float, typer.Option(help="Attention's staleness bound, s.")] = 10.0,
    interest_set: Annotated[int, typer.Option(help="Size of the distance interest sets.")] = 5,
    weights: Annotated[
        str, typer.Option(help="Attention weights: distance,filter,change,staleness.")
    ] = "1,1,1,1",
    kinds: Annotated[
        str | None, typer.Option(help="Comma-separated entity kinds the subscribers want.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the movements.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Value-weighted staleness against bytes: everything, distance-based interest sets
    (Donnybrook) and attention-guided sharing at one budget (docs/attention.md)."""
    from twinedge.attention.interest import parse_interest
    from twinedge.attention.sim import Setup, city_movements, compare, path_movements

    w = parse_interest({"weights": weights}).weights
    setup = Setup(
        subscribers=subscribers,
        radius_m=radius_m,
        budget_share=share,
        max_staleness_s=max_staleness_s,
        interest_set=interest_set,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else None,
        weights=w,
    )
    if trace:
        mov = path_movements(trace, copies=copies, ticks=ticks, tick_s=tick_s, seed=seed)
    else:
        mov = city_movements(scenario, ticks=ticks, tick_s=tick_s, seed=seed)
    r = compare(mov, setup, interest_sets=())
    if as_json:
        print(json.dumps(r, indent=1))
        return
    print(
        f"{r['source']}: {r['entities']} entities, {r['ticks']} ticks of {r['tick_s']:g} s, "
        f"{subscribers} subscribers; full stream {r['full_stream_bps'] / 1e3:,.1f} kbit/s, "
        f"budget {r['budget_bps'] / 1e3:,.1f} kbit/s per subscriber"
    )
    print(f"{'policy':<14}{'MB sent':>10}{'share':>8}{'VWS s':>10}{'max stale s':>13}")
    for o in r["outcomes"]:
        name = o["policy"] + (f" k={o['interest_set']}" if o["interest_set"] is not None else "")
        print(
            f"{name:<14}{o['bytes'] / 1e6:>10.2f}{o['share']:>8.3f}"
            f"{o['vws_s']:>10.4f}{o['max_stale_s']:>13.1f}"
        )
    print(f"attention / interest sets: {r['ratio']:.3f}")
