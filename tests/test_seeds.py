"""train --seeds: one folder of ordinary run folders equal to single runs, the aggregate table
with intervals inside the data, the curves with bands, and continuing the same command."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tabrl import plots
from tabrl.app.runs import load_run
from tabrl.app.seeds import parse_seeds
from tabrl.errors import UsageError
from tabrl.fileio import folder_lock
from tabrl.stats import probability_of_improvement

TRAIN = ("train", "FrozenLake-v1", "--episodes", "400", "--eval-episodes", "0", "--quiet")


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots.figures, "DPI", 30)


def test_seeds_are_a_count_or_a_range():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("5-7") == [5, 6, 7]
    for wrong in ("0", "x", "7-5", "-3", "1-2-3"):
        with pytest.raises(UsageError, match="--seeds"):
            parse_seeds(wrong)


def test_a_multi_seed_folder_holds_single_runs_and_their_aggregate(tabrl_cli, tmp_path):
    folder = tmp_path / "seeds"
    result = tabrl_cli(*TRAIN, "--seeds", "2-4", "--out", folder)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == str(folder)
    single = tabrl_cli(*TRAIN, "--seed", "3", "--out", tmp_path / "single")
    assert single.code == 0, single.stderr
    three, alone = load_run(folder / "seed-3"), load_run(tmp_path / "single")
    assert three.config.seed == 3 and three.finished
    assert np.array_equal(three.load_agent().q_values.array, alone.load_agent().q_values.array)
    assert np.array_equal(three.curve().values, alone.curve().values)
    data = json.loads((folder / "aggregate.json").read_text())
    values = [load_run(folder / f"seed-{s}").curve().values[-1] for s in (2, 3, 4)]
    assert data["seeds"] == [2, 3, 4] and data["values"] == values and data["n_seeds"] == 3
    assert data["intervals"] == "95% stratified-bootstrap percentile intervals over 3 seeds"
    for name in ("mean", "median", "iqm"):
        assert min(values) <= data[name]["low"] <= data[name]["value"] <= data[name]["high"]
        assert data[name]["high"] <= max(values)
    assert data["mean"]["value"] == pytest.approx(np.mean(values))
    rows = list(csv.DictReader((folder / "aggregate.csv").open()))
    assert [r["statistic"] for r in rows] == ["mean", "median", "IQM"]
    assert float(rows[0]["value"]) == data["mean"]["value"] and rows[0]["n_seeds"] == "3"
    assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (folder / "seed-4" / "policy.png").unlink()  # as if Ctrl-C had come while it was drawn
    q_table = (folder / "seed-4" / "q_table.npz").read_bytes()
    table = tabrl_cli(*TRAIN[:-1], "--seeds", "2-4", "--out", folder)  # the same: continues
    assert table.code == 0, table.stderr
    words = " ".join(table.stdout.split())  # the title wraps at the table's width
    assert ("exact final greedy value (95% stratified-bootstrap percentile intervals over 3 "
            "seeds)") in words
    assert f"seeds: 1 to continue, 2 done -> {folder}" in table.stderr  # only drawn again
    assert (folder / "seed-4" / "policy.png").exists()
    assert (folder / "seed-4" / "q_table.npz").read_bytes() == q_table


def test_wrong_seeds_are_one_line(tabrl_cli, tmp_path):
    for args in (("--seeds", "0-x"), ("--seeds", "3", "--seed", "1"), ("--jobs", "2"),
                 ("--seeds", "2", "--jobs", "0")):
        result = tabrl_cli(*TRAIN, *args, "--out", tmp_path / "x")
        assert result.code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "--seed" in result.stderr or "--jobs" in result.stderr
        assert not (tmp_path / "x").exists()
    made = tabrl_cli(*TRAIN, "--seeds", "2", "--jobs", "1", "--out", tmp_path / "two")
    assert made.code == 0
    other = tabrl_cli(*TRAIN, "--seeds", "3", "--out", tmp_path / "two")
    assert other.code == 2 and "holds the seeds of other settings" in other.stderr


def test_compare_of_multi_seed_folders_gives_the_probability_of_improvement(tabrl_cli, tmp_path):
    for name, algo in (("q", "q-learning"), ("sarsa", "sarsa")):
        made = tabrl_cli(*TRAIN, "--seeds", "3", "--jobs", "1", "--algo", algo,
                         "--out", tmp_path / name)
        assert made.code == 0, made.stderr
    picture = tmp_path / "cmp.png"
    result = tabrl_cli("compare", tmp_path / "q", tmp_path / "sarsa", "--out", picture)
    assert result.code == 0, result.stderr
    values = [json.loads((tmp_path / n / "aggregate.json").read_text())["values"]
              for n in ("q", "sarsa")]
    chance = probability_of_improvement(np.array(values[0]), np.array(values[1]))
    assert f"P(q > sarsa) = {chance:.3f}" in result.stdout
    words = " ".join(result.stdout.split())
    assert "(95% stratified-bootstrap percentile intervals over 3 seeds)" in words
    assert picture.exists() and (tmp_path / "cmp-profile.png").read_bytes()[:4] == b"\x89PNG"
    mixed = tabrl_cli("compare", tmp_path / "q", tmp_path / "q" / "seed-0")
    assert mixed.code == 2 and "is not a multi-seed folder" in mixed.stderr


def test_ctrl_c_stops_every_worker_at_its_checkpoint_and_the_same_command_finishes(
        tabrl_cli, tmp_path, wait_for_training):
    """A real Ctrl-C (SIGINT to the process group, the workers' too) while two worker processes
    train: one line, exit 130, every seed resumable. A seed's error (another writer holds its
    folder) is one line. Then the same command finishes: a seed cut mid-run equals its single
    run bit for bit (python engine: chunks of about 1,000 steps, each checkpointed)."""
    hyperparams = tmp_path / "chunks.yml"
    hyperparams.write_text("chunk_steps: 1000\ncheckpoint_seconds: 0\n")
    folder = tmp_path / "seeds"
    train = ("train", "FrozenLake-v1", "--engine", "python", "--episodes", "2000",
             "--eval-episodes", "0", "--hyperparams", hyperparams)
    command = (*train, "--seeds", "2", "--jobs", "2", "--out", folder)
    process = subprocess.Popen([sys.executable, "-m", "tabrl", *map(str, command)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    for seed in (0, 1):
        wait_for_training(folder / f"seed-{seed}")
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("interrupted") == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: {folder} keeps every seed's last checkpoint; continue with the same "
        f"command and --out {folder}")
    runs = [load_run(folder / f"seed-{seed}") for seed in (0, 1)]
    assert not all(run.finished for run in runs)
    assert all(len(run.metrics()) == run.episodes_done for run in runs)
    cut = next(seed for seed, run in enumerate(runs) if not run.finished)
    with folder_lock(folder / "seed-0"):
        locked = tabrl_cli(*command, "-q")
    assert locked.code == 1 and locked.stderr.count("\n") == 1, locked.stderr
    assert f"{folder / 'seed-0'} is being trained by process {os.getpid()}" in locked.stderr
    again = tabrl_cli(*command, "-q")
    assert again.code == 0, again.stderr
    single = tabrl_cli(*train, "--seed", cut, "--out", tmp_path / "single", "-q")
    assert single.code == 0, single.stderr
    resumed, alone = load_run(folder / f"seed-{cut}"), load_run(tmp_path / "single")
    assert resumed.finished and resumed.episodes_done == 2000
    assert np.array_equal(resumed.load_agent().q_values.array, alone.load_agent().q_values.array)
    for name, column in resumed.metrics().columns().items():
        assert np.array_equal(column, alone.metrics().columns()[name]), name
    assert np.array_equal(resumed.curve().values, alone.curve().values)
