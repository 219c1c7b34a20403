"""Experiments: many seeds and parameter grids, run in parallel, resumable, summarised
as mean ± 95 % confidence interval across seeds.

A sweep is every combination of

- a seed from ``--seeds`` (``0..31``, ``0,4,9``, ``0..3,10``: inclusive ranges and lists),
- a placement × migration policy pair,
- a point of the parameter grid (``--param utility.beta=0.3,0.5,0.7``: a parameter of a
  policy; ``--param entities.count=1000,10000``: a field of the scenario).

A policy parameter multiplies only the runs of that policy (``never`` runs once per seed,
``utility`` three times with the grid above); a scenario field multiplies every run.

Each finished run is written at once to ``OUT/runs/<run>.json`` (its summary and its time
series). A sweep started again on the same folder loads the runs found there instead of
running them again, so an interrupted sweep resumes where it stopped; a run file is
written under a temporary name and renamed, so a run killed half-way leaves no file. The
run's name is a hash of everything that determines it (the scenario, steps, seed,
policies and parameters), so a changed scenario never reuses an old result.

Confidence intervals (Student t, across the n seeds of one policy and parameter point):

    mean = (1/n) Σ x_i
    s    = sqrt( Σ (x_i - mean)² / (n - 1) )
    ci95 = t_{0.975, n-1} · s / sqrt(n)

and the interval is ``[mean - ci95, mean + ci95]``. With one seed there is no interval
(``ci95`` is NaN in the tables and ``null`` in JSON). Seeds are independent replications
(each seed draws its own world, mobility and policy randomness), which is what the t
interval assumes.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import yaml

from twinedge.engine.metrics import STEP_COLUMNS, SUMMARY_KEYS
from twinedge.engine.parallel import Job, run_job, run_jobs
from twinedge.errors import PolicyError, TwinedgeError
from twinedge.scenario.schema import Scenario

#: The metrics of a run, in the order of the tables (the keys of ``summary.json``).
METRICS = SUMMARY_KEYS

_SEED_PART = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")


def parse_seeds(text: str) -> list[int]:
    """The seeds of ``--seeds``: comma-separated seeds and inclusive ranges ``a..b``.

    Parameters:
        text: e.g. ``"0..31"``, ``"1,5,9"`` or ``"0..3,10"``.

    Returns:
        The seeds in the order given, each once.

    Raises:
        TwinedgeError: a part is not a seed or a range, or a range is empty.

    Examples:
        >>> parse_seeds("0..3,10")
        [0, 1, 2, 3, 10]
    """
    seeds: list[int] = []
    for part in text.split(","):
        m = _SEED_PART.match(part)
        if m is None:
            raise TwinedgeError(
                f"--seeds {text!r}: {part.strip()!r} is not a seed or a range; "
                "expected e.g. 0..31, 1,5,9 or 0..3,10"
            )
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        if hi < lo:
            raise TwinedgeError(
                f"--seeds {text!r}: the range {lo}..{hi} is empty (it ends before it "
                f"starts); write {hi}..{lo}"
            )
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % Student t confidence interval of ``values``.

    Parameters:
        values: one number per seed.

    Returns:
        ``(mean, half_width)``; the half-width is NaN with fewer than two values.

    Examples:
        >>> m, h = ci95([1.0, 2.0, 3.0])   # s = 1, t(0.975, 2) = 4.3027
        >>> m, round(h, 4)
        (2.0, 2.4841)
    """
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan
    if np.ptp(x) == 0:  # equal values: exactly no spread (not a rounding residue)
        return mean, 0.0
    s = float(x.std(ddof=1))
    return mean, float(t.ppf(0.975, n - 1) * s / math.sqrt(n))


@dataclass(frozen=True)
class Param:
    """One ``--param``: a policy parameter (``policy`` set) or a scenario field."""

    path: str
    values: tuple[Any, ...]
    policy: str | None = None  # the policy name or import path for a policy parameter
    kind: str | None = None  # "placement", "migration", or None: a class of either kind
    parameter: str | None = None  # the policy's parameter


def _policy_classes() -> dict[str, tuple[str, type]]:
    from twinedge.policies.migration import MIGRATION_POLICIES
    from twinedge.policies.placement import PLACEMENT_POLICIES

    out = {n: ("placement", c) for n, c in PLACEMENT_POLICIES.items()}
    out.update({n: ("migration", c) for n, c in MIGRATION_POLICIES.items()})
    return out


def _convert(raw: str, default: Any, where: str, what: str) -> Any:
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float) or default is None:
            return float(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        if isinstance(default, bool):
            kind = "true or false"
        raise TwinedgeError(f"--param {where}: {raw!r} is not {kind} ({what})") from None
    return raw


def parse_param(text: str, sc: Scenario) -> Param:
    """A ``--param PATH=V1,V2,...`` checked against the policies and the scenario.

    ``PATH`` is ``policy.parameter`` (``utility.beta``) or a scenario field
    (``radio.bandwidth_mhz``, ``run.step_s``, ``entities.0.count``, ``entities.vehicle.count``);
    ``entities.count`` is the total number of entities, shared among the groups in
    proportion to their counts.

    Raises:
        TwinedgeError: the path names neither a policy parameter nor a scenario field, or a
            value is not of its type (or out of its range).
    """
    path, eq, raw = text.partition("=")
    path = path.strip()
    if not eq or not path or not raw.strip():
        raise TwinedgeError(
            f"--param {text!r}: expected NAME=V1,V2,... e.g. utility.beta=0.3,0.5,0.7 "
            "or entities.count=1000,10000"
        )
    raws = [v.strip() for v in raw.split(",")]
    if "" in raws:
        raise TwinedgeError(f"--param {text!r}: an empty value in the list")
    head, _, rest = path.partition(".")
    policies = _policy_classes()
    found = _policy_class(path, policies, text)
    if found is not None:
        head, rest, kind, cls = found
        sig = inspect.signature(cls).parameters
        if not rest or rest not in sig:
            names = ", ".join(p for p in sig if p not in ("self",)) or "none"
            raise TwinedgeError(
                f"--param {text}: {kind + ' ' if kind else ''}policy {head!r} has no "
                f"parameter {rest!r} "
                f"(its parameters: {names})"
            )
        default = sig[rest].default
        default = None if default is inspect.Parameter.empty else default
        values = tuple(
            _convert(v, default, text, f"{head}.{rest} defaults to {default!r}") for v in raws
        )
        from twinedge.orchestrator import as_policy

        for v in values:  # the policy's own range checks, before anything runs
            try:
                as_policy(head, cast(Literal["placement", "migration"], kind or "placement"),
                          **{rest: v})  # fmt: skip
            except PolicyError as exc:
                raise TwinedgeError(f"--param {text}: {exc}") from None
        return Param(path, values, head, kind, rest)
    if head not in Scenario.model_fields:
        raise TwinedgeError(
            f"--param {text}: {head!r} is neither a policy ({', '.join(sorted(policies))}) "
            f"nor a scenario field ({', '.join(Scenario.model_fields)})"
        )
    values = tuple(yaml.safe_load(v) for v in raws)
    for v in values:  # validated as the scenario would be
        apply_overrides(sc, {path: v}, where=f"--param {text}")
    return Param(path, values)


def _policy_class(
    path: str, policies: dict[str, tuple[str, type]], text: str
) -> tuple[str, str, str | None, type] | None:
    """``(policy, parameter, kind, class)`` when ``path`` names a policy's parameter: a
    registered name (``utility.beta``), a plug-in, or an import path
    (``mypolicies:Pinned.host``); None for a scenario field."""
    from twinedge.policies.registry import find, plugins

    head, _, rest = path.partition(".")
    if head in policies:
        return head, rest, *policies[head]
    if ":" in path:
        spec, _, rest = path.rpartition(".")
        if ":" not in spec:
            raise TwinedgeError(
                f"--param {text}: expected an import path and a parameter, "
                "e.g. mypolicies:Pinned.host=0,1"
            )
    else:
        spec = head
    kinds = [k for k in ("placement", "migration") if spec in plugins(k)]
    if ":" not in spec and not kinds:
        return None  # not a policy: a scenario field
    try:
        obj = find(spec, {}, kinds[0] if kinds else "placement")
    except PolicyError as exc:
        raise TwinedgeError(f"--param {text}: {exc}") from None
    if not inspect.isclass(obj):
        raise TwinedgeError(
            f"--param {text}: {spec!r} is a function, so it takes no parameters; make it a "
            "class whose __init__ takes them"
        )
    kind = getattr(obj, "kind", None)
    return spec, rest, kind if kind in ("placement", "migration") else None, obj


def apply_overrides(sc: Scenario, overrides: dict[str, Any], where: str = "--param") -> Scenario:
    """``sc`` with the dotted fields of ``overrides`` replaced, validated again.

    Raises:
        TwinedgeError: a field does not exist or a value is refused by the schema.
    """
    if not overrides:
        return sc
    d = sc.model_dump()
    for path, value in overrides.items():
        parts = path.split(".")
        if parts == ["entities", "count"]:
            _share_total(d["entities"], value, where)
            continue
        node: Any = d
        for i, key in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                idx = _list_index(node, key, where, path)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict) and key in node:
                if last:
                    node[key] = value
                else:
                    node = node[key]
            else:
                have = ", ".join(node) if isinstance(node, dict) else type(node).__name__
                raise TwinedgeError(
                    f"{where}: the scenario has no field {'.'.join(parts[: i + 1])!r} "
                    f"(there: {have})"
                )
    from pydantic import ValidationError

    try:
        return Scenario.model_validate(d)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise TwinedgeError(f"{where}: {loc}: {first['msg']}") from None


def _list_index(node: list, key: str, where: str, path: str) -> int:
    if key.isdigit() and int(key) < len(node):
        return int(key)
    kinds = [g.get("kind") for g in node if isinstance(g, dict)]
    if key in kinds:
        return kinds.index(key)
    raise TwinedgeError(
        f"{where}: {path!r}: {key!r} is neither an index below {len(node)} nor a kind "
        f"({', '.join(str(k) for k in kinds)})"
    )


def _share_total(groups: list[dict], total: Any, where: str) -> None:
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise TwinedgeError(f"{where}: entities.count: {total!r} is not a whole number ≥ 0")
    counted = [g for g in groups if g.get("count") is not None]
    if not counted:
        raise TwinedgeError(f"{where}: entities.count: no entity group has a count to scale")
    now = np.array([g["count"] for g in counted], dtype=float)
    share = now / now.sum() * total if now.sum() else np.full(now.size, total / now.size)
    base = np.floor(share).astype(int)
    # largest remainders get the entities left over, so the groups add up to the total
    for i in np.argsort(-(share - base), kind="stable")[: total - int(base.sum())]:
        base[i] += 1
    for g, c in zip(counted, base, strict=True):
        g["count"] = int(c)


# ---------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One finished run of a sweep: what determines it and what it measured."""

    key: dict[str, Any]
    summary: dict[str, float]
    step_values: list[list[float]]
    wall_s: float
    entities: int
    hosts: int

    @property
    def name(self) -> str:
        return run_name(self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "summary": self.summary,
            "step_values": self.step_values,
            "wall_s": self.wall_s,
            "entities": self.entities,
            "hosts": self.hosts,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        return cls(d["key"], d["summary"], d["step_values"], d["wall_s"], d["entities"], d["hosts"])


def run_name(key: dict[str, Any]) -> str:
    """The file name of a run: readable labels and a hash of all that determines it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{key['placement']}+{key['migration']}")
    return f"{label}_seed{key['seed']}_{digest}"


def run_record(sc: Scenario, job: Job, key: dict[str, Any]) -> RunRecord:
    """Run one job of a sweep and keep only what the tables need (a small object to send
    back from a worker process or a Ray task)."""
    res, _ = run_job(sc, job)
    return RunRecord(
        key=key,
        summary={k: float(v) for k, v in res.summary.items() if _is_number(v)},
        step_values=[[float(f"{v:.8g}") for v in row] for row in res.metrics.step_values],
        wall_s=round(res.wall_s, 3),
        entities=int(res.world.n_entities),
        hosts=int(res.world.n_hosts),
    )


@dataclass(frozen=True)
class _Task:
    """A job with its key: the callable sent to a worker (picklable)."""

    job: Job
    key: dict[str, Any] = field(hash=False, compare=False)


def _run_task(sc: Scenario, task: _Task) -> RunRecord:
    return run_record(sc, task.job, task.key)


@dataclass
class SweepResult:
    """The runs of a sweep (kept ones first) and what it did."""

    records: list[RunRecord]
    params: list[Param]
    seeds: list[int]
    scenario: str
    steps: int
    kept: int = 0
    ran: int = 0

    @property
    def param_paths(self) -> list[str]:
        return [p.path for p in self.params]

    @property
    def metrics(self) -> list[str]:
        """The engine's metrics, then those every run has of the scenario's services
        (offloading, XR, ...), in the order the runs report them."""
        extra: dict[str, None] = {}
        for r in self.records:
            extra.update((k, None) for k in r.summary if k not in METRICS)
        return [*METRICS, *(k for k in extra if all(k in r.summary for r in self.records))]

    def rows(self) -> list[dict[str, Any]]:
        """The tidy table: one row per run × metric (a run is one policy pair)."""
        out = []
        metrics = self.metrics
        for r in self.records:
            base = {
                "run": r.name,
                "scenario": self.scenario,
                "steps": self.steps,
                "seed": r.key["seed"],
                "placement": r.key["placement"],
                "migration": r.key["migration"],
                "policy": f"{r.key['placement']}+{r.key['migration']}",
                **{p: r.key["params"].get(p) for p in self.param_paths},
            }
            for m in metrics:
                out.append({**base, "metric": m, "value": r.summary[m]})
        return out

    def groups(self) -> dict[tuple, list[RunRecord]]:
        """Runs by (policy, parameter values): the seeds of one point of the sweep."""
        g: dict[tuple, list[RunRecord]] = {}
        for r in self.records:
            k = (
                f"{r.key['placement']}+{r.key['migration']}",
                *(_freeze(r.key["params"].get(p)) for p in self.param_paths),
            )
            g.setdefault(k, []).append(r)
        return g

    def summary_rows(self) -> list[dict[str, Any]]:
        """Mean ± 95 % CI per policy, parameter point and metric."""
        out = []
        metrics = self.metrics
        for k, runs in self.groups().items():
            for m in metrics:
                mean, half = ci95([r.summary[m] for r in runs])
                out.append(
                    {
                        "policy": k[0],
                        **{p: runs[0].key["params"].get(p) for p in self.param_paths},
                        "metric": m,
                        "n": len(runs),
                        "mean": mean,
                        "ci95": half,
                        "ci95_low": mean - half,
                        "ci95_high": mean + half,
                    }
                )
        return out

    def summary_json(self) -> dict[str, Any]:
        """The JSON summary: per group, every metric as mean, ci95 (half-width), n."""
        from twinedge import __version__

        groups = []
        names = self.metrics
        for k, runs in self.groups().items():
            metrics = {}
            for m in names:
                mean, half = ci95([r.summary[m] for r in runs])
                metrics[m] = {"mean": _num(mean), "ci95": _num(half), "n": len(runs)}
            groups.append(
                {
                    "policy": k[0],
                    "params": {p: runs[0].key["params"].get(p) for p in self.param_paths},
                    "seeds": sorted(r.key["seed"] for r in runs),
                    "metrics": metrics,
                }
            )
        return {
            "twinedge": __version__,
            "scenario": self.scenario,
            "steps": self.steps,
            "seeds": self.seeds,
            "params": {p.path: list(p.values) for p in self.params},
            "interval": "95 % Student t across seeds: mean ± t(0.975, n-1)·s/√n",
            "runs": {"total": len(self.records), "kept": self.kept, "ran": self.ran},
            "groups": groups,
        }

    def timeseries_bands(self) -> dict[tuple, dict[str, np.ndarray]]:
        """Per group: the step columns' mean and 95 % CI half-width across seeds."""
        out = {}
        for k, runs in self.groups().items():
            v = np.array([r.step_values for r in runs], dtype=float)  # seeds × steps × cols
            mean = v.mean(axis=0)
            half = np.full_like(mean, np.nan)
            if len(runs) > 1:
                from scipy.stats import t

                half = t.ppf(0.975, len(runs) - 1) * v.std(axis=0, ddof=1) / math.sqrt(len(runs))
            out[k] = {"mean": mean, "ci95": half}
        return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _freeze(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(f"{v:.10g}")


def plan(
    sc: Scenario,
    seeds: Sequence[int],
    placements: Sequence[str],
    migrations: Sequence[str],
    params: Sequence[Param],
    steps: int,
) -> list[_Task]:
    """Every run of the sweep, as jobs with their keys (see the module docstring)."""
    fingerprint = hashlib.sha256(sc.model_dump_json().encode()).hexdigest()[:16]
    tasks = []
    for p, m in itertools.product(placements, migrations):
        own = [q for q in params if q.policy is None or q.policy in (p, m)]
        for values in itertools.product(*(q.values for q in own)):
            point = dict(zip((q.path for q in own), values, strict=True))
            scen = {q.path: point[q.path] for q in own if q.policy is None}
            p_params = {
                q.parameter: point[q.path]
                for q in own
                if q.policy == p and q.kind in ("placement", None) and q.parameter
            }
            m_params = {
                q.parameter: point[q.path]
                for q in own
                if q.policy == m and q.kind in ("migration", None) and q.parameter
            }
            for seed in seeds:
                key = {
                    "scenario": sc.name,
                    "fingerprint": fingerprint,
                    "steps": steps,
                    "seed": seed,
                    "placement": p,
                    "migration": m,
                    "params": point,
                }
                job = Job(
                    p,
                    m,
                    seed,
                    steps,
                    overrides=tuple(scen.items()),
                    placement_params=tuple(p_params.items()),
                    migration_params=tuple(m_params.items()),
                )
                tasks.append(_Task(job, key))
    return tasks


def run_sweep(
    sc: Scenario,
    *,
    seeds: Sequence[int],
    placements: Sequence[str],
    migrations: Sequence[str],
    params: Sequence[Param] = (),
    steps: int | None = None,
    out_dir: Path | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    on_done: Callable[[int, int, str], None] | None = None,
) -> SweepResult:
    """Run a sweep (see the module docstring), keeping and reusing runs in ``out_dir/runs``.

    Parameters:
        sc: the base scenario.
        seeds, placements, migrations: what to run; every combination.
        params: the parameter grid (:func:`parse_param`).
        steps: steps per run (default: the scenario's).
        out_dir: where finished runs are kept (``None``: nowhere, no resume).
        workers, ray_address: as :func:`twinedge.engine.parallel.run_jobs`.
        on_done: called with (finished, total, run name) after each run.

    Returns:
        The records of every run, in plan order.

    Raises:
        TwinedgeError: a run failed (a policy or scenario error is raised as it was).

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> res = run_sweep(load_scenario("city-small"), seeds=[0, 1], placements=["nearest"],
        ...                 migrations=["never"], steps=3)
        >>> [row["n"] for row in res.summary_rows()][:1]
        [2]
    """
    steps = steps or sc.run.steps
    tasks = plan(sc, seeds, placements, migrations, params, steps)
    runs_dir = None if out_dir is None else out_dir / "runs"
    if runs_dir is not None:
        runs_dir.mkdir(parents=True, exist_ok=True)
    found: dict[int, RunRecord] = {}
    todo: list[tuple[int, _Task]] = []
    for i, task in enumerate(tasks):
        path = None if runs_dir is None else runs_dir / f"{run_name(task.key)}.json"
        if path is not None and path.is_file():
            try:
                rec = RunRecord.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError):
                rec = None  # unreadable: run it again
            if rec is not None and rec.key == task.key:
                found[i] = rec
                continue
        todo.append((i, task))
    kept = len(found)
    finished = kept
    if on_done is not None and kept:
        on_done(finished, len(tasks), f"{kept} runs kept from {runs_dir}")

    def save(task: _Task, rec: RunRecord) -> None:
        nonlocal finished
        if runs_dir is not None:
            path = runs_dir / f"{rec.name}.json"
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(rec.to_json()))
            os.replace(tmp, path)
        finished += 1
        if on_done is not None:
            on_done(finished, len(tasks), rec.name)

    records = run_jobs(
        sc,
        [t for _, t in todo],
        workers=workers,
        ray_address=ray_address,
        on_done=save,
        task=_run_task,
    )
    for (i, _), rec in zip(todo, records, strict=True):
        found[i] = rec
    return SweepResult(
        [found[i] for i in range(len(tasks))],
        list(params),
        list(seeds),
        sc.name,
        steps,
        kept=kept,
        ran=len(todo),
    )


def write_sweep(result: SweepResult, out_dir: Path, *, report: bool = True) -> dict[str, Path]:
    """Write the tables of a sweep into ``out_dir``: ``results.parquet``/``.csv`` (one row
    per run × metric), ``summary.parquet``/``.csv`` (mean ± 95 % CI per policy, parameter
    point and metric), ``summary.json``, ``timeseries.csv`` (per step: mean and CI across
    seeds) and ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in (("results", result.rows()), ("summary", result.summary_rows())):
        paths[f"{name}_csv"] = _write_csv(rows, out_dir / f"{name}.csv")
        paths[f"{name}_parquet"] = _write_parquet(rows, out_dir / f"{name}.parquet")
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(json.dumps(result.summary_json(), indent=2) + "\n")
    paths["timeseries"] = out_dir / "timeseries.csv"
    with open(paths["timeseries"], "w", newline="") as f:
        wr = csv.writer(f)
        cols = STEP_COLUMNS[1:]
        wr.writerow(
            ["policy", *result.param_paths, "step", "t_s"]
            + [c for col in cols for c in (f"{col}_mean", f"{col}_ci95")]
        )
        for k, band in result.timeseries_bands().items():
            for s, (mean, half) in enumerate(zip(band["mean"], band["ci95"], strict=True)):
                wr.writerow(
                    [*k, s + 1, f"{mean[0]:.6g}"]
                    + [f"{x:.6g}" for i in range(1, len(STEP_COLUMNS)) for x in (mean[i], half[i])]
                )
    if report:
        from twinedge.report.sweep import write_sweep_report

        paths["report"] = write_sweep_report(result, out_dir / "report.html")
    return paths


def _write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        if rows:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows({k: "" if v is None else _cell(v) for k, v in r.items()} for r in rows)
    return path


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return v


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(rows[0]) if rows else []
    data = {c: [_parquet_cell(r[c]) for r in rows] for c in cols}
    pq.write_table(pa.table(data), path)
    return path


def _parquet_cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return v
