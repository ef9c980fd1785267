"""A method's own kernel beside the kernel of every method, on the same runs, in one process.

    python -m bench.method_kernels [ALGO:EXPLORATION ...]

Per method (default: every row of ``bench.engines --algos``) and environment, the same runs (the
method's default parameters, ``bench.engines``' hyperparameters, seeds 0-5) are trained by
``kernels.train_runs`` and by ``kernels.method_kernel`` of the method, alternately, four rounds
each; the best round of each is printed in nanoseconds per step of the kernel alone, with their
ratio, and whether the two left every array of the runs equal, bit for bit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.engines import METHOD_EPISODES, METHODS, hyperparameters
from tabrl import kernel_cache
from tabrl.agents import make_agent
from tabrl.compiled import kernels
from tabrl.compiled.bridge import ALGO_CODES, EXPLORATION_CODES, observed_for, runs_of
from tabrl.compiled.engine import time_limit
from tabrl.compiled.model import compile_mdp
from tabrl.envs import DEFAULT_STEP_CAP, make_env, with_step_cap
from tabrl.exact.readers import mdp_of

SEEDS = range(6)
ROUNDS = 4


def timed(kernel, env_id: str, n_episodes: int, **method: str) -> tuple[float, kernels.Runs]:
    """Seconds per step of ``kernel`` training ``SEEDS`` runs of ``method``, one run at a time
    as ``tabrl train`` does, and the runs it leaves."""
    env = with_step_cap(make_env(env_id))
    mdp = mdp_of(env)
    agents = [make_agent(env, seed=seed, **hyperparameters(n_episodes), **method)
              for seed in SEEDS]
    observed, limit = observed_for(mdp, agents), time_limit(mdp, DEFAULT_STEP_CAP)
    model = compile_mdp(mdp)
    runs = [runs_of([agent], observed, mdp.n_rows, [seed], n_episodes, limit)
            for seed, agent in zip(SEEDS, agents, strict=True)]
    start = time.perf_counter()
    for run in runs:
        kernel(model, observed, run, 0, n_episodes, limit)
    seconds = time.perf_counter() - start
    return seconds / sum(int(run.lengths.sum()) for run in runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="*", help="ALGO:EXPLORATION (default: every row)")
    methods = [tuple(m.split(":")) for m in parser.parse_args().methods] or METHODS
    kernel_cache.prepare(kernel_cache.ENGINE)
    print(f"{'environment':<15} {'method':<34} {'every method':>13} {'its own':>9} {'ratio':>6}"
          "  same runs")
    for env_id, n_episodes in METHOD_EPISODES.items():
        for algo, exploration in methods:
            kernel_cache.prepare(kernel_cache.method_kernels(algo, exploration))
            own = kernels.method_kernel(ALGO_CODES[algo], EXPLORATION_CODES[exploration])
            best = {"general": np.inf, "own": np.inf}
            for _ in range(ROUNDS):
                general_ns, general_runs = timed(kernels.train_runs, env_id, n_episodes,
                                                 algo=algo, exploration=exploration)
                own_ns, own_runs = timed(own, env_id, n_episodes, algo=algo,
                                         exploration=exploration)
                best = {"general": min(best["general"], general_ns),
                        "own": min(best["own"], own_ns)}
            same = all(np.array_equal(a, b) for g, o in zip(general_runs, own_runs, strict=True)
                       for a, b in zip(g, o, strict=True))
            print(f"{env_id:<15} {algo + ', ' + exploration:<34} "
                  f"{best['general'] * 1e9:>10.0f} ns {best['own'] * 1e9:>6.0f} ns "
                  f"{best['general'] / best['own']:>5.2f}x  {same}", flush=True)


if __name__ == "__main__":
    main()
