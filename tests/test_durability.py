"""Run folders survive kills, full disks, second writers and nonsense: real processes and disks."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TransformReward

import tabrl
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.workflow import prepare_run, resume_run, train_run, unfinished_warning
from tabrl.training import TrainingDivergedError


def quiet(_: str) -> None:
    pass


def tabrl_process(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tabrl", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def same_run(a, b, curve_after: int = 0) -> None:
    """Q-table, the agent's own state, every metric and the greedy curve (its points after
    ``curve_after`` episodes) equal bit for bit."""
    first, second = a.load_agent(), b.load_agent()
    assert np.array_equal(first.q_values.array, second.q_values.array)
    for name, array in first.learning_state().items():
        assert np.array_equal(array, second.learning_state()[name]), name
    for name, column in a.metrics().columns().items():
        assert np.array_equal(column, b.metrics().columns()[name]), name
    curves = [run.curve() for run in (a, b)]
    kept = [curve.episodes > curve_after for curve in curves]
    assert np.array_equal(*(c.episodes[k] for c, k in zip(curves, kept)))
    assert np.array_equal(*(c.values[k] for c, k in zip(curves, kept)))


@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_a_run_cut_at_a_planned_chunk_resumes_to_the_uninterrupted_result(tmp_path, engine,
                                                                          interrupted_run):
    """Chunks of about 300 steps (sizes planned from the episodes' lengths), cut after 400."""
    settings = dict(episodes=900, eval_episodes=0, engine=engine, chunk_steps=300, seed=11)
    whole_config = RunConfig.resolve("FrozenLake-v1", **settings, checkpoint_seconds=0.0)
    whole = train_run(prepare_run(whole_config, tmp_path / "whole"), say=quiet)
    config = RunConfig.resolve("FrozenLake-v1", **settings, checkpoint_seconds=1e9)
    cut = interrupted_run(config, tmp_path / "cut")
    assert 0 < cut.episodes_done < 900 and len(cut.metrics()) == cut.episodes_done
    same_run(whole, resume_run(tmp_path / "cut", say=quiet))


def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_result(
        tmp_path, wait_for_training):
    """Killed 1-3 s after its first checkpoint, it lost at most a few seconds; resumed to a total
    a little beyond, it equals a run trained to that total without a stop."""
    settings = ["--engine", "python", "--epsilon-decay-episodes", "5000", "--seed", "4",
                "--eval-episodes", "0", "--quiet"]
    out = tmp_path / "killed"
    killed = tabrl_process("train", "FrozenLake-v1", "--episodes", 10**7, *settings, "--out", out)
    wait_for_training(out)
    moment = random.uniform(1.0, 3.0)
    time.sleep(moment)
    killed.send_signal(signal.SIGKILL)
    killed_at = time.time()
    killed.communicate(timeout=30)
    cut = load_run(out)
    lost = killed_at - (out / "q_table.npz").stat().st_mtime
    assert cut.episodes_done > 0 and lost < 6.0, f"killed at {moment:.2f} s, {lost:.1f} s lost"
    assert len(cut.metrics()) == cut.episodes_done
    total = cut.episodes_done + 1500
    resumed = resume_run(out, total, say=quiet)
    config = RunConfig.resolve("FrozenLake-v1", episodes=total, epsilon_decay_episodes=5000,
                               seed=4, eval_episodes=0, engine="python")
    # the curve's points are spread over the run's total, which the resume changed: the points
    # before the kill were spread over 10^7 episodes, the later ones over the new total
    same_run(train_run(prepare_run(config, tmp_path / "whole"), say=quiet), resumed,
             curve_after=cut.episodes_done)


def test_one_writer_per_run_folder_and_readers_hear_it_is_unfinished(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    trainer = tabrl_process("train", "FrozenLake-v1", "--engine", "python", "--episodes",
                            "10000000", "--eval-episodes", "0", "--out", out)
    try:
        wait_for(out / "state.json")
        second = tabrl_cli("train", "--resume", out)
        assert second.code == 1
        lines = second.stderr.strip().splitlines()
        assert lines == [f"error: {out} is being trained by process {trainer.pid}: wait for it "
                         "to end (or stop it), then try again"], second.stderr
        evaluating = tabrl_cli("evaluate", out, "--episodes", "10")
        assert evaluating.code == 1 and f"being trained by process {trainer.pid}" in \
            evaluating.stderr
        assert f"process {trainer.pid} is training it" in unfinished_warning(load_run(out))
        assert not (out / "evaluation.json").exists()
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.communicate(timeout=30)
    after = tabrl_cli("evaluate", out, "--episodes", "10")  # the dead writer's lock is gone
    assert after.code == 0, after.stderr
    warning = after.stderr.strip().splitlines()[0]
    assert warning.startswith(f"warning: run {out} is unfinished (episode ")
    assert "of 10,000,000): its figures are its last checkpoint's; continue it with" in warning


@pytest.fixture
def small_disk(tmp_path):
    """A real 200 kB filesystem (tmpfs; needs root, else the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def remount(mount, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def test_a_full_disk_and_a_read_only_disk_are_one_line_and_keep_the_checkpoint(tabrl_cli,
                                                                            small_disk):
    out = small_disk / "run"
    full = tabrl_cli("train", "Taxi-v4", "--engine", "compiled", "--episodes", "20000",
                     "--eval-episodes", "0", "--out", out)
    assert full.code == 1
    error = full.stderr.strip().splitlines()[-1]
    assert "No space left on device" in error and "Traceback" not in full.stderr
    assert f"{out} keeps its checkpoint after episode 0; make room" in error
    kept = load_run(out)
    assert kept.episodes_done == 0 and len(kept.metrics()) == 0
    remount(small_disk, "size=4m")
    resumed = tabrl_cli("train", "--resume", out, "--eval-episodes", "0")
    assert resumed.code == 0, resumed.stderr
    assert load_run(out).finished and len(load_run(out).metrics()) == 20000
    remount(small_disk, "ro")
    for command in (["evaluate", out], ["train", "--resume", out, "--episodes", "30000"]):
        result = tabrl_cli(*command)
        assert result.code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Read-only file system" in lines[0], result.stderr
    assert load_run(out).finished and len(load_run(out).metrics()) == 20000


@pytest.fixture
def small_run(tmp_path):
    config = RunConfig.resolve("FrozenLake-v1", episodes=200, eval_episodes=0, engine="python")
    return train_run(prepare_run(config, tmp_path / "run"), say=quiet).path


def test_a_refused_resume_leaves_the_folder_untouched(tabrl_cli, small_run):
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_run.iterdir()
              if p.is_file()}
    result = tabrl_cli("train", "--resume", small_run, "--episodes", "-5")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_run.iterdir()
             if p.is_file()}
    assert after == before
    assert tabrl_cli("train", "--resume", small_run, "--episodes", "300").code == 0


def rewrite_q_table(run_path, **changes) -> None:
    arrays = {**load_run(run_path).q_table(), **changes}
    np.savez(run_path / "q_table.npz", **arrays)


@pytest.mark.parametrize(("change", "message"), [
    ({"q": np.full((16, 4), np.nan)}, "NaN or infinite action values"),
    ({"q": np.full((16, 4), np.inf)}, "NaN or infinite action values"),
    ({"epsilon": np.array(7.0)}, "outside [0, 1]"),
    ({"learning_rate": np.array(-0.5)}, "learning rate -0.5"),
])
def test_a_checkpoint_with_non_finite_or_impossible_values_is_refused(tabrl_cli, small_run,
                                                                      change, message):
    rewrite_q_table(small_run, **change)
    result = tabrl_cli("train", "--resume", small_run, "--episodes", "300")
    assert result.code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_a_nan_learning_rate_in_the_config_is_refused(tabrl_cli, small_run):
    info = json.loads((small_run / "config.json").read_text())
    info["config"]["learning_rate"] = float("nan")
    (small_run / "config.json").write_text(json.dumps(info))
    result = tabrl_cli("train", "--resume", small_run, "--episodes", "300")
    assert result.code != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "learning_rate must be a finite number, not nan" in result.stderr


def test_a_diverging_training_stops_and_saves_nothing_non_finite(tmp_path):
    huge = TransformReward(gym.make("FrozenLake-v1", is_slippery=False), lambda r: 1e308)
    with pytest.raises(TrainingDivergedError, match="Q-table holds (NaN|infinite) values"):
        tabrl.train(huge, n_episodes=2000, engine="python", learning_rate=1.0,
                    discount_factor=1.0)
    config = RunConfig.resolve("FrozenLake-v1", {"is_slippery": False}, episodes=2000,
                               eval_episodes=0, engine="python", learning_rate=1.0, discount=1.0)
    prepared = prepare_run(config, tmp_path / "run")
    prepared.env = TransformReward(prepared.env, lambda r: 1e308)
    with pytest.raises(TrainingDivergedError, match="keeps the checkpoint after episode 0"):
        train_run(prepared, say=quiet)
    run = load_run(tmp_path / "run")
    assert not run.finished and np.isfinite(run.q_table()["q"]).all()


@pytest.mark.parametrize("option", [["--learning-rate-exponent", "nan"],
                                    ["--epsilon-schedule", "visits", "--epsilon-exponent", "nan"]])
def test_a_nan_exponent_is_refused_before_anything_is_written(tabrl_cli, tmp_path, option):
    result = tabrl_cli("train", "FrozenLake-v1", *option, "--out", tmp_path / "run")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{option[-2]} must be a finite number" in result.stderr
    assert not (tmp_path / "run").exists()
