"""The compiled solver's search for the best stationary policy before it was made faster (commit
30674f8), kept as the baseline that ``bench.solve`` times beside ``tabrl.solve`` and that
``tests/test_solve.py`` checks the new one against (the same policies, the same values).

Only the search changed: the advantage kernel below and the search functions, as they were;
everything else (the optimum, the candidates, policy values) is ``tabrl.exact.dp``'s own.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

from bench.numpy_dp import local_search
from tabrl.errors import UsageError
from tabrl.exact import dp
from tabrl.exact.dp import (
    TOLERANCE,
    Solution,
    _from_start,
    _one_action,
    _optimal_q,
    _row_policy,
    _stationary_values,
    _Table,
)
from tabrl.exact.kernels import _step, _sweep, sweep_until_settled
from tabrl.exact.mdp import TabularMDP


def solve(mdp: TabularMDP, discount: float = 1.0) -> Solution:
    """``tabrl.exact.dp``'s solve, without its cache, with the search as it was."""
    new_search = dp._best_stationary
    dp._best_stationary = _best_stationary
    try:
        return dp._solve(mdp, discount)
    finally:
        dp._best_stationary = new_search


@njit(cache=True)
def _values_to_go(offsets, next_state, continuing, expected_reward, discount, rows):
    """A policy's values with ``k = 0 .. rows - 1`` steps left (``width = 1``), one row each."""
    n_states = offsets.size - 1
    history = np.zeros((rows, n_states))
    q = np.empty((n_states, 1))
    for k in range(1, rows):
        _sweep(offsets, next_state, continuing, expected_reward, 1, history[k - 1], discount, q,
               history[k])
    return history


@njit(cache=True)
def time_weighted_advantages(table, policy, initial, horizon, discount, tolerance):
    """``sum_t gamma^t mu_t(s) (q_t(s, a) - V_t(s))`` of a policy under a time limit ``horizon``.

    ``table`` and ``policy`` are ``(offsets, next_state, continuing, expected_reward)`` of the
    whole MDP and of the policy; ``V_t`` are the policy's values at time ``t``, ``q_t`` the
    backups of ``V_{t+1}``, and ``mu_t`` the law of its state at ``t``. The sum stops once the
    episodes still running weigh at most ``tolerance``.

    The policy's values settle (exactly) ``last`` steps before the end, so up to time
    ``horizon - last`` the summand is ``mu_t(s)`` times a constant: those steps only add up
    ``gamma^t mu_t``. The values of the last ``last`` steps are kept, one row per step, only if
    some episodes are still running when they come.
    """
    offsets, next_state, continuing, expected_reward = table
    n_states = initial.size
    width = (offsets.size - 1) // n_states
    final, sweeps, settled = sweep_until_settled(*policy, 1, discount, horizon, 0.0)
    last = sweeps - 1 if settled else horizon  # the values with ``last`` or more steps left
    q, best = np.empty((n_states, width)), np.empty(n_states)
    mass, next_mass = initial.copy(), np.empty(n_states)
    weight, t = 1.0, 0
    occupancy = np.zeros(n_states)
    while t < horizon - last and mass.sum() > tolerance:
        occupancy += weight * mass
        _step(policy[0], policy[1], policy[2], mass, next_mass)
        mass, next_mass = next_mass, mass
        weight *= discount
        t += 1
    _sweep(offsets, next_state, continuing, expected_reward, width, final[:, 0], discount, q, best)
    advantage = np.empty((n_states, width))
    for s in range(n_states):
        for a in range(width):
            advantage[s, a] = occupancy[s] * (q[s, a] - final[s, 0])
    if t == horizon or mass.sum() <= tolerance:
        return advantage
    to_go = _values_to_go(*policy, discount, last + 1)
    while t < horizon and mass.sum() > tolerance:
        _sweep(offsets, next_state, continuing, expected_reward, width, to_go[horizon - t - 1],
               discount, q, best)
        now = to_go[horizon - t]
        for s in range(n_states):
            for a in range(width):
                advantage[s, a] += weight * mass[s] * (q[s, a] - now[s])
        _step(policy[0], policy[1], policy[2], mass, next_mass)
        mass, next_mass = next_mass, mass
        weight *= discount
        t += 1
    return advantage


def _policy_value(mdp: TabularMDP, policy: np.ndarray, discount: float) -> float:
    """The exact value of a row policy from the initial distribution."""
    return _from_start(mdp, _stationary_values(mdp, _one_action(mdp, policy[mdp.row_of_state]),
                                               discount))


def _row_advantages(mdp: TabularMDP, table: _Table, policy: np.ndarray,
                    discount: float) -> np.ndarray:
    """Per row and action: the first-order gain of switching ``policy`` to that action."""
    current = _one_action(mdp, policy[mdp.row_of_state])
    advantage = time_weighted_advantages(
        table.arrays, current.arrays, np.array(mdp.initial), mdp.horizon, discount, TOLERANCE
    )
    return np.stack([np.bincount(mdp.row_of_state, column, minlength=mdp.n_rows)
                     for column in advantage.T], axis=1)


def _best_stationary(mdp: TabularMDP, table: _Table, candidates: list[np.ndarray],
                     tie_break: np.ndarray, discount: float,
                     optimum: float) -> tuple[np.ndarray, float, None]:
    """The best stationary row policy found and its exact value (no search to report)."""
    if mdp.horizon is None:
        scored = [(p, _policy_value(mdp, p, discount)) for p in candidates]
        return (*max(scored, key=lambda pair: pair[1]), None)
    best_policy, best_value = candidates[0], -np.inf
    for candidate in _stationary_candidates(mdp, table, candidates, tie_break, discount):
        policy, value = local_search(candidate, lambda q: _policy_value(mdp, q, discount),
                                     lambda q: _row_advantages(mdp, table, q, discount), optimum)
        if value > best_value:
            best_policy, best_value = policy, value
        if best_value >= optimum - TOLERANCE:
            break
    return best_policy, best_value, None


def _stationary_candidates(mdp: TabularMDP, table: _Table, candidates: list[np.ndarray],
                           tie_break: np.ndarray, discount: float) -> Iterator[np.ndarray]:
    """The given candidates, then (solved only when asked for) the patient problem's greedy."""
    yield from candidates
    try:
        patient_q = _optimal_q(table, discount, None)[0]
    except UsageError:
        return  # without its time limit the problem has no finite optimum: no candidate
    yield _row_policy(mdp, patient_q, tie_break)
