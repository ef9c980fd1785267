"""The seed's workflow as one call per command: train, evaluate, plot.

``train_run`` makes the environment, the agent and the run folder, trains with a checkpoint after
every chunk, then evaluates the greedy policy and draws the pictures. Everything that can be wrong
with the input is checked before the run folder is created, so bad input leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np

from tabrl import plots
from tabrl.agents import TabularAgent
from tabrl.dp import solve
from tabrl.envs import make_env
from tabrl.evaluate import Evaluation, evaluate
from tabrl.fileio import atomic_write_json
from tabrl.hyperparams import environment_defaults
from tabrl.loop import Progress, TrainingLog
from tabrl.mdp import known_mdp, mdp_of
from tabrl.reference import (
    exact_report,
    finite_or_none,
    optimal_actions_near,
    solution_summary,
)
from tabrl.runs import (
    CURVES,
    EVALUATION,
    POLICY,
    SOLUTION,
    SWEEP,
    SWEEP_PICTURE,
    Checkpoint,
    Run,
    RunConfig,
    default_run_dir,
    default_solution_dir,
    load_run,
    prepare_run_dir,
    save_checkpoint,
    save_config,
    writable_dir,
)
from tabrl.spaces import encoder_for
from tabrl.sweep import SettingSummary, check_configs, run_sweep, setting_labels
from tabrl.training import EngineChoice, Training, choose_engine, train

Say = Callable[[str], None]


@dataclass
class PreparedRun:
    """A run whose input has been checked and whose folder exists, ready to train."""

    config: RunConfig
    env: gym.Env
    agent: TabularAgent
    engine: EngineChoice
    path: Path
    resume_from: Training | None = None  #: the checkpoint a resumed run continues


def prepare_run(config: RunConfig, out: Path | None = None) -> PreparedRun:
    """Check everything about a new run, then create its folder (bad input leaves none)."""
    env = config.make_env()
    agent = config.make_agent(env)
    choice = choose_engine(env, config.engine, agent)
    path = prepare_run_dir(out or default_run_dir(config))
    save_config(path, config, agent, choice.name, choice.reason)
    save_checkpoint(path, Checkpoint.of(agent, TrainingLog.empty(0), 0), finished=False)
    return PreparedRun(config, env, agent, choice, path)


def prepare_resume(
    path: Path, episodes: int | None = None, settings: dict | None = None
) -> PreparedRun:
    """A run folder's checkpoint, ready to continue (to ``episodes`` in all, if given; with
    ``settings`` that do not change its result, such as ``eval_episodes`` and ``window``)."""
    run = load_run(path)
    config = replace(run.config, **(settings or {}))
    if episodes is not None:
        config.episodes = episodes
    env = config.make_env()
    agent = run.load_agent(env)
    choice = choose_engine(env, run.info["engine"], agent)
    checkpoint = Training(agent, run.metrics(), env, choice, run.episodes_done)
    save_config(path, config, agent, choice.name, run.info.get("engine_reason", ""))
    return PreparedRun(config, env, agent, choice, path, resume_from=checkpoint)


def train_run(prepared: PreparedRun, *, progress: Progress | None = None, say: Say = print) -> Run:
    """Train a prepared run with checkpoints, then evaluate and plot it.

    Ctrl-C leaves the last checkpoint, from which ``--resume`` continues to the same result.
    """
    config, path = prepared.config, prepared.path
    checkpoints = Checkpoints(path, config.checkpoint_seconds)
    try:
        training = train(
            prepared.env, prepared.agent, config.episodes, seed=config.seed,
            engine=prepared.engine, max_steps=config.max_steps,
            chunk_episodes=config.chunk_episodes, progress=progress,
            on_chunk=checkpoints.after_chunk, resume_from=prepared.resume_from,
        )
    except KeyboardInterrupt:
        done = checkpoints.save_last()
        say(f"interrupted: {path} keeps the checkpoint after episode {done:,}; continue with "
            f"`tabrl train --resume {path}`")
        raise
    final = Checkpoint.of(training.agent, training.log, training.episodes_done)
    save_checkpoint(path, final, finished=True)
    run = load_run(path)
    if config.eval_episodes > 0:
        evaluate_run(run, config.eval_episodes)
    plot_run(run)
    return run


def resume_run(path: Path, episodes: int | None = None, *, progress: Progress | None = None,
               say: Say = print, settings: dict | None = None) -> Run:
    """Continue an interrupted (or finished, with more ``episodes``) run from its checkpoint."""
    prepared = prepare_resume(path, episodes, settings)
    done = prepared.resume_from.episodes_done
    say(f"resuming {path} at episode {done:,} of {prepared.config.episodes:,} "
        f"({prepared.engine.name} engine)")
    return train_run(prepared, progress=progress, say=say)


class Checkpoints:
    """Checkpoints of a training: a copy in memory after every chunk, on disk now and then.

    Chunks are the unit of reproducible resumption. Writing millions of episodes of metrics after
    every chunk would cost more than the training, so the disk copy is refreshed at most once per
    ``every_seconds``; an interruption writes the last chunk's copy, so no finished chunk is lost.
    """

    def __init__(self, path: Path, every_seconds: float) -> None:
        self.path = path
        self.every_seconds = every_seconds
        self.last_write = time.monotonic()
        self.last: Checkpoint | None = None
        self.written = True

    def after_chunk(self, training: Training) -> None:
        self.last = Checkpoint.of(training.agent, training.log, training.episodes_done)
        self.written = False
        if time.monotonic() - self.last_write >= self.every_seconds:
            self.save_last()

    def save_last(self) -> int:
        """Write the last chunk's checkpoint (if not yet on disk); returns its episode count."""
        if self.last is not None and not self.written:
            save_checkpoint(self.path, self.last, finished=False)
            self.last_write, self.written = time.monotonic(), True
        return 0 if self.last is None else self.last.episodes_done


def evaluate_run(run: Run, n_episodes: int | None = None, seed: int | None = None) -> Evaluation:
    """Evaluate a run's greedy policy and save ``evaluation.json``."""
    env = run.config.make_env()
    agent = run.load_agent(env)
    evaluation = evaluate(
        agent, env, n_episodes or run.config.eval_episodes,
        seed=run.config.seed + 1_000_003 if seed is None else seed,
        max_steps=run.config.max_steps,
    )
    if (mdp := known_mdp(env)) is not None:
        evaluation.exact = exact_report(mdp, solve(mdp), agent.q_values.greedy_policy())
    atomic_write_json(run.path / EVALUATION, evaluation.to_dict())
    return evaluation


def plot_run(run: Run, window: int | None = None) -> list[Path]:
    """Draw the learning curves and the greedy policy of a run into its folder."""
    env = run.config.make_env()
    agent = run.load_agent(env)
    greedy = agent.q_values.greedy_policy()
    optimal_value = optimal_policy = None
    if (mdp := known_mdp(env)) is not None:
        solution = solve(mdp)
        optimal_value, optimal_policy = solution.value, optimal_actions_near(solution, greedy)
    title = f"{run.config.algo} on {run.config.env_id}"
    curves = plots.plot_learning_curves(
        run.metrics().columns(), run.path / CURVES, window=window or run.config.window,
        optimal_value=optimal_value, title=title,
    )
    policy = plots.plot_policy(
        env, agent.q_values.array[: agent.q_values.n_rows], run.path / POLICY,
        optimal_policy=optimal_policy, visited=agent.q_values.visited(), title=title,
    )
    return [curves, policy]


def solve_env(
    env_id: str, env_kwargs: dict, discount: float | None, out: Path | None
) -> tuple[dict, Path]:
    """Solve an environment exactly and save ``solution.json`` and ``policy.png``."""
    shipped = environment_defaults(env_id)  # made as training makes it: binned, if continuous
    env = make_env(env_id, env_kwargs, shipped.get("bins"), shipped.get("obs_bounds"))
    mdp = mdp_of(env)
    solution = solve(mdp, discount)
    encoder = encoder_for(env.observation_space)
    summary = {"env_id": env_id, "env_kwargs": env_kwargs,
               **solution_summary(solution, mdp, encoder)}
    path = writable_dir(out or default_solution_dir(env_id))
    atomic_write_json(path / SOLUTION, summary)
    plots.plot_policy(env, np.nan_to_num(solution.row_q_values), path / POLICY,
                      title=f"optimal policy of {env_id}")
    return summary, path


def compare_runs(paths: list[Path], picture: Path, window: int) -> tuple[list[Run], Path]:
    """Load runs and draw their learning curves together (with the optimum where it is known)."""
    runs = [load_run(path) for path in paths]
    labels = [f"{run.path.name}" for run in runs]
    env = runs[0].config.make_env()
    same_env = all((r.config.env_id, r.config.env_kwargs) == (runs[0].config.env_id,
                                                           runs[0].config.env_kwargs) for r in runs)
    mdp = known_mdp(env) if same_env else None
    optimal_value = solve(mdp).value if mdp is not None else None
    curves = {label: run.metrics().columns() for label, run in zip(labels, runs)}
    writable_dir(picture.parent if str(picture.parent) else Path("."))
    path = plots.plot_comparison(curves, picture, window=window, optimal_value=optimal_value,
                                 title=f"{runs[0].config.env_id}: {len(runs)} runs"
                                 if same_env else f"{len(runs)} runs")
    return runs, path


def sweep_to_folder(
    configs: list[RunConfig], grid: dict, seeds: list[int], out: Path | None, *, backend: str,
    n_jobs: int | None, address: str | None, progress=None,
) -> tuple[list[SettingSummary], Path]:
    """Run a sweep and save ``sweep.json`` (every job and summary) and ``sweep.png``."""
    check_configs(configs)
    path = prepare_run_dir(out or default_run_dir(configs[0], kind="sweep"),
                           "choose another --out")
    summaries, results = run_sweep(configs, seeds, backend=backend, n_jobs=n_jobs,
                                   address=address, progress=progress)
    labels = setting_labels(configs, list(grid))
    atomic_write_json(path / SWEEP, {
        "seeds": seeds, "backend": backend,
        "settings": [{"label": label, **summary_dict(summary)}
                     for label, summary in zip(labels, summaries)],
        "jobs": [asdict(result) for result in results],
    })
    values = [np.array([r.value for r in results if r.setting == i]) for i in range(len(configs))]
    plots.plot_sweep(labels, np.array([s.mean for s in summaries]),
                     np.array([s.ci95_low for s in summaries]),
                     np.array([s.ci95_high for s in summaries]), values, path / SWEEP_PICTURE,
                     optimal_value=summaries[0].optimal_value,
                     title=f"{configs[0].algo} on {configs[0].env_id}: {len(seeds)} seeds")
    return summaries, path


def summary_dict(summary: SettingSummary) -> dict:
    """A summary as JSON: infinite figures (a policy that loops forever) become null."""
    data = asdict(summary)
    return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in data.items()} | {
        "gap": None if summary.gap is None else finite_or_none(summary.gap)}
