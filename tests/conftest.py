"""Shared fixtures: the command line run in-process, as a user would type it."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tabrl.cli import main


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
