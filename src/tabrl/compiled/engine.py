"""The compiled engine: train an agent on a known MDP at numba speed, with the Python engine's log.

``run_compiled`` is what ``tabrl.training`` calls for a chunk of episodes. It hands the agent's
learning state to the kernels (``bridge``), takes it back when they are done, and returns the
same per-episode log as ``run_python``. The kernels run in slices of about a quarter of a second,
so that progress is reported and Ctrl-C is noticed on long chunks; compiling the kernels (or
loading them from numba's disk cache) happens before the clock starts
(``kernel_cache.prepare``, :mod:`tabrl.compiled.warm`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numba

from tabrl import kernel_cache
from tabrl.agents import TabularAgent
from tabrl.compiled import kernels
from tabrl.compiled.bridge import (
    ALGO_CODES,
    EXPLORATION_CODES,
    observed_for,
    runs_of,
    store,
)
from tabrl.compiled.kernels import CompiledMDP, ObservedOutcomes, Runs
from tabrl.compiled.model import compile_mdp
from tabrl.errors import UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.kernel_cache import KernelSet
from tabrl.loop import OnMark, Progress, TrainingLog

SLICE_SECONDS = 0.25  #: target duration of one kernel call between progress reports
FIRST_SLICE = 1_000  #: episodes of the first call, which measures the speed
RECENT = 1_000  #: episodes in the mean return that ``progress`` reports


def kernels_for(runs: Runs) -> KernelSet:
    """The kernels that train ``runs`` (``kernel_cache.kernels_to_train``): their method's own
    where they share one method and strategy and none masks actions
    (:func:`~tabrl.compiled.kernels.method_kernel`: the tutorial's agent has the one
    ``tabrl train`` compiles by default), or the kernel of every method."""
    codes = kernels.method_of(runs.settings, masked=runs.allowed.shape[1] > 0)
    return kernel_cache.kernels_to_train(None if codes is None else method_names(*codes))


_ALGO_NAMES = {code: name for name, code in ALGO_CODES.items()}
_EXPLORATION_NAMES = {code: name for name, code in EXPLORATION_CODES.items()}


def method_names(algo: int, exploration: int) -> tuple[str, str]:
    """The names of a method's and a strategy's codes."""
    return _ALGO_NAMES[algo], _EXPLORATION_NAMES[exploration]


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


def slices(total: int, marks: Sequence[int] = ()) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the kernel calls that play ``total`` episodes: about
    ``SLICE_SECONDS`` each, the size following the speed measured on the slices before (the
    caller's work between two slices counted), a slice also ending at each of the sorted
    episode counts ``marks``."""
    done, size = 0, FIRST_SLICE
    pending = iter(marks)
    mark = next(pending, None)
    while done < total:
        stop = min(total, done + size, mark or total)
        began = time.perf_counter()
        yield done, stop
        took = time.perf_counter() - began
        size = int(min(10 * size, max(1.0, (stop - done) * SLICE_SECONDS / max(took, 1e-6))))
        done = stop
        if done == mark:
            mark = next(pending, None)


def drive(
    kernel: Callable[..., None],
    model: CompiledMDP,
    observed: ObservedOutcomes,
    runs: Runs,
    n_episodes: int,
    limit: int,
    progress: Progress | None,
    marks: Sequence[int] = (),
    on_mark: Callable[[int], None] | None = None,
) -> float:
    """Play all episodes of ``runs`` in :func:`slices` of calls to ``kernel``; returns the wall
    time.

    After each slice ``progress`` hears the episodes done and the recent mean return (over all
    runs), and at each of ``marks`` ``on_mark`` hears the count: each run's random stream lives
    in ``runs``, so where slices end changes nothing. The kernel uses at most one thread per
    run: waking an idle thread for nothing costs milliseconds on a busy
    machine.
    """
    start = time.perf_counter()
    marked = set(marks)
    with numba_threads(min(len(runs.q), numba.get_num_threads())):
        for done, stop in slices(n_episodes, marks):
            kernel(model, observed, runs, done, stop, limit)
            if stop in marked and on_mark is not None:
                on_mark(stop)
            if progress is not None:
                progress(stop, float(runs.returns[:, max(0, stop - RECENT):stop].mean()))
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
    training = kernels_for(runs)
    kernel_cache.prepare(training)

    def greedy(_: int) -> None:  # ties to the lowest action, as QTable.greedy_policy
        if on_mark is not None:
            on_mark(runs.q[0, : agent.q_values.n_rows].argmax(axis=1))

    seconds = drive(training.entry_point(), compile_mdp(mdp), observed, runs, n_episodes, limit,
                    progress, marks, greedy)
    store(runs, 0, agent, observed)
    return log_of(runs, 0, seconds)
