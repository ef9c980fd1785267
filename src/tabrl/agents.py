"""Tabular agents with the interface of the Gymnasium tutorial.

``agent.get_action(obs)`` picks an action epsilon-greedily, ``agent.update(obs, action, reward,
terminated, next_obs)`` applies one temporal-difference update and returns its TD error,
``agent.decay_epsilon()`` moves epsilon one episode along its schedule, ``agent.q_values[obs]`` are the
action values of a state and ``agent.training_error`` lists every TD error. Each update rule is a small
subclass that says only how it bootstraps from the next state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from tabrl.errors import UsageError
from tabrl.qtable import QTable
from tabrl.schedules import Schedule
from tabrl.spaces import encoder_for, n_actions_of


def check_hyperparameters(
    learning_rate: float, discount_factor: float, initial_epsilon: float, final_epsilon: float
) -> None:
    """One-line errors for hyperparameters outside the range where the update rule is sound."""
    if not 0 < learning_rate <= 1:
        raise UsageError(f"the learning rate must be in (0, 1], not {learning_rate}")
    if not 0 <= discount_factor <= 1:
        raise UsageError(f"the discount factor must be in [0, 1], not {discount_factor}")
    for name, value in (("start", initial_epsilon), ("floor", final_epsilon)):
        if not 0 <= value <= 1:
            raise UsageError(f"the epsilon {name} must be in [0, 1], not {value}")
    if final_epsilon > initial_epsilon:
        raise UsageError(
            f"the epsilon floor {final_epsilon} is above its start {initial_epsilon}: "
            "the floor must be at most the start"
        )


class TabularAgent:
    """Epsilon-greedy control over a Q-table; subclasses define the TD target."""

    algo: ClassVar[str] = ""

    def __init__(
        self,
        env: gym.Env,
        learning_rate: float = 0.01,
        initial_epsilon: float = 1.0,
        epsilon_decay: float = 0.0,
        final_epsilon: float = 0.1,
        discount_factor: float = 0.95,
        *,
        seed: int | None = None,
        epsilon_schedule: Schedule | None = None,
        learning_rate_schedule: Schedule | None = None,
    ) -> None:
        check_hyperparameters(learning_rate, discount_factor, initial_epsilon, final_epsilon)
        self.env = env
        self.n_actions = n_actions_of(env.action_space)
        self.q_values = QTable(encoder_for(env.observation_space), self.n_actions)
        self.lr = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = initial_epsilon
        self.final_epsilon = final_epsilon
        self.epsilon_decay = epsilon_decay
        self.epsilon_schedule = epsilon_schedule or Schedule(
            "linear", initial_epsilon, final_epsilon, epsilon_decay
        )
        self.learning_rate_schedule = learning_rate_schedule or Schedule.constant(learning_rate)
        self._lr_by_visits = self.learning_rate_schedule.kind == "visits"
        self.training_error: list[float] = []
        self.rng = np.random.default_rng(seed)

    # --- acting -----------------------------------------------------------------------------------
    def get_action(self, obs: Any) -> int:
        """Explore with probability epsilon, else a greedy action (ties broken at random)."""
        row = self.q_values.row(obs)
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return self.greedy_action(row)

    def greedy_action(self, row: int) -> int:
        """An action of highest value in ``row``, chosen at random among equals.

        A fresh table is all zeros: always taking action 0 there would bias early exploration.
        """
        values = self.q_values.array[row].tolist()  # plain floats: faster than numpy for a row
        best = max(values)
        ties = [action for action, value in enumerate(values) if value == best]
        return ties[0] if len(ties) == 1 else ties[int(self.rng.integers(len(ties)))]

    def decay_epsilon(self) -> None:
        """Move epsilon one episode along its schedule (linear by default, with a floor)."""
        self.epsilon = self.epsilon_schedule.next(self.epsilon)

    # --- learning ---------------------------------------------------------------------------------
    def step_size(self, row: int, action: int) -> float:
        """The learning rate of this update: constant, or ``1/n^w`` of the pair's visit count."""
        if self._lr_by_visits:
            return self.learning_rate_schedule.visit_value(int(self.q_values.visits[row, action]))
        return self.lr

    def bootstrap(self, next_row: int) -> float:
        """The estimate of the next state's value that the TD target uses."""
        raise NotImplementedError

    def update(
        self,
        obs: Any,
        action: int,
        reward: float,
        terminated: bool,
        next_obs: Any,
        truncated: bool = False,
    ) -> float:
        """One TD update of ``Q(obs, action)``; returns the TD error.

        A terminal transition bootstraps zero (no reward follows); a truncated one (time limit)
        still bootstraps, since the state itself had a future.
        """
        row, next_row = self.q_values.row(obs), self.q_values.row(next_obs)
        future = 0.0 if terminated else self.discount_factor * self.bootstrap(next_row)
        q = self.q_values.array
        td_error = reward + future - float(q[row, action])
        self.q_values.visits[row, action] += 1
        q[row, action] += self.step_size(row, action) * td_error
        self.training_error.append(td_error)
        return td_error

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that defines this agent's learning, for the run's config."""
        return {
            "algo": self.algo,
            "learning_rate": self.lr,
            "discount_factor": self.discount_factor,
            "epsilon_schedule": self.epsilon_schedule.to_dict(),
            "learning_rate_schedule": self.learning_rate_schedule.to_dict(),
        }


class QLearningAgent(TabularAgent):
    """Q-learning (Watkins, 1989): bootstrap from the best next action, whatever is played.

    ``Q(s,a) += lr * (r + gamma * max_a' Q(s',a') - Q(s,a))``
    """

    algo = "q-learning"

    def bootstrap(self, next_row: int) -> float:
        return max(self.q_values.array[next_row].tolist())


AGENTS: dict[str, type[TabularAgent]] = {cls.algo: cls for cls in (QLearningAgent,)}


def agent_class(algo: str) -> type[TabularAgent]:
    """The agent class of an algorithm name, or a one-line error listing the known ones."""
    try:
        return AGENTS[algo]
    except KeyError:
        raise UsageError(f"unknown algorithm {algo!r}: use one of {', '.join(AGENTS)}") from None
