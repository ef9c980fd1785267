"""A TabularMDP turned into the cumulative probabilities the kernels sample from, once per MDP.

Drawing an outcome of ``(state, action)`` is one uniform number and a search in the cumulative
probabilities of that pair's outcomes. They are computed here once per MDP object and remembered
for as long as the MDP lives, so the chunks of a long training run share them.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import numpy as np

from tabrl.compiled.kernels import CompiledMDP
from tabrl.errors import NotCompilableError
from tabrl.mdp import TabularMDP

_COMPILED: WeakKeyDictionary[TabularMDP, CompiledMDP] = WeakKeyDictionary()


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
