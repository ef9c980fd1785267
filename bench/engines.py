"""How fast tabrl trains, against the seed's plain Python loop run in the same invocation.

    python -m bench.engines [--quick] [--algos]

Per environment, with the tutorial's hyperparameters (learning rate 0.01, discount 0.95, epsilon
from 1 to 0.1 over the first half of the run), timed from making the environment to the end:

- the tutorial's own loop (``bench/baseline.py``), the reference of every ratio;
- ``tabrl.training.train(engine="python")`` on the same run;
- ``train(engine="compiled")`` on the same run, repeated with new seeds until it has taken
  ``MIN_SECONDS`` (one run is over in milliseconds): the like-for-like comparison;
- ``train(engine="compiled")`` on a run ``LONG_FACTOR`` times longer, as a user would train.
  What an agent learns changes how long its episodes are (a FrozenLake agent that learned walks
  to the goal, an untrained one falls into a hole), so steps per second stand beside episodes.

The compiled engine uses one core. Batch mode (seeds x the same run) is then timed on one and on
two cores. Compiling each kernel is timed apart, in fresh processes: once with an empty disk
cache, once from the cache.

Last, every method (and Q-learning with each exploration strategy) on both engines, on
FrozenLake-v1 and Taxi-v4, with the same hyperparameters and the methods' default parameters,
the training alone timed (the environment, its MDP and the agent are made before the clock
starts): the ratios there are the compiled engine's episodes, and steps, per second over the
Python engine's. The Python engine plays seed 0 (after a short warm-up run: a process's first
run takes about twice as long a step), the compiled one seeds 0, 1, ... for half a second; the
two take turns twice and the faster of each counts. How long a FrozenLake episode lasts changes
with the seed (its mean over a run from 9 to 19 steps between seeds, for tree backup): the
steps ratio, the work done per second, is the one that does not move with that luck, and the
one the target line checks. ``--algos`` runs that section alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numba
import numpy as np

from bench.baseline import train_baseline
from tabrl import kernel_cache
from tabrl.agents import AGENTS, make_agent
from tabrl.compiled import run_batch, warm_up
from tabrl.envs import DEFAULT_STEP_CAP, make_env, with_step_cap
from tabrl.exact.readers import mdp_of
from tabrl.training import choose_engine, train

#: Episodes of the run every engine trains, per environment: a few seconds of the baseline, so
#: that the compiled engine's fixed costs (making the environment and its MDP) weigh little.
EPISODES = {
    "Blackjack-v1": 200_000,
    "FrozenLake-v1": 50_000,
    "FrozenLake8x8-v1": 5_000,
    "Taxi-v4": 10_000,
    "CliffWalking-v1": 2_000,
}
LONG_FACTOR = 20
MIN_SECONDS = 0.5
QUICK_DIVISOR = 10
LEARNING_RATE, DISCOUNT, START_EPSILON, FINAL_EPSILON = 0.01, 0.95, 1.0, 0.1
BATCH_SEEDS = 16
BATCH_REPEATS = 3
TARGET = 300  #: compiled episodes per second, in multiples of the baseline's
#: Episodes of the per-method rows: a second or two of the Python engine per method.
METHOD_EPISODES = {"FrozenLake-v1": 5_000, "Taxi-v4": 1_000}
#: Per method, the engines take turns this many times and the faster of each counts: another
#: process that takes the core for a moment would otherwise decide a row.
ROUNDS = 2
#: A short run of the Python engine before each timed one: the first run of a process pays for
#: code paths met for the first time (about twice the time per step of the next run).
WARM_UP_EPISODES = 100
METHODS = [(algo, "epsilon-greedy") for algo in AGENTS] + [
    ("q-learning", "softmax"), ("q-learning", "ucb")]


@dataclass(frozen=True)
class Timing:
    """One training: how many episodes and steps, in how many seconds of wall time."""

    engine: str
    episodes: int
    steps: int
    seconds: float

    @property
    def episodes_per_second(self) -> float:
        return self.episodes / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def hyperparameters(n_episodes: int) -> dict[str, float]:
    """The tutorial's hyperparameters for a run of ``n_episodes``, in tabrl's keywords."""
    return dict(learning_rate=LEARNING_RATE, discount_factor=DISCOUNT,
                initial_epsilon=START_EPSILON, final_epsilon=FINAL_EPSILON,
                epsilon_decay=START_EPSILON / (n_episodes / 2))


def time_baseline(env_id: str, n_episodes: int) -> Timing:
    run = train_baseline(env_id, n_episodes, LEARNING_RATE, START_EPSILON, FINAL_EPSILON,
                         DISCOUNT)
    return Timing("baseline (tutorial loop)", run.episodes, run.steps, run.seconds)


def time_train(env_id: str, n_episodes: int, engine: str, label: str,
               min_seconds: float = 0.0) -> Timing:
    """``train`` end to end, repeated with seeds 0, 1, ... until ``min_seconds`` have passed."""
    episodes = steps = seed = 0
    start = time.perf_counter()
    while seed == 0 or time.perf_counter() - start < min_seconds:
        log = train(env_id, n_episodes=n_episodes, engine=engine, seed=seed,
                    **hyperparameters(n_episodes)).log
        episodes, steps, seed = episodes + n_episodes, steps + int(log.lengths.sum()), seed + 1
    return Timing(label, episodes, steps, time.perf_counter() - start)


def time_batch(env_id: str, n_episodes: int, n_jobs: int) -> Timing:
    """``BATCH_SEEDS`` runs of the baseline's run in one batch on ``n_jobs`` threads.

    The fastest of ``BATCH_REPEATS`` batches counts: another process that takes a core for a
    moment would otherwise decide the scaling figure.
    """
    mdp = mdp_of(with_step_cap(make_env(env_id), DEFAULT_STEP_CAP))
    seconds = []
    for _ in range(BATCH_REPEATS):
        start = time.perf_counter()
        results = run_batch(mdp, [hyperparameters(n_episodes)], n_episodes, range(BATCH_SEEDS),
                            n_jobs=n_jobs)
        seconds.append(time.perf_counter() - start)
    steps = sum(int(result.log.lengths.sum()) for result in results)
    return Timing(f"batch, {n_jobs} core{'s' * (n_jobs > 1)}", BATCH_SEEDS * n_episodes, steps,
                  min(seconds))


def warm_up_in_fresh_process(cache_dir: str, kernel: str) -> tuple[float, bool]:
    """``warm_up`` of the kernel ``kernel`` (an expression on ``kernels``) in a new interpreter
    whose numba cache is ``cache_dir``."""
    code = ("from tabrl.compiled import kernels, warm_up; "
            f"w = warm_up(kernels.{kernel}); print(w.seconds, w.from_cache)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "NUMBA_CACHE_DIR": cache_dir}).stdout.split()
    return float(out[0]), out[1] == "True"


#: The kernels a command compiles apart (``tabrl.kernel_cache``), by what they run.
KERNELS = {"method_kernel(kernels.Q_LEARNING, kernels.EPSILON_GREEDY)": "the tutorial's Q-learning",
           "method_kernel(kernels.N_STEP_SARSA, kernels.UCB)": "n-step SARSA with UCB",
           "play_policy": "the evaluation", "train_runs": "every method"}


def compile_report() -> str:
    """Each kernel's compile with an empty cache, then its load from the cache."""
    lines = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for kernel, what in KERNELS.items():
            cold, cold_cached = warm_up_in_fresh_process(cache_dir, kernel)
            warm, warm_cached = warm_up_in_fresh_process(cache_dir, kernel)
            lines.append(f"compile time of {what} ({kernel.split('(')[0]}): {cold:.2f} s with an "
                         f"empty cache (from cache: {cold_cached}); {warm:.2f} s in the next "
                         f"process (from cache: {warm_cached})")
    return "\n".join(lines)


def row(env_id: str, timing: Timing, baseline: Timing) -> str:
    return (f"{env_id:<17} {timing.engine:<28} {timing.episodes:>10,} "
            f"{timing.steps / timing.episodes:>8.1f} {timing.episodes_per_second:>13,.0f} "
            f"{timing.steps_per_second:>13,.0f} "
            f"{timing.episodes_per_second / baseline.episodes_per_second:>9.1f}x "
            f"{timing.steps_per_second / baseline.steps_per_second:>9.1f}x")


HEADER = (f"{'environment':<17} {'engine':<28} {'episodes':>10} {'mean len':>8} "
          f"{'episodes/s':>13} {'steps/s':>13} {'eps/s ratio':>10} {'steps ratio':>10}")


def time_method(env_id: str, n_episodes: int, engine: str, min_seconds: float = 0.0,
                **method: str) -> tuple[Timing, np.ndarray]:
    """The training of one method alone (``train`` with the environment, its MDP and the agent
    made beforehand), repeated with seeds 0, 1, ... until ``min_seconds`` have passed; and the
    Q-table of seed 0."""
    env = with_step_cap(make_env(env_id))
    choice = choose_engine(env, engine, make_agent(env, **method))
    episodes = steps = seed = 0
    seconds, first = 0.0, None
    while seed == 0 or seconds < min_seconds:
        agent = make_agent(env, seed=seed, **hyperparameters(n_episodes), **method)
        start = time.perf_counter()
        log = train(env, agent, n_episodes, seed=seed, engine=choice).log
        seconds += time.perf_counter() - start
        episodes, steps, seed = episodes + n_episodes, steps + int(log.lengths.sum()), seed + 1
        first = agent.q_values.array if first is None else first
    return Timing(engine, episodes, steps, seconds), first


def general_kernel_q(env_id: str, n_episodes: int, **method: str) -> np.ndarray:
    """The Q-table of seed 0 of :func:`time_method` on the kernel of every method (the method's
    own hidden from ``kernel_cache.kernels_to_train`` meanwhile)."""
    is_ready = kernel_cache.is_ready
    kernel_cache.is_ready = lambda kernels: kernels is kernel_cache.ENGINE
    try:
        return time_method(env_id, n_episodes, "compiled", **method)[1]
    finally:
        kernel_cache.is_ready = is_ready


def method_rows(divisor: int) -> None:
    """Every method on both engines: episodes per second and the compiled engine's ratio, on
    the method's own kernel, which gives the same Q-table as the kernel of every method."""
    print(f"\nevery method on both engines: training alone, the compiled engine repeated for "
          f"{MIN_SECONDS / divisor ** 0.5:.2f} s, on the method's own kernel")
    print(f"{'environment':<17} {'method':<34} {'episodes':>9} {'mean len':>8} "
          f"{'python eps/s':>13} {'compiled eps/s':>15} {'ratio':>8} {'steps ratio':>11}  "
          "same Q as every method's")
    short = []
    for env_id, n_episodes in METHOD_EPISODES.items():
        n_episodes //= divisor
        for algo, exploration in METHODS:
            method = {"algo": algo, "exploration": exploration}
            kernel_cache.prepare(kernel_cache.method_kernels(algo, exploration))
            time_method(env_id, WARM_UP_EPISODES, "python", **method)
            pythons, compileds = [], []
            for _ in range(ROUNDS):
                pythons.append(time_method(env_id, n_episodes, "python", **method)[0])
                compileds.append(time_method(env_id, n_episodes, "compiled",
                                             MIN_SECONDS / divisor ** 0.5, **method))
            python = max(pythons, key=lambda timing: timing.steps_per_second)
            compiled, q = max(compileds, key=lambda timed: timed[0].steps_per_second)
            same = np.array_equal(q, general_kernel_q(env_id, n_episodes, **method))
            ratio = compiled.episodes_per_second / python.episodes_per_second
            steps_ratio = compiled.steps_per_second / python.steps_per_second
            if steps_ratio < TARGET:
                short.append(f"{env_id} {algo}, {exploration} ({steps_ratio:.0f}x)")
            print(f"{env_id:<17} {algo + ', ' + exploration:<34} {n_episodes:>9,} "
                  f"{python.steps / python.episodes:>8.1f} {python.episodes_per_second:>13,.0f} "
                  f"{compiled.episodes_per_second:>15,.0f} {ratio:>7.0f}x {steps_ratio:>10.0f}x  "
                  f"{same}", flush=True)
    verdict = "met on every row" if not short else f"missed on {'; '.join(short)}"
    print(f"\ntarget compiled >= {TARGET}x the Python engine's steps/s: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DIVISOR}x fewer episodes (under a minute)")
    parser.add_argument("--algos", action="store_true",
                        help="only the section that times every method on both engines")
    args = parser.parse_args()
    divisor = QUICK_DIVISOR if args.quick else 1
    began = time.perf_counter()
    print(f"cores: {os.cpu_count()}, numba threads: {numba.config.NUMBA_NUM_THREADS}, "
          f"load average at start: {os.getloadavg()[0]:.2f}")
    if args.algos:
        warm_up()
        method_rows(divisor)
        return
    print(compile_report())
    warm_up()
    print("ratios are against the baseline's row; the compiled engine uses one core; 'same run' "
          "repeats the baseline's run with new seeds\n")
    print(HEADER)
    short_of_target = []
    batches = []
    for env_id, n_episodes in EPISODES.items():
        n_episodes //= divisor
        baseline = time_baseline(env_id, n_episodes)
        same_run = time_train(env_id, n_episodes, "compiled", "tabrl compiled, same run",
                              MIN_SECONDS / divisor ** 0.5)
        timings = [
            baseline,
            time_train(env_id, n_episodes, "python", "tabrl python"),
            same_run,
            time_train(env_id, n_episodes * LONG_FACTOR, "compiled",
                       f"tabrl compiled, {LONG_FACTOR}x run"),
        ]
        for timing in timings:
            print(row(env_id, timing, baseline), flush=True)
        if same_run.episodes_per_second < TARGET * baseline.episodes_per_second:
            short_of_target.append(env_id)
        batches.append((env_id, baseline, [time_batch(env_id, n_episodes, jobs)
                                           for jobs in (1, 2)]))
    print(f"\nbatch mode: {BATCH_SEEDS} seeds x the baseline's run (same episodes, same "
          f"hyperparameters), run_batch on 1 and 2 cores, fastest of {BATCH_REPEATS}")
    print(HEADER)
    for env_id, baseline, (one, two) in batches:
        print(row(env_id, one, baseline))
        print(row(env_id, two, baseline) + f"   2-core speedup {one.seconds / two.seconds:.2f}")
    verdict = "met on every environment" if not short_of_target else (
        f"missed on {', '.join(short_of_target)}")
    print(f"\ntarget compiled (same run) >= {TARGET}x baseline episodes/s: {verdict}")
    method_rows(divisor)
    print(f"benchmark took {time.perf_counter() - began:.0f} s; load average at the end: "
          f"{os.getloadavg()[0]:.2f} (other processes slow every row alike)")


if __name__ == "__main__":
    main()
