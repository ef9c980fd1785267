"""Shared fixtures: the command line run in-process, as a user would type it."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tabrl.app.cli import main


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def tabrl_cli(capsys, monkeypatch):
    """``tabrl_cli("train", "FrozenLake-v1", ...)`` -> exit code, stdout, stderr."""

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["tabrl", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        return CliResult(int(exit_info.value.code or 0), captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished FrozenLake-v1 run of 30 episodes (python engine), trained once per session:
    tests that damage a run folder damage copies of it."""
    from tabrl.app.runs import RunConfig
    from tabrl.app.workflow import prepare_run, train_run

    config = RunConfig.resolve("FrozenLake-v1", {}, episodes=30, eval_episodes=10,
                               engine="python", window=5)
    path = tmp_path_factory.mktemp("tiny") / "run"
    train_run(prepare_run(config, path), say=lambda _: None)
    return path
