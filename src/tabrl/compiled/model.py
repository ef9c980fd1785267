"""A TabularMDP turned into the arrays the kernels sample from and learn with, once per MDP.

Drawing an outcome of ``(state, action)`` is one uniform number and a search in the cumulative
probabilities of that pair's outcomes. Dyna-Q's model counts what the agent sees of an outcome,
``(reward, next row, terminal)`` for its ``(row, action)``, so the distinct outcomes of every
row-action pair are listed as well, for Dyna-Q alone. Both are computed once per MDP object and
remembered for as long as the MDP lives, so the chunks of a long training run share them.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import numpy as np

from tabrl.compiled.kernels import CompiledMDP, ObservedOutcomes
from tabrl.errors import NotCompilableError
from tabrl.exact.mdp import TabularMDP

_COMPILED: WeakKeyDictionary[TabularMDP, CompiledMDP] = WeakKeyDictionary()
_OBSERVED: WeakKeyDictionary[TabularMDP, ObservedOutcomes] = WeakKeyDictionary()
#: What runs without Dyna-Q are given: nothing observed.
NOTHING_OBSERVED = ObservedOutcomes(
    offsets=np.zeros(1, np.int64), reward=np.zeros(0), next_row=np.zeros(0, np.int64),
    terminal=np.zeros(0, np.bool_), slot=np.zeros(0, np.int64),
)


def segment_cdf(prob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``prob`` restarted at every ``offsets`` boundary, normalised to end at 1.

    The sums run in order within each segment, as ``np.cumsum`` would on the segment alone; the
    last entry of every segment is set to exactly 1 so that a uniform draw in [0, 1) always lands.
    """
    starts, lengths = offsets[:-1], np.diff(offsets)
    cdf = np.array(prob, dtype=np.float64)
    for k in range(1, int(lengths.max(initial=0))):
        inside = starts[lengths > k] + k
        cdf[inside] += cdf[inside - 1]
    nonempty = lengths > 0
    last = offsets[1:][nonempty] - 1
    cdf /= np.repeat(cdf[last], lengths[nonempty])
    cdf[last] = 1.0
    return cdf


def compile_mdp(mdp: TabularMDP) -> CompiledMDP:
    """The kernels' form of ``mdp``, computed on first use and remembered while ``mdp`` lives."""
    compiled = _COMPILED.get(mdp)
    if compiled is None:
        compiled = _COMPILED[mdp] = _build(mdp)
    return compiled


def _build(mdp: TabularMDP) -> CompiledMDP:
    empty = np.flatnonzero(np.diff(mdp.offsets) == 0)
    if empty.size:
        state, action = divmod(int(empty[0]), mdp.n_actions)
        raise NotCompilableError(
            f"state {state} has no outcome for action {action} (probabilities all zero), "
            "so an episode there cannot continue"
        )
    start_state = np.flatnonzero(mdp.initial > 0).astype(np.int64)
    start_cdf = segment_cdf(mdp.initial[start_state], np.array([0, start_state.size]))
    buckets = np.arange(start_state.size) / start_state.size
    return CompiledMDP(
        row_of_state=np.ascontiguousarray(mdp.row_of_state, dtype=np.int64),
        start_state=start_state,
        start_cdf=start_cdf,
        start_guide=np.searchsorted(start_cdf, buckets, side="right").astype(np.int64),
        offsets=np.ascontiguousarray(mdp.offsets, dtype=np.int64),
        cdf=segment_cdf(mdp.prob, mdp.offsets),
        next_state=np.ascontiguousarray(mdp.next_state, dtype=np.int64),
        reward=np.ascontiguousarray(mdp.reward, dtype=np.float64),
        terminal=np.ascontiguousarray(mdp.terminal, dtype=np.bool_),
    )


def observed_outcomes(mdp: TabularMDP) -> ObservedOutcomes:
    """The distinct outcomes of every row-action pair of ``mdp``, as an agent observes them
    (computed on first use and remembered while ``mdp`` lives).

    Outcomes that look the same (two entries of ``P`` with the same result, or states that share
    a row) share an entry; sorting the keys ``[pair, reward, next row, terminal]`` groups them by
    pair.
    """
    observed = _OBSERVED.get(mdp)
    if observed is None:
        observed = _OBSERVED[mdp] = _observe(mdp)
    return observed


def _observe(mdp: TabularMDP) -> ObservedOutcomes:
    state, action = np.divmod(mdp.pair_of_outcome(), mdp.n_actions)
    seen = np.column_stack([
        mdp.row_of_state[state] * mdp.n_actions + action,
        mdp.reward,
        mdp.row_of_state[mdp.next_state],
        mdp.terminal,
    ]).astype(np.float64)
    keys, slot = np.unique(seen, axis=0, return_inverse=True)
    return ObservedOutcomes(
        offsets=np.searchsorted(keys[:, 0], np.arange(mdp.n_rows * mdp.n_actions + 1)),
        reward=np.ascontiguousarray(keys[:, 1]),
        next_row=keys[:, 2].astype(np.int64),
        terminal=keys[:, 3].astype(np.bool_),
        slot=slot.reshape(-1).astype(np.int64),
    )
