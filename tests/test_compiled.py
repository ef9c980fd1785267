"""The compiled engine against the real Gymnasium environments, and its reproducibility.

The kernels sample the MDP that tabrl reads from an environment, so every statistical check here
compares them with the environment itself: its transition table ``P`` outcome by outcome, its
episodes under a fixed policy, and the greedy policies of the two engines played on the real
environment. Seeds are fixed, so each test passes or fails the same way on every run.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict

import gymnasium as gym
import numba
import numpy as np
import pytest
from conftest import TESTED_METHOD_KERNELS
from scipy import stats

from tabrl import kernel_cache
from tabrl.agents import QLearningAgent, make_agent
from tabrl.compiled import kernels, rollout, run_batch, run_compiled, supports, warm_up
from tabrl.compiled.bridge import (
    ALGO_CODES,
    EXPLORATION_CODES,
    observed_for,
    runs_of,
    shared_method,
)
from tabrl.compiled.model import compile_mdp
from tabrl.errors import NotCompilableError
from tabrl.exact.mdp import from_transitions
from tabrl.exact.readers import mdp_of
from tabrl.kernel_cache import ENGINE, method_kernels
from tabrl.loop import run_python
from tabrl.schedules import Schedule
from tabrl.training import train

ALPHA = 1e-3  #: significance level of the goodness-of-fit tests
LAKE = dict(learning_rate=0.1, discount_factor=0.99)


def lake_agent(env: gym.Env, n_episodes: int, **given):
    return make_agent(env, **{**LAKE, "epsilon_decay": 2 / n_episodes, **given})


def greedy_success_rate(env: gym.Env, policy: np.ndarray, n_episodes: int, seed: int) -> float:
    """Monte Carlo on the real environment: the share of episodes the greedy policy wins."""
    wins = 0
    obs, _ = env.reset(seed=seed)
    for _ in range(n_episodes):
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(policy[obs]))
            done = terminated or truncated
        wins += reward > 0
        obs, _ = env.reset()
    return wins / n_episodes


# --- the kernels themselves -----------------------------------------------------------------------
def test_generator_matches_the_reference_xoshiro256starstar():
    state, outputs = (1, 2, 3, 4), []
    for _ in range(4):  # the state comes back as Python ints: typed as unsigned again
        output, state = kernels.next_u64(tuple(np.uint64(word) for word in state))
        outputs.append(int(output))
    assert outputs == [11520, 0, 1509978240, 1215971899390074240]


def test_kernels_load_from_the_disk_cache_in_a_new_process():
    warm_up()  # compiles here if the cache was empty, and writes it
    code = "from tabrl.compiled import warm_up; print(warm_up().from_cache)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "True"


class HomeMadeAgent(QLearningAgent):
    """A method the kernels do not know."""

    algo = "home-made"


def test_a_method_without_kernel_is_refused_and_trains_in_python():
    assert supports("sarsa", "softmax")
    assert not supports("home-made")
    env = gym.make("FrozenLake-v1")
    with pytest.raises(NotCompilableError, match="home-made"):
        run_compiled(mdp_of(env), HomeMadeAgent(env), 10, seed=0, max_steps=100)
    assert train(env, HomeMadeAgent(env), 10, engine="auto").engine.name == "python"


def test_the_kernel_of_every_method_is_compiled_once_whatever_it_plays():
    """One signature whatever the method, strategy or batch."""
    env = gym.make("FrozenLake-v1")
    mdp = mdp_of(env)
    for algo, exploration in [("q-learning", "epsilon-greedy"), ("dyna-q", "ucb"),
                              ("monte-carlo", "softmax")]:
        run_compiled(mdp, make_agent(env, algo=algo, exploration=exploration), 10, seed=0,
                     max_steps=100)
    run_batch(mdp_of(gym.make("Taxi-v4")), [{"algo": "sarsa-lambda"}, {}], 10, [0, 1])
    assert len(kernels.train_runs.signatures) == 1


#: Per method, settings that move every schedule kind the kernels know.
SCHEDULED = [
    {}, {"epsilon_schedule": Schedule.exponential(1.0, 0.05, 0.99)},
    {"learning_rate_schedule": Schedule.visits(0.5, 0.7, 0.01)},
    {"learning_rate_schedule": Schedule.linear(0.5, 0.01, 200),
     "epsilon_schedule": Schedule.visits(1.0, 1.0, 0.05)},
]


@pytest.mark.parametrize(("env_id", "algo", "exploration"), [
    ("FrozenLake-v1", "q-learning", "epsilon-greedy"), ("Blackjack-v1", "q-learning",
                                                        "epsilon-greedy"),
    *(("FrozenLake-v1", *method) for method in TESTED_METHOD_KERNELS),
])
def test_a_method_s_own_kernel_gives_the_general_kernel_s_results_bit_for_bit(
        env_id, algo, exploration):
    env = gym.make(env_id)
    mdp = mdp_of(env)
    given = [{"algo": algo, "exploration": exploration, **setting} for setting in SCHEDULED]
    if exploration == "softmax":
        given[1]["temperature_schedule"] = Schedule.exponential(1.0, 0.1, 0.99)
    agents = [lake_agent(env, 1000, **setting) for setting in given]
    observed, model, rows = observed_for(mdp, agents), compile_mdp(mdp), mdp.n_rows
    own, general = (runs_of(agents, observed, rows, [3, 4, 5, 6], 1000, 100) for _ in range(2))
    codes = ALGO_CODES[algo], EXPLORATION_CODES[exploration]
    assert kernels.method_of(own.settings, masked=False) == codes
    own_kernel = kernels.method_kernel(*codes)
    for start, stop in [(0, 400), (400, 1000)]:
        own_kernel(model, observed, own, start, stop, 100)
        kernels.train_runs(model, observed, general, start, stop, 100)
    for a, b in zip(own, general, strict=True):
        assert np.array_equal(a, b)
    assert own.q.any() and own.returns.any()


@pytest.mark.parametrize(("setting", "method"), [
    ({}, ("q-learning", "epsilon-greedy")), ({"algo": "sarsa"}, ("sarsa", "epsilon-greedy")),
    ({"exploration": "softmax"}, ("q-learning", "softmax")), ({"action_mask": True}, None),
    ({"epsilon_schedule": Schedule.visits(1.0, 1.0, 0.05)}, ("q-learning", "epsilon-greedy")),
], ids=["tutorial", "sarsa", "softmax", "masked", "epsilon-by-visits"])
def test_agents_that_share_a_method_have_its_kernel_and_mixed_ones_every_method_s(setting,
                                                                                 method):
    env = gym.make("Taxi-v4")
    agent = make_agent(env, **setting)
    assert shared_method([agent]) == method
    assert shared_method([agent, make_agent(env, **setting, learning_rate=0.5)]) == method
    assert shared_method([make_agent(env, algo="dyna-q"), agent]) is None


def test_a_run_takes_its_method_s_kernel_unless_only_every_method_s_is_ready(monkeypatch):
    """No run waits for a compile it can do without; with nothing ready, the method's own
    compiles (a fraction of the other's compile)."""
    own = method_kernels("sarsa", "ucb")
    for ready, expected in [({own}, own), ({own, ENGINE}, own), ({ENGINE}, ENGINE),
                            (set(), own)]:
        monkeypatch.setattr(kernel_cache, "is_ready", lambda kernels, ready=ready: kernels in ready)
        assert kernel_cache.kernels_to_train(("sarsa", "ucb")) == expected
        assert kernel_cache.kernels_to_train(None) == ENGINE


# --- (a) one step: every (state, action) against the environment's P ------------------------------
def outcome_fit(env: gym.Env, n_per_pair: int) -> tuple[float, int]:
    """Pooled chi-square of the kernel's sampled outcomes against ``env.unwrapped.P``.

    An outcome is ``(next state, reward, terminated)``; ``P``'s entries with the same outcome are
    added up. Pairs with a single outcome must reproduce it every time; the others add their
    chi-square statistic and degrees of freedom (independent pairs: the sums are chi-square).
    """
    table, mdp = env.unwrapped.P, mdp_of(env)
    model, rng = compile_mdp(mdp), kernels.seed_state(12345)
    statistic, dof = 0.0, 0
    for state in range(mdp.n_states):
        for action in range(mdp.n_actions):
            law: dict[tuple, float] = defaultdict(float)
            for p, next_state, reward, terminated in table[state][action]:
                if p > 0:
                    law[next_state, float(reward), bool(terminated)] += p
            drawn = kernels.sample_outcomes(model, state, action, mdp.n_actions, n_per_pair, rng)
            seen = Counter(zip(mdp.next_state[drawn].tolist(), mdp.reward[drawn].tolist(),
                               mdp.terminal[drawn].tolist()))
            assert set(seen) <= set(law), (state, action)
            expected = n_per_pair * np.array(list(law.values()))
            observed = np.array([seen[outcome] for outcome in law])
            statistic += float(((observed - expected) ** 2 / expected).sum())
            dof += len(law) - 1
    return statistic, dof


@pytest.mark.parametrize(
    ("env_id", "kwargs", "n_per_pair"),
    [("FrozenLake-v1", {}, 3000), ("Taxi-v4", {}, 10), ("Taxi-v4", {"is_rainy": True}, 200)],
)
def test_one_step_outcomes_follow_the_transition_table(env_id, kwargs, n_per_pair):
    statistic, dof = outcome_fit(gym.make(env_id, **kwargs), n_per_pair)
    if dof:
        assert stats.chi2.sf(statistic, dof) > ALPHA, (statistic, dof)
    else:
        assert statistic == 0.0  # deterministic: every draw was the only outcome


def test_cumulative_probabilities_are_computed_once_per_mdp():
    mdp = mdp_of(gym.make("FrozenLake-v1"))
    model = compile_mdp(mdp)
    assert compile_mdp(mdp) is model
    first, last = mdp.offsets[:-1], mdp.offsets[1:] - 1
    assert np.all(model.cdf[last] == 1.0)
    assert np.allclose(model.cdf[first], mdp.prob[first])


def test_start_states_follow_the_initial_distribution():
    env = gym.make("Taxi-v4")
    mdp = mdp_of(env)
    law = np.asarray(env.unwrapped.initial_state_distrib)
    drawn = kernels.sample_outcomes(compile_mdp(mdp), -1, 0, mdp.n_actions, 300_000,
                                    kernels.seed_state(7))
    counts = np.bincount(drawn, minlength=mdp.n_states)
    assert not counts[law == 0].any()
    fit = stats.chisquare(counts[law > 0], 300_000 * law[law > 0] / law.sum())
    assert fit.pvalue > ALPHA


@numba.njit
def softmax_counts(q, allowed, temperature, n, seed):
    """How often the compiled softmax draws each action of ``q[0]`` in ``n`` draws."""
    counts, weights = np.zeros(q.shape[1], np.int64), np.empty_like(q)
    s = (seed[0], seed[1], seed[2], seed[3])
    for _ in range(n):
        action, s = kernels._softmax(q, 0, allowed, temperature, weights, s)
        counts[action] += 1
    return counts


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_draws_follow_the_boltzmann_law_and_never_a_masked_action(masked):
    q = np.array([[0.0, 0.5 * np.log(2.0), 0.5 * np.log(4.0), 0.0, 3.0]])
    allowed = np.array([[True, True, True, True, not masked]])
    law = np.exp(q[0] / 0.5) * allowed[0]  # 1, 2, 4, 1 (and e^6 where allowed)
    counts = softmax_counts(q, allowed, 0.5, 200_000, kernels.seed_state(11))
    assert counts[~allowed[0]].sum() == 0
    assert stats.chisquare(counts[allowed[0]], 200_000 * law[allowed[0]] / law.sum()).pvalue \
        > ALPHA


# --- (b) reproducibility --------------------------------------------------------------------------
def compiled_run(seed: int, n_episodes: int = 3000):
    env = gym.make("FrozenLake-v1")
    agent = lake_agent(env, n_episodes)
    log = run_compiled(mdp_of(env), agent, n_episodes, seed=seed, max_steps=100)
    return agent, log


def test_same_seed_same_tables_and_log_other_seed_other_result():
    first, first_log = compiled_run(seed=1)
    again, again_log = compiled_run(seed=1)
    other, _ = compiled_run(seed=2)
    assert np.array_equal(first.q_values.array, again.q_values.array)
    assert np.array_equal(first.q_values.visits, again.q_values.visits)
    for name, column in first_log.columns().items():
        assert np.array_equal(column, again_log.columns()[name]), name
    assert first.epsilon == again.epsilon
    assert not np.array_equal(first.q_values.array, other.q_values.array)


def test_log_has_the_python_engines_columns_and_epsilons():
    env = gym.make("FrozenLake-v1")
    compiled_agent, python_agent = lake_agent(env, 400), lake_agent(env, 400, seed=0)
    compiled = run_compiled(mdp_of(env), compiled_agent, 400, seed=0, max_steps=100)
    python = run_python(env, python_agent, 400, seed=0)
    for name, column in python.columns().items():
        assert compiled.columns()[name].dtype == column.dtype, name
        assert compiled.columns()[name].shape == column.shape, name
    assert np.array_equal(compiled.epsilons, python.epsilons)
    assert compiled_agent.epsilon == python_agent.epsilon


@pytest.mark.parametrize("setting", [
    {}, {"algo": "dyna-q", "exploration": "ucb"}, {"algo": "monte-carlo", "exploring_starts": True},
    {"algo": "sarsa-lambda", "exploration": "softmax"}, {"algo": "n-step-sarsa", "n": 3},
], ids=lambda setting: "-".join(map(str, setting.values())) or "q-learning")
def test_results_do_not_depend_on_how_episodes_are_split_into_calls(setting):
    env = gym.make("FrozenLake-v1")
    mdp, agent = mdp_of(env), lake_agent(env, 1000, **setting)
    model, observed = compile_mdp(mdp), observed_for(mdp, [agent])

    def fresh():
        return runs_of([agent], observed, 16, [5], 1000, 100)

    whole, split = fresh(), fresh()
    kernels.train_runs(model, observed, whole, 0, 1000, 100)
    for start, stop in [(0, 1), (1, 377), (377, 1000)]:
        kernels.train_runs(model, observed, split, start, stop, 100)
    for a, b in zip(whole, split, strict=True):
        assert np.array_equal(a, b)


def test_progress_is_reported_and_ends_at_the_chunk_size():
    env = gym.make("FrozenLake-v1")
    calls = []
    run_compiled(mdp_of(env), lake_agent(env, 5000), 5000, seed=0, max_steps=100,
                 progress=lambda done, mean: calls.append((done, mean)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 5000
    assert all(0.0 <= mean <= 1.0 for _, mean in calls)


def test_episodes_without_a_time_limit_stop_at_max_steps():
    env = gym.make("CliffWalking-v1")
    log = run_compiled(mdp_of(env), make_agent(env), 20, seed=0, max_steps=7)
    assert log.lengths.max() == 7


# --- the update rule, on a coin-flip MDP where the answer is known --------------------------------
def coin_mdp():
    """One state, one action: reward 0 or 1 with probability 1/2, then the episode ends."""
    return from_transitions({0: {0: [(0.5, 0, 0.0, True), (0.5, 0, 1.0, True)]}}, np.ones(1), 1,
                            horizon=None)


def test_learning_rates_constant_and_by_visit_count():
    settings = [{"learning_rate": 0.3}, {"learning_rate_schedule": Schedule.visits(1.0, 1.0)}]
    constant, by_visits = run_batch(coin_mdp(), settings, 200, [3])
    rewards = constant.log.returns
    expected = 0.0
    for reward in rewards:
        expected += 0.3 * (reward - expected)
    assert constant.q_values[0, 0] == pytest.approx(expected, abs=1e-12)
    # 1/n step sizes make Q the sample mean of the rewards
    assert by_visits.q_values[0, 0] == pytest.approx(by_visits.log.returns.mean(), abs=1e-12)
    assert by_visits.visits[0, 0] == 200


# --- (c) the two engines learn equally well on the real FrozenLake --------------------------------
@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_greedy_policy_reaches_the_goal_on_the_deterministic_lake(engine):
    env = gym.make("FrozenLake-v1", is_slippery=False)
    trained = train(env, lake_agent(env, 1000), 1000, seed=0, engine=engine)
    policy = trained.agent.q_values.greedy_policy()
    assert greedy_success_rate(gym.make("FrozenLake-v1", is_slippery=False), policy, 1, 0) == 1.0


def test_both_engines_reach_similar_greedy_success_on_the_slippery_lake():
    """Success rates over four seeds per engine, each greedy policy played 1000 times on the lake.

    With step sizes ``1 / n ** 0.6`` by visit count, 4000 episodes give a greedy policy that
    succeeds about 0.74 of the time (the optimum) for 98 seeds in 100, and at least 0.63 for the
    others: the mean over four seeds is within 0.03 of 0.74 (plus 0.01 of Monte Carlo noise). A
    wrong engine (dynamics, update rule, exploration) lands far from the other.
    """
    n, seeds = 4000, range(4)
    slippery = dict(learning_rate_schedule=Schedule.visits(1.0, 0.6))
    rates = {}
    for engine in ("python", "compiled"):
        env = gym.make("FrozenLake-v1")
        rates[engine] = [
            greedy_success_rate(
                gym.make("FrozenLake-v1"),
                train(env, lake_agent(env, n, **slippery), n, seed=seed, engine=engine)
                .agent.q_values.greedy_policy(),
                1000, seed=100 + seed,
            )
            for seed in seeds
        ]
    assert min(rates["python"] + rates["compiled"]) > 0.55, rates
    assert abs(np.mean(rates["python"]) - np.mean(rates["compiled"])) < 0.06, rates


# --- (d) batch mode -------------------------------------------------------------------------------
def test_batch_runs_equal_single_runs_whatever_the_threads():
    env = gym.make("FrozenLake-v1")
    mdp, n = mdp_of(env), 2000
    settings = [{**LAKE, "epsilon_decay": 2 / n}, {**LAKE, "epsilon_decay": 1 / n,
                                                   "discount_factor": 0.9}]
    one_thread = run_batch(mdp, settings, n, [7, 8], max_steps=100, n_jobs=1)
    two_threads = run_batch(mdp, settings, n, [7, 8], max_steps=100, n_jobs=2)
    assert [(r.setting, r.seed) for r in one_thread] == [
        (s, seed) for s in settings for seed in (7, 8)
    ]
    for a, b in zip(one_thread, two_threads, strict=True):
        assert np.array_equal(a.q_values, b.q_values)
        assert np.array_equal(a.log.returns, b.log.returns)
    agent = make_agent(env, **settings[1])
    log = run_compiled(mdp, agent, n, seed=8, max_steps=100)
    assert np.array_equal(one_thread[3].q_values, agent.q_values.array)
    assert np.array_equal(one_thread[3].visits, agent.q_values.visits)
    for name, column in log.columns().items():
        assert np.array_equal(one_thread[3].log.columns()[name], column), name


# --- (e) Blackjack: whole episodes against the real environment ----------------------------------
def blackjack_policy_returns(policy: np.ndarray, n_episodes: int) -> np.ndarray:
    """Returns of ``policy`` (an action per Q-table row) played on the real Blackjack-v1."""
    from tabrl.spaces import encoder_for

    env = gym.make("Blackjack-v1")
    encoder = encoder_for(env.observation_space)
    returns = np.empty(n_episodes)
    obs, _ = env.reset(seed=2024)
    for i in range(n_episodes):
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(policy[encoder.encode(obs)]))
            total += reward
            done = terminated or truncated
        returns[i] = total
        obs, _ = env.reset()
    return returns


def stick_on_twenty() -> np.ndarray:
    sums = np.arange(32 * 11 * 2) // (11 * 2)
    return (sums < 20).astype(np.int64)  # 1 = hit


def test_blackjack_episode_outcomes_match_the_real_environment():
    mdp = mdp_of(gym.make("Blackjack-v1"))
    compiled = rollout(mdp, stick_on_twenty(), 200_000, seed=1, max_steps=100).returns
    real = blackjack_policy_returns(stick_on_twenty(), 20_000)
    outcomes = (-1.0, 0.0, 1.0)
    assert set(np.unique(compiled)) <= set(outcomes) and set(np.unique(real)) <= set(outcomes)
    counts = [[np.count_nonzero(r == o) for o in outcomes] for r in (compiled, real)]
    assert stats.chi2_contingency(counts).pvalue > ALPHA, counts


def test_blackjack_training_learns_a_policy_near_the_optimum():
    """The optimum of Blackjack-v1 is about -0.045 per hand; sticking on 20 only, about -0.35."""
    n = 300_000
    trained = train("Blackjack-v1", n_episodes=n, seed=0, engine="compiled",
                    learning_rate=0.01, epsilon_decay=2 / n)
    value = blackjack_policy_returns(trained.agent.q_values.greedy_policy(), 20_000).mean()
    assert value > -0.09  # four standard errors of the Monte Carlo mean below -0.06
