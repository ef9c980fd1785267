"""``train``: one entry point over both engines, in reproducible chunks.

Training runs in chunks of episodes. Each chunk seeds its random streams (the environment's and
the agent's) from ``(seed, chunk index)``, so a run interrupted after any chunk and resumed from
its checkpoint ends bit for bit where the uninterrupted run ends. Between chunks Python reports
progress and writes checkpoints; within a chunk the chosen engine runs at full speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics

from tabrl.agents import TabularAgent, agent_class
from tabrl.envs import DEFAULT_STEP_CAP, make_env, with_step_cap
from tabrl.errors import NotCompilableError, UsageError
from tabrl.loop import Progress, TrainingLog, find_episode_statistics, run_python
from tabrl.mdp import TabularMDP, mdp_of

ENGINES = ("auto", "python", "compiled")
DEFAULT_CHUNK_EPISODES = {"python": 10_000, "compiled": 100_000}


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
    except NotCompilableError as error:
        if requested == "compiled":
            raise NotCompilableError(f"cannot use the compiled engine: {error}") from None
        return EngineChoice("python", None, f"python engine: {error}")
    return EngineChoice("compiled", mdp, "compiled engine: the environment's MDP is known")


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of one chunk, derived from the run's seed so that chunks are independent."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


@dataclass
class Training:
    """The outcome of :func:`train`: the trained agent, its log and the engine that ran."""

    agent: TabularAgent
    log: TrainingLog
    env: gym.Env
    engine: EngineChoice
    episodes_done: int


def make_agent(env: gym.Env, algo: str = "q-learning", **hyperparameters) -> TabularAgent:
    """An agent of ``algo`` for ``env``, with the tutorial's keyword names."""
    return agent_class(algo)(env, **hyperparameters)


def train(
    env: str | gym.Env = "Blackjack-v1",
    agent: TabularAgent | None = None,
    n_episodes: int = 100_000,
    *,
    seed: int = 0,
    engine: str | EngineChoice = "auto",
    max_steps: int = DEFAULT_STEP_CAP,
    chunk_episodes: int | None = None,
    progress: Progress | None = None,
    on_chunk: Callable[[Training], None] | None = None,
    resume_from: Training | None = None,
    **hyperparameters,
) -> Training:
    """Train an agent on ``env`` (an id or an environment) for ``n_episodes`` episodes.

    Without ``agent`` one is made from ``hyperparameters``: ``algo`` (``"q-learning"`` by
    default, or another of ``tabrl.agents.AGENTS``) and the tutorial's names (``learning_rate``,
    ``initial_epsilon``, ``epsilon_decay``, ``final_epsilon``, ``discount_factor``), with the
    method's own keywords (``n``, ``lam``, ``exploration``, ...). Environments
    without a time limit get a cap of ``max_steps`` steps per episode. ``engine`` is ``"auto"``,
    ``"python"``, ``"compiled"`` or an :class:`EngineChoice` made beforehand. ``on_chunk`` sees the
    training after every chunk (for checkpoints); ``resume_from`` continues such a checkpoint.
    """
    if n_episodes <= 0:
        raise UsageError(f"the number of episodes must be positive, not {n_episodes}")
    if isinstance(env, str):
        env = make_env(env)
    env = with_step_cap(env, max_steps)
    if find_episode_statistics(env) is None:
        env = RecordEpisodeStatistics(env, buffer_length=n_episodes)
    if resume_from is not None:
        agent, log, done = resume_from.agent, resume_from.log, resume_from.episodes_done
    else:
        agent = agent or make_agent(env, seed=seed, **hyperparameters)
        log, done = TrainingLog.empty(0), 0
    choice = engine if isinstance(engine, EngineChoice) else choose_engine(env, engine, agent)
    chunk = chunk_episodes or DEFAULT_CHUNK_EPISODES[choice.name]
    whole = TrainingLog.empty(max(n_episodes, done))  # chunks fill it: the past is never copied
    whole.place(0, log.head(done))
    training = Training(agent, whole.head(done), env, choice, done)
    while training.episodes_done < n_episodes:
        start = training.episodes_done
        index = start // chunk
        size = min(chunk * (index + 1), n_episodes) - start
        chunk_log = run_chunk(training, size, chunk_seed(seed, index), max_steps, progress)
        whole.place(start, chunk_log)
        training.log = whole.head(start + size)
        training.episodes_done += size
        if on_chunk is not None:
            on_chunk(training)
    return training


def run_chunk(
    training: Training, n_episodes: int, seed: int, max_steps: int, progress: Progress | None
) -> TrainingLog:
    """One chunk of episodes on the chosen engine, its random streams seeded by ``seed``."""
    offset = training.episodes_done
    report = None if progress is None else (lambda done, mean: progress(offset + done, mean))
    training.agent.rng = np.random.default_rng(seed)
    if training.engine.name == "compiled":
        from tabrl.compiled import run_compiled

        return run_compiled(
            training.engine.mdp, training.agent, n_episodes,
            seed=seed, max_steps=max_steps, progress=report,
        )
    return run_python(training.env, training.agent, n_episodes, seed=seed, progress=report)
