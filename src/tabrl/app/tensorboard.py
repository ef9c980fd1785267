"""TensorBoard logs of training, under the tags CleanRL and Stable-Baselines3 users know.

``--tensorboard DIR`` on ``train``, ``sweep`` and ``tune`` writes one TensorBoard run per tabrl
run, and per setting (or trial) and seed in a sweep (or a tuning), with tensorboardX, so that
``tensorboard --logdir DIR`` shows them side by side. The global step (the x axis) is the number
of episodes done, as in tabrl's budgets, chunks and ``curves.png``; CleanRL counts environment
steps instead, which ``charts/SPS`` measures.

A run of any length writes at most ``MAX_POINTS`` points per tag: its episodes fall in buckets of
``ceil(episodes / MAX_POINTS)``, and each point stands for the bucket that ends at its step:

- ``charts/episodic_return``, ``charts/episodic_length``, ``losses/td_error``: the means over
  the bucket's episodes (the metrics' own columns);
- ``charts/epsilon``, ``charts/learning_rate``: the schedules' values at its last episode (the
  learning rate of a first visit, for a rate by visits);
- ``charts/SPS``, ``charts/episodes_per_second``: the speed of the chunk it ends in.

and ``charts/greedy_value``, the greedy learning curve (:mod:`tabrl.curve`: exact where the MDP
is known), at its own points (``--curve-points``, 100 by default).

After the evaluation, at the last step: ``eval/mean_return`` (Monte Carlo), ``eval/greedy_value``
(exact) and ``eval/optimal_value`` where the MDP is known; and the run's settings as HParams, with
those figures and the last mean return as metrics.

A resumed run writes into the same TensorBoard run from its checkpoint's episode on: the events
beyond it (chunks a kill made it play again) are marked for TensorBoard to drop
(``purge_step``), and the bucket the checkpoint cut is refilled from the run's metrics, so that
the curve is the one an uninterrupted run draws. A finished run resumed with more episodes keeps
its first ending's evaluation beside the new one, and its first HParams (TensorBoard reads a
run's first).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tabrl.app.runs import RunConfig, writable_dir
from tabrl.errors import UsageError
from tabrl.loop import TrainingLog
from tabrl.metrics import MetricsStore
from tabrl.schedules import Schedule
from tabrl.training import Training

if TYPE_CHECKING:
    from tabrl.agents import TabularAgent
    from tabrl.evaluate import Evaluation
    from tabrl.exact.mdp import TabularMDP

MAX_POINTS = 1000  #: points per tag, whatever the run's length
#: How often the writer's thread flushes (tensorboardX's default, 120 s, would hide a short run's
#: progress from a live TensorBoard, and lose more points before a checkpoint to a kill).
FLUSH_SECONDS = 2
#: The tags of the per-episode outcomes in the metrics, averaged over a bucket.
MEAN_TAGS = {"return": "charts/episodic_return", "length": "charts/episodic_length",
             "td_error": "losses/td_error"}
EPSILON, LEARNING_RATE = "charts/epsilon", "charts/learning_rate"
GREEDY_CURVE = "charts/greedy_value"  #: the greedy learning curve's points
SPS, EPISODES_PER_SECOND = "charts/SPS", "charts/episodes_per_second"
MEAN_RETURN, GREEDY_VALUE = "eval/mean_return", "eval/greedy_value"
OPTIMAL_VALUE = "eval/optimal_value"
INSTALL = "--tensorboard needs tensorboardX: pip install 'tabrl[tensorboard]'"


def require_writer() -> None:
    """A one-line error unless tensorboardX is installed (an optional extra)."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL) from None


def board_root(path: Path) -> Path:
    """Check, before any run starts, that TensorBoard runs can be written under ``path``;
    returned absolute, for worker processes that may run elsewhere (Ray's)."""
    require_writer()
    return writable_dir(path, "choose another --tensorboard folder").resolve()


@dataclass(frozen=True)
class BoardTarget:
    """Where one TensorBoard run goes, and what it records beside the run's settings (a tuning
    trial's sampled parameters). A sweep's worker process opens it: it pickles."""

    folder: Path
    extra: dict[str, Any] = field(default_factory=dict)


def bucket_size(episodes: int) -> int:
    """Episodes per point: ``MAX_POINTS`` points at most over ``episodes``."""
    return max(1, -(-episodes // MAX_POINTS))


class TrainingBoard:
    """One TensorBoard run: a training's points, then its evaluation and its HParams.

    ``start`` is the episode the training starts at (a resumed run's checkpoint), ``carried``
    the episodes of the bucket in progress there (read back from the run's metrics).
    """

    def __init__(self, folder: Path, episodes: int, learning_rate: Schedule, start: int = 0,
                 carried: TrainingLog | None = None) -> None:
        require_writer()
        from tensorboardX import SummaryWriter

        # TensorBoard drops this run's earlier events after ``start``: chunks a kill made it
        # play again, or all of a sweep's job tried again. tensorboardX names a file after the
        # second it opens: a suffix in nanoseconds keeps a resume within the same second from
        # overwriting the file before it (and sorts after it, as the reader needs)
        self.writer = SummaryWriter(str(folder), purge_step=start + 1, flush_secs=FLUSH_SECONDS,
                                    filename_suffix=f".{time.time_ns()}")
        self.episodes, self.every = episodes, bucket_size(episodes)
        self.learning_rate = learning_rate
        self.pending = carried if carried is not None else TrainingLog.empty(0)
        self.done = start
        self.last_return: float | None = None

    def __enter__(self) -> TrainingBoard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.writer.close()

    def after_chunk(self, training: Training) -> None:
        """The points of the buckets that end in the chunk ``training`` has just played, and
        its greedy curve's, written in the order of their steps: TensorBoard's reader takes a
        step lower than one before it for the restart of a killed run, and drops what follows."""
        chunk = training.chunk_log
        log = TrainingLog.concatenate([self.pending, chunk])
        first, self.done = training.episodes_done - len(log), training.episodes_done
        ends = list(range((first // self.every + 1) * self.every, self.done + 1, self.every))
        if self.done == self.episodes and self.done % self.every:
            ends.append(self.done)  # the last bucket, shorter than the others
        speed = {SPS: float(chunk.lengths.sum()), EPISODES_PER_SECOND: float(len(chunk))}
        speed = {tag: count / chunk.seconds for tag, count in speed.items() if chunk.seconds > 0}
        curve = training.chunk_curve
        points = [(episode, GREEDY_CURVE, value) for episode, value in
                  zip(curve.episodes.tolist(), curve.values.tolist(), strict=True)
                  if math.isfinite(value)]  # a policy that never ends has no point to draw
        begin = 0
        for end in ends:
            rows = rows_of(log, begin, end - first)
            points += [(end, tag, float(np.mean(rows.columns()[name])))
                       for name, tag in MEAN_TAGS.items()]
            points += [(end, EPSILON, float(rows.epsilons[-1])),
                       (end, LEARNING_RATE, self.learning_rate.at(end - 1))]
            points += [(end, tag, value) for tag, value in speed.items()]
            self.last_return, begin = float(np.mean(rows.returns)), end - first
        self.pending = rows_of(log, begin, len(log))
        for step, tag, value in sorted(points, key=lambda point: point[0]):
            self.writer.add_scalar(tag, value, step)

    def finish_run(self, config: RunConfig, evaluation: Evaluation | None) -> None:
        """A run folder's ending: its evaluation's figures (if evaluated), its settings."""
        self.finish({} if evaluation is None else evaluation_figures(evaluation),
                    hparams_of(config))

    def finish_job(self, hparams: dict[str, Any], value: float, mdp: TabularMDP | None) -> None:
        """A sweep job's or a tuning trial's ending: its greedy value (exact, beside the optimum,
        where the MDP is known, else by Monte Carlo) and its settings."""
        from tabrl.exact.dp import solve

        figures = ({GREEDY_VALUE: value, OPTIMAL_VALUE: solve(mdp).value} if mdp is not None
                   else {MEAN_RETURN: value})
        self.finish(figures, hparams)

    def finish(self, figures: dict[str, float | None], hparams: dict[str, Any]) -> None:
        """The evaluation's ``figures`` (None or infinite: not written) at the last step, and
        ``hparams`` with them and the last mean return as metrics."""
        from tensorboardX.summary import hparams as hparams_summaries

        written = {tag: float(value) for tag, value in figures.items()
                   if value is not None and math.isfinite(value)}
        for tag, value in written.items():
            self.writer.add_scalar(tag, value, self.done)
        if self.last_return is not None:
            written[MEAN_TAGS["return"]] = self.last_return
        # into the run's own folder: tensorboardX's add_hparams would start another run beside it
        for summary in hparams_summaries(hparams, written):
            self.writer.file_writer.add_summary(summary, self.done)


def rows_of(log: TrainingLog, begin: int, end: int) -> TrainingLog:
    """Episodes ``begin`` to ``end`` (excluded) of ``log``."""
    return TrainingLog.from_columns({name: column[begin:end]
                                     for name, column in log.columns().items()})


def hparams_of(config: RunConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's settings as HParams: the method's own beside the others, schedules, keywords and
    bins as JSON text (HParams hold numbers, strings and booleans), unset ones left out."""
    settings = asdict(config)
    own = settings.pop("algo_params")
    return {name: value if isinstance(value, str | int | float | bool)
            else json.dumps(value, sort_keys=True)
            for name, value in {**settings, **own, **(extra or {})}.items() if value is not None}


def evaluation_figures(evaluation: Evaluation) -> dict[str, float | None]:
    """The ``eval/`` figures of a run's :class:`~tabrl.evaluate.Evaluation`."""
    exact = evaluation.exact or {}
    return {MEAN_RETURN: evaluation.mean_return, GREEDY_VALUE: exact.get("policy_value"),
            OPTIMAL_VALUE: exact.get("optimal_value")}


def run_name(label: str) -> str:
    """A sweep setting's label as a folder name: ``learning_rate=0.05,episodes=2000``."""
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", label.replace(", ", ","))


def setting_folders(root: Path, labels: list[str]) -> list[Path]:
    """One TensorBoard folder per sweep setting, named after its label (numbered if two labels
    would give one name); each seed is a run in it."""
    names = [run_name(label) for label in labels]
    if len(set(names)) < len(names):
        names = [f"{i}-{name}" for i, name in enumerate(names)]
    return [root / name for name in names]



def run_board(root: Path, path: Path, config: RunConfig, agent: TabularAgent,
              resumed: Training | None) -> TrainingBoard:
    """The TensorBoard run of the run folder ``path``, named after it; a ``resumed`` run gets
    its bucket in progress back from its metrics."""
    start, carried = 0, None
    if resumed is not None:
        start = resumed.episodes_done
        columns = MetricsStore(path).read(start)
        begin = start // bucket_size(config.episodes) * bucket_size(config.episodes)
        carried = TrainingLog.from_columns({name: np.array(column[begin:])
                                            for name, column in columns.items()})
    return TrainingBoard(root / path.resolve().name, config.episodes,
                         agent.learning_rate_schedule, start, carried)
