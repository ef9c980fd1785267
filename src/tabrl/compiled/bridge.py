"""Agents as the kernels' runs, and back: one learning state, whichever engine moves it.

An agent keeps what it learns in Python objects: the Q-table and visit counts, epsilon, the
softmax temperature, Double Q's half difference, Dyna-Q's model as a dict of outcome counts. The
kernels keep the same in the per-run arrays of :class:`~tabrl.compiled.kernels.Runs`.
:func:`runs_of` lays agents out as runs and :func:`store` writes each run back into its agent,
so ``agent.learning_state()`` reads the same after a compiled chunk as after a Python one, and a
checkpoint continues exactly on the engine that wrote it. (The episodic buffers of Monte Carlo,
the n-step methods and the traced ones are empty between episodes, so they need no bridge.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tabrl.agents import TabularAgent
from tabrl.compiled import kernels
from tabrl.compiled.kernels import ObservedOutcomes, Runs
from tabrl.compiled.model import NOTHING_OBSERVED, observed_outcomes
from tabrl.errors import NotCompilableError
from tabrl.exact.mdp import TabularMDP
from tabrl.schedules import Schedule

#: The algorithms the kernels implement, by name, with their code in a setting vector.
ALGO_CODES = kernels.METHOD_CODES
#: The exploration strategies the kernels implement, with their codes.
EXPLORATION_CODES = {
    "epsilon-greedy": kernels.EPSILON_GREEDY,
    "softmax": kernels.SOFTMAX,
    "ucb": kernels.UCB,
}


def supports(algo: str, exploration: str = "epsilon-greedy") -> bool:
    """Whether the compiled engine has a kernel for ``algo`` exploring by ``exploration``."""
    return algo in ALGO_CODES and exploration in EXPLORATION_CODES


# --- settings -------------------------------------------------------------------------------------
def setting_of(agent: TabularAgent) -> np.ndarray:
    """The agent's hyperparameters as the kernels read them (layout in ``kernels``)."""
    exploration = agent.exploration.name
    if not supports(agent.algo, exploration):
        raise NotCompilableError(
            f"the compiled engine has no kernel for {agent.algo} with {exploration} exploration "
            f"(it runs {', '.join(ALGO_CODES)} with {', '.join(EXPLORATION_CODES)}): "
            "use the python engine"
        )
    setting = np.zeros(kernels.SETTING_SIZE)
    setting[[kernels.ALGO, kernels.DISCOUNT, kernels.LEARNING_RATE]] = (
        ALGO_CODES[agent.algo], agent.discount_factor, agent.lr)
    _place(setting, kernels.LR_SCHEDULE, agent.learning_rate_schedule)
    _place(setting, kernels.EPSILON_SCHEDULE, agent.epsilon_schedule)
    _place(setting, kernels.TEMPERATURE_SCHEDULE, agent.temperature_schedule)
    setting[kernels.EXPLORATION] = EXPLORATION_CODES[exploration]
    setting[kernels.UCB_C] = agent.ucb_c
    for param in agent.spec.params:
        setting[kernels.OWN_PARAM_ENTRIES[param.name]] = getattr(agent, param.name)
    return setting


def shared_method(agents: Sequence[TabularAgent]) -> tuple[str, str] | None:
    """The method and exploration strategy of ``agents`` where they share them and none masks
    actions (``kernels.method_of``): the kernel of its own they train on; else None."""
    settings = np.stack([setting_of(agent) for agent in agents])
    masked = any(agent.action_mask or agent.q_values.allowed is not None for agent in agents)
    if kernels.method_of(settings, masked) is None:
        return None
    return agents[0].algo, agents[0].exploration.name


def _place(setting: np.ndarray, at: int, schedule: Schedule) -> None:
    setting[at : at + 4] = schedule.as_array()


# --- runs -----------------------------------------------------------------------------------------
def new_runs(
    observed: ObservedOutcomes,
    settings: np.ndarray,
    shape: tuple[int, int],
    seeds: Sequence[int],
    n_episodes: int,
    time_limit: int,
    allowed: np.ndarray | None = None,
) -> Runs:
    """Runs of ``settings`` from zero tables of ``shape`` (rows, actions), epsilon 1, temperature
    1, with empty logs of ``n_episodes``; per-method arrays sized for the methods present.
    ``allowed`` holds the runs' action masks (bool per run, row and action), if any masks."""
    settings = np.ascontiguousarray(np.atleast_2d(settings), dtype=np.float64)
    n_runs, (n_rows, n_actions) = len(seeds), shape
    n_pairs, present = n_rows * n_actions, set(settings[:, kernels.ALGO].tolist())

    def used_by(*algos: int) -> bool:
        return bool(present & set(algos))

    traced = used_by(*kernels.MARKED)
    dyna = used_by(kernels.DYNA_Q)
    memory = max(kernels.memory_length(setting, time_limit, n_pairs) for setting in settings)
    return Runs(
        settings=settings,
        q=np.zeros((n_runs, n_rows, n_actions)),
        visits=np.zeros((n_runs, n_rows, n_actions), dtype=np.int64),
        rng=np.stack([kernels.seed_state(seed) for seed in seeds]),
        epsilon=np.ones(n_runs),
        temperature=np.ones(n_runs),
        half_difference=np.zeros(
            (n_runs, n_rows if used_by(kernels.DOUBLE_Q_LEARNING) else 0, n_actions)),
        marks=np.zeros((n_runs, n_pairs if traced else 0), dtype=np.int64),
        memory_pairs=np.zeros((n_runs, memory), dtype=np.int64),
        memory_values=np.zeros((n_runs, memory)),
        model_counts=np.zeros((n_runs, observed.reward.size if dyna else 0), dtype=np.int64),
        model_pairs=np.zeros((n_runs, n_pairs if dyna else 0), dtype=np.int64),
        sizes=np.zeros((n_runs, 2), dtype=np.int64),
        allowed=(np.zeros((n_runs, 0, n_actions), dtype=np.bool_) if allowed is None
                 else np.ascontiguousarray(allowed, dtype=np.bool_)),
        returns=np.zeros((n_runs, n_episodes)),
        lengths=np.zeros((n_runs, n_episodes), dtype=np.int64),
        td_errors=np.zeros((n_runs, n_episodes)),
        epsilons=np.zeros((n_runs, n_episodes)),
    )


def observed_for(mdp: TabularMDP, agents: Sequence[TabularAgent]) -> ObservedOutcomes:
    """The outcomes of ``mdp`` as Dyna-Q observes them, if one of ``agents`` is Dyna-Q."""
    if any(agent.algo == "dyna-q" for agent in agents):
        return observed_outcomes(mdp)
    return NOTHING_OBSERVED


def runs_of(
    agents: Sequence[TabularAgent],
    observed: ObservedOutcomes,
    n_rows: int,
    seeds: Sequence[int],
    n_episodes: int,
    time_limit: int,
) -> Runs:
    """One run per agent (with its seed), starting from everything the agent has learnt."""
    shape = (n_rows, agents[0].n_actions)
    for agent in agents:
        check_table(agent, shape)
    runs = new_runs(observed, np.stack([setting_of(agent) for agent in agents]), shape, seeds,
                    n_episodes, time_limit, masks_of(agents, shape))
    for i, agent in enumerate(agents):
        load(runs, i, agent, observed)
    return runs


def masks_of(agents: Sequence[TabularAgent], shape: tuple[int, int]) -> np.ndarray | None:
    """The agents' action masks, one table per run (every action allowed for an agent without
    one), or None if no agent masks."""
    if all(agent.q_values.allowed is None for agent in agents):
        return None
    return np.stack([np.ones(shape, np.bool_) if agent.q_values.allowed is None
                     else agent.q_values.allowed[: shape[0]] for agent in agents])


def check_table(agent: TabularAgent, shape: tuple[int, int]) -> None:
    """A one-line error unless the agent's Q-table has the MDP's rows and actions."""
    rows, actions = agent.q_values.array.shape
    if rows < shape[0] or actions != shape[1]:
        raise NotCompilableError(
            f"the agent's Q-table has shape {(rows, actions)}, but the environment's MDP needs "
            f"{shape[0]} rows and {shape[1]} actions"
        )


def load(runs: Runs, i: int, agent: TabularAgent, observed: ObservedOutcomes) -> None:
    """Put ``agent``'s learning state into run ``i``."""
    rows = runs.q.shape[1]
    runs.q[i] = agent.q_values.array[:rows]
    runs.visits[i] = agent.q_values.visits[:rows]
    runs.epsilon[i], runs.temperature[i] = agent.epsilon, agent.temperature
    if agent.algo == "double-q-learning":
        runs.half_difference[i] = agent.half_difference[:rows]
    if agent.algo == "dyna-q":
        load_model(runs, i, agent, observed)


def store(runs: Runs, i: int, agent: TabularAgent, observed: ObservedOutcomes) -> None:
    """Write run ``i``'s learning state back into ``agent`` (its arrays updated in place)."""
    rows = runs.q.shape[1]
    agent.q_values.array[:rows] = runs.q[i]
    agent.q_values.visits[:rows] = runs.visits[i]
    agent.epsilon, agent.temperature = float(runs.epsilon[i]), float(runs.temperature[i])
    agent.lr = float(runs.settings[i, kernels.LEARNING_RATE])
    if agent.algo == "double-q-learning":
        agent.half_difference[:rows] = runs.half_difference[i]
    if agent.algo == "dyna-q":
        store_model(runs, i, agent, observed)


# --- Dyna-Q's model: a dict of counts per pair <-> counts per observed outcome -------------------
def _outcome_key(pair: int, reward: float, next_row: int, terminal: bool) -> tuple:
    """How an observed outcome is matched: after a terminal step the next row is never read
    (and the Python engine sees the environment's last observation there), so it is left out."""
    return pair, float(reward), -1 if terminal else int(next_row), bool(terminal)


def _observed_pairs(observed: ObservedOutcomes) -> np.ndarray:
    """The pair of every observed outcome."""
    return np.repeat(np.arange(observed.offsets.size - 1), np.diff(observed.offsets))


def load_model(runs: Runs, i: int, agent: TabularAgent, observed: ObservedOutcomes) -> None:
    """Dyna-Q's ``agent.model`` and ``agent.seen`` as run ``i``'s counts and seen pairs."""
    if not agent.seen:  # a new agent: nothing to match
        return
    keys = zip(_observed_pairs(observed).tolist(), observed.reward.tolist(),
               observed.next_row.tolist(), observed.terminal.tolist())
    slots = {_outcome_key(*key): slot for slot, key in enumerate(keys)}
    n_actions = runs.q.shape[2]
    for j, (row, action) in enumerate(agent.seen):
        pair = row * n_actions + action
        runs.model_pairs[i, j] = pair
        for (reward, next_row, terminal), count in agent.model[row, action].items():
            slot = slots.get(_outcome_key(pair, reward, next_row, terminal))
            if slot is None:
                raise NotCompilableError(
                    f"the agent's Dyna-Q model holds an outcome ({reward}, {next_row}, {terminal}) "
                    f"of the pair ({row}, {action}) that this MDP never produces: it was learnt "
                    "on another environment"
                )
            runs.model_counts[i, slot] += count
    runs.sizes[i, kernels.MODEL_SIZE] = len(agent.seen)


def store_model(runs: Runs, i: int, agent: TabularAgent, observed: ObservedOutcomes) -> None:
    """Run ``i``'s counts and seen pairs as Dyna-Q's ``agent.model`` and ``agent.seen`` (pairs
    in the order first seen, outcomes in the order of ``observed``)."""
    n_actions, counts = runs.q.shape[2], runs.model_counts[i]
    seen = runs.model_pairs[i, : runs.sizes[i, kernels.MODEL_SIZE]].tolist()
    agent.seen = [divmod(pair, n_actions) for pair in seen]
    agent.model = {pair: {} for pair in agent.seen}
    counted = np.flatnonzero(counts)
    for pair, reward, next_row, terminal, count in zip(
            _observed_pairs(observed)[counted].tolist(), observed.reward[counted].tolist(),
            observed.next_row[counted].tolist(), observed.terminal[counted].tolist(),
            counts[counted].tolist()):
        agent.model[divmod(pair, n_actions)][reward, next_row, terminal] = count
