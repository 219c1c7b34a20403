"""Tables, files and the figure of a federated-learning experiment."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinedge.engine.sweep import ci95
from twinedge.fl.experiment import RunResult


@dataclass(frozen=True)
class Row:
    """One scheme at one noise variance, across seeds.

    Attributes:
        accuracy, accuracy_ci95: mean final test accuracy and the half-width of its 95 %
            Student t interval across seeds.
        scheduled: mean devices scheduled per round.
        energy: mean transmit energy per round (sum of P_n).
    """

    scheme: str
    noise_var: float
    seeds: int
    accuracy: float
    accuracy_ci95: float
    scheduled: float
    energy: float


def summarise(results: Sequence[RunResult]) -> list[Row]:
    """One :class:`Row` per (noise variance, scheme), in the order first seen."""
    keys: list[tuple[float, str]] = []
    for r in results:
        if (r.noise_var, r.scheme) not in keys:
            keys.append((r.noise_var, r.scheme))
    keys.sort(key=lambda k: k[0])
    rows = []
    for v, s in keys:
        rs = [r for r in results if r.noise_var == v and r.scheme == s]
        m, h = ci95([r.final_accuracy for r in rs])
        rows.append(
            Row(
                s,
                v,
                len(rs),
                m,
                h,
                float(np.mean([np.mean(r.scheduled) for r in rs])),
                float(np.mean([np.mean(r.energy) for r in rs])),
            )
        )
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (the one docs/fl.md shows)."""
    out = [
        "| σ² | scheme | final accuracy (mean ± 95 % CI) | scheduled / round | energy / round |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        ci = "" if math.isnan(r.accuracy_ci95) else f" ± {r.accuracy_ci95:.3f}"
        energy = "—" if r.scheme == "ideal" else f"{r.energy:.1f}"
        out.append(
            f"| {r.noise_var:g} | {r.scheme} | {r.accuracy:.3f}{ci} | {r.scheduled:.1f} | {energy} |"
        )
    return "\n".join(out)


def write(results: Sequence[RunResult], out_dir: Path) -> dict[str, Path]:
    """Write ``fl-rounds.csv`` (one row per run and round), ``fl-summary.json`` (the
    table's rows) and ``fl-accuracy.png`` (mean test accuracy against the round, one
    panel per noise variance) into ``out_dir``; returns the paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "fl-rounds.csv",
        "json": out_dir / "fl-summary.json",
        "figure": out_dir / "fl-accuracy.png",
    }
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["scheme", "noise_var", "seed", "alpha", "round", "accuracy", "scheduled", "energy"]
        )
        for r in results:
            for t, (a, k, e) in enumerate(zip(r.accuracy, r.scheduled, r.energy, strict=True)):
                w.writerow([r.scheme, r.noise_var, r.seed, r.alpha, t + 1, a, k, e])
    rows = summarise(results)
    records = [
        {**r.__dict__, "accuracy_ci95": None if math.isnan(r.accuracy_ci95) else r.accuracy_ci95}
        for r in rows
    ]
    paths["json"].write_text(json.dumps(records, indent=2) + "\n")
    figure(results, paths["figure"])
    return paths


def figure(results: Sequence[RunResult], path: Path) -> None:
    """Mean test accuracy against the round per scheme, a panel per noise variance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twinedge.report.figures import WIDTH_IN, paper_style, series_style

    noise = sorted({r.noise_var for r in results})
    schemes = list(dict.fromkeys(r.scheme for r in results))
    with paper_style():
        fig, axes = plt.subplots(
            1,
            len(noise),
            figsize=(WIDTH_IN[2], 2.4),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        for j, v in enumerate(noise):
            ax = axes[0][j]
            for i, s in enumerate(schemes):
                acc = np.mean(
                    [r.accuracy for r in results if r.scheme == s and r.noise_var == v], axis=0
                )
                t = np.arange(1, acc.size + 1)
                ax.plot(t, acc, label=s, markevery=(0.03 * i, 0.2), **series_style(i))
            ax.set_title(f"σ² = {v:g}")
            ax.set_xlabel("round")
        axes[0][0].set_ylabel("test accuracy")
        axes[0][-1].legend(fontsize="small")
        fig.savefig(path, format="png", dpi=200, metadata={"Software": "twinedge"})
        plt.close(fig)
