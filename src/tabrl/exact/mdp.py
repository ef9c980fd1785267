"""The whole MDP of an environment, as flat arrays: data, and nothing that reads environments.

:mod:`tabrl.exact.readers` makes a :class:`TabularMDP` of an environment (its toy-text table
``P``, or Blackjack's rules); once it is one, the compiled engine can sample it and
``tabrl.solve`` (in :mod:`tabrl.exact.dp`) can solve it exactly: one description serves both.

Outcomes are stored in CSR form: the outcomes of state ``s`` and action ``a`` are the entries
``offsets[s * n_actions + a] : offsets[s * n_actions + a + 1]`` of ``prob``, ``next_state``,
``reward`` and ``terminal``. States are the MDP's own; ``row_of_state[s]`` is the Q-table row of the
observation the environment emits in state ``s`` (the identity for toy-text environments; Blackjack
keeps a hidden "natural" flag that the observation does not show).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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








