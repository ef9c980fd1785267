"""Shared fixtures: the command line run in-process, as a user would type it.

``make test`` runs the tests on both cores (pytest-xdist, ``-n 2``); the numba kernels are
compiled (or loaded from the disk cache) once, here, before the workers start, so that two
workers never compile the same kernel side by side (about 250 s of CPU on a fresh clone, on
both cores: see :func:`pytest_configure`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tabrl.app.cli import main

#: The methods and strategies whose own kernels the tests compile (each about 25 s of CPU on a
#: fresh clone) and hold to the kernel of every method, bit for bit, beside the tutorial's; every
#: other one trains on the kernel of every method here, where that one is ready (the rule of
#: ``kernel_cache.kernels_to_train``), and ``bench.engines --algos`` holds each of them to it.
TESTED_METHOD_KERNELS = [("expected-sarsa", "softmax"), ("n-step-sarsa", "ucb"),
                         ("dyna-q", "epsilon-greedy")]


def pytest_configure(config: pytest.Config) -> None:
    """Compile the kernels in the controlling process only (workers find them cached).

    The kernel of every method, the longest compile by far, compiles in a second process on the
    other core meanwhile (numba compiles one function at a time per process), then the last of
    the method kernels tested; this process then loads them from the disk cache, or compiles
    them if that process failed.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell (``make test &``), which ignores Ctrl-C there and
        # in everything started from it: the tests that send a real Ctrl-C need a terminal's.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    from tabrl import kernel_cache
    from tabrl.kernel_cache import ENGINE, EXACT, PLAY, Q_LEARNING

    *here, last = (kernel_cache.method_kernels(*method) for method in TESTED_METHOD_KERNELS)
    beside = None if kernel_cache.is_cached(ENGINE) else subprocess.Popen(
        [sys.executable, "-c", "from tabrl import kernel_cache as k; k.prepare(k.ENGINE); "
         f"k.prepare(k.method_kernels(*{TESTED_METHOD_KERNELS[-1]!r}))"])
    for kernels in (Q_LEARNING, PLAY, EXACT, *here):
        kernel_cache.prepare(kernels)
    if beside is not None:
        beside.wait()
    kernel_cache.prepare(ENGINE)
    kernel_cache.prepare(last)


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


@pytest.fixture
def interrupted_run():
    """``interrupted_run(config, path)``: a run trained until its progress passes 400 episodes,
    then stopped by Ctrl-C (its last checkpoint kept), loaded back."""
    from tabrl.app.runs import load_run
    from tabrl.app.workflow import prepare_run, train_run

    def interrupt(done: int, mean: float) -> None:
        if done > 400:
            raise KeyboardInterrupt

    def run(config, path):
        with pytest.raises(KeyboardInterrupt):
            train_run(prepare_run(config, path), progress=interrupt, say=lambda _: None)
        return load_run(path)

    return run


@pytest.fixture
def wait_for_training():
    """``wait_for_training(run_dir)``: until a ``tabrl train`` process has checkpointed episodes
    there (its first compile or a busy machine may take a while before it trains at all)."""
    import time

    from tabrl.app.runs import load_run

    def wait(path, seconds: float = 180.0) -> None:
        deadline = time.monotonic() + seconds
        while not ((path / "state.json").exists() and load_run(path).episodes_done > 0):
            assert time.monotonic() < deadline, f"{path} never checkpointed an episode"
            time.sleep(0.1)

    return wait
