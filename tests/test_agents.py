"""The Q-learning update and epsilon-greedy action selection, on hand-made transitions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tabrl import QLearningAgent, Schedule
from tabrl.errors import UsageError


@pytest.fixture
def lake():
    return gym.make("FrozenLake-v1", is_slippery=False)


def make_agent(env, **kwargs):
    settings = dict(learning_rate=0.5, initial_epsilon=1.0, epsilon_decay=0.25,
                    final_epsilon=0.1, discount_factor=0.9, seed=0)
    return QLearningAgent(env, **{**settings, **kwargs})


def test_non_terminal_update_bootstraps_from_the_best_next_action(lake):
    agent = make_agent(lake)
    agent.q_values[5][:] = [0.0, 2.0, -1.0, 1.0]
    td = agent.update(4, 2, 1.0, False, 5)
    assert td == pytest.approx(1.0 + 0.9 * 2.0)
    assert agent.q_values[4][2] == pytest.approx(0.5 * 2.8)
    assert agent.training_error == [pytest.approx(2.8)]
    assert agent.q_values.visits[4, 2] == 1


def test_terminal_update_bootstraps_zero(lake):
    agent = make_agent(lake)
    agent.q_values[15][:] = 10.0
    agent.q_values[14][2] = 0.4
    td = agent.update(14, 2, 1.0, True, 15)
    assert td == pytest.approx(0.6)
    assert agent.q_values[14][2] == pytest.approx(0.4 + 0.5 * 0.6)


def test_truncated_update_still_bootstraps(lake):
    agent = make_agent(lake)
    agent.q_values[1][:] = [0.0, 0.0, 3.0, 0.0]
    td = agent.update(0, 2, 0.0, False, 1, truncated=True)
    assert td == pytest.approx(0.9 * 3.0)


def test_tuple_observations_index_the_same_row_as_the_tutorial_dict():
    env = gym.make("Blackjack-v1")
    agent = make_agent(env)
    obs = (14, 10, 0)
    agent.q_values[obs][1] = 0.25
    assert agent.q_values.array[(14 * 11 + 10) * 2 + 0, 1] == 0.25
    assert agent.q_values.array.shape == (704, 2)
    agent.update(obs, 1, 0.0, False, (20, 10, 0))
    assert obs in agent.q_values and len(agent.q_values) == 1
    assert dict(agent.q_values.items())[obs][1] == pytest.approx(0.125)


def test_epsilon_decays_linearly_to_its_floor(lake):
    agent = make_agent(lake)
    seen = []
    for _ in range(6):
        seen.append(agent.epsilon)
        agent.decay_epsilon()
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.1, 0.1])


def test_greedy_ties_are_broken_at_random_while_exploring_but_a_clear_best_always_wins(lake):
    agent = make_agent(lake, initial_epsilon=1e-12, final_epsilon=1e-12)
    actions = {agent.get_action(0) for _ in range(200)}
    assert actions == {0, 1, 2, 3}
    agent.q_values[0][3] = 0.1
    assert {agent.get_action(0) for _ in range(50)} == {3}


@pytest.mark.parametrize("exploration", ["epsilon-greedy", "softmax", "ucb"])
def test_exploration_off_plays_the_saved_greedy_policy_ties_to_the_lowest_action(lake,
                                                                                 exploration):
    agent = make_agent(lake, exploration=exploration)
    agent.q_values[0][:] = [0.0, 0.5, 0.5, 0.2]
    agent.epsilon = 0
    state = agent.rng.bit_generator.state
    assert {agent.get_action(0) for _ in range(50)} == {1} == {agent.q_values.greedy_policy()[0]}
    assert agent.policy_value(0) == 0.5
    assert agent.rng.bit_generator.state == state  # the greedy policy draws nothing


def test_exploration_rate_matches_epsilon(lake):
    agent = make_agent(lake, initial_epsilon=0.3, final_epsilon=0.3)
    agent.q_values[0][:] = [1.0, 0.0, 0.0, 0.0]
    n = 20_000
    share = np.mean([agent.get_action(0) != 0 for _ in range(n)])
    expected = 0.3 * 3 / 4
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_visit_count_learning_rate(lake):
    agent = make_agent(lake, learning_rate_schedule=Schedule.visits(1.0, 1.0))
    for _ in range(4):
        agent.update(0, 1, 1.0, True, 4)
    # 1/n step sizes make Q the running mean of the targets: exactly 1.
    assert agent.q_values[0][1] == pytest.approx(1.0)


def test_learning_rate_decays_per_episode(lake):
    agent = make_agent(lake, learning_rate_schedule=Schedule.linear(0.5, 0.1, 4))
    agent.update(0, 1, 1.0, True, 4)
    assert agent.q_values[0][1] == pytest.approx(0.5)  # the schedule's start
    agent.decay_epsilon()
    assert agent.lr == pytest.approx(0.4)
    agent.update(0, 1, 1.0, True, 4)
    assert agent.q_values[0][1] == pytest.approx(0.5 + 0.4 * 0.5)
    for _ in range(10):
        agent.decay_epsilon()
    assert agent.lr == pytest.approx(0.1)  # the floor
    assert agent.learning_state()["rate"] == pytest.approx(0.1)  # saved with checkpoints
    with pytest.raises(UsageError, match="learning rate"):
        make_agent(lake, learning_rate_schedule=Schedule.exponential(1.5, 0.1, 0.9))


def test_per_state_epsilon_decays_with_the_states_visits(lake):
    """Under ``Schedule.visits(1, 1, 0.05)`` a state visited n times explores with 1/(n + 1)."""
    agent = make_agent(lake, epsilon_schedule=Schedule.visits(1.0, 1.0, 0.05))
    agent.q_values[0][:] = [1.0, 0.0, 0.0, 0.0]
    agent.q_values.visits[0] = [2, 1, 0, 0]  # three updates so far: epsilon 1/4
    assert agent.epsilon_at(0) == 0.25 and agent.epsilon_at(1) == 1.0
    assert agent.exploration.probabilities(agent, 0) == pytest.approx(
        [0.75 + 0.25 / 4, 0.25 / 4, 0.25 / 4, 0.25 / 4])
    agent.q_values.visits[0] = [100, 0, 0, 0]
    assert agent.epsilon_at(0) == 0.05  # the floor
    agent.decay_epsilon()
    assert agent.epsilon_at(1) == 1.0  # episodes do not move it
    agent.epsilon = 0.0  # exploration off: greedy whatever the schedule
    assert agent.epsilon_at(1) == 0.0


def test_per_state_temperature(lake):
    agent = make_agent(lake, exploration="softmax",
                       temperature_schedule=Schedule.visits(2.0, 0.5, 0.1))
    agent.q_values[3][:] = [1.0, 0.0, 0.0, 0.0]
    agent.q_values.visits[3] = [1, 1, 1, 0]  # n(s) = 3: temperature 2 / 4^0.5 = 1
    weights = np.exp([1.0, 0.0, 0.0, 0.0])
    assert agent.temperature_at(3) == 1.0
    assert agent.exploration.probabilities(agent, 3) == pytest.approx(weights / weights.sum())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": 0.0}, "learning rate"),
        ({"learning_rate": 1.5}, "learning rate"),
        ({"discount_factor": 1.1}, "discount"),
        ({"final_epsilon": 0.5, "initial_epsilon": 0.2}, "floor"),
    ],
)
def test_bad_hyperparameters_are_refused(lake, kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_agent(lake, **kwargs)


def test_schedules():
    linear = Schedule.linear(1.0, 0.1, 4)
    assert [linear.at(k) for k in range(6)] == pytest.approx([1.0, 0.775, 0.55, 0.325, 0.1, 0.1])
    exponential = Schedule.exponential(1.0, 0.2, 0.5)
    assert [exponential.at(k) for k in range(4)] == pytest.approx([1.0, 0.5, 0.25, 0.2])
    value = 1.0
    for _ in range(3):
        value = exponential.next(value)
    assert value == pytest.approx(exponential.at(3))
    assert Schedule.visits(1.0, 0.5).visit_value(4) == pytest.approx(0.5)
    assert Schedule.visits(1.0, 0.5).in_state(1.0, 3) == pytest.approx(0.5)  # 4th visit
    assert Schedule.visits(1.0, 0.5).in_state(0.2, 3) == 0.2  # never above the agent's value
    assert linear.in_state(0.7, 3) == 0.7  # per-episode kinds ignore visits
    assert Schedule.constant(0.3).next(0.3) == 0.3
    with pytest.raises(UsageError):
        Schedule.linear(0.1, 0.5, 10)
