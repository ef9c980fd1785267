"""The whole MDP of an environment, as flat arrays.

Toy-text environments describe themselves completely: ``env.unwrapped.P[s][a]`` lists the
outcomes ``(probability, next_state, reward, terminated)`` and ``initial_state_distrib`` the start.
Blackjack-v1 has no ``P`` but its infinite deck makes it a finite MDP as well
(``tabrl.blackjack``). Once an environment is a :class:`TabularMDP`, the compiled engine can sample
it and ``tabrl.solve`` (in ``tabrl.dp``) can solve it exactly: one description serves both.

Outcomes are stored in CSR form: the outcomes of state ``s`` and action ``a`` are the entries
``offsets[s * n_actions + a] : offsets[s * n_actions + a + 1]`` of ``prob``, ``next_state``,
``reward`` and ``terminal``. States are the MDP's own; ``row_of_state[s]`` is the Q-table row of the
observation the environment emits in state ``s`` (the identity for toy-text environments; Blackjack
keeps a hidden "natural" flag that the observation does not show).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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

from tabrl.errors import NotCompilableError
from tabrl.spaces import encoder_for

#: Wrappers that leave observations, rewards and dynamics untouched.
TRANSPARENT_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker, RecordEpisodeStatistics)


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP with a start distribution and an optional time limit."""

    n_states: int
    n_actions: int
    n_rows: int  #: rows of the Q-table (observations), at most ``n_states``
    row_of_state: np.ndarray  #: int64[n_states]
    initial: np.ndarray  #: float64[n_states], sums to 1
    offsets: np.ndarray  #: int64[n_states * n_actions + 1]
    prob: np.ndarray  #: float64[n_outcomes]
    next_state: np.ndarray  #: int64[n_outcomes]
    reward: np.ndarray  #: float64[n_outcomes]
    terminal: np.ndarray  #: bool[n_outcomes]
    horizon: int | None  #: the time limit ``gym.make`` applies, None where there is none
    goal_rows: np.ndarray | None = None  #: bool[n_rows]: ending here is a success (None: no goal)

    def outcomes(self, state: int, action: int) -> slice:
        """The slice of the outcome arrays that belongs to ``(state, action)``."""
        i = state * self.n_actions + action
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def pair_of_outcome(self) -> np.ndarray:
        """The index ``s * n_actions + a`` of the state-action pair of every outcome."""
        return np.repeat(np.arange(self.n_states * self.n_actions), np.diff(self.offsets))

    def expected_reward(self) -> np.ndarray:
        """``r(s, a)``: the expected immediate reward, shape ``(n_states, n_actions)``."""
        weighted = np.bincount(self.pair_of_outcome(), weights=self.prob * self.reward,
                               minlength=self.n_states * self.n_actions)
        return weighted.reshape(self.n_states, self.n_actions)


def from_transitions(
    transitions: dict[int, dict[int, list[tuple[float, int, float, bool]]]],
    initial: np.ndarray,
    n_actions: int,
    horizon: int | None,
    row_of_state: np.ndarray | None = None,
    n_rows: int | None = None,
) -> TabularMDP:
    """Flatten a toy-text transition table ``P`` into a :class:`TabularMDP`."""
    n_states = len(initial)
    offsets = np.zeros(n_states * n_actions + 1, dtype=np.int64)
    prob, next_state, reward, terminal = [], [], [], []
    for s in range(n_states):
        for a in range(n_actions):
            for p, s2, r, done in transitions[s][a]:
                if p > 0:
                    prob.append(p)
                    next_state.append(s2)
                    reward.append(r)
                    terminal.append(done)
            offsets[s * n_actions + a + 1] = len(prob)
    rows = np.arange(n_states, dtype=np.int64) if row_of_state is None else row_of_state
    return read_only(TabularMDP(
        n_states=n_states,
        n_actions=n_actions,
        n_rows=n_states if n_rows is None else n_rows,
        row_of_state=np.asarray(rows, dtype=np.int64),
        initial=np.asarray(initial, dtype=np.float64),
        offsets=offsets,
        prob=np.asarray(prob, dtype=np.float64),
        next_state=np.asarray(next_state, dtype=np.int64),
        reward=np.asarray(reward, dtype=np.float64),
        terminal=np.asarray(terminal, dtype=bool),
        horizon=horizon,
    ))


def read_only(mdp: TabularMDP) -> TabularMDP:
    """Freeze the arrays: an MDP may be cached and shared, so nobody may change it in place."""
    for value in vars(mdp).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return mdp


def time_limit_of(env: gym.Env) -> int | None:
    """The ``max_episode_steps`` of the innermost ``TimeLimit`` around ``env``, if any."""
    limit = None
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TimeLimit):
            limit = env._max_episode_steps
        env = env.env
    return limit


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

    from tabrl.blackjack import BlackjackEnv, blackjack_mdp  # late: blackjack builds on this module

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
