"""The phase timer of ``bench/timed_cli.py`` (the end-to-end benchmark's): it wraps functions
that exist in tabrl, and counts each phase's own time. No timings: a fake clock."""

from __future__ import annotations

import importlib
import threading

import pytest

from bench.timed_cli import PHASES, PhaseClock


def test_every_phase_names_a_function_of_tabrl():
    for places in PHASES.values():
        for module, path in places:
            owner = importlib.import_module(module)
            for part in path.split("."):
                owner = getattr(owner, part)
            assert callable(owner), (module, path)


def test_a_phase_inside_another_counts_in_its_own_only():
    ticks = iter(range(100))
    clock = PhaseClock(now=lambda: float(next(ticks)))
    read = clock.wrap("metrics", lambda: "read")
    draw = clock.wrap("pictures", lambda: read() + " and drawn")
    assert draw() == "read and drawn"
    # pictures start at 0, metrics run from 1 to 2, pictures end at 3
    assert clock.seconds == {"metrics": 1.0, "pictures": 2.0}
    assert read() == "read"  # 4 to 5
    assert clock.seconds == {"metrics": 2.0, "pictures": 2.0}


def test_a_failing_phase_is_timed_and_its_error_goes_on():
    ticks = iter(range(100))
    clock = PhaseClock(now=lambda: float(next(ticks)))

    def fails() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        clock.wrap("evaluation", fails)()
    assert clock.seconds == {"evaluation": 1.0}


def test_a_phase_on_another_thread_counts_apart_as_background():
    ticks = iter(range(100))
    clock = PhaseClock(now=lambda: float(next(ticks)))
    write = clock.wrap("metrics", lambda: None)
    worker = threading.Thread(target=write)
    worker.start()
    worker.join()
    assert clock.background == {"metrics": 1.0} and clock.seconds == {}
