"""Many independent training runs at once: hyperparameter settings times seeds, over all cores.

Multi-seed statistics and sweeps need many runs of the same MDP. ``run_batch`` plays them in one
parallel kernel call per slice of episodes, one run per thread at a time. Each run has its own
random generator seeded by its seed, so a run's result is the one ``run_compiled`` gives for the
same setting and seed, whatever the number of threads.

A setting is a dict of the keywords of :func:`tabrl.agents.make_agent` (``algo``,
``learning_rate``, ``discount_factor``, ``initial_epsilon``, ``epsilon_decay``, ``final_epsilon``,
``epsilon_schedule``, ``learning_rate_schedule``, ``exploration`` and the method's own, such as
``n`` or ``planning_steps``): the agent class validates and interprets it, so a batch run and a
single run of the same setting are the same computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from gymnasium import spaces

from tabrl import kernel_cache
from tabrl.agents import TabularAgent
from tabrl.compiled.bridge import observed_for, runs_of, store
from tabrl.compiled.engine import drive, kernels_for, log_of, numba_threads, time_limit
from tabrl.compiled.model import compile_mdp
from tabrl.envs import DEFAULT_STEP_CAP
from tabrl.errors import UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.loop import Progress, TrainingLog


@dataclass
class BatchResult:
    """One run of a batch: its setting and seed, its trained agent and its per-episode log.

    ``log.seconds`` is the wall time of the whole batch, which the runs shared.
    """

    setting: dict[str, Any]
    seed: int
    agent: TabularAgent  #: with everything it learnt (``learning_state()`` included)
    log: TrainingLog

    @property
    def q_values(self) -> np.ndarray:
        """float64[n_rows, n_actions]"""
        return self.agent.q_values.array

    @property
    def visits(self) -> np.ndarray:
        """int64[n_rows, n_actions]"""
        return self.agent.q_values.visits


def template_agent(mdp: TabularMDP, setting: dict[str, Any]) -> TabularAgent:
    """A fresh agent of ``setting`` for ``mdp``: its hyperparameters, epsilon and zero tables.

    The agent's constructor reads only the spaces of its environment, so the MDP's sizes stand
    in. Monte Carlo ES also asks for a transition table: the stand-in shows the MDP as one where
    every state is its own row, which is where the kernels can start an episode anywhere.
    """
    from tabrl.agents import make_agent  # late: training imports this package lazily too

    observations = spaces.Discrete(mdp.n_rows)
    base = SimpleNamespace(observation_space=observations)
    if mdp.n_states == mdp.n_rows and np.array_equal(mdp.row_of_state, np.arange(mdp.n_rows)):
        base.P = mdp
    stand_in = SimpleNamespace(
        observation_space=observations, action_space=spaces.Discrete(mdp.n_actions),
        unwrapped=base, spec=SimpleNamespace(id="this MDP"),
    )
    return make_agent(stand_in, **setting)


def run_batch(
    mdp: TabularMDP,
    settings: Sequence[dict[str, Any]],
    n_episodes: int,
    seeds: Sequence[int],
    max_steps: int = DEFAULT_STEP_CAP,
    n_jobs: int | None = None,
    *,
    progress: Progress | None = None,
) -> list[BatchResult]:
    """Train every setting with every seed for ``n_episodes`` from a zero table, in parallel.

    Results come setting by setting, seeds in order within each. ``n_jobs`` caps the threads
    (None: numba's default, all cores); ``progress`` hears the episodes done by every run and the
    recent mean return over all runs.
    """
    if n_episodes <= 0:
        raise UsageError(f"the number of episodes must be positive, not {n_episodes}")
    pairs = [(s, template_agent(mdp, s), seed) for s in settings for seed in seeds]
    if not pairs:
        raise UsageError("a batch needs at least one setting and one seed")
    agents = [agent for _, agent, _ in pairs]
    observed, limit = observed_for(mdp, agents), time_limit(mdp, max_steps)
    runs = runs_of(agents, observed, mdp.n_rows, [seed for _, _, seed in pairs], n_episodes, limit)
    training = kernels_for(runs)
    kernel_cache.prepare(training)
    with numba_threads(n_jobs):
        seconds = drive(training.entry_point(), compile_mdp(mdp), observed, runs, n_episodes,
                        limit, progress)
    results = []
    for i, (setting, agent, seed) in enumerate(pairs):
        store(runs, i, agent, observed)
        results.append(BatchResult(dict(setting), seed, agent, log_of(runs, i, seconds)))
    return results
