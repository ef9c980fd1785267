"""tabrl's command line with the wall time of its phases recorded, for ``bench.e2e``.

    python -m bench.timed_cli OUT.json train Blackjack-v1 --episodes 1000000 ...

Runs exactly what the ``tabrl`` script runs (``tabrl.app.cli.script`` with the same arguments),
after wrapping the few functions that are each a phase of ``tabrl train`` in a timer. The
wrappers cost a clock read per call (a few hundred calls in a run), unlike a profiler, which
would slow the per-step Python of the evaluation and the drawing down. Each phase is timed
exclusively: a phase called inside another (reading the metrics while drawing the curves)
counts in its own phase only; the metrics are written, read back and checked by
``MetricsStore`` and ``Run.metrics``. Imports deferred into a phase count in it (numba in the
compile, matplotlib in the pictures): the user waits for them there. Phases run on the writer's
thread while the next chunk trains (metrics, checkpoints) are counted apart, as ``background``:
the user does not wait for them, except where the main thread waits for the writer
(``Writer.wait``, counted as metrics). ``OUT.json`` gets the
seconds per phase, the seconds in ``main`` and the process's peak memory: its resident set
(which counts the pages of memory-mapped metrics it read, pages the kernel may drop at will)
and, sampled every ``SAMPLE_SECONDS``, its anonymous memory (what it holds itself).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import functools  # noqa: E402  (the clock starts before anything is imported)
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: The phases of ``tabrl train``: (module, attribute path) of each function that is one.
PHASES = {
    "compile": [("tabrl.app.cli", "prepare_kernels")],
    "training": [("tabrl.training", "run_chunk")],
    "metrics": [*(("tabrl.metrics", f"MetricsStore.{name}")
                   for name in ("create", "write", "sync", "truncate", "read")),
                ("tabrl.app.runs", "Run.metrics"),  # read back: checked finite, memory-mapped
                ("tabrl.app.background", "Writer.wait")],  # the writer's last chunk, at the end
    "checkpoints": [("tabrl.app.workflow", "save_checkpoint")],
    "evaluation": [("tabrl.app.workflow", "evaluate_run")],
    "pictures": [("tabrl.app.workflow", "plot_run")],
}


SAMPLE_SECONDS = 0.05


class AnonymousPeak:
    """The largest ``RssAnon`` of this process, sampled on a daemon thread (Linux)."""

    def __init__(self) -> None:
        self.peak_kib = 0
        threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def now_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _sample(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, self.now_kib())
            time.sleep(SAMPLE_SECONDS)


class PhaseClock:
    """Seconds per phase, each phase's own: time spent in a nested phase is the nested one's.
    Phases of the main thread go to ``seconds``, those of other threads to ``background``."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.seconds: dict[str, float] = defaultdict(float)
        self.background: dict[str, float] = defaultdict(float)
        self._local = threading.local()  #: per thread, per open phase, its nested phases' time

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            nested = self._local.__dict__.setdefault("nested", [])
            nested.append(0.0)
            start = self.now()
            try:
                return function(*args, **kwargs)
            finally:
                took = self.now() - start
                main = threading.current_thread() is threading.main_thread()
                (self.seconds if main else self.background)[phase] += took - nested.pop()
                if nested:
                    nested[-1] += took
        return timed


def instrument(clock: PhaseClock) -> None:
    """Replace each phase's function by its timed wrapper where the callers look it up."""
    import importlib

    for phase, places in PHASES.items():
        for module_name, path in places:
            owner: Any = importlib.import_module(module_name)
            *outer, name = path.split(".")
            for part in outer:
                owner = getattr(owner, part)
            setattr(owner, name, clock.wrap(phase, getattr(owner, name)))


def main() -> None:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    from tabrl.app import cli

    clock, anonymous = PhaseClock(), AnonymousPeak()
    instrument(clock)
    sys.argv = ["tabrl", *argv]
    began, code = time.perf_counter(), 0
    try:
        cli.script()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    ended = time.perf_counter()
    out.write_text(json.dumps({
        "before_main": began - STARTED, "main": ended - began, "exit_code": code,
        "phases": dict(clock.seconds), "background": dict(clock.background),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_anonymous_mib": max(anonymous.peak_kib, anonymous.now_kib()) / 1024,
    }))
    sys.exit(code)


if __name__ == "__main__":
    main()
