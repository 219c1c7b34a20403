"""The ``twinedge fl`` command (registered by :mod:`twinedge.cli`). Outside the
:mod:`twinedge.fl` package, whose import loads the experiment: the command line starts
without it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        from twinedge.fl.errors import FLError

        raise FLError(f"{option}: {text!r}: expected comma-separated numbers") from e


def fl(
    schemes: Annotated[
        str,
        typer.Option(
            help="Comma-separated schemes: ideal, lyapunov, threshold, top-k, power-cost."
        ),
    ] = "ideal,lyapunov,threshold,top-k,power-cost",
    noise: Annotated[
        str, typer.Option(help="Comma-separated receiver noise variances σ².")
    ] = "0.5,1,3",
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1.")] = 5,
    rounds: Annotated[int, typer.Option(help="Communication rounds T.")] = 50,
    devices: Annotated[int, typer.Option(help="Edge devices N.")] = 100,
    alpha: Annotated[
        float, typer.Option(help="Lyapunov factor α of the proposed scheduler.")
    ] = 5000.0,
    residual: Annotated[
        bool,
        typer.Option(
            "--residual/--no-residual", help="Residual feedback of the proposed scheduler."
        ),
    ] = True,
    non_iid: Annotated[
        bool, typer.Option("--non-iid", help="Two label shards per device instead of IID shares.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Write fl-rounds.csv, fl-summary.json and fl-accuracy.png here."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run: 2 seeds, 10 rounds, σ² = 0.5 and 3.")
    ] = False,
) -> None:
    """Over-the-air federated learning with device scheduling on scikit-learn's digits:
    final accuracy (mean ± 95 % CI across seeds), devices and energy per round."""
    from twinedge.cli import _progress_every_s
    from twinedge.fl.errors import FLError
    from twinedge.fl.experiment import FLConfig, RunResult, grid
    from twinedge.fl.summary import summarise, table, write
    from twinedge.progress import ProgressLines

    if quick:
        seeds, rounds, noise = 2, 10, "0.5,3"
    names = [s.strip() for s in schemes.split(",") if s.strip()]
    noise_vars = _floats(noise, "--noise")
    if seeds < 1:
        raise FLError(f"--seeds: {seeds}: expected at least 1")
    cfg = FLConfig(devices=devices, rounds=rounds, alpha=alpha, residual=residual, iid=not non_iid)
    total = len(names) * len(noise_vars) * seeds
    progress = ProgressLines(
        total, "runs", stream=sys.stderr, every_s=_progress_every_s(), prefix="twinedge fl"
    )
    done = [0]

    def on_run(r: RunResult) -> None:
        done[0] += 1
        progress.update(done[0], f"{r.scheme} σ²={r.noise_var:g} seed {r.seed}")

    results = grid(names, noise_vars, list(range(seeds)), cfg, on_run=on_run)
    progress.finish()
    print(table(summarise(results)))
    if out is not None:
        for kind, path in write(results, out).items():
            print(f"{kind}: {path}")
