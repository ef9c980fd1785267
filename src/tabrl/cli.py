"""The ``tabrl`` command line.

Every command turns a :class:`~tabrl.errors.TabrlError` into one line on stderr and its exit code
(2 for bad usage, 1 for a failure); ``tabrl --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tabrl.agents import AGENTS
from tabrl.envs import tabular_envs
from tabrl.errors import TabrlError, UsageError
from tabrl.evaluate import Evaluation
from tabrl.keyvalues import parse_key_values
from tabrl.runs import RunConfig, load_run
from tabrl.workflow import evaluate_run, plot_run, prepare_run, resume_run, train_run

app = typer.Typer(add_completion=False, help="Tabular reinforcement learning on Gymnasium.")
#: Tables keep their columns when the output is piped (rich would fall back to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
_debug = False

#: ``tabrl train`` with no environment runs the seed's example: the tutorial's Blackjack.
DEFAULT_JOB = ("Blackjack-v1", {"sab": False})
BINS_HELP = ("Cut a continuous observation space into this many bins per dimension (or one "
             "count per dimension: 6,6,12,12).")
OBS_BOUNDS_HELP = ("With --bins, the range of each dimension, low:high,... (needed where the "
                   "space is unbounded), e.g. --obs-bounds=-2.4:2.4,-3:3,-0.21:0.21,-3.5:3.5.")


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    global _debug
    _debug = debug


class TrainingProgress:
    """A rich progress bar with episodes/s and the recent mean return (silent when quiet)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.bar = Progress(
            TextColumn("[bold]training"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>12} ep/s"),
            TextColumn("mean return {task.fields[ret]}"),
            TimeRemainingColumn(), console=err, disable=quiet, transient=False,
        )
        self.task = self.bar.add_task("train", total=total, rate="", ret="")

    def __call__(self, done: int, mean_return: float) -> None:
        elapsed = self.bar.tasks[0].elapsed or 1e-9
        self.bar.update(self.task, completed=done, rate=f"{done / elapsed:,.0f}",
                        ret=f"{mean_return:+.3f}")


@app.command()
def train(
    env_id: Annotated[str | None, typer.Argument(
        help="A registered Gymnasium id. Omitted: the seed's Blackjack-v1 with sab=False.")] = None,
    episodes: Annotated[int | None, typer.Option(help="Training episodes.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate in (0, 1].")] = None,
    discount: Annotated[float | None, typer.Option(help="Discount factor in [0, 1].")] = None,
    epsilon_start: Annotated[float | None, typer.Option(help="Initial epsilon.")] = None,
    epsilon_end: Annotated[float | None, typer.Option(help="Epsilon floor.")] = None,
    epsilon_decay_episodes: Annotated[int | None, typer.Option(
        help="Episodes of linear decay to the floor (default: half the episodes).")] = None,
    epsilon_schedule: Annotated[str | None, typer.Option(
        help="linear (default), exponential, constant, or visits: epsilon-start / n(s)^W per "
             "state, n(s) its visits so far (W: --epsilon-exponent).")] = None,
    epsilon_exponent: Annotated[float | None, typer.Option(
        help="W of the visits schedule of epsilon (default 1).")] = None,
    learning_rate_exponent: Annotated[float | None, typer.Option(
        help="Step size learning-rate / n(s,a)^W by visit count (default: constant).")] = None,
    learning_rate_schedule: Annotated[str | None, typer.Option(
        help="Learning rate decayed per episode, e.g. kind=exponential,start=0.5,end=0.01,"
             "rate=0.999 (or kind=linear, rate: the decrement).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random stream.")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The run folder to create.")] = None,
    eval_episodes: Annotated[int | None, typer.Option(
        help="Greedy evaluation episodes, 0 to skip (default 10,000; 1,000 where episodes are "
             "long, as on CartPole-v1).")] = None,
    env_kwargs: Annotated[str | None, typer.Option(
        help="Environment keywords, e.g. is_slippery=false,map_name=8x8.")] = None,
    bins: Annotated[str | None, typer.Option(help=BINS_HELP)] = None,
    obs_bounds: Annotated[str | None, typer.Option(help=OBS_BOUNDS_HELP)] = None,
    algo: Annotated[str, typer.Option(help=f"One of: {', '.join(AGENTS)}.")] = "q-learning",
    exploration: Annotated[str | None, typer.Option(
        help="epsilon-greedy, softmax or ucb.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Softmax temperature.")] = None,
    temperature_schedule: Annotated[str | None, typer.Option(
        help="Softmax temperature schedule, e.g. kind=exponential,start=30,end=0.5,rate=0.9988 "
             "(kinds: constant, linear, exponential, visits).")] = None,
    ucb_c: Annotated[float | None, typer.Option(help="Weight of the UCB bonus.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Steps of n-step-sarsa.")] = None,
    lam: Annotated[float | None, typer.Option(
        help="Trace decay of sarsa-lambda and q-lambda.")] = None,
    planning_steps: Annotated[int | None, typer.Option(
        help="Model updates per real step of dyna-q.")] = None,
    exploring_starts: Annotated[bool | None, typer.Option(
        "--exploring-starts/--no-exploring-starts", help="Monte Carlo with exploring starts.")
    ] = None,
    engine: Annotated[str, typer.Option(help="auto, python or compiled.")] = "auto",
    max_steps: Annotated[int | None, typer.Option(
        help="Step cap per episode for environments without a time limit (default 10,000).")
    ] = None,
    window: Annotated[int, typer.Option(help="Rolling window of the learning curves.")] = 500,
    resume: Annotated[Path | None, typer.Option(help="Continue this run folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the run folder.")] = False,
) -> None:
    """Train an agent, evaluate its greedy policy and draw the pictures, into a run folder."""
    say = (lambda _: None) if quiet else (
        lambda text: err.print(text, highlight=False, soft_wrap=True))  # log lines: never wrapped
    if resume is not None:
        run = load_run(resume)
        warm_up_compiled(run.info["engine"], say)
        bar = TrainingProgress(episodes or run.config.episodes, quiet)
        with bar.bar:
            run = resume_run(resume, episodes, progress=bar, say=say)
    else:
        env_id, kwargs = (env_id, {}) if env_id else DEFAULT_JOB
        kwargs.update(parse_env_kwargs(env_kwargs))
        config = RunConfig.resolve(
            env_id, kwargs, algo, episodes=episodes, learning_rate=learning_rate,
            discount=discount, epsilon_start=epsilon_start, epsilon_end=epsilon_end,
            epsilon_decay_episodes=epsilon_decay_episodes, epsilon_schedule=epsilon_schedule,
            epsilon_exponent=epsilon_exponent, learning_rate_exponent=learning_rate_exponent,
            learning_rate_schedule=parse_key_values(
                learning_rate_schedule, "--learning-rate-schedule",
                "kind=exponential,start=0.5,end=0.01,rate=0.999") or None,
            seed=seed, engine=engine, max_steps=max_steps, eval_episodes=eval_episodes,
            window=window, bins=parse_bins(bins), obs_bounds=parse_obs_bounds(obs_bounds),
            algo_params=given_only(
                exploration=exploration, temperature=temperature, ucb_c=ucb_c, n=n, lam=lam,
                temperature_schedule=parse_key_values(
                    temperature_schedule, "--temperature-schedule",
                    "kind=exponential,start=30,end=0.5,rate=0.9988") or None,
                planning_steps=planning_steps, exploring_starts=exploring_starts),
        )
        prepared = prepare_run(config, out_dir)
        settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        say(f"{config.algo} on {env_id}{f' ({settings})' if settings else ''}: "
            f"{config.describe()}")
        say(prepared.engine.reason)
        warm_up_compiled(prepared.engine.name, say)
        bar = TrainingProgress(config.episodes, quiet)
        with bar.bar:
            run = train_run(prepared, progress=bar, say=say)
    evaluation = run.evaluation()
    if evaluation is not None and not quiet:
        print_evaluation(evaluation, f"greedy policy of {run.path}")
    if not quiet:
        say(f"run folder: {run.path}  (curves.png, policy.png, evaluation.json, q_table.npz)")
    else:
        out.print(str(run.path))


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


def given_only(**options: object) -> dict[str, object]:
    """The options the user set (typer gives None for the others)."""
    return {name: value for name, value in options.items() if value is not None}


def warm_up_compiled(engine: str, say) -> None:
    """Compile (or load) the kernels before the progress bar starts, so its speed is the speed."""
    if engine != "compiled":
        return
    from tabrl.compiled import warm_up

    ready = warm_up()
    if not ready.from_cache:
        say(f"compiled the numba kernels in {ready.seconds:.1f} s (cached on disk for later runs)")


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    episodes: Annotated[int | None, typer.Option(help="Evaluation episodes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the evaluation episodes.")] = None,
) -> None:
    """Evaluate a run's greedy policy again (exploration off) and save evaluation.json."""
    run = load_run(run_dir)
    if episodes is not None and episodes <= 0:
        raise typer.BadParameter(f"--episodes must be positive, not {episodes}")
    print_evaluation(evaluate_run(run, episodes, seed), f"greedy policy of {run.path}")


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    window: Annotated[int | None, typer.Option(help="Rolling window.")] = None,
) -> None:
    """Draw a run's learning curves and policy again."""
    for path in plot_run(load_run(run_dir), window):
        out.print(str(path))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    out_file: Annotated[Path, typer.Option("--out", help="The comparison picture.")] = Path(
        "comparison.png"),
    window: Annotated[int, typer.Option(help="Rolling window of the curves.")] = 500,
) -> None:
    """Compare runs: their evaluations side by side and their learning curves on one picture."""
    from tabrl.workflow import compare_runs

    runs, picture = compare_runs(run_dirs, out_file, window)
    table = Table("run", "algorithm", "episodes", "mean return ± 95%", "exact value", "gap",
                  "optimal actions")
    for run in runs:
        e = run.evaluation()
        x = (e.exact if e else None) or {}
        table.add_row(
            run.path.name, run.config.algo, f"{run.config.episodes:,}",
            f"{e.mean_return:+.4f} ± {e.ci95_high - e.mean_return:.4f}" if e else "-",
            _value(x["policy_value"], "-inf (loops)") if x else "-",
            _value(x["gap"], "+inf (loops)") if x else "-",
            f"{x['optimal_action_share']:.1%}" if x else "-",
        )
    out.print(table)
    out.print(f"learning curves: {picture}")


@app.command()
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
    jobs: Annotated[int | None, typer.Option(help="Local processes (default: all cores).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The sweep folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the sweep folder.")] = False,
) -> None:
    """Train every setting of a grid with several seeds; mean and 95% interval per setting."""
    from tabrl.sweep import expand, parse_grid, setting_labels
    from tabrl.workflow import sweep_to_folder

    if seeds <= 0:
        raise typer.BadParameter(f"--seeds must be positive, not {seeds}")
    base = RunConfig.resolve(env_id, parse_env_kwargs(env_kwargs), algo, bins=parse_bins(bins),
                             obs_bounds=parse_obs_bounds(obs_bounds))
    axes = parse_grid(grid or [])
    configs = expand(base, axes)
    bar = Progress(TextColumn("[bold]sweep"), BarColumn(bar_width=24), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=err, disable=quiet)
    task = bar.add_task("sweep", total=len(configs) * seeds)
    with bar:
        summaries, path = sweep_to_folder(
            configs, axes, list(range(seeds)), out_dir, backend=backend, n_jobs=jobs,
            address=address, progress=lambda done, total: bar.update(task, completed=done),
        )
    if quiet:
        out.print(str(path))
        return
    table = Table("setting", "mean ± 95%", "min .. max", "gap to optimum", "final training return",
                  title=f"{algo} on {env_id}: {seeds} seeds per setting")
    for label, s in zip(setting_labels(configs, list(axes)), summaries):
        if not math.isfinite(s.mean):
            mean = "-inf (a seed's policy loops)"
        elif s.n_seeds < 2:
            mean = f"{s.mean:+.4f} (one seed: no interval)"
        else:
            mean = f"{s.mean:+.4f} ± {s.ci95_high - s.mean:.4f}"
        table.add_row(label, mean,
                      f"{s.min:+.4f} .. {s.max:+.4f}",
                      "-" if s.gap is None else f"{s.gap:+.4f}", f"{s.mean_final_return:+.4f}")
    out.print(table)
    out.print(f"sweep folder: {path}  (sweep.json, sweep.png)")


@app.command()
def envs() -> None:
    """List the registered environments tabrl can train on."""
    table = Table("environment", "states", "actions", "time limit", "engine")
    for info in tabular_envs():
        engine = "compiled" if info.compiled else "python"
        if info.bins is not None:
            engine += f" (bins {info.bins})"
        table.add_row(info.env_id, f"{info.n_states:,}", str(info.n_actions),
                      str(info.time_limit or "-"), engine)
    out.print(table)


@app.command("solve")
def solve_command(
    env_id: Annotated[str, typer.Argument(help="A registered Gymnasium id.")],
    env_kwargs: Annotated[str | None, typer.Option(help="Environment keywords.")] = None,
    discount: Annotated[float | None, typer.Option(
        help="Solve the discounted problem instead of the environment's own return.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for solution.json and policy.png.")] = None,
) -> None:
    """The exact optimal policy and its value (dynamic programming on the known MDP)."""
    from tabrl.workflow import solve_env

    summary, path = solve_env(env_id, parse_env_kwargs(env_kwargs), discount, out_dir)
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
    table.add_row("best stationary policy", f"{summary['stationary_value']:+.4f}")
    if summary["success_probability"] is not None:
        table.add_row("success probability", f"{summary['success_probability']:.2%}")
    else:  # no goal (Blackjack): the outcome of the game is what a player asks for
        table.add_row("win / draw / loss",
                      f"{summary['win']:.2%} / {summary['draw']:.2%} / {summary['loss']:.2%}")
    table.add_row("mean length", _value(summary["mean_length"], "inf").lstrip("+"))
    table.add_row("saved", f"{path / 'solution.json'}, {path / 'policy.png'}")
    out.print(table)


def print_evaluation(evaluation: Evaluation, title: str) -> None:
    """The evaluation as a table: Monte Carlo figures, then exact ones where known."""
    table = Table(title=title, show_header=False)
    e = evaluation
    rows = [
        ("episodes", f"{e.n_episodes:,}"),
        ("mean return", f"{e.mean_return:+.4f}  (95% CI {e.ci95_low:+.4f} .. {e.ci95_high:+.4f})"),
        ("std / sem", f"{e.std_return:.4f} / {e.sem:.4f}"),
        ("win / draw / loss", f"{e.win_rate:.1%} / {e.draw_rate:.1%} / {e.loss_rate:.1%}"),
        ("mean length", f"{e.mean_length:.2f}"),
    ]
    if e.success_rate is not None:
        rows.append(("success rate", f"{e.success_rate:.1%}"))
    if e.truncated_rate:
        rows.append(("truncated", f"{e.truncated_rate:.1%}"))
    if (x := e.exact) is not None:
        rows += [
            ("exact value of this policy",
             _value(x["policy_value"], "-inf (the policy can loop forever)")),
            ("optimal value", f"{x['optimal_value']:+.4f}"
             + (f"  (best stationary {x['stationary_optimal_value']:+.4f})"
                if x["stationary_optimal_value"] < x["optimal_value"] - 1e-9 else "")),
            ("gap to optimum", _value(x["gap"], "+inf (the policy can loop forever)")),
            ("optimal actions (visit-weighted)", f"{x['optimal_action_share']:.1%}"),
        ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _value(value: float | None, endless: str) -> str:
    """An exact figure; None stands for one that is infinite because a policy may never end."""
    return endless if value is None else f"{value:+.4f}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: typer reports bad usage itself; tabrl's errors become one line and a code."""
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped job keeps its checkpoint, as on Ctrl-C
    try:
        app()
    except TabrlError as error:
        if _debug:
            raise
        err.print(f"error: {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
