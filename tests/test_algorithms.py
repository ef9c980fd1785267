"""The family of tabular methods: each update rule on hand-made transitions, exploration
strategies, and the textbook results they must reproduce (Sutton and Barto, Examples 6.6 and 6.7).

Hand-made transitions use FrozenLake without slipping (16 states, 4 actions); ``update`` never
checks the dynamics, so a test states only the steps it needs.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import tabrl.examples
from tabrl import evaluate_policy_exact
from tabrl.agents import (
    AGENTS,
    DoubleQLearningAgent,
    DynaQAgent,
    ExpectedSarsaAgent,
    MonteCarloAgent,
    NStepSarsaAgent,
    QLambdaAgent,
    QLearningAgent,
    QSigmaAgent,
    SarsaAgent,
    SarsaLambdaAgent,
    TabularAgent,
    TreeBackupAgent,
)
from tabrl.app.runs import RunConfig
from tabrl.errors import UsageError
from tabrl.hyperparams import defaults_for
from tabrl.training import train

LR, GAMMA = 0.5, 0.9


@pytest.fixture
def lake():
    return gym.make("FrozenLake-v1", is_slippery=False)


def make(cls: type[TabularAgent], env: gym.Env, epsilon: float = 0.0, **kwargs) -> TabularAgent:
    """An agent with a constant epsilon, learning rate 0.5 and discount 0.9."""
    return cls(env, LR, epsilon, 0.0, epsilon, GAMMA, seed=0, **kwargs)


class FixedDraw:
    """A stand-in random generator whose ``random()`` is always ``u`` (to choose a branch)."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self) -> float:
        return self.u


def test_every_method_is_registered():
    assert len(AGENTS) >= 7
    assert {"q-learning", "sarsa", "expected-sarsa", "double-q-learning", "monte-carlo",
            "n-step-sarsa", "sarsa-lambda", "q-lambda", "dyna-q", "tree-backup",
            "q-sigma"} == set(AGENTS)
    assert all(AGENTS[name].algo == name for name in AGENTS)


# --- update rules on hand-made transitions -------------------------------------------------------
def test_sarsa_bootstraps_from_the_action_it_plays_next(lake):
    agent = make(SarsaAgent, lake)
    agent.q_values[5][:] = [0.0, 2.0, -1.0, 1.0]
    td = agent.update(4, 2, 1.0, False, 5)
    assert td == pytest.approx(1.0 + GAMMA * 2.0)  # greedy (epsilon 0): a' = 1
    assert agent.q_values[4][2] == pytest.approx(LR * 2.8)
    assert agent.get_action(5) == 1


def test_sarsa_keeps_its_promise_even_when_exploring(lake):
    agent = make(SarsaAgent, lake, epsilon=1.0)
    for _ in range(20):
        agent.update(4, 2, 0.0, False, 5)
        promised = agent.promised[1]
        assert agent.get_action(5) == promised
    agent.update(4, 2, 0.0, False, 5, truncated=True)
    agent.decay_epsilon()  # an episode ended: the promise is dropped
    assert agent.promised is None


def test_sarsa_terminal_step_bootstraps_zero_and_promises_nothing(lake):
    agent = make(SarsaAgent, lake)
    agent.q_values[15][:] = 10.0
    assert agent.update(14, 2, 1.0, True, 15) == pytest.approx(1.0)
    assert agent.promised is None


def test_expected_sarsa_bootstraps_from_the_policy_expectation(lake):
    agent = make(ExpectedSarsaAgent, lake, epsilon=0.2)
    agent.q_values[5][:] = [0.0, 2.0, -1.0, 1.0]
    expected = 0.05 * (0.0 + 2.0 - 1.0 + 1.0) + 0.8 * 2.0
    assert agent.update(4, 2, 1.0, False, 5) == pytest.approx(1.0 + GAMMA * expected)
    agent.q_values[6][:] = [1.0, 1.0, 0.0, 0.0]  # tied greedy actions share the greedy mass
    assert agent.policy_value(6) == pytest.approx(0.45 + 0.45)


@pytest.mark.parametrize("u, learner", [(0.25, "A"), (0.75, "B")])
def test_double_q_learning_lets_one_estimate_value_the_others_choice(lake, u, learner):
    agent = make(DoubleQLearningAgent, lake)
    q_a = {5: [0.0, 2.0, -1.0, 1.0], 4: [0.0, 0.0, 0.4, 0.0]}
    q_b = {5: [0.0, -1.0, 3.0, 0.5], 4: [0.0, 0.0, 0.0, 0.0]}
    for row in (4, 5):
        agent.q_values.array[row] = (np.array(q_a[row]) + q_b[row]) / 2
        agent.half_difference[row] = (np.array(q_a[row]) - q_b[row]) / 2
    agent.rng = FixedDraw(u)
    td = agent.update(4, 2, 1.0, False, 5)
    # A picks action 1 at s', B values it at -1; B picks action 2, A values it at -1.
    estimate = q_a[4][2] if learner == "A" else q_b[4][2]
    assert td == pytest.approx(1.0 + GAMMA * -1.0 - estimate)
    new_a = agent.q_values[4][2] + agent.half_difference[4, 2]
    new_b = agent.q_values[4][2] - agent.half_difference[4, 2]
    if learner == "A":
        assert (new_a, new_b) == pytest.approx((0.4 + LR * td, 0.0))
    else:
        assert (new_a, new_b) == pytest.approx((0.4, 0.0 + LR * td))
    assert agent.q_values[4][2] == pytest.approx((new_a + new_b) / 2)


def test_monte_carlo_updates_first_visits_with_the_return_that_follows(lake):
    agent = make(MonteCarloAgent, lake)
    episode = [(0, 2, 0.0, 1), (1, 0, 0.0, 0), (0, 2, 0.0, 1), (1, 2, 1.0, 2)]
    for obs, action, reward, next_obs in episode[:-1]:
        assert agent.update(obs, action, reward, False, next_obs) == 0.0
    assert not agent.q_values.visits.any()  # nothing is learned before the episode ends
    total = agent.update(1, 2, 1.0, True, 2)
    # Returns: t=3: 1; t=2: 0.9 (a second visit of (0, 2): skipped); t=1: 0.81; t=0: 0.729.
    assert agent.q_values[1][2] == pytest.approx(LR * 1.0)
    assert agent.q_values[1][0] == pytest.approx(LR * 0.81)
    assert agent.q_values[0][2] == pytest.approx(LR * 0.729)
    assert agent.q_values.visits[0, 2] == 1
    assert agent.training_error == pytest.approx([0.729, 0.81, 1.0])
    assert total == pytest.approx(0.729 + 0.81 + 1.0)


def test_monte_carlo_truncated_episode_starts_from_the_policy_value(lake):
    agent = make(MonteCarloAgent, lake, epsilon=0.2)
    agent.q_values[1][:] = [0.0, 2.0, -1.0, 1.0]
    agent.update(0, 2, 0.5, False, 1, truncated=True)
    expected = 0.05 * 2.0 + 0.8 * 2.0
    assert agent.q_values[0][2] == pytest.approx(LR * (0.5 + GAMMA * expected))


def test_n_step_sarsa_looks_n_rewards_ahead(lake):
    agent = make(NStepSarsaAgent, lake, n=2)
    agent.q_values[2][:] = [0.0, 0.0, 0.0, 4.0]
    assert agent.update(0, 2, 1.0, False, 1) == 0.0  # one step buffered: nothing to complete yet
    promised = agent.promised[1]
    assert agent.get_action(1) == promised
    td = agent.update(1, 1, 2.0, False, 2)  # completes (0, 2): 1 + 0.9 * 2 + 0.81 * Q(2, 3)
    assert td == pytest.approx(1.0 + GAMMA * 2.0 + GAMMA**2 * 4.0)
    assert agent.q_values[0][2] == pytest.approx(LR * td)
    assert agent.get_action(2) == 3
    total = agent.update(2, 3, 3.0, True, 3)  # the end completes (1, 1) and (2, 3)
    assert agent.q_values[1][1] == pytest.approx(LR * (2.0 + GAMMA * 3.0))
    assert agent.q_values[2][3] == pytest.approx(4.0 + LR * (3.0 - 4.0))
    assert total == pytest.approx((2.0 + GAMMA * 3.0) + 1.0)
    assert not agent.recent


def test_tree_backup_follows_greedy_actions_and_cuts_at_the_others(lake):
    agent = make(TreeBackupAgent, lake, n=3)
    agent.q_values[1][:] = [0.0, 2.0, 0.0, 1.0]  # action 1: the one greedy action
    agent.q_values[2][:] = [3.0, 3.0, 0.0, 0.0]  # action 3: not greedy
    agent.q_values[6][:] = [0.0, 0.0, 5.0, 0.0]
    assert agent.update(0, 2, 1.0, False, 1) == 0.0
    assert agent.update(1, 1, 2.0, False, 2) == 0.0
    td = agent.update(2, 3, 4.0, False, 6)  # completes (0, 2)
    # Backwards from max Q(6) = 5: at state 2 the action played is not greedy, so its return
    # 4 + 0.9 * 5 is replaced by max Q(2) = 3; at state 1 it is, so the return goes through.
    assert td == pytest.approx(1.0 + GAMMA * (2.0 + GAMMA * 3.0))
    assert agent.q_values[0][2] == pytest.approx(LR * td)
    assert not hasattr(agent, "promised")  # off-policy: the behaviour policy acts freely
    total = agent.update(6, 2, 0.0, True, 7)  # the end completes (1, 1), (2, 3) and (6, 2)
    assert agent.q_values[1][1] == pytest.approx(2.0 + LR * (2.0 + GAMMA * 3.0 - 2.0))
    assert agent.q_values[2][3] == pytest.approx(LR * 4.0)
    assert agent.q_values[6][2] == pytest.approx(5.0 + LR * (0.0 - 5.0))
    assert total == pytest.approx((2.0 + GAMMA * 3.0 - 2.0) + 4.0 + 5.0)
    assert not agent.recent


def test_tree_backup_shares_a_tie_between_the_greedy_actions(lake):
    agent = make(TreeBackupAgent, lake, n=2)
    agent.q_values[2][:] = [3.0, 3.0, 0.0, 0.0]  # action 0 has probability 1/2 under greedy
    agent.q_values[3][:] = [0.0, 4.0, 0.0, 0.0]
    agent.update(0, 2, 1.0, False, 2)
    td = agent.update(2, 0, 2.0, False, 3)
    assert td == pytest.approx(1.0 + GAMMA * (0.5 * 3.0 + 0.5 * (2.0 + GAMMA * 4.0)))


def test_q_sigma_mixes_the_sample_with_the_policys_expectation(lake):
    agent = make(QSigmaAgent, lake, n=2, sigma=0.5)  # epsilon 0: the policy is greedy
    agent.q_values[1][:] = [0.0, 2.0, 0.0, 1.0]
    agent.q_values[2][:] = [0.0, 0.0, 0.0, 4.0]
    assert agent.update(0, 2, 1.0, False, 1) == 0.0
    assert agent.promised == (1, 1)
    td = agent.update(1, 3, 2.0, False, 2)  # action 3 is not the policy's: pi(3|1) = 0
    # The tail mixes Q(2, 3) = 4 (the action drawn next) with the policy's value of 2, also 4;
    # at state 1 the return 2 + 0.9 * 4 is mixed half and half with the policy's value 2.
    assert agent.promised == (2, 3)
    assert td == pytest.approx(1.0 + GAMMA * (0.5 * (2.0 + GAMMA * 4.0) + 0.5 * 2.0))
    assert agent.q_values[0][2] == pytest.approx(LR * td)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_q_sigma_at_its_ends_is_n_step_sarsa_or_expected_sarsa(lake, sigma):
    """sigma 1 samples every step (n-step SARSA); sigma 0 takes the policy's expectation, so
    with a greedy policy and one step it is Q-learning."""
    agent = make(QSigmaAgent, lake, n=1, sigma=sigma)
    agent.q_values[1][:] = [0.0, 2.0, 0.0, 1.0]
    agent.epsilon = 1.0
    agent.rng = FixedDraw(0.0)  # explore, then draw action 0
    td = agent.update(0, 2, 1.0, False, 1)
    policy_value = 0.25 * 3.0  # uniform under epsilon 1
    assert td == pytest.approx(1.0 + GAMMA * (0.0 if sigma else policy_value))


def test_sarsa_lambda_spreads_each_error_back_along_the_traces(lake):
    agent = make(SarsaLambdaAgent, lake, lam=0.5)
    agent.q_values[1][:] = [0.0, 2.0, 0.0, 0.0]
    delta1 = agent.update(0, 2, 0.0, False, 1)
    assert delta1 == pytest.approx(GAMMA * 2.0)
    assert agent.q_values[0][2] == pytest.approx(LR * delta1)
    assert agent.get_action(1) == 1
    delta2 = agent.update(1, 1, 1.0, True, 5)
    assert delta2 == pytest.approx(1.0 - 2.0)
    assert agent.q_values[1][1] == pytest.approx(2.0 + LR * delta2)
    assert agent.q_values[0][2] == pytest.approx(LR * delta1 + LR * delta2 * GAMMA * 0.5)
    assert not agent.traces.any()  # cleared at the end of the episode


def test_q_lambda_bootstraps_from_the_best_action_and_cuts_traces_after_exploring(lake):
    # Greedy next action: the trace of (0, right) decays by gamma lambda and takes the next error.
    agent = make(QLambdaAgent, lake, lam=0.5)
    agent.q_values[1][:] = [0.0, 2.0, 0.0, 0.0]
    agent.q_values[2][:] = [0.0, 0.0, 3.0, 0.0]
    delta1 = agent.update(0, 2, 0.0, False, 1)
    assert delta1 == pytest.approx(GAMMA * 2.0)
    assert agent.get_action(1) == 1 and agent.next_is_greedy
    delta2 = agent.update(1, 1, 0.0, False, 2)
    assert delta2 == pytest.approx(GAMMA * 3.0 - 2.0)
    assert agent.q_values[0][2] == pytest.approx(LR * delta1 + LR * delta2 * GAMMA * 0.5)
    # An exploratory next action (epsilon 1, and 0 is not greedy at state 3): the target is still
    # the best next value, but every trace is cut.
    agent.q_values[3][:] = [0.0, 1.0, 0.0, 0.0]
    agent.epsilon = 1.0
    agent.rng = FixedDraw(0.0)  # explore, then draw action 0
    delta3 = agent.update(2, 2, 0.0, False, 3)
    assert not agent.next_is_greedy and agent.promised == (3, 0)
    assert delta3 == pytest.approx(GAMMA * 1.0 - 3.0)
    assert not agent.traces.any()


def test_dyna_q_replays_its_model(lake):
    agent = make(DynaQAgent, lake, planning_steps=5)
    agent.update(14, 2, 1.0, True, 15)
    # One real and five planned updates towards the same target 1: Q = 1 - (1 - lr)^6.
    assert agent.q_values[14][2] == pytest.approx(1.0 - (1.0 - LR) ** 6)
    assert agent.q_values.visits[14, 2] == 6
    assert len(agent.training_error) == 1
    agent.update(14, 2, 0.0, True, 15)
    assert agent.model[14, 2] == {(1.0, 15, True): 1, (0.0, 15, True): 1}


# --- exploration -----------------------------------------------------------------------------
def test_softmax_follows_the_boltzmann_law(lake):
    # epsilon is unused while softmax explores; 0 would switch exploration off
    agent = make(QLearningAgent, lake, 1.0, exploration="softmax", temperature=0.5)
    agent.q_values[0][:] = [0.0, 0.5 * math.log(2.0), 0.5 * math.log(4.0), 0.0]
    probabilities = agent.exploration.probabilities(agent, 0)
    assert probabilities == pytest.approx([1 / 8, 2 / 8, 4 / 8, 1 / 8])
    n = 20_000
    counts = np.bincount([agent.get_action(0) for _ in range(n)], minlength=4) / n
    assert counts == pytest.approx(probabilities, abs=4 * math.sqrt(0.25 / n))


def test_softmax_temperature_decays_per_episode(lake):
    schedule = {"kind": "exponential", "start": 2.0, "end": 0.5, "rate": 0.5}
    agent = make(QLearningAgent, lake, exploration="softmax", temperature_schedule=schedule)
    seen = []
    for _ in range(4):
        seen.append(agent.temperature)
        agent.decay_epsilon()
    assert seen == [2.0, 1.0, 0.5, 0.5]
    agent.q_values[0][:] = [1.0, 0.0, 0.0, 0.0]  # at 0.5, twice as greedy as at 1
    assert agent.exploration.probabilities(agent, 0)[0] == pytest.approx(
        math.exp(2) / (math.exp(2) + 3)
    )


def test_ucb_tries_every_action_then_adds_a_count_bonus(lake):
    agent = make(QLearningAgent, lake, 1.0, exploration="ucb", ucb_c=1.0)
    tried = []
    for _ in range(4):
        action = agent.get_action(0)
        tried.append(action)
        agent.update(0, action, 0.0, True, 1)
    assert sorted(tried) == [0, 1, 2, 3]  # untried actions first
    agent.q_values[0][:] = [0.5, 0.6, 0.0, 0.0]
    agent.q_values.visits[0] = [1, 30, 30, 30]
    bonus = [math.sqrt(math.log(91) / n) for n in (1, 30, 30, 30)]
    assert bonus[0] + 0.5 > bonus[1] + 0.6
    assert agent.get_action(0) == 0  # the rarely tried action wins despite its lower value
    agent.ucb_c = 0.0
    assert agent.get_action(0) == 1  # without bonus: greedy
    assert agent.exploration.probabilities(agent, 0) == [0.0, 1.0, 0.0, 0.0]


def test_epsilon_greedy_probabilities_add_up(lake):
    agent = make(QLearningAgent, lake, epsilon=0.3)
    agent.q_values[0][:] = [1.0, 1.0, 0.0, 1.0]
    probabilities = agent.exploration.probabilities(agent, 0)
    assert probabilities == pytest.approx([0.075 + 0.7 / 3] * 2 + [0.075] + [0.075 + 0.7 / 3])
    assert sum(probabilities) == pytest.approx(1.0)


def test_exploring_starts_begin_episodes_anywhere(lake):
    agent = make(MonteCarloAgent, lake, epsilon=0.1, exploring_starts=True)
    train(lake, agent, 300, seed=0, engine="python")
    holes = [5, 7, 11, 12]  # entering a hole ends the episode: only a start there acts from it
    assert all(agent.q_values.visits[hole].sum() > 0 for hole in holes)


def test_exploring_starts_are_refused_where_the_start_cannot_be_chosen():
    with pytest.raises(UsageError, match="exploring starts"):
        make(MonteCarloAgent, gym.make("Blackjack-v1"), exploring_starts=True)


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (NStepSarsaAgent, {"n": 0}, "n must be a whole number >= 1, not 0"),
        (NStepSarsaAgent, {"n": 2.5}, "n must be a whole number >= 1, not 2.5"),
        (TreeBackupAgent, {"n": 0}, "n must be a whole number >= 1"),
        (QSigmaAgent, {"sigma": 1.5}, "sigma must be in"),
        (QLearningAgent, {"n": 3}, r"q-learning has no parameter n \(its own: none\)"),
        (SarsaLambdaAgent, {"lambda": 0.5}, r"no parameter lambda \(its own: lam\)"),
        (SarsaLambdaAgent, {"lam": 1.5}, "lam"),
        (QLambdaAgent, {"lam": -0.1}, "lam"),
        (DynaQAgent, {"planning_steps": -1}, "planning_steps"),
        (QLearningAgent, {"exploration": "greedy-ish"}, "unknown exploration"),
        (QLearningAgent, {"exploration": "softmax", "temperature": 0.0}, "temperature"),
        (QLearningAgent, {"exploration": "ucb", "ucb_c": -1.0}, "ucb_c"),
        (QLearningAgent, {"temperature_schedule": {"kind": "exponential", "speed": 2}}, "schedule"),
    ],
)
def test_bad_method_parameters_are_refused(lake, cls, kwargs, message):
    with pytest.raises(UsageError, match=message):
        make(cls, lake, **kwargs)


# --- every method, end to end ------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(AGENTS))
def test_every_method_has_defaults_and_learns_a_deterministic_lake(algo):
    for env_id in ("Blackjack-v1", "FrozenLake-v1", "Taxi-v4", "CliffWalking-v1"):
        config = RunConfig.resolve(env_id, algo=algo)
        assert config.make_agent(config.make_env()).algo == algo
    assert defaults_for(algo, "SomeUnknownEnv-v0")["episodes"] > 0
    env = gym.make("FrozenLake-v1", is_slippery=False)
    agent = AGENTS[algo](env, 0.2, 1.0, 1 / 300, 0.05, 0.9, seed=1)
    train(env, agent, 600, seed=1, engine="python")
    assert evaluate_policy_exact(env, agent.q_values.greedy_policy()).value == 1.0


# --- Sutton and Barto, Example 6.6: cliff walking -------------------------------------------------
CLIFF_EDGE = set(range(25, 35))  #: the cells right above the cliff, between start and goal


def cliff_walk(cls: type[TabularAgent], seed: int) -> tuple[float, float, set[int]]:
    """After 500 episodes at epsilon 0.1: the mean return of the last 100, the greedy policy's
    exact value, and the cells its path from the start visits (within 50 steps)."""
    env = gym.make("CliffWalking-v1")
    agent = cls(env, 0.5, 0.1, 0.0, 0.1, 1.0, seed=seed)
    log = train(env, agent, 500, seed=seed, engine="python").log
    policy = agent.q_values.greedy_policy()
    state, path = 36, set()
    for _ in range(50):
        path.add(state)
        state = env.unwrapped.P[state][policy[state]][0][1]
    return float(log.returns[-100:].mean()), evaluate_policy_exact(env, policy).value, path


def test_sarsa_walks_the_safe_path_and_q_learning_the_optimal_one():
    sarsa = [cliff_walk(SarsaAgent, seed) for seed in range(3)]
    q_learning = [cliff_walk(QLearningAgent, seed) for seed in range(3)]
    sarsa_return = np.mean([r for r, _, _ in sarsa])
    q_return = np.mean([r for r, _, _ in q_learning])
    assert sarsa_return > q_return + 10  # about -25 against -50: Q-learning falls while exploring
    assert all(greedy == -13.0 for _, greedy, _ in q_learning)
    assert all(path >= CLIFF_EDGE for _, _, path in q_learning)  # along the cliff
    # SARSA's path keeps away from the cliff and is longer; with a constant step of 0.5 its
    # values stay noisy, and on some seeds a near tie far from the cliff makes it loop (-inf).
    assert all(greedy < -13.0 for _, greedy, _ in sarsa)
    assert all(not CLIFF_EDGE & path for _, _, path in sarsa)


# --- Sutton and Barto, Example 6.7: maximisation bias ---------------------------------------------
def left_share(cls: type[TabularAgent], seeds: int = 200, episodes: int = 300) -> float:
    """How often the first action of an episode goes left, over the first ``episodes``."""
    left = 0
    for seed in range(seeds):
        env = tabrl.examples.MaximizationBiasEnv()
        agent = cls(env, 0.1, 0.1, 0.0, 0.1, 1.0, seed=seed)
        obs, _ = env.reset(seed=seed)
        for episode in range(episodes):
            if episode:
                obs, _ = env.reset()
            done, first = False, True
            while not done:
                action = agent.get_action(obs)
                left += first and action == tabrl.examples.LEFT
                next_obs, reward, terminated, truncated, _ = env.step(action)
                agent.update(obs, action, reward, terminated, next_obs, truncated)
                done, obs, first = terminated or truncated, next_obs, False
            agent.decay_epsilon()
    return left / (seeds * episodes)


def test_double_q_learning_is_not_drawn_by_the_maximisation_bias():
    q_learning, double = left_share(QLearningAgent), left_share(DoubleQLearningAgent)
    assert q_learning > 0.15  # the max over B's noisy actions looks positive: left looks good
    assert double < 0.5 * q_learning
