"""``tabrl export`` and ``tabrl.load_policy``: the greedy policy outside tabrl, and back."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import tabrl
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.workflow import prepare_run, train_run
from tabrl.errors import RunFolderError, UsageError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short Blackjack run (tuple observations) and a FrozenLake run (integer ones)."""
    made = {}
    for env_id, kwargs, episodes in [("Blackjack-v1", {"sab": False}, 3000),
                                     ("FrozenLake-v1", {}, 1500)]:
        config = RunConfig.resolve(env_id, kwargs, episodes=episodes, eval_episodes=0,
                                   engine="python", learning_rate=0.1)
        path = tmp_path_factory.mktemp(env_id) / "run"
        train_run(prepare_run(config, path), say=lambda _: None)
        made[env_id] = load_run(path)
    return made


@pytest.mark.parametrize("env_id", ["Blackjack-v1", "FrozenLake-v1"])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exported_policy_reads_back_as_the_greedy_policy(tabrl_cli, runs, env_id, fmt):
    run = runs[env_id]
    result = tabrl_cli("export", run.path, "--format", fmt)
    assert result.code == 0, result.stderr
    policy = tabrl.load_policy(run.path / f"policy.{fmt}")
    table = run.load_agent().q_values
    greedy, visited = table.greedy_policy(), np.flatnonzero(table.visited())
    assert len(policy) == len(visited) > 0
    assert f"{len(visited):,} states" in result.stdout
    for row in visited:
        obs = table.encoder.decode(int(row))
        assert policy.action(obs) == policy[obs] == greedy[row]
        assert np.array_equal(policy.q_values[obs if np.isscalar(obs) else tuple(obs)],
                              table.array[row])  # floats written so that they read back exactly
    example = next(iter(policy))
    assert isinstance(example, tuple if env_id == "Blackjack-v1" else int)


def test_a_loaded_policy_plays_the_real_environment_without_tabrl(runs):
    run = runs["FrozenLake-v1"]
    path = run.path / "policy.json"
    from tabrl.app.export import export_run

    export_run(run, "json", path)
    policy = tabrl.load_policy(path)
    assert policy.env["env_id"] == "FrozenLake-v1"
    env = gym.make("FrozenLake-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(100):  # numpy observations are looked up as the integers they are
        obs, _, terminated, truncated, _ = env.step(policy.action(obs))
        if terminated or truncated:
            break
    assert terminated or truncated


def test_export_refuses_bad_formats_and_names(tabrl_cli, runs, tmp_path):
    run = runs["FrozenLake-v1"]
    for args, fragment in [(["--format", "xml"], "use csv or json"),
                           (["--out", tmp_path / "p.txt"], "does not end in .csv"),
                           (["--format", "json", "--out", tmp_path / "p.csv"], "end in .json")]:
        result = tabrl_cli("export", run.path, *args)
        assert result.code == 2 and fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    assert tabrl_cli("export", run.path, "--out", tmp_path / "p.json").code == 0
    assert json.loads((tmp_path / "p.json").read_text())["format"] == "tabrl-policy"


@pytest.mark.parametrize("name, text, fragment", [
    ("p.json", "{not json", "is not valid JSON"),
    ("p.json", '{"format": "other"}', "is not a tabrl policy"),
    ("p.json", '{"format": "tabrl-policy", "version": 1, "n_actions": 2, "states": '
               '[{"observation": 3, "action": 2, "q_values": [0, 1]}]}', "not one of 0..1"),
    ("p.json", '{"format": "tabrl-policy", "version": 1, "n_actions": 2, "states": '
               '[{"observation": 3, "action": 1, "q_values": [0]}]}', "needs 2 action values"),
    ("p.json", '{"format": "tabrl-policy", "version": 1, "n_actions": 2, "states": '
               '[{"observation": "x", "action": 1, "q_values": [0, 1]}]}', "integers"),
    ("p.csv", "observation,action,q_0\n1,0,0.5\n1,0,0.5\n", "appears twice"),
    ("p.csv", "state,action,q_0\n1,0,0.5\n", "has the header state,action,q_0"),
    ("p.csv", "observation,action,q_0\n1,0,zero\n", "line 2"),
    ("p.csv", "", "is empty"),
    ("p.txt", "", "neither .csv nor .json"),
])
def test_load_policy_checks_every_field(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises((RunFolderError, UsageError)) as error:
        tabrl.load_policy(path)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_an_unvisited_state_is_a_one_line_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("observation_0,observation_1,action,q_0,q_1\n1,2,1,0.0,0.5\n")
    policy = tabrl.load_policy(path)
    assert policy.action((1, 2)) == 1 and policy.action(np.array([1, 2])) == 1
    with pytest.raises(UsageError, match="never visited"):
        policy.action((2, 1))
    path.write_text("observation_0,action,q_0,q_1\n7,0,0.5,0.25\n")  # a tuple of one part
    assert tabrl.load_policy(path).action((7,)) == 0
