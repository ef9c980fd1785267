"""The writer thread of a training: in order, one job at a time, its errors raised in the
trainer's thread once."""

from __future__ import annotations

import threading
import time

import pytest

from tabrl.app.background import Writer
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
