"""The ``twinedge sync`` command (registered by :mod:`twinedge.cli`): the predictive-sync
rule replayed on trace files, uplink bytes against the receiver's error (docs/sync.md).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer


def _floats(text: str, option: str) -> list[float]:
    from twinedge.sync.errors import SyncError

    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise SyncError(f"{option}: {text!r}: expected comma-separated numbers") from e
    if not out:
        raise SyncError(f"{option}: {text!r}: expected at least one number")
    return out


def heartbeat_of(text: str) -> float | None:
    """``--heartbeat-s``: a number of seconds, or ``none``.

    Examples:
        >>> heartbeat_of("5"), heartbeat_of("none")
        (5.0, None)
    """
    from twinedge.sync.errors import SyncError

    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as e:
        raise SyncError(f"--heartbeat-s: {text!r}: expected seconds or 'none'") from e


def sync(
    traces: Annotated[
        list[Path],
        typer.Argument(
            help="Trace files: entity_id,t_s,x_m,y_m (or lat,lon) CSV, path files "
            "(Latitude,Longitude or x_m,y_m; one entity per file), SUMO FCD .xml."
        ),
    ],
    predictor: Annotated[
        str, typer.Option(help="Comma-separated predictors: constant, first-order, second-order.")
    ] = "constant,first-order,second-order",
    threshold_m: Annotated[
        str, typer.Option(help="Comma-separated error thresholds, metres.")
    ] = "0.5,1,5",
    heartbeat_s: Annotated[
        str, typer.Option(help="Longest time between two reports, seconds, or 'none'.")
    ] = "5",
    resample_s: Annotated[
        float | None,
        typer.Option(help="Sample each entity every this many seconds (linear interpolation)."),
    ] = None,
    path_step_s: Annotated[
        float, typer.Option(help="Seconds between the points of a path file.")
    ] = 10.0,
    header_bytes: Annotated[int, typer.Option(help="Bytes of a message besides its numbers.")] = 32,
    name: Annotated[str | None, typer.Option(help="The trace's name in the table.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the series over time here (CSV: one row per run and time)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Replay the predictive-sync sender rule on traces: for each predictor and
    threshold, the reports sent, the bytes saved against sending every sample, and the
    receiver's error at the sample times (mean, 95th percentile, maximum)."""
    from twinedge.sync.errors import SyncError
    from twinedge.sync.predict import PREDICTORS
    from twinedge.sync.sender import ByteModel
    from twinedge.sync.traces import load_traces, resample, simulate

    names = [p.strip() for p in predictor.split(",") if p.strip()]
    for p in names:
        if p not in PREDICTORS:
            raise SyncError(
                f"--predictor: unknown predictor {p!r}; use one of {', '.join(PREDICTORS)}"
            )
    thresholds = _floats(threshold_m, "--threshold-m")
    hb = heartbeat_of(heartbeat_s)
    trace = load_traces(traces, name=name, path_step_s=path_step_s)
    if resample_s is not None:
        trace = resample(trace, resample_s)
    bm = ByteModel(header_bytes=header_bytes)
    results = [simulate(trace, p, th, hb, bm) for p in names for th in thresholds]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "predictor",
                    "threshold_m",
                    "t_s",
                    "reports",
                    "bytes",
                    "mean_error_m",
                    "max_error_m",
                ]
            )
            for r in results:
                for k in range(r.t_s.size):
                    w.writerow(
                        [
                            r.predictor,
                            r.threshold_m,
                            f"{r.t_s[k]:g}",
                            int(r.reports_at[k]),
                            int(r.bytes_at[k]),
                            f"{r.mean_error_at_m[k]:.6g}",
                            f"{r.max_error_at_m[k]:.6g}",
                        ]
                    )
    if as_json:
        print(json.dumps({"results": [r.row() for r in results]}, indent=2))
        return
    print(
        f"{trace.name}: {len(trace.ids)} entities, {trace.samples} samples; heartbeat "
        f"{'none' if hb is None else f'{hb:g} s'}; a sample {bm.sample_bytes(2)} B"
    )
    print(
        f"{'predictor':<13} {'thr_m':>6} {'reports':>8} {'bytes_saved':>11} "
        f"{'mean_err_m':>10} {'p95_err_m':>9} {'max_err_m':>9}"
    )
    for r in results:
        print(
            f"{r.predictor:<13} {r.threshold_m:>6g} {r.reports:>8} {r.bytes_saved:>10.1%} "
            f"{r.mean_error_m:>10.3f} {r.p95_error_m:>9.3f} {r.max_error_m:>9.3f}"
        )
