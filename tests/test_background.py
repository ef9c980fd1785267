"""The writer thread of a training: in order, one job at a time, its errors raised in the
trainer's thread once. The forked copy that draws a picture beside the parent: its file, its
failure told without a word, and never left running."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from tabrl.app import background
from tabrl.app.background import Writer, beforehand, forked
from tabrl.fileio import DiskWriteError


def test_a_job_is_done_before_the_next_is_handed_over():
    writer, done = Writer(), []

    def slow(name: str) -> None:
        time.sleep(0.05)
        done.append((name, threading.current_thread() is threading.main_thread()))

    writer.submit(slow, "first")
    writer.submit(slow, "second")  # waits for the first: at most one chunk being written
    assert done == [("first", False)]
    writer.wait()
    assert done == [("first", False), ("second", False)]
    writer.close()


def test_a_failed_job_raises_in_the_callers_thread_once():
    writer, done = Writer(), []

    def full_disk() -> None:
        raise DiskWriteError("cannot write metrics/return.npy (No space left on device)")

    writer.submit(full_disk)
    with pytest.raises(DiskWriteError, match="No space left"):
        writer.submit(done.append, "never")
    assert done == []
    writer.wait()  # raised once: nothing pending now
    writer.submit(full_disk)
    writer.close()  # waits for the job, its error not raised (the caller is failing already)


two_cores = pytest.mark.skipif(sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
                               reason="forks only on Linux with two cores")


@pytest.fixture
def forks_allowed(monkeypatch):
    """As in the ``tabrl`` program (``cli.script``); tabrl called as a library never forks."""
    monkeypatch.setattr(background, "_forks_allowed", True)


def test_tabrl_called_as_a_library_never_forks_its_host():
    ran: list[int] = []
    with forked(lambda: ran.append(os.getpid())) as finished:
        assert not finished()  # the caller runs the task itself
    assert ran == []


@two_cores
def test_a_forked_task_writes_its_file_in_another_process(tmp_path, forks_allowed):
    def write_pid() -> None:
        (tmp_path / "pid").write_text(str(os.getpid()))

    with forked(write_pid) as finished:
        assert finished()
        assert finished()  # asked twice: the same answer, the copy reaped once
    assert int((tmp_path / "pid").read_text()) != os.getpid()


@two_cores
def test_a_failed_forked_task_is_told_without_a_word(capfd, forks_allowed):
    def fail() -> None:
        raise ValueError("in the copy")

    with forked(fail) as finished:
        assert not finished()  # the caller then runs the task itself, where errors speak
    assert capfd.readouterr() == ("", "")


@two_cores
def test_leaving_early_interrupts_the_copy_which_cleans_up(tmp_path, forks_allowed):
    """An interruption of the parent ends the copy at once; a copy interrupted inside
    ``try/finally`` runs its ``finally``, as atomic writes rely on."""
    def wait_then_note() -> None:
        try:
            time.sleep(60)
        finally:
            (tmp_path / "cleaned").touch()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), forked(wait_then_note):
        time.sleep(0.3)  # the copy is sleeping now
        raise KeyboardInterrupt
    assert time.monotonic() - started < 10
    assert (tmp_path / "cleaned").exists()


def test_a_task_beforehand_runs_on_another_thread_and_its_error_is_dropped():
    ran: list[bool] = []

    def note() -> None:
        ran.append(threading.current_thread() is threading.main_thread())

    def fail() -> None:
        raise ImportError("the real import says it again")

    beforehand(note).join()
    beforehand(fail).join()  # nothing raised here
    assert ran == [False]


def test_the_pictures_warm_up_draws_on_a_thread_of_its_own():
    """What ``train`` runs while the kernel trains: the pictures' modules and a first figure."""
    from tabrl.app.workflow import warm_pictures

    done: list[bool] = []
    beforehand(lambda: (warm_pictures(), done.append(True))).join()
    assert done == [True]
