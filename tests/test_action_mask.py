"""Action masks (``--action-mask``) on Taxi-v4: no masked action is ever played or learnt.

- python engine: a wrapper checks every action Taxi is sent against the mask of the state it
  steps from; no method under any exploration sends a masked one;
- compiled engine: a masked pair is never visited (its Q-value stays 0), and on a route that
  both engines take step for step (a fixed start, no exploration, masked actions valued highest)
  both make the same updates;
- the greedy policy (evaluated, exported, played by ``enjoy``) is never masked, after a resume
  too; a maskless environment is refused in one line.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tabrl.agents import AGENTS, make_agent
from tabrl.app.runs import load_run
from tabrl.compiled import run_compiled
from tabrl.exact.readers import mdp_of
from tabrl.loop import run_python
from tabrl.training import train

EXPLORATIONS = ("epsilon-greedy", "softmax", "ucb")
OWN = {"dyna-q": {"planning_steps": 2}, "monte-carlo": {"exploring_starts": True}}


class MaskRecorder(gym.Wrapper):
    """Counts the actions sent to the environment that the mask of its current state forbids
    (the state Taxi steps from: Monte Carlo ES sets it in place of the reset's)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps = self.masked = 0

    def step(self, action):
        base = self.env.unwrapped
        self.steps += 1
        self.masked += int(not base.action_mask(base.s)[action])
        return self.env.step(action)


def never_masked(agent) -> None:
    """No masked pair visited or moved, and the greedy policy allowed everywhere."""
    allowed = agent.q_values.allowed
    assert allowed is not None and not allowed.all()
    assert not agent.q_values.visits[~allowed].any()
    assert not agent.q_values.array[~allowed].any()
    policy = agent.q_values.greedy_policy()
    assert allowed[np.arange(len(policy)), policy].all()


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("algo", sorted(AGENTS))
def test_masked_python_training_never_takes_a_masked_action(algo, exploration):
    env = MaskRecorder(gym.make("Taxi-v4", max_episode_steps=50))
    agent = make_agent(env, algo, learning_rate=0.5, discount_factor=0.99, initial_epsilon=0.5,
                       final_epsilon=0.5, exploration=exploration, action_mask=True, seed=0,
                       **OWN.get(algo, {}))
    run_python(env, agent, 8, seed=0)
    assert env.steps >= 8 and env.masked == 0
    never_masked(agent)


def test_without_the_mask_taxi_is_sent_masked_actions():
    """The recorder sees what the mask prevents."""
    env = MaskRecorder(gym.make("Taxi-v4", max_episode_steps=50))
    run_python(env, make_agent(env, initial_epsilon=1.0, seed=0), 8, seed=0)
    assert env.masked > env.steps / 4


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("algo", sorted(AGENTS))
def test_masked_compiled_training_never_takes_a_masked_action(algo, exploration):
    training = train("Taxi-v4", algo=algo, exploration=exploration, n_episodes=50, seed=0,
                     learning_rate=0.5, discount_factor=0.99, initial_epsilon=0.5,
                     final_epsilon=0.5, action_mask=True, engine="compiled", **OWN.get(algo, {}))
    assert training.engine.name == "compiled"
    never_masked(training.agent)


#: Methods whose one episode is exact on both engines (no coin, no planning draw).
EXACT = ["q-learning", "sarsa", "expected-sarsa", "n-step-sarsa", "sarsa-lambda", "q-lambda",
         "tree-backup", "q-sigma", "monte-carlo"]


@pytest.mark.parametrize("algo", EXACT)
def test_both_engines_make_the_same_masked_updates(algo):
    """From Taxi's state 0 with exploration off, masked actions valued highest: each engine
    walks the same greedy route of allowed actions and makes the same updates."""
    env = gym.make("Taxi-v4", max_episode_steps=12)
    env.unwrapped.initial_state_distrib = np.eye(500)[0]  # both engines start in state 0

    def agent():
        made = make_agent(env, algo, learning_rate=0.5, discount_factor=0.9, initial_epsilon=0.0,
                          final_epsilon=0.0, action_mask=True, seed=0)
        made.q_values.array[:] = np.random.default_rng(1).uniform(0.0, 0.5, (500, 6))
        made.q_values.array[~made.q_values.allowed] = 9.0  # the unmasked greedy choice
        return made

    python, compiled = agent(), agent()
    python_log = run_python(env, python, 1, seed=0)
    compiled_log = run_compiled(mdp_of(env), compiled, 1, seed=0, max_steps=100)
    assert compiled_log.lengths[0] == python_log.lengths[0]
    assert compiled_log.returns[0] == python_log.returns[0]
    assert np.array_equal(compiled.q_values.visits, python.q_values.visits)
    assert python.q_values.visits.sum() > 1
    np.testing.assert_allclose(compiled.q_values.array, python.q_values.array, rtol=0, atol=1e-12)
    assert not python.q_values.visits[~python.q_values.allowed].any()


def test_the_tutorial_api_takes_a_mask_per_call():
    """``get_action(obs, mask=...)`` without ``action_mask=True``: the given mask is obeyed."""
    env = gym.make("Taxi-v4")
    agent = make_agent(env, initial_epsilon=1.0, seed=0)
    obs, info = env.reset(seed=0)
    chosen = {agent.get_action(obs, mask=info["action_mask"]) for _ in range(200)}
    assert chosen == set(np.flatnonzero(info["action_mask"]).tolist())
    assert agent.get_action(obs) in range(6)  # the tutorial's call, unchanged


def test_a_masked_run_folder_keeps_its_mask(tabrl_cli, tmp_path):
    path = tmp_path / "taxi"
    result = tabrl_cli("train", "Taxi-v4", "--action-mask", "--episodes", "300", "--out", path,
                       "--eval-episodes", "20", "--quiet")
    assert result.code == 0, result.stderr
    assert load_run(path).config.action_mask is True
    assert tabrl_cli("train", "--resume", path, "--episodes", "400", "--quiet").code == 0
    agent = load_run(path).load_agent()
    assert agent.q_values.visits.sum() > 0
    never_masked(agent)


def test_a_maskless_environment_is_refused_in_one_line(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "FrozenLake-v1", "--action-mask", "--out", tmp_path / "lake")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "gives no action mask" in result.stderr
    assert not (tmp_path / "lake").exists()
