"""Tuning with a real Optuna study on FrozenLake, kept in SQLite; best.yml read back by train."""

from __future__ import annotations

import json

import optuna
import yaml

from tabrl.curve import CURVE_POINTS


def test_a_study_improves_on_its_first_trial_resumes_and_its_best_settings_train_again(
        tabrl_cli, tmp_path):
    folder = tmp_path / "tune"
    first = tabrl_cli("tune", "FrozenLake-v1", "--trials", "4", "--seeds", "2",
                      "--out", folder)
    assert first.code == 0, first.stderr
    assert "trial 3:" in first.stderr and "over seeds 0-1" in first.stdout
    storage = f"sqlite:///{folder / 'study.db'}"
    study = optuna.load_study(study_name="FrozenLake-v1-q-learning", storage=storage)
    values = [t.value for t in study.trials]
    assert len(values) == 4 and study.best_value > values[0]  # TPE seed 0: a poor first draw
    assert study.best_value <= 0.7442  # never above the optimum: the values are exact
    assert (folder / "history.png").is_file() and (folder / "importance.png").is_file()

    again = tabrl_cli("tune", "FrozenLake-v1", "--trials", "2", "--seeds", "2", "--out", folder)
    assert again.code == 0, again.stderr
    study = optuna.load_study(study_name="FrozenLake-v1-q-learning", storage=storage)
    assert len(study.trials) == 6 and [t.value for t in study.trials[:4]] == values
    assert study.trials[4].params != study.trials[0].params  # the sampler moved on

    other = tabrl_cli("tune", "FrozenLake-v1", "--algo", "sarsa", "--trials", "1",
                      "--study", "FrozenLake-v1-q-learning", "--out", folder)
    assert other.code == 2 and "tunes q-learning on FrozenLake-v1" in other.stderr
    study = optuna.load_study(study_name="FrozenLake-v1-q-learning", storage=storage)
    assert len(study.trials) == 6  # untouched

    best = yaml.safe_load((folder / "best.yml").read_text())
    assert set(best) <= {"episodes", "learning_rate", "learning_rate_exponent", "epsilon_end",
                         "epsilon_decay_episodes"}
    run = tabrl_cli("train", "FrozenLake-v1", "--hyperparams", folder / "best.yml",
                    "--eval-episodes", "100", "--out", tmp_path / "run", "-q")
    assert run.code == 0, run.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert all(config[name] == value for name, value in best.items())
    # seed 0 of the best trial, trained again from best.yml: the same exact greedy value, the
    # last point of the learning curve the trial reported for seed 0 (steps 0-99; seed 1: 100-199)
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    reported = study.best_trial.intermediate_values
    assert sorted(reported) == list(range(2 * CURVE_POINTS))
    assert evaluation["exact"]["policy_value"] == reported[CURVE_POINTS - 1]


def test_hyperparams_files_give_settings_that_options_override(tabrl_cli, tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text("episodes: 300\nlearning_rate: 0.3\nalgo_params: {n: 2}\n")
    run = tabrl_cli("train", "CliffWalking-v1", "--algo", "n-step-sarsa", "--hyperparams",
                    settings, "--learning-rate", "0.4", "--eval-episodes", "0",
                    "--out", tmp_path / "run", "-q")
    assert run.code == 0, run.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (config["episodes"], config["learning_rate"]) == (300, 0.4)
    assert config["algo_params"]["n"] == 2
    assert config["algo_params"]["exploration"] == "softmax"  # the shipped rest is kept
    settings.write_text("episodes: 300\nlearning_rat: 0.3\n")
    bad = tabrl_cli("train", "CliffWalking-v1", "--hyperparams", settings,
                    "--out", tmp_path / "bad")
    assert bad.code == 2 and "learning_rat" in bad.stderr and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    missing = tabrl_cli("sweep", "CliffWalking-v1", "--hyperparams", tmp_path / "no.yml",
                        "--out", tmp_path / "sw")
    assert missing.code == 2 and "does not exist" in missing.stderr
    settings.write_text("episodes: [300\n")
    broken = tabrl_cli("train", "CliffWalking-v1", "--hyperparams", settings)
    assert broken.code == 1 and "YAML" in broken.stderr


def test_bad_tuning_input_is_one_line_and_leaves_no_folder(tabrl_cli, tmp_path):
    bad = tabrl_cli("tune", "FrozenLake-v1", "--storage", "nosuchdb://x", "--out", tmp_path / "t")
    assert bad.code == 2 and "cannot open the study storage" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and not (tmp_path / "t").exists()
    none = tabrl_cli("tune", "FrozenLake-v1", "--trials", "0", "--out", tmp_path / "t")
    assert none.code == 2 and not (tmp_path / "t").exists()


def test_sampled_settings_apply_as_grid_values_and_best_yml_keeps_the_base():
    from tabrl.app.runs import RunConfig
    from tabrl.app.tune import apply_settings, best_settings, sample_config, search_space

    shipped = RunConfig.resolve("FrozenLake-v1")
    base = RunConfig.resolve("FrozenLake-v1", discount=0.9)  # as from --hyperparams
    config = apply_settings(base, {"learning_rate": 0.3, "epsilon_decay_fraction": 0.25})
    assert best_settings(config, shipped) == {
        "learning_rate": 0.3, "discount": 0.9, "epsilon_decay_episodes": 25_000}
    # the softmax methods search the temperature, which replaces the shipped schedule
    cliff = RunConfig.resolve("CliffWalking-v1", algo="n-step-sarsa")
    space = search_space("n-step-sarsa")
    params = {"learning_rate": 0.2, "learning_rate_exponent": 0.0, "epsilon_end": 0.01,
              "epsilon_decay_fraction": 0.5, "episodes": cliff.episodes, "temperature": 2.0,
              "n": 3}
    sampled = sample_config(optuna.trial.FixedTrial(params), cliff, space)
    assert sampled.algo_params["temperature"] == 2.0 and sampled.algo_params["n"] == 3
    assert "temperature_schedule" not in sampled.algo_params
    # epsilon-greedy methods are never asked for a temperature (a FixedTrial would refuse)
    del params["temperature"], params["n"]
    params["episodes"] = shipped.episodes
    greedy = sample_config(optuna.trial.FixedTrial(params), shipped, search_space("q-learning"))
    assert "temperature" not in greedy.algo_params and greedy.learning_rate == 0.2
