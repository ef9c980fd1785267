"""Many seeds in one command: a folder of run folders, their aggregate table and their curves.

```
runs/<env>-<algo>-seeds-<time>/
  seeds.json      the settings (every seed's but the seed), the seeds, what the intervals mean
  seed-0/ ...     one normal run folder per seed (evaluate, plot, enjoy, --resume accept it)
  aggregate.json  each seed's final greedy value; mean, median, IQM with their intervals
  aggregate.csv   the same estimates as a table: statistic,value,ci95_low,ci95_high,n_seeds
  curves.png      the curves of curves.png over seeds: IQM lines and bootstrap bands
```
The seeds train side by side, one worker process per core (:mod:`tabrl.app.seedpool`), each
exactly as `tabrl train --seed S` would (its chunks seeded from its own seed, its evaluation and
pictures), so seed S of the folder equals a single run of seed S bit for bit. (The compiled
engine's batch plays a whole run from one seed, not chunk by chunk, so its numbers would differ
from single runs: it is not used here.) Running the same command again with `--out` on the folder
continues it: finished seeds are kept, interrupted ones resume (or get the evaluation and
pictures an interruption stopped).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tabrl import plots
from tabrl.app.runs import (
    CURVES,
    MAX_SEED,
    STATE,
    Run,
    RunConfig,
    default_run_dir,
    load_run,
    prepare_run_dir,
)
from tabrl.app.seedpool import FolderProgress, SeedTask, Tally, is_complete, run_tasks
from tabrl.errors import RunFolderError, UsageError
from tabrl.fileio import atomic_write_bytes, atomic_write_json, read_json
from tabrl.stats import INTERVALS, Estimate, summarize_runs

SEEDS, AGGREGATE_JSON, AGGREGATE_CSV = "seeds.json", "aggregate.json", "aggregate.csv"
MAX_SEEDS = 10_000  #: seeds of one folder (each is a run folder)


def parse_seeds(text: str) -> list[int]:
    """``--seeds 10`` (seeds 0 to 9) or ``--seeds 3-7`` (3, 4, 5, 6, 7)."""
    first, dash, last = text.partition("-")
    try:
        low, high = (int(first), int(last)) if dash else (0, int(first) - 1)
    except ValueError:
        raise UsageError(f"--seeds {text!r} is neither a count nor a range: write 10 (seeds 0 "
                         "to 9) or 0-9") from None
    if low < 0 or high > MAX_SEED or high < low:
        raise UsageError(f"--seeds {text!r} names no seeds: give a count >= 1 or a range A-B "
                         f"with 0 <= A <= B <= {MAX_SEED}")
    if high - low + 1 > MAX_SEEDS:
        raise UsageError(f"--seeds {text!r} names {high - low + 1:,} seeds, more than "
                         f"{MAX_SEEDS:,} (each is a run folder)")
    return list(range(low, high + 1))


def seed_dir(folder: Path, seed: int) -> Path:
    return folder / f"seed-{seed}"


def is_seeds_folder(path: Path) -> bool:
    return (Path(path) / SEEDS).is_file()


@dataclass
class SeedsFolder:
    """A multi-seed folder read back: the shared settings, the seeds and their runs."""

    path: Path
    config: RunConfig
    seeds: list[int]

    @classmethod
    def load(cls, path: Path) -> SeedsFolder:
        data = read_json(path / SEEDS, "the seeds' plan")
        if not isinstance(data, dict) or not isinstance(data.get("seeds"), list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"]):
            raise RunFolderError(f"{path / SEEDS} is not a tabrl multi-seed plan")
        return cls(path, RunConfig.from_json(data.get("config"), path / SEEDS), data["seeds"])

    def runs(self) -> list[Run]:
        """Every seed's run folder (a missing one is a one-line error)."""
        missing = [s for s in self.seeds if not (seed_dir(self.path, s) / STATE).exists()]
        if missing:
            raise RunFolderError(f"{self.path} lacks the run of seed {missing[0]}: run the same "
                                 f"command again with --out {self.path} to train it")
        return [load_run(seed_dir(self.path, s)) for s in self.seeds]


def open_folder(config: RunConfig, seeds: list[int], out: Path | None) -> SeedsFolder:
    """A new multi-seed folder, or the one at ``out`` if it was made by the same command."""
    shared = replace(config, seed=0)
    if out is not None and is_seeds_folder(out):
        folder = SeedsFolder.load(out)
        if folder.config != shared or folder.seeds != seeds:
            raise UsageError(f"{out} holds the seeds of other settings: choose another --out, or "
                             "give the options it was made with")
        return folder
    path = prepare_run_dir(out or default_run_dir(config, kind="seeds"),
                           "choose another --out")
    atomic_write_json(path / SEEDS, {"seeds": seeds, "config": asdict(shared),
                                     "intervals": INTERVALS.format(n=len(seeds))})
    return SeedsFolder(path, shared, seeds)


@dataclass(frozen=True)
class SeedsPlan:
    """What a multi-seed command has left to do in its folder."""

    folder: SeedsFolder
    tasks: list[SeedTask]  #: the seeds to train, resume or complete
    done: list[int]  #: episodes each task's seed has done already
    complete: int  #: seeds already trained, evaluated and drawn

    def describe(self, jobs: int) -> str:
        """``seeds: 3 to train, 1 to continue, 2 done (2 processes side by side)``."""
        new = sum(task.config is not None for task in self.tasks)
        counts = {"to train": new, "to continue": len(self.tasks) - new, "done": self.complete}
        workers = min(jobs, len(self.tasks))
        side = f" ({workers} processes side by side)" if workers > 1 else ""
        return f"seeds: {', '.join(f'{n} {what}' for what, n in counts.items() if n)}{side}"


def plan_seeds(config: RunConfig, seeds: list[int], out: Path | None,
               tensorboard: Path | None = None) -> SeedsPlan:
    """Open the folder (a new one, or the same command's at ``out``) and list what is left: a
    seed without a run is trained, an unfinished one resumed, a finished one kept (TensorBoard:
    a run per seed under ``tensorboard/<folder>``)."""
    folder = open_folder(config, seeds, out)
    board = None if tensorboard is None else tensorboard / folder.path.resolve().name
    tasks, done, complete = [], [], 0
    for seed in seeds:
        path = seed_dir(folder.path, seed)
        if not (path / STATE).exists():
            tasks.append(SeedTask(len(tasks), path, replace(config, seed=seed), board))
            done.append(0)
        elif is_complete(path):
            complete += 1
        else:
            tasks.append(SeedTask(len(tasks), path, None, board))
            done.append(load_run(path).episodes_done)
    return SeedsPlan(folder, tasks, done, complete)


def train_seeds(plan: SeedsPlan, jobs: int,
                progress: FolderProgress | None = None) -> SeedsFolder:
    """Do what ``plan`` has left on ``jobs`` worker processes, the folder's ``progress`` shown a
    few times a second. Ctrl-C stops every seed at its last checkpoint (``KeyboardInterrupt``
    is raised once they all kept it); a seed's error stops the others the same way."""
    base = plan.complete * plan.folder.config.episodes

    def show(tally: Tally, finished: int) -> None:
        if progress is not None:
            progress(base + tally.episodes(), tally.mean_return(), plan.complete + finished)

    run_tasks(plan.tasks, plan.done, jobs, show)
    return plan.folder


def final_value(run: Run) -> float:
    """A run's final greedy value: exact where the MDP is known, else its Monte Carlo
    evaluation's mean return (the curve's last point if it was not evaluated)."""
    evaluation = run.evaluation()
    if evaluation is not None and evaluation.exact is not None:
        value = evaluation.exact["policy_value"]
        return -math.inf if value is None else float(value)  # null: it never ends
    if evaluation is not None and math.isfinite(evaluation.mean_return):
        return evaluation.mean_return
    curve = run.curve()
    if not len(curve):
        raise RunFolderError(f"{run.path} has neither an evaluation nor a learning curve: "
                             f"evaluate it with `tabrl evaluate {run.path}`")
    return float(curve.values[-1])


@dataclass(frozen=True)
class Aggregate:
    """The final greedy values of a folder's seeds and their robust estimates."""

    seeds: list[int]
    values: list[float]
    mean: Estimate
    median: Estimate
    iqm: Estimate
    exact: bool  #: the values are exact (the MDP is known), not Monte Carlo
    optimal_value: float | None
    stationary_value: float | None

    @property
    def intervals(self) -> str:
        return INTERVALS.format(n=len(self.seeds))

    def rows(self) -> list[tuple[str, Estimate]]:
        return [("mean", self.mean), ("median", self.median), ("IQM", self.iqm)]


def summarize_folder(folder: SeedsFolder) -> tuple[Aggregate, plots.SeedCurves,
                                                    plots.GreedyPanel]:
    """The folder's aggregate, its seeds' curves, and the greedy panel's references (nothing
    written)."""
    from tabrl.plots.agent import greedy_panel

    runs = folder.runs()
    values = np.array([final_value(run) for run in runs])
    robust = summarize_runs(values)
    panel = greedy_panel(folder.config.make_env(), {})
    result = Aggregate(folder.seeds, values.tolist(), robust.mean, robust.median, robust.iqm,
                       panel.optimal_value is not None, panel.optimal_value,
                       panel.stationary_value)
    curves = [run.curve() for run in runs]
    same = len({tuple(curve.episodes) for curve in curves}) == 1
    group = plots.SeedCurves(curves[0].episodes if same else np.zeros(0),
                             np.array([c.values for c in curves]) if same else np.zeros((0, 0)),
                             [run.metrics().columns() for run in runs])
    return result, group, panel


def aggregate(folder: SeedsFolder, window: int | None = None) -> Aggregate:
    """The folder's aggregate: computed, written (``aggregate.json``, ``aggregate.csv``) and
    drawn (``curves.png``)."""
    result, group, panel = summarize_folder(folder)
    write_aggregate(folder.path, result)
    plots.plot_seed_curves(
        {"": group}, folder.path / CURVES, window or folder.config.window, panel,
        title=f"{folder.config.algo} on {folder.config.env_id}: {len(folder.seeds)} seeds")
    return result


@dataclass(frozen=True)
class FolderComparison:
    """Multi-seed folders side by side: each one's aggregate, ``P(X > Y)`` with its interval for
    every pair (X before Y on the command line), and the pictures drawn."""

    folders: list[SeedsFolder]
    aggregates: list[Aggregate]
    improvements: list[tuple[int, int, Estimate]]
    curves: Path
    profile: Path


def compare_folders(paths: list[Path], picture: Path, window: int) -> FolderComparison:
    """Compare multi-seed folders: the probability that one's seed beats another's (with its
    stratified-bootstrap interval), the curves with bands on one picture, and the performance
    profiles (the share of seeds above each value) beside it in ``<picture>-profile.png``."""
    from tabrl.stats import improvement, profile_band

    folders = [SeedsFolder.load(Path(path)) for path in paths]
    summaries = [summarize_folder(folder) for folder in folders]
    labels = unique_labels(folders)
    aggregates = [result for result, _, _ in summaries]
    pairs = [(i, j, improvement(np.array(aggregates[i].values), np.array(aggregates[j].values)))
             for i in range(len(folders)) for j in range(i + 1, len(folders))]
    panel = summaries[0][2]
    config = folders[0].config
    n_seeds = sorted({len(f.seeds) for f in folders})
    title = f"{config.env_id}: {len(folders)} folders of {' or '.join(map(str, n_seeds))} seeds"
    curves = plots.plot_seed_curves({label: group for label, (_, group, _) in
                                     zip(labels, summaries)}, picture, window, panel, title)
    every = np.concatenate([a.values for a in aggregates])
    finite = every[np.isfinite(every)]
    taus = np.linspace(finite.min(), finite.max(), 201) if finite.size else np.zeros(1)
    profiles = {label: profile_band(np.array(a.values), taus)
                for label, a in zip(labels, aggregates)}
    profile = plots.plot_profiles(
        taus, profiles, picture.with_name(f"{picture.stem}-profile{picture.suffix}"),
        optimal_value=panel.optimal_value, title=title,
        xlabel="final greedy value" + ("" if aggregates[0].exact else " (Monte Carlo)"))
    return FolderComparison(folders, aggregates, pairs, curves, profile)


def unique_labels(folders: list[SeedsFolder]) -> list[str]:
    """Each folder's name, or its path where names repeat."""
    names = [folder.path.name for folder in folders]
    return names if len(set(names)) == len(names) else [str(f.path) for f in folders]


def write_aggregate(path: Path, result: Aggregate) -> None:
    """``aggregate.json`` (every figure; an infinite one, a policy that never ends, as null) and
    ``aggregate.csv`` (one row per estimate)."""
    from tabrl.app.workflow import json_safe

    atomic_write_json(path / AGGREGATE_JSON, json_safe({
        "what": "final greedy value" + ("" if result.exact else " (Monte Carlo)"),
        "n_seeds": len(result.seeds), "intervals": result.intervals,
        **{name.lower(): asdict(estimate) for name, estimate in result.rows()},
        "optimal_value": result.optimal_value, "stationary_value": result.stationary_value,
        "seeds": result.seeds, "values": result.values,
    }))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["statistic", "value", "ci95_low", "ci95_high", "n_seeds"])
    for name, estimate in result.rows():
        writer.writerow([name, *(repr(float(x)) for x in asdict(estimate).values()),
                         len(result.seeds)])
    atomic_write_bytes(path / AGGREGATE_CSV, text.getvalue().encode())


def aggregate_table_title(result: Aggregate) -> str:
    what = "exact final greedy value" if result.exact else "final greedy value (Monte Carlo)"
    return f"{what} ({result.intervals})"
