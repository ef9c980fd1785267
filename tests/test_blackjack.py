"""Blackjack-v1 as an exact MDP: its laws, its optimum, and Monte Carlo on the real environment."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.toy_text import blackjack as gym_blackjack

from tabrl.exact.blackjack import CARD_PROBABILITY, blackjack_mdp, dealer_outcomes
from tabrl.exact.dp import evaluate_policy_exact, solve
from tabrl.spaces import encoder_for

STICK, HIT = 0, 1


def row(total: int, card: int, usable: int) -> int:
    """The Q-table row of the observation ``(total, card, usable)``."""
    return encoder_for(gym.make("Blackjack-v1").observation_space).encode((total, card, usable))


def test_outcome_laws_sum_to_one():
    mdp = blackjack_mdp(natural=False, sab=True, horizon=None)
    pairs = np.repeat(np.arange(mdp.n_states * mdp.n_actions), np.diff(mdp.offsets))
    totals = np.bincount(pairs, mdp.prob, minlength=mdp.n_states * mdp.n_actions)
    np.testing.assert_allclose(totals, 1.0, atol=1e-12)
    assert mdp.initial.sum() == pytest.approx(1.0, abs=1e-12)
    assert mdp.n_rows == 704 and mdp.goal_rows is None
    assert np.all(mdp.prob > 0)


def test_rows_are_the_observations_of_the_environment():
    """The rows the MDP starts in are exactly the observations ``reset`` shows."""
    mdp = blackjack_mdp(natural=False, sab=True, horizon=None)
    env = gym.make("Blackjack-v1")
    encoder = encoder_for(env.observation_space)
    seen = {encoder.encode(env.reset(seed=seed)[0]) for seed in range(3000)}
    possible = set(mdp.row_of_state[mdp.initial > 0].tolist())
    assert seen <= possible
    assert len(seen) >= 0.9 * len(possible)
    assert row(21, 10, 1) == (21 * 11 + 10) * 2 + 1


def _dealer_by_enumeration(showing: int) -> dict[tuple[int, bool], Fraction]:
    """The dealer's law by playing out every sequence of cards with Gymnasium's own rules."""
    law: dict[tuple[int, bool], Fraction] = defaultdict(Fraction)

    def play(hand: list[int], p: Fraction) -> None:
        if gym_blackjack.sum_hand(hand) >= 17:
            law[gym_blackjack.score(hand), gym_blackjack.is_natural(hand)] += p
            return
        for card, q in CARD_PROBABILITY.items():
            play([*hand, card], p * q)

    for hidden, q in CARD_PROBABILITY.items():
        play([showing, hidden], q)
    return dict(law)


@pytest.mark.parametrize("showing", range(1, 11))
def test_dealer_law_matches_gymnasium_rules_exactly(showing):
    assert dealer_outcomes(showing) == _dealer_by_enumeration(showing)


def test_natural_pays_according_to_the_flags():
    """Player natural (soft 21 of two cards) facing a ten: the stick reward law per rule set."""
    def stick_law(natural: bool, sab: bool) -> dict[float, float]:
        mdp = blackjack_mdp(natural=natural, sab=sab, horizon=None)
        state = int(np.flatnonzero((mdp.row_of_state == row(21, 10, 1)) & (mdp.initial > 0))[0])
        law: dict[float, float] = defaultdict(float)
        outcomes = mdp.outcomes(state, STICK)
        for p, r in zip(mdp.prob[outcomes], mdp.reward[outcomes], strict=True):
            law[float(r)] += p
        return dict(law)

    dealer_natural = float(CARD_PROBABILITY[1])
    assert stick_law(False, True) == pytest.approx({1.0: 1 - dealer_natural, 0.0: dealer_natural})
    pays = stick_law(True, False)
    assert set(pays) == {1.5, 0.0} and pays[0.0] > dealer_natural  # 3-card 21 draws
    assert set(stick_law(False, False)) == {1.0, 0.0}


@pytest.mark.parametrize(
    ("sab", "value", "win", "draw", "loss"),
    [(True, -0.043113, 0.432900, 0.091087, 0.476013),
     (False, -0.046556, 0.429457, 0.094530, 0.476013)],
)
def test_optimum(sab, value, win, draw, loss):
    env = gym.make("Blackjack-v1", sab=sab, natural=False)
    solution = solve(env)
    exact = evaluate_policy_exact(env, solution.policy)
    print(f"Blackjack sab={sab}: optimum {solution.value:.6f}, "
          f"win {exact.win:.4f} draw {exact.draw:.4f} loss {exact.loss:.4f}")
    assert solution.value == pytest.approx(value, abs=1e-6)
    assert solution.stationary_value == pytest.approx(solution.value, abs=1e-12)
    assert exact.value == pytest.approx(solution.value, abs=1e-12)
    assert (exact.win, exact.draw, exact.loss) == pytest.approx((win, draw, loss), abs=1e-6)
    assert exact.truncated == pytest.approx(0.0, abs=1e-12)
    assert exact.success_probability is None


def _sutton_barto_figure_5_2(usable_ace: bool) -> dict[tuple[int, int], int]:
    """The optimal policy of Sutton & Barto's Figure 5.2, player sum 12..21 by dealer 1..10."""
    policy = {}
    for total in range(12, 22):
        for card in range(1, 11):
            if usable_ace:
                stick = total >= 19 or (total == 18 and 2 <= card <= 8)
            else:
                stick = (total >= 17 or (13 <= total <= 16 and 2 <= card <= 6)
                         or (total == 12 and 4 <= card <= 6))
            policy[total, card] = STICK if stick else HIT
    return policy


@pytest.mark.parametrize("usable_ace", [False, True])
def test_optimal_policy_is_sutton_barto_figure_5_2(usable_ace):
    solution = solve(gym.make("Blackjack-v1", sab=True))
    found = {(total, card): int(solution.policy[row(total, card, int(usable_ace))])
             for total in range(12, 22) for card in range(1, 11)}
    assert found == _sutton_barto_figure_5_2(usable_ace)


def test_rows_without_a_state_are_blank():
    solution = solve(gym.make("Blackjack-v1"))
    assert np.isnan(solution.row_values[row(3, 5, 0)])
    assert np.isnan(solution.row_values[row(11, 5, 1)])  # a usable ace makes 12 at least
    assert solution.policy[row(3, 5, 0)] == STICK
    assert solution.visit_weights.sum() == pytest.approx(1.0)


def _monte_carlo(env: gym.Env, policy: np.ndarray, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` hands played on the real environment with a row policy."""
    encoder = encoder_for(env.observation_space)
    returns = np.empty(episodes)
    obs, _ = env.reset(seed=seed)
    for i in range(episodes):
        total, terminated = 0.0, False
        while not terminated:
            obs, reward, terminated, truncated, _ = env.step(int(policy[encoder.encode(obs)]))
            total += reward
        returns[i] = total
        obs, _ = env.reset()
    return returns


@pytest.mark.parametrize(("sab", "natural"), [(True, False), (False, True)])
def test_exact_value_agrees_with_monte_carlo(sab, natural):
    env = gym.make("Blackjack-v1", sab=sab, natural=natural)
    sticks_at_17 = np.zeros(704, dtype=np.int64)
    for total in range(4, 17):
        for usable in (0, 1):
            sticks_at_17[[row(total, card, usable) for card in range(1, 11)]] = HIT
    exact = evaluate_policy_exact(env, sticks_at_17)
    returns = _monte_carlo(env, sticks_at_17, episodes=30_000, seed=7)
    error = returns.std(ddof=1) / np.sqrt(returns.size)
    assert abs(returns.mean() - exact.value) < 4 * error
    for share, probability in [(np.mean(returns > 0), exact.win), (np.mean(returns == 0),
                               exact.draw), (np.mean(returns < 0), exact.loss)]:
        assert abs(share - probability) < 4 * np.sqrt(probability * (1 - probability) / 30_000)
    if natural:
        assert np.any(returns == 1.5)
