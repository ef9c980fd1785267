"""Every input is checked where it enters: options, environment keywords, and every file of a
run folder. Each bad input gets one line on stderr, its exit code, no folder and no changed file."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile

import numpy as np
import pytest

from tabrl import __version__
from tabrl.app.cli import DEFAULT_ENV_KWARGS
from tabrl.app.runs import load_run


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder) -> dict[str, bytes]:
    """The bytes of every regular file in ``folder`` (links and FIFOs are not opened)."""
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir())
            if entry.is_file() and not entry.is_symlink()}


@pytest.fixture
def trained(tiny_run):
    return tiny_run


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--seed", "-1"], ["--seed", "not -1"]),
        (["--seed", str(2**64)], ["--seed"]),
        (["--episodes", "100000000000000000000"], ["--episodes", "32 bytes per episode"]),
        (["--max-steps", "0"], ["--max-steps"]),
        (["--max-steps", "-1"], ["--max-steps"]),
        (["--eval-episodes", "-1"], ["--eval-episodes"]),
        (["--window", "0"], ["--window"]),
        (["--learning-rate", "nan"], ["--learning-rate", "finite"]),
        (["--epsilon-exponent", "inf"], ["--epsilon-exponent", "finite"]),
        (["--env-kwargs", "is_slippery=maybe"], ["is_slippery takes true or false"]),
        (["--env-kwargs", "map_name=7"], ["map_name takes a string"]),
        (["--env-kwargs", "slipery=false"], ["no keyword 'slipery'", "did you mean is_slippery?"]),
        (["--env-kwargs", "reward_schedule=5"], ["reward_schedule takes a list"]),
        (["--env-kwargs", "max_episode_steps=-3"], ["max_episode_steps must be at least 1"]),
        (["--algo", "qlearning"], ["unknown method 'qlearning': did you mean q-learning?"]),
        (["--n", "3"], ["--n does not apply to q-learning", "n-step-sarsa"]),
        (["--foo"], ["No such option: --foo", "tabrl train --help"]),
        (["--episodes", "abc"], ["--episodes"]),
        (["--episodes"], ["--episodes"]),
    ],
)
def test_bad_options_of_train(tabrl_cli, tmp_path, args, fragments):
    out = tmp_path / "run"
    result = tabrl_cli("train", "FrozenLake-v1", *args, "--out", out)
    assert_one_line_error(result, 2, *fragments)
    assert not out.exists()


def test_bad_environment_keywords_of_the_default_job(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "--env-kwargs", "sab=2", "--out", tmp_path / "run")
    assert_one_line_error(result, 2, "sab takes true or false, not 2")


def test_too_many_bins_for_a_q_table(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "CartPole-v1", "--bins", "100000", "--out", tmp_path / "run")
    assert_one_line_error(result, 2, "--bins", "cells", "use fewer")
    result = tabrl_cli("train", "CartPole-v1", "--bins", str(10**9), "--out", tmp_path / "run")
    assert_one_line_error(result, 2, "--bins needs one count in [1, 1,000,000]")
    assert not (tmp_path / "run").exists()


def test_the_default_job_is_not_changed_by_a_run(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "--env-kwargs", "natural=true", "--episodes", "20",
                       "--eval-episodes", "0", "--engine", "python", "--out", tmp_path / "r", "-q")
    assert result.code == 0, result.stderr
    assert load_run(tmp_path / "r").config.env_kwargs == {"sab": False, "natural": True}
    assert DEFAULT_ENV_KWARGS == {"sab": False}


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--jobs", "-1"], ["--jobs"]),
        (["--jobs", "0"], ["--jobs"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--algo", "sarsaa"], ["did you mean sarsa?"]),
        (["--grid", "learning_rate=0.1,nan"], ["--grid learning_rate must be a finite number"]),
        (["--grid", "seed=-3"], ["--grid seed"]),
        (["--backend", "spark"], ["unknown backend"]),
    ],
)
def test_bad_options_of_sweep(tabrl_cli, tmp_path, args, fragments):
    out = tmp_path / "sweep"
    assert_one_line_error(tabrl_cli("sweep", "FrozenLake-v1", *args, "--out", out), 2, *fragments)
    assert not out.exists()


def test_hints_name_only_options_the_command_has(tabrl_cli, trained, tmp_path, monkeypatch):
    result = tabrl_cli("sweep", "FrozenLake-v1", "--out", trained)
    assert_one_line_error(result, 2, "choose another --out")
    assert "--resume" not in result.stderr
    result = tabrl_cli("solve", "Acrobot-v1", "--out", tmp_path / "s")
    assert_one_line_error(result, 2, "moves continuously")
    assert "--bins" not in result.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = tabrl_cli("sweep", "FrozenLake-v1", "--backend", "ray", "--out", tmp_path / "r")
    assert_one_line_error(result, 2, "pip install 'tabrl[ray]'")
    assert not (tmp_path / "r").exists()


def test_bad_options_of_the_other_commands(tabrl_cli, trained, tmp_path):
    before = snapshot(trained)
    assert_one_line_error(tabrl_cli("plot", trained, "--window", "-5"), 2, "--window")
    assert_one_line_error(tabrl_cli("evaluate", trained, "--seed", "-1"), 2, "--seed")
    assert_one_line_error(tabrl_cli("evaluate", trained, "--episodes", "0"), 2, "--episodes")
    assert_one_line_error(tabrl_cli("evaluate"), 2, "Missing argument")
    assert_one_line_error(tabrl_cli("solve", "FrozenLake-v1", "--discount", "nan"), 2,
                          "--discount")
    assert_one_line_error(tabrl_cli("compare", trained), 2, "two or more run folders")
    assert snapshot(trained) == before


def test_compare_refuses_runs_of_different_environments(tabrl_cli, trained, tmp_path):
    taxi = tmp_path / "taxi"
    assert tabrl_cli("train", "Taxi-v4", "--episodes", "10", "--eval-episodes", "0",
                     "--engine", "python", "--out", taxi, "-q").code == 0
    result = tabrl_cli("compare", trained, taxi, "--out", tmp_path / "cmp.png")
    assert_one_line_error(result, 2, "Taxi-v4", "FrozenLake-v1", "one environment")
    assert not (tmp_path / "cmp.png").exists()


def test_resume_refuses_settings_it_cannot_change(tabrl_cli, run_copy):
    before = snapshot(run_copy)
    result = tabrl_cli("train", "--resume", run_copy, "--learning-rate", "0.5", "--seed", "7")
    assert_one_line_error(result, 2, "--learning-rate, --seed cannot change on --resume")
    assert snapshot(run_copy) == before
    result = tabrl_cli("train", "--resume", run_copy, "--eval-episodes", "-1")
    assert_one_line_error(result, 2, "--eval-episodes")
    assert snapshot(run_copy) == before


def test_resume_applies_the_reporting_options(tabrl_cli, run_copy):
    result = tabrl_cli("train", "--resume", run_copy, "--episodes", "40", "--eval-episodes", "7",
                       "--window", "5", "-q")
    assert result.code == 0, result.stderr
    config = load_run(run_copy).config
    assert (config.episodes, config.eval_episodes, config.window) == (40, 7, 5)
    assert json.loads((run_copy / "evaluation.json").read_text())["n_episodes"] == 7


def test_version_and_plain_help(tabrl_cli, monkeypatch):
    result = tabrl_cli("--version")
    assert (result.code, result.stdout.strip()) == (0, f"tabrl {__version__}")
    monkeypatch.setenv("COLUMNS", "80")
    result = tabrl_cli("train", "--help")
    assert result.code == 0
    assert max(map(len, result.stdout.splitlines())) <= 80
    for option in ("--learning-rate-schedule", "--epsilon-decay-episodes", "--eval-episodes",
                   "--temperature-schedule", "--exploring-starts", "--resume"):
        assert option in result.stdout  # never cut by a frame
    commands = tabrl_cli("--help").stdout.split("Commands:")[1].splitlines()
    assert len(commands) >= 7 and not any(line.endswith("...") for line in commands)
    for command in [line.split()[0] for line in commands if line.strip()]:
        shown = tabrl_cli(command, "--help").stdout  # a user's help, not the developer's notes
        assert "``" not in shown and ":func:" not in shown, command


def set_config(run, **changes) -> None:
    info = json.loads((run / "config.json").read_text())
    info["config"].update(changes)
    (run / "config.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"learning_rate": "fast"}, ["learning_rate must be a finite number, not 'fast'"]),
        ({"learning_rate": [0.1]}, ["learning_rate"]),
        ({"seed": 1.5}, ["seed must be a whole number"]),
        ({"episodes": True}, ["episodes must be a whole number, not True"]),
        ({"max_steps": 0}, ["max_steps"]),
        ({"algo_params": {"planning_steps": 3}}, ["--planning-steps does not apply"]),
        ({"algo_params": {"warp": 3}}, ["warp is not a setting"]),
        ({"algo": "qlearning"}, ["algo must be one of"]),
        ({"env_kwargs": {"is_slippery": "maybe"}}, ["is_slippery takes true or false"]),
        ({"learning_rate": 0.0}, ["learning rate"]),
    ],
)
def test_config_json_is_checked_by_its_schema(tabrl_cli, run_copy, changes, fragments):
    set_config(run_copy, **changes)
    before = snapshot(run_copy)
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "config.json", *fragments)
    assert snapshot(run_copy) == before


def test_deeply_nested_json_is_one_line(tabrl_cli, run_copy):
    (run_copy / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "state.json", "nests")


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("state.json", {"episodes_done": "many", "epsilon": 0.1, "finished": True},
         ["episodes_done must be a whole number"]),
        ("state.json", [1, 2], ["must be a mapping"]),
        ("evaluation.json", {"n_episodes": 5}, ["lacks"]),
    ],
)
def test_state_and_evaluation_are_checked(tabrl_cli, run_copy, tmp_path, name, content,
                                          fragments):
    (run_copy / name).write_text(json.dumps(content))
    result = tabrl_cli("compare", run_copy, run_copy, "--out", tmp_path / "c.png")
    assert_one_line_error(result, 1, name, *fragments)


def rewrite_q_table(run, **changes) -> None:
    with np.load(run / "q_table.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(changes)
    np.savez(run / "q_table.npz", **arrays)


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"q": np.zeros((16, 3))}, ["shape (16, 3)"]),
        ({"q": np.full((16, 4), np.nan)}, ["NaN"]),
        ({"q": np.zeros((16, 4), np.int64)}, ["dtype int64"]),
        ({"visits": np.full((16, 4), -1)}, ["negative counts"]),
        ({"epsilon": np.array(7.0)}, ["epsilon"]),
        ({"keys": np.arange(3)}, ["state keys"]),
        ({"q": np.array([None, 1], dtype=object)}, ["dtype object", "never pickled"]),
    ],
)
def test_q_table_arrays_are_checked(tabrl_cli, run_copy, changes, fragments):
    rewrite_q_table(run_copy, **changes)
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "q_table.npz", *fragments)


def test_a_bit_flip_in_the_compressed_q_table(tabrl_cli, run_copy):
    table = run_copy / "q_table.npz"
    data = bytearray(table.read_bytes())
    with zipfile.ZipFile(table) as archive:
        info = archive.getinfo("q.npy")
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x10
    table.write_bytes(bytes(data))
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "q_table.npz",
                          "truncated or corrupted")


def test_a_huge_declared_shape_is_refused_before_allocation(tabrl_cli, run_copy):
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**40, 2**20)}
    buffer = bytearray(b"\x93NUMPY\x01\x00")
    text = repr(header).encode()
    text += b" " * (118 - len(text)) + b"\n"
    buffer += len(text).to_bytes(2, "little") + text
    with zipfile.ZipFile(run_copy / "q_table.npz", "w") as archive:
        archive.writestr("q.npy", bytes(buffer))
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "declares q.npy",
                          "(1099511627776, 1048576)")


def test_a_plain_npy_in_place_of_the_npz(tabrl_cli, run_copy):
    with open(run_copy / "q_table.npz", "wb") as handle:
        np.save(handle, np.zeros((16, 4)))
    assert_one_line_error(tabrl_cli("plot", run_copy), 1, "q_table.npz")


def test_a_fifo_is_never_opened(tabrl_cli, run_copy):
    (run_copy / "q_table.npz").unlink()
    os.mkfifo(run_copy / "q_table.npz")
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "not a regular file")


def test_a_link_out_of_the_run_folder_is_refused(tabrl_cli, run_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(run_copy / "state.json", outside)
    (run_copy / "state.json").symlink_to(outside)
    assert_one_line_error(tabrl_cli("evaluate", run_copy), 1, "link out of its folder")


def test_ctrl_c_exits_130_without_a_traceback(tabrl_cli, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("tabrl.app.cli.tabular_envs", interrupted)
    result = tabrl_cli("envs")
    assert result.code == 130 and "Traceback" not in result.stderr
