"""The example notebooks (``examples/*.ipynb``) run from the first cell to the last and
show what their text says; the repository keeps them without outputs.

Each notebook runs in a real Jupyter kernel (nbclient, ipykernel) in a temporary copy of
its folder, so what it writes (``sweep-out/``, ``my_policies.py``) lands there and not in
the repository. Where a number matters, the test appends one cell to its copy that prints
the notebook's own variables as JSON, and checks them against the numbers the notebook
showed or against a hand computation. The EUA notebook needs the EUA dataset
(``$TWINEDGE_DATASETS/eua``) and is skipped with the reason when it is absent.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from scipy.stats import t

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = ("own-policy.ipynb", "seed-sweep.ipynb", "eua-melbourne.ipynb")
PROBE = "# test probe\nimport json\n\n"


def execute(name: str, tmp_path: Path, probe: str = "", **env: str) -> nbformat.NotebookNode:
    """Run ``examples/name`` in a copy of the examples folder under ``tmp_path``; ``probe``
    is a cell appended to the copy (its output is the last one)."""
    work = tmp_path / "examples"
    work.mkdir()
    for f in [EXAMPLES / name, *EXAMPLES.glob("*.yaml")]:
        shutil.copy(f, work)
    nb = nbformat.read(work / name, as_version=4)
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(PROBE + probe))
    kernel_env = {**os.environ, **env}
    kernel_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    kernel_env.pop("MPLBACKEND", None)  # the kernel's own inline backend, as in Jupyter
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute(env=kernel_env)
    return nb


def texts(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed or displayed as text."""
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif "data" in o:
            out.append(o.data.get("text/plain", ""))
    return "".join(out)


def probed(nb: nbformat.NotebookNode) -> dict:
    assert nb.cells[-1].source.startswith(PROBE)
    return json.loads(texts(nb.cells[-1]))


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def last_shown(nb: nbformat.NotebookNode) -> str:
    """The output of the notebook's own last cell (before a probe)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and not c.source.startswith(PROBE)]
    return texts(cells[-1])


def test_the_notebooks_are_stored_without_outputs():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(EXAMPLES / name, as_version=4)
        nbformat.validate(nb)
        assert set(nb.metadata) <= {"kernelspec", "language_info"}, name
        assert nb.cells[0].cell_type == "markdown", name  # it says first what it does
        for cell in nb.cells:
            assert set(cell.metadata) <= {"tags"}, (name, cell.id, dict(cell.metadata))
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{name}, cell {cell.id}: stored with outputs; clear them before committing "
                    "(Jupyter: Edit > Clear Outputs of All Cells)"
                )


def test_ruff_lints_the_notebooks():
    """The project's lint command covers the notebooks' code (and it is clean)."""
    files = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "examples"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert files.returncode == 0, files.stderr
    assert {Path(x).name for x in files.stdout.split()} >= set(NOTEBOOKS), files.stdout
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *NOTEBOOKS],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_own_policy(tmp_path):
    nb = execute(
        "own-policy.ipynb",
        tmp_path,
        probe="print(json.dumps({'table': table.reset_index().to_dict('records'),"
        " 'cli': from_cli.reset_index().to_dict('records')}))",
    )
    got = probed(nb)
    placements, migrations = ("nearest", "greedy", "balanced"), ("never", "threshold", "predictive", "early_mover")  # fmt: skip
    table = {r["policy"]: r for r in got["table"]}
    assert list(table) == [f"{p}+{m}" for p in placements for m in migrations]
    for r in table.values():
        assert 0 <= r["deadline misses %"] <= 100 and r["mean latency ms"] > 0
        assert r["migrations"] >= 0 and r["GB moved"] >= 0
    # the last cell: the combination with the fewest misses, and how many
    best = min(table.values(), key=lambda r: r["deadline misses %"])
    assert last_shown(nb) == (
        f"12 combinations; fewest deadline misses: {best['policy']}, "
        f"{best['deadline misses %']:.2f} %\n"
    )
    # check_policy passed both functions and named the one that ignores capacity
    shown = "".join(texts(c) for c in nb.cells)
    assert re.search(r"^balanced: resolves, params, valid decisions", shown, re.M), shown
    assert re.search(r"^early_mover: resolves, params, valid decisions", shown, re.M)
    assert re.search(r"^placement policy 'all_on_the_smallest_host' failed \d+ check", shown, re.M)
    assert re.search(r"^  valid decisions: .*all_on_the_smallest_host.* over capacity", shown, re.M)
    # `twinedge compare` imported the functions from my_policies.py in the notebook's
    # folder and measured exactly what simulate measured (the same seed)
    assert (tmp_path / "examples" / "my_policies.py").is_file()
    assert not (EXAMPLES / "my_policies.py").exists()
    cli = {r["index"]: r for r in got["cli"]}
    assert set(cli) == {
        "greedy+threshold",
        "greedy+my_policies:early_mover",
        "my_policies:balanced+threshold",
        "my_policies:balanced+my_policies:early_mover",
    }
    for label, r in cli.items():
        mine = table[label.replace("my_policies:", "")]
        # the notebook's table is rounded to 2 decimals
        assert abs(r["mean_latency_ms"] - mine["mean latency ms"]) <= 0.0051, label
        assert abs(100 * r["deadline_miss_ratio"] - mine["deadline misses %"]) <= 0.0051, label
        assert r["migrations"] == mine["migrations"], label


def test_seed_sweep(tmp_path):
    nb = execute("seed-sweep.ipynb", tmp_path)
    out = tmp_path / "examples" / "sweep-out"
    assert (out / "summary.parquet").is_file() and not (EXAMPLES / "sweep-out").exists()
    shown = "".join(texts(c) for c in nb.cells)
    assert "32 runs: 32 run now, 0 kept from an earlier start" in shown
    assert images(nb) == 2  # mean ± CI, and the bands over time
    # the printed intervals, recomputed by hand from the per-seed values of results.csv
    results = pd.read_csv(out / "results.csv")
    lat = results[results.metric == "mean_latency_ms"]
    lines = last_shown(nb).splitlines()
    printed = [
        re.fullmatch(r"(\S+): ([\d.]+) ± ([\d.]+) ms over (\d+) seeds", x) for x in lines[:4]
    ]
    assert all(printed), lines
    policies = {m.group(1) for m in printed if m}
    assert policies == {f"greedy+{m}" for m in ("never", "threshold", "utility", "predictive")}
    means, policies_in_order = [], []
    for m in printed:
        assert m is not None
        x = lat[lat.policy == m.group(1)].sort_values("seed")["value"].to_numpy()
        assert len(x) == int(m.group(4)) == 8
        mean = sum(x) / 8
        s = math.sqrt(sum((v - mean) ** 2 for v in x) / 7)
        half = t.ppf(0.975, 7) * s / math.sqrt(8)
        assert (float(m.group(2)), float(m.group(3))) == (round(mean, 3), round(half, 3))
        assert half > 0
        means.append(mean)
        policies_in_order.append(m.group(1))
    assert means == sorted(means)  # lowest first
    lowest = policies_in_order[0]
    assert lines[4].startswith(f"lowest mean latency: {lowest}; its interval "), lines


def test_eua_melbourne(tmp_path, eua_dir):
    nb = execute(
        "eua-melbourne.ipynb",
        tmp_path,
        probe="print(json.dumps({'policies': list(runs), 'entities': int(w.n_entities),"
        " 'hosts': int(w.n_hosts)}))",
        TWINEDGE_DATASETS=str(eua_dir.parent),
    )
    got = probed(nb)
    # 125 sites (an edge server each), 4 regional hubs, a cloud; the 816 EUA users
    assert (got["entities"], got["hosts"]) == (816, 130)
    assert got["policies"] == [
        f"{p}+{m}" for p in ("nearest", "greedy") for m in ("never", "threshold", "predictive")
    ]
    assert images(nb) == 1  # the map
    lines = last_shown(nb).splitlines()
    pat = r"greedy\+(\w+): ([\d.]+) ± ([\d.]+) % deadline misses over (\d+) seeds"
    found = {m.group(1): m for m in map(re.compile(pat).fullmatch, lines) if m}
    assert set(found) == {"never", "threshold", "predictive"} and len(lines) == 3, lines
    for m in found.values():
        assert int(m.group(4)) == 5 and float(m.group(3)) > 0
    # following the walking users misses far fewer deadlines than leaving their twins
    never, threshold = found["never"], found["threshold"]
    assert float(never.group(2)) - float(never.group(3)) > float(threshold.group(2)) + float(
        threshold.group(3)
    )


def test_eua_melbourne_without_the_dataset_says_where_it_looked(tmp_path):
    empty = tmp_path / "no-datasets"
    empty.mkdir()
    with pytest.raises(CellExecutionError) as e:
        execute("eua-melbourne.ipynb", tmp_path, TWINEDGE_DATASETS=str(empty))
    assert f"no EUA dataset in {empty / 'eua'}: set TWINEDGE_DATASETS" in str(e.value)
