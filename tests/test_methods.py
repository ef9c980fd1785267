"""One definition per method: what each agent's spec declares reaches the command line, sweeps,
run folders, the compiled engine and the public API, with nothing listed twice."""

from __future__ import annotations

import gymnasium as gym
import pytest

import tabrl
from tabrl.agents import AGENTS, METHODS, OWN_PARAMS, QSigmaAgent, SarsaAgent
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.sweep import expand, parse_grid
from tabrl.compiled import kernels
from tabrl.compiled.bridge import ALGO_CODES, setting_of


def test_every_method_has_one_spec_a_kernel_and_a_public_class():
    assert list(METHODS) == list(AGENTS)
    assert all(AGENTS[name].spec is spec and spec.summary for name, spec in METHODS.items())
    assert set(ALGO_CODES) == set(METHODS)
    assert len(set(ALGO_CODES.values())) == len(ALGO_CODES)
    assert set(kernels.OWN_PARAM_ENTRIES) == set(OWN_PARAMS)
    for cls in AGENTS.values():
        assert getattr(tabrl, cls.__name__) is cls and cls.__name__ in tabrl.__all__


def test_own_parameters_are_keywords_attributes_settings_and_hyperparameters():
    env = gym.make("FrozenLake-v1")
    agent = QSigmaAgent(env, n=3, sigma=0.25)
    assert (agent.n, agent.sigma) == (3, 0.25)
    assert {"n": 3, "sigma": 0.25}.items() <= agent.hyperparameters().items()
    setting = setting_of(agent)
    assert (setting[kernels.N_STEPS], setting[kernels.SIGMA]) == (3, 0.25)
    assert QSigmaAgent(env).sigma == METHODS["q-sigma"].params[1].default == 0.5


def test_end_episode_and_the_tutorials_decay_epsilon_are_one_step_of_the_schedules():
    env = gym.make("FrozenLake-v1")
    one, other = (SarsaAgent(env, 0.1, 1.0, 0.25, 0.1, seed=0) for _ in range(2))
    one.promised = other.promised = (0, 1)
    one.end_episode()
    other.decay_epsilon()
    assert one.epsilon == other.epsilon == 0.75
    assert one.promised is other.promised is None


def test_the_command_line_takes_own_parameters_from_the_specs(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "FrozenLake-v1", "--algo", "q-sigma", "--n", "2", "--sigma",
                       "0.25", "--episodes", "50", "--eval-episodes", "0", "--engine", "python",
                       "--out", tmp_path / "run")
    assert result.code == 0, result.stderr
    assert load_run(tmp_path / "run").config.algo_params["sigma"] == 0.25
    assert "2 steps, sigma 0.25" in " ".join(result.stderr.split())


def test_a_bad_own_parameter_is_one_line_and_leaves_no_folder(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "FrozenLake-v1", "--algo", "q-sigma", "--sigma", "2",
                       "--episodes", "50", "--out", tmp_path / "run")
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sigma must be in [0, 1], not 2.0" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("algo", ["q-sigma", "tree-backup"])
def test_a_sweep_varies_own_parameters(algo):
    configs = expand(RunConfig.resolve("FrozenLake-v1", algo=algo), parse_grid(["n=1,3"]))
    assert [config.algo_params["n"] for config in configs] == [1, 3]
