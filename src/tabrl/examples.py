"""Small textbook environments in toy-text style (a transition table ``P``), registered on import.

``tabrl/MaximizationBias-v0`` is the MDP of Sutton and Barto's Example 6.7, where the ``max`` in
Q-learning's target overestimates a state whose actions are all bad on average:

* start in ``A``; action 0 (LEFT) moves to ``B`` with reward 0, every other action (RIGHT) ends
  the episode with reward 0;
* in ``B`` every action ends the episode with a reward of mean -0.1 and standard deviation 1
  (the book's normal law, here -1.1 or +0.9 with probability 1/2 each, so that ``P`` is exact).

Going left is worth -0.1 and right 0, but after a few visits of ``B`` some action there looks
positive, and ``max_a Q(B, a) > 0`` draws Q-learning to the left; Double Q-learning is not fooled.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.toy_text.utils import categorical_sample

A, B, TERMINAL = 0, 1, 2
LEFT = 0
#: The rewards in ``B``: mean -0.1, standard deviation 1.
B_REWARDS = (-1.1, 0.9)


class MaximizationBiasEnv(gym.Env):
    """Sutton and Barto's Example 6.7 with ``n_actions`` actions in every state."""

    metadata = {"render_modes": []}

    def __init__(self, n_actions: int = 10) -> None:
        self.observation_space = spaces.Discrete(3)
        self.action_space = spaces.Discrete(n_actions)
        leave_b = [(0.5, TERMINAL, reward, True) for reward in B_REWARDS]
        self.P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {
            A: {a: [(1.0, B, 0.0, False)] if a == LEFT else [(1.0, TERMINAL, 0.0, True)]
                for a in range(n_actions)},
            B: {a: list(leave_b) for a in range(n_actions)},
            TERMINAL: {a: [(1.0, TERMINAL, 0.0, True)] for a in range(n_actions)},
        }
        self.initial_state_distrib = np.array([1.0, 0.0, 0.0])
        self.s = A

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.s = int(categorical_sample(self.initial_state_distrib, self.np_random))
        return self.s, {"prob": 1.0}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        transitions = self.P[self.s][action]
        i = categorical_sample([t[0] for t in transitions], self.np_random)
        p, self.s, reward, terminated = transitions[i]
        return int(self.s), reward, terminated, False, {"prob": p}


gym.register(id="tabrl/MaximizationBias-v0", entry_point=MaximizationBiasEnv)
