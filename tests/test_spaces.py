"""Observations to Q-table rows."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from tabrl.errors import UsageError
from tabrl.qtable import QTable
from tabrl.spaces import StateEncoder, encoder_for


def test_discrete_with_start():
    encoder = encoder_for(spaces.Discrete(5, start=-2))
    assert encoder.n_states == 5
    assert [encoder.encode(obs) for obs in (-2, 0, 2)] == [0, 2, 4]
    assert encoder.decode(4) == 2


def test_blackjack_tuple_is_mixed_radix():
    encoder = encoder_for(gym.make("Blackjack-v1").observation_space)
    assert encoder.n_states == 32 * 11 * 2
    rows = {encoder.encode((s, d, u)) for s in range(32) for d in range(11) for u in range(2)}
    assert rows == set(range(704))
    assert encoder.decode(encoder.encode((21, 1, 1))) == (21, 1, 1)


def test_multidiscrete():
    encoder = encoder_for(spaces.MultiDiscrete([3, 4]))
    assert encoder.encode(np.array([2, 3])) == 11
    assert encoder.decode(11) == (2, 3)


def test_lazy_table_grows_on_first_sight():
    encoder = StateEncoder((10**6, 10**6), (0, 0), scalar=False)
    assert encoder.lazy
    table = QTable(encoder, 2)
    table[(5, 7)][1] = 1.0
    for i in range(3000):
        table[(i, i)]
    assert table[(5, 7)][1] == 1.0
    assert encoder.n_rows == 3001
    assert encoder.find((9, 10)) is None


def test_continuous_space_is_refused_with_advice():
    with pytest.raises(UsageError, match="continuous.*discret"):
        encoder_for(gym.make("CartPole-v1").observation_space)
