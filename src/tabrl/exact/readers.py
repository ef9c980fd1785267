"""The exact MDP of an environment: its toy-text transition table ``P``, or Blackjack's rules.

An environment describes its dynamics in its own way; each reader turns one way into a
:class:`~tabrl.exact.mdp.TabularMDP`. Toy-text environments list every outcome in
``env.unwrapped.P[s][a]`` and their start in ``initial_state_distrib``; Blackjack-v1 has no ``P``,
and :mod:`tabrl.exact.blackjack` derives its MDP from the rules. Only wrappers known to leave
observations, rewards and dynamics untouched may stand between tabrl and the environment.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv
from gymnasium.wrappers import (
    DiscretizeObservation,
    OrderEnforcing,
    PassiveEnvChecker,
    RecordEpisodeStatistics,
    TimeLimit,
)

from tabrl.envs import time_limit_of
from tabrl.errors import NotCompilableError
from tabrl.exact.blackjack import BlackjackEnv, blackjack_mdp
from tabrl.exact.mdp import TabularMDP, from_transitions, read_only
from tabrl.spaces import encoder_for

#: Wrappers that leave observations, rewards and dynamics untouched.
TRANSPARENT_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker, RecordEpisodeStatistics)


def mdp_of(env: gym.Env) -> TabularMDP:
    """The exact MDP of ``env``, or :class:`NotCompilableError` saying why there is none."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, DiscretizeObservation):
            raise NotCompilableError(
                f"{type(env.unwrapped).__name__} moves continuously (its observations are cut into "
                "bins): it has no transition table, so its dynamics are unknown"
            )
        if not isinstance(layer, TRANSPARENT_WRAPPERS):
            raise NotCompilableError(
                f"the wrapper {type(layer).__name__} may change observations or rewards, "
                "so tabrl cannot read the environment's dynamics"
            )
        layer = layer.env
    base = env.unwrapped
    horizon = time_limit_of(env)


    if isinstance(base, BlackjackEnv):
        return blackjack_mdp(natural=base.natural, sab=base.sab, horizon=horizon)
    if getattr(base, "fickle_passenger", False):
        raise NotCompilableError(
            "fickle_passenger changes the destination outside the transition table P, "
            "so the compiled engine cannot reproduce it"
        )
    transitions = getattr(base, "P", None)
    initial = getattr(base, "initial_state_distrib", None)
    if not isinstance(transitions, dict) or initial is None:
        raise NotCompilableError(
            f"{type(base).__name__} has no transition table P with initial_state_distrib "
            "(and is not Blackjack), so its dynamics are unknown"
        )
    encoder = encoder_for(base.observation_space)
    if not encoder.scalar or encoder.starts[0] != 0 or encoder.n_states != len(initial):
        raise NotCompilableError(
            "a transition table P needs the observation space Discrete(n) with one "
            "observation per state of P"
        )
    # Toy-text environments emit the state itself, so the state is the Q-table row.
    mdp = from_transitions(
        transitions, np.asarray(initial, dtype=np.float64), int(base.action_space.n), horizon
    )
    return read_only(dataclasses.replace(mdp, goal_rows=goal_rows_of(base, mdp)))


def known_mdp(env: gym.Env) -> TabularMDP | None:
    """The environment's exact MDP, or None where tabrl cannot know it."""
    try:
        return mdp_of(env)
    except NotCompilableError:
        return None


def goal_rows_of(base: gym.Env, mdp: TabularMDP) -> np.ndarray:
    """Rows where ending the episode counts as success.

    FrozenLake marks its goal ``G`` in ``desc`` (holes end episodes too); elsewhere in the
    toy-text family (Taxi, CliffWalking) every terminating transition reaches the goal.
    """
    if isinstance(base, FrozenLakeEnv):
        return (np.asarray(base.desc) == b"G").ravel()
    goal = np.zeros(mdp.n_rows, dtype=bool)
    goal[mdp.row_of_state[mdp.next_state[mdp.terminal]]] = True
    return goal
