"""Greedy evaluation on the real environment.

Exploration off: every episode follows the greedy policy of the Q-table (ties to the lowest
action, the same deterministic policy that is saved, drawn and evaluated exactly). The figures
are those a practitioner reports: mean return with its standard deviation, standard error and
95% interval, win / draw / loss rates by the sign of the return, the success rate where the
environment has a goal, and the mean episode length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from tabrl.agents import TabularAgent
from tabrl.envs import DEFAULT_STEP_CAP, with_step_cap
from tabrl.errors import UsageError
from tabrl.mdp import known_mdp
from tabrl.spaces import StateEncoder


@dataclass
class Evaluation:
    """Monte Carlo figures of a greedy policy (and, where the MDP is known, exact ones)."""

    n_episodes: int
    seed: int
    mean_return: float
    std_return: float
    sem: float
    ci95_low: float
    ci95_high: float
    win_rate: float
    draw_rate: float
    loss_rate: float
    success_rate: float | None
    truncated_rate: float
    mean_length: float
    exact: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


def summarize(
    returns: np.ndarray, lengths: np.ndarray, truncated: np.ndarray, success: np.ndarray | None,
    seed: int,
) -> Evaluation:
    """The figures of an evaluation from its per-episode outcomes."""
    n = len(returns)
    std = float(returns.std(ddof=1)) if n > 1 else 0.0
    sem = std / math.sqrt(n)
    mean = float(returns.mean())
    return Evaluation(
        n_episodes=n,
        seed=seed,
        mean_return=mean,
        std_return=std,
        sem=sem,
        ci95_low=mean - 1.96 * sem,
        ci95_high=mean + 1.96 * sem,
        win_rate=float((returns > 0).mean()),
        draw_rate=float((returns == 0).mean()),
        loss_rate=float((returns < 0).mean()),
        success_rate=None if success is None else float(success.mean()),
        truncated_rate=float(truncated.mean()),
        mean_length=float(lengths.mean()),
    )


def greedy_actions(encoder: StateEncoder, policy: np.ndarray):
    """``obs -> action`` for a policy given per row; states without a row play action 0."""

    def act(obs: Any) -> int:
        row = encoder.find(obs)
        return 0 if row is None or row >= len(policy) else int(policy[row])

    return act


def evaluate(
    agent: TabularAgent,
    env: gym.Env,
    n_episodes: int = 10_000,
    *,
    seed: int = 1_000_003,
    max_steps: int = DEFAULT_STEP_CAP,
) -> Evaluation:
    """Play the agent's greedy policy for ``n_episodes`` on ``env`` (exploration off).

    The agent is not changed: its epsilon, Q-table and random stream stay as they were.
    """
    if n_episodes <= 0:
        raise UsageError(f"the number of evaluation episodes must be positive, not {n_episodes}")
    env = with_step_cap(env, max_steps)
    act = greedy_actions(agent.q_values.encoder, agent.q_values.greedy_policy())
    goal_rows = None if (mdp := known_mdp(env)) is None else mdp.goal_rows
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    truncated = np.zeros(n_episodes, dtype=bool)
    success = None if goal_rows is None else np.zeros(n_episodes, dtype=bool)
    obs, _ = env.reset(seed=seed)
    for episode in range(n_episodes):
        if episode:
            obs, _ = env.reset()
        total, steps, terminated, cut = 0.0, 0, False, False
        while not (terminated or cut):
            obs, reward, terminated, cut, _ = env.step(act(obs))
            total += float(reward)
            steps += 1
        returns[episode], lengths[episode] = total, steps
        truncated[episode] = cut and not terminated
        if success is not None:
            success[episode] = terminated and bool(goal_rows[agent.q_values.encoder.find(obs)])
    return summarize(returns, lengths, truncated, success, seed)
