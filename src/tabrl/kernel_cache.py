"""Whether the numba kernels a command needs are in numba's disk cache, before asking numba.

Compiling the kernels takes 20 to 100 s the first time; later processes load them from numba's
on-disk cache in about a second. The command line announces a compile before it starts, so it
must know beforehand, cheaply and without loading numba's pickled index: after a warm-up has
made a set of kernels ready, :func:`mark_cached` leaves a marker file in numba's cache folder of
the kernels' module, named after everything numba's cache depends on (the module's source as
numba stamps it, numba's version, the interpreter, the CPU numba compiles for). Editing the
kernels, upgrading numba or moving to another machine changes the name, so the marker is then
missing, as the cache is stale; deleting the cache deletes the index :func:`is_cached` also
looks for.

A set of kernels lives in one module (numba's cache notices edits only to the defining file:
see :mod:`tabrl.compiled.kernels`) and has one entry point, the kernel its warm-up calls; sets of
one module have markers of their own (the method kernels share numba's index, and are told apart
by what they are). The compiled engine's kernels come in sets, so that a command compiles only
what it runs: one per method and strategy (the tutorial's Q-learning is what ``tabrl train``
trains by default), every method at once (mixed runs, action masks), and the greedy evaluation
on the MDP.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabrl.fileio import DiskWriteError, atomic_write_bytes
from tabrl.interrupts import interrupts_kept


@dataclass(frozen=True)
class KernelSet:
    """Kernels a command may need: what to call them, how to make them ready, and about how
    long compiling them takes (measured on a quiet 2-core machine; a busy one takes longer)."""

    what: str
    entry_point: Callable[[], Any]  #: imports the kernels' module, returns its numba dispatcher
    warm_up: Callable[[], Any]  #: compiles the kernels, or loads them from the disk cache
    seconds: float


def _compiled(what: str, entry_point: Callable[[], Any], seconds: float) -> KernelSet:
    """The set of one of the compiled engine's kernels, which ``entry_point`` returns."""

    def warm_up() -> Any:
        from tabrl.compiled.warm import warm_up

        return warm_up(entry_point())

    return KernelSet(what, entry_point, warm_up, seconds)


def _train_runs() -> Any:
    from tabrl.compiled import kernels

    return kernels.train_runs


def _play_policy() -> Any:
    from tabrl.compiled import kernels

    return kernels.play_policy


def _sweep_until_settled() -> Any:
    from tabrl.exact.kernels import sweep_until_settled

    return sweep_until_settled


def _warm_up_exact() -> Any:
    from tabrl.exact.dp import warm_up

    return warm_up()


# The seconds announced are a cold compile's CPU time on the 2-core machine tabrl is built on
# (what it takes when the machine is otherwise idle), measured 2026-12-03.
#: A method's kernel, where it takes longer than the others' 15 to 30 s: the n-step methods
#: inline a backup that reaches every strategy, the traced ones their trace loop.
METHOD_SECONDS = {"n-step-sarsa": 65.0, "tree-backup": 60.0, "q-sigma": 65.0,
                  "sarsa-lambda": 35.0, "q-lambda": 35.0}


@functools.cache
def method_kernels(algo: str, exploration: str) -> KernelSet:
    """The kernel of one method and strategy alone (``kernels.method_kernel``): what the
    compiled engine trains agents that share them with."""

    def entry_point() -> Any:
        from tabrl.compiled import kernels
        from tabrl.compiled.bridge import ALGO_CODES, EXPLORATION_CODES

        return kernels.method_kernel(ALGO_CODES[algo], EXPLORATION_CODES[exploration])

    strategy = "" if exploration == "epsilon-greedy" else f" with {exploration} exploration"
    return _compiled(f"the compiled engine's {algo} kernel{strategy}", entry_point,
                     METHOD_SECONDS.get(algo, 25.0))


#: The tutorial's agent's: Q-learning exploring epsilon-greedily, no action mask.
Q_LEARNING = method_kernels("q-learning", "epsilon-greedy")
#: Every method and exploration strategy, with action masks.
ENGINE = _compiled("the compiled engine's kernel of every method", _train_runs, 100.0)
#: The greedy evaluation played on the MDP (and :func:`tabrl.compiled.rollout`).
PLAY = _compiled("the compiled evaluation's kernel", _play_policy, 4.0)
#: The exact solution's and exact policy evaluation's sweeps.
EXACT = KernelSet("the exact solver's kernels", _sweep_until_settled, _warm_up_exact, 8.0)


def training_kernels(agents: Sequence[Any]) -> KernelSet:
    """The set that trains ``agents`` (:class:`~tabrl.agents.TabularAgent`) on the compiled
    engine (:func:`kernels_to_train` of the method they share)."""
    from tabrl.compiled.bridge import shared_method

    return kernels_to_train(shared_method(agents))


def kernels_to_train(method: tuple[str, str] | None) -> KernelSet:
    """The set that trains runs of ``method``, the method and strategy they share (None: they
    do not, or some mask actions): the method's own where it is ready or the kernel of every
    method is not (its compile is a fraction of that one's), else the kernel of every method,
    so that no run waits for a compile it can do without. Both give the same numbers."""
    if method is None:
        return ENGINE
    own = method_kernels(*method)
    return own if is_ready(own) or not is_ready(ENGINE) else ENGINE


def is_ready(kernels: KernelSet) -> bool:
    """Whether ``kernels`` run without a compile: prepared or compiled in this process, or
    cached."""
    if kernels in _PREPARED:
        return True
    return bool(getattr(kernels.entry_point(), "signatures", ())) or is_cached(kernels)


def marker_path(kernels: KernelSet) -> Path:
    """The marker of ``kernels`` as they are now, in numba's cache folder of their module."""
    import numba
    from numba.core.registry import cpu_target

    cache = kernels.entry_point()._cache  # numba's FunctionCache of a ``cache=True`` kernel
    stamp = cache._cache_file._source_stamp
    depends_on = repr((kernels.what, stamp, numba.__version__, sys.implementation.cache_tag,
                       cpu_target.target_context.codegen().magic_tuple(),
                       Path(cache._cache_file._index_path).name))
    name = hashlib.sha256(depends_on.encode()).hexdigest()[:20]
    return Path(cache._cache_path) / f"tabrl-ready-{name}"


def is_cached(kernels: KernelSet) -> bool:
    """Whether a warm-up of ``kernels`` succeeded with this source, numba and machine, and
    numba's index of their entry point is still there (False wherever that cannot be told)."""
    try:
        index = Path(kernels.entry_point()._cache._cache_file._index_path)
        return index.is_file() and marker_path(kernels).is_file()
    except (AttributeError, OSError):  # another numba's internals: say a compile may come
        return False


def mark_cached(kernels: KernelSet) -> None:
    """Record that ``kernels`` are in the disk cache (after their warm-up); a cache folder that
    cannot be written (numba then keeps the kernels in memory only) gets no marker."""
    try:
        if not (marker := marker_path(kernels)).is_file():
            atomic_write_bytes(marker, b"")
    except (AttributeError, OSError, DiskWriteError):
        pass


#: The sets prepared in this process: each is prepared once (a training's chunks each ask).
_PREPARED: set[KernelSet] = set()


def prepare(kernels: KernelSet) -> None:
    """Compile ``kernels`` (or load them from the disk cache), then mark them cached; once per
    process."""
    if kernels in _PREPARED:
        return
    with interrupts_kept():
        kernels.warm_up()
    mark_cached(kernels)
    _PREPARED.add(kernels)
