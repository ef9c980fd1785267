"""Which engine runs: compiled where the MDP is known, python elsewhere, and always the reason."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.wrappers import TransformReward

import tabrl
from tabrl.errors import NotCompilableError


def test_auto_picks_compiled_for_known_mdps():
    for env_id in ("FrozenLake-v1", "Blackjack-v1", "Taxi-v4", "CliffWalking-v1",
                   "tabrl/MaximizationBias-v0"):
        training = tabrl.train(env_id, n_episodes=50, learning_rate=0.1)
        assert training.engine.name == "compiled", env_id


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: TransformReward(gym.make("FrozenLake-v1"), lambda r: 2 * r), "TransformReward"),
        (lambda: gym.make("Taxi-v4", fickle_passenger=True), "fickle_passenger"),
    ],
)
def test_unknown_dynamics_fall_back_to_python_with_the_reason(make, reason):
    training = tabrl.train(make(), n_episodes=20, learning_rate=0.1)
    assert training.engine.name == "python"
    assert reason in training.engine.reason
    with pytest.raises(NotCompilableError, match=reason):
        tabrl.train(make(), n_episodes=20, engine="compiled", learning_rate=0.1)


def test_a_wrapped_reward_is_really_learned_by_the_python_engine():
    env = TransformReward(gym.make("FrozenLake-v1", is_slippery=False), lambda r: 10 * r)
    training = tabrl.train(env, n_episodes=300, learning_rate=0.5, epsilon_decay=1 / 150,
                           final_epsilon=0.05, discount_factor=0.9)
    assert training.agent.q_values.array.max() > 1.5  # rewards of 10 reached the table
