r"""Exact optimal policies and exact policy values of a finite MDP.

A :class:`~tabrl.exact.mdp.TabularMDP` lists, for every state :math:`s` and action :math:`a`, the
outcomes :math:`(p, s', r, d)`: with probability :math:`p` the step pays :math:`r`, moves to
:math:`s'` and ends the episode when :math:`d = 1`. Episodes start from the distribution
:math:`\mu_0`.

**Objective.** The return of an episode is :math:`G = \sum_{t < T} \gamma^t r_t`, where :math:`T` is
the step at which a terminal outcome happens or the time limit :math:`H` (``max_episode_steps`` of
``gym.make``), whichever comes first. ``discount=None`` means :math:`\gamma = 1`: the return the
environment reports, the one a learning curve shows. A terminal outcome pays its reward and
nothing follows; a truncated episode simply stops.

**Bellman backup.** :math:`q(s, a) = \sum_o p_o \,(r_o + \gamma (1 - d_o)\, V(s'_o))` and
:math:`(TV)(s) = \max_a q(s, a)`.

* *With a time limit* (FrozenLake, Taxi): backward induction :math:`V_H = 0`,
  :math:`V_t = T V_{t+1}`, at most :math:`H` sweeps: once a sweep returns the values it was given,
  bit for bit in float64, every further sweep returns them again, so the sweeps stop there with
  the exact answer (``Solution.settled_at``: the values settled after K of H steps). The optimum
  is non-stationary (with few steps left, a risky shortcut may beat a safe detour);
  :class:`Solution` reports :math:`t = 0`.
  A discount, when given, is applied *within* the time limit, so the reference stays the one of
  the environment the agent acts in.
* *Without a time limit* (CliffWalking, Blackjack): value iteration :math:`V_{k+1} = T V_k`
  from :math:`V_0 = 0`, which is the best :math:`k`-step return. For :math:`\gamma < 1` it stops
  when :math:`\|V_{k+1} - V_k\|_\infty \le \varepsilon (1 - \gamma) / \gamma`, so that the error is
  at most :math:`\varepsilon`. For :math:`\gamma = 1` (a stochastic shortest path) it stops when
  the values no longer change; on Blackjack (no loops) and on CliffWalking (deterministic) that
  happens after finitely many sweeps with the exact answer (-13 on CliffWalking). A return that
  never settles (a loop that earns or costs forever) is a :class:`~tabrl.errors.UsageError`.

**Policies per row.** A Q-table holds one action per observation (row) for all times.
``Solution.policy`` is greedy on :math:`q_0`: the optimal first action with the whole time limit
ahead. Ties in :math:`q` (within ``TIE``) go to the best action of the same problem discounted
by a further ``HURRY``, which prefers reaching rewards sooner, so that an action that merely waits
(walking into a wall) never wins a tie against one that makes progress. Where several states
share a row (Blackjack's hidden natural), the row's :math:`q` is the mean of its states' :math:`q`
weighted by their expected visits.

**The best stationary policy.** Under a time limit, following the :math:`t = 0` action at every
step can be worth less than the non-stationary optimum, and the best stationary policy is hard to
find in general. tabrl starts from natural candidates (greedy on :math:`q_0`, greedy on the
hurried :math:`q`, greedy on the optimum without the time limit if value iteration finds it
within ``PATIENT_LIMITS`` time limits' worth of sweeps), improves each by local search
(:meth:`_Search.improve`) and keeps the best: ``Solution.stationary_value`` is exact for the
policy it names, and a lower bound of the true best. The search stops as soon as a policy is worth
the optimum (within ``TOLERANCE``), and spends at most about ``SEARCH_BUDGET`` outcome backups
(``MISS_COST`` times fewer on an MDP whose values do not fit in the cache): on an MDP of millions
of transitions it may be cut short, which ``Solution.search_cut`` says.

**Policy evaluation.** For a stationary policy :math:`\pi`,
:math:`v \leftarrow r_\pi + \gamma P_\pi v` (``H`` sweeps, or until it settles), and the occupancy
:math:`\mu_{t+1} = \mu_t P_\pi` gives the expected visits of each state, the expected episode
length and the law of the episode's end. Without a time limit and without discount, a policy may
never end (CliffWalking's agent walking into the border): from such states the return is
:math:`\pm\infty` when it keeps drifting after ``DRIFT_SWEEPS`` sweeps, and episodes still running
after ``DRIFT_SWEEPS`` steps count as truncated. :func:`endless_states` names the states from
which a policy never ends (or may not end): a Monte Carlo evaluation cuts its episodes there.

**Computation.** Every sweep runs in numba kernels over the MDP's CSR outcomes
(``tabrl.exact.kernels``), adding in the order of the numpy solver this module replaced
(``bench/numpy_dp.py``, equal bit for bit on the values); a solve costs about a sweep per
state-step until the values settle. :func:`solve` keeps its last few solutions keyed by the MDP's
content and the discount, so a run that evaluates and draws solves its environment once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tabrl.display import Facts, Shown, env_name
from tabrl.errors import UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.exact.readers import mdp_of
from tabrl.interrupts import interrupts_kept

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Solution", "PolicyValue", "solve", "evaluate_policy_exact", "policy_value",
           "policy_agreement", "endless_states"]

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
#: Rounds of local search for the best stationary policy under a time limit, per candidate.
MAX_IMPROVEMENTS = 100
#: Outcome backups the whole search may spend: a few minutes of one core. A round costs about
#: twice transitions x horizon (the 100x100 map of ``bench/solve.py`` with 10,000 steps, the
#: largest search there, spends 3.5 * 10^10).
SEARCH_BUDGET = 5 * 10**10
#: States whose values (8 bytes each) fit in a core's cache (1 MB here): beyond, a backup that
#: reads the values of scattered next states waits for memory, 5-10 times as long.
CACHED_STATES = 2**17
#: What a backup beyond ``CACHED_STATES`` counts against ``SEARCH_BUDGET``: the budget stays a
#: count of backups (same MDP, same answer) that takes about the same time at every size.
MISS_COST = 8
#: The patient candidate's value iteration stops after this many time limits' worth of sweeps:
#: values that take longer to settle describe episodes the time limit cuts, whose greedy policy
#: is rarely the best under it (on the maps of ``bench/solve.py`` it helped once, after 7.7).
PATIENT_LIMITS = 10
#: Memory for a policy's values per step to go in the local search; beyond it, rows are
#: computed again (``tabrl.exact.kernels.time_weighted_advantages``).
HISTORY_BYTES = 2**28
#: Solutions :func:`solve` keeps for the MDPs it saw last.
SOLUTIONS_KEPT = 4


@dataclass(frozen=True, eq=False, repr=False)
class Solution(Shown):
    """The exact optimum of an MDP under one objective (see the module docstring).

    ``policy`` acts optimally at t = 0 in every row: the optimal action with the whole time
    limit ahead. Under a time limit, following it at every step may fall short of ``value``;
    ``stationary_policy`` is the best policy for all times found, worth ``stationary_value``,
    the most a Q-table can reach. Per-row figures weight the states of a row (Blackjack's
    ``(21, card, 1)``: a natural or a soft 21 reached by hitting) by their expected visits under
    ``policy``, so ``row_values`` is the optimal value of what the agent observes.
    """

    values: np.ndarray  #: float64[n_states]: optimal return from each state at t = 0
    q_values: np.ndarray  #: float64[n_states, n_actions]: optimal q at t = 0
    policy: np.ndarray  #: int64[n_rows]: the optimal action at t = 0 per row (0: no state)
    value: float  #: the optimal expected return from the initial distribution
    row_q_values: np.ndarray  #: float64[n_rows, n_actions]: q at t = 0 per row (NaN: no state)
    row_values: np.ndarray  #: float64[n_rows]: optimal value per row (NaN: no state)
    visit_weights: np.ndarray  #: float64[n_rows]: share of expected visits under ``policy``
    stationary_policy: np.ndarray  #: int64[n_rows]: the best stationary policy found
    stationary_value: float  #: its exact value (at most ``value``)
    discount: float  #: 1.0 for the undiscounted return
    horizon: int | None  #: the time limit respected, None where there is none
    num_iter: int  #: Bellman sweeps of the main solve
    #: Under a time limit H: the K <= H steps to go after which the optimal values no longer
    #: change in float64 (every longer limit has the same optimum); None where they still
    #: change at the limit, or there is no limit.
    settled_at: int | None = None
    #: Under a time limit: rounds of local search for ``stationary_policy``.
    search_rounds: int = 0
    #: Whether the search's budget (``SEARCH_BUDGET``) ended it before it stopped on its own: the
    #: best stationary policy found is then less likely to be the best there is.
    search_cut: bool = False

    def facts(self) -> tuple[str, Facts]:
        objective = "undiscounted return" if self.discount == 1 else f"discount {self.discount}"
        rows = [("objective", objective + (f" within {self.horizon:,} steps"
                                           if self.horizon else ""))]
        if self.horizon:
            rows.append(("backward induction",
                         f"values settled after {self.settled_at:,} of {self.horizon:,} steps"
                         if self.settled_at is not None
                         else f"values still changing at {self.horizon:,} steps"))
        else:
            rows.append(("value iteration", f"{self.num_iter:,} sweeps"))
        n_states, n_actions = self.q_values.shape
        stationary = f"{self.stationary_value:+.4f}" + (
            f"  (search cut short after {self.search_rounds:,} rounds)" if self.search_cut else "")
        rows += [("optimal value", f"{self.value:+.4f}"),
                 ("best stationary policy", stationary),
                 ("size", f"{n_states:,} states, {len(self.policy):,} observations, "
                          f"{n_actions} actions")]
        return "Solution: the exact optimum", rows

    def plot(self, env: gym.Env, title: str = "") -> Figure:
        """A new figure: the optimal policy and values drawn on ``env``, the environment solved
        (what ``tabrl solve`` saves as ``policy.png``)."""
        from tabrl.plots.policies import policy_figure  # Solution.plot draws: see pyproject.toml

        return policy_figure(env, np.nan_to_num(self.row_q_values), optimal_policy=self.policy,
                             optimum=True, title=title or f"optimal policy of {env_name(env)}")


@dataclass(frozen=True, eq=False)
class PolicyValue:
    """The exact value of a stationary policy, and the law of how its episodes end.

    ``win``, ``draw`` and ``loss`` are the probabilities that the episode ends through a terminal
    outcome whose reward is positive, zero or negative; ``truncated`` that the time limit ends it
    (without a time limit: that it runs on for ``DRIFT_SWEEPS`` steps). The four add up to 1. On
    Blackjack they are the probabilities of winning, drawing and losing a hand; elsewhere they
    describe the last reward only (CliffWalking's goal pays -1), and ``success_probability`` is the
    one to read where the MDP marks goal rows.
    """

    value: float  #: expected return from the initial distribution
    values: np.ndarray  #: float64[n_states]: expected return from each state at t = 0
    success_probability: float | None  #: ends in a goal row; None where the MDP has no goal
    win: float
    draw: float
    loss: float
    truncated: float
    mean_length: float  #: expected number of steps (inf where episodes may never end)


def _kernels() -> _InterruptibleKernels:
    """The numba kernels, imported when first needed: ``import tabrl`` does not load numba."""
    from tabrl.exact import kernels

    return _InterruptibleKernels(kernels)


class _InterruptibleKernels:
    """A module's kernels, each call kept interruptible (``tabrl.interrupts.interrupts_kept``).

    These kernels call back into Python while they run (numba unpickles constants they need:
    two calls per ``reaching``, one per ``sweep_until_settled``); a Ctrl-C that lands there
    raised its ``KeyboardInterrupt`` inside the callback, where numba cleared it, and a sweep
    went on as if nothing had been pressed (about one Ctrl-C in twenty, 2026-12-03).
    """

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Callable[..., Any]:
        kernel = getattr(self._module, name)

        def kept(*args: Any) -> Any:
            with interrupts_kept():
                return kernel(*args)

        return kept


@dataclass(frozen=True, eq=False)
class _Table:
    """Outcomes in CSR form, ``width`` segments per state: the whole MDP, or a policy (width 1).

    ``arrays`` is what the kernels of ``tabrl.exact.kernels`` read; every array is writable
    and contiguous, so that each kernel compiles for one signature.
    """

    width: int
    offsets: np.ndarray  #: int64[n_states * width + 1]
    next_state: np.ndarray
    continuing: np.ndarray  #: ``prob`` where the episode goes on, 0 where it ends
    expected_reward: np.ndarray  #: float64[n_states * width]
    prob: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.offsets, self.next_state, self.continuing, self.expected_reward

    @classmethod
    def build(cls, mdp: TabularMDP, width: int, offsets: np.ndarray, outcomes: np.ndarray | slice,
              expected_reward: np.ndarray) -> _Table:
        """The table of the outcomes ``outcomes`` of ``mdp``, cut into segments by ``offsets``."""
        terminal = np.array(mdp.terminal[outcomes])
        prob = np.array(mdp.prob[outcomes])
        return cls(
            width=width,
            offsets=np.array(offsets, dtype=np.int64),
            next_state=np.array(mdp.next_state[outcomes], dtype=np.int64),
            continuing=np.where(terminal, 0.0, prob),
            expected_reward=np.array(expected_reward, dtype=np.float64),
            prob=prob,
            reward=np.array(mdp.reward[outcomes]),
            terminal=terminal,
        )

    def source(self) -> np.ndarray:
        """The state each outcome leaves."""
        return np.repeat(np.arange(self.offsets.size - 1) // self.width, np.diff(self.offsets))


def _all_actions(mdp: TabularMDP) -> _Table:
    """The table of the whole MDP: one segment per ``(state, action)``."""
    return _Table.build(mdp, mdp.n_actions, mdp.offsets, slice(None),
                        mdp.expected_reward().ravel())


def _one_action(mdp: TabularMDP, actions: np.ndarray) -> _Table:
    """The table of a stationary policy given per state: one segment per state."""
    pairs = np.arange(mdp.n_states) * mdp.n_actions + actions
    starts, stops = mdp.offsets[pairs], mdp.offsets[pairs + 1]
    counts = stops - starts
    offsets = np.concatenate(([0], np.cumsum(counts)))
    outcomes = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return _Table.build(mdp, 1, offsets, outcomes, mdp.expected_reward().ravel()[pairs])


# --- the optimum --------------------------------------------------------------------------------
def _optimal_q(table: _Table, discount: float, horizon: int | None) -> tuple[np.ndarray, int, bool]:
    """Optimal ``q`` at t = 0, the sweeps it took, and whether the values settled.

    Backward induction stops once the values settle exactly; value iteration (no time limit)
    once they settle within ``TOLERANCE`` (the rule in the module docstring).
    """
    if horizon is not None:
        return _kernels().sweep_until_settled(*table.arrays, table.width, discount, horizon, 0.0)
    q, sweeps, settled = _kernels().sweep_until_settled(*table.arrays, table.width, discount,
                                                        MAX_SWEEPS, TOLERANCE)
    _check_settled(settled)
    return q, sweeps, settled


def _optimal_and_hurried_q(table: _Table, discount: float,
                           horizon: int | None) -> tuple[np.ndarray, int, bool, np.ndarray]:
    """``_optimal_q`` of the problem, and the ``q`` of its hurried version (discount times
    ``HURRY``), computed in the same sweeps while both run."""
    limit, tolerance = (horizon, 0.0) if horizon is not None else (MAX_SWEEPS, TOLERANCE)
    (q, sweeps, settled), (hurried_q, _, hurried_settled) = _kernels().sweep_two_until_settled(
        *table.arrays, table.width, discount, HURRY * discount, limit, tolerance)
    if horizon is None:
        _check_settled(settled and hurried_settled)
    return q, sweeps, settled, hurried_q


def _check_settled(settled: bool) -> None:
    """A one-line error where value iteration without a time limit did not settle."""
    if not settled:
        raise UsageError(
            f"the undiscounted return does not settle after {MAX_SWEEPS} sweeps (a loop earns or "
            "costs forever): give a discount, e.g. 0.99, or a time limit"
        )


def _greedy(q: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Per row of ``q``: the best action, ties (within ``TIE``) going to the best ``tie_break``."""
    optimal = q >= np.max(q, axis=1, keepdims=True) - TIE
    return np.argmax(np.where(optimal, tie_break, -np.inf), axis=1)


def _row_means(mdp: TabularMDP, per_state: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of ``per_state`` (states x columns) over the states of each row.

    A row of one state takes its values as they are (not rounded through weight x value /
    weight), a row whose states all have zero weight the plain mean, a row without states NaN.
    """
    rows = mdp.row_of_state
    row_weight = np.bincount(rows, weights, minlength=mdp.n_rows)
    weights = np.where(row_weight[rows] > 0, weights, 1.0)
    total = np.bincount(rows, weights, minlength=mdp.n_rows)
    columns = [np.bincount(rows, weights * column, minlength=mdp.n_rows) for column in per_state.T]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.stack(columns, axis=1) / total[:, None]
    alone = np.bincount(rows, minlength=mdp.n_rows)[rows] == 1
    means[rows[alone]] = per_state[alone]
    return means


def _row_policy(mdp: TabularMDP, q: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """A policy per row from ``q`` per state: greedy on the rows' visit-weighted ``q``.

    Where no row holds several states (every toy-text environment), each row's ``q`` is its
    state's and no visits need counting (on a long time limit, as long as evaluating a policy).
    """
    greedy = _greedy(q, tie_break)
    if np.all(np.bincount(mdp.row_of_state, minlength=mdp.n_rows) <= 1):
        policy = np.zeros(mdp.n_rows, dtype=np.int64)  # rows without a state: action 0
        policy[mdp.row_of_state] = greedy
        return policy
    visits = _occupancy(mdp, _one_action(mdp, greedy))[0]
    row_q = _row_means(mdp, q, visits)
    row_tie_break = _row_means(mdp, tie_break, visits)
    actions = _greedy(np.nan_to_num(row_q, nan=0.0), np.nan_to_num(row_tie_break, nan=0.0))
    return np.where(np.isnan(row_q[:, 0]), 0, actions)


def _policy_value(mdp: TabularMDP, policy: np.ndarray, discount: float) -> float:
    """The exact value of a row policy from the initial distribution."""
    return _from_start(mdp, _stationary_values(mdp, _one_action(mdp, policy[mdp.row_of_state]),
                                               discount))


def _from_start(mdp: TabularMDP, values: np.ndarray) -> float:
    """The expected value over the initial distribution; states that never start do not count."""
    start = mdp.initial > 0
    return float(mdp.initial[start] @ values[start])


def switch_proposals(policy: np.ndarray, advantage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A round of the local search's two proposals from the estimated gains of switching each
    row to each action: every row with a positive gain switched to its best action, or only the
    row with the largest gain (the safer step when switches interact)."""
    gain = advantage.max(axis=1)
    everywhere = np.where(gain > TOLERANCE, advantage.argmax(axis=1), policy)
    single = policy.copy()
    single[gain.argmax()] = advantage[gain.argmax()].argmax()
    return everywhere, single


class _Search:
    """The local search for the best stationary policy under a time limit, within a budget.

    ``budget`` is the number of outcome backups (and steps of the state law) the search may
    still spend (``SEARCH_BUDGET``, divided by ``MISS_COST`` beyond ``CACHED_STATES``); it is
    charged after the work, so the last round may overdraw it. ``rounds``
    counts the rounds of :meth:`improve`, ``cut`` says whether the budget ended the search
    before it stopped on its own. Policy values are remembered: a policy tried twice (a round's
    two proposals can be the same) is evaluated once.
    """

    def __init__(self, mdp: TabularMDP, table: _Table, discount: float, optimum: float) -> None:
        self.mdp, self.table, self.discount, self.optimum = mdp, table, discount, optimum
        self.budget = SEARCH_BUDGET // (MISS_COST if mdp.n_states > CACHED_STATES else 1)
        self.rounds, self.cut = 0, False
        self._values: dict[bytes, float] = {}

    def value(self, policy: np.ndarray) -> float:
        """The exact value of a row policy from the initial distribution."""
        key = policy.tobytes()
        if key not in self._values:
            mdp = self.mdp
            table = _one_action(mdp, policy[mdp.row_of_state])
            q, sweeps, _ = _optimal_q(table, self.discount, mdp.horizon)
            self.budget -= sweeps * table.next_state.size
            self._values[key] = _from_start(mdp, q[:, 0])
        return self._values[key]

    def advantages(self, policy: np.ndarray) -> np.ndarray:
        """Per row and action: the first-order gain of switching ``policy`` to that action
        everywhere.

        By the performance-difference identity, for stationary policies under a time limit
        ``V'_0 - V_0 = sum_t gamma^t E_{mu'_t}[q_t(s, pi'(s)) - V_t(s)]``, where ``q_t, V_t``
        belong to the current policy at time ``t`` and ``mu'_t`` is the state law at ``t`` under
        the new one. With the current ``mu_t`` in place of ``mu'_t`` this is the estimate
        returned here (summed while more than ``TOLERANCE`` of the episodes are still running).
        """
        mdp = self.mdp
        actions = policy[mdp.row_of_state]
        advantage, work = _kernels().time_weighted_advantages(
            self.table.arrays, _one_action(mdp, actions).arrays, actions, np.array(mdp.initial),
            mdp.horizon, self.discount, TOLERANCE, max(2, HISTORY_BYTES // (8 * mdp.n_states))
        )
        self.budget -= work
        return np.stack([np.bincount(mdp.row_of_state, column, minlength=mdp.n_rows)
                         for column in advantage.T], axis=1)

    def improve(self, policy: np.ndarray) -> tuple[np.ndarray, float]:
        """Local search from ``policy``; the value only rises.

        Each round switches every row with a positive estimated gain (:meth:`advantages`), or
        else the single row with the largest one, and keeps the switch only if the exact value
        rises by more than ``TOLERANCE``: so the search ends as soon as it is that close to the
        optimum, and where the budget is spent.
        """
        value = self.value(policy)
        for _ in range(MAX_IMPROVEMENTS):
            if value >= self.optimum - TOLERANCE:
                break
            if self.budget <= 0:
                self.cut = True
                break
            self.rounds += 1
            advantage = self.advantages(policy)
            if advantage.max() <= TOLERANCE:
                break
            tried = [(self.value(p), p) for p in switch_proposals(policy, advantage)]
            new_value, new_policy = max(tried, key=lambda pair: pair[0])
            if new_value <= value + TOLERANCE:
                break
            value, policy = new_value, new_policy
        return policy, value

    def patient_candidate(self, tie_break: np.ndarray) -> np.ndarray | None:
        """The greedy policy of the problem without its time limit, if value iteration finds its
        optimum within ``PATIENT_LIMITS`` time limits' worth of sweeps (at most ``MAX_SWEEPS``)
        and the budget."""
        table = self.table
        outcomes = max(1, table.next_state.size)
        allowed = min(MAX_SWEEPS, PATIENT_LIMITS * self.mdp.horizon)
        max_sweeps = int(min(allowed, max(0, self.budget) // outcomes))
        q, sweeps, settled = _kernels().sweep_until_settled(
            *table.arrays, table.width, self.discount, max_sweeps, TOLERANCE)
        self.budget -= sweeps * outcomes
        if not settled:
            self.cut = self.cut or max_sweeps < allowed
            return None
        return _row_policy(self.mdp, q, tie_break)


def _best_stationary(mdp: TabularMDP, table: _Table, candidates: list[np.ndarray],
                     tie_break: np.ndarray, discount: float,
                     optimum: float) -> tuple[np.ndarray, float, _Search | None]:
    """The best stationary row policy found, its exact value, and the search that found it
    (module docstring; None without a time limit).

    Under a time limit the candidates are the given ones, then the greedy policy of the problem
    without the limit, each improved by local search, until one comes within ``TOLERANCE`` of
    ``optimum`` (no stationary policy is worth more) or the search's budget is spent.
    """
    if mdp.horizon is None:
        scored = [(p, _policy_value(mdp, p, discount)) for p in candidates]
        return (*max(scored, key=lambda pair: pair[1]), None)
    search = _Search(mdp, table, discount, optimum)
    best_policy, best_value = candidates[0], -np.inf
    for candidate in _stationary_candidates(search, candidates, tie_break):
        policy, value = search.improve(candidate)
        if value > best_value:
            best_policy, best_value = policy, value
        if best_value >= optimum - TOLERANCE:
            break
    return best_policy, best_value, search


def _stationary_candidates(search: _Search, candidates: list[np.ndarray],
                           tie_break: np.ndarray) -> Iterator[np.ndarray]:
    """The given candidates, then (solved only when asked for) the patient problem's greedy."""
    yield from candidates
    patient = search.patient_candidate(tie_break)
    if patient is not None:
        yield patient


def solve(env_or_mdp: gym.Env | TabularMDP, discount: float | None = None) -> Solution:
    """The exact optimum of an environment (or MDP) and the best stationary policy found.

    Solutions are kept for the last ``SOLUTIONS_KEPT`` MDPs (by content) and discounts, so the
    same MDP, built again, is not solved again; their arrays are read-only.

    >>> import gymnasium as gym
    >>> round(solve(gym.make("CliffWalking-v1")).value, 9)
    -13.0
    """
    mdp = _as_mdp(env_or_mdp)
    gamma = _discount(discount)
    key = (_fingerprint(mdp), gamma)
    if key not in _solutions:
        if len(_solutions) >= SOLUTIONS_KEPT:
            del _solutions[next(iter(_solutions))]
        _solutions[key] = _solve(mdp, gamma)
    return _solutions[key]


_solutions: dict[tuple[bytes, float], Solution] = {}  #: oldest first


def _fingerprint(mdp: TabularMDP) -> bytes:
    """A digest of everything that defines the MDP: equal digests, the same solution."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((mdp.n_states, mdp.n_actions, mdp.n_rows, mdp.horizon)).encode())
    for array in (mdp.row_of_state, mdp.initial, mdp.offsets, mdp.prob, mdp.next_state,
                  mdp.reward, mdp.terminal, mdp.goal_rows):
        if array is not None:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.digest()


def _solve(mdp: TabularMDP, gamma: float) -> Solution:
    """:func:`solve` itself, without the cache."""
    table = _all_actions(mdp)
    q, sweeps, settled, hurried_q = _optimal_and_hurried_q(table, gamma, mdp.horizon)
    policy = _row_policy(mdp, q, hurried_q)
    value = _from_start(mdp, q.max(axis=1))
    stationary_policy, stationary_value, search = _best_stationary(
        mdp, table, [policy, _row_policy(mdp, hurried_q, q)], hurried_q, gamma, value
    )

    visits = _occupancy(mdp, _one_action(mdp, policy[mdp.row_of_state]))[0]
    row_q = _row_means(mdp, q, visits)
    row_visits = np.bincount(mdp.row_of_state, visits, minlength=mdp.n_rows)
    arrays = {
        "values": q.max(axis=1),
        "q_values": q,
        "policy": policy,
        "row_q_values": row_q,
        "row_values": np.max(row_q, axis=1),
        "visit_weights": row_visits / row_visits.sum(),
        "stationary_policy": stationary_policy,
    }
    for array in arrays.values():
        array.flags.writeable = False  # shared by every caller of the cache
    return Solution(
        **arrays,
        value=value,
        stationary_value=stationary_value,
        discount=gamma,
        horizon=mdp.horizon,
        num_iter=sweeps,
        settled_at=sweeps - 1 if settled and mdp.horizon is not None else None,
        search_rounds=search.rounds if search else 0,
        search_cut=search.cut if search else False,
    )


# --- one stationary policy ----------------------------------------------------------------------
def _surely_ending(policy: _Table) -> np.ndarray:
    """States from which the episode ends with probability 1 under the policy.

    A state fails when some path leads from it to a state that can never end.
    """
    can_end = _can_end(policy)
    return ~_reaching(policy, ~can_end)


def _can_end(policy: _Table) -> np.ndarray:
    """States from which some path of the policy ends the episode."""
    ends_now = np.zeros(policy.offsets.size - 1, dtype=bool)
    ends_now[policy.source()[policy.terminal & (policy.prob > 0)]] = True
    return _reaching(policy, ends_now)


def _reaching(policy: _Table, targets: np.ndarray) -> np.ndarray:
    """States with a path (of continuing outcomes) into ``targets``."""
    goes_on = ~policy.terminal & (policy.prob > 0)
    return _kernels().reaching(policy.offsets, policy.next_state, goes_on, targets)


def endless_states(env_or_mdp: gym.Env | TabularMDP,
                   policy_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per state: can the policy's episode never end from here, and may it not end from here?

    The first (``never``) are states from which no path ends: an episode that enters one runs
    until a time limit cuts it. The second (``may_loop``) adds the states from which some path
    leads into them. Both are exact properties of the MDP, independent of any time limit.
    """
    mdp = _as_mdp(env_or_mdp)
    actions = _checked_policy(policy_rows, mdp.n_rows, mdp.n_actions)[mdp.row_of_state]
    policy = _one_action(mdp, actions)
    return ~_can_end(policy), ~_surely_ending(policy)


def _stationary_values(mdp: TabularMDP, policy: _Table, discount: float) -> np.ndarray:
    """``v_pi`` at t = 0 per state (see "Policy evaluation" in the module docstring)."""
    if mdp.horizon is not None:
        return _optimal_q(policy, discount, mdp.horizon)[0][:, 0]
    if discount == 1.0:
        ending, drift_sweeps = _surely_ending(policy), DRIFT_SWEEPS
    else:  # discounted values always settle
        ending, drift_sweeps = np.zeros(mdp.n_states, dtype=bool), MAX_SWEEPS + 1
    return _kernels().endless_policy_values(*policy.arrays, discount, ending, drift_sweeps,
                                            TOLERANCE)


def _occupancy(mdp: TabularMDP, policy: _Table) -> tuple[np.ndarray, np.ndarray, float]:
    """Expected visits per state, ending probability per outcome, and the mass still running.

    Forward in time, ``mu_{t+1} = mu_t P_pi``: up to the time limit; without one, until every
    episode has ended or, for a policy that may run forever, for ``DRIFT_SWEEPS`` steps.
    """
    limit = mdp.horizon
    if limit is None and mdp.initial[~_surely_ending(policy)].sum() > 0:
        limit = DRIFT_SWEEPS
    visits, ended, running = _kernels().occupancy(
        policy.offsets, policy.next_state, policy.continuing,
        np.where(policy.terminal, policy.prob, 0.0), np.array(mdp.initial),
        -1 if limit is None else limit, TOLERANCE,
    )
    return visits, ended, float(running)


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


def policy_value(mdp: TabularMDP, policy_rows: np.ndarray, discount: float | None = None
                 ) -> float:
    """``evaluate_policy_exact(mdp, policy_rows, discount).value``, bit for bit, without the law
    of the episodes' ends: what a learning curve's point needs, at about half the cost."""
    actions = _checked_policy(policy_rows, mdp.n_rows, mdp.n_actions)[mdp.row_of_state]
    return _from_start(mdp, _stationary_values(mdp, _one_action(mdp, actions),
                                               _discount(discount)))


def policy_agreement(solution: Solution, policy_rows: np.ndarray) -> float:
    """Share of visits (``solution.visit_weights``) in rows where ``policy_rows`` acts optimally.

    Optimal means within ``TIE`` of the best q at t = 0, so every optimal action of a tie counts.
    A share, at most 1: the weights' rounding can add up to a hair above it (Taxi-v4).
    """
    q = solution.row_q_values
    actions = _checked_policy(policy_rows, *q.shape)
    visited = solution.visit_weights > 0
    chosen = q[visited, actions[visited]]
    optimal = chosen >= np.max(q[visited], axis=1) - TIE
    return min(1.0, float(solution.visit_weights[visited] @ optimal))


def warm_up() -> None:
    """Compile the kernels (or load them from numba's disk cache) on a two-state MDP, with and
    without a time limit, so that a command's first solution does not pause to compile.

    In state 0, action 0 stays (reward 0) and action 1 ends the episode (reward 1): the optimum
    ends, and staying is a policy that may never end. The local search of stationary policies
    under a time limit is called directly: this MDP's optimum needs none.
    """
    from tabrl.exact.mdp import from_transitions

    stay_or_end = {0: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 1.0, True)]},
                   1: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 1, 0.0, True)]}}
    for horizon in (3, None):
        mdp = from_transitions(stay_or_end, np.array([1.0, 0.0]), 2, horizon)
        _solve(mdp, 1.0)
        for action in (0, 1):
            evaluate_policy_exact(mdp, np.array([action, 0]))
        if horizon is not None:
            _Search(mdp, _all_actions(mdp), 1.0, 1.0).advantages(np.zeros(2, dtype=np.int64))


# --- input checks -------------------------------------------------------------------------------
def _as_mdp(env_or_mdp: gym.Env | TabularMDP) -> TabularMDP:
    """The MDP itself, or the MDP of a Gymnasium environment."""
    if isinstance(env_or_mdp, TabularMDP):
        return env_or_mdp
    if isinstance(env_or_mdp, gym.Env):
        return mdp_of(env_or_mdp)
    raise UsageError(
        f"expected a gymnasium.Env or a TabularMDP, got {type(env_or_mdp).__name__}"
    )


def _discount(discount: float | None) -> float:
    """The discount as a number: None is the undiscounted return (1.0)."""
    if discount is None:
        return 1.0
    if not 0.0 <= discount <= 1.0:
        raise UsageError(f"the discount must be in [0, 1], got {discount}")
    return float(discount)


def _checked_policy(policy_rows: np.ndarray, n_rows: int, n_actions: int) -> np.ndarray:
    """``policy_rows`` as int64, or a one-line error when it does not fit the MDP."""
    actions = np.asarray(policy_rows)
    if actions.shape != (n_rows,):
        raise UsageError(
            f"the policy has shape {actions.shape}, but the environment has {n_rows} rows"
        )
    if not np.issubdtype(actions.dtype, np.integer):
        raise UsageError(f"the policy must hold integer actions, got {actions.dtype}")
    if actions.size and (actions.min() < 0 or actions.max() >= n_actions):
        raise UsageError(f"the policy's actions must lie in 0..{n_actions - 1}")
    return actions.astype(np.int64)
