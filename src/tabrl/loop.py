"""The plain Gymnasium loop: any environment, Python speed.

This is the Gymnasium tutorial's training loop, step for step: reset, act epsilon-greedily, step,
update, and decay epsilon after every episode, with ``RecordEpisodeStatistics`` recording returns
and lengths. Only the bookkeeping is added: the per-episode mean absolute TD error and epsilon.
A masked agent (``agent.action_mask``) is handed ``info["action_mask"]`` of every observation.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics

from tabrl.agents import TabularAgent
from tabrl.masks import INFO_KEY

#: ``progress(episodes_done, mean_return_of_recent_episodes)``, called a few times a second.
Progress = Callable[[int, float], None]

#: ``on_mark(greedy_policy)``: a copy of the greedy policy (an action per row) at a marked episode.
OnMark = Callable[[np.ndarray], None]

#: Columns of the per-episode training log, in file order.
COLUMNS = ("return", "length", "td_error", "epsilon")


@dataclass
class TrainingLog:
    """Per-episode metrics: return, length, mean absolute TD error, epsilon used."""

    returns: np.ndarray
    lengths: np.ndarray
    td_errors: np.ndarray
    epsilons: np.ndarray
    seconds: float = 0.0  #: wall time of the training, compilation excluded

    def columns(self) -> dict[str, np.ndarray]:
        return dict(zip(COLUMNS, (self.returns, self.lengths, self.td_errors, self.epsilons)))

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], seconds: float = 0.0) -> TrainingLog:
        return cls(*(np.asanyarray(columns[name]) for name in COLUMNS), seconds=seconds)

    @classmethod
    def concatenate(cls, logs: list[TrainingLog]) -> TrainingLog:
        """The episodes of ``logs`` one after another, with their times added."""
        return cls(*(np.concatenate([log.columns()[name] for log in logs]) for name in COLUMNS),
                   seconds=sum(log.seconds for log in logs))

    @classmethod
    def empty(cls, n_episodes: int) -> TrainingLog:
        return cls(
            np.zeros(n_episodes), np.zeros(n_episodes, np.int64), np.zeros(n_episodes),
            np.zeros(n_episodes),
        )

    def __len__(self) -> int:
        return len(self.returns)

    def head(self, n: int) -> TrainingLog:
        """The first ``n`` episodes (views, not copies)."""
        return TrainingLog.from_columns(
            {name: column[:n] for name, column in self.columns().items()}, self.seconds
        )


def find_episode_statistics(env: gym.Env) -> RecordEpisodeStatistics | None:
    """The ``RecordEpisodeStatistics`` layer of ``env``, if it has one."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordEpisodeStatistics):
            return env
        env = env.env
    return None


def recent_mean(queue: deque, n: int = 1000) -> float:
    """The mean of the last ``n`` entries of a deque, without copying the whole of it."""
    return float(np.mean(list(islice(reversed(queue), n))))


def run_python(
    env: gym.Env,
    agent: TabularAgent,
    n_episodes: int,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    progress_every: float = 0.25,
    marks: Sequence[int] = (),
    on_mark: OnMark | None = None,
) -> TrainingLog:
    """Train ``agent`` on ``env`` for ``n_episodes`` with the tutorial's loop.

    ``env`` should be wrapped in ``RecordEpisodeStatistics`` with ``buffer_length >= n_episodes``;
    without one, a wrapper of that size is added here. ``seed`` seeds the first ``reset``.
    ``on_mark`` sees the greedy policy after each of the (sorted) episode counts ``marks``; it
    only reads, so training is the same with marks or without.
    """
    pending = iter(marks)
    mark = next(pending, None)
    if (stats := find_episode_statistics(env)) is None or stats.return_queue.maxlen < n_episodes:
        env = stats = RecordEpisodeStatistics(env, buffer_length=n_episodes)
    td_errors = np.zeros(n_episodes)
    epsilons = np.zeros(n_episodes)
    masked = agent.action_mask
    start = last_report = time.perf_counter()
    obs, info = env.reset(seed=seed)
    for episode in range(n_episodes):
        if episode:
            obs, info = env.reset()
        epsilons[episode] = agent.epsilon
        abs_td, steps, done = 0.0, 0, False
        mask = info.get(INFO_KEY) if masked else None
        while not done:
            action = agent.get_action(obs, mask) if steps else agent.first_action(obs, mask)
            next_obs, reward, terminated, truncated, info = env.step(action)
            mask = info.get(INFO_KEY) if masked else None
            abs_td += abs(agent.update(obs, action, reward, terminated, next_obs, truncated,
                                       mask))
            steps += 1
            done = terminated or truncated
            obs = next_obs
        td_errors[episode] = abs_td / steps
        agent.end_episode()
        if episode + 1 == mark:
            if on_mark is not None:
                on_mark(agent.q_values.greedy_policy())
            mark = next(pending, None)
        if progress is not None and time.perf_counter() - last_report > progress_every:
            last_report = time.perf_counter()
            progress(episode + 1, recent_mean(stats.return_queue))
    seconds = time.perf_counter() - start
    returns = np.asarray(list(stats.return_queue), dtype=np.float64)[-n_episodes:]
    lengths = np.asarray(list(stats.length_queue), dtype=np.int64)[-n_episodes:]
    if progress is not None:
        progress(n_episodes, float(returns[-1000:].mean()))
    return TrainingLog(returns, lengths, td_errors, epsilons, seconds)
