"""Property-based proof of the command line's promise: whatever the command line or the state of
a run folder, tabrl answers with its result or with one line on stderr and the documented exit
code, never a traceback, never a new folder or a changed file on failure, and never hangs."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabrl.app.cli import main

#: A busy 2-core machine: no per-example deadline, but every command must end within this.
SECONDS_PER_COMMAND = 60
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(*args: object) -> Outcome:
    """``tabrl ARGS`` in this process, its output captured; an exception escapes as a failure."""
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with mock.patch.object(sys, "argv", ["tabrl", *map(str, args)]), redirect_stdout(out), \
            redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry of ``folder``: a regular file's bytes, else what it is (never opened)."""
    entries: dict[str, bytes | str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            entries[entry.name] = f"link to {os.readlink(entry)}"
        elif entry.is_file():
            entries[entry.name] = entry.read_bytes()
        else:
            entries[entry.name] = "special"
    return entries


def assert_kept_its_promise(outcome: Outcome) -> None:
    assert outcome.seconds < SECONDS_PER_COMMAND, outcome
    assert "Traceback" not in outcome.stderr
    if outcome.code != 0:
        lines = [line for line in outcome.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
        assert outcome.code in (1, 2, 130), outcome


# --- command lines ----------------------------------------------------------------------------

NASTY_NUMBERS = ["0", "-1", "1", "2", "7", "0.5", "-0.5", "1e308", "-1e308", "nan", "inf",
                 "-inf", str(2**31), str(2**63), str(2**64), "100000000000000000000",
                 str(-(2**63)), "1_0", "0x10", "", " ", "abc", "true", "[1,2]", "{a: 1}"]
TRAIN_OPTIONS = ["--episodes", "--learning-rate", "--discount", "--epsilon-start",
                 "--epsilon-end", "--epsilon-decay-episodes", "--epsilon-schedule",
                 "--epsilon-exponent", "--learning-rate-exponent", "--learning-rate-schedule",
                 "--seed", "--eval-episodes", "--env-kwargs", "--bins", "--obs-bounds", "--algo",
                 "--exploration", "--temperature", "--temperature-schedule", "--ucb-c", "--n",
                 "--lam", "--planning-steps", "--max-steps", "--window", "--no-such-option"]
WORDS = ["q-learning", "qlearning", "sarsa", "dyna-q", "softmax", "ucb", "visits", "linear",
         "is_slippery=maybe", "is_slippery=false", "map_name=8x8", "map_name=9x9", "sab=2",
         "kind=exponential,start=0.5,end=0.01,rate=0.9", "kind=log", "desc=[SF,HG]", "=", ",",
         "5,5", "-1:1", "a=1,a=2", "\x00", "é"]
values = st.one_of(st.sampled_from(NASTY_NUMBERS), st.sampled_from(WORDS),
                   st.integers(-(2**70), 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(max_size=12))


@FUZZ
@given(options=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), values), min_size=1,
                        max_size=3),
       env_id=st.sampled_from(["FrozenLake-v1", "CliffWalking-v1", "FrozenLak-v1",
                               "CartPole-v1"]))
def test_any_command_line_of_train(options, env_id):
    """Small runs (at most 20 episodes unless an option asks for more and is refused) either
    finish or fail with one line, leaving no folder behind."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        args = ["train", env_id, "--episodes", "20", "--eval-episodes", "5", "--engine",
                "python", "--quiet", "--out", out]
        for option, value in options:
            if option == "--episodes" or option == "--eval-episodes":
                value = value if not value.isdigit() or int(value) > 500_000_000 else "20"
            args += [option, value]
        outcome = run_cli(*args)
        assert_kept_its_promise(outcome)
        if outcome.code != 0:
            assert not out.exists(), outcome.stderr
        else:
            assert outcome.stdout.strip() == str(out)


@FUZZ
@given(command=st.sampled_from(["evaluate", "plot", "compare", "sweep", "solve", "envs"]),
       options=st.lists(st.tuples(st.sampled_from(["--episodes", "--seed", "--window", "--jobs",
                                                   "--seeds", "--discount", "--grid",
                                                   "--backend", "--bogus"]), values),
                        min_size=1, max_size=2))
def test_any_options_of_the_other_commands(tiny_run, command, options):
    """The other commands, on a copy of a real run folder, refuse bad options in one line."""
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        shutil.copytree(tiny_run, run)
        target = {"evaluate": [run], "plot": [run], "compare": [run, run],
                  "sweep": ["FrozenLake-v1", "--out", Path(scratch) / "sweep", "--jobs", "1",
                            "--seeds", "1", "--grid", "episodes=5"],
                  "solve": ["FrozenLake-v1", "--out", Path(scratch) / "solution"],
                  "envs": []}[command]
        args = [command, *target]
        for option, value in options:
            if option in ("--episodes", "--seeds") and value.isdigit() and int(value) > 1000:
                value = "5"  # a valid but long evaluation or sweep is not what this tests
            args += [option, value]
        before = snapshot(run)
        outcome = run_cli(*args)
        assert_kept_its_promise(outcome)
        if outcome.code != 0:
            assert snapshot(run) == before
            assert sorted(p.name for p in Path(scratch).iterdir()) == ["run"]


# --- damaged run folders ----------------------------------------------------------------------

def flip_bit(data: bytes, position: float) -> bytes:
    """``data`` with one bit flipped, at ``position`` (0..1) of its length."""
    bit = min(int(position * len(data) * 8), len(data) * 8 - 1)
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def huge_header_npz(shape: tuple[int, ...], descr: str) -> bytes:
    """An archive whose q.npy declares ``shape`` with no data behind it."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("q.npy", member)
    return buffer.getvalue()


JSON_NASTIES = st.one_of(
    st.sampled_from(["fast", [0.1], None, True, -1, 1.5, 2**70, {"a": 1}, float("nan"), ""]),
    st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
CONFIG_KEYS = ["env_id", "env_kwargs", "algo", "episodes", "learning_rate", "discount",
               "epsilon_start", "epsilon_end", "epsilon_decay_episodes", "seed", "engine",
               "max_steps", "chunk_episodes", "eval_episodes", "window", "epsilon_schedule",
               "epsilon_exponent", "learning_rate_exponent", "learning_rate_schedule",
               "checkpoint_seconds", "algo_params", "bins", "obs_bounds", "no_such_setting"]


@st.composite
def damage(draw):
    """One damage, drawn whole: its kind, the file it hits, whether every reader must refuse
    the result, and a function that applies it to a run folder."""
    kind = draw(st.sampled_from(["truncate", "flip", "config", "state", "deep", "shape",
                                 "dtype", "pickle", "npy", "fifo", "link", "missing"]))
    name = draw(st.sampled_from(["config.json", "state.json", "q_table.npz"]))
    position = draw(st.floats(0, 1))
    key = draw(st.sampled_from(CONFIG_KEYS if kind == "config"
                               else ["episodes_done", "epsilon", "finished"]))
    value = draw(JSON_NASTIES)
    depth = draw(st.integers(1_000, 200_000))
    shape = draw(st.tuples(st.integers(2**20, 2**40), st.integers(1, 2**30)))
    dtype = draw(st.sampled_from([np.int8, np.float32, np.complex128, np.bool_, "U3"]))

    def apply(run: Path) -> None:
        path = run / name
        if kind == "truncate":  # short of the last two bytes: JSON loses its brace, a zip its end
            data = path.read_bytes()
            path.write_bytes(data[: int(position * (len(data) - 2))])
        elif kind == "flip":
            path.write_bytes(flip_bit(path.read_bytes(), position))
        elif kind in ("config", "state"):
            file = run / f"{kind}.json"
            content = json.loads(file.read_text())
            (content["config"] if kind == "config" else content)[key] = value
            file.write_text(json.dumps(content))
        elif kind == "deep":
            (run / "config.json").write_text("[" * depth + "]" * depth)
        elif kind == "shape":
            (run / "q_table.npz").write_bytes(huge_header_npz(shape, "<f8"))
        elif kind == "dtype":
            (run / "q_table.npz").write_bytes(npz_bytes(
                q=np.zeros((16, 4), dtype), visits=np.zeros((16, 4), np.int64),
                keys=np.arange(16), episodes_done=np.array(30), epsilon=np.array(0.9)))
        elif kind == "pickle":
            (run / "q_table.npz").write_bytes(npz_bytes(
                q=np.array([{"a": 1}, None], dtype=object), visits=np.zeros(2),
                keys=np.arange(2), episodes_done=np.array(1), epsilon=np.array(0.5)))
        elif kind == "npy":
            buffer = io.BytesIO()
            np.save(buffer, np.zeros((16, 4)))
            (run / "q_table.npz").write_bytes(buffer.getvalue())
        elif kind == "fifo":
            path.unlink()
            os.mkfifo(path)
        elif kind == "link":
            outside = run.parent / f"outside-{name}"
            shutil.move(path, outside)
            path.symlink_to(outside)
        elif kind == "missing":
            path.unlink()

    must_fail = kind not in ("flip", "config", "state", "dtype")
    return kind, name, must_fail, apply


@settings(FUZZ, max_examples=100)
@given(damaged=damage(), command=st.sampled_from([
    ["evaluate", "{run}", "--episodes", "5"], ["plot", "{run}"],
    ["train", "--resume", "{run}", "--episodes", "40", "--eval-episodes", "5"],
    ["compare", "{run}", "{run}", "--out", "{scratch}/cmp.png"]]))
def test_any_damaged_run_folder(tiny_run, damaged, command):
    """A damaged copy of a real run folder: every command answers in one line (exit 1) when it
    cannot trust the folder, and then changes nothing and creates nothing."""
    kind, name, must_fail, apply = damaged
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        shutil.copytree(tiny_run, run)
        apply(run)
        before, entries = snapshot(run), sorted(Path(scratch).iterdir())
        outcome = run_cli(*(part.format(run=run, scratch=scratch) for part in command))
        assert_kept_its_promise(outcome)
        if must_fail:
            assert outcome.code == 1, (kind, name, outcome)
        if outcome.code != 0:
            assert snapshot(run) == before, (kind, name)
            assert sorted(Path(scratch).iterdir()) == entries


@pytest.mark.parametrize("name", ["config.json", "state.json", "q_table.npz"])
def test_a_fifo_does_not_hang_any_command(tiny_run, tmp_path, name):
    """The tester's hang: a FIFO in place of a run file blocked every command forever."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / name).unlink()
    os.mkfifo(run / name)
    for command in (["evaluate", run], ["plot", run], ["train", "--resume", run],
                    ["compare", run, run]):
        outcome = run_cli(*command)
        assert outcome.code == 1 and "not a regular file" in outcome.stderr, outcome
