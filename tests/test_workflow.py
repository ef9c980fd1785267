"""Reproducibility, reload and resume of runs, and the learning checks of the seed's workflow."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import tabrl
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.workflow import prepare_run, resume_run, train_run


def quiet(_: str) -> None:
    pass


def train_folder(tmp_path, name, env_id="FrozenLake-v1", env_kwargs=None, **given):
    settings = {"episodes": 600, "eval_episodes": 0, "engine": "python", "chunk_episodes": 200,
                "checkpoint_seconds": 0.0, **given}
    config = RunConfig.resolve(env_id, env_kwargs, **settings)
    return train_run(prepare_run(config, tmp_path / name), say=quiet)


def q_and_metrics(run):
    agent = run.load_agent()
    return agent.q_values.array, run.metrics().columns()


def test_same_seed_same_run_bit_for_bit(tmp_path):
    first, again = (q_and_metrics(train_folder(tmp_path, n, seed=7)) for n in ("a", "b"))
    other = q_and_metrics(train_folder(tmp_path, "c", seed=8))
    assert np.array_equal(first[0], again[0])
    for name, column in first[1].items():
        assert np.array_equal(column, again[1][name]), name
    assert not np.array_equal(first[0], other[0])


def test_reloaded_agent_plays_the_same_greedy_actions(tmp_path):
    run = train_folder(tmp_path, "a", env_id="Blackjack-v1", episodes=2000)
    agent = tabrl.load_agent(run.path)
    trained = agent.q_values.greedy_policy()
    env = gym.make("Blackjack-v1")
    agent.epsilon = 0
    for obs in [(s, d, u) for s in range(4, 22) for d in range(1, 11) for u in (0, 1)]:
        assert agent.get_action(obs) == trained[agent.q_values.row(obs)]  # ties included
    assert env.observation_space.contains((21, 10, 1))


@pytest.mark.parametrize("engine", ["python", "compiled"])
@pytest.mark.parametrize(("algo", "params", "extra"), [
    ("q-learning", {}, {}),
    ("q-learning", {}, {"learning_rate_schedule": {"kind": "exponential", "start": 0.5,
                                                   "end": 0.01, "rate": 0.995}}),
    ("double-q-learning", {}, {}),
    ("dyna-q", {"planning_steps": 3}, {}),
    ("tree-backup", {"n": 3}, {}),
    ("q-sigma", {"n": 2, "sigma": 0.5, "exploration": "softmax", "temperature": 0.5}, {}),
    ("sarsa", {"exploration": "softmax",
               "temperature_schedule": {"kind": "exponential", "start": 1.0, "end": 0.05,
                                        "rate": 0.99}}, {}),
])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, engine, algo, params,
                                                             extra, interrupted_run):
    """Q-table, metrics, the agent's own learning state and the greedy curve end bit for bit where
    they would have."""
    settings = dict(episodes=600, eval_episodes=0, engine=engine, chunk_episodes=200, seed=3,
                    algo=algo, algo_params=params, **extra)
    whole = train_folder(tmp_path, "whole", **settings)
    # No checkpoint on disk before the interruption: it must write the last chunk's from memory.
    config = RunConfig.resolve("FrozenLake-v1", **settings, checkpoint_seconds=1e9)
    cut = interrupted_run(config, tmp_path / "cut")  # in the third chunk
    assert not cut.finished and cut.episodes_done == 400 and cut.info["engine"] == engine
    resumed = resume_run(tmp_path / "cut", say=quiet)
    assert resumed.finished
    whole_agent, resumed_agent = whole.load_agent(), resumed.load_agent()
    assert np.array_equal(whole_agent.q_values.array, resumed_agent.q_values.array)
    whole_state, resumed_state = whole_agent.learning_state(), resumed_agent.learning_state()
    assert whole_state.keys() == resumed_state.keys()
    for name, array in whole_state.items():
        assert np.array_equal(array, resumed_state[name]), name
    for name, column in whole.metrics().columns().items():
        assert np.array_equal(column, resumed.metrics().columns()[name]), name
    assert np.array_equal(whole.curve().values, resumed.curve().values)
    assert len(resumed.curve()) == 100


def test_frozenlake_deterministic_reaches_the_goal_every_greedy_episode():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    training = tabrl.train(env, n_episodes=1000, seed=0, engine="python", learning_rate=0.5,
                           epsilon_decay=1 / 500, final_epsilon=0.05, discount_factor=0.95)
    evaluation = tabrl.evaluate(training.agent, env, n_episodes=200)
    assert evaluation.success_rate == 1.0
    assert evaluation.mean_length == 6


def test_a_run_folder_of_the_fixed_chunk_format_resumes_to_its_own_result(tmp_path):
    """Folders made before chunks were planned by steps: 100,000-episode chunks on the compiled
    engine, one metrics.npz; they resume on their fixed chunks and move their metrics over."""
    settings = dict(eval_episodes=0, engine="compiled", seed=2, chunk_episodes=100_000,
                    epsilon_decay_episodes=125_000)
    whole = train_folder(tmp_path, "whole", episodes=250_000, **settings)
    legacy = train_folder(tmp_path, "legacy", episodes=100_000, **settings)
    info = json.loads((legacy.path / "config.json").read_text())
    info["config"].pop("chunk_steps")
    info["config"].update(episodes=250_000, chunk_episodes=None)
    (legacy.path / "config.json").write_text(json.dumps(info))
    np.savez_compressed(legacy.path / "metrics.npz", **legacy.metrics().columns())
    shutil.rmtree(legacy.path / "metrics")
    arrays = dict(legacy.q_table())
    for name in ("chunks_done", "next_chunk", "metrics_id"):
        del arrays[name]
    np.savez_compressed(legacy.path / "q_table.npz", **arrays)
    assert len(load_run(legacy.path).metrics()) == 100_000
    resumed = resume_run(legacy.path, say=quiet)
    assert not (legacy.path / "metrics.npz").exists()
    assert np.array_equal(whole.load_agent().q_values.array, resumed.load_agent().q_values.array)
    for name, column in whole.metrics().columns().items():
        assert np.array_equal(column, resumed.metrics().columns()[name]), name


@pytest.mark.parametrize(("eval_episodes", "interrupted_in", "said"), [
    (100, "evaluate_run", "`tabrl evaluate {0}` and `tabrl plot {0}` finish it"),
    (100, "plot_run", "`tabrl plot {0}` finishes it"),
    (0, "plot_run", "`tabrl plot {0}` finishes it"),
])
def test_ctrl_c_after_training_says_what_finishes_the_run(tmp_path, monkeypatch, eval_episodes,
                                                          interrupted_in, said):
    """Ctrl-C while a trained run is evaluated or drawn: the agent is on disk, and one line
    names the commands that do the rest."""
    from tabrl.app import workflow

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, interrupted_in, interrupt)
    config = RunConfig.resolve("FrozenLake-v1", {}, episodes=200, eval_episodes=eval_episodes,
                               engine="python")
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train_run(prepare_run(config, tmp_path / "run"), say=lines.append)
    path = tmp_path / "run"
    assert lines == [f"interrupted: {path} holds the trained agent; " + said.format(path)]
    assert load_run(path).finished
