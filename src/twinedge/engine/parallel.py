"""Run many simulations at once: policy combinations (and later seeds) spread over local
processes or a Ray cluster. Every run is independent and seeded the same way as a
sequential one, so the results are identical whichever executor ran them.

Ray is the engine the live tier uses beyond one machine; here it runs the simulator's
sweeps. ``ray_address`` is ``"local"`` (start Ray on this machine for the sweep) or the
address of a running cluster's head (``host:port``, or ``"auto"``).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from twinedge.engine.simulation import RunResult, simulate
from twinedge.errors import TwinedgeError
from twinedge.policies.registry import search_first, searched_first
from twinedge.scenario.schema import Scenario


@dataclass(frozen=True)
class Job:
    """One simulation: a policy combination on a seed, with an optional ledger.

    ``overrides`` replace dotted scenario fields (see
    :func:`twinedge.engine.sweep.apply_overrides`); ``placement_params`` and
    ``migration_params`` are added to the scenario's parameters of the two policies;
    ``offload`` is the offloading policy (``None``: the scenario's).
    """

    placement: str
    migration: str
    seed: int
    steps: int
    ledger: Path | None = None
    ledger_every: int = 0
    overrides: tuple[tuple[str, Any], ...] = ()
    placement_params: tuple[tuple[str, Any], ...] = ()
    migration_params: tuple[tuple[str, Any], ...] = ()
    offload: str | None = None

    @property
    def label(self) -> str:
        tail = f"+offload-{self.offload}" if self.offload else ""
        return f"{self.placement}+{self.migration}{tail}"


def run_job(
    sc: Scenario, job: Job, progress: Callable[[int], None] | None = None
) -> tuple[RunResult, Any]:
    """Run one job; returns its result and its ledger recorder (closed) or ``None``."""
    recorder = None
    if job.ledger is not None:
        from twinedge.engine.record import LedgerRecorder

        recorder = LedgerRecorder(
            job.ledger, actor=f"twinedge-run/{job.label}", checkpoint_every=job.ledger_every
        )
    if job.overrides:
        from twinedge.engine.sweep import apply_overrides

        sc = apply_overrides(sc, dict(job.overrides))
    pol = sc.policies
    res = simulate(
        sc,
        placement_params={
            **pol.placement_params.get(job.placement, {}),
            **dict(job.placement_params),
        },
        migration_params={
            **pol.migration_params.get(job.migration, {}),
            **dict(job.migration_params),
        },
        seed=job.seed,
        steps=job.steps,
        placement=job.placement,
        migration=job.migration,
        recorder=recorder,
        progress=progress,
        offload=job.offload,
    )
    if recorder is not None:
        recorder.ledger = None  # closed by the run; not sent back
    return res, recorder


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast with one line when a Ray head at ``host:port`` does not answer (Ray
    itself would wait minutes)."""
    if address in ("local", "auto"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TwinedgeError(
            f"--ray {address!r}: expected host:port of a Ray head, 'auto' or 'local'"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise TwinedgeError(
            f"--ray {address}: no Ray head answers there ({exc.strerror or exc})"
        ) from None


def run_jobs(
    sc: Scenario,
    jobs: Sequence[Any],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    on_done: Callable[[Any, Any], None] | None = None,
    task: Callable[[Scenario, Any], Any] = run_job,
) -> list[Any]:
    """Run ``jobs`` and return ``(result, recorder)`` per job, in the order given.

    Parameters:
        sc: the scenario every job runs.
        jobs: what to run.
        workers: local worker processes (1: run here, one after the other).
        ray_address: run the jobs as Ray tasks instead (one CPU each).
        on_done: called as each job finishes (for progress lines).
        task: what runs a job in a worker (default :func:`run_job`); a module-level
            function of ``(scenario, job)`` whose answer is what is returned per job.

    Raises:
        TwinedgeError: Ray is not installed or its head does not answer; a job's own
            error (e.g. a policy error) is raised as it was.
    """
    if ray_address is not None:
        return _run_ray(sc, jobs, ray_address, on_done, task)
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for job in jobs:
            r = task(sc, job)
            if on_done:
                on_done(job, r[0] if task is run_job else r)
            out.append(r)
        return out
    results: dict[int, Any] = {}
    # a worker looks for import-path policies where this process does (the current folder
    # of `twinedge`): a spawned process starts with an empty search_first
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=search_first,
        initargs=(searched_first(),),
    ) as pool:
        futures = {pool.submit(task, sc, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done:
                on_done(jobs[i], results[i][0] if task is run_job else results[i])
    return [results[i] for i in range(len(jobs))]


def _run_ray(
    sc: Scenario,
    jobs: Sequence[Any],
    address: str,
    on_done: Callable[[Any, Any], None] | None,
    task_fn: Callable[[Scenario, Any], Any] = run_job,
) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise TwinedgeError("--ray needs Ray: pip install 'twinedge[ray]'") from None
    check_ray_address(address)
    started = not ray.is_initialized()
    if started:
        # user policies given as module:attr are found where they are found here
        env = {"PYTHONPATH": os.pathsep.join([os.getcwd(), *[p for p in sys.path if p]])}
        ray.init(
            address=address,  # "local" starts a new local instance, never joins a stray one
            runtime_env={"env_vars": env},
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        task = ray.remote(num_cpus=1)(task_fn)
        refs = [task.remote(sc, job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, Any] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            try:
                results[i] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, TwinedgeError):  # a policy or scenario error
                    raise exc.cause from None
                raise
            if on_done:
                on_done(jobs[i], results[i][0] if task_fn is run_job else results[i])
        return [results[i] for i in range(len(jobs))]
    finally:
        if started:
            ray.shutdown()
