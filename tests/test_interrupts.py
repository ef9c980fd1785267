"""A Ctrl-C or SIGTERM during a kernel's compile is never lost (``tabrl.interrupts``).

numba compiles partly in callbacks from LLVM through ctypes; a signal handled inside one raises
a ``KeyboardInterrupt`` that ctypes prints and drops. A real ctypes callback that signals its own
process stands in for LLVM's (the signal, the callback and the handler are all real).
"""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from tabrl.interrupts import interrupts_kept

CALLBACK = ctypes.CFUNCTYPE(None)


def signalled_in_callback(signum: int) -> None:
    """Send ``signum`` to this process from inside a C callback, as LLVM's would receive it."""

    def inside() -> None:
        os.kill(os.getpid(), signum)
        for _ in range(1000):  # the handler runs here, between bytecodes
            pass

    CALLBACK(inside)()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_dropped_in_a_callback_still_interrupts(signum, capfd):
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        signalled_in_callback(signum)
        compiled_on = True  # the compile went on: the interrupt must come at its end
    assert compiled_on
    assert "Exception ignored" not in capfd.readouterr().err
    assert signal.getsignal(signum) is before


def test_a_failure_after_a_dropped_signal_is_the_interrupt():
    """The half-made compile failing later (numba: "no compiled object yet") is the interrupt."""
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        signalled_in_callback(signal.SIGTERM)
        raise RuntimeError("no compiled object yet")


def test_without_a_signal_nothing_changes():
    with pytest.raises(RuntimeError, match="a real failure"), interrupts_kept():
        raise RuntimeError("a real failure")
    with interrupts_kept():
        pass


def test_an_ignored_signal_stays_ignored():
    """The workers of ``train --seeds`` ignore SIGINT (their parent stops them)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_kept():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
