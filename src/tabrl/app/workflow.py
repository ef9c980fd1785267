"""The Gymnasium tutorial's workflow as one call per command: train, evaluate, plot.

``train_run`` makes the environment, the agent and the run folder, trains with a checkpoint after
every chunk, then evaluates the greedy policy and draws the pictures. Everything that can be wrong
with the input is checked before the run folder is created, so bad input leaves nothing behind.
The functions that draw import :mod:`tabrl.plots` (matplotlib) themselves, so that the command
line answers ``--help`` and bad input without loading it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym

from tabrl.agents import TabularAgent
from tabrl.app.background import Writer, beforehand, forked
from tabrl.app.runs import (
    CURVES,
    EVALUATION,
    METRICS,
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
from tabrl.app.sweep import (
    JobResult,
    SettingSummary,
    Sweep,
    SweepFolder,
    check_configs,
    run_sweep,
    setting_labels,
)
from tabrl.app.tensorboard import TrainingBoard, run_board, setting_folders
from tabrl.curve import Curve
from tabrl.envs import make_env
from tabrl.errors import UsageError
from tabrl.evaluate import Evaluation, EvaluationProgress, evaluate, evaluation_place
from tabrl.exact.dp import solve
from tabrl.exact.readers import known_mdp, mdp_of
from tabrl.exact.reference import (
    exact_report,
    finite_or_none,
    solution_summary,
)
from tabrl.fileio import DiskWriteError, atomic_write_json, folder_lock, lock_holder
from tabrl.hyperparams import environment_defaults
from tabrl.loop import Progress, TrainingLog
from tabrl.metrics import MetricsStore
from tabrl.spaces import encoder_for
from tabrl.stats import INTERVALS
from tabrl.training import (
    LEGACY_CHUNK_EPISODES,
    EngineChoice,
    Training,
    TrainingDivergedError,
    choose_engine,
    train,
)

Say = Callable[[str], None]


@dataclass
class PreparedRun:
    """A run whose input has been checked and whose folder exists, ready to train.

    It holds the folder's lock (one writer per folder) until :func:`train_run` ends.
    """

    config: RunConfig
    env: gym.Env
    agent: TabularAgent
    engine: EngineChoice
    path: Path
    metrics_id: str
    resume_from: Training | None = None  #: the checkpoint a resumed run continues
    lock: ExitStack = field(default_factory=ExitStack)


def locked(path: Path) -> ExitStack:
    """The writer's lock of a run folder, held until the returned stack is closed."""
    lock = ExitStack()
    lock.enter_context(folder_lock(path))
    return lock


def prepare_run(config: RunConfig, out: Path | None = None) -> PreparedRun:
    """Check everything about a new run, then create its folder (bad input leaves none)."""
    env = config.make_env()
    agent = config.make_agent(env)
    choice = choose_engine(env, config.engine, agent)
    evaluation_place(config.eval_on, choice.name, env)  # --eval-on mdp needs a known MDP
    path = prepare_run_dir(out or default_run_dir(config))
    lock = locked(path)
    with ExitStack() as on_failure:
        on_failure.callback(lock.close)
        save_config(path, config, agent, choice.name, choice.reason)
        metrics_id = MetricsStore(path).create()
        start = Training(agent, TrainingLog.empty(0), env, choice, 0)
        save_checkpoint(path, Checkpoint.of(start, metrics_id), finished=False)
        on_failure.pop_all()
    return PreparedRun(config, env, agent, choice, path, metrics_id, lock=lock)


def prepare_resume(
    path: Path, episodes: int | None = None, settings: dict | None = None
) -> PreparedRun:
    """A run folder's checkpoint, ready to continue (to ``episodes`` in all, if given; with
    ``settings`` that do not change its result, such as ``eval_episodes`` and ``window``).

    Everything is checked before the folder is touched: a refused resume changes nothing.
    """
    load_run(path)  # a run folder, before a lock file is made in it
    lock = locked(path)
    with ExitStack() as on_failure:
        on_failure.callback(lock.close)
        run = load_run(path)  # read again: no writer can be halfway through it now
        prepared = resumable(run, episodes, settings)
        prepared.lock = lock
        keep_committed_metrics(run, prepared)
        save_config(path, prepared.config, prepared.agent, prepared.engine.name,
                    run.info.get("engine_reason", ""))
        on_failure.pop_all()
    return prepared


def resumable(run: Run, episodes: int | None, settings: dict | None = None) -> PreparedRun:
    """The run's checkpoint checked and loaded (a legacy run keeps its fixed chunks)."""
    config, arrays = replace(run.config, **(settings or {})), run.q_table()
    done = int(arrays["episodes_done"])
    if episodes is not None and episodes <= 0:
        raise UsageError(f"the number of episodes must be positive, not {episodes}")
    if episodes is not None and episodes < done:
        raise UsageError(f"--episodes {episodes:,} is below the {done:,} episodes {run.path} "
                         "has done: give a larger total")
    run.metrics()  # complete, finite, this run's
    config.episodes = episodes or config.episodes
    env = config.make_env()
    agent = run.load_agent(env)
    choice = choose_engine(env, run.info["engine"], agent)
    evaluation_place(config.eval_on, choice.name, env)
    if "chunks_done" in arrays:
        chunks_done, next_chunk = int(arrays["chunks_done"]), int(arrays["next_chunk"])
    else:  # made before chunks were planned by steps
        config.chunk_episodes = config.chunk_episodes or LEGACY_CHUNK_EPISODES[choice.name]
        chunks_done, next_chunk = done // config.chunk_episodes, 0
    checkpoint = Training(agent, TrainingLog.empty(0), env, choice, done, chunks_done, next_chunk,
                          float(run.state.get("train_seconds", 0.0)), curve=run.curve())
    metrics_id = str(arrays["metrics_id"]) if "metrics_id" in arrays else ""
    return PreparedRun(config, env, agent, choice, run.path, metrics_id, resume_from=checkpoint)


def keep_committed_metrics(run: Run, prepared: PreparedRun) -> None:
    """Cut the metrics to the checkpoint's episodes (a legacy ``metrics.npz`` moves into a
    store)."""
    store, done = MetricsStore(run.path), prepared.resume_from.episodes_done
    if store.exists():
        store.add_curve()
        store.truncate(done)
        store.add_sums(done)
        prepared.metrics_id = prepared.metrics_id or store.run_id()
        return
    legacy = run.metrics()
    prepared.metrics_id = store.create()
    store.write(0, legacy)
    store.sync()
    (run.path / METRICS).unlink()


def train_run(prepared: PreparedRun, *, progress: Progress | None = None, say: Say = print,
              evaluation_progress: EvaluationProgress | None = None,
              tensorboard: Path | None = None) -> Run:
    """Train a prepared run with checkpoints, then evaluate and plot it (and log it to
    TensorBoard under ``tensorboard``, if given).

    Ctrl-C or SIGTERM writes the last chunk's checkpoint, a kill loses the few seconds since the
    last one; ``--resume`` continues either to the same result. A full disk or a diverging
    Q-table stops the run with one line, the last good checkpoint kept.
    """
    config, path = prepared.config, prepared.path
    with prepared.lock, ExitStack() as open_board:
        board = None if tensorboard is None else open_board.enter_context(run_board(
            tensorboard, path, config, prepared.agent, prepared.resume_from))
        checkpoints = Checkpoints(path, config.checkpoint_seconds, prepared.metrics_id,
                                  prepared.resume_from)
        open_board.callback(checkpoints.close)  # its writer ends before the lock is released
        pictures_ready = beforehand(warm_pictures)  # while the kernel trains
        try:
            training = train_with_checkpoints(prepared, checkpoints, progress, say, board)
            checkpoints.save_final(training)
        except DiskWriteError as error:
            raise DiskWriteError(
                f"{error}: {path} keeps its checkpoint after episode {checkpoints.on_disk:,}; "
                f"make room, then continue with `tabrl train --resume {path}`"
            ) from None
        pictures_ready.join()
        run = load_run(path)
        evaluation = None
        try:
            if config.eval_episodes > 0:
                evaluation = evaluate_run(run, config.eval_episodes, progress=evaluation_progress)
            if board is not None:
                board.finish_run(config, evaluation)
            plot_run(run)
        except KeyboardInterrupt:
            rest = (f"`tabrl evaluate {path}` and `tabrl plot {path}` finish"
                    if config.eval_episodes > 0 and evaluation is None
                    else f"`tabrl plot {path}` finishes")
            say(f"interrupted: {path} holds the trained agent; {rest} it")
            raise
    return run


def train_with_checkpoints(
    prepared: PreparedRun, checkpoints: Checkpoints, progress: Progress | None, say: Say,
    board: TrainingBoard | None = None,
) -> Training:
    """Train, a checkpoint after chunks (and TensorBoard's points, with a ``board``); an
    interruption or a divergence saves the last good."""
    config, path = prepared.config, prepared.path

    def after_chunk(training: Training) -> None:
        if board is not None:  # first: its points should not lag behind a checkpoint
            board.after_chunk(training)
        checkpoints.after_chunk(training)

    try:
        return train(
            prepared.env, prepared.agent, config.episodes, seed=config.seed,
            engine=prepared.engine, max_steps=config.max_steps,
            chunk_episodes=config.chunk_episodes, chunk_steps=config.chunk_steps,
            progress=progress, on_chunk=after_chunk,
            resume_from=prepared.resume_from, keep_log=False, curve_points=config.curve_points,
        )
    except KeyboardInterrupt:
        done = checkpoints.save_last()
        say(f"interrupted: {path} keeps the checkpoint after episode {done:,}; continue with "
            f"`tabrl train --resume {path}`")
        raise
    except TrainingDivergedError as error:
        done = checkpoints.save_last()
        raise TrainingDivergedError(
            f"{error}; {path} keeps the checkpoint after episode {done:,}") from None


def resume_run(path: Path, episodes: int | None = None, *, progress: Progress | None = None,
               say: Say = print, evaluation_progress: EvaluationProgress | None = None,
               settings: dict | None = None, tensorboard: Path | None = None) -> Run:
    """Continue an interrupted (or finished, with more ``episodes``) run from its checkpoint."""
    prepared = prepare_resume(path, episodes, settings)
    say(resuming(prepared))
    return train_run(prepared, progress=progress, say=say,
                     evaluation_progress=evaluation_progress, tensorboard=tensorboard)


def resuming(prepared: PreparedRun) -> str:
    """The line that announces a resumed run."""
    return (f"resuming {prepared.path} at episode {prepared.resume_from.episodes_done:,} of "
            f"{prepared.config.episodes:,} ({prepared.engine.name} engine)")


class Checkpoints:
    """Checkpoints of a training: each chunk's metrics on disk as it ends, the learning state
    copied in memory after every chunk and committed to disk every few seconds.

    Chunks are the unit of reproducible resumption and last about a second. The commit happens
    after the first chunk that ends ``every_seconds`` after the last one. An interruption commits
    the last chunk's copy, so no finished chunk is lost; a kill loses the chunks since the last
    commit. Metrics and commits are written in order by a :class:`Writer` while the next chunk
    trains: a commit follows its metrics, and its error is raised after the next chunk.
    """

    def __init__(self, path: Path, every_seconds: float, metrics_id: str,
                 resumed: Training | None) -> None:
        self.path = path
        self.every_seconds = every_seconds
        self.metrics_id = metrics_id
        self.store = MetricsStore(path)
        self.writer = Writer()
        self.last_write = time.monotonic()
        self.last: Checkpoint | None = None  #: the last chunk's, its metrics handed to the writer
        self.on_disk = 0 if resumed is None else resumed.episodes_done

    def after_chunk(self, training: Training) -> None:
        checkpoint = Checkpoint.of(training, self.metrics_id)
        commit = time.monotonic() - self.last_write >= self.every_seconds
        self.writer.submit(self.store_chunk, training.episodes_done - len(training.chunk_log),
                           training.chunk_log, len(training.curve) - len(training.chunk_curve),
                           training.chunk_curve, checkpoint if commit else None)
        self.last = checkpoint
        if commit:
            self.last_write = time.monotonic()

    def store_chunk(self, start: int, log: TrainingLog, point: int, curve: Curve,
                    checkpoint: Checkpoint | None) -> None:
        """On the writer's thread: a chunk's metrics, synced (so that a commit, here or at the
        end, waits for one chunk's data at most, not for seconds of it), then the
        ``checkpoint`` that commits them."""
        self.store.write(start, log)
        self.store.write_curve(point, curve)
        self.store.sync()
        if checkpoint is not None:
            self.write(checkpoint, finished=False)

    def save_last(self) -> int:
        """Commit the last chunk's checkpoint (if not yet on disk); returns the episodes on disk."""
        self.writer.wait()
        if self.last is not None and self.last.episodes_done > self.on_disk:
            self.write(self.last, finished=False)
        return self.on_disk

    def save_final(self, training: Training) -> None:
        self.writer.wait()
        self.write(Checkpoint.of(training, self.metrics_id), finished=True)

    def write(self, checkpoint: Checkpoint, finished: bool) -> None:
        save_checkpoint(self.path, checkpoint, finished)
        self.on_disk, self.last_write = checkpoint.episodes_done, time.monotonic()

    def close(self) -> None:
        self.writer.close()


def unfinished_warning(run: Run) -> str | None:
    """What a reader of an unfinished run should know, or None for a finished run."""
    if run.finished:
        return None
    holder = lock_holder(run.path)
    now = (f"process {holder} is training it" if holder
           else f"continue it with `tabrl train --resume {run.path}`")
    return (f"run {run.path} is unfinished (episode {run.episodes_done:,} of "
            f"{run.config.episodes:,}): its figures are its last checkpoint's; {now}")


def evaluate_run(run: Run, n_episodes: int | None = None, seed: int | None = None,
                 progress: EvaluationProgress | None = None, on: str | None = None) -> Evaluation:
    """Evaluate a run's greedy policy and save ``evaluation.json`` (with the exact figures
    where the MDP is known), played where ``on`` says (one of ``EVAL_ON``; the run's own
    ``eval_on`` by default)."""
    env = run.config.make_env()
    agent = run.load_agent(env)
    evaluation = evaluate(
        agent, env, n_episodes or run.config.eval_episodes,
        seed=run.config.seed + 1_000_003 if seed is None else seed,
        max_steps=run.config.max_steps, progress=progress, on=run.eval_place(on),
    )
    if (mdp := known_mdp(env)) is not None:
        evaluation.exact = exact_report(mdp, solve(mdp), agent.q_values.greedy_policy())
    atomic_write_json(run.path / EVALUATION, evaluation.to_dict())
    return evaluation


def warm_pictures() -> None:
    """Import the modules of a run's pictures and draw a first tiny figure
    (``tabrl.plots.figures.warm_up``)."""
    import tabrl.plots.agent  # noqa: F401  (imported for the pictures to come)
    from tabrl.plots.figures import warm_up

    warm_up()


def plot_run(run: Run, window: int | None = None) -> list[Path]:
    """Draw the learning curves and the greedy policy of a run into its folder."""
    from tabrl.plots.figures import save_png  # matplotlib: only when drawing

    curves, policy = run.path / CURVES, run.path / POLICY

    def draw_curves() -> None:
        save_png(run.plot("curves", window=window), curves)

    with forked(draw_curves) as drawn_aside:  # the two pictures side by side, on two cores
        save_png(run.plot("policy"), policy)
        if not drawn_aside():
            draw_curves()
    return [curves, policy]


def solve_env(
    env_id: str, env_kwargs: dict, discount: float | None, out: Path | None
) -> tuple[dict, Path]:
    """Solve an environment exactly and save ``solution.json`` and ``policy.png``."""
    from tabrl.plots.figures import save_png  # matplotlib: only when drawing


    shipped = environment_defaults(env_id)  # made as training makes it: binned, if continuous
    env = make_env(env_id, env_kwargs, shipped.get("bins"), shipped.get("obs_bounds"))
    mdp = mdp_of(env)
    solution = solve(mdp, discount)
    encoder = encoder_for(env.observation_space)
    summary = {"env_id": env_id, "env_kwargs": env_kwargs,
               **solution_summary(solution, mdp, encoder)}
    path = writable_dir(out or default_solution_dir(env_id))
    atomic_write_json(path / SOLUTION, summary)
    save_png(solution.plot(env, title=f"optimal policy of {env_id}"), path / POLICY)
    return summary, path


def compare_runs(runs: list[Run], picture: Path, window: int) -> Path:
    """Draw runs' learning curves together (with the optimum where it is known)."""
    from tabrl import plots
    from tabrl.plots.agent import greedy_panel

    labels = [f"{run.path.name}" for run in runs]
    env = runs[0].config.make_env()
    same_env = all((r.config.env_id, r.config.env_kwargs) == (runs[0].config.env_id,
                                                           runs[0].config.env_kwargs) for r in runs)
    mdp = known_mdp(env) if same_env else None
    optimal_value = solve(mdp).value if mdp is not None else None
    curves = {label: run.metrics().columns() for label, run in zip(labels, runs)}
    greedy = greedy_panel(env if same_env else None,
                          {label: run.curve() for label, run in zip(labels, runs)})
    writable_dir(picture.parent if str(picture.parent) else Path("."))
    return plots.plot_comparison(curves, picture, window=window, optimal_value=optimal_value,
                                 title=f"{runs[0].config.env_id}: {len(runs)} runs"
                                 if same_env else f"{len(runs)} runs", greedy=greedy)


def sweep_to_folder(
    configs: list[RunConfig], grid: dict, seeds: list[int], out: Path | None, *, backend: str,
    n_jobs: int | None, address: str | None, progress=None, tensorboard: Path | None = None,
) -> tuple[list[SettingSummary], Path]:
    """Run a sweep into its folder, or resume the same sweep there (only missing jobs run).

    Finished jobs are stored in batches (``trials/``, ``results.csv``) within seconds of
    finishing, and when the sweep ends or is interrupted; at the end ``sweep.json``
    gets every summary and job, and ``sweep.png`` the picture. With ``tensorboard``, each job
    is logged there as the run ``<setting label>/seed-<seed>``.
    """
    from tabrl.plots.figures import save_png  # matplotlib: only when drawing

    check_configs(configs)
    names = list(grid)
    labels = setting_labels(configs, names)
    folder = SweepFolder.open(
        out or default_run_dir(configs[0], kind="sweep"), configs, names,
        {"env_id": configs[0].env_id, "algo": configs[0].algo, "grid": grid})
    finished = folder.finished()
    stored = {(r.setting, r.seed): r for r in finished}

    def keep(result: JobResult) -> None:
        stored[result.setting, result.seed] = result
        folder.store(result, stored.values())

    boards = None if tensorboard is None else setting_folders(tensorboard, labels)
    try:
        summaries, results = run_sweep(configs, seeds, backend=backend, n_jobs=n_jobs,
                                       address=address, progress=progress, finished=finished,
                                       on_result=keep, boards=boards)
    finally:  # the jobs held, also when interrupted
        folder.flush(stored.values())
    folder.write_results(results)  # this command's seeds only (a resume may ask for fewer)
    result = Sweep.of(configs, names, summaries, results, len(seeds), folder.path)
    atomic_write_json(folder.path / SWEEP, {
        "env_id": configs[0].env_id, "algo": configs[0].algo, "grid": grid,
        "seeds": seeds, "backend": backend, "intervals": INTERVALS.format(n=len(seeds)),
        "configs": [asdict(config) for config in configs],
        "settings": [{"label": label, **summary_dict(summary)}
                     for label, summary in zip(result.labels, summaries)],
        "jobs": [json_safe(job.figures()) for job in results],
    })
    save_png(result.plot(), folder.path / SWEEP_PICTURE)
    return summaries, folder.path


def summary_dict(summary: SettingSummary) -> dict:
    """A summary as JSON: infinite figures (a policy that loops forever) become null."""
    return json_safe(asdict(summary) | {"gap": summary.gap})


def json_safe(data: Any) -> Any:
    """Nested figures with NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(value) for value in data]
    return finite_or_none(data) if isinstance(data, float) else data
