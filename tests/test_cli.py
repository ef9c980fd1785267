"""The command line end to end, on real environments, and its one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tabrl.app.runs import load_run


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("Blackjack-v1", ["--episodes", "3000"]),
        ("FrozenLake-v1", ["--episodes", "300", "--env-kwargs", "map_name=8x8,is_slippery=false"]),
        ("Taxi-v4", ["--episodes", "200"]),
        ("CliffWalking-v1", ["--episodes", "100"]),
    ],
)
def test_train_writes_a_complete_run_folder(tabrl_cli, tmp_path, env_id, extra):
    out = tmp_path / "run"
    result = tabrl_cli("train", env_id, *extra, "--engine", "python", "--eval-episodes", "50",
                       "--out", out, "--quiet")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    for name in ("config.json", "state.json", "q_table.npz", "metrics/return.npy",
                 "evaluation.json", "curves.png", "policy.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["env_id"] == env_id
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["n_episodes"] == 50
    run = load_run(out)
    assert run.finished and len(run.metrics()) == run.config.episodes


def test_default_job_is_the_tutorial_blackjack(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    result = tabrl_cli("train", "--episodes", "1000", "--eval-episodes", "100", "--out", out,
                       "--engine", "python")
    assert result.code == 0, result.stderr
    config = load_run(out).config
    assert (config.env_id, config.env_kwargs) == ("Blackjack-v1", {"sab": False})
    assert (config.learning_rate, config.discount, config.epsilon_end) == (0.01, 0.95, 0.1)
    assert config.epsilon_decay_episodes == 500
    assert "mean return" in result.stdout and "win / draw / loss" in result.stdout


@pytest.mark.parametrize(
    "given, exploration, described",
    [
        ([], {"exploration": "softmax", "temperature_schedule": {
            "kind": "exponential", "start": 30.0, "end": 0.5, "rate": 0.9988}},
         "softmax with temperature 30.0 -> 0.5 (x0.9988 per episode), lambda 0.7"),
        (["--temperature", "2"], {"exploration": "softmax", "temperature": 2.0},
         "softmax with temperature 2.0, lambda 0.7"),
        (["--exploration", "ucb"], {"exploration": "ucb"}, "UCB with bonus weight 1.0"),
        (["--exploration", "epsilon-greedy", "--lam", "0.5"], {"exploration": "epsilon-greedy"},
         "epsilon 1.0 -> 0.1 over 15 episodes, lambda 0.5"),
        (["--temperature-schedule", "kind=visits,start=10,end=0.1,rate=0.5"],
         {"exploration": "softmax", "temperature_schedule": {
             "kind": "visits", "start": 10, "end": 0.1, "rate": 0.5}},
         "softmax with temperature 10/n^0.5 (n: visits), at least 0.1"),
        (["--exploration", "epsilon-greedy", "--epsilon-schedule", "visits",
          "--epsilon-exponent", "0.5"], {"exploration": "epsilon-greedy"},
         "epsilon 1.0/n^0.5 (n: visits), at least 0.1 per state"),
    ],
)
def test_own_exploration_replaces_the_shipped_one(tabrl_cli, tmp_path, given, exploration,
                                                  described):
    """SARSA(lambda) ships a softmax on CliffWalking: a user's own choice overrides it whole."""
    result = tabrl_cli("train", "CliffWalking-v1", "--algo", "sarsa-lambda", "--episodes", "30",
                       "--eval-episodes", "10", "--out", tmp_path / "run", *given)
    assert result.code == 0, result.stderr
    params = load_run(tmp_path / "run").config.algo_params
    assert {k: v for k, v in params.items() if k not in ("lam", "n")} == exploration
    assert described in " ".join(result.stderr.split()), result.stderr


def test_evaluate_and_plot_a_run_again(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    assert tabrl_cli("train", "FrozenLake-v1", "--episodes", "200", "--eval-episodes", "0",
                     "--out", out, "-q", "--engine", "python").code == 0
    assert not (out / "evaluation.json").exists()
    result = tabrl_cli("evaluate", out, "--episodes", "123")
    assert result.code == 0, result.stderr
    assert json.loads((out / "evaluation.json").read_text())["n_episodes"] == 123
    (out / "curves.png").unlink()
    assert tabrl_cli("plot", out, "--window", "20").code == 0
    assert (out / "curves.png").stat().st_size > 10_000


def test_envs_lists_the_toy_text_family(tabrl_cli):
    result = tabrl_cli("envs")
    assert result.code == 0
    for env_id in ("Blackjack-v1", "FrozenLake-v1", "Taxi-v4", "CliffWalking-v1"):
        assert env_id in result.stdout
    assert "Pendulum-v1" not in result.stdout  # continuous actions
    cart_pole = next(line for line in result.stdout.splitlines() if "CartPole-v1" in line)
    assert "72" in cart_pole and "bins [1, 1, 6, 12]" in cart_pole  # shipped bins


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["FrozenLak-v1"], ["unknown environment id", "FrozenLake-v1"]),
        (["Taxi-v3"], ["Taxi-v3"]),
        (["Acrobot-v1"], ["continuous", "--bins"]),
        (["Pendulum-v1", "--bins", "5"], ["action space", "Discrete"]),
        (["FrozenLake-v1", "--learning-rate", "0"], ["learning rate", "(0, 1]"]),
        (["FrozenLake-v1", "--learning-rate", "1.5"], ["learning rate"]),
        (["FrozenLake-v1", "--discount", "1.2"], ["discount", "[0, 1]"]),
        (["FrozenLake-v1", "--episodes", "0"], ["episodes", "positive"]),
        (["FrozenLake-v1", "--epsilon-start", "0.1", "--epsilon-end", "0.5"], ["floor", "start"]),
        (["FrozenLake-v1", "--env-kwargs", "slippery=false"], ["is_slippery"]),
        (["FrozenLake-v1", "--env-kwargs", "is_slippery"], ["malformed", "key=value"]),
        (["FrozenLake-v1", "--engine", "warp"], ["engine", "auto"]),
        (["FrozenLake-v1", "--epsilon-schedule", "1/n"], ["--epsilon-schedule", "visits"]),
        (["FrozenLake-v1", "--epsilon-schedule", "visits", "--epsilon-exponent", "-1"],
         ["--epsilon-exponent", "in [0, 10]"]),
        (["FrozenLake-v1", "--learning-rate", "0.3", "--learning-rate-schedule",
          "kind=linear,start=0.5,end=0.1,rate=0.01"], ["differs", "give one of them"]),
        (["FrozenLake-v1", "--learning-rate-exponent", "0.5", "--learning-rate-schedule",
          "kind=linear,start=0.5,end=0.1,rate=0.01"], ["not both"]),
        (["FrozenLake-v1", "--temperature-schedule", "exponential"],
         ["malformed --temperature-schedule", "kind=exponential,start="]),
        (["FrozenLake-v1", "--temperature-schedule", "kind=log,start=1"], ["kind", "visits"]),
        (["FrozenLake-v1", "--temperature-schedule", "kind=linear,start=1,floor=0.1"],
         ["--temperature-schedule", "has no setting 'floor'", "kind, start, end, rate"]),
    ],
)
def test_bad_input_gets_one_line_and_no_run_folder(tabrl_cli, tmp_path, args, fragments):
    out = tmp_path / "run"
    result = tabrl_cli("train", *args, "--out", out)
    assert_one_line_error(result, *fragments)
    assert result.code == 2
    assert not out.exists()


def test_unwritable_output_folder(tabrl_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = tabrl_cli("train", "FrozenLake-v1", "--episodes", "10", "--out", blocker / "run")
    assert_one_line_error(result, "cannot write", "--out")


def test_existing_run_folder_is_not_overwritten(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    assert tabrl_cli("train", "FrozenLake-v1", "--episodes", "50", "--eval-episodes", "0",
                     "--out", out, "-q", "--engine", "python").code == 0
    before = (out / "q_table.npz").read_bytes()
    assert_one_line_error(tabrl_cli("train", "FrozenLake-v1", "--out", out), "--resume")
    assert (out / "q_table.npz").read_bytes() == before


def test_missing_and_broken_run_folders(tabrl_cli, tmp_path):
    assert_one_line_error(tabrl_cli("evaluate", tmp_path / "nowhere"), "not a folder")
    assert_one_line_error(tabrl_cli("evaluate", tmp_path), "not a run folder")
    out = tmp_path / "run"
    assert tabrl_cli("train", "FrozenLake-v1", "--episodes", "50", "--eval-episodes", "0",
                     "--out", out, "-q", "--engine", "python").code == 0
    table = out / "q_table.npz"
    good = table.read_bytes()
    table.write_bytes(good[: len(good) // 2])
    assert_one_line_error(tabrl_cli("evaluate", out), "q_table.npz", "truncated or corrupted")
    table.write_bytes(b"\x00" * len(good))
    assert_one_line_error(tabrl_cli("plot", out), "truncated or corrupted")
    np.savez(table, q=np.zeros((5, 4)), visits=np.zeros((5, 4), np.int64), keys=np.arange(5))
    assert_one_line_error(tabrl_cli("evaluate", out), "lacks episodes_done", "not a Q-table")
    np.savez(table, q=np.zeros((5, 4)), visits=np.zeros((5, 4), np.int64), keys=np.arange(5),
             episodes_done=np.array(50), epsilon=np.array(0.1))
    assert_one_line_error(tabrl_cli("evaluate", out), "another environment")


def test_debug_shows_the_traceback(tabrl_cli):
    with pytest.raises(Exception, match="unknown environment"):
        tabrl_cli("--debug", "train", "NoSuchEnv-v0")


def test_solve_json_gives_the_optimum_and_saves_it(tabrl_cli, tmp_path):
    result = tabrl_cli("solve", "CliffWalking-v1", "--json", "--out", tmp_path / "cliff")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["value"] == -13 and summary["horizon"] is None and summary["discount"] == 1.0
    assert len(summary["policy"]) == 48
    assert json.loads((tmp_path / "cliff" / "solution.json").read_text())["value"] == -13
    assert (tmp_path / "cliff" / "policy.png").is_file()
    lake = json.loads(tabrl_cli("solve", "FrozenLake-v1", "--json", "--out", tmp_path / "l").stdout)
    assert lake["horizon"] == 100 and lake["value"] == pytest.approx(0.7442, abs=1e-4)
    discounted = tabrl_cli("solve", "FrozenLake-v1", "--discount", "0.9", "--json",
                           "--out", tmp_path / "d")
    assert json.loads(discounted.stdout)["value"] < lake["value"]


def test_solve_refuses_dynamics_it_cannot_know(tabrl_cli, tmp_path):
    result = tabrl_cli("solve", "Taxi-v4", "--env-kwargs", "fickle_passenger=true",
                       "--out", tmp_path / "t")
    assert_one_line_error(result, "fickle_passenger")
    assert result.code == 2


def test_sigterm_leaves_a_checkpoint_that_resumes(tmp_path, wait_for_training):
    """A real process stopped by SIGTERM mid-training keeps its last chunk; --resume finishes."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tabrl", "train", "FrozenLake-v1", "--engine", "python",
               "--episodes", "200000", "--eval-episodes", "0", "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    wait_for_training(out)
    time.sleep(1.0)  # within the next chunks
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    run = load_run(out)
    assert not run.finished and run.episodes_done > 0
    assert len(run.metrics()) == run.episodes_done


def test_a_learning_rate_schedule_replaces_the_shipped_step_rule(tabrl_cli, tmp_path):
    """FrozenLake8x8 ships the step 1/n(s,a)^0.5; a schedule given replaces it and sets the rate."""
    out = tmp_path / "run"
    result = tabrl_cli("train", "FrozenLake8x8-v1", "--episodes", "30", "--eval-episodes", "0",
                       "--learning-rate-schedule", "kind=exponential,start=0.4,end=0.1,rate=0.9",
                       "--out", out)
    assert result.code == 0, result.stderr
    config = load_run(out).config
    assert config.learning_rate == 0.4 and config.learning_rate_exponent is None
    assert "learning rate 0.4 -> 0.1 (x0.9 per episode)" in result.stderr
    assert load_run(out).load_agent().lr == pytest.approx(0.1)  # 0.4 * 0.9^30, at the floor


def test_the_program_draws_the_pictures_that_the_library_draws(tmp_path):
    """``tabrl train`` (the program, which draws its two pictures side by side in a forked copy)
    writes the same PNG bytes as the library drawing them one after the other."""
    from tabrl.app.workflow import plot_run

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "tabrl", "train", "FrozenLake-v1", "--episodes",
                           "300", "--eval-episodes", "0", "--out", str(run), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    drawn = {name: (run / name).read_bytes() for name in ("curves.png", "policy.png")}
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) in ([], [".lock"])
    plot_run(load_run(run))
    assert {name: (run / name).read_bytes() for name in drawn} == drawn
