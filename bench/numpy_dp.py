r"""tabrl's numpy solver before the compiled one: ``tabrl.dp`` as of commit ddea3f2, its solver
kept as it was (``evaluate_policy_exact`` too, which runs on this module's helpers); the result
classes and the helpers that read nothing of the solver are shared with ``tabrl.exact.dp``.

``bench.solve`` times it beside ``tabrl.exact.dp`` and ``tests/test_solve.py`` checks that both
give the same answers. The mathematics, and the objective each solver computes, are stated in
:mod:`tabrl.exact.dp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from tabrl.errors import UsageError

# Helpers that read nothing of the solver, unchanged since: shared, not copied.
from tabrl.exact.dp import (
    PolicyValue,
    Solution,
    _as_mdp,
    _checked_policy,
    _discount,
    _from_start,
    _greedy,
    _row_means,
    policy_agreement,
    switch_proposals,
)
from tabrl.exact.mdp import TabularMDP

__all__ = ["Solution", "PolicyValue", "solve", "evaluate_policy_exact", "policy_agreement"]

#: Values closer than this (times the scale of the values) count as settled.
TOLERANCE = 1e-12
#: Actions whose q is within this of the best are all optimal.
TIE = 1e-9
#: The extra discount of the tie-breaking ("hurried") problem.
HURRY = 0.99
#: Sweeps after which value iteration without discount and time limit gives up.
MAX_SWEEPS = 100_000
#: Without a time limit: steps after which a policy that may run forever counts as endless.
DRIFT_SWEEPS = 10_000
#: Rounds of local search for the best stationary policy under a time limit.
MAX_IMPROVEMENTS = 100


@dataclass(frozen=True, eq=False)
class _Kernel:
    """Outcome arrays grouped in segments (a state-action pair, or a state under a policy).

    ``backup`` is the Bellman backup of every segment at once: one ``bincount`` over outcomes.
    """

    n_segments: int
    segment: np.ndarray  #: the segment of each outcome
    source: np.ndarray  #: the state each outcome leaves
    next_state: np.ndarray
    prob: np.ndarray
    reward: np.ndarray  #: the reward of each outcome
    terminal: np.ndarray
    continuing: np.ndarray  #: ``prob`` where the episode goes on, 0 where it ends
    expected_reward: np.ndarray  #: float64[n_segments]

    @classmethod
    def build(cls, mdp: TabularMDP, outcomes: np.ndarray, segment: np.ndarray,
              n_segments: int) -> _Kernel:
        """The kernel of the outcomes with indices ``outcomes``, grouped by ``segment``."""
        prob = mdp.prob[outcomes]
        terminal = mdp.terminal[outcomes]
        reward = mdp.reward[outcomes]
        source = np.repeat(np.arange(mdp.n_states * mdp.n_actions), np.diff(mdp.offsets))
        return cls(
            n_segments=n_segments,
            segment=segment,
            source=source[outcomes] // mdp.n_actions,
            next_state=mdp.next_state[outcomes],
            prob=prob,
            reward=reward,
            terminal=terminal,
            continuing=np.where(terminal, 0.0, prob),
            expected_reward=np.bincount(segment, prob * reward, minlength=n_segments),
        )

    def backup(self, values: np.ndarray, discount: float) -> np.ndarray:
        """``r + discount * P v`` for every segment."""
        future = np.bincount(self.segment, self.continuing * values[self.next_state],
                             minlength=self.n_segments)
        return self.expected_reward + discount * future


def _all_actions(mdp: TabularMDP) -> _Kernel:
    """The kernel of the whole MDP: one segment per ``(state, action)``."""
    pairs = np.repeat(np.arange(mdp.n_states * mdp.n_actions), np.diff(mdp.offsets))
    return _Kernel.build(mdp, np.arange(mdp.prob.size), pairs, mdp.n_states * mdp.n_actions)


def _one_action(mdp: TabularMDP, actions: np.ndarray) -> _Kernel:
    """The kernel of a stationary policy given per state: one segment per state."""
    pairs = np.arange(mdp.n_states) * mdp.n_actions + actions
    starts, stops = mdp.offsets[pairs], mdp.offsets[pairs + 1]
    counts = stops - starts
    first = np.cumsum(counts) - counts
    outcomes = np.repeat(starts - first, counts) + np.arange(counts.sum())
    return _Kernel.build(mdp, outcomes, np.repeat(np.arange(mdp.n_states), counts), mdp.n_states)


# --- the optimum --------------------------------------------------------------------------------
def _optimal_q(mdp: TabularMDP, kernel: _Kernel, discount: float,
               horizon: int | None) -> tuple[np.ndarray, int]:
    """Optimal ``q`` at t = 0 and the number of sweeps (backward induction or value iteration)."""
    shape = (mdp.n_states, mdp.n_actions)
    values = np.zeros(mdp.n_states)
    q = np.zeros(shape)
    if horizon is not None:
        for _ in range(horizon):
            q = kernel.backup(values, discount).reshape(shape)
            values = q.max(axis=1)
        return q, horizon
    for sweep in range(1, MAX_SWEEPS + 1):
        q = kernel.backup(values, discount).reshape(shape)
        new_values = q.max(axis=1)
        if np.max(np.abs(new_values - values), initial=0.0) <= _threshold(new_values, discount):
            return q, sweep
        values = new_values
    raise UsageError(
        f"the undiscounted return does not settle after {MAX_SWEEPS} sweeps (a loop earns or "
        "costs forever): give a discount, e.g. 0.99, or a time limit"
    )


def _threshold(values: np.ndarray, discount: float) -> float:
    """Change per sweep below which value iteration has converged to ``TOLERANCE``."""
    scale = TOLERANCE * max(1.0, float(np.max(np.abs(values), initial=0.0)))
    if discount < 1.0:
        return np.inf if discount == 0.0 else scale * (1.0 - discount) / discount
    return scale


def _row_policy(mdp: TabularMDP, q: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """A policy per row from ``q`` per state: greedy on the rows' visit-weighted ``q``."""
    visits = _occupancy(mdp, _one_action(mdp, _greedy(q, tie_break)))[0]
    row_q = _row_means(mdp, q, visits)
    row_tie_break = _row_means(mdp, tie_break, visits)
    actions = _greedy(np.nan_to_num(row_q, nan=0.0), np.nan_to_num(row_tie_break, nan=0.0))
    return np.where(np.isnan(row_q[:, 0]), 0, actions)


def _policy_value(mdp: TabularMDP, policy: np.ndarray, discount: float) -> float:
    """The exact value of a row policy from the initial distribution."""
    return _from_start(mdp, _stationary_values(mdp, _one_action(mdp, policy[mdp.row_of_state]),
                                               discount))


def _row_advantages(mdp: TabularMDP, kernel: _Kernel, policy: np.ndarray,
                    discount: float) -> np.ndarray:
    """Per row and action: the first-order gain of switching ``policy`` to that action everywhere.

    By the performance-difference identity, for stationary policies under a time limit
    ``V'_0 - V_0 = sum_t gamma^t E_{mu'_t}[q_t(s, pi'(s)) - V_t(s)]``, where ``q_t, V_t`` belong
    to the current policy at time ``t`` and ``mu'_t`` is the state law at ``t`` under the new
    one. With the current ``mu_t`` in place of ``mu'_t`` this is the estimate returned here.
    """
    horizon = mdp.horizon or 0
    shape = (mdp.n_states, mdp.n_actions)
    current = _one_action(mdp, policy[mdp.row_of_state])
    to_go = [np.zeros(mdp.n_states)]  # to_go[k]: the policy's values with k steps left
    for _ in range(horizon):
        to_go.append(current.backup(to_go[-1], discount))
    advantage = np.zeros(shape)
    mass, weight = mdp.initial.copy(), 1.0
    for t in range(horizon):
        q = kernel.backup(to_go[horizon - t - 1], discount).reshape(shape)
        advantage += weight * mass[:, None] * (q - to_go[horizon - t][:, None])
        mass = _step(current, mass, mdp.n_states)
        weight *= discount
    return np.stack([np.bincount(mdp.row_of_state, column, minlength=mdp.n_rows)
                     for column in advantage.T], axis=1)


def local_search(
    policy: np.ndarray, value_of: Callable[[np.ndarray], float],
    advantages_of: Callable[[np.ndarray], np.ndarray], enough: float = np.inf,
) -> tuple[np.ndarray, float]:
    """Local search among stationary row policies under a time limit; the value only rises.

    Each round switches every row with a positive estimated gain (``advantages_of``), or else the
    single row with the largest one, and keeps the switch only if the exact value rises; it
    stops at ``enough`` (an optimum: nothing beats it). The search of both baseline solvers.
    """
    value = value_of(policy)
    for _ in range(MAX_IMPROVEMENTS):
        if value >= enough - TOLERANCE:
            break
        advantage = advantages_of(policy)
        if advantage.max() <= TOLERANCE:
            break
        tried = [(value_of(p), p) for p in switch_proposals(policy, advantage)]
        new_value, new_policy = max(tried, key=lambda pair: pair[0])
        if new_value <= value + TOLERANCE:
            break
        value, policy = new_value, new_policy
    return policy, value


def _best_stationary(mdp: TabularMDP, kernel: _Kernel, candidates: list[np.ndarray],
                     tie_break: np.ndarray, discount: float) -> tuple[np.ndarray, float]:
    """The best stationary row policy found, and its exact value (module docstring).

    Under a time limit the candidates are the given ones, the greedy policy of the problem
    without the limit, and each of them improved by local search.
    """
    if mdp.horizon is None:
        scored = [(p, _policy_value(mdp, p, discount)) for p in candidates]
        return max(scored, key=lambda pair: pair[1])
    try:
        patient_q, _ = _optimal_q(mdp, kernel, discount, None)
        candidates = [*candidates, _row_policy(mdp, patient_q, tie_break)]
    except UsageError:
        pass  # without its time limit the problem has no finite optimum: no candidate
    improved = [local_search(p, lambda q: _policy_value(mdp, q, discount),
                             lambda q: _row_advantages(mdp, kernel, q, discount))
                for p in candidates]
    return max(improved, key=lambda pair: pair[1])


def solve(env_or_mdp: gym.Env | TabularMDP, discount: float | None = None) -> Solution:
    """The exact optimum of an environment (or MDP) and the best stationary policy found.

    >>> import gymnasium as gym
    >>> round(solve(gym.make("CliffWalking-v1")).value, 9)
    -13.0
    """
    mdp = _as_mdp(env_or_mdp)
    gamma = _discount(discount)
    kernel = _all_actions(mdp)
    q, sweeps = _optimal_q(mdp, kernel, gamma, mdp.horizon)
    hurried_q, _ = _optimal_q(mdp, kernel, HURRY * gamma, mdp.horizon)
    policy = _row_policy(mdp, q, hurried_q)
    stationary_policy, stationary_value = _best_stationary(
        mdp, kernel, [policy, _row_policy(mdp, hurried_q, q)], hurried_q, gamma
    )

    visits = _occupancy(mdp, _one_action(mdp, policy[mdp.row_of_state]))[0]
    row_q = _row_means(mdp, q, visits)
    row_visits = np.bincount(mdp.row_of_state, visits, minlength=mdp.n_rows)
    return Solution(
        values=q.max(axis=1),
        q_values=q,
        policy=policy,
        value=_from_start(mdp, q.max(axis=1)),
        row_q_values=row_q,
        row_values=np.max(row_q, axis=1),
        visit_weights=row_visits / row_visits.sum(),
        stationary_policy=stationary_policy,
        stationary_value=stationary_value,
        discount=gamma,
        horizon=mdp.horizon,
        num_iter=sweeps,
    )


# --- one stationary policy ----------------------------------------------------------------------
def _surely_ending(policy: _Kernel, n_states: int) -> np.ndarray:
    """States from which the episode ends with probability 1 under the policy.

    A state fails when some path leads from it to a state that can never end.
    """
    goes_on = ~policy.terminal & (policy.prob > 0)

    def reaches(targets: np.ndarray) -> np.ndarray:
        """States with a path (of continuing outcomes) into ``targets``, by fixed point."""
        while True:
            hits = np.bincount(policy.source, goes_on & targets[policy.next_state],
                               minlength=n_states) > 0
            grown = targets | hits
            if np.array_equal(grown, targets):
                return targets
            targets = grown

    can_end = reaches(np.bincount(policy.source, policy.terminal & (policy.prob > 0),
                                  minlength=n_states) > 0)
    return ~reaches(~can_end)


def _stationary_values(mdp: TabularMDP, policy: _Kernel, discount: float) -> np.ndarray:
    """``v_pi`` at t = 0 per state (see "Policy evaluation" in the module docstring)."""
    values = np.zeros(mdp.n_states)
    if mdp.horizon is not None:
        for _ in range(mdp.horizon):
            values = policy.backup(values, discount)
        return values
    ending = _surely_ending(policy, mdp.n_states) if discount == 1.0 else None
    sweep = 0
    while True:
        sweep += 1
        new_values = policy.backup(values, discount)
        change = new_values - values
        values = new_values
        settled = np.abs(change) <= _threshold(values, discount)
        if settled.all():
            return values
        if ending is not None and sweep >= DRIFT_SWEEPS and settled[ending].all():
            values[~settled] = np.copysign(np.inf, change[~settled])
            return values


def _step(policy: _Kernel, mass: np.ndarray, n_states: int) -> np.ndarray:
    """``mu P_pi``: the state law one step later, of the episodes still running."""
    flow = policy.continuing * mass[policy.source]
    return np.bincount(policy.next_state, flow, minlength=n_states)


def _occupancy(mdp: TabularMDP, policy: _Kernel) -> tuple[np.ndarray, np.ndarray, float]:
    """Expected visits per state, ending probability per outcome, and the mass still running.

    Forward in time, ``mu_{t+1} = mu_t P_pi``: up to the time limit; without one, until every
    episode has ended or, for a policy that may run forever, for ``DRIFT_SWEEPS`` steps.
    """
    limit = mdp.horizon
    if limit is None and mdp.initial[~_surely_ending(policy, mdp.n_states)].sum() > 0:
        limit = DRIFT_SWEEPS
    ending = np.where(policy.terminal, policy.prob, 0.0)
    mass = mdp.initial.copy()
    visits = np.zeros(mdp.n_states)
    ended = np.zeros(policy.prob.size)
    steps = 0
    while (limit is None or steps < limit) and mass.sum() > TOLERANCE:
        visits += mass
        ended += ending * mass[policy.source]
        mass = _step(policy, mass, mdp.n_states)
        steps += 1
    return visits, ended, float(mass.sum())


def evaluate_policy_exact(env_or_mdp: gym.Env | TabularMDP, policy_rows: np.ndarray,
                          discount: float | None = None) -> PolicyValue:
    """The exact value of the deterministic stationary policy ``policy_rows`` (one action per row).

    Values follow the objective of :func:`solve`; the probabilities and the mean length are those
    of the episodes the environment plays, undiscounted and cut by its time limit.
    """
    mdp = _as_mdp(env_or_mdp)
    gamma = _discount(discount)
    actions = _checked_policy(policy_rows, mdp.n_rows, mdp.n_actions)[mdp.row_of_state]
    policy = _one_action(mdp, actions)
    values = _stationary_values(mdp, policy, gamma)
    visits, ended, running = _occupancy(mdp, policy)
    success = None
    if mdp.goal_rows is not None:
        success = float(ended[mdp.goal_rows[mdp.row_of_state[policy.next_state]]].sum())
    truncated = 1.0 - float(ended.sum())
    endless = mdp.horizon is None and running > TOLERANCE
    return PolicyValue(
        value=_from_start(mdp, values),
        values=values,
        success_probability=success,
        win=float(ended[policy.reward > 0].sum()),
        draw=float(ended[policy.reward == 0].sum()),
        loss=float(ended[policy.reward < 0].sum()),
        truncated=max(truncated, 0.0),
        mean_length=np.inf if endless else float(visits.sum()),
    )


# --- input checks -------------------------------------------------------------------------------


