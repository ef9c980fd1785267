"""The time a user waits for ``tabrl train`` and ``tabrl sweep``, against the seed's plain loop.

    python -m bench.e2e [--quick] [--only train|sweep|help]

Everything is measured in this one invocation, so that the ratios compare like with like on a
busy machine (its speed varies 3-5x with the load; read the ratios, not the seconds):

- The seed's plain loop (``bench/baseline.py``, the Gymnasium tutorial's) on Blackjack-v1,
  FrozenLake-v1 and Taxi-v4, with the tutorial's hyperparameters: its episodes per second.
- ``tabrl train ENV --episodes N`` with the same hyperparameters, metrics, the 10,000-episode
  evaluation and the pictures on, in a fresh interpreter as a user runs it
  (``bench/timed_cli.py``: the real command, its phases timed): Blackjack-v1 and FrozenLake-v1
  at 10^4, 10^6 and 10^8 episodes, Taxi-v4 at 10^4, 10^6 and 10^7. Its wall time is split into
  start-up, imports and exit (the interpreter's start, everything imported before ``main``,
  and the interpreter's exit after it),
  compile (or the disk cache's load), training, metrics (waiting for the writer thread,
  reading the columns back and checking them), checkpoints, evaluation, pictures, and the rest
  (options, the environment and its MDP, the run folder, the table); beside them, the seconds
  the writer thread spent writing metrics and checkpoints while the next chunk trained, which
  the user does not wait for (not part of the wall). The marginal episodes per second of the
  command, between its two longest runs, are compared with the plain loop's: of the wall time,
  and of the wall time without the evaluation, the target's measure (issue #10 measured it
  with ``--eval-episodes 0``): the evaluation plays a fixed 10,000 episodes whose cost follows
  the policy learned (a FrozenLake agent that reaches the goal walks longer than one that
  falls), not the training's length.
- Sweep throughput: ``tabrl sweep FrozenLake-v1 --seeds S --grid episodes=20000`` for S = 1, 64
  and 512, in trials per second, with each sweep's CPU seconds (all its threads); the marginal
  cost of a trial, in wall time (the target's measure) and in CPU time, against one trial's
  training timed in this process on one thread (alone, as the target reads it; also with the
  greedy curve that a sweep's trial records, and with its exact value); an 8-seed sweep
  against one ``tabrl train --eval-episodes 0``. A sweep runs its trials on every core, so
  its marginal wall per trial can be below one trial's training: the CPU ratio says what a
  trial costs whatever the threads.
- ``tabrl --help`` against ``python -c "import gymnasium"`` (``bench/startup.py``).
- Last, each target of issue #10 with its measured ratio, MET or NOT MET.

``--only PART`` (repeatable) measures only ``train``, ``sweep`` or ``help`` and their targets.
``--quick`` trains 10^7 episodes where the full run trains 10^8 and stops the sweeps at 64
seeds: about 3 minutes instead of about 8 (on this machine, busy). Between 10^4 and 10^6
episodes the training is too short to tell from the fixed costs' noise, and its plain loop
plays a tenth of the episodes: on FrozenLake mostly an exploring agent's, which falls into a
hole sooner than a trained one walks, so its ratio there reads low. The
10^8-episode runs write 2 GB of metrics each into a temporary folder, removed after each run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.baseline import train_baseline
from bench.startup import best_time

ROOT = Path(__file__).resolve().parents[1]
#: The tutorial's hyperparameters, for the plain loop and for ``tabrl train`` alike.
LEARNING_RATE, DISCOUNT, START_EPSILON, FINAL_EPSILON = 0.01, 0.95, 1.0, 0.1
TUTORIAL_OPTIONS = ["--learning-rate", str(LEARNING_RATE), "--discount", str(DISCOUNT),
                    "--epsilon-start", str(START_EPSILON), "--epsilon-end", str(FINAL_EPSILON)]
#: Episodes of the plain loop per environment: a few seconds of it.
BASELINE_EPISODES = {"Blackjack-v1": 200_000, "FrozenLake-v1": 50_000, "Taxi-v4": 10_000}
#: Episodes of the ``tabrl train`` runs per environment, in full and under ``--quick``.
TRAIN_EPISODES = {"Blackjack-v1": [10**4, 10**6, 10**8], "FrozenLake-v1": [10**4, 10**6, 10**8],
                  "Taxi-v4": [10**4, 10**6, 10**7]}
QUICK_TRAIN_EPISODES = {"Blackjack-v1": [10**4, 10**6, 10**7],
                        "FrozenLake-v1": [10**4, 10**6, 10**7], "Taxi-v4": [10**4, 10**6, 10**7]}
QUICK_DIVISOR = 10  #: of the plain loop's episodes under ``--quick``
PHASES = ("compile", "training", "metrics", "checkpoints", "evaluation", "pictures")
SWEEP_ENV, SWEEP_EPISODES = "FrozenLake-v1", 20_000
SWEEP_SEEDS, QUICK_SWEEP_SEEDS = [1, 64, 512], [1, 64]
PARTS = ("train", "sweep", "help")  #: what ``--only`` may choose
REPEATS = 3  #: short commands run this many times; the fastest counts (the least disturbed)
#: Runs of a sweep of more than 64 seeds: one disturbed run of the largest sweep is the margin.
LARGE_REPEATS = 2
TRIAL_REPEATS = 20  #: in-process trainings of one trial; the median counts
#: Targets of issue #10.
TRAIN_TARGET, PLUMBING_TARGET, SWEEP_TARGET, EIGHT_SEEDS_TARGET, HELP_TARGET = (
    300.0, 0.20, 1.5, 1.5, 3.0)


@dataclass(frozen=True)
class TrainTiming:
    """One ``tabrl train`` command: its wall time, split into phases, and its peak memory."""

    env_id: str
    episodes: int
    wall: float
    startup: float  #: the command's wall outside ``main``: interpreter, imports, exit
    phases: dict[str, float]
    peak_mib: float  #: resident set, memory-mapped metrics read included
    peak_anonymous_mib: float  #: the memory the process holds itself
    background: float = 0.0  #: the writer thread's seconds, hidden behind the training

    @property
    def other(self) -> float:
        return self.wall - self.startup - sum(self.phases.values())

    @property
    def plumbing(self) -> float:
        """The share of the wall time that is not training."""
        return 1 - self.phases.get("training", 0.0) / self.wall


class CommandFailed(Exception):
    """A timed command failed: the benchmark says how, in a line, and goes on where it can."""


def run(argv: list[str]) -> float:
    """The wall time of a command run from the repository (its output discarded)."""
    return run_timed(argv)[0]


def run_timed(argv: list[str]) -> tuple[float, float]:
    """The wall time of a command run from the repository (its output discarded), and the CPU
    time (user and system, all its threads) it took."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandFailed(f"`{' '.join(argv[2:])}` failed after {took:.1f} s "
                            f"(exit {done.returncode}): {last}")
    return took, (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)


def fastest(argv: list[str], out: Path, repeats: int = REPEATS) -> float:
    """The fastest wall of ``repeats`` runs of a command that creates the folder ``out``
    (removed before each run: a fresh run, not a resumed one)."""
    return fastest_timed(argv, out, repeats)[0]


def fastest_timed(argv: list[str], out: Path, repeats: int = REPEATS) -> tuple[float, float]:
    """:func:`fastest`, with the CPU seconds of that fastest run."""
    timings = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        timings.append(run_timed(argv))
    shutil.rmtree(out, ignore_errors=True)
    return min(timings)


def tabrl(*args: str) -> list[str]:
    return [sys.executable, "-m", "tabrl", *args]


def time_train(env_id: str, episodes: int, scratch: Path) -> TrainTiming:
    """``tabrl train`` of ``episodes`` with the tutorial's settings, its phases timed; the run
    folder is removed afterwards (10^8 episodes of metrics weigh 2 GB)."""
    out, report = scratch / "run", scratch / "phases.json"
    try:
        wall = run([sys.executable, "-m", "bench.timed_cli", str(report), "train", env_id,
                    "--episodes", str(episodes), *TUTORIAL_OPTIONS, "--out", str(out),
                    "--quiet"])
        timed = json.loads(report.read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return TrainTiming(env_id, episodes, wall, wall - timed["main"], timed["phases"],
                       timed["peak_mib"], timed["peak_anonymous_mib"],
                       sum(timed["background"].values()))


def baseline_rate(env_id: str, episodes: int) -> float:
    """The plain loop's episodes per second on ``env_id``."""
    done = train_baseline(env_id, episodes, LEARNING_RATE, START_EPSILON, FINAL_EPSILON, DISCOUNT)
    return done.episodes / done.seconds


def train_rows(sizes: dict[str, list[int]], baselines: dict[str, float], scratch: Path
               ) -> list[TrainTiming]:
    """Time every ``tabrl train`` run, printing its row as it ends."""
    names = ("start-up", *PHASES, "other")
    print(f"{'environment':<14} {'episodes':>11} {'wall s':>7} "
          + " ".join(f"{name:>11}" for name in names)
          + f" {'plumbing':>8} {'RSS MiB':>8} {'anon MiB':>8} {'writer s':>8}")
    timings = []
    for env_id, episodes_list in sizes.items():
        for episodes in episodes_list:
            timing = time_train(env_id, episodes, scratch)
            seconds = [timing.startup, *(timing.phases.get(name, 0.0) for name in PHASES),
                       timing.other]
            print(f"{env_id:<14} {episodes:>11,} {timing.wall:>7.2f} "
                  + " ".join(f"{s:>5.2f} {s / timing.wall:>4.0%}" for s in seconds)
                  + f" {timing.plumbing:>8.0%} {timing.peak_mib:>8.0f}"
                  f" {timing.peak_anonymous_mib:>8.0f} {timing.background:>8.2f}", flush=True)
            timings.append(timing)
        rate, plain = marginal_rate(timings, env_id, False), baselines[env_id]
        without = marginal_rate(timings, env_id)
        print(f"{'':<14} marginal episodes/s {rate:,.0f} = {rate / plain:.0f}x the plain loop's "
              f"{plain:,.0f}; without the evaluation {without:,.0f} = {without / plain:.0f}x\n",
              flush=True)
    return timings


def marginal_rate(timings: list[TrainTiming], env_id: str, without_evaluation: bool = True
                  ) -> float:
    """Episodes per second of ``tabrl train`` at the margin, between its two longest runs (of
    the wall time without the evaluation's, by default)."""
    small, big = sorted((t for t in timings if t.env_id == env_id), key=lambda t: t.episodes)[-2:]
    seconds = big.wall - small.wall
    if without_evaluation:
        seconds -= big.phases.get("evaluation", 0.0) - small.phases.get("evaluation", 0.0)
    return (big.episodes - small.episodes) / seconds


@dataclass(frozen=True)
class SweepTimings:
    """Sweep walls and CPU seconds per seed count, on every core and on one thread, one trial's
    in-process training, the 8-seed comparison."""

    walls: dict[int, float | None]  #: None: the sweep failed
    cpus: dict[int, float]  #: user and system seconds of the sweeps that finished
    one_thread: dict[int, float | None]  #: ``--jobs 1`` walls of the two largest sweeps
    one_thread_cpus: dict[int, float]  #: and their CPU seconds
    trial: TrialTimes
    eight_seeds: float
    one_train: float

    @property
    def marginal_per_trial(self) -> float:
        """Wall seconds per trial between the two largest sweeps that finished."""
        return marginal(self.walls)

    @property
    def marginal_cpu_per_trial(self) -> float:
        """CPU seconds per trial between the same two sweeps (every thread's)."""
        return marginal({seeds: self.cpus.get(seeds) for seeds, wall in self.walls.items()
                         if wall is not None})

    @property
    def marginal_one_thread(self) -> float:
        """Wall seconds per trial between the two ``--jobs 1`` sweeps."""
        return marginal(self.one_thread)

    @property
    def marginal_one_thread_cpu(self) -> float:
        """CPU seconds per trial between the two ``--jobs 1`` sweeps."""
        return marginal(dict(self.one_thread_cpus))


def marginal(seconds: dict[int, float | None]) -> float:
    """Seconds per trial between the two largest sweeps that finished (NaN if fewer did)."""
    finished = sorted((seeds, s) for seeds, s in seconds.items() if s is not None)
    if len(finished) < 2:
        return math.nan
    (small, small_seconds), (big, big_seconds) = finished[-2:]
    return (big_seconds - small_seconds) / (big - small)


@dataclass(frozen=True)
class TrialTimes:
    """One sweep trial in this process, kernels warm, each the median of ``TRIAL_REPEATS``."""

    training: float  #: ``train`` alone, as ``tabrl train --eval-episodes 0`` trains
    training_cpu: float  #: its CPU seconds (this process, every thread)
    with_curve: float  #: ``train`` with the greedy curve a sweep trial records
    with_value: float  #: and the exact value of its greedy policy: all a sweep job computes


def trial_seconds() -> TrialTimes:
    """One sweep trial in this process (kernels warm), on one thread as a sweep's job runs:
    its training alone, with the greedy curve a sweep's job records (``curve_points`` of the
    setting), and with the exact value of its greedy policy."""
    from statistics import median

    from tabrl.app.runs import RunConfig
    from tabrl.app.sweep import expand
    from tabrl.compiled import warm_up
    from tabrl.exact.dp import evaluate_policy_exact
    from tabrl.exact.readers import known_mdp
    from tabrl.training import train

    (config,) = expand(RunConfig.resolve(SWEEP_ENV, {}), {"episodes": [SWEEP_EPISODES]})
    warm_up()
    times: list[tuple[float, float, float, float]] = []
    for seed in range(TRIAL_REPEATS):
        marks = []
        for curve_points in (0, config.curve_points):
            env = config.make_env()
            agent = config.make_agent(env)
            start, cpu = time.perf_counter(), time.process_time()
            train(env, agent, config.episodes, seed=seed, engine=config.engine,
                  max_steps=config.max_steps, curve_points=curve_points)
            marks.append((time.perf_counter() - start, time.process_time() - cpu))
        evaluate_policy_exact(known_mdp(env), agent.q_values.greedy_policy())
        times.append((*marks[0], marks[1][0], time.perf_counter() - start))
    return TrialTimes(*(median(column) for column in zip(*times)))


def time_sweeps(seed_counts: list[int], scratch: Path) -> SweepTimings:
    """Sweep walls (each the fastest of ``REPEATS``, of ``LARGE_REPEATS`` beyond 64 seeds),
    printed as they come; then the two largest again on one thread (``--jobs 1``)."""
    out = scratch / "out"

    def sweep(seeds: int, *options: str) -> tuple[float, float]:
        return fastest_timed(tabrl("sweep", SWEEP_ENV, "--seeds", str(seeds), "--grid",
                                   f"episodes={SWEEP_EPISODES}", *options, "--out", str(out),
                                   "--quiet"), out, LARGE_REPEATS if seeds > 64 else REPEATS)

    trial = trial_seconds()
    print(f"one trial in this process (kernels warm, median of {TRIAL_REPEATS}): training "
          f"{trial.training * 1e3:.1f} ms (CPU {trial.training_cpu * 1e3:.1f} ms); with the "
          f"greedy curve a sweep's trial records {trial.with_curve * 1e3:.1f} ms, and its "
          f"exact value {trial.with_value * 1e3:.1f} ms")
    print(f"{'seeds':>6} {'wall s':>7} {'trials/s':>9} {'CPU s':>7}  {'--jobs 1 wall s':>15}")
    walls: dict[int, float | None] = {}
    cpus, one_thread, one_thread_cpus = {}, {}, {}
    for seeds in seed_counts:
        try:
            walls[seeds], cpus[seeds] = sweep(seeds)
            print(f"{seeds:>6} {walls[seeds]:>7.2f} {seeds / walls[seeds]:>9.1f} "
                  f"{cpus[seeds]:>7.2f}", flush=True)
        except CommandFailed as failure:
            walls[seeds] = None
            print(f"{seeds:>6} {failure}", flush=True)
    for seeds in seed_counts[-2:]:
        try:
            one_thread[seeds], one_thread_cpus[seeds] = sweep(seeds, "--jobs", "1")
            print(f"{seeds:>6} {'':>7} {'':>9} {'':>7}  {one_thread[seeds]:>15.2f} (CPU "
                  f"{one_thread_cpus[seeds]:.2f} s)", flush=True)
        except CommandFailed as failure:
            one_thread[seeds] = None
            print(f"{seeds:>6} --jobs 1: {failure}", flush=True)
    eight = sweep(8)[0]
    one = fastest(tabrl("train", SWEEP_ENV, "--episodes", str(SWEEP_EPISODES),
                        "--eval-episodes", "0", "--out", str(out), "--quiet"), out)
    timings = SweepTimings(walls, cpus, one_thread, one_thread_cpus, trial, eight, one)
    print(f"marginal cost of a trial (two largest sweeps that finished), against its training: "
          f"wall {timings.marginal_per_trial * 1e3:.1f} ms = "
          f"{timings.marginal_per_trial / trial.training:.2f}x on {os.cpu_count()} threads, "
          f"{timings.marginal_one_thread * 1e3:.1f} ms = "
          f"{timings.marginal_one_thread / trial.training:.2f}x on one;\nCPU "
          f"{timings.marginal_cpu_per_trial * 1e3:.1f} ms = "
          f"{timings.marginal_cpu_per_trial / trial.training_cpu:.2f}x on {os.cpu_count()} "
          f"threads, {timings.marginal_one_thread_cpu * 1e3:.1f} ms = "
          f"{timings.marginal_one_thread_cpu / trial.training_cpu:.2f}x on one\n"
          f"8 seeds {eight:.2f} s against one `tabrl train --eval-episodes 0` {one:.2f} s")
    return timings


def help_ratio() -> tuple[float, float]:
    """``tabrl --help`` and ``python -c "import gymnasium"``, each the fastest of 5."""
    return best_time(tabrl("--help")), best_time([sys.executable, "-c", "import gymnasium"])


def verdict(name: str, measured: float, target: float, shown: str, at_most: bool = True) -> str:
    met = measured <= target if at_most else measured >= target
    return f"{name:<58} {shown:>22}  {'MET' if met else 'NOT MET'}"


def targets(baselines: dict[str, float], timings: list[TrainTiming],
            sweeps: SweepTimings | None, help_seconds: tuple[float, float] | None) -> list[str]:
    """Each target of issue #10 that this run measured, with its ratio."""
    lines = []
    for env_id, rate in baselines.items():
        ratio = marginal_rate(timings, env_id) / rate
        lines.append(verdict(f"train {env_id}: marginal ep/s (no eval.) >= "
                             f"{TRAIN_TARGET:.0f}x loop",
                             ratio, TRAIN_TARGET, f"{ratio:.0f}x", at_most=False))
    if timings:
        longest = max((t for t in timings if t.env_id == "Blackjack-v1"),
                      key=lambda t: t.episodes)
        lines.append(verdict(f"plumbing of Blackjack-v1 at {longest.episodes:.0e} episodes < "
                             f"{PLUMBING_TARGET:.0%} of wall", longest.plumbing, PLUMBING_TARGET,
                             f"{longest.plumbing:.0%}"))
    if sweeps is not None:
        ratio = sweeps.marginal_per_trial / sweeps.trial.training
        lines.append(verdict(f"sweep: marginal cost per trial <= {SWEEP_TARGET}x its training",
                             ratio, SWEEP_TARGET, f"{ratio:.2f}x"))
        ratio = sweeps.marginal_one_thread / sweeps.trial.training
        lines.append(verdict("  the same, the sweep on one thread (--jobs 1)", ratio,
                             SWEEP_TARGET, f"{ratio:.2f}x"))
        ratio = sweeps.eight_seeds / sweeps.one_train
        lines.append(verdict(f"sweep of 8 seeds <= {EIGHT_SEEDS_TARGET}x one train "
                             "--eval-episodes 0", ratio, EIGHT_SEEDS_TARGET, f"{ratio:.2f}x"))
    if help_seconds is not None:
        ratio = help_seconds[0] / help_seconds[1]
        lines.append(verdict(f"tabrl --help <= {HELP_TARGET:.0f}x python -c 'import gymnasium'",
                             ratio, HELP_TARGET, f"{ratio:.2f}x"))
    return lines


def main() -> None:
    try:
        bench()
    except CommandFailed as failure:
        sys.exit(f"error: {failure}")


def bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10^7 episodes at most, 64 seeds at most (about 3 minutes)")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="measure only this part (repeatable; default: all)")
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    began = time.perf_counter()
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}; "
          f"hyperparameters of the tutorial (learning rate {LEARNING_RATE}, discount {DISCOUNT}, "
          f"epsilon {START_EPSILON} -> {FINAL_EPSILON} over half the episodes)")
    baselines: dict[str, float] = {}
    timings: list[TrainTiming] = []
    sweeps = help_seconds = None
    with tempfile.TemporaryDirectory(prefix="tabrl-e2e-") as folder:
        scratch = Path(folder)
        warm = time_train("FrozenLake-v1", 100, scratch)  # compiles once, if the cache is cold
        print(f"first command (kernels compiled or loaded): compile phase "
              f"{warm.phases.get('compile', 0.0):.1f} s\n")
        if "train" in parts:
            divisor = QUICK_DIVISOR if args.quick else 1
            baselines = {env_id: baseline_rate(env_id, episodes // divisor)
                         for env_id, episodes in BASELINE_EPISODES.items()}
            print("the plain loop: " + ", ".join(f"{env_id} {rate:,.0f} episodes/s"
                                                 for env_id, rate in baselines.items()))
            print("tabrl train, wall time split into phases (seconds and share of the wall); "
                  "plumbing = all but training;\npeak memory: resident (with the pages of the "
                  "memory-mapped metrics read) and anonymous (held by the process);\nwriter: "
                  "seconds of the thread that writes metrics while the next chunk trains "
                  "(hidden)\n")
            timings = train_rows(QUICK_TRAIN_EPISODES if args.quick else TRAIN_EPISODES,
                                 baselines, scratch)
        if "sweep" in parts:
            print(f"tabrl sweep {SWEEP_ENV} --seeds S --grid episodes={SWEEP_EPISODES}")
            sweeps = time_sweeps(QUICK_SWEEP_SEEDS if args.quick else SWEEP_SEEDS, scratch)
    if "help" in parts:
        help_seconds = help_ratio()
        print(f"\ntabrl --help {help_seconds[0]:.3f} s, python -c 'import gymnasium' "
              f"{help_seconds[1]:.3f} s (fastest of 5)")
    print(f"\n{'target (issue #10)':<58} {'measured':>22}  verdict")
    for line in targets(baselines, timings, sweeps, help_seconds):
        print(line)
    print(f"\nbenchmark took {time.perf_counter() - began:.0f} s; load average at the end: "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
