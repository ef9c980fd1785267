"""A user's own environment on the command line: ``module:Id``, ``--env-module``, plugins.

``tests/envs/corridor.py`` registers ``Corridor-v0`` (6 cells, optimum -5: five steps right) and
``CorridorSlippery-v0`` (each move slips back with probability 0.1, no time limit). Walking right
from cell 0 takes ``V(0)`` steps with ``V(i) = -1 + 0.9 V(i+1) + 0.1 V(max(i-1, 0))`` and
``V(5) = 0``, which solves to -359830/59049 (by hand with fractions, not by tabrl).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import pytest

from tabrl.app.runs import RunConfig, file_name, load_run
from tabrl.envs import load_plugin_envs, make_env, resolve_env_id
from tabrl.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
MODULE = "tests.envs.corridor"
SLIPPERY_OPTIMUM = -359830 / 59049


@pytest.fixture(autouse=True)
def importable_tests(monkeypatch):
    """The repository root on the path, as a user's project folder is (spawned workers too)."""
    monkeypatch.syspath_prepend(str(ROOT))


def test_train_by_module_id_stores_the_module_and_reloads_in_a_new_process(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    result = tabrl_cli("train", f"{MODULE}:Corridor-v0", "--episodes", "300",
                       "--learning-rate", "0.5", "--eval-episodes", "20", "--out", out, "--quiet")
    assert result.code == 0, result.stderr
    run = load_run(out)
    assert run.config.env_id == f"{MODULE}:Corridor-v0"
    assert run.info["engine"] == "compiled"  # its P makes it compiled and solvable
    exact = run.evaluation().exact
    assert exact["optimal_value"] == -5.0 and exact["policy_value"] == -5.0
    # A fresh interpreter knows nothing of the corridor: the stored id imports the module again.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    again = subprocess.run([sys.executable, "-m", "tabrl", "evaluate", str(out), "--episodes",
                            "10"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "-5.0000" in again.stdout


def test_env_module_option_qualifies_the_id(tabrl_cli, tmp_path):
    out = tmp_path / "run"
    result = tabrl_cli("train", "CorridorSlippery-v0", "--env-module", MODULE, "--episodes", "50",
                       "--eval-episodes", "0", "--out", out, "--quiet")
    assert result.code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["config"]["env_id"] == \
        f"{MODULE}:CorridorSlippery-v0"


@pytest.mark.parametrize("env_id, extra, optimum", [
    (f"{MODULE}:Corridor-v0", [], -5.0),
    ("CorridorSlippery-v0", ["--env-module", MODULE], SLIPPERY_OPTIMUM),
])
def test_solve_finds_the_exact_optimum(tabrl_cli, tmp_path, env_id, extra, optimum):
    result = tabrl_cli("solve", env_id, *extra, "--json", "--out", tmp_path / "opt")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["value"] == pytest.approx(optimum, abs=1e-9)
    assert summary["stationary_value"] == pytest.approx(optimum, abs=1e-9)


def test_sweep_runs_the_module_in_its_worker_processes(tabrl_cli, tmp_path):
    result = tabrl_cli("sweep", f"{MODULE}:Corridor-v0", "--grid", "episodes=300",
                       "--grid", "learning_rate=0.5", "--seeds", "2", "--jobs", "2",
                       "--out", tmp_path / "sw")
    assert result.code == 0, result.stderr
    sweep = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [job["value"] for job in sweep["jobs"]] == [-5.0, -5.0]  # both seeds optimal
    assert f"{MODULE}:Corridor-v0" in (tmp_path / "sw" / "sweep.json").read_text()


def test_unknown_ids_name_both_ways_in(tabrl_cli, tmp_path):
    unknown = tabrl_cli("train", "Corridoor-v0", "--out", tmp_path / "a")
    assert unknown.code == 2 and "module:Corridoor-v0" in unknown.stderr
    assert "--env-module" in unknown.stderr and not (tmp_path / "a").exists()
    missing = tabrl_cli("solve", "no_such_module_xyz:Corridor-v0")
    assert missing.code == 2 and "cannot import the environment module 'no_such_module_xyz'" \
        in missing.stderr
    wrong = tabrl_cli("train", f"{MODULE}:Corridoor-v0", "--out", tmp_path / "b")
    assert wrong.code == 2 and "did you mean Corridor-v0" in wrong.stderr
    for result in (unknown, missing, wrong):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_envs_lists_module_and_plugin_environments(tabrl_cli, tmp_path, monkeypatch):
    # An installed plugin: a distribution whose entry point (group gymnasium.envs) registers
    # LongCorridor-v0 in the namespace of the entry point's name, as gymnasium < 1.0 loaded them.
    dist = tmp_path / "corridor_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corridor-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[gymnasium.envs]\ncorridors = {MODULE}:register_long_corridor\n"
        "broken = no_such_module_xyz:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = tabrl_cli("envs", "--env-module", MODULE)
    assert result.code == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
             if line.count("│") > 2}
    assert MODULE in lines["Corridor-v0"] and "compiled" in lines["Corridor-v0"]
    assert "plugin corridor-plugin" in lines["corridors/LongCorridor-v0"]
    assert "gymnasium" in lines["FrozenLake-v1"]
    assert "note: the plugin broken = no_such_module_xyz:register failed to load" in result.stderr
    env = make_env("corridors/LongCorridor-v0")
    assert env.observation_space == gym.spaces.Discrete(10)


def test_resolve_env_id_rejects_malformed_ids():
    for bad in (":Corridor-v0", f"{MODULE}:"):
        with pytest.raises(UsageError, match="module:EnvName-v0"):
            resolve_env_id(bad)
    load_plugin_envs()  # idempotent: loading twice registers nothing twice
    assert resolve_env_id(f"{MODULE}:Corridor-v0") == "Corridor-v0"


def test_the_module_form_keeps_the_shipped_defaults_and_plain_folder_names():
    """``gymnasium.envs:FrozenLake-v1`` is FrozenLake-v1: its tuned settings, its folder name."""
    qualified = RunConfig.resolve("gymnasium.envs:FrozenLake-v1")
    assert qualified == replace(RunConfig.resolve("FrozenLake-v1"), env_id=qualified.env_id)
    assert qualified.episodes == 100_000
    assert file_name(f"{MODULE}:Corridor-v0") == "Corridor-v0"
