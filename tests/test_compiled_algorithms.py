"""Every method and exploration strategy on the compiled engine, against the Python engine.

Three kinds of evidence that the kernels do what the agents do:

- exact: where both engines must take the same steps (a deterministic lake, a Q-table with one
  best action per state, no exploration), they must make the same updates (up to rounding),
  and the kernels' policy expectations and action laws must equal the agents' on any Q-table;
- statistical: on the slippery FrozenLake and on CliffWalking, the mean training return of the
  last episodes and the mean exact value of the greedy policy over a few Python seeds must lie
  within four standard errors of the compiled engine's mean over many seeds;
- textbook: Sutton and Barto's Examples 6.6 and 6.7 hold on the compiled engine, and a run
  interrupted and resumed from its folder ends where the uninterrupted one does.

Seeds are fixed, so each test passes or fails the same way on every run.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

import tabrl.examples
from tabrl import evaluate_policy_exact
from tabrl.agents import AGENTS, make_agent
from tabrl.compiled import kernels, run_batch, run_compiled, supports
from tabrl.compiled.bridge import runs_of, setting_of
from tabrl.compiled.model import observed_outcomes
from tabrl.envs import make_env, with_step_cap
from tabrl.exact.readers import mdp_of
from tabrl.loop import run_python
from tabrl.schedules import Schedule
from tabrl.training import train

EXPLORATIONS = ("epsilon-greedy", "softmax", "ucb")
GAMMA = 0.9


def test_every_method_and_strategy_has_a_kernel():
    assert all(supports(algo, exploration) for algo in AGENTS for exploration in EXPLORATIONS)
    assert not supports("q-learning", "greedy-ish")


# --- exact: the same steps make the same updates --------------------------------------------------
#: Greedy routes on the deterministic lake, as (state, action) pairs: to the goal (down, down,
#: right, right, down, right), and back and forth between the first two cells.
TO_THE_GOAL = [(0, 1), (4, 1), (8, 2), (9, 2), (10, 1), (14, 2)]
BACK_AND_FORTH = [(0, 2), (1, 0)]
ROUTES = {  # route, time limit, episode length
    "to-the-goal": (TO_THE_GOAL, 100, 6),
    "truncated": (TO_THE_GOAL, 4, 4),
    "back-and-forth": (BACK_AND_FORTH, 7, 7),  # every pair again and again: first visits count
}
METHOD_PARAMS = {"n-step-sarsa": {"n": 3}, "sarsa-lambda": {"lam": 0.7},
                 "q-lambda": {"lam": 0.7}, "dyna-q": {"planning_steps": 5}, "tree-backup": {"n": 3},
                 "q-sigma": {"n": 3, "sigma": 0.5}}
#: Dyna-Q's planning draws pairs at random: one episode is exact without it (its model, always).
EXACT_PARAMS = {**METHOD_PARAMS, "dyna-q": {"planning_steps": 0}}


def route_agent(env: gym.Env, algo: str, exploration: str, route: list[tuple[int, int]]):
    """An agent that follows ``route`` on the deterministic lake, never exploring.

    Every value is distinct and the route's actions lead by 2, so the route stays greedy while
    the agent learns; with UCB every pair starts with one visit, so the bonus does not choose
    either, and softmax is nearly greedy at its temperature.
    """
    strategy = {"softmax": {"temperature": 1e-3}, "ucb": {"ucb_c": 1.0}}.get(exploration, {})
    agent = make_agent(env, algo=algo, learning_rate=0.5, discount_factor=GAMMA,
                       initial_epsilon=0.0, final_epsilon=0.0, exploration=exploration,
                       seed=0, **strategy, **EXACT_PARAMS.get(algo, {}))
    agent.q_values.array[:] = np.random.default_rng(1).uniform(0.0, 0.5, (16, 4))
    for state, action in route:
        agent.q_values.array[state, action] += 2.0
    if exploration == "ucb":
        agent.q_values.visits[:] = 1
    return agent


EXACT_CASES = [
    (algo, exploration, route)
    for algo, exploration in [(algo, "epsilon-greedy") for algo in sorted(AGENTS)]
    + [("expected-sarsa", "ucb"), ("sarsa", "softmax"), ("monte-carlo", "ucb")]
    for route in ROUTES
    # Double Q's coins decide how a pair met again is updated: only new pairs are exact
    if not (algo == "double-q-learning" and route == "back-and-forth")
]


@pytest.mark.parametrize(("algo", "exploration", "route"), EXACT_CASES)
def test_one_episode_makes_the_python_engines_updates(algo, exploration, route):
    pairs, limit, length = ROUTES[route]
    env = gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=limit)
    python, compiled = (route_agent(env, algo, exploration, pairs) for _ in range(2))
    python_log = run_python(env, python, 1, seed=0)
    compiled_log = run_compiled(mdp_of(env), compiled, 1, seed=0, max_steps=100)
    assert compiled_log.lengths[0] == python_log.lengths[0] == length
    assert compiled_log.returns[0] == python_log.returns[0]
    assert compiled_log.td_errors[0] == pytest.approx(python_log.td_errors[0], abs=1e-12)
    assert np.array_equal(compiled.q_values.visits, python.q_values.visits)
    np.testing.assert_allclose(compiled.q_values.array, python.q_values.array, rtol=0, atol=1e-12)
    if algo == "double-q-learning":  # the coins differ: only the difference's size follows
        np.testing.assert_allclose(np.abs(compiled.half_difference),
                                   np.abs(python.half_difference), rtol=0, atol=1e-12)
    if algo == "dyna-q":
        assert compiled.seen == python.seen and compiled.model == python.model


#: Per-state schedules (the visits kind): epsilon and temperature from each row's visits.
PER_STATE = {"epsilon_schedule": Schedule.visits(0.9, 0.5, 0.1),
             "temperature_schedule": Schedule.visits(2.0, 0.5, 0.2)}
POLICY_CASES = [(exploration, False) for exploration in EXPLORATIONS] + [
    ("epsilon-greedy", True), ("softmax", True)]


def policy_case(exploration: str, per_state: bool):
    """An agent (epsilon 0.3, temperature 0.7, or ``PER_STATE``'s schedules) over six rows of
    values and visit counts, and the arguments the kernels' policy helpers take for it, around
    the row (and the generator).

    The rows hold ties (a greedy set of one, two or all actions) and, for UCB, actions never
    tried (one, two, none).
    """
    schedules = PER_STATE if per_state else {"temperature": 0.7}
    agent = make_agent(gym.make("FrozenLake-v1"), initial_epsilon=0.3, final_epsilon=0.3,
                       exploration=exploration, **schedules)
    q, visits = agent.q_values.array, agent.q_values.visits
    q[:6] = np.random.default_rng(3).normal(size=(6, 4))
    q[1, :2] = q[1].max() + 1.0
    q[2, :] = 0.5
    visits[:6] = [[0, 1, 0, 3], [4, 4, 1, 1], [1, 1, 1, 1], [2, 0, 5, 5], [9, 1, 3, 3],
                  [1, 2, 3, 4]]
    head = (tuple(setting_of(agent)), q, visits, np.zeros((0, 4), np.bool_))
    tail = (agent.epsilon, agent.temperature, np.zeros((1, 4)))
    return agent, head, tail


@pytest.mark.parametrize(("exploration", "per_state"), POLICY_CASES)
def test_policy_expectations_equal_the_agents(exploration, per_state):
    agent, head, tail = policy_case(exploration, per_state)
    for row in range(6):
        assert kernels._policy_value(*head, row, *tail) == pytest.approx(
            agent.policy_value(row), abs=1e-12)


@pytest.mark.parametrize(("exploration", "per_state"), POLICY_CASES)
def test_actions_follow_the_agents_probabilities(exploration, per_state):
    """Chi-square of 20,000 kernel draws per row against ``exploration.probabilities``."""
    agent, head, tail = policy_case(exploration, per_state)
    state, n = kernels.seed_state(11), 20_000
    for row in range(6):
        counts = np.zeros(4)
        for _ in range(n):
            action, words = kernels._explore(*head, row, *tail, tuple(state))
            state = np.array(words, dtype=np.uint64)  # returned as Python ints
            counts[action] += 1
        expected = np.array(agent.exploration.probabilities(agent, row)) * n
        assert not counts[expected == 0].any(), (row, counts)
        if (expected > 0).sum() > 1:
            fit = stats.chisquare(counts[expected > 0], expected[expected > 0])
            assert fit.pvalue > 1e-3, (row, counts, expected)


def test_dyna_q_plans_on_seen_pairs_uniformly_and_on_outcomes_by_count():
    """20,000 planning updates from a model of two pairs: each pair about half of them, and
    (with step sizes 1/n and no discount) Q of the pair = the share of its rewarding draws.

    On the slippery lake, right from cell 14 reaches the goal (reward 1), slips down (stays in
    14) or up (to 10); the model has seen them 1, 2 and 1 times: Q should approach 1/4.
    """
    env = gym.make("FrozenLake-v1")
    mdp = mdp_of(env)
    observed = observed_outcomes(mdp)
    agent = make_agent(env, algo="dyna-q", planning_steps=20_000, discount_factor=0.0,
                       learning_rate_schedule=Schedule.visits(1.0, 1.0))
    agent.seen = [(14, 2)]
    agent.model = {(14, 2): {(1.0, 15, True): 1, (0.0, 14, False): 2, (0.0, 10, False): 1}}
    runs = runs_of([agent], observed, mdp.n_rows, [0], 1, 100)
    q, visits = runs.q[0], runs.visits[0]
    real_step = mdp.outcomes(0, 0).start  # a first real step: (0, left) joins the model
    kernels._dyna_q(observed, tuple(runs.settings[0]), q, q.reshape(q.size),
                    visits.reshape(visits.size), runs.allowed[0], runs.model_counts[0],
                    runs.model_pairs[0], runs.sizes[0], 0, real_step, tuple(runs.rng[0]))
    n = visits[14, 2] + visits[0, 0]
    assert n == 20_000
    assert abs(visits[14, 2] - n / 2) < 4 * math.sqrt(n / 4), visits[14, 2]
    assert q[14, 2] == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / visits[14, 2]))


# --- statistical: the same results over seeds -----------------------------------------------------
LAKE = dict(learning_rate=0.1, discount_factor=0.99, initial_epsilon=1.0, final_epsilon=0.1)
CLIFF = dict(learning_rate=0.5, discount_factor=1.0, initial_epsilon=0.1, final_epsilon=0.1)
ENVIRONMENTS = {  # hyperparameters, episodes, discount of the greedy value
    "FrozenLake-v1": (LAKE, 1000, None),
    "CliffWalking-v1": (CLIFF, 150, GAMMA),
}
PYTHON_SEEDS, COMPILED_SEEDS, LAST = 4, 64, 100


def training_statistics(env_id: str, setting: dict, engine: str, seeds: range) -> np.ndarray:
    """Per seed: the mean return of the last ``LAST`` episodes and the exact greedy value."""
    hyperparameters, n_episodes, discount = ENVIRONMENTS[env_id]
    decay = {"epsilon_decay": 2 / n_episodes}
    full = {**hyperparameters, **decay, **setting}
    env = gym.make(env_id)
    if engine == "python":
        runs = [train(env_id, n_episodes=n_episodes, seed=seed, engine="python", **full)
                for seed in seeds]
        tables = [(run.log, run.agent.q_values.array) for run in runs]
    else:
        mdp = mdp_of(with_step_cap(make_env(env_id)))
        tables = [(r.log, r.q_values) for r in run_batch(mdp, [full], n_episodes, seeds)]
    return np.array([
        (log.returns[-LAST:].mean(),
         evaluate_policy_exact(env, q.argmax(axis=1), discount).value)
        for log, q in tables
    ])


def assert_same_statistics(env_id: str, setting: dict) -> None:
    python = training_statistics(env_id, setting, "python", range(PYTHON_SEEDS))
    compiled = training_statistics(env_id, setting, "compiled",
                                   range(1000, 1000 + COMPILED_SEEDS))
    spread = compiled.std(axis=0, ddof=1)
    bound = 4 * spread * math.sqrt(1 / PYTHON_SEEDS + 1 / COMPILED_SEEDS) + 1e-9
    gap = np.abs(python.mean(axis=0) - compiled.mean(axis=0))
    assert np.all(gap <= bound), (python.mean(axis=0), compiled.mean(axis=0), bound)


STATISTICAL_CASES = [
    *[(algo, {}) for algo in sorted(AGENTS)],
    ("monte-carlo", {"exploring_starts": True}),
    ("q-learning", {"exploration": "softmax", "temperature": 0.1}),
    ("expected-sarsa", {"exploration": "ucb"}),
    ("q-learning", {"epsilon_schedule": PER_STATE["epsilon_schedule"]}),
    ("q-learning", {"learning_rate_schedule": Schedule.exponential(0.5, 0.02, 0.995)}),
    ("sarsa", {"learning_rate_schedule": Schedule.linear(0.5, 0.05, 800)}),
    ("sarsa", {"exploration": "softmax", "temperature_schedule": Schedule.visits(1.0, 0.5, 0.05)}),
]


@pytest.mark.parametrize(("algo", "params"), STATISTICAL_CASES)
def test_frozen_lake_statistics_agree(algo, params):
    assert_same_statistics("FrozenLake-v1", {"algo": algo, **METHOD_PARAMS.get(algo, {}),
                                             **params})


@pytest.mark.parametrize(("algo", "params"), [
    (algo, params) for algo, params in STATISTICAL_CASES if algo != "monte-carlo"
])  # Monte Carlo's returns there have a tail of 10,000-step episodes: a mean says little
def test_cliff_walking_statistics_agree(algo, params):
    assert_same_statistics("CliffWalking-v1", {"algo": algo, **METHOD_PARAMS.get(algo, {}),
                                               **params})


@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_the_learning_rate_moves_once_per_episode(engine):
    schedule = Schedule.exponential(0.5, 0.02, 0.99)
    training = train("FrozenLake-v1", n_episodes=150, seed=0, engine=engine,
                     learning_rate_schedule=schedule, chunk_episodes=40)
    assert training.engine.name == engine
    assert training.agent.lr == pytest.approx(schedule.at(150), rel=1e-12)


# --- textbook results on the compiled engine ------------------------------------------------------
def test_sarsa_returns_more_than_q_learning_on_the_cliff():
    """S&B Example 6.6 at epsilon 0.1: SARSA's safe path pays about -25 per episode while
    learning, Q-learning's optimal one about -50 (it falls while exploring)."""
    mdp = mdp_of(with_step_cap(make_env("CliffWalking-v1")))
    setting = dict(learning_rate=0.5, initial_epsilon=0.1, final_epsilon=0.1, discount_factor=1.0)
    sarsa, q_learning = (
        run_batch(mdp, [{**setting, "algo": algo}], 500, range(8))
        for algo in ("sarsa", "q-learning")
    )
    sarsa_return = np.mean([r.log.returns[-100:].mean() for r in sarsa])
    q_return = np.mean([r.log.returns[-100:].mean() for r in q_learning])
    assert sarsa_return > q_return + 10, (sarsa_return, q_return)
    env = gym.make("CliffWalking-v1")
    assert all(evaluate_policy_exact(env, r.q_values.argmax(axis=1)).value == -13.0
               for r in q_learning)


def test_double_q_learning_is_not_drawn_left_on_the_compiled_engine():
    """S&B Example 6.7: an episode that goes left lasts two steps, so the share of left first
    moves is the mean length minus one."""
    mdp = mdp_of(tabrl.examples.MaximizationBiasEnv())
    setting = dict(learning_rate=0.1, initial_epsilon=0.1, final_epsilon=0.1, discount_factor=1.0)
    share = {
        algo: np.mean([r.log.lengths.mean() - 1.0
                       for r in run_batch(mdp, [{**setting, "algo": algo}], 300, range(200))])
        for algo in ("q-learning", "double-q-learning")
    }
    assert share["q-learning"] > 0.15
    assert share["double-q-learning"] < 0.5 * share["q-learning"], share


# --- batches and resumed runs ---------------------------------------------------------------------
def test_a_batch_of_mixed_methods_equals_single_runs():
    env = gym.make("FrozenLake-v1")
    mdp, n = mdp_of(env), 300
    settings = [{**LAKE, "algo": "sarsa-lambda", "lam": 0.5},
                {**LAKE, "algo": "dyna-q", "planning_steps": 3},
                {**LAKE, "algo": "monte-carlo", "exploration": "softmax"},
                {**LAKE, "algo": "tree-backup", "n": 3},
                {**LAKE, "algo": "q-sigma", "n": 2, "sigma": 0.3, "exploration": "ucb"}]
    batch = run_batch(mdp, settings, n, [4], max_steps=100)
    for setting, result in zip(settings, batch, strict=True):
        agent = make_agent(env, **setting)
        log = run_compiled(mdp, agent, n, seed=4, max_steps=100)
        assert np.array_equal(result.q_values, agent.q_values.array), setting["algo"]
        assert np.array_equal(result.log.returns, log.returns)
        assert result.agent.learning_state().keys() == agent.learning_state().keys()
