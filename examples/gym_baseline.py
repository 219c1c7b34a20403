"""Train a migration policy in twinedge's Gymnasium environment, then compare it with
the built-in policies in the table of ``twinedge compare --seeds``.

    cd examples
    python3 gym_baseline.py          # trains (about 20 s of CPU), writes gym-policy.json here
    twinedge compare city-small --seeds 0..3 --migration never,threshold,gym_baseline:Trained

The learner is the cross-entropy method (NumPy only) over the 8 weights of
:class:`twinedge.gym.LinearMigrationPolicy`: every iteration draws a population of
weight vectors from a Gaussian, scores each by its mean return in
``twinedge/Migration-v0`` on the training seeds (the same seeds for every candidate, so
they are compared on the same worlds and movements), and refits the Gaussian to the best
few. The trained weights are saved as JSON; :class:`Trained` loads them, so the trained
policy is a migration policy like any other (``check_policy`` passes; ``simulate(...,
migration=Trained())`` and ``--migration gym_baseline:Trained`` work). The comparison
runs on other seeds than the training ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from twinedge.engine.sweep import run_sweep
from twinedge.gym import (  # registers the envs
    LINEAR_FEATURES,
    LinearMigrationPolicy,
    linear_actions,
)
from twinedge.report.sweep import sweep_table
from twinedge.scenario import load_scenario

DEFAULT_PATH = "gym-policy.json"


class Trained(LinearMigrationPolicy):
    """The policy trained by this script, read from ``path`` (default ``gym-policy.json``
    in the current folder).

    Raises:
        ValueError: the file is missing or is not a saved policy.
    """

    def __init__(self, path: str = DEFAULT_PATH):
        if not Path(path).is_file():
            raise ValueError(f"{path}: no trained policy here; run examples/gym_baseline.py first")
        super().__init__(LinearMigrationPolicy.load(path).weights)
        self.path = path


def episode_return(env: gym.Env, weights: np.ndarray, seed: int) -> float:
    """The return of one episode of the linear policy with ``weights``."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, done, truncated, _ = env.step(linear_actions(obs, weights))
        total += float(reward)
        done = done or truncated
    return total


def train(
    env: gym.Env,
    seeds: list[int],
    iterations: int = 10,
    population: int = 16,
    elite: int = 4,
    rng_seed: int = 0,
    log=print,
) -> tuple[np.ndarray, list[float]]:
    """The cross-entropy method: returns the final mean weights and the best mean return
    of every iteration."""
    rng = np.random.default_rng(rng_seed)
    mean = np.zeros(len(LINEAR_FEATURES))
    std = np.ones(len(LINEAR_FEATURES))
    history = []
    for it in range(iterations):
        pop = mean + std * rng.standard_normal((population, mean.size))
        pop[0] = mean  # keep the current mean in the race
        scores = np.array([np.mean([episode_return(env, w, s) for s in seeds]) for w in pop])
        best = pop[np.argsort(scores)[::-1][:elite]]
        mean, std = best.mean(axis=0), best.std(axis=0) + 0.05
        history.append(float(scores.max()))
        log(f"iteration {it + 1}/{iterations}: best mean return {scores.max():.3f}")
    return mean, history


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="city-small")
    ap.add_argument("--steps", type=int, default=20, help="steps per training episode")
    ap.add_argument(
        "--migration-cost",
        type=float,
        default=0.1,
        help="reward weight of a migration (per twin; see docs/gym.md)",
    )
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--train-seeds", default="100,101,102,103", help="comma-separated")
    ap.add_argument("--eval-seeds", default="0,1,2,3,4,5,6,7", help="comma-separated")
    ap.add_argument("--eval-steps", type=int, default=None, help="default: the scenario's")
    ap.add_argument("--seed", type=int, default=0, help="the learner's random seed")
    ap.add_argument("--save", default=DEFAULT_PATH, help="where to write the trained policy")
    args = ap.parse_args(argv)

    env = gym.make(
        "twinedge/Migration-v0",
        scenario=args.scenario,
        steps=args.steps,
        migration_cost=args.migration_cost,
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    weights, _ = train(
        env,
        [int(s) for s in args.train_seeds.split(",")],
        iterations=args.iterations,
        population=args.population,
        rng_seed=args.seed,
    )
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    path = LinearMigrationPolicy(weights).save(args.save)
    print(f"trained in {train_s:.1f} s ({cpu_s:.1f} s of CPU); weights saved to {path}:")
    for name, w in zip(LINEAR_FEATURES, weights, strict=True):
        print(f"  {name:>15} {w:+.3f}")

    # the comparison: the same table as `twinedge compare --seeds`, on unseen seeds; the
    # trained policy by import path, as the command line names it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    trained = "gym_baseline:Trained"
    sc = load_scenario(args.scenario)
    params = {**sc.policies.migration_params, trained: {"path": str(path)}}
    sc = sc.model_copy(
        update={"policies": sc.policies.model_copy(update={"migration_params": params})}
    )
    result = run_sweep(
        sc,
        seeds=[int(s) for s in args.eval_seeds.split(",")],
        placements=["greedy"],
        migrations=["never", "threshold", "utility", "predictive", trained],
        steps=args.eval_steps,
    )
    from rich.console import Console

    Console(width=140).print(sweep_table(result))


if __name__ == "__main__":
    main()
