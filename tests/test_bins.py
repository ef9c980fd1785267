"""Continuous observations cut into bins: the spaces, the errors, a whole run, and learning."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from tabrl.app.runs import RunConfig, load_run
from tabrl.envs import make_env
from tabrl.errors import UsageError
from tabrl.evaluate import evaluate
from tabrl.plots.policies import _plotted_bins
from tabrl.training import train

CART_BOUNDS = [[-2.4, 2.4], [-3.0, 3.0], [-0.21, 0.21], [-0.87, 0.87]]


def test_bins_make_a_discrete_state_of_the_grid_cell():
    env = make_env("MountainCar-v0", bins=10)
    assert env.observation_space == gym.spaces.Discrete(100)
    obs, _ = env.reset(seed=42)
    assert obs == 45  # position -0.445 in bin 4 of 10, velocity 0 in bin 5: 4 * 10 + 5
    env = make_env("CartPole-v1", bins=[1, 1, 6, 12], obs_bounds=CART_BOUNDS)
    assert env.observation_space == gym.spaces.Discrete(72)
    assert _plotted_bins(env) is not None  # angle x angular velocity: a picture of two axes
    assert _plotted_bins(make_env("CartPole-v1", bins=3, obs_bounds=CART_BOUNDS)) is None


def test_an_environments_bins_are_shipped_and_recorded():
    config = RunConfig.resolve("CartPole-v1")
    assert config.bins == [1, 1, 6, 12] and config.obs_bounds == CART_BOUNDS
    assert config.make_env().observation_space == gym.spaces.Discrete(72)
    # the environment's settings go over a method's generic default (100,000 episodes), not
    # over its own keywords (n-step SARSA's n)
    sarsa = RunConfig.resolve("CartPole-v1", algo="n-step-sarsa")
    assert (sarsa.episodes, sarsa.bins, sarsa.algo_params) == (2000, [1, 1, 6, 12], {"n": 4})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bins": 6}, "unbounded"),  # CartPole's velocities
        ({"bins": [2, 2], "obs_bounds": CART_BOUNDS}, "one per dimension"),
        ({"bins": 6, "obs_bounds": [[0.0, 1.0]]}, "low:high"),
        ({"bins": 6, "obs_bounds": [[1.0, 0.0]] * 4}, "low < high"),
        ({"obs_bounds": CART_BOUNDS}, "only apply with --bins"),
    ],
)
def test_bad_bins_are_refused_in_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_env("CartPole-v1", **kwargs)


def test_bins_of_a_discrete_space_are_refused():
    with pytest.raises(UsageError, match="already discrete"):
        make_env("FrozenLake-v1", bins=4)
    with pytest.raises(UsageError, match="--bins"):
        make_env("Acrobot-v1")  # continuous, no bins given: the error says how


def test_a_binned_run_is_saved_reloaded_and_evaluated_again(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    result = tabrl_cli("train", "MountainCar-v0", "--bins", "8,6", "--episodes", "20",
                       "--eval-episodes", "5", "--out", out)
    assert result.code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["bins"] == [8, 6]
    assert "python engine" in result.stderr
    assert load_run(out).load_agent().q_values.array.shape == (48, 3)
    assert tabrl_cli("evaluate", out, "--episodes", "3").code == 0
    assert (out / "policy.png").stat().st_size > 10_000


def test_continuous_dynamics_cannot_be_solved(tabrl_cli, tmp_path):
    result = tabrl_cli("solve", "CartPole-v1", "--out", tmp_path / "s")
    assert result.code == 2 and "moves continuously" in result.stderr
    assert not (tmp_path / "s").exists()


def test_q_learning_balances_the_pole_from_bins():
    """800 episodes with the shipped bins: the greedy policy holds the pole far longer than
    the first, random, episodes did (about 21 steps)."""
    config = RunConfig.resolve("CartPole-v1", episodes=800, learning_rate=0.2, seed=1)
    env = config.make_env()
    agent = config.make_agent(env)
    training = train(env, agent, config.episodes, seed=1, engine="python")
    assert training.log.returns[:50].mean() < 30
    assert evaluate(agent, training.env, 20, seed=99).mean_return > 200
