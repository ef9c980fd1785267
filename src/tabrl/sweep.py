"""Multi-seed statistics and hyperparameter sweeps, on this machine or a Ray cluster.

One training run says little: a tabular learner's result varies with the seed. A sweep trains
every setting of a grid with several seeds and reports, per setting, the mean greedy value with its
95% confidence interval (Student's t over seeds), its spread, and its distance to the exact optimum
where the MDP is known (the greedy values are then exact, so the interval is about seeds alone, not
about Monte Carlo noise). Jobs are independent: ``backend="local"`` spreads them over this
machine's cores in processes, ``backend="ray"`` over a Ray cluster (``address=None`` starts one
on this machine; ``"auto"`` or ``"ray://host:10001"`` joins an existing one).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from typing import Any

import numpy as np
from scipy import stats

from tabrl.errors import UsageError
from tabrl.evaluate import evaluate
from tabrl.keyvalues import split_items
from tabrl.mdp import known_mdp
from tabrl.runs import ALGO_PARAMS, RunConfig, merged_algo_params
from tabrl.schedules import as_schedule
from tabrl.training import train

BACKENDS = ("local", "ray")

#: ``progress(jobs_done, jobs_total)``
SweepProgress = Callable[[int, int], None]


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


@dataclass(frozen=True)
class SettingSummary:
    """The statistics of one setting over its seeds."""

    setting: dict[str, Any]
    n_seeds: int
    mean: float
    std: float
    ci95_low: float
    ci95_high: float
    min: float
    max: float
    mean_final_return: float
    optimal_value: float | None
    exact: bool

    @property
    def gap(self) -> float | None:
        return None if self.optimal_value is None else self.optimal_value - self.mean


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["learning_rate=0.02,0.05", "n=2,4"]`` -> ``{"learning_rate": [0.02, 0.05], "n": [2, 4]}``.

    Names are the run's settings or the agents' own keywords (``ALGO_PARAMS``); values are read
    as YAML, so a schedule is a flow mapping: ``temperature_schedule={kind: constant, start: 1,
    end: 1, rate: 0},{kind: exponential, start: 30, end: 0.5, rate: 0.9988}``.
    """
    import yaml

    settings = set(RunConfig.__dataclass_fields__) - {"env_id", "env_kwargs", "algo", "algo_params"}
    known = settings | set(ALGO_PARAMS)
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
        chosen = config.algo_params[name] if name in ALGO_PARAMS else getattr(config, name)
        return as_schedule(chosen).describe() if isinstance(chosen, dict) else chosen

    return [", ".join(f"{name}={value(config, name)}" for name in names) or "defaults"
            for config in configs]


def run_job(config: dict[str, Any], setting: int, seed: int) -> JobResult:
    """Train one setting with one seed and value its greedy policy (the unit a worker runs)."""
    import time

    from tabrl.dp import evaluate_policy_exact

    run_config = replace(RunConfig(**config), seed=seed)
    env = run_config.make_env()
    agent = run_config.make_agent(env)
    start = time.perf_counter()
    training = train(env, agent, run_config.episodes, seed=seed, engine=run_config.engine,
                     max_steps=run_config.max_steps, chunk_episodes=run_config.chunk_episodes)
    mdp = known_mdp(env)
    if mdp is not None:
        value = evaluate_policy_exact(mdp, agent.q_values.greedy_policy()).value
    else:
        value = evaluate(agent, env, run_config.eval_episodes, seed=seed + 1_000_003,
                         max_steps=run_config.max_steps).mean_return
    tail = max(1, len(training.log) // 10)
    return JobResult(setting, seed, float(value), mdp is not None,
                     float(training.log.returns[-tail:].mean()), training.engine.name,
                     time.perf_counter() - start)


def _run_local(jobs: list[tuple[dict, int, int]], n_jobs: int) -> Iterator[JobResult]:
    if n_jobs == 1:
        yield from (run_job(*job) for job in jobs)
        return
    # Fresh interpreters, not forks: a fork of a process whose numba threads already run can hang.
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
        yield from pool.map(run_job, *zip(*jobs))


def check_backend(backend: str) -> None:
    """A one-line error for an unknown backend, or Ray's when Ray is not installed."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("the ray backend needs Ray: pip install 'tabrl[ray]'") from None


def _run_ray(jobs: list[tuple[dict, int, int]], address: str | None) -> Iterator[JobResult]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(run_job)
        pending = [remote.remote(*job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(done)
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    configs: list[RunConfig],
    seeds: list[int],
    *,
    backend: str = "local",
    n_jobs: int | None = None,
    address: str | None = None,
    progress: SweepProgress | None = None,
) -> tuple[list[SettingSummary], list[JobResult]]:
    """Train every config with every seed; summarise per config."""
    check_backend(backend)
    if not seeds:
        raise UsageError("a sweep needs at least one seed")
    check_configs(configs)
    jobs = [(asdict(config), index, seed) for index, config in enumerate(configs) for seed in seeds]
    if backend == "ray":
        results_iter = _run_ray(jobs, address)
    else:
        results_iter = _run_local(jobs, n_jobs or os.cpu_count() or 1)
    results = []
    for result in results_iter:
        results.append(result)
        if progress is not None:
            progress(len(results), len(jobs))
    results.sort(key=lambda r: (r.setting, r.seed))
    optimum = _optimal_value(configs[0])
    return [summarize(configs[i], [r for r in results if r.setting == i], optimum)
            for i in range(len(configs))], results


def check_configs(configs: list[RunConfig]) -> None:
    """Fail on bad input before any work starts (and before any folder is made)."""
    for config in configs:
        config.make_agent(config.make_env())


def _optimal_value(config: RunConfig) -> float | None:
    from tabrl.dp import solve

    mdp = known_mdp(config.make_env())
    return None if mdp is None else solve(mdp).value


def summarize(config: RunConfig, results: list[JobResult], optimum: float | None) -> SettingSummary:
    """Mean, spread and the t-based 95% interval of a setting's values over its seeds."""
    values = np.array([r.value for r in results])
    n = len(values)
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.inf
    mean = float(values.mean())
    return SettingSummary(
        setting=asdict(config), n_seeds=n, mean=mean, std=std,
        ci95_low=mean - half, ci95_high=mean + half, min=float(values.min()),
        max=float(values.max()),
        mean_final_return=float(np.mean([r.final_return for r in results])),
        optimal_value=optimum, exact=all(r.exact for r in results),
    )
