"""The ``twinedge trace`` commands: make mobility traces for scenarios.

``twinedge trace sumo`` runs Eclipse SUMO (network, random trips, simulation) and writes
a CSV trace; ``twinedge trace fcd`` converts a SUMO FCD file that you made yourself.
Both print one line saying what was written, including the positions' bounding box (the
scenario's nodes and area must cover it: trace metres are scenario metres). A thin layer
over :mod:`twinedge.world.sumo`: every mistake is one line ``error: ...``, exit code 2.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="trace",
    help="Make mobility traces for scenarios: vehicles on roads with Eclipse SUMO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class NetworkKind(StrEnum):
    """A road network ``netgenerate`` builds."""

    grid = "grid"
    spider = "spider"


@app.command()
def sumo(
    out: Annotated[Path, typer.Option("--out", help="The CSV trace to write.")] = Path("trace.csv"),
    net: Annotated[
        Path | None,
        typer.Option(help="Drive on this SUMO network (.net.xml) instead of a generated one."),
    ] = None,
    network: Annotated[
        NetworkKind, typer.Option(help="The generated network: grid or spider.")
    ] = NetworkKind.grid,
    size: Annotated[
        int,
        typer.Option(min=2, help="Junctions per side of the grid; arms and circles of the spider."),
    ] = 5,
    length_m: Annotated[
        float, typer.Option(min=1.0, help="Street length (grid) or circle spacing (spider), m.")
    ] = 200.0,
    vehicles: Annotated[int, typer.Option(help="Number of vehicles (at least 1).")] = 50,
    duration_s: Annotated[float, typer.Option(help="Simulated seconds.")] = 600.0,
    step_s: Annotated[
        float, typer.Option(help="SUMO's step: the trace's sampling interval.")
    ] = 1.0,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of netgenerate, randomTrips and sumo.")
    ] = 0,
    keep: Annotated[
        Path | None,
        typer.Option(help="Keep SUMO's files (network, trips, FCD) in this folder."),
    ] = None,
) -> None:
    """Simulate vehicles on a road network with Eclipse SUMO and write their trace.

    A grid or spider network from netgenerate (or --net), random trips for --vehicles
    vehicles (randomTrips.py), a SUMO run of --duration-s seconds, and the floating car
    data written as entity_id,t_s,x_m,y_m rows: a `{model: trace, file: ...}` mobility.
    The same options and seed write the same file. Needs the extra: pip install
    'twinedge[sumo]'.
    """
    from twinedge.world.sumo import sumo_trace

    summary = sumo_trace(
        out,
        net=net,
        network=network.value,
        size=size,
        length_m=length_m,
        vehicles=vehicles,
        duration_s=duration_s,
        step_s=step_s,
        seed=seed,
        work_dir=keep,
    )
    print(summary.describe())
    if summary.vehicles < vehicles:
        print(
            f"note: {vehicles - summary.vehicles} of {vehicles} vehicles found no room to "
            f"enter the network within {duration_s:g} s (a longer run or a larger network "
            "lets them in)",
            file=sys.stderr,
        )


@app.command()
def fcd(
    file: Annotated[Path, typer.Argument(help="A SUMO --fcd-output file (.xml or .xml.gz).")],
    out: Annotated[Path, typer.Option("--out", help="The CSV trace to write.")] = Path("trace.csv"),
) -> None:
    """Convert SUMO floating car data to a CSV trace (streaming: any size).

    Rows entity_id,t_s,x_m,y_m (lat,lon for geo output) in the file's order. A scenario
    can also name the .xml file itself as a trace mobility.
    """
    from twinedge.world.sumo import fcd_to_csv

    print(fcd_to_csv(file, out).describe())
