"""Runs spread over local processes and over a real multi-node Ray cluster
(``ray.cluster_utils.Cluster`` starts real raylets on this machine) give exactly the
results of running them one after the other."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from twinedge.engine.parallel import Job, check_ray_address, run_jobs
from twinedge.errors import PolicyError, TwinedgeError
from twinedge.scenario import load_scenario

JOBS = [Job(p, m, seed=3, steps=6) for p in ("nearest", "greedy") for m in ("never", "threshold")]


def summaries(results):
    return [(r.label, r.summary) for r, _ in results]


@pytest.fixture(scope="module")
def sequential():
    return summaries(run_jobs(load_scenario("city-small"), JOBS))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_processes_give_the_sequential_results(sequential):
    got = run_jobs(load_scenario("city-small"), JOBS, workers=2)
    assert summaries(got) == sequential


def test_a_two_node_ray_cluster_gives_the_sequential_results(ray_cluster, sequential):
    import ray

    done = []
    got = run_jobs(
        load_scenario("city-small"),
        JOBS,
        ray_address=ray_cluster.address,
        on_done=lambda job, res: done.append(job.label),
    )
    assert summaries(got) == sequential
    assert sorted(done) == sorted(j.label for j in JOBS)
    assert not ray.is_initialized()  # the sweep disconnected again
    assert len([n for n in ray_cluster.list_all_nodes()]) == 2


def test_a_policy_error_inside_a_ray_task_is_the_policy_error(ray_cluster):
    def broken(view, rng):
        raise RuntimeError("boom")

    jobs = [Job("greedy", "twinedge.policies.migration:NO_SUCH", seed=0, steps=2)]
    with pytest.raises(PolicyError, match="has no attribute 'NO_SUCH'"):
        run_jobs(load_scenario("city-small"), jobs, ray_address=ray_cluster.address)


def test_the_cli_runs_a_sweep_on_the_cluster(ray_cluster, tmp_path):
    args = [sys.executable, "-m", "twinedge", "compare", "city-small", "--steps", "6", "--seed", "3",
            "--placement", "nearest,greedy", "--migration", "never,threshold", "--json", "-q"]  # fmt: skip
    here = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    there = subprocess.run(
        [*args, "--ray", ray_cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert here.returncode == 0 and there.returncode == 0, there.stderr
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    for d in (a, b):
        for v in d["policies"].values():
            v.pop("wall_s")
    assert a == b


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:1", "no Ray head answers there"),
        ("nonsense", "expected host:port of a Ray head"),
        ("127.0.0.1:port", "expected host:port of a Ray head"),
    ],
)
def test_a_bad_ray_address_fails_fast_with_one_line(address, message):
    with pytest.raises(TwinedgeError, match=message):
        check_ray_address(address, timeout_s=1.0)


def test_a_sweep_on_the_cluster_gives_the_sequential_records(ray_cluster, tmp_path):
    from twinedge.engine.sweep import parse_param, run_sweep

    sc = load_scenario("city-small")
    grid = [parse_param("utility.beta=0.2,0.8", sc)]
    kw = dict(seeds=[0, 1], placements=["nearest"], migrations=["utility"], params=grid, steps=4)
    here = run_sweep(sc, **kw)
    there = run_sweep(sc, **kw, ray_address=ray_cluster.address, out_dir=tmp_path)
    assert [{**r.to_json(), "wall_s": 0} for r in there.records] == [
        {**r.to_json(), "wall_s": 0} for r in here.records
    ]
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4
