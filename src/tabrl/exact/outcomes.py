"""How an episode ends, in the words of its environment's family, and where a policy loops.

Facts of the MDP and a policy alone: the Monte Carlo evaluation (:mod:`tabrl.evaluate`) counts
its episodes by them and the exact report (:mod:`tabrl.exact.reference`) sums its shares by them.
"""

from __future__ import annotations

import numpy as np

from tabrl.exact.dp import endless_states
from tabrl.exact.mdp import TabularMDP


def outcome_names(mdp: TabularMDP | None) -> tuple[str, ...]:
    """How an episode of this environment family can end, in its own words.

    A game without goal states (Blackjack) is won, drawn or lost (the sign of its return is the
    game's own outcome); an MDP with goal states (FrozenLake, Taxi, CliffWalking) ends in
    success, or in failure where some terminal state is not a goal (FrozenLake's holes), or is
    truncated by its time limit; without a time limit a greedy policy may loop instead. Of
    unknown dynamics (CartPole) tabrl only tells an episode that ended from one that was
    truncated: whether ending is good or bad is the environment's business.
    """
    if mdp is None:
        return ("ended", "truncated")
    if mdp.goal_rows is None:  # a game: without a time limit it always ends
        return ("win", "draw", "loss") + (("truncated",) if mdp.horizon is not None else ())
    ends_elsewhere = not mdp.goal_rows[mdp.row_of_state[mdp.next_state[mdp.terminal]]].all()
    names = ("success",) + (("failure",) if ends_elsewhere else ()) + ("truncated",)
    return names + (("loops",) if mdp.horizon is None else ())


#: How an episode stopped: the codes of :func:`outcome_codes` and of the compiled evaluation's
#: kernel (``tabrl.compiled.kernels.play_policy``).
TERMINATED, TRUNCATED, LOOPED = 0, 1, 2


def outcome_codes(mdp: TabularMDP | None, names: tuple[str, ...], ends: np.ndarray,
                  rows: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Each episode's outcome as an index into ``names`` (:func:`outcome_names`), from how it
    stopped (``ends``), the row of its last state (``rows``, -1 for a state without one) and its
    return (``totals``); -1 for an outcome ``names`` lacks.

    A terminated game is won, drawn or lost by the sign of its return; a terminated episode of an
    MDP with goal states succeeds where it ends in a goal.
    """
    def code(name: str) -> int:
        return names.index(name) if name in names else -1

    if mdp is None:
        terminated = np.full(len(ends), code("ended"))
    elif mdp.goal_rows is None:
        terminated = np.select([totals > 0, totals == 0], [code("win"), code("draw")], code("loss"))
    else:
        known = (rows >= 0) & (rows < len(mdp.goal_rows))
        goal = known & mdp.goal_rows[np.where(known, rows, 0)]
        terminated = np.where(goal, code("success"), code("failure"))
    return np.select([ends == TERMINATED, ends == TRUNCATED], [terminated, code("truncated")],
                     code("loops")).astype(np.int64)


def endless_rows(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Rows all of whose states never end under ``policy``: an episode there can be cut."""
    never, _ = endless_states(mdp, policy)
    states = np.bincount(mdp.row_of_state, minlength=mdp.n_rows)
    return (np.bincount(mdp.row_of_state, never, minlength=mdp.n_rows) == states) & (states > 0)


def start_loops(mdp: TabularMDP, policy: np.ndarray) -> tuple[int, int]:
    """``(N, M)``: the greedy policy may loop forever from N of the M start states."""
    _, may_loop = endless_states(mdp, policy)
    starts = mdp.initial > 0
    return int((may_loop & starts).sum()), int(starts.sum())
