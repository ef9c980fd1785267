"""Making the compiled engine's kernels ready: compiled, or loaded from numba's disk cache, timed.

Each kernel is made ready by one call on a one-state MDP, once per process; ``tabrl.kernel_cache``
calls this to prepare the kernels a command needs before its clock starts, and the benchmark to
time a compile on its own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tabrl.compiled import kernels
from tabrl.compiled.bridge import new_runs
from tabrl.compiled.model import compile_mdp, observed_outcomes
from tabrl.exact.mdp import from_transitions


@dataclass(frozen=True)
class WarmUp:
    """What making the kernels ready cost this process."""

    seconds: float
    from_cache: bool  #: loaded from numba's disk cache, not compiled


def _tiny_call(kernel: Callable[..., object]) -> None:
    """Call ``kernel`` on a one-state MDP for one step: what compiles it (or loads it). A
    method's kernel plays its method (``kernel.method``), the others Q-learning."""
    tiny_mdp = from_transitions({0: {0: [(1.0, 0, 0.0, True)]}}, np.ones(1), 1, 1)
    tiny = compile_mdp(tiny_mdp)
    if kernel is kernels.play_policy:
        out = [np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int8), np.zeros(1, np.int64)]
        kernel(tiny, np.zeros(1, np.int64), np.zeros(1, np.bool_), 1, 1, 0, 0,
               kernels.seed_state(0), *out, 0, 1)
        return
    algo, exploration = getattr(kernel, "method", (kernels.Q_LEARNING, kernels.EPSILON_GREEDY))
    setting = np.zeros(kernels.SETTING_SIZE)
    setting[[kernels.ALGO, kernels.EXPLORATION, kernels.N_STEPS]] = algo, exploration, 1
    observed = observed_outcomes(tiny_mdp)
    kernel(tiny, observed, new_runs(observed, setting, (1, 1), [0], 1, 1), 0, 1, 1)


#: The kernels a warm-up of nothing in particular makes ready: the tutorial's agent's, the
#: evaluation's and every method's.
ENTRY_POINTS = (kernels.method_kernel(kernels.Q_LEARNING, kernels.EPSILON_GREEDY),
                kernels.play_policy, kernels.train_runs)


@functools.cache
def _ready(kernel: Callable[..., object]) -> WarmUp:
    start = time.perf_counter()
    _tiny_call(kernel)
    stats = kernel.stats  # type: ignore[attr-defined]  # numba's dispatcher
    from_cache = sum(stats.cache_hits.values()) > 0 and not sum(stats.cache_misses.values())
    return WarmUp(time.perf_counter() - start, from_cache)


def warm_up(*entry_points: Callable[..., object]) -> WarmUp:
    """Compile ``entry_points`` (default: every kernel of the engine), or load them from the
    disk cache, once per process, timed.

    Every later call returns the same records at no cost, so training calls it (through
    ``kernel_cache.prepare``) before starting its clock and the benchmark calls it first to
    report the compile time on its own.
    """
    ready = [_ready(kernel) for kernel in entry_points or ENTRY_POINTS]
    return WarmUp(sum(r.seconds for r in ready), all(r.from_cache for r in ready))


