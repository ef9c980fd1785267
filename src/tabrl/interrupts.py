"""A Ctrl-C or SIGTERM never lost in numba's callbacks into Python.

numba calls back into Python while it compiles (LLVM's callbacks) and, for some kernels, while
they run (constants unpickled on the way): a ``KeyboardInterrupt`` raised there is printed as
"Exception ignored", or cleared, and lost. :func:`interrupts_kept` notes each signal as it is
handled and raises the interrupt once the call is over.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """A Ctrl-C or SIGTERM during a compile, or a kernel call that calls back, is never lost.

    numba compiles partly inside callbacks from LLVM, where the ``KeyboardInterrupt`` a signal
    raises is printed as "Exception ignored" and dropped: the compile then went on (the command
    ignored the signal) or failed later on the half-made code, with a traceback. Here each signal
    is noted as it is raised, dropped ones go unprinted, and a compile that returns, or fails,
    after one raises ``KeyboardInterrupt``. Signals that are ignored stay ignored (the workers of
    ``train --seeds``); off the main thread, where no handler can be set, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: object) -> None:
        caught.append(signum)
        raise KeyboardInterrupt

    def unprinted(unraisable: Any) -> None:  # a dropped interrupt is in ``caught`` already
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            printed(unraisable)

    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    previous = {s: signal.signal(s, note) for s in handled}
    printed, sys.unraisablehook = sys.unraisablehook, unprinted
    try:
        yield
    except Exception:
        if caught:
            raise KeyboardInterrupt from None
        raise
    finally:
        sys.unraisablehook = printed
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt
