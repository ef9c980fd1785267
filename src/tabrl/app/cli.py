"""The ``tabrl`` command line.

Every error becomes one line on stderr and an exit code: 2 for bad usage (click's own parse errors
included: an unknown option, a malformed number), 1 for a failure such as a damaged file, 130 for
Ctrl-C. ``tabrl --debug ...`` shows the traceback of tabrl's errors instead.
"""

from __future__ import annotations

import functools
import gc
import inspect
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import gymnasium as gym
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from tabrl.agents import AGENTS, METHODS, OWN_PARAMS, TabularAgent
from tabrl.app.background import allow_forks, raise_interrupt
from tabrl.app.catalog import tabular_envs
from tabrl.app.keyvalues import parse_key_values
from tabrl.app.runs import (
    CONFIG_SCHEMA,
    EPISODES_WHY,
    MAX_EPISODES,
    MAX_SEED,
    Run,
    RunConfig,
    Setting,
    default_run_dir,
    load_run,
    read_hyperparams,
    with_hyperparams,
    writable_dir,
)
from tabrl.app.workflow import (
    PreparedRun,
    evaluate_run,
    plot_run,
    prepare_resume,
    prepare_run,
    resuming,
    train_run,
    unfinished_warning,
)
from tabrl.envs import import_env_modules, is_continuous, make_env, plugin_errors, qualified_env_id
from tabrl.errors import TabrlError, UsageError
from tabrl.evaluate import Evaluation, evaluation_place, exact_figure, outcome_shares
from tabrl.exact.readers import known_mdp
from tabrl.fileio import folder_lock
from tabrl.kernel_cache import KernelSet
from tabrl.methods import Param
from tabrl.version import __version__

#: click's errors as typer raises them (typer vendors its own click since 0.2x, so ``import click``
#: would name other classes): an unknown option, a malformed number, a missing argument.
ClickUsageError = typer.BadParameter.__bases__[0]
ClickException = ClickUsageError.__bases__[0]
#: Plain help and errors: Rich boxes would cut option names at 80 columns, and its markup would
#: eat brackets such as the ``[ray]`` of an install hint.
app = typer.Typer(add_completion=False, help="Tabular reinforcement learning on Gymnasium.",
                  pretty_exceptions_enable=False, rich_markup_mode=None)
#: Tables keep their columns when the output is piped (rich would fall back to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
_debug = False

#: ``tabrl train`` with no environment runs the Gymnasium tutorial's Blackjack (never mutated).
DEFAULT_ENV_ID, DEFAULT_ENV_KWARGS = "Blackjack-v1", {"sab": False}
#: What ``train --resume`` may change: how long it goes on, and what it reports.
RESUMABLE = {"resume", "episodes", "eval_episodes", "eval_on", "window", "quiet", "tensorboard"}
SEEDS = Setting((int,), 0, MAX_SEED, "numpy's seeds are 64-bit, non-negative")
EPISODES = Setting((int,), 1, MAX_EPISODES, EPISODES_WHY)
WINDOW = Setting((int,), 1, MAX_EPISODES)
JOBS = Setting((int,), 1, 1024)
SWEEP_SEEDS = Setting((int,), 1, 10_000)
UNIT = Setting((float,), 0, 1)
BINS_HELP = "Bins per dimension of a continuous space: 10, or one each: 6,6,12,12."
OBS_BOUNDS_HELP = "With --bins: low:high per dimension, e.g. =-2.4:2.4,-3:3 (for unbounded ones)."
EVAL_ON_HELP = ("Where evaluation episodes play: auto (the exact MDP after the compiled engine, "
                "else the environment), env or mdp.")

#: ``--tensorboard DIR`` of ``train``, ``sweep`` and ``tune``.
TensorBoardDir = Annotated[Path | None, typer.Option(
    metavar="DIR", help="Also log to TensorBoard in this folder (one run per seed).")]
HYPERPARAMS_HELP = ("A YAML file of settings (the keys of the shipped hyperparameter files, e.g. "
                    "the best.yml of tabrl tune); options given on the line win.")
#: ``--env-module MODULE`` (repeatable): modules to import first, which register environments.
EnvModules = Annotated[list[str] | None, typer.Option(
    "--env-module", metavar="MODULE",
    help="Import this module first: it registers your environments (repeatable).")]


def show_version(value: bool) -> None:
    if value:
        print(f"tabrl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=show_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    global _debug
    _debug = debug


def log(text: str) -> None:
    """A line of what a command is doing, on stderr (never wrapped)."""
    err.print(text, highlight=False, soft_wrap=True)


def require(option: str, value: object, setting: Setting) -> None:
    """A one-line error unless ``value`` (None: not given) fits ``setting``'s type and range."""
    if value is not None and (problem := setting.problem(value)) is not None:
        raise UsageError(f"{option} {problem}")


class TrainingProgress:
    """A rich progress bar with episodes/s and the recent mean return (silent when quiet), and
    for a multi-seed folder (``seeds``) the seeds done.

    It appears with the first episodes, so an error found while a run is read or prepared is
    the only line on stderr; ``with`` makes sure it is taken down.
    """

    def __init__(self, total: int, quiet: bool, seeds: int | None = None) -> None:
        self.bar = Progress(
            TextColumn("[bold]training"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>12} ep/s"),
            TextColumn("mean return {task.fields[ret]}"),
            *([] if seeds is None else [TextColumn(f"seeds {{task.fields[seeds]}}/{seeds}")]),
            TimeRemainingColumn(), console=err, disable=quiet, transient=False,
        )
        self.task = self.bar.add_task("train", total=total, rate="", ret="", seeds=0)

    def __call__(self, done: int, mean_return: float, seeds_done: int = 0) -> None:
        self.bar.start()
        elapsed = self.bar.tasks[0].elapsed or 1e-9
        self.bar.update(self.task, completed=done, rate=f"{done / elapsed:,.0f}",
                        ret=f"{mean_return:+.3f}", seeds=seeds_done)

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar.live.is_started:
            self.bar.stop()




def own_option(param: Param) -> inspect.Parameter:
    """The command-line option of a method's own parameter, from its declaration."""
    users = ", ".join(spec.name for spec in METHODS.values() if param in spec.params)
    option = typer.Option(param.flag, help=f"{param.help} ({users}).")
    return inspect.Parameter(param.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[param.type | None, option])


def with_own_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with one option per own parameter of the methods (``OWN_PARAMS``), handed to
    it as the dict ``own`` of those given: a new method's parameter needs no edit here."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name != "own"]

    @functools.wraps(command)
    def with_own(**options: object) -> None:
        own = given_only(**{name: options.pop(name) for name in OWN_PARAMS})
        command(**options, own=own)

    with_own.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*kept, *map(own_option, OWN_PARAMS.values())])
    return with_own


@app.command(short_help="Train, evaluate and draw a run, into a run folder.")
@with_own_options
def train(
    ctx: typer.Context,
    env_id: Annotated[str | None, typer.Argument(
        help="A registered Gymnasium id. Omitted: the tutorial's Blackjack-v1 (sab=False).")
    ] = None,
    episodes: Annotated[int | None, typer.Option(help="Training episodes.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate in (0, 1].")] = None,
    discount: Annotated[float | None, typer.Option(help="Discount factor in [0, 1].")] = None,
    epsilon_start: Annotated[float | None, typer.Option(help="Initial epsilon.")] = None,
    epsilon_end: Annotated[float | None, typer.Option(help="Epsilon floor.")] = None,
    epsilon_decay_episodes: Annotated[int | None, typer.Option(
        help="Episodes of linear decay to the floor (default: half the episodes).")] = None,
    epsilon_schedule: Annotated[str | None, typer.Option(
        help="linear (default), exponential, constant, or visits (epsilon-start / n(s)^W).")
    ] = None,
    epsilon_exponent: Annotated[float | None, typer.Option(
        help="W of the visits schedule of epsilon (default 1).")] = None,
    learning_rate_exponent: Annotated[float | None, typer.Option(
        help="Step size learning-rate / n(s,a)^W by visit count (default: constant).")] = None,
    learning_rate_schedule: Annotated[str | None, typer.Option(
        help="Per-episode decay, e.g. kind=exponential,start=0.5,end=0.01,rate=0.999.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of every stream (0 .. 2**63-1).")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The run folder to create.")] = None,
    eval_episodes: Annotated[int | None, typer.Option(
        help="Greedy evaluation episodes, 0 to skip (default 10,000).")] = None,
    eval_on: Annotated[str | None, typer.Option(help=EVAL_ON_HELP)] = None,
    env_kwargs: Annotated[str | None, typer.Option(
        help="Environment keywords, e.g. is_slippery=false,map_name=8x8.")] = None,
    bins: Annotated[str | None, typer.Option(help=BINS_HELP)] = None,
    obs_bounds: Annotated[str | None, typer.Option(help=OBS_BOUNDS_HELP)] = None,
    algo: Annotated[str, typer.Option(help=f"One of: {', '.join(AGENTS)}.")] = "q-learning",
    exploration: Annotated[str | None, typer.Option(
        help="epsilon-greedy, softmax or ucb.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Softmax temperature.")] = None,
    temperature_schedule: Annotated[str | None, typer.Option(
        help="e.g. kind=exponential,start=30,end=0.5,rate=0.9988.")] = None,
    ucb_c: Annotated[float | None, typer.Option(help="Weight of the UCB bonus.")] = None,
    engine: Annotated[str, typer.Option(help="auto, python or compiled.")] = "auto",
    max_steps: Annotated[int | None, typer.Option(
        help="Step cap per episode for environments without a time limit (default 10,000).")
    ] = None,
    window: Annotated[int | None, typer.Option(
        help="Rolling window of the learning curves (default 500).")] = None,
    action_mask: Annotated[bool, typer.Option(
        "--action-mask", help="Never play an action the environment masks (Taxi).")] = False,
    curve_points: Annotated[int | None, typer.Option(
        help="Points of the greedy policy's value curve, 0 for none (default 100).")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="Train many seeds into one folder: N (seeds 0 to N-1) or A-B.")] = None,
    jobs: Annotated[int | None, typer.Option(
        help="With --seeds: seeds trained side by side (default: all cores).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue this run folder (only --episodes, --eval-episodes, --eval-on, --window "
             "may change).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the run folder.")] = False,
    env_module: EnvModules = None,
    hyperparams: Annotated[Path | None, typer.Option(help=HYPERPARAMS_HELP)] = None,
    tensorboard: TensorBoardDir = None,
    own: dict[str, object] | None = None,
) -> None:
    """Train an agent, evaluate its greedy policy and draw the pictures, into a run folder.
    \f
    ``own`` holds the options of the methods' own parameters that were given, one option per
    parameter of ``OWN_PARAMS`` (:func:`with_own_options`); the help ends before it (``\\f``)."""
    say = (lambda _: None) if quiet else log
    if resume is not None:
        changed = {"episodes": episodes, "eval_episodes": eval_episodes, "eval_on": eval_on,
                   "window": window}
        check_resume_options(ctx, given_only(**changed))
        tensorboard = board_root(tensorboard)
        prepared = prepare_resume(  # checked and locked before any output
            resume, episodes,
            given_only(eval_episodes=eval_episodes, eval_on=eval_on, window=window))
        say(resuming(prepared))
        prepare_run_kernels(prepared, say, quiet)
        bar = TrainingProgress(prepared.config.episodes, quiet)
        with bar:
            run = train_run(prepared, progress=bar, say=say,
                            evaluation_progress=EvaluationBar(quiet, bar.bar),
                            tensorboard=tensorboard)
    else:
        env_id, kwargs = ((with_env_modules(env_id, env_module), {}) if env_id
                          else (DEFAULT_ENV_ID, dict(DEFAULT_ENV_KWARGS)))
        kwargs.update(parse_env_kwargs(env_kwargs))
        seed_list = None if seeds is None else parse_seeds_option(ctx, seeds)
        if jobs is not None and seed_list is None:
            raise UsageError("--jobs goes with --seeds: it is how many seeds train side by side")
        require("--jobs", jobs, JOBS)
        config = resolve_config(
            hyperparams, env_id, kwargs, algo, episodes=episodes, learning_rate=learning_rate,
            discount=discount, epsilon_start=epsilon_start, epsilon_end=epsilon_end,
            epsilon_decay_episodes=epsilon_decay_episodes, epsilon_schedule=epsilon_schedule,
            epsilon_exponent=epsilon_exponent, learning_rate_exponent=learning_rate_exponent,
            learning_rate_schedule=parse_key_values(
                learning_rate_schedule, "--learning-rate-schedule",
                "kind=exponential,start=0.5,end=0.01,rate=0.999") or None,
            seed=seed, engine=engine, max_steps=max_steps, eval_episodes=eval_episodes,
            eval_on=eval_on,
            window=window, bins=parse_bins(bins), obs_bounds=parse_obs_bounds(obs_bounds),
            action_mask=action_mask or None, curve_points=curve_points,
            algo_params=given_only(
                exploration=exploration, temperature=temperature, ucb_c=ucb_c,
                temperature_schedule=parse_key_values(
                    temperature_schedule, "--temperature-schedule",
                    "kind=exponential,start=30,end=0.5,rate=0.9988") or None,
                **(own or {})),
        )
        tensorboard = board_root(tensorboard)
        if seed_list is not None:
            train_many_seeds(config, seed_list, out_dir, jobs, quiet, say, tensorboard)
            return
        prepared = prepare_run(config, out_dir)
        settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        say(f"{config.algo} on {env_id}{f' ({settings})' if settings else ''}: "
            f"{config.describe()}")
        say(prepared.engine.reason)
        prepare_run_kernels(prepared, say, quiet)
        bar = TrainingProgress(config.episodes, quiet)
        with bar:
            run = train_run(prepared, progress=bar, say=say,
                            evaluation_progress=EvaluationBar(quiet, bar.bar),
                            tensorboard=tensorboard)
    evaluation = run.evaluation()
    if evaluation is not None and not quiet:
        print_evaluation(evaluation, f"greedy policy of {run.path}")
    if not quiet:
        say(f"run folder: {run.path}  (curves.png, policy.png, evaluation.json, q_table.npz)")
    else:
        out.print(str(run.path))


def check_resume_options(ctx: typer.Context, changes: dict[str, object]) -> None:
    """Refuse the options given with ``--resume`` that would change the run: its settings are
    its own, so such an option is refused, never ignored; the others are checked."""
    fixed = [param.opts[0] if param.param_type_name == "option" else param.name.upper()
             for param in ctx.command.params if param.name not in RESUMABLE
             and ctx.get_parameter_source(param.name).name == "COMMANDLINE"]
    if fixed:
        raise UsageError(f"{', '.join(fixed)} cannot change on --resume: the run keeps its own "
                         "settings (only --episodes, --eval-episodes, --eval-on and --window may "
                         "change)")
    for name, value in changes.items():
        require(f"--{name.replace('_', '-')}", value, CONFIG_SCHEMA[name])


def writable(run: Run, command: str) -> None:
    """A one-line error unless ``command`` can write into the run folder it changes."""
    writable_dir(run.path, f"{command} writes into the run folder: make it writable, or copy it")


def parse_bins(text: str | None) -> int | list[int] | None:
    """``--bins 10`` or ``--bins 6,6,12,12``."""
    if text is None:
        return None
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--bins {text!r} is not a count: write 10, or 6,6,12,12") from None
    return counts[0] if len(counts) == 1 else counts


def parse_obs_bounds(text: str | None) -> list[list[float]] | None:
    """``--obs-bounds=-2.4:2.4,-3:3`` as ``[[-2.4, 2.4], [-3.0, 3.0]]``."""
    if text is None:
        return None
    try:
        bounds = [[float(x) for x in part.split(":")] for part in text.split(",")]
    except ValueError:
        bounds = []
    if not bounds or any(len(pair) != 2 for pair in bounds):
        raise UsageError(f"--obs-bounds {text!r} is not a list of low:high: write e.g. "
                         "--obs-bounds=-2.4:2.4,-3:3")
    return bounds


def parse_env_kwargs(text: str | None) -> dict[str, object]:
    """``--env-kwargs is_slippery=false,map_name=8x8`` as keywords of ``gymnasium.make``."""
    return parse_key_values(text, "--env-kwargs", "is_slippery=false,map_name=8x8")


def resolve_config(hyperparams: Path | None, env_id: str, env_kwargs: dict, algo: str,
                   **given: object) -> RunConfig:
    """The run's settings: the shipped ones, then a ``--hyperparams`` file's, then the options
    given (None: not given)."""
    settings = {} if hyperparams is None else read_hyperparams(hyperparams)
    return RunConfig.resolve(env_id, env_kwargs, algo, **with_hyperparams(settings, given))


def board_root(path: Path | None) -> Path | None:
    """The ``--tensorboard`` folder, checked (tensorboardX installed, writable) before any run."""
    if path is None:
        return None
    from tabrl.app.tensorboard import board_root as checked

    return checked(path)


def given_only(**options: object) -> dict[str, object]:
    """The options the user set (typer gives None for the others)."""
    return {name: value for name, value in options.items() if value is not None}


def parse_seeds_option(ctx: typer.Context, text: str) -> list[int]:
    """``--seeds``, which names the seeds itself: ``--seed`` beside it is refused."""
    from tabrl.app.seeds import parse_seeds

    if ctx.get_parameter_source("seed").name == "COMMANDLINE":
        raise UsageError("give --seeds or --seed, not both: --seeds names every seed (10 or 0-9)")
    return parse_seeds(text)


def train_many_seeds(config: RunConfig, seeds: list[int], out_dir: Path | None, jobs: int | None,
                     quiet: bool, say: Callable[[str], None], tensorboard: Path | None) -> None:
    """``train --seeds``: every seed into one folder, side by side on ``jobs`` processes (default:
    every core) under one progress bar, then the aggregate table (printed and saved) and the
    curves with bands (TensorBoard: a run per seed, named ``<folder>/seed-<seed>``)."""
    from tabrl.app.seeds import aggregate, aggregate_table_title, plan_seeds, train_seeds
    from tabrl.training import choose_engine

    env = config.make_env()
    agent = config.make_agent(env)
    engine = choose_engine(env, config.engine, agent)  # before the folder
    described = config.describe().rpartition(", seed ")[0]
    say(f"{config.algo} on {config.env_id}: {described}, seeds {seeds[0]} to {seeds[-1]}")
    plan = plan_seeds(config, seeds, out_dir, tensorboard)
    folder = plan.folder
    workers = jobs or os.cpu_count() or 1
    try:
        if plan.tasks:
            say(f"{plan.describe(workers)} -> {folder.path}")
            say(engine.reason)
            prepare_kernels(kernels_for(config, engine.name, env, agent), say, quiet)
            bar = TrainingProgress(len(seeds) * config.episodes, quiet, seeds=len(seeds))
            with bar:
                train_seeds(plan, workers, bar)
        result = aggregate(folder)  # a Ctrl-C here leaves the aggregate for the same command
    except KeyboardInterrupt:
        say(f"interrupted: {folder.path} keeps every seed's last checkpoint; continue with "
            f"the same command and --out {folder.path}")
        raise
    if quiet:
        out.print(str(folder.path))
        return
    table = Table("statistic", "value", "95% interval", title=aggregate_table_title(result))
    for name, estimate in result.rows():
        table.add_row(name, figure(estimate.value, "-inf (loops)"),
                      f"{figure(estimate.low)} .. {figure(estimate.high)}")
    table.add_row("seeds' range", "", f"{figure(min(result.values))} .. "
                  f"{figure(max(result.values))}")
    if result.optimal_value is not None:
        table.add_row("optimum", exact_figure(result.optimal_value, ""),
                      f"best stationary {exact_figure(result.stationary_value, '')}")
    out.print(table)
    say(f"multi-seed folder: {folder.path}  (seed-*/, aggregate.json, aggregate.csv, "
        "curves.png)")


def figure(value: float, endless: str = "-inf") -> str:
    """An exact figure, or ``endless`` in words where it is infinite (a policy that never ends)."""
    return exact_figure(value if math.isfinite(value) else None, endless)


def prepare_kernels(needed: list[KernelSet], say: Callable[[str], None], quiet: bool) -> None:
    """Compile (or load) the numba kernels a command needs before its progress bar starts, so
    its speed is the speed. A compile is announced before it starts, with a spinner while it
    runs; kernels already in numba's disk cache load in about a second, without a word."""
    from tabrl import kernel_cache

    cold = [kernels for kernels in needed if not kernel_cache.is_ready(kernels)]
    if cold:
        say(compile_announcement(cold))
    start = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("compiling"), TimeElapsedColumn(), console=err,
                  disable=quiet or not cold or not err.is_terminal, transient=True) as spinner:
        spinner.add_task("compile", total=None)
        for kernels in needed:
            kernel_cache.prepare(kernels)
    if cold:
        say(f"compiled in {time.perf_counter() - start:.1f} s (cached on disk for later runs)")


def compile_announcement(cold: list[KernelSet]) -> str:
    """``compiling the compiled engine's q-learning kernel and the exact solver's kernels, first
    run only, about 26 s``."""
    names = [kernels.what for kernels in cold]
    what = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
    return (f"compiling {what}, first run only, "
            f"about {sum(kernels.seconds for kernels in cold):.0f} s")


def prepare_run_kernels(prepared: PreparedRun, say: Callable[[str], None], quiet: bool) -> None:
    """The kernels a prepared run needs; a Ctrl-C meanwhile (a first compile takes a while)
    says how to go on, as one during training does: its folder already holds the run."""
    try:
        prepare_kernels(kernels_for(prepared.config, prepared.engine.name, prepared.env,
                                    prepared.agent), say, quiet)
    except KeyboardInterrupt:
        done = 0 if prepared.resume_from is None else prepared.resume_from.episodes_done
        say(f"interrupted: {prepared.path} keeps the checkpoint after episode {done:,}; "
            f"continue with `tabrl train --resume {prepared.path}`")
        raise


def kernels_for(config: RunConfig, engine: str, env: gym.Env, agent: TabularAgent
                ) -> list[KernelSet]:
    """The kernels a run needs: the compiled engine's that train its agent, the evaluation's
    if it plays on the MDP, and the exact solver's wherever the MDP is known (its optimum and
    the greedy policy's exact value)."""
    from tabrl.kernel_cache import training_kernels

    training = [training_kernels([agent])] if engine == "compiled" else []
    place = evaluation_place(config.eval_on, engine) if config.eval_episodes > 0 else "env"
    return training + exact_kernels(env, place)


def exact_kernels(env: gym.Env, eval_on: str = "env") -> list[KernelSet]:
    """The exact solver's kernels where ``env``'s MDP is known (its optimum is computed), after
    the compiled evaluation's where it plays on the MDP (``eval_on``)."""
    from tabrl.kernel_cache import EXACT, PLAY

    return [PLAY] * (eval_on == "mdp") + [EXACT] * (known_mdp(env) is not None)


@app.command("evaluate", short_help="Evaluate a run's greedy policy again.")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    episodes: Annotated[int | None, typer.Option(help="Evaluation episodes.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Random seed of the evaluation episodes.")] = None,
    eval_on: Annotated[str | None, typer.Option(
        help="auto, env or mdp (default: the run's own --eval-on).")] = None,
) -> None:
    """Evaluate a run's greedy policy again (exploration off) and save evaluation.json."""
    require("--episodes", episodes, EPISODES)
    require("--seed", seed, SEEDS)
    run = load_run(run_dir)
    place = run.eval_place(eval_on)
    writable(run, "evaluate")
    warn_if_unfinished(run)
    prepare_kernels(exact_kernels(run.config.make_env(), place), log, quiet=False)
    with folder_lock(run.path):
        evaluation = evaluate_run(run, episodes, seed, progress=EvaluationBar(), on=place)
    print_evaluation(evaluation, f"greedy policy of {run.path}")


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    window: Annotated[int | None, typer.Option(help="Rolling window.")] = None,
) -> None:
    """Draw a run's learning curves and policy again."""
    require("--window", window, WINDOW)
    run = load_run(run_dir)
    writable(run, "plot")
    warn_if_unfinished(run)
    prepare_kernels(exact_kernels(run.config.make_env()), log, quiet=False)
    with folder_lock(run.path):
        paths = plot_run(run, window)
    for path in paths:
        out.print(str(path))


def warn_if_unfinished(run: Run) -> None:
    if (warning := unfinished_warning(run)) is not None:
        err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)


@app.command(short_help="Compare runs: evaluations and learning curves.")
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    out_file: Annotated[Path, typer.Option("--out", help="The comparison picture.")] = Path(
        "comparison.png"),
    window: Annotated[int, typer.Option(help="Rolling window of the curves.")] = 500,
) -> None:
    """Compare runs: their evaluations side by side and their learning curves on one picture."""
    from tabrl.app.workflow import compare_runs

    require("--window", window, WINDOW)
    if len(run_dirs) < 2:
        raise UsageError("compare needs two or more run folders: to look at one run, use "
                         "`tabrl evaluate` or `tabrl plot`")
    if compare_seed_folders(run_dirs, out_file, window):
        return
    runs = [load_run(path) for path in run_dirs]
    check_same_environment(runs)
    prepare_kernels(exact_kernels(runs[0].config.make_env()), log, quiet=False)

    picture = compare_runs(runs, out_file, window)
    for run in runs:
        warn_if_unfinished(run)
    table = Table("run", "algorithm", "episodes", "mean return ± 95%", "outcomes",
                  "exact value", "gap", "optimal actions", "greedy curve: mean")
    for run in runs:
        e = run.evaluation()
        x = (e.exact if e else None) or {}
        curve = run.curve()
        table.add_row(
            run.path.name, run.config.algo, f"{run.config.episodes:,}",
            _mean_with_interval(e) if e else "-",
            " / ".join(f"{name} {share:.0%}" for name, share in e.outcomes.items() if share)
            if e else "-",
            _loops(x["policy_value"], e) if x else "-",
            exact_figure(x["gap"], "+inf (loops)") if x else "-",
            f"{x['optimal_action_share']:.1%}" if x else "-",
            figure(float(curve.values.mean()), "-inf (loops)") if len(curve) else "-",
        )
    out.print(table)
    out.print("greedy curve: mean of the greedy policy's value over the run's curve points "
              "(the area under its learning curve)")
    out.print(f"learning curves: {picture}")


def compare_seed_folders(paths: list[Path], picture: Path, window: int) -> bool:
    """``compare`` of multi-seed folders (``train --seeds``): each one's IQM and mean with their
    intervals, the probability that a seed of one beats a seed of another, the curves with
    bands and the performance profiles. False if the folders are run folders."""
    from tabrl.app.seeds import SeedsFolder, compare_folders, is_seeds_folder
    from tabrl.stats import INTERVALS

    kinds = [is_seeds_folder(path) for path in paths]
    if not any(kinds):
        return False
    if not all(kinds):
        odd = paths[kinds.index(False)]
        raise UsageError(f"{odd} is not a multi-seed folder (train --seeds) like the others: "
                         "compare run folders with run folders, seed folders with seed folders")
    check_same_environment([SeedsFolder.load(path).runs()[0] for path in paths])
    result = compare_folders(paths, picture, window)
    n_seeds = " or ".join(map(str, sorted({len(f.seeds) for f in result.folders})))
    what = "exact final greedy value" if result.aggregates[0].exact else "final greedy value"
    table = Table("folder", "algorithm", "seeds", "IQM", "mean",
                  title=f"{what} ({INTERVALS.format(n=n_seeds)})")
    for folder, a in zip(result.folders, result.aggregates):
        table.add_row(folder.path.name, folder.config.algo, str(len(folder.seeds)),
                      *(_with_interval(e) for e in (a.iqm, a.mean)))
    out.print(table)
    for i, j, p in result.improvements:
        out.print(f"P({result.folders[i].path.name} > {result.folders[j].path.name}) = "
                  f"{p.value:.3f}  (95% CI {p.low:.3f} .. {p.high:.3f}): the chance that a seed "
                  "of the first ends with a better greedy value than a seed of the second")
    out.print(f"learning curves: {result.curves}\nperformance profiles: {result.profile}")
    return True


def _with_interval(estimate) -> str:
    """An estimate and its interval; an infinite bound (a policy that never ends) in words."""
    value, low, high = (figure(x) for x in
                        (estimate.value, estimate.low, estimate.high))
    return f"{value} ({low} .. {high})"


@app.command(short_help="Train a grid of settings with several seeds.")
def sweep(
    env_id: Annotated[str, typer.Argument(help="A registered Gymnasium id.")],
    grid: Annotated[list[str] | None, typer.Option(
        help="A setting and its values, e.g. learning_rate=0.02,0.05 (repeatable).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per setting: 0, 1, ..., N-1.")] = 8,
    algo: Annotated[str, typer.Option(help=f"One of: {', '.join(AGENTS)}.")] = "q-learning",
    env_kwargs: Annotated[str | None, typer.Option(help="Environment keywords.")] = None,
    bins: Annotated[str | None, typer.Option(help=BINS_HELP)] = None,
    obs_bounds: Annotated[str | None, typer.Option(help=OBS_BOUNDS_HELP)] = None,
    backend: Annotated[str, typer.Option(help="local (processes) or ray.")] = "local",
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (auto, ray://host:10001); default: start one here.")] = None,
    jobs: Annotated[int | None, typer.Option(
        help="Local threads or processes (default: all cores).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The sweep folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the sweep folder.")] = False,
    env_module: EnvModules = None,
    hyperparams: Annotated[Path | None, typer.Option(help=HYPERPARAMS_HELP)] = None,
    tensorboard: TensorBoardDir = None,
) -> None:
    """Train every setting of a grid with several seeds: mean, median, IQM with bootstrap intervals.

    The same command with the same --out resumes the sweep (only missing jobs run).
    """
    from tabrl.app.sweep import check_backend, expand, parse_grid, setting_labels, sweep_kernels
    from tabrl.app.workflow import sweep_to_folder

    require("--seeds", seeds, SWEEP_SEEDS)
    require("--jobs", jobs, JOBS)
    check_backend(backend)
    env_id = with_env_modules(env_id, env_module)
    base = resolve_config(hyperparams, env_id, parse_env_kwargs(env_kwargs), algo,
                          bins=parse_bins(bins), obs_bounds=parse_obs_bounds(obs_bounds))
    axes = parse_grid(grid or [])
    configs = expand(base, axes)
    tensorboard = board_root(tensorboard)
    prepare_kernels(sweep_kernels(configs, backend), (lambda _: None) if quiet else log, quiet)
    bar = Progress(TextColumn("[bold]sweep"), BarColumn(bar_width=24), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=err, disable=quiet)
    task = bar.add_task("sweep", total=len(configs) * seeds)

    def progress(done: int, total: int) -> None:  # shown from the first job on: bad input first
        bar.start()
        bar.update(task, completed=done)

    path = out_dir or default_run_dir(configs[0], kind="sweep")
    try:
        summaries, path = sweep_to_folder(
            configs, axes, list(range(seeds)), path, backend=backend, n_jobs=jobs,
            address=address, progress=progress, tensorboard=tensorboard,
        )
    except KeyboardInterrupt:
        if bar.live.is_started:  # the line below the bar, not above it
            bar.stop()
        if path.exists() and not quiet:
            log(f"interrupted: {path} keeps every finished job; the same command with --out "
                f"{path} runs the rest")
        raise
    finally:
        if bar.live.is_started:
            bar.stop()
    if quiet:
        out.print(str(path))
        return
    print_sweep_table(setting_labels(configs, list(axes)), summaries,
                      f"{algo} on {env_id}: {seeds} seeds per setting", seeds)
    out.print(f"sweep folder: {path}  (sweep.json, results.csv, sweep.png)")


def print_sweep_table(labels: list[str], summaries: list, title: str, n_seeds: int) -> None:
    """Mean and IQM per setting with their intervals, the median, the gap of the mean to the
    optimum, and the failed seeds if any (the median's interval is in sweep.json)."""
    from rich.markup import escape

    from tabrl.app.sweep import estimate_text
    from tabrl.stats import INTERVALS

    failed = any(s.n_failed for s in summaries)
    headers = ["setting", "mean", "IQM", "median", "optimum - mean"] + ["failed"] * failed
    table = Table(*(Column(header, no_wrap=True) for header in headers), title=title,
                  caption=escape(f"greedy value; [low, high]: {INTERVALS.format(n=n_seeds)}"))
    for label, s in zip(labels, summaries):
        table.add_row(escape(label),
                      *(escape(estimate_text(e, s.n_seeds)) for e in (s.mean, s.iqm)),
                      estimate_text(s.median, 1).removesuffix(" (one seed: no interval)"),
                      "-" if s.gap is None or math.isnan(s.gap) else f"{s.gap:+.4g}",
                      *([f"{s.n_failed} of {s.n_seeds + s.n_failed}"] if failed else []))
    out.print(table)


@app.command(short_help="List the environments tabrl can train on.")
def envs(env_module: EnvModules = None) -> None:
    """List the registered environments tabrl can train on (plugins' and your modules' too)."""
    import_env_modules(env_module or [])
    table = Table("environment", "states", "actions", "time limit", "engine", "from")
    for info in tabular_envs():
        engine = "compiled" if info.compiled else "python"
        if info.bins is not None:
            engine += f" (bins {info.bins})"
        table.add_row(info.env_id, f"{info.n_states:,}", str(info.n_actions),
                      str(info.time_limit or "-"), engine, info.source)
    out.print(table)
    for plugin, error in plugin_errors.items():
        err.print(f"note: the plugin {plugin} failed to load ({error})", markup=False,
                  soft_wrap=True)


@app.command("solve", short_help="The exact optimal policy and its value.")
def solve_command(
    env_id: Annotated[str, typer.Argument(help="A registered Gymnasium id.")],
    env_kwargs: Annotated[str | None, typer.Option(help="Environment keywords.")] = None,
    discount: Annotated[float | None, typer.Option(
        help="Solve the discounted problem instead of the environment's own return.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for solution.json and policy.png.")] = None,
    env_module: EnvModules = None,
) -> None:
    """The exact optimal policy and its value (dynamic programming on the known MDP)."""
    from tabrl.app.workflow import solve_env

    require("--discount", discount, UNIT)
    env_id = with_env_modules(env_id, env_module)
    kwargs = parse_env_kwargs(env_kwargs)
    if is_continuous(env_id, kwargs):
        raise UsageError(f"{env_id} moves continuously: it has no transition table, so its "
                         "dynamics are unknown; solve a toy-text environment such as FrozenLake-v1")
    prepare_kernels(exact_kernels(make_env(env_id, kwargs)), log, quiet=False)
    summary, path = solve_env(env_id, kwargs, discount, out_dir)
    if as_json:
        out.print_json(data=summary)
        return
    table = Table(title=f"optimum of {env_id}", show_header=False)
    objective = "undiscounted return" if summary["discount"] == 1 else f"discount {discount}"
    horizon = summary["horizon"]
    table.add_row("objective", objective + (f" within {horizon} steps" if horizon else ""))
    if horizon:
        settled = summary["settled_at"]
        table.add_row("backward induction", f"values settled after {settled:,} of {horizon:,} steps"
                      if settled is not None else f"values still changing at {horizon:,} steps")
    table.add_row("optimal value", f"{summary['value']:+.4f}")
    cut = (f"  (search cut short after {summary['search_rounds']:,} rounds)"
           if summary["search_cut"] else "")
    table.add_row("best stationary policy", f"{summary['stationary_value']:+.4f}{cut}")
    names, shares = outcome_shares(summary["outcomes"])
    table.add_row(f"its {names}", shares)
    table.add_row("mean length", exact_figure(summary["mean_length"], "inf").lstrip("+"))
    table.add_row("saved", f"{path / 'solution.json'}, {path / 'policy.png'}")
    out.print(table)


def print_evaluation(evaluation: Evaluation, title: str) -> None:
    """The evaluation as a table: Monte Carlo figures, then exact ones where known."""
    table = Table(title=title, show_header=False)
    for name, value in evaluation.facts()[1]:
        table.add_row(name, value)
    out.print(table)


class EvaluationBar:
    """A progress bar on stderr for an evaluation, shown while it runs once past a second.

    ``after`` is the training's bar, still live when the evaluation starts: it is stopped first
    (rich shows one live display at a time).
    """

    def __init__(self, quiet: bool = False, after: Progress | None = None) -> None:
        self.quiet, self.after = quiet, after
        self.bar: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or not err.is_terminal:  # a log file would only get the finished bar
            return
        if self.bar is None:
            if self.after is not None:
                self.after.stop()
            self.bar = Progress(TextColumn("[bold]evaluating"), BarColumn(bar_width=24),
                                MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                                transient=True)
            self.bar.add_task("evaluate", total=total, completed=done)
            self.bar.start()
        self.bar.update(self.bar.task_ids[0], completed=done, total=max(done, total))
        if done >= total:
            self.bar.stop()


def _mean_with_interval(e: Evaluation) -> str:
    """The Monte Carlo mean return and its 95% half-width, or why there is none."""
    if math.isnan(e.mean_return):
        return "-"
    return f"{e.mean_return:+.4f} ± {e.ci95_high - e.mean_return:.4f}"


def _loops(policy_value: float | None, e: Evaluation) -> str:
    """An exact value, or for a policy that loops, from how many start states it does."""
    if policy_value is not None:
        return f"{policy_value:+.4f}"
    return f"-inf (loops from {e.loop_start_states or '?'} of {e.start_states or '?'} starts)"


def check_same_environment(runs: list[Run]) -> None:
    """Curves of different environments do not share axes: a one-line error unless all match."""
    first = runs[0].config
    for run in runs[1:]:
        if (run.config.env_id, run.config.env_kwargs) != (first.env_id, first.env_kwargs):
            raise UsageError(
                f"{run.path} ran on {run.config.env_id} {run.config.env_kwargs or ''} and "
                f"{runs[0].path} on {first.env_id} {first.env_kwargs or ''}: their returns do not "
                "share axes; compare runs of one environment"
            )


def click_error(error: ClickException) -> str:
    """Click's own error (an unknown option, a malformed number) in one line, with where to look."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    return f"{message} (see `{context.command_path} --help`)" if context else message


def fail(message: str, code: int) -> int:
    """Print ``error: message`` as one line on stderr; return the exit code."""
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)
    return code


def main() -> None:
    """Entry point: every error is one line on stderr and an exit code (2 usage, 1 failure,
    130 interrupted); a run stopped by SIGTERM keeps its checkpoint, as on Ctrl-C."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        code = app(prog_name="tabrl", standalone_mode=False)
    except ClickException as error:
        code = fail(click_error(error), 2 if isinstance(error, ClickUsageError) else 1)
    except TabrlError as error:
        if _debug:
            raise
        code = fail(str(error), error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def script() -> None:
    """The ``tabrl`` program (and ``python -m tabrl``): :func:`main`, then a quick exit.

    The interpreter's exit runs full garbage collections over every object that the imports made
    (numba's, matplotlib's): half a second of a short command. Frozen first, they are left to the
    exit, which frees the process's memory at once.
    """
    allow_forks()  # this process is tabrl's alone: its pictures may be drawn side by side
    try:
        main()
    finally:
        gc.freeze()


def with_env_modules(env_id: str, modules: list[str] | None) -> str:
    """Import the ``--env-module`` modules; ``env_id`` with the module that registered it."""
    import_env_modules(modules or [])
    return qualified_env_id(env_id)


@app.command(short_help="Write the greedy policy and Q-values per state.")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv or json (default: from --out, else csv).")] = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="The file to write (default: policy.csv or policy.json in the run).")] = None,
) -> None:
    """Write the greedy policy and Q-values per state, states as the environment's observations."""
    from tabrl.app.export import export_run

    run = load_run(run_dir)
    path, policy = export_run(run, fmt, out_file)
    out.print(f"{path}  ({len(policy):,} states; read it with tabrl.load_policy)",
              highlight=False, markup=False)


@app.command(short_help="Watch the agent play its greedy policy.")
def enjoy(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    episodes: Annotated[int, typer.Option(help="Episodes to play.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first episode's reset.")] = 0,
    delay: Annotated[float | None, typer.Option(
        help="Seconds between steps (default: 0.3 in a terminal, else 0).")] = None,
    gif: Annotated[Path | None, typer.Option(help="Record the play as this GIF.")] = None,
    video: Annotated[Path | None, typer.Option(
        help="Record the play as this MP4 (needs imageio and imageio-ffmpeg).")] = None,
) -> None:
    """Watch the agent play its greedy policy, drawn in the terminal or recorded."""
    from rich.text import Text

    from tabrl.app.watch import enjoy as play

    if delay is None:
        delay = 0.3 if sys.stdout.isatty() else 0.0
    play(load_run(run_dir), episodes, seed, delay, gif, video,
         show=lambda text: out.print(Text.from_ansi(text), soft_wrap=True))


@app.command(short_help="Tune a method's hyperparameters with Optuna.")
def tune(
    env_id: Annotated[str, typer.Argument(help="A registered Gymnasium id.")],
    algo: Annotated[str, typer.Option(help=f"One of: {', '.join(AGENTS)}.")] = "q-learning",
    trials: Annotated[int, typer.Option(help="Trials to run (more, if the study exists).")] = 20,
    seeds: Annotated[int, typer.Option(help="Seeds per trial: 0, 1, ..., N-1.")] = 3,
    timeout: Annotated[float | None, typer.Option(
        help="Stop starting trials after this many seconds.")] = None,
    storage: Annotated[str | None, typer.Option(
        help="An Optuna database URL (default: sqlite:///OUT/study.db).")] = None,
    study: Annotated[str | None, typer.Option(
        help="The study's name (default: ENV-ALGO).")] = None,
    env_kwargs: Annotated[str | None, typer.Option(help="Environment keywords.")] = None,
    hyperparams: Annotated[Path | None, typer.Option(help=HYPERPARAMS_HELP)] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="The tuning folder (default: runs/ENV-ALGO-tune).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the best.yml path.")] = False,
    tensorboard: TensorBoardDir = None,
) -> None:
    """Tune a method's hyperparameters with Optuna (TPE, median pruning); writes best.yml.

    Each trial is worth the mean exact greedy value over its seeds. The same command again
    continues the study.
    """
    from tabrl.app.tune import BEST, seed_range
    from tabrl.app.tune import tune as run_tuning

    if trials <= 0 or seeds <= 0:
        raise typer.BadParameter(f"--trials and --seeds must be positive, not {trials}, {seeds}")
    base = resolve_config(hyperparams, env_id, parse_env_kwargs(env_kwargs), algo)
    tensorboard = board_root(tensorboard)

    def report(trial, best: float | None) -> None:
        if quiet:
            return
        state = trial.state.name.lower()
        if state == "complete":
            line = f"trial {trial.number}: {trial.value:+.4f}"
        elif state == "pruned":  # its steps: the points of its seeds' learning curves
            steps, points = trial.intermediate_values, base.curve_points or 1
            line = (f"trial {trial.number}: pruned after {max(steps) // points + 1} of {seeds} "
                    f"seeds (the last ended at {steps[max(steps)]:+.4f})" if steps
                    else f"trial {trial.number}: pruned")
        else:
            line = f"trial {trial.number}: {state}"
        err.print(line + ("" if best is None else f"  (best {best:+.4f})"), highlight=False)

    tuning = run_tuning(base, trials, seeds=seeds, timeout=timeout, storage=storage,
                        study_name=study, out=out_dir, report=report, tensorboard=tensorboard)
    if quiet:
        out.print(str(tuning.path / BEST))
        return
    best = tuning.study.best_trial
    out.print(f"best of {len(tuning.study.trials)} trials: trial {best.number}, mean greedy value "
              f"{best.value:+.4f} over {seed_range(seeds)}", highlight=False)
    table = Table("setting", "value")
    for name, value in tuning.best.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)
    for note in tuning.notes:
        out.print(note)
    pictures = ", ".join(path.name for path in tuning.pictures)
    out.print(f"tuning folder: {tuning.path}  (best.yml, study.db{', ' if pictures else ''}"
              f"{pictures})")
