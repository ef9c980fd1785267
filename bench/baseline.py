"""The baseline: the Gymnasium tutorial's Q-learning agent and training loop, unchanged.

This is the plain Python loop of the seed (``docs/introduction/train_agent.md`` of Gymnasium): a
``defaultdict`` Q-table, ``np.argmax`` for the greedy action, ``RecordEpisodeStatistics`` with a
buffer as long as the run, epsilon decayed after every episode. Only the environment id is a
parameter, and environments without a time limit get tabrl's step cap, so that every engine
plays the same episodes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from tabrl.envs import DEFAULT_STEP_CAP, with_step_cap


class TutorialAgent:
    """The tutorial's ``BlackjackAgent``, for any environment with discrete actions."""

    def __init__(
        self,
        env: gym.Env,
        learning_rate: float,
        initial_epsilon: float,
        epsilon_decay: float,
        final_epsilon: float,
        discount_factor: float = 0.95,
    ) -> None:
        self.env = env
        self.q_values = defaultdict(lambda: np.zeros(env.action_space.n))
        self.lr = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = initial_epsilon
        self.epsilon_decay = epsilon_decay
        self.final_epsilon = final_epsilon
        self.training_error = []

    def get_action(self, obs) -> int:
        if np.random.random() < self.epsilon:
            return self.env.action_space.sample()
        return int(np.argmax(self.q_values[obs]))

    def update(self, obs, action: int, reward: float, terminated: bool, next_obs) -> None:
        future_q_value = (not terminated) * np.max(self.q_values[next_obs])
        temporal_difference = (
            reward + self.discount_factor * future_q_value - self.q_values[obs][action]
        )
        self.q_values[obs][action] = self.q_values[obs][action] + self.lr * temporal_difference
        self.training_error.append(temporal_difference)

    def decay_epsilon(self) -> None:
        self.epsilon = max(self.final_epsilon, self.epsilon - self.epsilon_decay)


@dataclass(frozen=True)
class BaselineRun:
    """Wall time and size of one baseline training run."""

    seconds: float
    episodes: int
    steps: int


def train_baseline(
    env_id: str,
    n_episodes: int,
    learning_rate: float,
    start_epsilon: float,
    final_epsilon: float,
    discount_factor: float,
    max_steps: int = DEFAULT_STEP_CAP,
) -> BaselineRun:
    """The tutorial's training loop on ``env_id``, timed from ``gym.make`` to the last episode."""
    start = time.perf_counter()
    env = with_step_cap(gym.make(env_id), max_steps)
    env = gym.wrappers.RecordEpisodeStatistics(env, buffer_length=n_episodes)
    agent = TutorialAgent(
        env=env,
        learning_rate=learning_rate,
        initial_epsilon=start_epsilon,
        epsilon_decay=start_epsilon / (n_episodes / 2),
        final_epsilon=final_epsilon,
        discount_factor=discount_factor,
    )
    for _ in range(n_episodes):
        obs, info = env.reset()
        done = False
        while not done:
            action = agent.get_action(obs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            agent.update(obs, action, reward, terminated, next_obs)
            done = terminated or truncated
            obs = next_obs
        agent.decay_epsilon()
    seconds = time.perf_counter() - start
    return BaselineRun(seconds, n_episodes, int(np.sum(env.length_queue)))
