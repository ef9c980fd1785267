"""A user's own environment, as the tests bring it to the command line: ``tests.envs.corridor``.

A corridor of ``length`` cells in toy-text style (a transition table ``P`` and
``initial_state_distrib``, so tabrl compiles and solves it): start in cell 0, every step costs 1,
the episode ends in the last cell. Action 0 goes left, 1 right; with probability ``slip`` the
agent goes the other way. Importing the module registers ``Corridor-v0`` (6 cells, no slip,
20 steps) and ``CorridorSlippery-v0`` (6 cells, slip 0.1, no time limit).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.toy_text.utils import categorical_sample

LEFT, RIGHT = 0, 1


class CorridorEnv(gym.Env):
    """Walk right to the end of a corridor; each step costs 1."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, length: int = 6, slip: float = 0.0, render_mode: str | None = None) -> None:
        self.length, self.render_mode = length, render_mode
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)
        goal = length - 1
        self.P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {
            s: {a: [] for a in (LEFT, RIGHT)} for s in range(length)
        }
        for s in range(length):
            for a in (LEFT, RIGHT):
                if s == goal:
                    self.P[s][a] = [(1.0, s, 0.0, True)]
                    continue
                moves = [(1.0 - slip, a), (slip, 1 - a)] if slip else [(1.0, a)]
                for p, direction in moves:
                    nxt = min(max(s + (1 if direction == RIGHT else -1), 0), goal)
                    self.P[s][a].append((p, nxt, -1.0, nxt == goal))
        self.initial_state_distrib = np.eye(length)[0]
        self.s = 0

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

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "".join("A" if i == self.s else "G" if i == self.length - 1 else "."
                           for i in range(self.length)) + "\n"
        return None


def register_long_corridor() -> None:
    """A plugin's registration function (the tests install it as an entry point)."""
    gym.register(id="LongCorridor-v0", entry_point=CorridorEnv, kwargs={"length": 10})


gym.register(id="Corridor-v0", entry_point=CorridorEnv, max_episode_steps=20)
gym.register(id="CorridorSlippery-v0", entry_point=CorridorEnv, kwargs={"slip": 0.1})
