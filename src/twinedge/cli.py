"""The ``twinedge`` command: run, compare, place, scenario, ledger, serve, host, devices.

Conventions every sub-command keeps: ``--json`` prints one JSON document on stdout and
nothing else there (progress and errors go to stderr); a user mistake is one line
``error: ...`` on stderr and a non-zero exit, never a traceback; long work shows a rich
progress bar on a terminal and, when stderr is a file or pipe, a plain line every few
seconds (:mod:`twinedge.progress`; ``TWINEDGE_PROGRESS_EVERY_S`` sets how often);
``NO_COLOR`` turns colour off. ``twinedge completion SHELL`` prints a completion script
that asks this command itself for the candidates, so it always knows the options of the
installed version.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from twinedge import __version__
from twinedge.errors import InfeasibleError, Problem, ScenarioError, TwinedgeError
from twinedge.progress import EVERY_S, ProgressLines

app = typer.Typer(
    name="twinedge",
    help="Digital twin edge networks: simulate, place and migrate twins, verify the ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scenario_app = typer.Typer(help="Validate and inspect scenario files.", no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

#: The environment variable a completion script sets when it asks for candidates.
COMPLETE_VAR = "_TWINEDGE_COMPLETE"


def _print_version(value: bool) -> None:
    if value:
        print(f"twinedge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Digital twin edge networks: simulate, place and migrate twins, verify the ledger."""


def _progress_mode(quiet: bool) -> str:
    """``bar`` on a terminal, ``lines`` when stderr is a file or pipe (or under CI),
    ``none`` with ``--quiet``."""
    if quiet:
        return "none"
    if sys.stderr.isatty() and not os.environ.get("CI"):
        return "bar"
    return "lines"


def _progress_every_s() -> float:
    """Seconds between progress lines: ``TWINEDGE_PROGRESS_EVERY_S`` or the default."""
    raw = os.environ.get("TWINEDGE_PROGRESS_EVERY_S", "").strip()
    if not raw:
        return EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise TwinedgeError(
            f"TWINEDGE_PROGRESS_EVERY_S: got {raw!r}; expected a positive number of seconds"
        )
    return value


ScenarioArg = Annotated[
    str, typer.Argument(help="A scenario YAML file, or a built-in name: city, city-small.")
]


def _run_many(
    scenario: str,
    placement: str | None,
    migration: str | None,
    seed: int | None,
    steps: int | None,
    quiet: bool,
    ledger: Path | None = None,
    ledger_every: int = 0,
    workers: int = 1,
    ray: str | None = None,
    command: str = "run",
    scale: float = 1.0,
    offload: str | None = None,
):
    from twinedge.engine import check_run
    from twinedge.scenario import load_scenario

    sc = load_scenario(scenario, scale=scale)
    # the same validation as `twinedge scenario validate`, before anything runs
    check_run(sc, scenario, steps=steps, placement=placement, migration=migration, offload=offload)
    pol = sc.policies
    placements = pol.as_list(placement or pol.placement)
    migrations = pol.as_list(migration or pol.migration)
    offloads: list[str | None] = [*pol.as_list(offload)] if offload else [None]
    seed = sc.run.seed if seed is None else seed
    steps = steps or sc.run.steps
    combos = [(p, m, o) for p in placements for m in migrations for o in offloads]
    mode = _progress_mode(quiet)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    from twinedge.engine.parallel import Job, run_job, run_jobs

    jobs = [Job(p, m, seed, steps, None, ledger_every, offload=o) for p, m, o in combos]
    if ledger is not None:  # one ledger folder per run when there are several
        jobs = [
            dataclasses.replace(j, ledger=ledger / j.label if len(jobs) > 1 else ledger)
            for j in jobs
        ]
    if mode == "lines":
        done = _run_logged(sc, jobs, steps, workers, ray, f"twinedge {command}")
        results = [r for r, _ in done]
        return sc, seed, steps, results, [rec for _, rec in done if rec is not None]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=mode != "bar",
        transient=False,
    ) as bar:
        if workers > 1 or ray is not None:  # whole runs in parallel: progress per run
            where = f"Ray at {ray}" if ray else f"{workers} processes"
            task = bar.add_task(f"{len(jobs)} runs on {where}", total=len(jobs))
            done = run_jobs(
                sc,
                jobs,
                workers=workers,
                ray_address=ray,
                on_done=lambda job, res: bar.advance(task),
            )
        else:
            done = []
            for job in jobs:
                t = bar.add_task(job.label, total=steps)

                def advance(k: int, t: TaskID = t) -> None:
                    bar.update(t, completed=k)

                done.append(run_job(sc, job, advance))
    results = [r for r, _ in done]
    recorders = [rec for _, rec in done if rec is not None]
    return sc, seed, steps, results, recorders


def _run_logged(sc, jobs, steps: int, workers: int, ray: str | None, prefix: str) -> list:
    """Run the jobs with progress lines on stderr: steps when they run here one after
    the other, finished runs (and a heartbeat) when they run in parallel."""
    from twinedge.engine.parallel import run_job, run_jobs

    every_s = _progress_every_s()
    if workers > 1 or ray is not None:
        lines = ProgressLines(len(jobs), "runs", stream=sys.stderr, every_s=every_s, prefix=prefix)
        finished = 0

        def on_done(job, res) -> None:
            nonlocal finished
            finished += 1
            lines.update(finished, f"{job.label} done")

        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(every_s):
                lines.tick()

        beat = threading.Thread(target=heartbeat, name="progress-lines", daemon=True)
        beat.start()
        try:
            done = run_jobs(sc, jobs, workers=workers, ray_address=ray, on_done=on_done)
        finally:
            stop.set()
            beat.join()
    else:
        lines = ProgressLines(
            steps * len(jobs), "steps", stream=sys.stderr, every_s=every_s, prefix=prefix
        )
        done = []
        for i, job in enumerate(jobs):

            def advance(k: int, i: int = i, label: str = job.label) -> None:
                lines.update(i * steps + k, f"{label}: step {k}/{steps}")

            done.append(run_job(sc, job, advance))
    lines.finish()
    return done


def _results_json(results, scenario_name: str, seed: int, steps: int) -> dict[str, Any]:
    """The summary of the runs (as summary.json) with each run's wall time."""
    from twinedge.report.outputs import summary_dict

    d = summary_dict(results, scenario_name, seed, steps)
    for r in results:
        d["policies"][r.label]["wall_s"] = round(r.wall_s, 3)
    return d


SeedsOpt = Annotated[
    str | None,
    typer.Option(
        help="Run every policy on these seeds and report mean ± 95 % CI: ranges and "
        "lists, e.g. 0..31 or 0..3,10."
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="A parameter grid, repeatable: policy.parameter=V1,V2 (utility.beta=0.3,0.7) "
        "or a scenario field (entities.count=1000,10000, run.step_s=0.5,1)."
    ),
]
ScaleOpt = Annotated[
    float,
    typer.Option(
        help="Multiply the scenario's entities and the capacity serving them (a generated "
        "city: its area, edge sites, region hubs and cloud; other infrastructure: every "
        "host's capacity) by this factor, so host load stays comparable.",
    ),
]
OffloadOpt = Annotated[
    str | None,
    typer.Option(
        help="Offloading policy name(s), comma-separated, or module:function, for a scenario "
        "with an offloading section (default: its policy; list them: twinedge policies).",
    ),
]
WorkersOpt = Annotated[
    int, typer.Option(min=1, help="Run the policy combinations in this many local processes.")
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        help="Run the policy combinations as tasks of a Ray cluster: its head's host:port, "
        "'auto', or 'local' to start Ray here (needs twinedge\\[ray])."
    ),
]
FiguresOpt = Annotated[
    str | None,
    typer.Option(
        "--figures",
        help="Also write each figure as these formats (comma-separated: pdf, svg, png) with "
        "its data as CSV into OUT/figures/ (default: none).",
    ),
]
FigureColumnsOpt = Annotated[
    int,
    typer.Option(
        "--figure-columns",
        min=1,
        max=2,
        help="Figure width: 1 column (3.5 in) or 2 columns (7.16 in) of a two-column paper.",
    ),
]


def _sweep(
    scenario: str,
    placement: str | None,
    migration: str | None,
    seed: int | None,
    seeds: str | None,
    params: list[str] | None,
    steps: int | None,
    quiet: bool,
    workers: int,
    ray: str | None,
    out_dir: Path | None,
    command: str,
    scale: float = 1.0,
    offload: str | None = None,
):
    """Run a sweep of seeds and parameters with progress on stderr (``offload``: a
    sweep over the scenario field ``offloading.policy``)."""
    from twinedge.engine import check_run
    from twinedge.engine.sweep import parse_param, parse_seeds, run_sweep
    from twinedge.scenario import load_scenario

    if seed is not None and seeds is not None:
        raise TwinedgeError("give --seed or --seeds, not both")
    sc = load_scenario(scenario, scale=scale)
    check_run(sc, scenario, steps=steps, placement=placement, migration=migration, offload=offload)
    seed_list = parse_seeds(seeds) if seeds is not None else [sc.run.seed]
    if offload:
        params = [*(params or []), f"offloading.policy={offload}"]
    grid = [parse_param(p, sc) for p in params or []]
    pol = sc.policies
    mode = _progress_mode(quiet)
    lines: list[ProgressLines] = []

    def on_done(finished: int, total: int, name: str) -> None:
        if mode == "none":
            return
        if not lines:
            lines.append(
                ProgressLines(
                    total,
                    "runs",
                    stream=sys.stderr,
                    every_s=_progress_every_s(),
                    prefix=f"twinedge {command}",
                )
            )
        lines[0].update(finished, name)

    result = run_sweep(
        sc,
        seeds=seed_list,
        placements=pol.as_list(placement or pol.placement),
        migrations=pol.as_list(migration or pol.migration),
        params=grid,
        steps=steps,
        out_dir=out_dir,
        workers=workers,
        ray_address=ray,
        on_done=on_done,
    )
    if lines:
        lines[0].finish()
    return result


def _print_sweep(result, paths: dict[str, Path], as_json: bool, quiet: bool) -> None:
    if as_json:
        doc = result.summary_json()
        doc["files"] = {name: str(p) for name, p in paths.items()}
        print(json.dumps(doc, indent=2))
        return
    if quiet:
        return
    from twinedge.report.sweep import sweep_table

    out.print(sweep_table(result))
    out.print(
        f"runs: {len(result.records)} ({result.kept} kept from an earlier start, {result.ran} run now)"
    )
    for name, p in paths.items():
        out.print(f"{name}: {p}")


@app.command()
def run(
    scenario: ScenarioArg = "city",
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out"),
    seed: Annotated[
        int | None, typer.Option(min=0, help="Random seed (default: the scenario's).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Number of steps (default: the scenario's).")
    ] = None,
    placement: Annotated[
        str | None,
        typer.Option(help="Placement policy name(s), comma-separated, or module:function."),
    ] = None,
    migration: Annotated[
        str | None,
        typer.Option(help="Migration policy name(s), comma-separated, or module:function."),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(help="Record every decision in a governance ledger in this folder."),
    ] = None,
    ledger_every: Annotated[
        int,
        typer.Option(min=0, help="Also checkpoint the ledger every N steps (0: only at the end)."),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the summary, the files written and the ledgers as JSON (instead of the table).",
        ),
    ] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
    workers: WorkersOpt = 1,
    ray: RayOpt = None,
    figures: FiguresOpt = None,
    figure_columns: FigureColumnsOpt = 1,
    seeds: SeedsOpt = None,
    param: ParamOpt = None,
    scale: ScaleOpt = 1.0,
    offload: OffloadOpt = None,
) -> None:
    """Simulate a scenario and write summary.json, timeseries.csv and report.html.

    With --seeds or --param it runs a sweep: results.parquet/.csv (one row per run and
    metric), summary.parquet/.csv and summary.json (mean ± 95 % CI across seeds) and
    report.html; finished runs are kept in OUT/runs, so the same command run again
    resumes an interrupted sweep.
    """
    from twinedge.report import summary_table, write_outputs
    from twinedge.report.figures import parse_formats

    figure_formats = parse_formats(figures)  # a bad list fails before the run

    if seeds is not None or param:
        if ledger is not None:
            raise TwinedgeError(
                "--ledger records one run: it cannot be combined with --seeds or --param"
            )
        result = _sweep(scenario, placement, migration, seed, seeds, param, steps, quiet,
                        workers, ray, out_dir, "run", scale, offload)  # fmt: skip
        from twinedge.engine.sweep import write_sweep

        paths = write_sweep(result, out_dir, report=not no_report)
        _print_sweep(result, paths, as_json, quiet)
        return

    sc, seed, steps, results, recorders = _run_many(
        scenario, placement, migration, seed, steps, quiet, ledger, ledger_every, workers, ray,
        scale=scale, offload=offload,
    )  # fmt: skip
    extra = {}
    if recorders:
        from twinedge.engine.record import ledger_report_html

        extra["ledger"] = ledger_report_html(recorders)
    paths = write_outputs(
        results,
        out_dir,
        scenario_name=sc.name,
        seed=seed,
        steps=steps,
        extra=extra,
        report=not no_report,
        figure_formats=figure_formats,
        figure_columns=figure_columns,
    )
    if as_json:
        doc = _results_json(results, sc.name, seed, steps)
        doc["files"] = {name: str(p) for name, p in paths.items()}
        doc["ledgers"] = [str(r.path) for r in recorders]
        print(json.dumps(doc, indent=2))
    elif not quiet:
        out.print(summary_table(results))
        for name, p in paths.items():
            out.print(f"{name}: {p}")
        for r in recorders:
            out.print(f"ledger: {r.path} — verify with: twinedge ledger verify {r.path}")


@app.command()
def compare(
    scenario: ScenarioArg = "city",
    placement: Annotated[
        str | None, typer.Option(help="Placement policies, comma-separated.")
    ] = None,
    migration: Annotated[
        str | None, typer.Option(help="Migration policies, comma-separated.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Random seed (default: the scenario's).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Number of steps.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (instead of the table).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="With --seeds or --param: keep the runs and the tables in this folder "
            "(an interrupted sweep resumes from it); with --figures: write OUT/figures/ "
            "(default: out).",
        ),
    ] = None,
    workers: WorkersOpt = 1,
    ray: RayOpt = None,
    figures: FiguresOpt = None,
    figure_columns: FigureColumnsOpt = 1,
    seeds: SeedsOpt = None,
    param: ParamOpt = None,
    scale: ScaleOpt = 1.0,
    offload: OffloadOpt = None,
) -> None:
    """Run every placement x migration combination on the same seed and print a table
    (with --seeds or --param: mean ± 95 % CI across seeds per policy and parameter point)."""
    from twinedge.report import summary_table
    from twinedge.report.figures import parse_formats, write_figures

    figure_formats = parse_formats(figures)  # a bad list fails before the run

    if seeds is not None or param:
        result = _sweep(scenario, placement, migration, seed, seeds, param, steps, quiet,
                        workers, ray, out_dir, "compare", scale, offload)  # fmt: skip
        paths = {}
        if out_dir is not None:
            from twinedge.engine.sweep import write_sweep

            paths = write_sweep(result, out_dir, report=False)
        _print_sweep(result, paths, as_json, False)
        return
    if out_dir is not None and not figure_formats:
        raise TwinedgeError(
            "--out keeps the runs of a sweep or the files of --figures: give --seeds, "
            "--param or --figures too"
        )
    fig_dir = (out_dir or Path("out")) / "figures"

    sc, seed, steps, results, _ = _run_many(
        scenario,
        placement,
        migration,
        seed,
        steps,
        quiet,
        workers=workers,
        ray=ray,
        command="compare",
        scale=scale,
        offload=offload,
    )
    if figure_formats:
        write_figures(results, fig_dir, figure_formats, figure_columns)
    if as_json:
        print(json.dumps(_results_json(results, sc.name, seed, steps), indent=2))
    else:
        out.print(summary_table(results))
        if figure_formats:
            out.print(f"figures: {fig_dir}")


@app.command()
def place(
    instance: Annotated[Path, typer.Argument(help="Instance JSON: latency_ms, demand, capacity.")],
    policy: Annotated[
        str, typer.Option(help="nearest, greedy, optimal, or module:function.")
    ] = "optimal",
    time_limit_s: Annotated[
        float | None, typer.Option(min=0.0, help="Time limit for policies that take one (optimal).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed for randomised policies.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Solve a bare placement instance (see docs/placement.md for the format).

    Exit code 0 on a placement, 3 when the instance is infeasible (the JSON says why).
    """
    import inspect
    import time

    from twinedge.policies.placement import load_instance, resolve_placement, solve_placement

    problem = load_instance(instance)
    params = {}
    if time_limit_s is not None:
        pol_cls = _placement_class(policy)
        if pol_cls is None or "time_limit_s" not in inspect.signature(pol_cls).parameters:
            raise ScenarioError([f"--time-limit-s: policy {policy!r} takes no time limit"])
        params["time_limit_s"] = time_limit_s
    pol = resolve_placement(policy, **params)
    t0 = time.perf_counter()
    try:
        result = solve_placement(pol, problem, np.random.default_rng(seed))
    except InfeasibleError as e:
        failure: dict[str, Any] = {
            "status": "infeasible",
            "hosts": [],
            "objective_ms": None,
            "lower_bound_ms": None,
            "gap": None,
            "solve_s": round(time.perf_counter() - t0, 6),
            "reason": str(e),
        }
        if as_json:
            print(json.dumps(failure))
        else:
            err.print(f"infeasible: {e}")
        raise typer.Exit(3) from None
    doc = result.to_json()  # solve_placement raises for an infeasible instance (above)
    if as_json:
        print(json.dumps(doc))
    else:
        out.print(f"status: {doc['status']}")
        out.print(f"objective_ms: {doc['objective_ms']:.6g}")
        if doc["lower_bound_ms"] is not None:
            out.print(f"lower_bound_ms: {doc['lower_bound_ms']:.6g}  gap: {doc['gap']:.3%}")
        out.print(f"solve_s: {doc['solve_s']:.3f}")
        out.print(f"hosts: {doc['hosts'][:20]}{' ...' if len(doc['hosts']) > 20 else ''}")


def _placement_class(spec: str):
    from twinedge.policies.placement import PLACEMENT_POLICIES

    return PLACEMENT_POLICIES.get(spec)


@scenario_app.command("validate")
def scenario_validate(
    file: ScenarioArg,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result as JSON: ok, and every problem as an object with "
            "file, field, value, expected and message (exit status 2 when there are any).",
        ),
    ] = False,
) -> None:
    """Check a scenario file as `twinedge run` would; print one line per problem."""
    from twinedge.engine import check_run
    from twinedge.scenario import load_scenario

    try:
        sc = load_scenario(file)
        w = check_run(sc, file)
    except TwinedgeError as exc:
        if not as_json:
            raise
        print(json.dumps({"file": file, "ok": False, "problems": _problems(exc, file)}, indent=2))
        raise typer.Exit(2) from None
    if as_json:
        doc = {
            "file": file,
            "ok": True,
            "nodes": len(w.node_ids),
            "hosts": w.n_hosts,
            "entities": w.n_entities,
            "steps": sc.run.steps,
            "problems": [],
        }
        print(json.dumps(doc, indent=2))
        return
    out.print(
        f"ok: {file}: {len(w.node_ids)} nodes, {w.n_hosts} hosts, {w.n_entities} entities, {sc.run.steps} steps"
    )


def _problems(exc: TwinedgeError, file: str) -> list[dict[str, Any]]:
    """The problems of an error as JSON objects; one without a file of its own is
    about ``file``."""
    if isinstance(exc, ScenarioError):
        # a line parsed without knowing the file: again, now that it is known
        details = [p if p.file else Problem.parse(p.message, file) for p in exc.details]
    else:
        details = [Problem.parse(line, file) for line in str(exc).splitlines() or [repr(exc)]]
    return [{**p.to_json(), "file": p.file or file} for p in details]


@scenario_app.command("show")
def scenario_show(
    file: ScenarioArg, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Summarise a scenario: nodes per tier, capacity against demand, entities, links."""
    from twinedge.engine import check_run
    from twinedge.scenario import load_scenario

    sc = load_scenario(file)
    w = check_run(sc, file)
    tiers = {}
    for code, name in enumerate(("access", "edge", "region", "cloud")):
        idx = np.flatnonzero(w.node_tier == code)
        tiers[name] = {
            "count": int(idx.size),
            "cpu_ghz": float(w.node_cpu_ghz[idx].sum()),
            "mem_gb": float(w.node_mem_gb[idx].sum()),
        }
    kinds = {k: int(np.count_nonzero(w.entity_kind == i)) for i, k in enumerate(w.kinds)}
    finite = w.ap_host_ms[np.isfinite(w.ap_host_ms)]
    info: dict[str, Any] = {
        "name": sc.name,
        "bounds_m": [round(float(v), 1) for v in w.bounds_m],
        "tiers": tiers,
        "domains": w.domains,
        "links": int(w.links.a.size),
        "entities": kinds,
        "owners": w.owners,
        "demand": {"cpu_ghz": float(w.cpu_ghz.sum()), "mem_gb": float(w.mem_gb.sum())},
        "backbone_ms": {"min": float(finite.min()), "max": float(finite.max())},
        "run": {"steps": sc.run.steps, "step_s": sc.run.step_s, "seed": sc.run.seed},
        "policies": sc.policies.model_dump(),
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    from rich.table import Table

    out.print(
        f"[bold]{sc.name}[/]  area {info['bounds_m']} m, {info['links']} links, domains: {', '.join(w.domains)}"
    )
    t = Table("tier", "nodes", "cpu_ghz", "mem_gb")
    for name, v in tiers.items():
        t.add_row(name, str(v["count"]), f"{v['cpu_ghz']:.0f}", f"{v['mem_gb']:.0f}")
    t.add_row(
        "[bold]twin demand[/]",
        str(w.n_entities),
        f"{info['demand']['cpu_ghz']:.0f}",
        f"{info['demand']['mem_gb']:.0f}",
    )
    out.print(t)
    out.print("entities: " + ", ".join(f"{k}={v}" for k, v in kinds.items()))
    out.print(
        f"backbone latency access->host: {info['backbone_ms']['min']:.2f}..{info['backbone_ms']['max']:.2f} ms"
    )
    out.print(
        f"run: {sc.run.steps} steps of {sc.run.step_s} s, seed {sc.run.seed}; policies: {sc.policies.placement} / {sc.policies.migration}"
    )


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML configuration file (or TWINEDGE_CONFIG). Every option below can also "
            "be set as TWINEDGE_<OPTION> (TWINEDGE_PORT, TWINEDGE_DB, ...): options override "
            "the environment, which overrides the file."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="HTTP address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080).")] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Where SQLite and the admin token live (default ./twinedge-data)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Database URL: sqlite:///file.db (default) or postgresql://..."),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="embedded (default), none, or mqtt://user:pass@host:port of an external broker."
        ),
    ] = None,
    mqtt_host: Annotated[
        str | None, typer.Option(help="Address of the embedded MQTT broker (default 127.0.0.1).")
    ] = None,
    mqtt_port: Annotated[
        int | None, typer.Option(help="Port of the embedded MQTT broker (default 1883).")
    ] = None,
    retention_s: Annotated[
        float | None, typer.Option(help="Keep twin history this many seconds (default: forever).")
    ] = None,
    batch_max: Annotated[
        int | None, typer.Option(help="Most writes committed in one transaction (default 2000).")
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="critical, error, warning, info (default) or debug."),
    ] = None,
    otel: Annotated[
        bool | None,
        typer.Option(
            "--otel/--no-otel",
            help="OpenTelemetry traces of the HTTP API and the writer (needs twinedge\\[otel]; "
            "exporter from the OTEL_* variables).",
            show_default=False,
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            help="Scenario file or built-in name whose infrastructure is the live network: "
            "the orchestrator places and migrates the twins that report a position."
        ),
    ] = None,
    placement: Annotated[
        str | None, typer.Option(help="Placement policy of the live network (default greedy).")
    ] = None,
    migration: Annotated[
        str | None, typer.Option(help="Migration policy of the live network (default threshold).")
    ] = None,
    cycle_s: Annotated[
        float | None, typer.Option(help="Seconds between orchestrator cycles (default 1).")
    ] = None,
    placement_period_s: Annotated[
        float | None, typer.Option(help="Re-place every twin this often (default: never).")
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            help="Ledger directory of the live decisions (default DATA_DIR/ledger; none: off)."
        ),
    ] = None,
    forecast_horizon_s: Annotated[
        float | None,
        typer.Option(
            help="Run the live network this far ahead in the simulator, that often "
            "(GET /api/2/orchestrator/forecast; default 10; 0: off)."
        ),
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(
            help="With --network: local (the default): a `twinedge host` process per host "
            "of the network on this machine (at most 16); ray:ADDRESS: the same as --ray "
            "ADDRESS; none: no host processes, the twins stay in the core and the "
            "orchestrator's placement only records where they would run. The twins' state "
            "lives on the hosts and migrates between them."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            help="With --network: run the hosts as actors of the Ray cluster whose head is at "
            "ADDRESS (host:port, or auto), each on the node offering the resource named "
            "after its host (needs the ray extra: twinedge\\[ray])."
        ),
    ] = None,
    behaviour: Annotated[
        str | None,
        typer.Option(
            help="With --network: the behaviour the twins run on their host, for every kind "
            "(dead-reckoning, or package.module:Class) or per kind (robot=dead-reckoning,...)."
        ),
    ] = None,
    migration_method: Annotated[
        str | None,
        typer.Option(
            help="With --network: how a twin moves between hosts: pre-copy (the default: "
            "copied while its source serves, fenced only for the last changes) or "
            "stop-and-copy (fenced, then copied whole: the baseline)."
        ),
    ] = None,
) -> None:
    """Run the live twin service: HTTP API + dashboard, MQTT, durable store, and with
    --network the orchestrator that places and migrates the live twins."""
    from twinedge.runtime.app import ServeConfig
    from twinedge.runtime.app import serve as run_server

    cfg = ServeConfig.load(
        config,
        env=os.environ,
        host=host,
        port=port,
        data_dir=data_dir,
        db=db,
        mqtt=mqtt,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        retention_s=retention_s,
        batch_max=batch_max,
        log_level=log_level,
        otel=otel,
        network=network,
        placement=placement,
        migration=migration,
        cycle_s=cycle_s,
        placement_period_s=placement_period_s,
        ledger=ledger,
        forecast_horizon_s=forecast_horizon_s,
        hosts=hosts,
        ray=ray,
        behaviour=behaviour,
        migration_method=migration_method,
    )
    run_server(cfg)  # prints where it listens once it does


@app.command()
def host(
    host_id: Annotated[
        str, typer.Option("--id", help="The host's id: a host (edge site) of the network.")
    ],
    core: Annotated[
        str, typer.Option(help="The core's HTTP URL (twinedge serve --network).")
    ] = "http://127.0.0.1:8080",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="The hosts token (the core writes DATA_DIR/hosts.token); or TWINEDGE_HOSTS_TOKEN."
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the host's log lives.")] = Path(
        "twinedge-host"
    ),
    mqtt_host: Annotated[str, typer.Option(help="Address of the device endpoint.")] = "127.0.0.1",
    mqtt_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the device endpoint (0: any free one).")
    ] = 1884,
    control_host: Annotated[str, typer.Option(help="Address of the control API.")] = "127.0.0.1",
    control_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the control API (0: any free one).")
    ] = 8181,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            help="Once listening, write the host's pid, mqtt_port and control_port there "
            "as JSON (how a starter learns the ports chosen for 0)."
        ),
    ] = None,
    tick_s: Annotated[
        float,
        typer.Option(
            min=0, max=3600, help="Seconds between ticks of the twins' behaviours (0: none)."
        ),
    ] = 1.0,
    replicate_linger_ms: Annotated[
        float,
        typer.Option(
            envvar="TWINEDGE_REPLICATE_LINGER_MS",
            help="After a record is ready for the core, wait up to this long for more to "
            "send in the same request (0: at once; never while a caller waits for the core).",
        ),
    ] = 20.0,
) -> None:
    """Run an edge host: it serves the twins the core places on it (their state in memory
    and in its own durable log), takes their devices' reports over MQTT, and replicates
    to the core."""
    import asyncio
    import logging

    from twinedge.edge.server import HostServer, run_host

    if not 0 <= replicate_linger_ms <= 3_600_000:  # (NaN fails both)
        raise TwinedgeError(
            f"--replicate-linger-ms must be within 0..3600000, got {replicate_linger_ms}"
        )
    token = os.environ.get("TWINEDGE_HOSTS_TOKEN")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise TwinedgeError(f"--token-file {token_file}: {exc.strerror or exc}") from None
    if not token:
        raise TwinedgeError(
            "the hosts token is needed: --token-file DATA_DIR/hosts.token or TWINEDGE_HOSTS_TOKEN"
        )
    from twinedge.runtime.api.redact import install_log_redaction, register_secret

    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    register_secret(token)  # the hosts token never shows in a log line
    install_log_redaction(*logging.getLogger().handlers)
    server = HostServer(
        host_id,
        data_dir,
        core_url=core,
        token=token,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        control_host=control_host,
        control_port=control_port,
        replicate_linger_s=replicate_linger_ms / 1000,
        tick_s=tick_s,
    )
    asyncio.run(run_host(server, ready_file))


def _first_line(obj: Any) -> str:
    """The first sentence of a docstring, without reST markup."""
    import re

    para = " ".join((getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0].split())
    para = re.sub(r":\w+:`~?([^`]+)`", r"\1", para).replace("``", "").replace("*", "")
    return re.split(r"(?<=[a-z)\]])\.\s+(?=[A-Z])", para)[0].rstrip(".:")


def policy_catalogue() -> list[dict[str, str]]:
    """Every named policy a run can use: kind, name, where it is chosen, and what it does
    (the first sentence of its docstring; installed plug-ins included)."""
    from twinedge.carbon.scheduler import POLICIES as CARBON
    from twinedge.market.mechanisms import MECHANISMS
    from twinedge.offload.policies import OFFLOAD_POLICIES
    from twinedge.policies.migration import MIGRATION_POLICIES
    from twinedge.policies.placement import PLACEMENT_POLICIES
    from twinedge.policies.registry import plugins

    carbon_doc = {
        "baseline": "At release, in the origin region (carbon-agnostic)",
        "shift": "The lowest-carbon block of slots within the job's window",
        "interrupt": "The lowest-carbon slots of the window for interruptible jobs",
        "spatial": "At release, in the reachable region with the lowest emissions",
        "spatial-shift": "As shift, in the best reachable region",
        "spatial-interrupt": "As interrupt, in the best reachable region",
    }
    xr_doc = {
        "device": "Render every session on its headset",
        "nearest-edge": "Render on the edge host nearest the session's access point",
        "best-latency": "Render where the motion-to-photon delay is lowest, with hysteresis",
    }
    rows: list[dict[str, str]] = []
    for kind, registry, where in (
        ("placement", PLACEMENT_POLICIES, "--placement / policies.placement"),
        ("migration", MIGRATION_POLICIES, "--migration / policies.migration"),
    ):
        rows += [{"kind": kind, "name": n, "chosen_by": where, "does": _first_line(c)}
                 for n, c in registry.items()]  # fmt: skip
        rows += [{"kind": kind, "name": n, "chosen_by": where, "does": f"plug-in: {ep.value}"}
                 for n, ep in plugins(kind).items() if n not in registry]  # fmt: skip
    rows += [{"kind": "offloading", "name": n, "chosen_by": "--offload / offloading.policy",
              "does": _first_line(c)} for n, c in OFFLOAD_POLICIES.items()]  # fmt: skip
    rows += [{"kind": "market", "name": n, "chosen_by": "market.mechanism",
              "does": _first_line(c)} for n, c in MECHANISMS.items()]  # fmt: skip
    rows += [{"kind": "carbon", "name": n, "chosen_by": "carbon.policy",
              "does": carbon_doc.get(n, "")} for n in CARBON]  # fmt: skip
    rows += [{"kind": "xr", "name": n, "chosen_by": "xr.placement", "does": d}
             for n, d in xr_doc.items()]  # fmt: skip
    return rows


@app.command()
def policies(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="Only this kind: placement, migration, offloading, market, carbon or xr."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the policies a run can use, by kind, with the option or scenario field that
    chooses each (an import path package.module:function is accepted where an option is)."""
    rows = policy_catalogue()
    kinds = sorted({r["kind"] for r in rows})
    if kind is not None:
        if kind not in kinds:
            raise TwinedgeError(f"policies: got kind {kind!r}; expected one of {', '.join(kinds)}")
        rows = [r for r in rows if r["kind"] == kind]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    t = Table(title="twinedge policies", header_style="bold")
    for col in ("kind", "name", "chosen by", "does"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["kind"], r["name"], r["chosen_by"], r["does"])
    out.print(t)


class Shell(StrEnum):
    """A shell ``twinedge completion`` writes a script for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell: bash, zsh or fish.")],
) -> None:
    """Print the shell completion script (commands, options, choices of this version).

    The script asks `twinedge` itself for the candidates at each Tab, so it never lists
    options the installed version does not have. Enable it with, in ~/.bashrc:
    eval "$(twinedge completion bash)"; in ~/.zshrc (after compinit):
    eval "$(twinedge completion zsh)"; for fish:
    twinedge completion fish > ~/.config/fish/completions/twinedge.fish
    """
    from typer.completion import get_completion_script

    print(get_completion_script(prog_name="twinedge", complete_var=COMPLETE_VAR, shell=shell.value))


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def _mount_ledger() -> None:
    try:
        from twinedge.ledger.cli import app as ledger_app
    except ImportError:  # pragma: no cover - the ledger ships with the package
        return
    app.add_typer(
        ledger_app,
        name="ledger",
        help="Governance ledger: init, append, checkpoint, prove, verify, audit, settle.",
    )


_mount_ledger()


def _mount_devices() -> None:
    from twinedge.devices.cli import devices

    app.command(name="devices")(devices)


_mount_devices()


@app.command(name="calibrate")
def calibrate_cmd(
    reports: Annotated[int, typer.Option(help="Reports per phase (commit, host).")] = 200,
    interval_ms: Annotated[
        float, typer.Option(help="Spacing of two reports, ms (0: back to back).")
    ] = 20.0,
    cpu_ghz: Annotated[
        float | None,
        typer.Option(help="cpu_ghz of the scenario's hosts, for work_gcycles (default 1)."),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="Take cpu_ghz from this scenario's hosts.")
    ] = None,
    directory: Annotated[
        str | None,
        typer.Option(
            "--dir",
            help="Where to make the logs: the disk the hosts use (default: a temporary directory).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    spacings_ms: Annotated[
        str | None,
        typer.Option(
            help="Measure a curve at these spacings, ms, comma-separated and increasing "
            "(e.g. 0,2,5,10,20,50), --reports at each, instead of one --interval-ms: "
            "prints commit_curve_ms instead of commit_ms.",
        ),
    ] = None,
) -> None:
    """Measure this machine's durable commit and an edge host's time per report, and
    print the scenario values (commit_ms or commit_curve_ms, work_gcycles) that calibrate
    the simulator."""
    from twinedge.edge.calibrate import command

    command(reports, interval_ms, cpu_ghz, scenario, directory, json_out, spacings_ms)


def _mount_trace() -> None:
    from twinedge.trace_cli import app as trace_app

    app.add_typer(trace_app, name="trace")


_mount_trace()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: user mistakes print one line and exit non-zero, never a traceback.

    Parameters:
        argv: the arguments after the command name (default: ``sys.argv[1:]``).

    Raises:
        SystemExit: with the exit status when it is not 0 (and for ``--help``).
    """
    # a message may quote input that is not printable text: escape it, never crash on it
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    # a policy named on the command line (`mypolicies:fn`) is looked for in the current
    # folder first, as `python -m` would (unless PYTHONSAFEPATH / -P says not to); the folder
    # is also appended for the policy's own later imports, so it never shadows an installed
    # module that twinedge itself imports
    if not sys.flags.safe_path:
        from twinedge.policies.registry import search_first

        search_first([os.getcwd()])
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
    if os.environ.get(COMPLETE_VAR):
        # a completion script asks for candidates: answer in the form the scripts expect
        from typer.completion import completion_init

        completion_init()
    try:
        rc = app(
            args=None if argv is None else list(argv),
            prog_name="twinedge",
            complete_var=COMPLETE_VAR,
            standalone_mode=False,
        )
        # without standalone mode a raised typer.Exit comes back as the return value
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except TwinedgeError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:
        # command-line usage errors (bad option values...) know how to show themselves
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        raise


def _mount_fl() -> None:
    from twinedge.fl_cli import fl

    app.command(name="fl")(fl)


_mount_fl()


def _mount_attention() -> None:
    from twinedge.attention_cli import attention

    app.command(name="attention")(attention)


_mount_attention()


def _mount_sync() -> None:
    from twinedge.sync_cli import sync

    app.command(name="sync")(sync)


_mount_sync()


if __name__ == "__main__":
    main()
