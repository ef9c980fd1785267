"""Work done on the second core while the first trains: the kernels release the GIL, so a chunk's
metrics are written, and the pictures' libraries imported, while the next chunk trains.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


def prefetch(*modules: str) -> threading.Thread:
    """Import ``modules`` on a daemon thread; join it before importing anything else in the main
    thread (two threads importing side by side can deadlock on a cycle)."""

    def load() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001, S110  the import where the module is used says why
                return

    thread = threading.Thread(target=load, name="tabrl-prefetch", daemon=True)
    thread.start()
    return thread
