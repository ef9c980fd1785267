"""A multi-seed folder's seeds trained side by side, in worker processes.

Each seed is trained exactly as ``tabrl train --seed S`` would (:func:`workflow.train_run`:
chunks, checkpoints, evaluation, pictures), so seed S of a folder is that run bit for bit. Most
of a seed's time holds the interpreter's lock: its pictures are matplotlib (about 1.5 s), and an
evaluation on the real environment (``--eval-on env``) steps it in Python (10,000 episodes of
CliffWalking take 4.5 s), while its compiled training of a few thousand episodes takes
milliseconds. Threads would take turns
there; fresh interpreters (``spawn``, as the sweep's, never forks of a process whose numba
threads run) truly share the cores, on both engines.

The workers share a few numbers with this process: each seed's episodes done and recent mean
return (one progress bar for the folder) and a stop flag. Ctrl-C reaches this process alone (the
workers ignore SIGINT), which raises the flag, as SIGTERM to it does; a worker sees it at its
next progress report (every quarter second of a training, every second of an evaluation), keeps
its last checkpoint and returns, so that every seed folder is left consistent.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tabrl.app.runs import EVALUATION, POLICY, RunConfig, load_run
from tabrl.errors import TabrlError

#: Seconds between two looks of this process at the workers' progress.
LOOK_EVERY = 0.25
#: ``progress(episodes_done, recent_mean_return, seeds_done)`` over the whole folder.
FolderProgress = Callable[[int, float, int], None]


@dataclass(frozen=True)
class SeedTask:
    """One seed's work: a new run with ``config``, or (``config`` None) the folder's own run
    at ``path`` continued: resumed if unfinished, evaluated and drawn if an interruption
    stopped that."""

    index: int  #: its slot in the tally
    path: Path
    config: RunConfig | None
    board: Path | None  #: the folder's TensorBoard folder, if logged


class Tally:
    """What the workers share with this process: each seed's episodes done and recent mean
    return, and the stop flag (plain lists and an event when the seeds train in this process)."""

    def __init__(self, done: list[int], context: Any = None) -> None:
        n = len(done)
        if context is None:
            self.done: Any = list(done)
            self.means: Any = [math.nan] * n
            self.stop: Any = threading.Event()
        else:  # written by one worker each, read here: no lock needed
            self.done = context.Array("q", done, lock=False)
            self.means = context.Array("d", [math.nan] * n, lock=False)
            self.stop = context.Event()
        self.listener: Callable[[], None] | None = None  #: told of every report (in-process)

    def report(self, index: int, done: int, mean: float) -> None:
        self.done[index], self.means[index] = done, mean
        if self.listener is not None:
            self.listener()
        self.check()

    def check(self) -> None:
        """Stop this worker's run (its checkpoint kept) once the flag is up."""
        if self.stop.is_set():
            raise KeyboardInterrupt

    def episodes(self) -> int:
        return sum(self.done)

    def mean_return(self) -> float:
        means = [mean for mean in self.means if not math.isnan(mean)]
        return sum(means) / len(means) if means else math.nan


#: The tally of the seeds this process trains (set by :func:`_join` in a worker).
_tally: Tally | None = None


def _join(tally: Tally) -> None:
    """A worker's start: its tally, and Ctrl-C left to the parent (which raises the flag)."""
    global _tally
    _tally = tally
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_seed(task: SeedTask) -> bool:
    """Train one seed's run to its end (or continue it); False if the stop flag stopped it,
    its last checkpoint kept."""
    from tabrl.app.workflow import prepare_resume, prepare_run, train_run

    tally = _tally
    assert tally is not None, "train_seed runs where _join has set the tally"

    def progress(done: int, mean: float) -> None:
        tally.report(task.index, done, mean)

    try:
        tally.check()  # a seed the flag caught before it began stays as it was
        if task.config is not None:
            prepared = prepare_run(task.config, task.path)
        elif load_run(task.path).finished:
            complete_run(task.path, tally)
            return True
        else:
            prepared = prepare_resume(task.path)
        train_run(prepared, progress=progress, say=lambda _: None, tensorboard=task.board,
                  evaluation_progress=lambda done, total: tally.check())
    except KeyboardInterrupt:
        return False
    return True


def is_complete(path: Path) -> bool:
    """Whether a finished run has what ``train_run`` makes after its training: its evaluation
    (if it has one) and its pictures (the last thing drawn)."""
    run = load_run(path)
    evaluated = run.config.eval_episodes == 0 or (path / EVALUATION).exists()
    return run.finished and evaluated and (path / POLICY).exists()


def complete_run(path: Path, tally: Tally) -> None:
    """Evaluate and draw a finished run whose evaluation or pictures were interrupted."""
    from tabrl.app.workflow import evaluate_run, locked, plot_run

    with locked(path):
        run = load_run(path)
        if run.config.eval_episodes > 0 and not (path / EVALUATION).exists():
            evaluate_run(run, progress=lambda done, total: tally.check())
        plot_run(run)


def run_tasks(tasks: list[SeedTask], done: list[int], jobs: int,
              show: Callable[[Tally, int], None]) -> None:
    """Run ``tasks`` on ``jobs`` worker processes (in this process if one is enough), calling
    ``show(tally, tasks_finished)`` a few times a second; ``done`` holds the episodes each
    slot of the tally starts with.

    Ctrl-C (a ``KeyboardInterrupt`` here) raises the stop flag, waits for every worker to keep
    its checkpoint, and is raised again; so is a seed's error, after the others stopped.
    """
    global _tally
    if jobs == 1 or len(tasks) == 1:
        _tally = tally = Tally(done)
        finished = 0
        tally.listener = lambda: show(tally, finished)
        for task in tasks:
            if not train_seed(task):
                raise KeyboardInterrupt
            finished += 1
            show(tally, finished)
        return
    context = get_context("spawn")
    tally = Tally(done, context)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_join,
                             initargs=(tally,)) as pool:
        with sigint_ignored():  # the workers start now, and keep ignoring it
            futures = [pool.submit(train_seed, task) for task in tasks]
        try:
            watch(futures, lambda finished: show(tally, finished))
        except BaseException:  # Ctrl-C, or a seed's error: the others stop, keeping their work
            tally.stop.set()
            for future in futures:
                future.cancel()
            wait(futures)
            raise


def watch(futures: list[Future], show: Callable[[int], None]) -> None:
    """Wait for the workers, showing their progress; a seed's error is raised as soon as it
    comes (and ``KeyboardInterrupt`` if a worker was stopped)."""
    pending = set(futures)
    finished = 0
    while pending:
        ended, pending = wait(pending, timeout=LOOK_EVERY, return_when=FIRST_COMPLETED)
        for future in ended:
            try:
                completed = future.result()
            except BrokenProcessPool:
                raise TabrlError("a worker process ended abruptly (killed, or out of memory): "
                                 "every seed keeps its last checkpoint") from None
            if not completed:
                raise KeyboardInterrupt
            finished += 1
        show(finished)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while worker processes are started: they inherit that, so that Ctrl-C
    reaches this process alone (a fresh interpreter keeps an ignored SIGINT ignored). Only the
    main thread may set a handler: elsewhere the workers start as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
