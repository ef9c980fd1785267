"""Exact optima and policy values: closed forms, known optima, Monte Carlo on real environments."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from bench import numpy_dp, previous_solve
from tabrl.errors import NotCompilableError, UsageError
from tabrl.exact import dp as solve_module
from tabrl.exact import kernels
from tabrl.exact.dp import evaluate_policy_exact, policy_agreement, solve
from tabrl.exact.mdp import TabularMDP, from_transitions
from tabrl.exact.readers import mdp_of

SAFE, GAMBLE = 0, 1


def gamble_mdp(horizon: int | None) -> TabularMDP:
    """One state: take 1 and stop, or win 3 with probability 1/4 (else try again)."""
    transitions = {0: {SAFE: [(1.0, 0, 1.0, True)],
                       GAMBLE: [(0.25, 0, 3.0, True), (0.75, 0, 0.0, False)]}}
    return from_transitions(transitions, np.array([1.0]), n_actions=2, horizon=horizon)


def test_gamble_with_a_time_limit_has_a_non_stationary_optimum():
    """Gamble while time is left, take the sure 1 on the last step: V_k = 3 - 2 (3/4)^(k-1)."""
    solution = solve(gamble_mdp(horizon=5))
    assert solution.value == pytest.approx(3 - 2 * 0.75**4, abs=1e-12)
    assert solution.policy[0] == GAMBLE
    assert solution.stationary_value == pytest.approx(3 * (1 - 0.75**5), abs=1e-12)
    assert solution.num_iter == 5


def test_gamble_without_time_limit_and_with_discount():
    assert solve(gamble_mdp(horizon=None)).value == pytest.approx(3.0, abs=1e-9)
    discounted = solve(gamble_mdp(horizon=None), discount=0.9)
    assert discounted.value == pytest.approx(0.75 / (1 - 0.9 * 0.75), abs=1e-9)
    assert solve(gamble_mdp(horizon=None), discount=0.2).policy[0] == SAFE


def test_gamble_policy_law():
    gamble = evaluate_policy_exact(gamble_mdp(horizon=5), np.array([GAMBLE]))
    assert gamble.value == pytest.approx(3 * (1 - 0.75**5), abs=1e-12)
    assert gamble.win == pytest.approx(1 - 0.75**5, abs=1e-12)
    assert gamble.truncated == pytest.approx(0.75**5, abs=1e-12)
    assert gamble.mean_length == pytest.approx((1 - 0.75**5) / 0.25, abs=1e-12)
    assert gamble.success_probability is None
    safe = evaluate_policy_exact(gamble_mdp(horizon=5), np.array([SAFE]))
    assert (safe.value, safe.win, safe.mean_length) == pytest.approx((1.0, 1.0, 1.0))


def test_a_loop_that_pays_forever_has_no_undiscounted_optimum(monkeypatch):
    monkeypatch.setattr(solve_module, "MAX_SWEEPS", 500)
    forever = from_transitions({0: {0: [(1.0, 0, 1.0, False)]}}, np.array([1.0]), 1, None)
    with pytest.raises(UsageError, match="give a discount"):
        solve(forever)
    assert solve(forever, discount=0.5).value == pytest.approx(2.0)


def _follow(mdp: TabularMDP, policy: np.ndarray, start: int) -> list[int]:
    """The states a deterministic MDP visits under ``policy`` until it terminates."""
    path, state = [start], start
    for _ in range(1000):
        outcome = mdp.outcomes(state, int(policy[mdp.row_of_state[state]]))
        assert mdp.prob[outcome].tolist() == [1.0]
        if mdp.terminal[outcome][0]:
            return path
        state = int(mdp.next_state[outcome][0])
        path.append(state)
    raise AssertionError("the policy never reaches the end")


def test_cliff_walking_optimum_walks_along_the_cliff():
    env = gym.make("CliffWalking-v1")
    solution = solve(env)
    assert solution.value == -13.0
    path = _follow(mdp_of(env), solution.policy, start=36)
    assert path == [36, *range(24, 36)]  # up, then 11 steps right along row 2, then down
    on_path = np.zeros(48)
    on_path[path] = 1 / 13
    np.testing.assert_allclose(solution.visit_weights, on_path, atol=1e-12)


def test_cliff_walking_with_discount_is_a_geometric_sum():
    solution = solve(gym.make("CliffWalking-v1"), discount=0.9)
    assert solution.value == pytest.approx(-(1 - 0.9**13) / (1 - 0.9), abs=1e-9)


def test_a_policy_that_never_ends_is_worth_minus_infinity():
    env = gym.make("CliffWalking-v1")
    up = np.zeros(48, dtype=np.int64)
    looping = evaluate_policy_exact(env, up)
    assert looping.value == -np.inf
    assert looping.mean_length == np.inf
    assert looping.success_probability == 0.0
    assert looping.truncated == 1.0
    solution = solve(env)
    assert policy_agreement(solution, solution.policy) == pytest.approx(1.0)
    assert policy_agreement(solution, up) == pytest.approx(1 / 13)  # only the first step is right


def test_the_optimal_share_of_an_optimal_policy_is_one_not_more():
    # Taxi-v4's visit weights add up to 1.0000000000000002 over its optimal actions, which
    # evaluation.json's check of a share then refused
    solution = solve(gym.make("Taxi-v4"))
    assert policy_agreement(solution, solution.policy) == 1.0


def test_deterministic_frozen_lake_reaches_the_goal_in_six_steps():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    solution = solve(env)
    assert solution.value == 1.0
    assert len(_follow(mdp_of(env), solution.policy, start=0)) == 6
    assert evaluate_policy_exact(env, solution.policy).mean_length == 6.0


def test_slippery_frozen_lake():
    env = gym.make("FrozenLake-v1")
    solution = solve(env)
    assert solution.value == pytest.approx(0.7442, abs=1e-3)
    assert solution.stationary_value == pytest.approx(0.7402, abs=1e-3)
    assert solution.stationary_value <= solution.value
    exact = evaluate_policy_exact(env, solution.stationary_policy)
    assert exact.value == pytest.approx(solution.stationary_value, abs=1e-12)
    assert exact.success_probability == pytest.approx(exact.value, abs=1e-12)
    assert exact.win + exact.draw + exact.loss + exact.truncated == pytest.approx(1.0)
    assert policy_agreement(solution, solution.policy) == pytest.approx(1.0)


def test_frozen_lake_8x8():
    solution = solve(gym.make("FrozenLake8x8-v1"))
    assert solution.value == pytest.approx(0.9132, abs=1e-3)
    assert 0.89 < solution.stationary_value < solution.value


def test_frozen_lake_monte_carlo_agrees_with_exact_law():
    env = gym.make("FrozenLake-v1")
    policy = solve(env).stationary_policy
    exact = evaluate_policy_exact(env, policy)
    returns, lengths, truncations = _monte_carlo(env, policy, episodes=10_000, seed=3)
    _assert_within_four_errors(returns, exact.value)
    _assert_within_four_errors(truncations, exact.truncated)
    _assert_within_four_errors(lengths, exact.mean_length)


def taxi() -> tuple[gym.Env, TabularMDP]:
    """Taxi-v4 and its MDP; every terminating step delivers the passenger (the goal)."""
    env = gym.make("Taxi-v4")
    mdp = mdp_of(env)
    # The goal: the passenger delivered at R, G, Y or B.
    assert mdp.goal_rows.shape == (500,) and mdp.goal_rows.sum() == 4
    return env, mdp


def test_taxi_optimum_and_monte_carlo():
    env, mdp = taxi()
    solution = solve(mdp)
    assert solution.value == pytest.approx(7.93, abs=1e-9)  # 20 - 1 per step, from 300 starts
    assert solution.stationary_value == pytest.approx(solution.value, abs=1e-9)
    exact = evaluate_policy_exact(mdp, solution.policy)
    assert exact.success_probability == pytest.approx(1.0)
    returns, lengths, _ = _monte_carlo(env, solution.policy, episodes=20_000, seed=11)
    _assert_within_four_errors(returns, exact.value)
    _assert_within_four_errors(lengths, exact.mean_length)


def test_bad_input_gets_one_line_errors():
    env = gym.make("FrozenLake-v1")
    with pytest.raises(UsageError, match="discount"):
        solve(env, discount=1.5)
    with pytest.raises(UsageError, match="shape"):
        evaluate_policy_exact(env, np.zeros(15, dtype=np.int64))
    with pytest.raises(UsageError, match="0..3"):
        evaluate_policy_exact(env, np.full(16, 4))
    with pytest.raises(UsageError, match="integer"):
        evaluate_policy_exact(env, np.zeros(16))
    with pytest.raises(UsageError, match="TabularMDP"):
        solve("FrozenLake-v1")
    with pytest.raises(NotCompilableError):
        solve(gym.make("CartPole-v1"))


def random_mdp(seed: int, horizon: int | None) -> TabularMDP:
    """A small random MDP: 1 to 3 outcomes per pair, some terminal, rewards of both signs."""
    rng = np.random.default_rng(seed)
    n_states, n_actions = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    transitions = {}
    for s in range(n_states):
        transitions[s] = {}
        for a in range(n_actions):
            n = int(rng.integers(1, 4))
            transitions[s][a] = list(zip(rng.dirichlet(np.ones(n)).tolist(),
                                         rng.integers(0, n_states, n).tolist(),
                                         rng.normal(size=n).round(2).tolist(),
                                         (rng.random(n) < 0.3).tolist()))
    initial = rng.dirichlet(np.ones(n_states))
    return from_transitions(transitions, initial, n_actions, horizon)


@pytest.mark.parametrize("seed", range(40))
def test_compiled_solver_equals_the_numpy_one_on_random_mdps(seed: int, monkeypatch) -> None:
    """Same sums in the same order: the optimal q bit for bit, every other figure to 1e-12."""
    for module in (solve_module, numpy_dp):  # a loop that pays forever is given up on sooner
        monkeypatch.setattr(module, "MAX_SWEEPS", 2_000)
    horizon, discount = [(1, None), (7, None), (40, None), (25, 0.9), (None, 0.8)][seed % 5]
    mdp = random_mdp(seed, horizon)
    new, old = solve(mdp, discount), numpy_dp.solve(mdp, discount)
    np.testing.assert_array_equal(new.q_values, old.q_values)
    np.testing.assert_array_equal(new.policy, old.policy)
    assert new.value == old.value
    assert new.stationary_value == pytest.approx(old.stationary_value, abs=1e-12)
    np.testing.assert_allclose(new.visit_weights, old.visit_weights, rtol=0, atol=1e-12)
    random_policy = np.random.default_rng(seed).integers(0, mdp.n_actions, mdp.n_rows)
    for policy in (random_policy, new.stationary_policy):
        exact = evaluate_policy_exact(mdp, policy, discount)
        reference = numpy_dp.evaluate_policy_exact(mdp, policy, discount)
        np.testing.assert_array_equal(exact.values, reference.values)
        for field in ("win", "draw", "loss", "truncated", "mean_length"):
            assert getattr(exact, field) == pytest.approx(getattr(reference, field), abs=1e-12)
    assert evaluate_policy_exact(mdp, new.stationary_policy, discount).value == pytest.approx(
        new.stationary_value, abs=1e-12)


def test_a_loop_forever_is_detected_as_the_numpy_solver_did() -> None:
    env = gym.make("CliffWalking-v1")
    up = np.zeros(48, dtype=np.int64)
    new, old = evaluate_policy_exact(env, up), numpy_dp.evaluate_policy_exact(env, up)
    np.testing.assert_array_equal(new.values, old.values)
    assert (new.truncated, new.mean_length) == (old.truncated, old.mean_length)


def test_backward_induction_stops_exactly_where_the_values_settle() -> None:
    """Not slippery, the optimal values stop changing after 6 steps: 994 sweeps are skipped."""
    env = gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=1000)
    solution = solve(env)
    assert (solution.settled_at, solution.num_iter, solution.horizon) == (6, 7, 1000)
    full = numpy_dp.solve(mdp_of(env))  # all 1000 sweeps
    assert full.num_iter == 1000
    np.testing.assert_array_equal(solution.q_values, full.q_values)
    short = solve(gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=5))
    assert (short.settled_at, short.num_iter, short.value) == (None, 5, 0.0)  # 6 steps needed
    assert solve(gym.make("FrozenLake-v1")).settled_at is None  # slippery: still rising at 100


def test_solve_says_where_the_values_settled(tabrl_cli, tmp_path) -> None:
    args = ("solve", "FrozenLake-v1", "--env-kwargs", "is_slippery=false")
    summary = json.loads(tabrl_cli(*args, "--json", "--out", tmp_path / "json").stdout)
    assert (summary["settled_at"], summary["num_iter"], summary["horizon"]) == (6, 7, 100)
    assert "values settled after 6 of 100 steps" in tabrl_cli(*args, "--out", tmp_path / "t").stdout
    slippery = tabrl_cli("solve", "FrozenLake-v1", "--out", tmp_path / "slippery").stdout
    assert "values still changing at 100 steps" in slippery


def test_solutions_are_kept_per_mdp_content_and_discount() -> None:
    first = solve(mdp_of(gym.make("FrozenLake-v1")))
    assert solve(mdp_of(gym.make("FrozenLake-v1"))) is first  # built again, not solved again
    assert solve(mdp_of(gym.make("FrozenLake-v1")), discount=0.9) is not first
    assert solve(mdp_of(gym.make("FrozenLake-v1", max_episode_steps=50))) is not first
    with pytest.raises(ValueError, match="read-only"):
        first.policy[0] = 1


def _monte_carlo(env: gym.Env, policy: np.ndarray, episodes: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns, lengths and truncation flags of episodes on the real environment."""
    returns, lengths, truncations = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes)
    state, _ = env.reset(seed=seed)
    for i in range(episodes):
        terminated = truncated = False
        while not (terminated or truncated):
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            returns[i] += reward
            lengths[i] += 1
        truncations[i] = truncated and not terminated
        state, _ = env.reset()
    return returns, lengths, truncations


def _assert_within_four_errors(samples: np.ndarray, exact: float) -> None:
    error = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - exact) <= 4 * error + 1e-12


@pytest.mark.parametrize("seed", range(12))
def test_the_search_finds_what_the_previous_one_did(seed: int) -> None:
    """The faster local search (bench/previous_solve.py is the one before): the same advantages
    bit for bit, whether the policy's values per step are all kept or recomputed in blocks, and
    the same best stationary policy and value."""
    horizon, discount = [(3, 1.0), (17, 1.0), (60, 1.0), (25, 0.9)][seed % 4]
    mdp = random_mdp(100 + seed, horizon)
    table = solve_module._all_actions(mdp)
    actions = np.random.default_rng(seed).integers(0, mdp.n_actions, mdp.n_states)
    policy = solve_module._one_action(mdp, actions)
    initial = np.array(mdp.initial)
    before = previous_solve.time_weighted_advantages(table.arrays, policy.arrays, initial,
                                                     horizon, discount, 1e-12)
    for max_rows in (10**6, 2):  # all rows kept; a block of about sqrt(horizon) recomputed
        after, work = kernels.time_weighted_advantages(table.arrays, policy.arrays, actions,
                                                       initial, horizon, discount, 1e-12, max_rows)
        np.testing.assert_array_equal(after, before)
        assert work > 0
    new, old = solve_module._solve(mdp, discount), previous_solve.solve(mdp, discount)
    np.testing.assert_array_equal(new.stationary_policy, old.stationary_policy)
    assert (new.stationary_value, new.search_cut) == (old.stationary_value, False)


def test_a_spent_budget_cuts_the_search_and_says_so(monkeypatch) -> None:
    env = gym.make("FrozenLake8x8-v1")
    full = solve_module._solve(mdp_of(env), 1.0)
    monkeypatch.setattr(solve_module, "SEARCH_BUDGET", 1)  # spent by the first policy value
    cut = solve_module._solve(mdp_of(env), 1.0)
    assert (full.search_cut, cut.search_cut, cut.search_rounds) == (False, True, 0)
    assert full.search_rounds > 0
    assert cut.stationary_value <= full.stationary_value
    assert "search cut short after 0 rounds" in dict(cut.facts()[1])["best stationary policy"]


@pytest.mark.parametrize("case", range(8))
def test_two_problems_swept_together_equal_each_swept_alone(case: int) -> None:
    """The optimum and the hurried problem in one pass: each one's q, sweeps and settling are
    those it has alone, bit for bit, whichever settles first (slippery FrozenLake: the hurried
    problem at 982 of 1,000 steps), both at once (not slippery: 7), neither, or within a
    tolerance (no time limit)."""
    if case < 6:
        mdp = random_mdp(200 + case, None)
        limit, tolerance = [(3, 0.0), (50, 0.0), (2_000, 1e-12)][case % 3]
    else:
        mdp = mdp_of(gym.make("FrozenLake-v1", is_slippery=case == 6))
        limit, tolerance = 1_000, 0.0
    table = solve_module._all_actions(mdp)
    for discounts in ((1.0, 0.99), (0.99, 1.0), (0.9, 0.9 * 0.99)):
        together = kernels.sweep_two_until_settled(*table.arrays, table.width, *discounts, limit,
                                                   tolerance)
        for discount, (q, sweeps, settled) in zip(discounts, together, strict=True):
            alone = kernels.sweep_until_settled(*table.arrays, table.width, discount, limit,
                                                tolerance)
            np.testing.assert_array_equal(q, alone[0])
            assert (sweeps, settled) == alone[1:]


def test_a_row_of_one_state_has_that_states_q_as_it_is() -> None:
    """Not rounded through weight x q / weight: on FrozenLake (a row per state) the rows' q are
    the states' q bit for bit, and the policy is greedy on them without counting visits."""
    solution = solve(gym.make("FrozenLake-v1", max_episode_steps=40))
    np.testing.assert_array_equal(solution.row_q_values, solution.q_values)
    np.testing.assert_array_equal(solution.row_values, solution.values)


def test_the_patient_candidate_gets_ten_time_limits_of_sweeps(monkeypatch) -> None:
    """Without its time limit the slippery lake's values settle after 993 sweeps: a candidate
    under a limit of 100 steps, none under 20 (that is the rule, not a cut search), none when
    the budget runs out first (a cut search). Values beyond the cache cost more of the budget."""
    def patient(steps: int) -> solve_module._Search:
        mdp = mdp_of(gym.make("FrozenLake-v1", max_episode_steps=steps))
        search = solve_module._Search(mdp, solve_module._all_actions(mdp), 1.0, 1.0)
        search.candidate = search.patient_candidate(np.zeros((16, 4)))
        return search

    long, short = patient(100), patient(20)
    outcomes = long.table.next_state.size
    assert (long.candidate is not None, long.cut) == (True, False)
    assert (short.candidate is None, short.cut) == (True, False)
    assert long.budget == solve_module.SEARCH_BUDGET - 993 * outcomes
    monkeypatch.setattr(solve_module, "SEARCH_BUDGET", 900 * outcomes)
    spent = patient(100)
    assert (spent.candidate is None, spent.cut) == (True, True)
    monkeypatch.setattr(solve_module, "CACHED_STATES", 15)  # the lake's 16 values "miss"
    fresh = solve_module._Search(long.mdp, long.table, 1.0, 1.0)
    assert fresh.budget == 900 * outcomes // solve_module.MISS_COST
