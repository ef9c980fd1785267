"""How long the exact solution takes against states and horizon, and against the numpy solver.

    python -m bench.solve [--quick | --no-synthetic | --synthetic]

For random FrozenLake maps (gymnasium's ``generate_random_map(size, seed=size)``, slippery) from
10x10 to 100x100 under time limits from 100 to 40,000 steps, ``tabrl.solve`` is timed (one
solve: the optimum, the hurried tie-break, the best stationary policy and its law), with its
Bellman sweeps, where the values settled and the rounds of the search for the best stationary
policy. Beside it, on the same MDP, the solver as it was before its search was made faster
(``bench/previous_solve.py``; skipped in ``SKIP_PREVIOUS``, where it takes about ten minutes),
with the ratio of the two times and a check that both found the same optimum and the same best
stationary policy. Ratios, not seconds, are what carries from one run to the next: this
machine's speed varies 3-5x with its load. A last table gives the seconds against states (rows)
and time limit (columns).

Last, a synthetic MDP of 10^6 states and 10^7 transitions, built directly as a ``TabularMDP``
(4 actions, 2 or 3 outcomes each to random states, 5% of them terminal, a 100-step time
limit): trained on the compiled engine, then solved (its search for the best stationary policy
cut short by ``tabrl.exact.dp.SEARCH_BUDGET``), with the process's peak memory. ``--synthetic``
runs only this part.
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import generate_random_map

from bench import previous_solve
from tabrl.compiled import run_batch
from tabrl.exact.dp import evaluate_policy_exact, solve
from tabrl.exact.mdp import TabularMDP, read_only
from tabrl.exact.readers import mdp_of

#: Maps and time limits timed (size, max_episode_steps).
GRID = [(10, 100), (10, 1_000), (30, 100), (30, 400), (30, 1_600), (50, 1_000), (50, 10_000),
        (100, 1_000), (100, 10_000), (100, 40_000)]
QUICK_GRID = [(10, 100), (30, 400), (50, 1_000)]
#: Rows where the previous solver is not run (about ten minutes).
SKIP_PREVIOUS = {(100, 10_000)}
SYNTHETIC_STATES, SYNTHETIC_ACTIONS, SYNTHETIC_HORIZON = 1_000_000, 4, 100


def frozen_lake(size: int, horizon: int) -> TabularMDP:
    """The MDP of a random slippery FrozenLake map of ``size x size`` under a time limit."""
    desc = generate_random_map(size, seed=size)
    return mdp_of(gym.make("FrozenLake-v1", desc=desc, max_episode_steps=horizon))


def timed(function, *args):
    """``function(*args)`` and the seconds it took."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def print_grid(grid: list[tuple[int, int]]) -> None:
    print(f"\n{'map':>8} {'states':>7} {'horizon':>7} {'transitions':>11} {'seconds':>8} "
          f"{'sweeps':>7} {'settled at':>10} {'rounds':>6} {'before s':>8} {'ratio':>7}  same")
    seconds_of: dict[tuple[int, int], float] = {}
    for size, horizon in grid:
        mdp = frozen_lake(size, horizon)
        solution, seconds = timed(solve, mdp)
        seconds_of[mdp.n_states, horizon] = seconds
        settled = f"{solution.settled_at:,}" if solution.settled_at is not None else "-"
        line = (f"{size:>5}x{size:<2} {mdp.n_states:>7,} {horizon:>7,} {mdp.prob.size:>11,} "
                f"{seconds:>8.2f} {solution.num_iter:>7,} {settled:>10} "
                f"{solution.search_rounds:>6}")
        if (size, horizon) not in SKIP_PREVIOUS:
            old, old_seconds = timed(previous_solve.solve, mdp)
            same = (np.array_equal(old.q_values, solution.q_values)
                    and np.array_equal(old.stationary_policy, solution.stationary_policy)
                    and old.stationary_value == solution.stationary_value)
            verdict = "yes" if same else "NO"
            line += f" {old_seconds:>8.2f} {old_seconds / seconds:>6.1f}x  {verdict}"
        print(line, flush=True)
    print_against_states_and_horizon(seconds_of)


def print_against_states_and_horizon(seconds_of: dict[tuple[int, int], float]) -> None:
    """The seconds of the grid as a table: states down, time limits across."""
    states = sorted({n for n, _ in seconds_of})
    horizons = sorted({h for _, h in seconds_of})
    print(f"\nseconds per solve\n{'states':>7}" + "".join(f"{h:>9,}" for h in horizons))
    for n in states:
        cells = [f"{seconds_of[n, h]:>9.2f}" if (n, h) in seconds_of else f"{'':>9}"
                 for h in horizons]
        print(f"{n:>7,}" + "".join(cells))


def synthetic_mdp(rng: np.random.Generator) -> TabularMDP:
    """``SYNTHETIC_STATES`` states, 2 or 3 outcomes per pair (10^7 in all), 5% terminal."""
    n_pairs = SYNTHETIC_STATES * SYNTHETIC_ACTIONS
    counts = rng.integers(2, 4, n_pairs)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    n = int(offsets[-1])
    weights = rng.random(n) + 0.1
    totals = np.add.reduceat(weights, offsets[:-1])
    return read_only(TabularMDP(
        n_states=SYNTHETIC_STATES, n_actions=SYNTHETIC_ACTIONS, n_rows=SYNTHETIC_STATES,
        row_of_state=np.arange(SYNTHETIC_STATES),
        initial=np.full(SYNTHETIC_STATES, 1 / SYNTHETIC_STATES),
        offsets=offsets,
        prob=weights / np.repeat(totals, counts),
        next_state=rng.integers(0, SYNTHETIC_STATES, n),
        reward=rng.normal(size=n).round(2),
        terminal=rng.random(n) < 0.05,
        horizon=SYNTHETIC_HORIZON,
    ))


def print_synthetic() -> None:
    mdp, seconds = timed(synthetic_mdp, np.random.default_rng(0))
    print(f"\nsynthetic MDP: {mdp.n_states:,} states, {mdp.n_actions} actions, "
          f"{mdp.prob.size:,} transitions, {SYNTHETIC_HORIZON}-step limit "
          f"(built in {seconds:.1f} s)")
    episodes = 1_000_000
    setting = dict(learning_rate=0.1, discount_factor=1.0, initial_epsilon=1.0,
                   final_epsilon=0.1, epsilon_decay=1.8 / episodes)
    results, seconds = timed(run_batch, mdp, [setting], episodes, [0])
    agent = results[0].agent
    print(f"trained: {episodes:,} episodes of q-learning in {seconds:.1f} s")
    solution, seconds = timed(solve, mdp)
    settled = solution.settled_at if solution.settled_at is not None else "-"
    print(f"solved in {seconds:.1f} s: {solution.num_iter} sweeps, settled at {settled}, optimum "
          f"{solution.value:+.4f}, best stationary {solution.stationary_value:+.4f} after "
          f"{solution.search_rounds} rounds of search"
          + (" (cut short by its budget)" if solution.search_cut else ""))
    learned, seconds = timed(evaluate_policy_exact, mdp, agent.q_values.greedy_policy())
    print(f"the learned greedy policy, evaluated exactly in {seconds:.1f} s: {learned.value:+.4f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"peak memory of this process: {peak:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--quick", action="store_true", help="three small maps only")
    parts.add_argument("--no-synthetic", action="store_true",
                       help="skip the MDP of 10^6 states")
    parts.add_argument("--synthetic", action="store_true", help="only the MDP of 10^6 states")
    args = parser.parse_args()
    _, seconds = timed(solve, gym.make("FrozenLake-v1"))
    print(f"compiling the solver's kernels (or loading them from the cache): {seconds:.1f} s")
    if not args.synthetic:
        print_grid(QUICK_GRID if args.quick else GRID)
    if not (args.quick or args.no_synthetic):
        print_synthetic()


if __name__ == "__main__":
    main()
