"""``train``: one entry point over both engines, in reproducible chunks.

Training runs in chunks of episodes. Each chunk seeds its random streams (the environment's and
the agent's) from ``(seed, chunk index)``, so a run interrupted after any chunk and resumed from
its checkpoint ends bit for bit where the uninterrupted run ends. Between chunks Python reports
progress and writes checkpoints; within a chunk the chosen engine runs at full speed.

A chunk holds about a second of work: about ``CHUNK_STEPS`` environment steps of its engine. Its
episode count is planned from the previous chunk's episode lengths (the first from the time
limit), never from a clock, so where chunks end, and hence the result, is the same on any machine.
The greedy learning curve (:mod:`tabrl.curve`) takes its points inside chunks, never moving them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics

from tabrl.agents import TabularAgent, make_agent
from tabrl.curve import CURVE_SEED_OFFSET, Curve, GreedyValue, curve_episodes
from tabrl.display import Facts, Shown, env_name
from tabrl.envs import DEFAULT_STEP_CAP, make_env, time_limit_of, with_step_cap
from tabrl.errors import NotCompilableError, TabrlError, UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.exact.readers import mdp_of
from tabrl.loop import OnMark, Progress, TrainingLog, find_episode_statistics, run_python
from tabrl.masks import mask_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ENGINES = ("auto", "python", "compiled")
#: Environment steps in a chunk: at most about a second of training on each engine.
CHUNK_STEPS = {"python": 20_000, "compiled": 20_000_000}
CHUNK_GROWTH = 10  #: a chunk plays at most this many times the previous chunk's episodes
MAX_CHUNK_EPISODES = 1_000_000  #: so that a chunk's log stays small in memory
#: The fixed chunks of run folders made before chunks were planned by steps.
LEGACY_CHUNK_EPISODES = {"python": 10_000, "compiled": 100_000}


class TrainingDivergedError(TabrlError):
    """The Q-table became NaN or infinite: nothing of it is worth keeping."""


@dataclass
class EngineChoice:
    """Which engine runs, the MDP it needs, and why (printed for ``auto``)."""

    name: str
    mdp: TabularMDP | None
    reason: str


def choose_engine(env: gym.Env, requested: str, agent: TabularAgent) -> EngineChoice:
    """Compiled where the environment's dynamics are known and the agent has a kernel, else
    python, with the reason."""
    if requested not in ENGINES:
        raise UsageError(f"unknown engine {requested!r}: use one of {', '.join(ENGINES)}")
    if requested == "python":
        return EngineChoice("python", None, "requested with --engine python")
    try:
        from tabrl.compiled import supports

        exploration = agent.exploration.name
        if not supports(agent.algo, exploration):
            raise NotCompilableError(
                f"the compiled engine has no kernel for {agent.algo} with {exploration} exploration"
            )
        mdp = mdp_of(env)
        if agent.action_mask and mask_table(env, agent.q_values.encoder, agent.n_actions) is None:
            raise NotCompilableError(
                "its action masks come from info step by step, and the kernels need them all "
                "beforehand (from the environment's action_mask(state))"
            )
    except NotCompilableError as error:
        if requested == "compiled":
            raise NotCompilableError(f"cannot use the compiled engine: {error}") from None
        return EngineChoice("python", None, f"python engine: {error}")
    return EngineChoice("compiled", mdp, "compiled engine: the environment's MDP is known")


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of one chunk, derived from the run's seed so that chunks are independent."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


@dataclass(repr=False)
class Training(Shown):
    """The outcome of :func:`train`: the trained agent, its log and the engine that ran.

    ``log`` holds every episode when :func:`train` keeps it (its default), else none: a run
    folder stores each chunk's episodes (``chunk_log``) as they come. It shows itself as a few
    facts (``repr``, a table in Jupyter); :meth:`plot` draws its curves or its policy.
    """

    agent: TabularAgent
    log: TrainingLog
    env: gym.Env
    engine: EngineChoice
    episodes_done: int
    chunks_done: int = 0  #: chunks played; chunk ``k`` is seeded from ``(seed, k)``
    next_chunk: int = 0  #: episodes planned for the next chunk (0: none played yet)
    seconds: float = 0.0  #: wall time of the training, compilation excluded
    chunk_log: TrainingLog = field(default_factory=lambda: TrainingLog.empty(0))
    curve: Curve = field(default_factory=Curve)  #: the greedy learning curve so far
    chunk_curve: Curve = field(default_factory=Curve)  #: its points taken in the last chunk

    def facts(self) -> tuple[str, Facts]:
        agent, table = self.agent, self.agent.q_values
        facts = [("episodes", f"{self.episodes_done:,}"), ("engine", self.engine.name)]
        if self.seconds > 0:
            rate = self.episodes_done / self.seconds
            facts.append(("time", f"{self.seconds:.2f} s ({rate:,.0f} episodes/s)"))
        if len(self.log):
            tail = max(1, len(self.log) // 10)
            mean = float(np.mean(self.log.returns[-tail:]))
            facts.append(("mean return", f"{mean:+.4f} over the last {tail:,} episodes"))
        facts += [("epsilon now", f"{agent.epsilon:.4g}"),
                  ("states visited", f"{int(table.visited().sum()):,} of {table.n_rows:,}")]
        return f"Training: {agent.algo} on {env_name(self.env)}", facts

    def plot(self, kind: str = "curves", *, window: int = 500, title: str = "") -> Figure:
        """A new figure: ``"curves"``, the learning curves (moving averages over ``window``
        episodes) or ``"policy"``, the greedy policy, each beside the exact optimum where the
        environment's MDP is known."""
        from tabrl.plots.agent import agent_figure

        return agent_figure(kind, self.env, self.agent, self.log.columns, window,
                            title or f"{self.agent.algo} on {env_name(self.env)}", self.curve)


@dataclass(frozen=True)
class ChunkPlan:
    """Where chunks end: fixed episode counts, or about ``steps`` environment steps each."""

    steps: int
    time_limit: int
    fixed: int | None = None

    def next(self, training: Training, n_episodes: int) -> tuple[int, int]:
        """The index and the episode count of the chunk that follows ``training``."""
        start = training.episodes_done
        if self.fixed is not None:  # aligned on multiples of the size, as runs always were
            index = start // self.fixed
            return index, min(self.fixed * (index + 1), n_episodes) - start
        planned = training.next_chunk or max(1, self.steps // self.time_limit)
        return training.chunks_done, min(planned, n_episodes - start)

    def after(self, log: TrainingLog) -> int:
        """The episodes of the chunk after one that played ``log``: its steps' worth, in integers
        (no float rounding that could differ between machines)."""
        if self.fixed is not None:
            return self.fixed
        steps = int(log.lengths.sum())
        fitting = self.steps * len(log) // max(steps, 1)
        return max(1, min(fitting, CHUNK_GROWTH * len(log), MAX_CHUNK_EPISODES))

    def largest(self) -> int:
        """An upper bound of a chunk's episodes (each episode takes at least one step)."""
        return self.fixed or min(self.steps, MAX_CHUNK_EPISODES)




def train(
    env: str | gym.Env = "Blackjack-v1",
    agent: TabularAgent | None = None,
    n_episodes: int = 100_000,
    *,
    seed: int = 0,
    engine: str | EngineChoice = "auto",
    max_steps: int = DEFAULT_STEP_CAP,
    chunk_episodes: int | None = None,
    chunk_steps: int | None = None,
    progress: Progress | None = None,
    on_chunk: Callable[[Training], None] | None = None,
    resume_from: Training | None = None,
    keep_log: bool = True,
    curve_points: int = 0,
    curve_value: GreedyValue | None = None,
    **hyperparameters,
) -> Training:
    """Train an agent on ``env`` (an id or an environment) for ``n_episodes`` episodes.

    Without ``agent`` one is made from ``hyperparameters``: ``algo`` (``"q-learning"`` by
    default, or another of ``tabrl.agents.AGENTS``) and the tutorial's names (``learning_rate``,
    ``initial_epsilon``, ``epsilon_decay``, ``final_epsilon``, ``discount_factor``), with the
    method's own keywords (``n``, ``lam``, ``exploration``, ...). Environments
    without a time limit get a cap of ``max_steps`` steps per episode. ``engine`` is ``"auto"``,
    ``"python"``, ``"compiled"`` or an :class:`EngineChoice` made beforehand. Chunks hold
    ``chunk_episodes`` episodes each if given, else about ``chunk_steps`` steps (default
    ``CHUNK_STEPS`` of the engine, shared with Dyna-Q's planning updates). ``on_chunk`` sees
    the training after every chunk (for checkpoints); ``resume_from`` continues such a
    checkpoint. Without ``keep_log`` the returned log is empty and memory stays bounded by a
    chunk (``on_chunk`` sees each chunk's log). ``curve_points`` evenly spaced points of the
    greedy learning curve (:mod:`tabrl.curve`) go to ``training.curve``, valued by ``curve_value``
    (default: exactly where the MDP is known, else by Monte Carlo from the run's evaluation seed);
    a resumed training takes the points of its ``n_episodes`` that it has not reached yet.
    """
    if n_episodes <= 0:
        raise UsageError(f"the number of episodes must be positive, not {n_episodes}")
    if isinstance(env, str):
        env = make_env(env)
    env = with_step_cap(env, max_steps)
    if resume_from is not None:
        agent = resume_from.agent
    else:
        agent = agent or make_agent(env, seed=seed, **hyperparameters)
    choice = engine if isinstance(engine, EngineChoice) else choose_engine(env, engine, agent)
    steps = chunk_steps or CHUNK_STEPS[choice.name] // updates_per_step(agent)
    plan = ChunkPlan(steps, time_limit_of(env) or max_steps, chunk_episodes)
    marks = curve_episodes(n_episodes, curve_points)
    if curve_value is None and len(marks):
        curve_value = GreedyValue(env, agent.q_values.encoder, seed=seed + CURVE_SEED_OFFSET,
                                  max_steps=max_steps)
    if find_episode_statistics(env) is None:
        env = RecordEpisodeStatistics(env, buffer_length=plan.largest())
    training = resume_from or Training(agent, TrainingLog.empty(0), env, choice, 0)
    training.env, training.engine = env, choice
    logs = [training.log] if keep_log else []
    while training.episodes_done < n_episodes:
        index, size = plan.next(training, n_episodes)
        start = training.episodes_done
        inside = marks[(marks > start) & (marks <= start + size)]
        policies: list[np.ndarray] = []
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflows are checked below
                chunk_log = run_chunk(training, size, chunk_seed(seed, index), max_steps,
                                      progress, inside - start, policies.append)
        except Exception:  # a NaN value breaks the greedy choice mid-chunk: say why
            check_finite(training.agent, training.episodes_done + size)
            raise
        check_finite(training.agent, training.episodes_done + size)
        training.episodes_done += size
        training.chunks_done, training.next_chunk = index + 1, plan.after(chunk_log)
        training.seconds += chunk_log.seconds
        training.chunk_log = chunk_log
        training.chunk_curve = Curve(inside, np.array([curve_value(p) for p in policies]))
        training.curve = training.curve.extended(training.chunk_curve)
        if keep_log:
            logs.append(chunk_log)
        if on_chunk is not None:
            on_chunk(training)
    training.log = TrainingLog.concatenate(logs) if keep_log else TrainingLog.empty(0)
    training.log.seconds = training.seconds
    return training


def updates_per_step(agent: TabularAgent) -> int:
    """Q-table updates per environment step: Dyna-Q's planning multiplies what a step costs."""
    return 1 + getattr(agent, "planning_steps", 0)


def check_finite(agent: TabularAgent, episodes: int) -> None:
    """Stop a training whose Q-table has become NaN or infinite (a learning rate or a reward
    scale too large): every later update would spread the damage, and no policy is left."""
    table = agent.q_values.array[: agent.q_values.n_rows]
    if not np.isfinite(table).all():
        kind = "NaN" if np.isnan(table).any() else "infinite"
        raise TrainingDivergedError(
            f"training diverged: the Q-table holds {kind} values by episode {episodes:,}: "
            "lower the learning rate (or scale the rewards down)"
        )


def run_chunk(
    training: Training, n_episodes: int, seed: int, max_steps: int, progress: Progress | None,
    marks: Sequence[int] = (), on_mark: OnMark | None = None,
) -> TrainingLog:
    """One chunk of episodes on the chosen engine, its random streams seeded by ``seed``
    (``on_mark`` sees a copy of the greedy policy after each episode count of ``marks``)."""
    offset = training.episodes_done
    report = None if progress is None else (lambda done, mean: progress(offset + done, mean))
    training.agent.rng = np.random.default_rng(seed)
    if training.engine.name == "compiled":
        from tabrl.compiled import run_compiled

        return run_compiled(
            training.engine.mdp, training.agent, n_episodes,
            seed=seed, max_steps=max_steps, progress=report, marks=marks, on_mark=on_mark,
        )
    return run_python(training.env, training.agent, n_episodes, seed=seed, progress=report,
                      marks=marks, on_mark=on_mark)
