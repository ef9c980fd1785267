"""Work done on the second core: the kernels release the GIL, so a chunk's metrics are written,
and the pictures' libraries imported and warmed up, while the next chunk trains; and a run's two
pictures are drawn side by side, one in a forked copy of the process (drawing holds the GIL).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


class Writer:
    """Jobs run in order on one background thread, one at a time.

    ``submit`` first waits for the job before (so memory holds at most the chunk being written
    and the chunk being trained) and raises its error, if it failed, in the caller's thread;
    ``wait`` does the same without a new job. A job's error is raised once.
    """

    def __init__(self, name: str = "tabrl-writer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(job, *args)

    def wait(self) -> None:
        """Wait for the last job; raise its error here. An interrupted wait (Ctrl-C) keeps the
        job pending, so that the next wait still waits for it."""
        pending = self._pending
        if pending is None:
            return
        try:
            pending.result()
        finally:
            if pending.done():
                self._pending = None

    def close(self) -> None:
        """Wait for the last job, its error not raised (the caller is already failing, or has
        waited), and end the thread."""
        self._pool.shutdown(wait=True)


def beforehand(task: Callable[[], object]) -> threading.Thread:
    """Run ``task`` (imports, warm-ups) on a daemon thread while the kernel trains; join it
    before the main thread imports or draws anything (two threads importing side by side can
    deadlock on a cycle). Its errors are dropped: the real use says why, where it fails."""

    def run() -> None:
        try:
            task()
        except Exception:  # noqa: BLE001, S110  the real use raises it again, where it belongs
            return

    thread = threading.Thread(target=run, name="tabrl-beforehand", daemon=True)
    thread.start()
    return thread


#: Whether :func:`forked` may fork this process: only the ``tabrl`` program allows it
#: (:func:`allow_forks`), in a process that is tabrl's alone. Called as a library (in a notebook,
#: a test runner, a Ray driver), tabrl never forks its host, whose threads and sockets a copy
#: would share: it draws one picture after the other.
_forks_allowed = False


def allow_forks() -> None:
    """Let :func:`forked` fork this process (the ``tabrl`` program's own)."""
    global _forks_allowed
    _forks_allowed = True


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler that makes SIGTERM stop the process as Ctrl-C does."""
    raise KeyboardInterrupt


@contextmanager
def forked(task: Callable[[], object]) -> Iterator[Callable[[], bool]]:
    """Run ``task`` in a forked copy of this process, on another core, while the body runs;
    yield ``finished``, which waits for it and tells whether it succeeded.

    The copy gives back nothing but the files it writes, and exits without the parent's exit
    handlers; its errors are not shown: ``finished() is False`` (also where no copy is made:
    outside the ``tabrl`` program, off Linux, where forking a process that runs threads is less
    safe, or on a single core), and the caller then runs the task itself, where an error speaks
    as usual. The task must not start threads of numba's (its OpenMP layer does not survive a
    fork). Leaving the block early (Ctrl-C) interrupts the copy, which removes its half-written
    files as the parent does.
    """
    if not _forks_allowed or sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2:
        yield lambda: False
        return
    pid = os.fork()
    if pid == 0:  # the copy: never returns into the parent's code
        code = 1
        try:
            signal.signal(signal.SIGTERM, raise_interrupt)
            task()
            code = 0
        finally:
            os._exit(code)
    status: list[int] = []

    def finished() -> bool:
        if not status:
            status.append(os.waitpid(pid, 0)[1])
        return os.waitstatus_to_exitcode(status[0]) == 0

    try:
        yield finished
    finally:
        if not status:
            os.kill(pid, signal.SIGTERM)
            finished()
