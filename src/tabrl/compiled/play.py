"""A fixed policy played on a known MDP at kernel speed: the compiled greedy evaluation.

Where tabrl knows an environment's MDP, the Monte Carlo evaluation of a greedy policy need not
call ``env.step``: :func:`play` draws its episodes from the MDP's arrays in one numba kernel
(:func:`tabrl.compiled.kernels.play_policy`), with what the evaluation's report needs of each
episode: its return and length, how it stopped (terminated, truncated, or cut where the policy
never ends) and its last state, whose row tells a goal from a hole. The episodes come in slices
(progress, Ctrl-C), their random stream carried from one to the next, so the result depends on
the seed alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tabrl.compiled import kernels
from tabrl.compiled.engine import slices, time_limit
from tabrl.compiled.model import compile_mdp
from tabrl.compiled.warm import warm_up
from tabrl.errors import UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.loop import TrainingLog


@dataclass(frozen=True)
class Played:
    """The episodes of a policy played on an MDP (fewer than asked where the play stopped
    early), one entry each."""

    returns: np.ndarray  #: float64
    lengths: np.ndarray  #: int64
    ends: np.ndarray  #: int8: ``kernels.TERMINATED``, ``TRUNCATED`` or ``LOOPED``
    final_rows: np.ndarray  #: int64: the Q-table row of the last state
    seconds: float


def policy_of_states(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """The action of every state of ``mdp`` under ``policy`` (an action per Q-table row; action 0
    in a row beyond it, as the real environment's evaluation plays in a state it never saw)."""
    policy = np.asarray(policy, dtype=np.int64)
    if policy.ndim != 1 or not ((policy >= 0) & (policy < mdp.n_actions)).all():
        raise UsageError(f"a policy needs one action in 0..{mdp.n_actions - 1} per row of the "
                         f"Q-table (got an array of shape {policy.shape})")
    padded = np.zeros(max(mdp.n_rows, len(policy)), np.int64)
    padded[: len(policy)] = policy
    return padded[mdp.row_of_state]


def play(
    mdp: TabularMDP,
    policy: np.ndarray,
    n_episodes: int,
    *,
    seed: int,
    max_steps: int,
    cut_rows: np.ndarray | None = None,
    stop_after_capped: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Played:
    """Play ``policy`` (an action per Q-table row) for ``n_episodes`` on ``mdp``.

    Episodes are truncated at the MDP's time limit, or at ``max_steps`` where it has none; one
    that enters a row where ``cut_rows`` is set is cut at once (it would never end). The play
    stops early once ``stop_after_capped`` episodes in a row have been truncated (0: never).
    ``progress`` hears the episodes played after each slice.
    """
    if n_episodes <= 0:
        raise UsageError(f"the number of episodes must be positive, not {n_episodes}")
    action_of_state = policy_of_states(mdp, policy)
    cut = (np.zeros(mdp.n_states, np.bool_) if cut_rows is None
           else np.asarray(cut_rows, np.bool_)[mdp.row_of_state])
    warm_up(kernels.play_policy)
    model, limit, rng = compile_mdp(mdp), time_limit(mdp, max_steps), kernels.seed_state(seed)
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, np.int64)
    ends, finals = np.zeros(n_episodes, np.int8), np.zeros(n_episodes, np.int64)
    played, capped, began = 0, 0, time.perf_counter()
    for start, stop in slices(n_episodes):
        played, capped = kernels.play_policy(
            model, action_of_state, cut, mdp.n_actions, limit, stop_after_capped, capped, rng,
            returns, lengths, ends, finals, start, stop)
        if progress is not None:
            progress(played)
        if played < stop or (stop_after_capped > 0 and capped == stop_after_capped):
            break
    return Played(returns[:played], lengths[:played], ends[:played],
                  mdp.row_of_state[finals[:played]], time.perf_counter() - began)


def rollout(
    mdp: TabularMDP, policy: np.ndarray, n_episodes: int, *, seed: int, max_steps: int
) -> TrainingLog:
    """Play the deterministic ``policy`` (an action per Q-table row) for ``n_episodes``.

    A Monte Carlo evaluation on the exact dynamics at kernel speed, as a training log: the
    episodes' returns and lengths (TD errors and epsilon are zero).
    """
    if np.shape(policy) != (mdp.n_rows,):
        raise UsageError(f"a policy needs one action for each of the {mdp.n_rows} rows of the "
                         f"Q-table (got an array of shape {np.shape(policy)})")
    episodes = play(mdp, policy, n_episodes, seed=seed, max_steps=max_steps)
    return TrainingLog(episodes.returns, episodes.lengths, np.zeros(n_episodes),
                       np.zeros(n_episodes), episodes.seconds)
