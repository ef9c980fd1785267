"""The compiled engine: train an agent on a known MDP at numba speed, with the Python engine's log.

``run_compiled`` is what ``tabrl.training`` calls for a chunk of episodes. It hands the agent's
learning state to the kernels (``bridge``), takes it back when they are done, and returns the
same per-episode log as ``run_python``. The kernels run in slices of about a quarter of a second,
so that progress is reported and Ctrl-C is noticed on long chunks; compiling the kernels (or
loading them from numba's disk cache) happens before the clock starts, in :func:`warm_up`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from tabrl.agents import TabularAgent
from tabrl.compiled import kernels
from tabrl.compiled.bridge import fixed_policy_setting, new_runs, observed_for, runs_of, store
from tabrl.compiled.kernels import CompiledMDP, ObservedOutcomes, Runs
from tabrl.compiled.model import NOTHING_OBSERVED, compile_mdp
from tabrl.errors import UsageError
from tabrl.exact.mdp import TabularMDP, from_transitions
from tabrl.loop import OnMark, Progress, TrainingLog

SLICE_SECONDS = 0.25  #: target duration of one kernel call between progress reports
FIRST_SLICE = 1_000  #: episodes of the first call, which measures the speed
RECENT = 1_000  #: episodes in the mean return that ``progress`` reports


@dataclass(frozen=True)
class WarmUp:
    """What making the kernels ready cost this process."""

    seconds: float
    from_cache: bool  #: loaded from numba's disk cache, not compiled


@functools.cache
def warm_up() -> WarmUp:
    """Compile the training kernel (or load it from the disk cache) once per process, timed.

    Every later call returns the same record at no cost, so training calls it before starting
    its clock and the benchmark calls it first to report the compile time on its own.
    """
    start = time.perf_counter()
    tiny = compile_mdp(from_transitions({0: {0: [(1.0, 0, 0.0, True)]}}, np.ones(1), 1, 1))
    runs = policy_runs(np.zeros(1, np.int64), 1, seed=0, n_episodes=1, time_limit=1)
    kernels.train_runs(tiny, NOTHING_OBSERVED, runs, 0, 1, 1)
    seconds = time.perf_counter() - start
    stats = kernels.train_runs.stats
    from_cache = sum(stats.cache_hits.values()) > 0 and not sum(stats.cache_misses.values())
    return WarmUp(seconds, from_cache)


@contextmanager
def numba_threads(n_jobs: int | None) -> Iterator[None]:
    """Run the enclosed kernels on ``n_jobs`` threads (None: leave numba's setting as it is)."""
    if n_jobs is None:
        yield
        return
    if n_jobs < 1:
        raise UsageError(f"the number of jobs must be at least 1, not {n_jobs}")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n_jobs, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# --- driving the kernels -------------------------------------------------------------------------
def log_of(runs: Runs, i: int, seconds: float) -> TrainingLog:
    """The training log of run ``i``."""
    return TrainingLog(runs.returns[i], runs.lengths[i], runs.td_errors[i], runs.epsilons[i],
                       seconds)


def time_limit(mdp: TabularMDP, max_steps: int) -> int:
    """The step at which episodes are truncated: the MDP's own limit, else ``max_steps``."""
    return mdp.horizon if mdp.horizon is not None else max_steps


def drive(
    model: CompiledMDP,
    observed: ObservedOutcomes,
    runs: Runs,
    n_episodes: int,
    limit: int,
    progress: Progress | None,
    marks: Sequence[int] = (),
    on_mark: Callable[[int], None] | None = None,
) -> float:
    """Play all episodes of ``runs`` in slices of about ``SLICE_SECONDS``; returns the wall time.

    After each slice ``progress`` hears the episodes done and the recent mean return (over all
    runs); the slice size follows the measured speed. A slice also ends at each of the sorted
    episode counts ``marks``, after which ``on_mark`` hears the count: each run's random stream
    lives in ``runs``, so where slices end changes nothing. The kernel uses at most one thread per
    run: waking an idle thread for nothing costs milliseconds on a busy machine.
    """
    start = time.perf_counter()
    done, size = 0, FIRST_SLICE
    pending = iter(marks)
    mark = next(pending, None)
    with numba_threads(min(len(runs.q), numba.get_num_threads())):
        while done < n_episodes:
            stop = min(n_episodes, done + size, mark or n_episodes)
            began = time.perf_counter()
            kernels.train_runs(model, observed, runs, done, stop, limit)
            took = time.perf_counter() - began
            size = int(min(10 * size, max(1.0, (stop - done) * SLICE_SECONDS / max(took, 1e-6))))
            done = stop
            if done == mark:
                if on_mark is not None:
                    on_mark(done)
                mark = next(pending, None)
            if progress is not None:
                progress(done, float(runs.returns[:, max(0, done - RECENT):done].mean()))
    return time.perf_counter() - start


# --- the entry points -----------------------------------------------------------------------------
def run_compiled(
    mdp: TabularMDP,
    agent: TabularAgent,
    n_episodes: int,
    *,
    seed: int,
    max_steps: int,
    progress: Progress | None = None,
    marks: Sequence[int] = (),
    on_mark: OnMark | None = None,
) -> TrainingLog:
    """Train ``agent`` on ``mdp`` for ``n_episodes``, in place, as ``run_python`` would (with
    ``on_mark`` seeing the greedy policy after each episode count of ``marks``).

    The agent's Q-table, visit counts, epsilon, temperature and own learning state (Double Q's
    half difference, Dyna-Q's model) move on as in the Python engine (the per-step
    ``agent.training_error`` list is not kept: the log has each episode's mean). Episodes are
    truncated at ``mdp.horizon``, or at ``max_steps`` when the MDP has no time limit. The result
    depends only on the agent, ``mdp`` and ``seed``.
    """
    observed, limit = observed_for(mdp, [agent]), time_limit(mdp, max_steps)
    runs = runs_of([agent], observed, mdp.n_rows, [seed], n_episodes, limit)  # refuses first
    warm_up()

    def greedy(_: int) -> None:  # ties to the lowest action, as QTable.greedy_policy
        if on_mark is not None:
            on_mark(runs.q[0, : agent.q_values.n_rows].argmax(axis=1))

    seconds = drive(compile_mdp(mdp), observed, runs, n_episodes, limit, progress, marks, greedy)
    store(runs, 0, agent, observed)
    return log_of(runs, 0, seconds)


def policy_runs(
    policy: np.ndarray, n_actions: int, *, seed: int, n_episodes: int, time_limit: int
) -> Runs:
    """One run that plays the deterministic ``policy`` (an action per row) and never learns.

    Its table is one-hot on the policy's actions, so the greedy choice is the policy's.
    """
    runs = new_runs(NOTHING_OBSERVED, fixed_policy_setting(), (len(policy), n_actions), [seed],
                    n_episodes, time_limit)
    runs.q[0, np.arange(len(policy)), policy] = 1.0
    runs.epsilon[0] = 0.0
    return runs


def rollout(
    mdp: TabularMDP, policy: np.ndarray, n_episodes: int, *, seed: int, max_steps: int
) -> TrainingLog:
    """Play the deterministic ``policy`` (an action per Q-table row) for ``n_episodes``.

    A Monte Carlo evaluation on the exact dynamics at kernel speed: the log's returns and lengths
    are the episodes' (TD errors and epsilon are zero).
    """
    policy = np.asarray(policy, dtype=np.int64)
    if policy.shape != (mdp.n_rows,) or not ((policy >= 0) & (policy < mdp.n_actions)).all():
        raise UsageError(
            f"a policy needs one action in 0..{mdp.n_actions - 1} for each of the "
            f"{mdp.n_rows} rows of the Q-table (got an array of shape {policy.shape})"
        )
    warm_up()
    limit = time_limit(mdp, max_steps)
    runs = policy_runs(policy, mdp.n_actions, seed=seed, n_episodes=n_episodes, time_limit=limit)
    seconds = drive(compile_mdp(mdp), NOTHING_OBSERVED, runs, n_episodes, limit, None)
    return log_of(runs, 0, seconds)
