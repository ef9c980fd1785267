"""Multi-seed statistics and hyperparameter sweeps, on this machine or a Ray cluster.

One training run says little: a tabular learner's result varies with the seed. A sweep trains
every setting of a grid with several seeds and reports, per setting, the mean, median and
interquartile mean of the greedy value with their stratified-bootstrap 95% intervals
(:mod:`tabrl.stats`: they never leave the range of the seeds' values, as a Student's t interval
can), and the distance to the exact optimum where the MDP is known (the greedy values are then
exact, so the intervals are about seeds alone, not about Monte Carlo noise). Jobs are independent:
``backend="local"`` spreads them over this machine's cores (compiled jobs on threads of this
process, python-engine ones in processes), ``backend="ray"`` over a Ray cluster in batches
(``address=None`` starts one on this machine; ``"auto"`` or ``"ray://host:10001"`` joins an
existing one). A job that fails is recorded with its error; the others go on.

A sweep folder keeps every finished job in ``trials/`` (a file per batch of jobs, written at
most seconds after they finish and when the sweep stops), and ``results.csv`` (one row per job)
beside ``sweep.json``: the same command run again with the same folder trains only the jobs that
are missing (or failed).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tabrl import kernel_cache
from tabrl.app.keyvalues import split_items
from tabrl.app.runs import ALGO_PARAMS, SWEEP, RunConfig, merged_algo_params, prepare_run_dir
from tabrl.app.tensorboard import BoardTarget, TrainingBoard, hparams_of
from tabrl.display import Facts, Shown
from tabrl.errors import RunFolderError, UsageError
from tabrl.evaluate import evaluate
from tabrl.exact.readers import known_mdp
from tabrl.fileio import atomic_write_bytes, atomic_write_json, read_json
from tabrl.kernel_cache import ENGINE, EXACT, KernelSet, prepare, training_kernels
from tabrl.schedules import as_schedule
from tabrl.stats import INTERVALS, Estimate, summarize_runs
from tabrl.training import EngineChoice, choose_engine, train

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BACKENDS = ("local", "ray")

#: ``progress(jobs_done, jobs_total)``
SweepProgress = Callable[[int, int], None]
#: The sweep folder's table of jobs and its folder of finished jobs.
RESULTS, TRIALS = "results.csv", "trials"
#: The columns of ``results.csv`` after the swept settings.
RESULT_COLUMNS = ("seed", "value", "final_return", "seconds", "engine", "error")
#: A job: a config (a dict, which pickles for processes and Ray), its setting index, a seed,
#: and where it logs for TensorBoard (None: nowhere).
Job = tuple[dict[str, Any], int, int, BoardTarget | None]
#: Ray tasks per core of the cluster: a few, so that a slow batch does not leave cores idle.
RAY_BATCHES_PER_CORE = 2


@dataclass(frozen=True)
class JobResult:
    """One (setting, seed) training: its greedy value and how its training ended."""

    setting: int  #: index of the setting in the sweep
    seed: int
    value: float  #: exact greedy value where the MDP is known, else the Monte Carlo mean return
    exact: bool
    final_return: float  #: mean training return over the last tenth of the episodes
    engine: str
    seconds: float
    error: str | None = None  #: why the job failed (its value is then NaN)
    #: the greedy learning curve (:mod:`tabrl.curve`): its values after these episodes
    curve_episodes: tuple[int, ...] = ()
    curve_values: tuple[float, ...] = ()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        """The job as a dict of its fields (``asdict`` without its deep copy of the curve,
        which took longer than the job's training in a sweep's main thread)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def figures(self) -> dict[str, Any]:
        """The job without its curve (which ``trials/`` keeps): an entry of ``sweep.json``."""
        return {k: v for k, v in self.to_dict().items() if not k.startswith("curve_")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        """A job as :meth:`SweepFolder.store` wrote it (non-finite numbers as strings)."""
        return cls(**{**data, "value": float(data["value"]),
                      "final_return": float(data["final_return"]),
                      "curve_episodes": tuple(map(int, data.get("curve_episodes", ()))),
                      "curve_values": tuple(map(float, data.get("curve_values", ())))})


@dataclass(frozen=True)
class SettingSummary:
    """The statistics of one setting over its seeds (the failed ones left out and counted)."""

    setting: dict[str, Any]
    n_seeds: int  #: seeds that finished
    n_failed: int
    mean: Estimate  #: each with its 95% stratified-bootstrap percentile interval over seeds
    median: Estimate
    iqm: Estimate
    std: float
    min: float
    max: float
    mean_final_return: float
    optimal_value: float | None
    exact: bool

    @property
    def gap(self) -> float | None:
        return None if self.optimal_value is None else self.optimal_value - self.mean.value


#: Settings a sweep's repr lists; ``.summaries`` holds them all.
SHOWN_SETTINGS = 8


@dataclass(frozen=True, repr=False)
class Sweep(Shown):
    """A finished sweep: per setting its label and summary, every job, and its folder if it has
    one. It shows itself as a few facts (``repr``, a table in Jupyter); :meth:`plot` draws what
    ``sweep.png`` shows."""

    title: str
    labels: list[str]
    summaries: list[SettingSummary]
    jobs: list[JobResult]
    n_seeds: int
    path: Path | None = None

    @classmethod
    def of(cls, configs: list[RunConfig], names: list[str], summaries: list[SettingSummary],
           jobs: list[JobResult], n_seeds: int, path: Path | None = None) -> Sweep:
        title = f"{configs[0].algo} on {configs[0].env_id}: {n_seeds} seeds per setting"
        return cls(title, setting_labels(configs, names), summaries, jobs, n_seeds, path)

    def values(self) -> list[np.ndarray]:
        """Per setting, the greedy values of the seeds that finished."""
        return [np.array([r.value for r in self.jobs if r.setting == i and not r.failed])
                for i in range(len(self.labels))]

    def facts(self) -> tuple[str, Facts]:
        optimum = self.summaries[0].optimal_value
        rows = [("each setting", "greedy value: mean [95% interval], IQM, optimum - mean")]
        if optimum is not None:
            rows.append(("optimum", f"{optimum:+.4g}"))
        for label, s in list(zip(self.labels, self.summaries))[:SHOWN_SETTINGS]:
            gap = "" if s.gap is None or math.isnan(s.gap) else f", gap {s.gap:+.3g}"
            failed = f", {s.n_failed} failed" if s.n_failed else ""
            rows.append((label, f"{estimate_text(s.mean, s.n_seeds)}, IQM {s.iqm.value:+.4g}"
                                f"{gap}{failed}"))
        if len(self.labels) > SHOWN_SETTINGS:
            rows.append(("...", f"{len(self.labels) - SHOWN_SETTINGS} more settings: .summaries"))
        if self.path is not None:
            rows.append(("folder", str(self.path)))
        return f"Sweep: {self.title}", rows

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per setting (by label) whose seeds recorded the same points, the greedy learning
        curves: the episodes and a ``seeds x points`` array of values."""
        curves = {}
        for i, label in enumerate(self.labels):
            jobs = [r for r in self.jobs if r.setting == i and not r.failed and r.curve_episodes]
            if jobs and len({r.curve_episodes for r in jobs}) == 1:
                curves[label] = (np.array(jobs[0].curve_episodes),
                                 np.array([r.curve_values for r in jobs]))
        return curves

    def plot(self, title: str = "") -> Figure:
        """A new figure: a row per setting, every seed a dot, the mean and the IQM with their
        intervals, the optimum dashed; beside it, where the jobs kept them, each setting's
        greedy learning curves as a band over its seeds (``sweep.png``)."""
        from tabrl.plots.curves import sweep_figure

        interval = INTERVALS.format(n=self.n_seeds)
        return sweep_figure(self.labels, self.values(),
                            {"mean": [s.mean for s in self.summaries],
                             "IQM": [s.iqm for s in self.summaries]},
                            optimal_value=self.summaries[0].optimal_value,
                            title=title or self.title, interval=interval, curves=self.curves())


def estimate_text(estimate: Estimate, n_seeds: int) -> str:
    """``+0.7292 [0.714, 0.7402]`` (4 significant digits); a lone seed has no interval, a
    looping policy no finite value."""
    if math.isnan(estimate.value):
        return "- (every seed failed)"
    if not math.isfinite(estimate.value):
        return f"{estimate.value:+} (a policy loops)"
    if n_seeds < 2:
        return f"{estimate.value:+.4g} (one seed: no interval)"
    return f"{estimate.value:+.4g} [{estimate.low:.4g}, {estimate.high:.4g}]"


def sweep(
    env_id: str,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int = 8,
    *,
    algo: str = "q-learning",
    env_kwargs: dict[str, Any] | None = None,
    backend: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    **settings: Any,
) -> Sweep:
    """Train every setting of ``grid`` with seeds ``0..seeds-1``, in memory (``tabrl sweep``
    without its folder), on ``jobs`` local processes (default: every core) or Ray.

    ``grid`` maps a setting to its values (``{"learning_rate": [0.05, 0.1]}``), ``settings``
    fixes others for every job (``episodes=5_000``, ``engine="python"``, an agent's own
    ``n=2``); both take the names of ``tabrl sweep --grid`` (:func:`grid_names`).
    """
    known = grid_names()
    grid = dict(grid or {})
    for name in [*grid, *settings]:
        if name not in known:
            raise UsageError(f"{name!r} is not a setting: use one of {', '.join(sorted(known))}")
    for name, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise UsageError(f"grid[{name!r}] must be a non-empty list of values, not {values!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"seeds must be a whole number >= 1, not {seeds!r}")
    own = {name: settings.pop(name) for name in list(settings) if name in ALGO_PARAMS}
    base = RunConfig.resolve(env_id, env_kwargs, algo, algo_params=own, **settings)
    configs = expand(base, {name: list(values) for name, values in grid.items()})
    summaries, results = run_sweep(configs, list(range(seeds)), backend=backend, n_jobs=jobs,
                                   address=address)
    return Sweep.of(configs, list(grid), summaries, results, seeds)


def grid_names() -> set[str]:
    """What a sweep may vary: the run's settings and the agents' own keywords."""
    fixed = {"env_id", "env_kwargs", "algo", "algo_params"}
    return (set(RunConfig.__dataclass_fields__) - fixed) | set(ALGO_PARAMS)


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["learning_rate=0.02,0.05", "n=2,4"]`` -> ``{"learning_rate": [0.02, 0.05], "n": [2, 4]}``.

    Names are the run's settings or the agents' own keywords (``ALGO_PARAMS``); values are read
    as YAML, so a schedule is a flow mapping: ``temperature_schedule={kind: constant, start: 1,
    end: 1, rate: 0},{kind: exponential, start: 30, end: 0.5, rate: 0.9988}``.
    """
    import yaml

    known = grid_names()
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values:
            raise UsageError(f"malformed --grid {item!r}: write name=value,value, e.g. "
                             "learning_rate=0.02,0.05")
        if name not in known:
            raise UsageError(
                f"--grid {name!r} is not a setting: use one of {', '.join(sorted(known))}"
            )
        try:
            grid[name] = [yaml.safe_load(value) for value in split_items(values)]
        except yaml.YAMLError:
            raise UsageError(f"cannot read the values of --grid {item!r}: write them as YAML, "
                             "e.g. temperature_schedule={kind: constant, start: 1, end: 1, "
                             "rate: 0}") from None
    return grid


def expand(base: RunConfig, grid: dict[str, list[Any]]) -> list[RunConfig]:
    """Every combination of the grid's values applied to ``base`` (the grid's order kept)."""
    names = list(grid)
    settings = []
    for values in itertools.product(*(grid[name] for name in names)):
        changes = dict(zip(names, values))
        if "episodes" in changes and "epsilon_decay_episodes" not in changes:
            changes["epsilon_decay_episodes"] = max(1, changes["episodes"] // 2)
        if changes.get("learning_rate_schedule") is not None:  # as train's option does
            changes["learning_rate"] = as_schedule(changes["learning_rate_schedule"]).start
            changes["learning_rate_exponent"] = None
        algo_params = {name: changes.pop(name) for name in list(changes) if name in ALGO_PARAMS}
        config = replace(base, **changes,
                         algo_params=merged_algo_params(base.algo_params, algo_params))
        if (found := config.problem()) is not None:
            raise UsageError(f"--grid {found[0]} {found[1]}")
        settings.append(config)
    return settings


def setting_labels(configs: list[RunConfig], names: list[str]) -> list[str]:
    """``"learning_rate=0.05, episodes=20000"`` per config, from the grid's own names (a
    schedule in its few words)."""
    def value(config: RunConfig, name: str) -> Any:
        chosen = setting_value(config, name)
        return as_schedule(chosen).describe() if isinstance(chosen, dict) else chosen

    return [", ".join(f"{name}={value(config, name)}" for name in names) or "defaults"
            for config in configs]


def run_job(config: dict[str, Any], setting: int, seed: int,
            board: BoardTarget | None = None) -> JobResult:
    """Train one setting with one seed and value its greedy policy (the unit a worker runs),
    logged to TensorBoard if a ``board`` is given.

    Any error is returned as the job's result, in one line, so that one failing job does not
    stop the others (nor lose their results).
    """
    start = time.perf_counter()
    try:
        return train_and_value(config, setting, seed, board)
    except Exception as error:  # any failure: recorded with the job, reported in the table
        first_line = str(error).partition("\n")[0]
        return JobResult(setting, seed, math.nan, False, math.nan, "", time.perf_counter() - start,
                         error=f"{type(error).__name__}: {first_line}" if first_line
                         else type(error).__name__)


def train_and_value(config: dict[str, Any], setting: int, seed: int,
                    target: BoardTarget | None = None) -> JobResult:
    """One job's training and its greedy value: exact where the MDP is known, else Monte Carlo."""
    from tabrl.exact.dp import policy_value

    run_config = replace(RunConfig(**config), seed=seed)
    plan = _PLANS.get(_plan_key(config))  # a job of a local sweep; else as tabrl train does
    engine = None if plan is None else plan.engine
    env = run_config.make_env()
    agent = run_config.make_agent(env)
    start = time.perf_counter()
    with ExitStack() as open_board:
        board = None if target is None else open_board.enter_context(
            TrainingBoard(target.folder, run_config.episodes, agent.learning_rate_schedule))
        training = train(env, agent, run_config.episodes, seed=seed,
                         engine=run_config.engine if engine is None else engine,
                         max_steps=run_config.max_steps, chunk_episodes=run_config.chunk_episodes,
                         chunk_steps=run_config.chunk_steps,
                         on_chunk=None if board is None else board.after_chunk,
                         curve_points=run_config.curve_points)
        # the setting's MDP, read from the environment as this one is (not the one ``train``
        # may read through a step cap, whose horizon a value must not have)
        mdp = engine.mdp if engine is not None and engine.mdp is not None else known_mdp(env)
        if mdp is not None:
            value = policy_value(mdp, agent.q_values.greedy_policy())
        else:
            value = evaluate(agent, env, run_config.eval_episodes, seed=seed + 1_000_003,
                             max_steps=run_config.max_steps).mean_return
        if board is not None:
            board.finish_job(hparams_of(run_config, target.extra), value, mdp)
    tail = max(1, len(training.log) // 10)
    return JobResult(setting, seed, float(value), mdp is not None,
                     float(training.log.returns[-tail:].mean()), training.engine.name,
                     time.perf_counter() - start, None,
                     tuple(training.curve.episodes.tolist()), tuple(training.curve.values.tolist()))


def _run_local(jobs: list[Job], n_jobs: int) -> Iterator[JobResult]:
    """Compiled jobs in this process on ``n_jobs`` threads, the others in ``n_jobs`` processes.

    A compiled job is mostly one kernel call that releases the GIL, so threads run them side by
    side with no interpreter to start and nothing to import again: a trial then costs about its
    training. Python-engine jobs hold the GIL and need processes.
    """
    try:
        plans = _plans([job[0] for job in jobs])
        compiled = [job for job, plan in zip(jobs, plans) if plan.kernels is not None]
        others = [job for job, plan in zip(jobs, plans) if plan.kernels is None]
        yield from _run_threads(compiled, [plan.kernels for plan in plans
                                           if plan.kernels is not None],
                                n_jobs)
        if n_jobs == 1 or len(others) <= 1:
            yield from (run_job(*job) for job in others)
            return
        # Fresh interpreters, not forks: a fork of a process whose numba threads run can hang.
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
            yield from _as_completed(pool, others)
    finally:
        _PLANS.clear()  # the settings' MDPs, held while their jobs run


def _run_threads(jobs: list[Job], kernels: list[KernelSet], n_jobs: int
                 ) -> Iterator[JobResult]:
    """Jobs on threads of this process (one after the other where numba's threading layer is
    not thread-safe, as its ``workqueue`` fallback is not)."""
    if not jobs:
        return
    # Once, before the threads, and only the kernels the jobs train with: a kernel compiles in
    # one thread, not in all.
    for kernel_set in dict.fromkeys(kernels):
        prepare(kernel_set)
    import numba

    from tabrl.compiled.engine import numba_threads

    # A job's kernel trains one run on one thread: a team of numba threads would only wake its
    # idle members at every slice of the kernel (a hundred per job for its curve), and have
    # them spin for cores that other work needs.
    if n_jobs == 1 or numba.threading_layer() == "workqueue":
        with numba_threads(1):
            yield from (run_job(*job) for job in jobs)
        return
    with ThreadPoolExecutor(max_workers=n_jobs, initializer=numba.set_num_threads,
                            initargs=(1,)) as pool:
        yield from _as_completed(pool, jobs)


def _as_completed(pool: Executor, jobs: list[Job]) -> Iterator[JobResult]:
    """Each job's result as soon as it finishes (so that the sweep folder stores it at once).

    Stopped (a Ctrl-C, or its reader gone), it cancels the jobs not yet started: the pool then
    waits for the running ones only, not for every job of the sweep.
    """
    futures = [pool.submit(run_job, *job) for job in jobs]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


@dataclass(frozen=True)
class _Plan:
    """What every job of a setting shares in a process: the engine ``tabrl train`` chooses for
    it, with its MDP (read once, compiled once, not per job), and that engine's kernels.

    The MDP is read from the environment as made, without the step cap that ``train`` puts on
    one without a time limit: the kernels cut its episodes at ``max_steps`` all the same, and
    the job's exact value is of the environment's own MDP, as ``tabrl train`` evaluates it.
    """

    engine: EngineChoice | None  #: None: the setting cannot be made (its jobs record why)
    kernels: KernelSet | None  #: None: off the compiled engine


#: Plans by setting (:func:`_plan_key`), of the local sweep running: made by
#: :func:`_run_local` before its jobs start, dropped when they end (a job run alone, as
#: ``tabrl tune`` runs its trials, makes its own).
_PLANS: dict[str, _Plan] = {}


def _plan_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _plan(config: dict[str, Any]) -> _Plan:
    """The plan of the setting ``config`` (a job's config without its seed), kept in
    ``_PLANS``."""
    key = _plan_key(config)
    if key not in _PLANS:
        try:
            run_config = RunConfig(**config)
            env = run_config.make_env()
            try:
                agent = run_config.make_agent(env)
                engine = choose_engine(env, run_config.engine, agent)
                _PLANS[key] = _Plan(engine, training_kernels([agent])
                                    if engine.name == "compiled" else None)
            finally:
                env.close()
        except Exception:  # a broken setting fails in its job, where the error is recorded
            _PLANS[key] = _Plan(None, None)
    return _PLANS[key]


def _plans(configs: list[dict[str, Any]]) -> list[_Plan]:
    """The plans of the settings ``configs``: each one's own, except that where the method
    kernels still to compile would take longer than the kernel of every method (a sweep over
    many methods on a first run), their settings take that one instead."""
    plans = [_plan(config) for config in configs]
    cold = {plan.kernels for plan in plans
            if plan.kernels not in (None, ENGINE) and not kernel_cache.is_ready(plan.kernels)}
    if sum(kernels.seconds for kernels in cold) <= ENGINE.seconds:
        return plans
    for key, plan in _PLANS.items():
        if plan.kernels in cold:
            _PLANS[key] = replace(plan, kernels=ENGINE)
    return [_plan(config) for config in configs]


def sweep_kernels(configs: list[RunConfig], backend: str) -> list[KernelSet]:
    """The kernels a sweep needs in this process, checking its settings first (bad input fails
    before any wait): the training kernels of its compiled settings (Ray's workers load their
    own), and the exact solver's where the MDP is known (the trials' values, the optimum).
    The command line compiles them first, to announce a first compile as ``train`` does."""
    check_configs(configs)
    training = [] if backend == "ray" else [
        plan.kernels for plan in _plans([asdict(config) for config in configs]) if plan.kernels]
    exact = [EXACT] if known_mdp(configs[0].make_env()) is not None else []
    return [*dict.fromkeys(training), *exact]


def check_backend(backend: str) -> None:
    """A one-line error for an unknown backend, or Ray's when Ray is not installed."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("the ray backend needs Ray: pip install 'tabrl[ray]'") from None


def _run_ray(jobs: list[Job], address: str | None) -> Iterator[JobResult]:
    """Jobs in batches, a Ray task each: a task then costs its trials, not a worker's start.

    Each task holds the one core Ray gives it and runs its batch there, one job after the other;
    a few batches per core keep the cores busy when batches take unequal times.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        cores = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(run_batch)
        pending = [remote.remote(batch) for batch in batches(jobs, RAY_BATCHES_PER_CORE * cores)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for results in ray.get(done):
                yield from results
    finally:
        if started_here:
            ray.shutdown()


def batches(jobs: list[Job], n_batches: int) -> list[list[Job]]:
    """``jobs`` dealt into at most ``n_batches`` batches of nearly equal sizes."""
    n = min(len(jobs), n_batches)
    return [jobs[i::n] for i in range(n)]


def run_batch(jobs: list[Job]) -> list[JobResult]:
    """A batch of jobs on one core: what one Ray task runs."""
    return list(_run_local(jobs, 1))


def run_sweep(
    configs: list[RunConfig],
    seeds: list[int],
    *,
    backend: str = "local",
    n_jobs: int | None = None,
    address: str | None = None,
    progress: SweepProgress | None = None,
    finished: Iterable[JobResult] = (),
    on_result: Callable[[JobResult], None] | None = None,
    boards: list[Path] | None = None,
) -> tuple[list[SettingSummary], list[JobResult]]:
    """Train every config with every seed; summarise per config.

    ``finished`` jobs (a resumed sweep's) are not trained again; ``on_result`` sees every new
    job as it finishes (to store it at once). With ``boards`` (a folder per config), each job
    is logged to TensorBoard as the run ``seed-<seed>`` in its config's folder.
    """
    check_backend(backend)
    if not seeds:
        raise UsageError("a sweep needs at least one seed")
    check_configs(configs)
    wanted = [(index, seed) for index in range(len(configs)) for seed in seeds]
    stored = {(r.setting, r.seed): r for r in finished}
    results = {key: stored[key] for key in wanted if key in stored}
    settings = [asdict(config) for config in configs]
    jobs = [(settings[index], index, seed,
             None if boards is None else BoardTarget(boards[index] / f"seed-{seed}"))
            for index, seed in wanted if (index, seed) not in results]
    total = len(configs) * len(seeds)
    if progress is not None:
        progress(len(results), total)
    if backend == "ray" and jobs:
        results_iter = _run_ray(jobs, address)
    else:
        results_iter = _run_local(jobs, n_jobs or os.cpu_count() or 1)
    with closing(results_iter):  # stopped here too: the jobs not started are dropped at once
        for result in results_iter:
            results[result.setting, result.seed] = result
            if on_result is not None:
                on_result(result)
            if progress is not None:
                progress(len(results), total)
    ordered = [results[key] for key in sorted(results)]
    optimum = _optimal_value(configs[0])
    return [summarize(configs[i], [r for r in ordered if r.setting == i], optimum)
            for i in range(len(configs))], ordered


def check_configs(configs: list[RunConfig]) -> None:
    """Fail on bad input before any work starts (and before any folder is made)."""
    for config in configs:
        config.make_agent(config.make_env())


def _optimal_value(config: RunConfig) -> float | None:
    from tabrl.exact.dp import solve

    mdp = known_mdp(config.make_env())
    return None if mdp is None else solve(mdp).value


def summarize(config: RunConfig, results: list[JobResult], optimum: float | None) -> SettingSummary:
    """Mean, median and IQM of a setting's values over its seeds, with their stratified-bootstrap
    95% intervals; failed seeds are counted apart."""
    done = [r for r in results if not r.failed]
    values = np.array([r.value for r in done])
    if values.size:
        robust = summarize_runs(values)
        estimates = robust.mean, robust.median, robust.iqm
        spread = (float(values.std(ddof=1)) if values.size > 1 else 0.0,
                  float(values.min()), float(values.max()))
        final_return = float(np.mean([r.final_return for r in done]))
    else:  # every seed failed: nothing to estimate
        estimates = (Estimate(math.nan, math.nan, math.nan),) * 3
        spread, final_return = (math.nan,) * 3, math.nan
    return SettingSummary(
        setting=asdict(config), n_seeds=values.size, n_failed=len(results) - len(done),
        mean=estimates[0], median=estimates[1], iqm=estimates[2], std=spread[0], min=spread[1],
        max=spread[2], mean_final_return=final_return, optimal_value=optimum,
        exact=bool(done) and all(r.exact for r in done),
    )


class SweepFolder:
    """A sweep's folder: its plan (``sweep.json``), every finished job (``trials/``) and the
    table of jobs (``results.csv``), each written atomically.

    Finished jobs are written in batches, at most ``STORE_SECONDS`` after they finish, a file of
    ``trials/`` per batch, and ``results.csv`` again with them: a file synced per job took
    longer than the job's training (two atomic writes of about 20 ms each on this machine, the
    table rewritten whole each time). :meth:`flush` writes the jobs held at once, as a sweep
    does when it ends or is interrupted.

    The same plan (the same settings) in the same folder is a resumed sweep: the jobs already
    stored are kept, and failed jobs run again. Another plan there is refused, so that nothing
    is overwritten.
    """

    #: The longest a finished job waits in memory before it is written.
    STORE_SECONDS = 2.0

    def __init__(self, path: Path, configs: list[RunConfig], names: list[str]) -> None:
        self.path, self.configs, self.names = path, configs, names
        self._held: list[JobResult] = []
        self._written = time.monotonic()

    @classmethod
    def open(cls, path: Path, configs: list[RunConfig], names: list[str],
             plan: dict[str, Any]) -> SweepFolder:
        """Start a sweep in ``path``, or resume the one with the same settings there."""
        plan = json.loads(json.dumps({**plan, "configs": [asdict(c) for c in configs]}))
        if (path / SWEEP).is_file() and (path / TRIALS).is_dir():
            saved = read_json(path / SWEEP, "the sweep's plan")
            if not isinstance(saved, dict) or saved.get("configs") != plan["configs"]:
                raise UsageError(f"{path} holds a sweep of other settings: choose another --out "
                                 "(the same command resumes its own sweep)")
        else:
            prepare_run_dir(path, "choose another --out (the same command resumes its own sweep)")
            (path / TRIALS).mkdir()
            atomic_write_json(path / SWEEP, plan)
        return cls(path, configs, names)

    def finished(self) -> list[JobResult]:
        """The jobs stored so far that succeeded (a failed job is tried again).

        A file of ``trials/`` holds a batch of jobs (a list), or one job (an object: a batch
        of one, as sweeps wrote each job before batches).
        """
        results = {}
        for trial in sorted((self.path / TRIALS).glob("*.json")):
            data = read_json(trial, "a file of finished sweep jobs")
            try:
                jobs = [JobResult.from_json(job) for job in
                        (data if isinstance(data, list) else [data])]
            except (TypeError, KeyError, ValueError):
                raise RunFolderError(f"{trial} is not a file of tabrl sweep jobs: remove it"
                                     ) from None
            results.update(((job.setting, job.seed), job) for job in jobs if not job.failed)
        return [results[key] for key in sorted(results)]

    def store(self, result: JobResult, results: Iterable[JobResult]) -> None:
        """Hold one finished job; write the jobs held and the table of all of them
        (``results``, this one among) once ``STORE_SECONDS`` have passed since the last write."""
        self._held.append(result)
        if time.monotonic() - self._written >= self.STORE_SECONDS:
            self.flush(results)

    def flush(self, results: Iterable[JobResult]) -> None:
        """Write the jobs held, as one new file of ``trials/``, then ``results.csv``."""
        if self._held:
            # a job a line: json's C encoder (an indented file takes its Python one, slower)
            lines = ",\n".join(json.dumps(_json_numbers(job.to_dict())) for job in self._held)
            atomic_write_bytes(self._new_trials_file(), f"[\n{lines}\n]\n".encode())
            self._held = []
            self.write_results(results)
        self._written = time.monotonic()

    def _new_trials_file(self) -> Path:
        """``trials/<setting>-<seed>+<more jobs>.json`` after the batch's first job, a name no
        earlier batch has (one whose first job failed and runs again here may)."""
        first, more = self._held[0], len(self._held) - 1
        name = f"{first.setting}-{first.seed}" + (f"+{more}" if more else "")
        path, again = self.path / TRIALS / f"{name}.json", 1
        while path.exists():
            again += 1
            path = self.path / TRIALS / f"{name}~{again}.json"
        return path

    def write_results(self, results: Iterable[JobResult]) -> None:
        """``results.csv``: one row per job, every swept setting as a column."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([*self.names, *RESULT_COLUMNS])
        for r in sorted(results, key=lambda r: (r.setting, r.seed)):
            config = self.configs[r.setting]
            writer.writerow([*(_csv_value(setting_value(config, name)) for name in self.names),
                             r.seed, r.value, r.final_return, round(r.seconds, 3), r.engine,
                             r.error or ""])
        atomic_write_bytes(self.path / RESULTS, text.getvalue().encode())


def setting_value(config: RunConfig, name: str) -> Any:
    """The value of a swept setting in a config (an agent keyword or a run setting)."""
    return config.algo_params.get(name) if name in ALGO_PARAMS else getattr(config, name)


def _csv_value(value: Any) -> Any:
    """A schedule (a dict) as the flow mapping ``--grid`` reads; other values as they are."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def _json_numbers(data: Any) -> Any:
    """NaN and infinities as strings: JSON has no such numbers, and float() reads these back."""
    if isinstance(data, dict):
        return {key: _json_numbers(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_json_numbers(value) for value in data]
    return str(data) if isinstance(data, float) and not math.isfinite(data) else data
