"""The numba kernels: a random generator, sampling an MDP, one episode of learning, many runs,
and a fixed policy played (the compiled evaluation).

Every run owns a xoshiro256** generator (Blackman and Vigna, 2018) seeded through splitmix64, so a
run's result depends on its seed alone: never on the thread that runs it, the number of threads,
or how its episodes are split into calls.

An episode follows the Python engine's loop step for step (``tabrl.loop``, ``tabrl.agents``): the
start state is drawn from the MDP's start distribution (Monte Carlo ES: a uniform state and a
uniform first action); the behaviour policy (epsilon-greedy, softmax or UCB, as in
``tabrl.exploration``) picks an action; an outcome ``(next state, reward, terminal)`` is drawn
from the cumulative probabilities of ``(state, action)``; the algorithm's update follows. A
terminal outcome bootstraps zero; reaching the time limit ends the episode but still bootstraps.
Epsilon, the softmax temperature and the learning rate move along their schedules after every
episode (the learning rate in the run's setting, so that the next call starts from it), or, on a
schedule of the visits kind, are the state's (the pair's) own, from its visit count.

One episode loop, :func:`_episode`, serves every method. It takes the behaviour policy and the
update rule as functions: :func:`_explore` dispatches on the run's exploration code, and
:func:`_learn` on its algorithm code, to one function per method, ``_learn_<method>``, the
twin of its agent's ``step`` (they name each other). Methods that remember more than ``Q``
keep it in per-run arrays of :class:`Runs` (empty where no run of the call needs them), handed
to :func:`_learn` as one :class:`Memory`:

=================== ==========================================================================
double-q-learning   ``half_difference``: ``(Q_A - Q_B) / 2`` beside ``q = (Q_A + Q_B) / 2``
monte-carlo         ``memory_*``: the episode's ``(pair, reward)``; ``marks``: first visits
n-step-sarsa,       ``memory_*``: the last ``n`` steps, a ring indexed by ``step % n``
tree-backup, q-sigma
sarsa-lambda,       ``memory_*``: the pairs with a trace this episode, and their traces;
q-lambda            ``marks``: a pair's place in that list
dyna-q              ``model_counts`` per distinct outcome of a ``(row, action)``
                    (:class:`ObservedOutcomes`); ``model_pairs``: the pairs seen, in order
=================== ==========================================================================

A run's hyperparameters are one float64 vector (see ``SETTING_SIZE``); its first entry is the
algorithm code, and the exploration code sits at ``EXPLORATION``.

**Action masks** (:mod:`tabrl.masks`): a masked run's table of allowed actions per row,
``Runs.allowed`` (no rows for a run without one), reaches every choice and target through
``allowed`` arguments: greedy choices, maxima and expectations run over the allowed actions only,
epsilon-greedy's random action is uniform over them, softmax and UCB never weigh a masked one.
A method's own kernel passes ``allowed=None``, which numba prunes at compile time (:func:`_ok`),
so its loop carries no mask; a masked run takes the kernel of every method.

Every kernel lives in this one module on purpose: numba's disk cache notices edits only to the
file that defines a kernel, so a helper in another module could be silently served stale. (The
schedule kind codes come from ``tabrl.schedules.KINDS`` and the codes of how an episode stopped
from ``tabrl.exact.outcomes``: changing them needs a cache clear.)
Every call has the same argument types, whatever the methods of its runs, so each kernel is
compiled once.

The entry points, each compiled (or loaded from the cache) only by the commands that call it
(``tabrl.kernel_cache``): :func:`train_runs`, every method and strategy (mixed runs, action
masks); :func:`method_kernel`, one method and strategy alone (the tutorial's agent's is what
``tabrl train`` needs by default), with the same results, 1.2x to 3.3x faster, in a quarter to
two thirds of the compile; :func:`play_policy`, the greedy evaluation on the MDP.

Speed comes from keeping the hot loop in registers; each of these measured 10% to 2x, the first
2x to 5x on the general loop:

- the functions that are called, not inlined (``_called``: the general loop, the strategies;
  ``_step``: the methods' own steps where they are called), are compiled without numba's
  reference counting (``_nrt=False``; they allocate nothing): with it, each of them increfed and
  decrefed every array it was handed, down to every array of a :class:`Memory` passed along,
  about 40 atomic operations a step of the general loop and most of its time (perf,
  2026-12-03). The results are the same, bit for bit;
- each method and strategy gets a kernel of its own (:func:`method_kernel`): the same
  :func:`_episode`, inlined with the one strategy and the one step it needs and no mask (one
  loop that could branch to every method measured 1.2x to 3.3x slower, from the values the other
  branches keep alive and the arrays passed to them, 2026-12-03). The method and strategy reach
  the loop as compile-time constants (``literally``), and an ``overload`` picks its functions
  while numba types it, so that each kernel compiles only its own. The methods' heavier steps
  are inlined there too (``_step``'s inlining rule: n-step SARSA 2.3x faster), and called from
  the kernel of every method, whose compile inlining them would double;
- small helpers are inlined by numba (``inline="always"``); left to LLVM, the calls stay;
- the generator state (four words) and a run's setting are tuples, passed by value: as arrays,
  they would be re-read from memory after every store to the Q-table that might overlap them;
  the helpers that draw return the advanced state with their result;
- arrays are taken out of their named tuples before a loop (each field read costs a reference
  count), and a tuple is passed only where its arrays are read (each array it holds costs a
  reference count wherever it is passed: :class:`ObservedOutcomes` is not part of
  :class:`CompiledMDP`, which every episode reads).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
from numba import literally, njit, prange, types
from numba.extending import overload
from numba.np.unsafe.ndarray import to_fixed_tuple

from tabrl.exact.outcomes import LOOPED, TERMINATED, TRUNCATED
from tabrl.schedules import KINDS

# --- algorithm and exploration codes, and the layout of a run's setting vector -------------------
Q_LEARNING = 1
SARSA = 2
EXPECTED_SARSA = 3
DOUBLE_Q_LEARNING = 4
MONTE_CARLO = 5
N_STEP_SARSA = 6
SARSA_LAMBDA = 7
DYNA_Q = 8
Q_LAMBDA = 9
TREE_BACKUP = 10
Q_SIGMA = 11
#: Each method's code, by its name (``spec.name`` of its agent).
METHOD_CODES = {
    "q-learning": Q_LEARNING, "sarsa": SARSA, "expected-sarsa": EXPECTED_SARSA,
    "double-q-learning": DOUBLE_Q_LEARNING, "monte-carlo": MONTE_CARLO,
    "n-step-sarsa": N_STEP_SARSA, "sarsa-lambda": SARSA_LAMBDA, "q-lambda": Q_LAMBDA,
    "dyna-q": DYNA_Q, "tree-backup": TREE_BACKUP, "q-sigma": Q_SIGMA,
}

EPSILON_GREEDY, SOFTMAX, UCB = 0, 1, 2

ALGO, DISCOUNT, LEARNING_RATE = 0, 1, 2
LR_SCHEDULE = 3  #: four entries ``[kind, start, end, rate]`` (``Schedule.as_array``)
EPSILON_SCHEDULE = 7  #: four entries as well
EXPLORATION = 11
TEMPERATURE_SCHEDULE = 12  #: four entries as well
UCB_C = 16
N_STEPS = 17  #: n of n-step SARSA and tree backup
TRACE_DECAY = 18  #: lambda of SARSA(lambda) and Q(lambda)
PLANNING_STEPS = 19  #: Dyna-Q's planning updates per real step
EXPLORING_STARTS = 20  #: 1.0: Monte Carlo ES
SIGMA = 21  #: Q(sigma)'s degree of sampling
SETTING_SIZE = 22
#: The entry of each of the methods' own parameters (``spec.params``), by name; 0 in the
#: settings of methods without it.
OWN_PARAM_ENTRIES = {"n": N_STEPS, "lam": TRACE_DECAY, "planning_steps": PLANNING_STEPS,
                     "exploring_starts": EXPLORING_STARTS, "sigma": SIGMA}

MEMORY_SIZE, MODEL_SIZE = 0, 1  #: the entries of a run's ``sizes``
MARKED = (MONTE_CARLO, SARSA_LAMBDA, Q_LAMBDA)  #: the methods that use ``Runs.marks``


def memory_length(setting: np.ndarray, time_limit: int, n_pairs: int) -> int:
    """Entries of the episodic memory a run needs: a whole episode (Monte Carlo), the last
    ``n`` steps (n-step methods), every pair with a trace (SARSA(lambda), Q(lambda)); none
    otherwise."""
    algo = setting[ALGO]
    if algo == MONTE_CARLO:
        return time_limit
    if algo in (N_STEP_SARSA, TREE_BACKUP, Q_SIGMA):
        return int(setting[N_STEPS])
    if algo in (SARSA_LAMBDA, Q_LAMBDA):
        return min(time_limit, n_pairs)
    return 0

LINEAR = float(KINDS.index("linear"))
EXPONENTIAL = float(KINDS.index("exponential"))
VISITS = float(KINDS.index("visits"))

#: Outcome lists longer than this are searched by bisection instead of a linear scan.
LINEAR_SCAN_MAX = 16

#: Helpers of the hot path (sampling, epsilon-greedy, the one-step update) are inlined; the
#: strategies are compiled once each and called from the kernel of every method, without
#: reference counts (see the module's docstring), and inlined in a method's own kernel.
_helper = njit(cache=True, inline="always")
_called = njit(cache=True, _nrt=False)


def _inlined_in_a_method_kernel(call: object, caller: Any, callee: Any) -> bool:
    """numba's inlining rule of the methods' own steps (:data:`_step`): inlined in the episode
    of a method's own kernel (``one_method`` of :func:`_episode_of_method`), called from the
    kernel of every method, whose compile inlining them everywhere would double (for 10% to 20%
    there, measured 2026-12-03)."""
    return caller.func_id.func_qualname.endswith("one_method")


#: The methods' own steps (Double Q's, the n-step methods', the traced ones', Monte Carlo's end
#: of episode, Dyna-Q's planning): inlined or called by :func:`_inlined_in_a_method_kernel`.
_step = njit(cache=True, _nrt=False, inline=_inlined_in_a_method_kernel)


class CompiledMDP(NamedTuple):
    """A :class:`~tabrl.exact.mdp.TabularMDP` as the kernels sample it.

    ``cdf`` holds the cumulative probabilities of each ``(state, action)``'s outcomes, in the CSR
    layout of the MDP (the last entry of every segment exactly 1); ``start_cdf`` those of the
    start states ``start_state`` (the support of the start distribution). ``start_guide[k]`` is
    the first index whose cumulative probability exceeds ``k / len(start_guide)``: a draw ``u``
    starts its search there (Chen and Asau's guide table), at most a step or two from the answer.
    """

    row_of_state: np.ndarray  #: int64[n_states]
    start_state: np.ndarray  #: int64[n_start]
    start_cdf: np.ndarray  #: float64[n_start]
    start_guide: np.ndarray  #: int64[n_start]
    offsets: np.ndarray  #: int64[n_states * n_actions + 1]
    cdf: np.ndarray  #: float64[n_outcomes]
    next_state: np.ndarray  #: int64[n_outcomes]
    reward: np.ndarray  #: float64[n_outcomes]
    terminal: np.ndarray  #: bool[n_outcomes]


class ObservedOutcomes(NamedTuple):
    """What Dyna-Q can observe of an MDP: the distinct ``(reward, next row, terminal)`` of each
    ``(row, action)`` pair (CSR by ``pair = row * n_actions + action``), and the entry there of
    every outcome of the MDP (``slot``). Empty where no run of a call is Dyna-Q.
    """

    offsets: np.ndarray  #: int64[n_rows * n_actions + 1]
    reward: np.ndarray  #: float64[n_observed]
    next_row: np.ndarray  #: int64[n_observed]
    terminal: np.ndarray  #: bool[n_observed]
    slot: np.ndarray  #: int64[n_outcomes]


class Runs(NamedTuple):
    """The state and the logs of ``n_runs`` independent runs; every array starts with the run.

    A pair is ``row * n_actions + action``. Arrays that no run of a call needs have length 0.
    """

    settings: np.ndarray  #: float64[n_runs, SETTING_SIZE]
    q: np.ndarray  #: float64[n_runs, n_rows, n_actions]
    visits: np.ndarray  #: int64[n_runs, n_rows, n_actions]
    rng: np.ndarray  #: uint64[n_runs, 4]: the generators' states
    epsilon: np.ndarray  #: float64[n_runs]: epsilon of the next episode
    temperature: np.ndarray  #: float64[n_runs]: softmax temperature of the next episode
    half_difference: np.ndarray  #: float64[n_runs, n_rows, n_actions]: Double Q's (Q_A - Q_B) / 2
    marks: np.ndarray  #: int64[n_runs, n_pairs]: per pair, 0 or an index + 1 into the memory
    memory_pairs: np.ndarray  #: int64[n_runs, memory_length]
    memory_values: np.ndarray  #: float64[n_runs, memory_length]: rewards, or traces
    model_counts: np.ndarray  #: int64[n_runs, n_observed]
    model_pairs: np.ndarray  #: int64[n_runs, n_pairs]: Dyna-Q's pairs, in order of first sight
    sizes: np.ndarray  #: int64[n_runs, 2]: the entries in use of the memory and of the model
    allowed: np.ndarray  #: bool[n_runs, n_rows, n_actions]: the action masks (no rows: none)
    returns: np.ndarray  #: float64[n_runs, n_episodes]
    lengths: np.ndarray  #: int64[n_runs, n_episodes]
    td_errors: np.ndarray  #: float64[n_runs, n_episodes]: mean absolute TD error
    epsilons: np.ndarray  #: float64[n_runs, n_episodes]: epsilon used


class Memory(NamedTuple):
    """What the methods other than Q-learning read and write beside ``q`` and ``visits``: one
    run's arrays of :class:`Runs`, a scratch row for UCB's scores and softmax's weights, views of
    its tables by pair, the MDP's observed outcomes."""

    half_difference: np.ndarray
    marks: np.ndarray
    pairs: np.ndarray  #: ``Runs.memory_pairs``
    values: np.ndarray  #: ``Runs.memory_values``
    model_counts: np.ndarray
    model_pairs: np.ndarray
    sizes: np.ndarray
    scores: np.ndarray  #: float64[1, n_actions]
    flat_q: np.ndarray  #: the run's ``q`` flattened (a view): updates by pair index
    flat_visits: np.ndarray  #: its ``visits`` flattened
    observed: ObservedOutcomes


# --- the random generator -------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def seed_state(seed: int) -> np.ndarray:
    """The four-word state of a generator, expanded from ``seed`` by splitmix64 (Python side)."""
    words, x = [], seed & _MASK64
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append(z ^ (z >> 31))
    return np.array(words, dtype=np.uint64)


@_helper
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@_helper
def next_u64(s):
    """The next 64-bit output of xoshiro256** in state ``s``, and the state after it."""
    s0, s1, s2, s3 = s
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    return result, (s0, s1, s2, _rotl(s3, 45))


@_helper
def _uniform(s):
    """A float64 uniform on [0, 1) from the top 53 bits, and the next state."""
    x, s = next_u64(s)
    return (x >> np.uint64(11)) * (1.0 / 9007199254740992.0), s


@_helper
def _below(s, n):
    """An integer uniform on ``0..n-1``: ``floor(u * n)``, biased by at most ``n / 2**53``."""
    u, s = _uniform(s)
    return int(u * n), s


# --- sampling -------------------------------------------------------------------------------------
@_helper
def _sample_outcome(offsets, cdf, pair, s):
    """The index of an outcome of the pair ``state * n_actions + action``.

    A single outcome draws nothing. A few outcomes are counted without branching (the index is
    the number of cumulative probabilities at or below ``u``); many are bisected.
    """
    lo, hi = offsets[pair], offsets[pair + 1]
    if hi - lo == 1:
        return lo, s
    u, s = _uniform(s)
    if hi - lo > LINEAR_SCAN_MAX:
        return lo + np.searchsorted(cdf[lo:hi], u, side="right"), s
    i = lo
    for j in range(lo, hi - 1):
        i += u >= cdf[j]
    return i, s


@_helper
def _sample_start(model, s):
    """A start state: the guide table jumps close to the answer, a short scan finds it."""
    u, s = _uniform(s)
    i = model.start_guide[int(u * model.start_guide.size)]
    while u >= model.start_cdf[i]:
        i += 1
    return model.start_state[i], s


@njit(cache=True)
def sample_outcomes(model, state, action, n_actions, n, rng):
    """``n`` outcome indices of ``(state, action)``, or start states for ``state < 0``.

    The entry point that tests the samplers against the environment; ``rng`` is advanced.
    """
    out = np.empty(n, dtype=np.int64)
    s = to_fixed_tuple(rng, 4)
    for i in range(n):
        if state < 0:
            out[i], s = _sample_start(model, s)
        else:
            out[i], s = _sample_outcome(model.offsets, model.cdf, state * n_actions + action, s)
    rng[:] = s
    return out


# --- acting ---------------------------------------------------------------------------------------
@_helper
def _ok(allowed, row, a):
    """Whether action ``a`` is allowed at ``row``: always without a mask (``allowed`` None,
    pruned at compile time, or a table of no rows)."""
    if allowed is None:
        return True
    return allowed.shape[0] == 0 or allowed[row, a]


@_helper
def _first_allowed(allowed, row, n_actions):
    """The lowest allowed action at ``row``: 0 without a mask, a constant after pruning, so
    that the loops below compile without a mask to what they were before masks (measured:
    starting them at ``-inf`` instead slowed the tutorial's loop by a fifth to a third)."""
    if allowed is None:
        return 0
    if allowed.shape[0] == 0:
        return 0
    for a in range(n_actions):
        if allowed[row, a]:
            return a
    return 0  # not reached: every mask allows an action (``tabrl.masks.checked``)


@_helper
def _max_value(values, row, allowed):
    """``max_a values[row, a]`` over the allowed actions."""
    first = _first_allowed(allowed, row, values.shape[1])
    best = values[row, first]
    for a in range(first + 1, values.shape[1]):
        if _ok(allowed, row, a):
            best = max(best, values[row, a])
    return best


@_helper
def _first_greedy(values, row, allowed):
    """The lowest allowed action of highest value in ``values[row]``: the greedy policy that is
    evaluated and saved (``QTable.greedy_policy``), played whenever exploration is off."""
    chosen = _first_allowed(allowed, row, values.shape[1])
    best = values[row, chosen]
    for a in range(chosen + 1, values.shape[1]):
        if _ok(allowed, row, a) and values[row, a] > best:
            best, chosen = values[row, a], a
    return chosen


@_helper
def _ties(values, row, allowed, best):
    """How many allowed actions of ``values[row]`` reach ``best``, counted without branching on
    the values."""
    ties = 0
    for a in range(values.shape[1]):
        ties += _ok(allowed, row, a) and values[row, a] == best
    return ties


@_helper
def _greedy(values, row, allowed, s):
    """An allowed action of highest value in ``values[row]``, uniformly at random among equals.

    The maximum, its ties, then the action: passes that compile without branches on the values
    (one pass that branches on them mispredicts at every new maximum); a single best action is
    the first greedy one, a draw picks among several."""
    best = _max_value(values, row, allowed)
    ties = _ties(values, row, allowed, best)
    if ties <= 1:  # (none: the values hold NaN, a training about to be stopped)
        return _first_greedy(values, row, allowed), s
    pick, s = _below(s, ties)
    for a in range(values.shape[1]):
        if _ok(allowed, row, a) and values[row, a] == best:
            if pick == 0:
                return a, s
            pick -= 1
    return 0, s


@_helper
def _uniform_action(allowed, row, n_actions, s):
    """An action uniform over the allowed ones: the ``k``-th of them, ``k`` drawn by
    :func:`_below` (as ``EpsilonGreedy.action`` draws an index into its list of them)."""
    if allowed is None:
        return _below(s, n_actions)
    if allowed.shape[0] == 0:
        return _below(s, n_actions)
    n = 0
    for a in range(n_actions):
        n += allowed[row, a]
    k, s = _below(s, n)
    for a in range(n_actions):
        if allowed[row, a]:
            if k == 0:
                return a, s
            k -= 1
    return n_actions - 1, s  # not reached


@_helper
def _greedy_mean(values, row, q, q_row, allowed):
    """The mean of ``q[q_row, a]`` over the allowed actions of highest ``values[row, a]``: the
    expectation of ``q`` under a greedy choice with random tie-breaking."""
    best, total, ties = _max_value(values, row, allowed), 0.0, 0
    for a in range(values.shape[1]):
        if _ok(allowed, row, a) and values[row, a] == best:
            total += q[q_row, a]
            ties += 1
    return total / ties


@_helper
def _epsilon_greedy(q, row, allowed, epsilon, s):
    """A uniformly random allowed action with probability ``epsilon``, else a greedy one (ties
    at random); with ``epsilon == 0`` the greedy policy itself, drawing nothing."""
    if epsilon == 0.0:
        return _first_greedy(q, row, allowed), s
    u, s = _uniform(s)
    if u < epsilon:
        return _uniform_action(allowed, row, q.shape[1], s)
    return _greedy(q, row, allowed, s)


@_helper
def _softmax(q, row, allowed, temperature, weights, s):
    """An action drawn with probability proportional to ``exp(q[row, a] / temperature)``
    (0 for a masked action); ``weights`` (a scratch row) keeps the running sum of the weights.

    The weights are shifted by the row's maximum (as ``Softmax.probabilities``). The draw is
    the number of running sums at or below ``u`` times their total, counted without branching
    (the drawn action is random: a branch on it would mispredict).
    """
    best, scale, total = _max_value(q, row, allowed), 1.0 / temperature, 0.0
    for a in range(q.shape[1]):
        if _ok(allowed, row, a):
            total += math.exp((q[row, a] - best) * scale)
        weights[0, a] = total
    u, s = _uniform(s)
    x, chosen = u * total, 0
    for a in range(q.shape[1] - 1):
        chosen += x >= weights[0, a]
    return chosen, s


@_helper
def _softmax_value(q, row, allowed, temperature):
    """``sum_a pi(a|s) q[row, a]`` under the softmax policy."""
    best, weighted, total = _max_value(q, row, allowed), 0.0, 0.0
    for a in range(q.shape[1]):
        if _ok(allowed, row, a):
            w = math.exp((q[row, a] - best) / temperature)
            weighted += w * q[row, a]
            total += w
    return weighted / total


@_helper
def _ucb_scores(q, visits, row, allowed, c, scores):
    """``scores[0, a] = q + c sqrt(ln N(s) / N(s, a))``, infinite for an action never tried,
    ``-inf`` for a masked one (so that the scores need no mask)."""
    n_total = 0
    for a in range(q.shape[1]):
        n_total += visits[row, a]
    log_total = math.log(max(n_total, 1))
    for a in range(q.shape[1]):
        n = visits[row, a]
        if not _ok(allowed, row, a):
            scores[0, a] = -math.inf
        else:
            scores[0, a] = math.inf if n == 0 else q[row, a] + c * math.sqrt(log_total / n)


@_helper
def _in_state(setting, at, value, visits, row):
    """The value of the schedule at ``setting[at]`` in the state of ``row``: ``value`` (the
    episode's), or for the visits kind ``start / (n(s) + 1) ** rate`` with ``n(s)`` the updates
    of the state's pairs, between ``end`` and ``value`` (``Schedule.in_state``)."""
    kind, start, end, rate = _schedule(setting, at)
    if kind != VISITS:
        return value
    n = 0
    for a in range(visits.shape[1]):
        n += visits[row, a]
    return min(value, max(end, start / (n + 1.0) ** rate))


# The behaviour policies: each strategy's action and its state value ``sum_a pi(a|s) q[row, a]``
# (``TabularAgent.policy_value``), all with one signature (``scores`` is a scratch row). With
# ``epsilon == 0`` exploration is off, for every strategy: the greedy policy plays, and the value
# is the greedy one.
@_helper
def _act_epsilon_greedy(setting, q, visits, allowed, row, epsilon, temperature, scores, s):
    """Epsilon-greedy's action, with the state's epsilon (:func:`_in_state`)."""
    if epsilon == 0.0:
        return _first_greedy(q, row, allowed), s
    return _epsilon_greedy(q, row, allowed,
                           _in_state(setting, EPSILON_SCHEDULE, epsilon, visits, row), s)


@_helper
def _act_softmax(setting, q, visits, allowed, row, epsilon, temperature, scores, s):
    """Softmax's action, with the state's temperature; its weights kept in ``scores``."""
    if epsilon == 0.0:
        return _first_greedy(q, row, allowed), s
    return _softmax(q, row, allowed,
                    _in_state(setting, TEMPERATURE_SCHEDULE, temperature, visits, row), scores, s)


@_helper
def _act_ucb(setting, q, visits, allowed, row, epsilon, temperature, scores, s):
    """UCB's action: the greedy action of its scores, written to ``scores``."""
    if epsilon == 0.0:
        return _first_greedy(q, row, allowed), s
    _ucb_scores(q, visits, row, allowed, setting[UCB_C], scores)
    return _greedy(scores, 0, None, s)


@_helper
def _value_epsilon_greedy(setting, q, visits, allowed, row, epsilon, temperature, scores):
    """The state's value under epsilon-greedy, with the state's epsilon."""
    if epsilon == 0.0:
        return _max_value(q, row, allowed)
    return _epsilon_greedy_value(q, row, allowed,
                                 _in_state(setting, EPSILON_SCHEDULE, epsilon, visits, row))


@_helper
def _value_softmax(setting, q, visits, allowed, row, epsilon, temperature, scores):
    """The state's value under softmax, with the state's temperature."""
    if epsilon == 0.0:
        return _max_value(q, row, allowed)
    return _softmax_value(
        q, row, allowed, _in_state(setting, TEMPERATURE_SCHEDULE, temperature, visits, row))


@_helper
def _value_ucb(setting, q, visits, allowed, row, epsilon, temperature, scores):
    """The state's value under UCB: the mean of ``q`` over its scores' greedy actions."""
    if epsilon == 0.0:
        return _max_value(q, row, allowed)
    _ucb_scores(q, visits, row, allowed, setting[UCB_C], scores)
    return _greedy_mean(scores, 0, q, row, None)


@_called
def _explore(setting, q, visits, allowed, row, epsilon, temperature, scores, s):
    """The behaviour policy's action at ``row``: a dispatch on the run's exploration code."""
    kind = setting[EXPLORATION]
    if kind == SOFTMAX:
        return _act_softmax(setting, q, visits, allowed, row, epsilon, temperature, scores, s)
    if kind == UCB:
        return _act_ucb(setting, q, visits, allowed, row, epsilon, temperature, scores, s)
    return _act_epsilon_greedy(setting, q, visits, allowed, row, epsilon, temperature, scores, s)


@_called
def _policy_value(setting, q, visits, allowed, row, epsilon, temperature, scores):
    """The state's value under the behaviour policy: a dispatch on the run's exploration code."""
    kind = setting[EXPLORATION]
    if kind == SOFTMAX:
        return _value_softmax(setting, q, visits, allowed, row, epsilon, temperature, scores)
    if kind == UCB:
        return _value_ucb(setting, q, visits, allowed, row, epsilon, temperature, scores)
    return _value_epsilon_greedy(setting, q, visits, allowed, row, epsilon, temperature, scores)


@_helper
def _epsilon_greedy_value(q, row, allowed, epsilon):
    """``sum_a pi(a|s) q[row, a]`` under the epsilon-greedy policy (random tie-breaking)."""
    uniform, n = 0.0, 0
    for a in range(q.shape[1]):
        if _ok(allowed, row, a):
            uniform += q[row, a]
            n += 1
    return epsilon * uniform / n + (1.0 - epsilon) * _greedy_mean(q, row, q, row, allowed)


@_helper
def _epsilon_greedy_expectation(q, row, allowed, action, epsilon):
    """``pi(action|s)`` and ``sum_a pi(a|s) q[row, a]`` under the epsilon-greedy policy, in one
    pass over the row: the numbers :func:`_action_probability` and :func:`_policy_value` give
    (same operations, same order), for Q(sigma)'s backups, which need both at every step."""
    best = _max_value(q, row, allowed)
    uniform, n, greedy, ties = 0.0, 0, 0.0, 0
    for a in range(q.shape[1]):
        if _ok(allowed, row, a):
            uniform += q[row, a]
            n += 1
            if q[row, a] == best:
                greedy += q[row, a]
                ties += 1
    share = 1.0 / ties if _ok(allowed, row, action) and q[row, action] == best else 0.0
    return (epsilon / n + (1.0 - epsilon) * share,
            epsilon * uniform / n + (1.0 - epsilon) * (greedy / ties))


@_helper
def _greedy_share(values, row, allowed, action, best):
    """The probability of ``action`` under a greedy choice of ``values[row]`` (ties shared),
    given ``best``, their maximum (:func:`_max_value`)."""
    ties = _ties(values, row, allowed, best)
    return 1.0 / ties if _ok(allowed, row, action) and values[row, action] == best else 0.0


@_called
def _action_probability(setting, q, visits, allowed, row, action, epsilon, temperature, scores):
    """``pi(action|s)`` under the behaviour policy (``TabularAgent.probabilities``): with
    exploration off (``epsilon == 0``) 1 for the greedy policy's action, 0 for the others;
    0 for a masked action."""
    if not _ok(allowed, row, action):
        return 0.0
    if epsilon == 0.0:
        return 1.0 if action == _first_greedy(q, row, allowed) else 0.0
    kind = setting[EXPLORATION]
    if kind == SOFTMAX:
        t = _in_state(setting, TEMPERATURE_SCHEDULE, temperature, visits, row)
        best, total = _max_value(q, row, allowed), 0.0
        for a in range(q.shape[1]):
            if _ok(allowed, row, a):
                total += math.exp((q[row, a] - best) / t)
        return math.exp((q[row, action] - best) / t) / total
    if kind == UCB:
        _ucb_scores(q, visits, row, allowed, setting[UCB_C], scores)
        return _greedy_share(scores, 0, None, action, _max_value(scores, 0, None))
    epsilon = _in_state(setting, EPSILON_SCHEDULE, epsilon, visits, row)
    n = 0
    for a in range(q.shape[1]):
        n += _ok(allowed, row, a)
    return epsilon / n + (1.0 - epsilon) * _greedy_share(q, row, allowed, action,
                                                         _max_value(q, row, allowed))


# --- learning: the update rules -------------------------------------------------------------------
@_helper
def _schedule(setting, at):
    """The schedule ``(kind, start, end, rate)`` stored at ``setting[at:at + 4]``."""
    return setting[at], setting[at + 1], setting[at + 2], setting[at + 3]


@_helper
def _step_size(setting, n_visits):
    """The learning rate: this episode's, or ``start / n ** rate`` (with a floor) by visit count."""
    kind, start, end, rate = _schedule(setting, LR_SCHEDULE)
    if kind == VISITS:
        return max(end, start / max(n_visits, 1) ** rate)
    return setting[LEARNING_RATE]


@_helper
def _update(setting, q, visits, row, action, target):
    """Count a visit and move ``q[row, action]`` a step towards ``target``; return the error."""
    error = target - q[row, action]
    visits[row, action] += 1
    q[row, action] += _step_size(setting, visits[row, action]) * error
    return error


@_helper
def _update_pair(setting, flat_q, flat_visits, pair, target):
    """:func:`_update` of the pair ``row * n_actions + action`` in the flattened tables
    (``Memory.flat_q``: no division back to the row and the action)."""
    error = target - flat_q[pair]
    flat_visits[pair] += 1
    flat_q[pair] += _step_size(setting, flat_visits[pair]) * error
    return error


@_helper
def _q_target(setting, q, allowed, reward, terminal, next_row):
    """Q-learning's target ``r + gamma max_a' q(s', a')`` (``a'`` allowed), or ``r`` after a
    terminal step."""
    if terminal:
        return reward
    return reward + setting[DISCOUNT] * _max_value(q, next_row, allowed)


@_step
def _double_q(setting, q, half, visits, allowed, row, action, reward, terminal, next_row, s):
    """Double Q-learning on the mean ``q`` and the half difference ``half`` (``Q_A = q + half``).

    A coin chooses the learner (+1: A, -1: B); it picks the best next action (the first of
    equals), the other estimate values it, and both ``q`` and ``half`` move half the step.
    """
    u, s = _uniform(s)
    sign = 1.0 if u < 0.5 else -1.0
    target = reward
    if not terminal:
        best = _first_allowed(allowed, next_row, q.shape[1])
        best_value = q[next_row, best] + sign * half[next_row, best]
        for a in range(best + 1, q.shape[1]):
            value = q[next_row, a] + sign * half[next_row, a]
            if _ok(allowed, next_row, a) and value > best_value:
                best, best_value = a, value
        target += setting[DISCOUNT] * (q[next_row, best] - sign * half[next_row, best])
    error = target - (q[row, action] + sign * half[row, action])
    visits[row, action] += 1
    half_step = _step_size(setting, visits[row, action]) * error / 2
    q[row, action] += half_step
    half[row, action] += sign * half_step
    return error, s


@_step
def _monte_carlo_end(setting, flat_q, flat_visits, marks, pairs, rewards, n_steps, tail):
    """First-visit Monte Carlo updates of an episode of ``n_steps`` steps; the sum of |errors|.

    Backwards from ``G = tail``: ``G = r + gamma G`` and, at the first visit of a pair, an update
    towards ``G``. ``marks`` holds each pair's first step + 1 meanwhile and is cleared after.
    """
    for t in range(n_steps):
        if marks[pairs[t]] == 0:
            marks[pairs[t]] = t + 1
    g, total = tail, 0.0
    for t in range(n_steps - 1, -1, -1):
        g = rewards[t] + setting[DISCOUNT] * g
        if marks[pairs[t]] == t + 1:
            total += abs(_update_pair(setting, flat_q, flat_visits, pairs[t], g))
    for t in range(n_steps):
        marks[pairs[t]] = 0
    return total


@_helper
def _backed_up(setting, q, visits, allowed, pair, g, epsilon, temperature, scores):
    """The value of the pair's state given ``g``, the return of the pair's action there, as the
    agent's ``backed_up``: tree backup's greedy tree, ``(1 - p) max_a q + p g`` with ``p`` the
    action's greedy share; Q(sigma)'s mix of ``g`` and the behaviour policy's tree (its two
    numbers from one pass over the row when exploring epsilon-greedily); else ``g``."""
    algo = setting[ALGO]
    if algo != TREE_BACKUP and algo != Q_SIGMA:
        return g
    row, action = pair // q.shape[1], pair % q.shape[1]
    if algo == TREE_BACKUP:
        best = _max_value(q, row, allowed)
        greedy = _greedy_share(q, row, allowed, action, best)
        return (1.0 - greedy) * best + greedy * g
    if epsilon != 0.0 and setting[EXPLORATION] == EPSILON_GREEDY:
        played, value = _epsilon_greedy_expectation(
            q, row, allowed, action, _in_state(setting, EPSILON_SCHEDULE, epsilon, visits, row))
    else:
        played = _action_probability(setting, q, visits, allowed, row, action, epsilon,
                                     temperature, scores)
        value = _policy_value(setting, q, visits, allowed, row, epsilon, temperature, scores)
    expected = value + played * (g - q[row, action])
    return setting[SIGMA] * g + (1.0 - setting[SIGMA]) * expected


@_helper
def _multi_step_oldest(setting, q, visits, flat_q, flat_visits, allowed, pairs, rewards, n, last,
                       count, tail, epsilon, temperature, scores):
    """Update the oldest of the ``count`` steps buffered up to step ``last`` (a ring of ``n``).

    Its target is built backwards from ``tail``: ``G = r + gamma G`` at every step, and at every
    step after the oldest, :func:`_backed_up` of the action played there
    (``MultiStepAgent.complete_oldest``). The ring's index steps back without a division.
    """
    g, at = tail, last % n
    for back in range(count):
        g = rewards[at] + setting[DISCOUNT] * g
        if back == count - 1:
            break
        g = _backed_up(setting, q, visits, allowed, pairs[at], g, epsilon, temperature, scores)
        at = at - 1 if at > 0 else n - 1
    return _update_pair(setting, flat_q, flat_visits, pairs[at], g)


@_step
def _multi_step(setting, q, visits, flat_q, flat_visits, allowed, pairs, rewards, t, pair, reward,
                ends, tail, epsilon, temperature, scores):
    """An n-step method's step ``t`` (``MultiStepAgent.step``): buffer it, then complete the
    oldest step (all of them, at the end)."""
    n = int(setting[N_STEPS])
    pairs[t % n], rewards[t % n] = pair, reward
    count = min(t + 1, n)
    if ends:
        total = 0.0
        for remaining in range(count, 0, -1):
            total += abs(_multi_step_oldest(setting, q, visits, flat_q, flat_visits, allowed, pairs,
                         rewards, n, t, remaining, tail, epsilon, temperature, scores))
        return total
    if count == n:
        return _multi_step_oldest(setting, q, visits, flat_q, flat_visits, allowed, pairs, rewards,
                                  n, t, n, tail, epsilon, temperature, scores)
    return 0.0


@_step
def _traced(setting, q, visits, flat_q, marks, pairs, traces, sizes, row, action, target, decay,
            ends):
    """SARSA(lambda) or Q(lambda): replacing traces over the pairs played since they were last
    cleared (in ``memory``).

    ``e(s, a) = 1``; every pair with a trace moves ``lr * delta * e``; traces then decay by
    ``decay``, or are cleared when the episode ends (or ``decay`` is 0: Q(lambda)'s cut).
    """
    error = target - q[row, action]
    visits[row, action] += 1
    pair, size = row * q.shape[1] + action, sizes[MEMORY_SIZE]
    if marks[pair] == 0:
        pairs[size], marks[pair] = pair, size + 1
        size += 1
    traces[marks[pair] - 1] = 1.0
    step = _step_size(setting, visits[row, action]) * error
    clear = ends or decay == 0.0
    for j in range(size):
        flat_q[pairs[j]] += step * traces[j]
        if clear:
            traces[j], marks[pairs[j]] = 0.0, 0
        else:
            traces[j] *= decay
    sizes[MEMORY_SIZE] = 0 if clear else size
    return error


@_step
def _dyna_q(observed, setting, q, flat_q, flat_visits, allowed, counts, seen, sizes, pair, k, s):
    """Dyna-Q after its real step: count outcome ``k`` of ``pair``, then plan.

    A pair seen for the first time joins the seen list. Each planning update draws a pair
    uniformly among those seen and one of its outcomes in proportion to its count (the draw
    lands on a counted outcome: ``u * total < total`` for whole numbers), then learns from it as
    Q-learning does. The outcome is found without branching, as :func:`_sample_outcome` finds
    one: its index is the number of running counts at or below ``u * total``.
    """
    offsets = observed.offsets
    new = True
    for m in range(offsets[pair], offsets[pair + 1]):
        new = new and counts[m] == 0
    if new:
        seen[sizes[MODEL_SIZE]] = pair
        sizes[MODEL_SIZE] += 1
    counts[observed.slot[k]] += 1
    for _ in range(int(setting[PLANNING_STEPS])):
        j, s = _below(s, sizes[MODEL_SIZE])
        planned = seen[j]
        total = 0
        for m in range(offsets[planned], offsets[planned + 1]):
            total += counts[m]
        u, s = _uniform(s)
        x, running, m = u * total, 0, offsets[planned]
        for outcome in range(offsets[planned], offsets[planned + 1] - 1):
            running += counts[outcome]
            m += x >= running
        target = _q_target(setting, q, allowed, observed.reward[m], observed.terminal[m],
                           observed.next_row[m])
        _update_pair(setting, flat_q, flat_visits, planned, target)
    return s


# --- learning: one step of each method ------------------------------------------------------------
# Every method's step has one signature: the behaviour policy's ``act`` (as :func:`_explore`)
# and ``value`` (as :func:`_policy_value`), the run's setting, tables and memory, epsilon and
# temperature, the step ``(row, action, reward, terminal, truncated, next_row)``, the outcome's
# index ``k``, the step's number ``t`` in its episode, and the generator's state. It does what its
# agent's ``step`` does and returns the TD error (for methods that complete several updates at
# once, the sum of their magnitudes), the next action (the SARSA family draws it here, before
# updating; -1: the behaviour policy chooses it at the next step) and the generator's state.
@_helper
def _learn_q_learning(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                      action, reward, terminal, truncated, next_row, k, t, s):
    """Q-learning (``TabularAgent.step`` of ``QLearningAgent``)."""
    target = _q_target(setting, q, allowed, reward, terminal, next_row)
    return _update(setting, q, visits, row, action, target), -1, s


@_helper
def _learn_expected_sarsa(act, value, setting, q, visits, memory, allowed, epsilon, temperature,
                          row, action, reward, terminal, truncated, next_row, k, t, s):
    """Expected SARSA (``TabularAgent.step`` of ``ExpectedSarsaAgent``)."""
    target = reward
    if not terminal:
        target += setting[DISCOUNT] * value(setting, q, visits, allowed, next_row,
                                            epsilon, temperature, memory.scores)
    return _update(setting, q, visits, row, action, target), -1, s


@_helper
def _played_next(act, setting, q, visits, memory, allowed, epsilon, temperature, terminal, next_row,
                 s):
    """The SARSA family's next action, drawn by ``act`` (-1 after a terminal step), and its
    value (``SarsaAgent.bootstrap``)."""
    if terminal:
        return -1, 0.0, s
    next_action, s = act(setting, q, visits, allowed, next_row, epsilon, temperature,
                         memory.scores, s)
    return next_action, q[next_row, next_action], s


@_helper
def _learn_sarsa(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row, action,
                 reward, terminal, truncated, next_row, k, t, s):
    """SARSA (``TabularAgent.step`` of ``SarsaAgent``)."""
    next_action, future, s = _played_next(act, setting, q, visits, memory, allowed, epsilon,
                                          temperature, terminal, next_row, s)
    target = reward + setting[DISCOUNT] * future
    return _update(setting, q, visits, row, action, target), next_action, s


@_helper
def _learn_n_step_sarsa(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                        action, reward, terminal, truncated, next_row, k, t, s):
    """n-step SARSA (``MultiStepAgent.step`` of ``NStepSarsaAgent``)."""
    next_action, future, s = _played_next(act, setting, q, visits, memory, allowed, epsilon,
                                          temperature, terminal, next_row, s)
    error = _multi_step(setting, q, visits, memory.flat_q, memory.flat_visits, allowed,
                        memory.pairs, memory.values, t, row * q.shape[1] + action, reward,
                        terminal or truncated, future, epsilon, temperature, memory.scores)
    return error, next_action, s


@_helper
def _learn_q_sigma(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                   action, reward, terminal, truncated, next_row, k, t, s):
    """n-step Q(sigma) (``MultiStepAgent.step`` of ``QSigmaAgent``)."""
    next_action, future, s = _played_next(act, setting, q, visits, memory, allowed, epsilon,
                                          temperature, terminal, next_row, s)
    tail = 0.0
    if not terminal:
        tail = setting[SIGMA] * future + (1.0 - setting[SIGMA]) * value(
            setting, q, visits, allowed, next_row, epsilon, temperature, memory.scores)
    error = _multi_step(setting, q, visits, memory.flat_q, memory.flat_visits, allowed,
                        memory.pairs, memory.values, t, row * q.shape[1] + action, reward,
                        terminal or truncated, tail, epsilon, temperature, memory.scores)
    return error, next_action, s


@_helper
def _learn_tree_backup(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                       action, reward, terminal, truncated, next_row, k, t, s):
    """n-step Tree Backup (``MultiStepAgent.step`` of ``TreeBackupAgent``)."""
    tail = 0.0 if terminal else _max_value(q, next_row, allowed)
    error = _multi_step(setting, q, visits, memory.flat_q, memory.flat_visits, allowed,
                        memory.pairs, memory.values, t, row * q.shape[1] + action, reward,
                        terminal or truncated, tail, epsilon, temperature, memory.scores)
    return error, -1, s


@_helper
def _learn_sarsa_lambda(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                        action, reward, terminal, truncated, next_row, k, t, s):
    """SARSA(lambda) (``SarsaLambdaAgent.step``)."""
    next_action, future, s = _played_next(act, setting, q, visits, memory, allowed, epsilon,
                                          temperature, terminal, next_row, s)
    error = _traced(setting, q, visits, memory.flat_q, memory.marks, memory.pairs, memory.values,
                    memory.sizes, row, action, reward + setting[DISCOUNT] * future,
                    setting[DISCOUNT] * setting[TRACE_DECAY], terminal or truncated)
    return error, next_action, s


@_helper
def _learn_q_lambda(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                    action, reward, terminal, truncated, next_row, k, t, s):
    """Watkins's Q(lambda) (``SarsaLambdaAgent.step`` of ``QLambdaAgent``): traces are cut
    after an exploratory action."""
    next_action, future, s = _played_next(act, setting, q, visits, memory, allowed, epsilon,
                                          temperature, terminal, next_row, s)
    best = 0.0 if terminal else _max_value(q, next_row, allowed)
    decay = setting[DISCOUNT] * setting[TRACE_DECAY] if future == best else 0.0
    error = _traced(setting, q, visits, memory.flat_q, memory.marks, memory.pairs, memory.values,
                    memory.sizes, row, action, reward + setting[DISCOUNT] * best, decay,
                    terminal or truncated)
    return error, next_action, s


@_helper
def _learn_double_q(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                    action, reward, terminal, truncated, next_row, k, t, s):
    """Double Q-learning (``DoubleQLearningAgent.step``)."""
    error, s = _double_q(setting, q, memory.half_difference, visits, allowed, row,
                         action, reward, terminal, next_row, s)
    return error, -1, s


@_helper
def _learn_monte_carlo(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                       action, reward, terminal, truncated, next_row, k, t, s):
    """First-visit Monte Carlo (``MonteCarloAgent.step``): buffer the step; learn at the end."""
    memory.pairs[t], memory.values[t] = row * q.shape[1] + action, reward
    if not (terminal or truncated):
        return 0.0, -1, s
    tail = 0.0 if terminal else value(setting, q, visits, allowed, next_row, epsilon,
                                      temperature, memory.scores)
    return _monte_carlo_end(setting, memory.flat_q, memory.flat_visits, memory.marks, memory.pairs,
                            memory.values, t + 1, tail), -1, s


@_helper
def _learn_dyna_q(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row,
                  action, reward, terminal, truncated, next_row, k, t, s):
    """Dyna-Q (``DynaQAgent.step``): Q-learning's step, then the model and its planning."""
    error, _, s = _learn_q_learning(act, value, setting, q, visits, memory, allowed, epsilon,
                                    temperature, row, action, reward, terminal, truncated, next_row,
                                    k, t, s)
    s = _dyna_q(memory.observed, setting, q, memory.flat_q, memory.flat_visits, allowed,
                memory.model_counts, memory.model_pairs, memory.sizes, row * q.shape[1] + action, k,
                s)
    return error, -1, s


@_helper
def _learn(act, value, setting, q, visits, memory, allowed, epsilon, temperature, row, action,
           reward, terminal, truncated, next_row, k, t, s):
    """The step of the run's method: a dispatch on its algorithm code."""
    algo = setting[ALGO]
    if algo == Q_LEARNING:
        return _learn_q_learning(act, value, setting, q, visits, memory, allowed, epsilon,
                                 temperature, row, action, reward, terminal, truncated, next_row, k,
                                 t, s)
    if algo == SARSA:
        return _learn_sarsa(act, value, setting, q, visits, memory, allowed, epsilon, temperature,
                            row, action, reward, terminal, truncated, next_row, k, t, s)
    if algo == EXPECTED_SARSA:
        return _learn_expected_sarsa(act, value, setting, q, visits, memory, allowed, epsilon,
                                     temperature, row, action, reward, terminal, truncated,
                                     next_row, k, t, s)
    if algo == DOUBLE_Q_LEARNING:
        return _learn_double_q(act, value, setting, q, visits, memory, allowed, epsilon,
                               temperature, row, action, reward, terminal, truncated, next_row, k,
                               t, s)
    if algo == MONTE_CARLO:
        return _learn_monte_carlo(act, value, setting, q, visits, memory, allowed, epsilon,
                                  temperature, row, action, reward, terminal, truncated, next_row,
                                  k, t, s)
    if algo == N_STEP_SARSA:
        return _learn_n_step_sarsa(act, value, setting, q, visits, memory, allowed, epsilon,
                                   temperature, row, action, reward, terminal, truncated, next_row,
                                   k, t, s)
    if algo == SARSA_LAMBDA:
        return _learn_sarsa_lambda(act, value, setting, q, visits, memory, allowed, epsilon,
                                   temperature, row, action, reward, terminal, truncated, next_row,
                                   k, t, s)
    if algo == Q_LAMBDA:
        return _learn_q_lambda(act, value, setting, q, visits, memory, allowed, epsilon,
                               temperature, row, action, reward, terminal, truncated, next_row, k,
                               t, s)
    if algo == DYNA_Q:
        return _learn_dyna_q(act, value, setting, q, visits, memory, allowed, epsilon, temperature,
                             row, action, reward, terminal, truncated, next_row, k, t, s)
    if algo == TREE_BACKUP:
        return _learn_tree_backup(act, value, setting, q, visits, memory, allowed, epsilon,
                                  temperature, row, action, reward, terminal, truncated, next_row,
                                  k, t, s)
    if algo == Q_SIGMA:
        return _learn_q_sigma(act, value, setting, q, visits, memory, allowed, epsilon, temperature,
                              row, action, reward, terminal, truncated, next_row, k, t, s)
    return 0.0, -1, s  # not reached: every setting has a method's code


# --- episodes and runs ----------------------------------------------------------------------------
@_helper
def _next_value(setting, at, value):
    """The value one episode later along the schedule at ``setting[at]`` (``Schedule.next``)."""
    kind, _, end, rate = _schedule(setting, at)
    if kind == LINEAR:
        return max(end, value - rate)
    if kind == EXPONENTIAL:
        return max(end, value * rate)
    return value


@_helper
def _episode(model, setting, q, visits, memory, allowed, epsilon, temperature, time_limit, act,
             value, learn, s):
    """One episode: its return, its length, its mean absolute TD error, and the next state.

    ``act`` chooses actions and ``value`` values states as :func:`_explore` and
    :func:`_policy_value` do, and ``learn`` learns a step as :func:`_learn` does, with the run's
    ``memory`` and action mask ``allowed`` (or their versions for one method and strategy, which
    numba inlines, and then None for ``allowed``).
    """
    offsets, cdf, row_of_state = model.offsets, model.cdf, model.row_of_state
    next_states, rewards, terminals = model.next_state, model.reward, model.terminal
    scores = memory.scores
    n_actions = q.shape[1]
    action = -1
    if setting[EXPLORING_STARTS]:
        state, s = _below(s, row_of_state.size)
        row = row_of_state[state]
        action, s = _uniform_action(allowed, row, n_actions, s)
    else:
        state, s = _sample_start(model, s)
        row = row_of_state[state]
    total, abs_td, steps, done = 0.0, 0.0, 0, False
    while not done:
        if action < 0:
            action, s = act(setting, q, visits, allowed, row, epsilon, temperature, scores, s)
        k, s = _sample_outcome(offsets, cdf, state * n_actions + action, s)
        state, reward, terminal = next_states[k], rewards[k], terminals[k]
        next_row = row_of_state[state]
        truncated = steps + 1 >= time_limit
        error, action, s = learn(act, value, setting, q, visits, memory, allowed, epsilon,
                                 temperature, row, action, reward, terminal, truncated, next_row, k,
                                 steps, s)
        abs_td += abs(error)
        total += reward
        steps += 1
        row = next_row
        done = terminal or truncated
    return total, steps, abs_td / steps, s


@_called
def _any_episode(model, setting, q, visits, memory, allowed, epsilon, temperature, time_limit,
                 s):
    """:func:`_episode` of any method and strategy: compiled once, called once per episode."""
    return _episode(model, setting, q, visits, memory, allowed, epsilon, temperature, time_limit,
                    _explore, _policy_value, _learn, s)


#: Each method's step and each strategy's action and value, by code: what a method's kernel
#: inlines in its loop.
_LEARN = {Q_LEARNING: _learn_q_learning, SARSA: _learn_sarsa,
          EXPECTED_SARSA: _learn_expected_sarsa, DOUBLE_Q_LEARNING: _learn_double_q,
          MONTE_CARLO: _learn_monte_carlo, N_STEP_SARSA: _learn_n_step_sarsa,
          SARSA_LAMBDA: _learn_sarsa_lambda, Q_LAMBDA: _learn_q_lambda, DYNA_Q: _learn_dyna_q,
          TREE_BACKUP: _learn_tree_backup, Q_SIGMA: _learn_q_sigma}
_ACT = {EPSILON_GREEDY: _act_epsilon_greedy, SOFTMAX: _act_softmax, UCB: _act_ucb}
_VALUE = {EPSILON_GREEDY: _value_epsilon_greedy, SOFTMAX: _value_softmax, UCB: _value_ucb}
ANY = -1  #: the method (and strategy) of the kernel of every method


def _episode_of(algo, exploration, model, setting, q, visits, memory, allowed, epsilon,
                temperature, time_limit, s):
    """An episode of the kernel's method and strategy (compile-time constants): typed by
    :func:`_episode_of_method`; never called from Python."""


@overload(_episode_of, jit_options={"_nrt": False})
def _episode_of_method(algo, exploration, model, setting, q, visits, memory, allowed, epsilon,
                       temperature, time_limit, s):
    """:func:`_any_episode` for :data:`ANY`, else :func:`_episode` inlined with the one method
    and strategy of ``algo`` and ``exploration`` and no action mask: chosen while numba types
    the kernel, so that it compiles only what it plays."""
    if not isinstance(algo, types.IntegerLiteral):
        return None
    if algo.literal_value == ANY:
        return (lambda algo, exploration, model, setting, q, visits, memory, allowed, epsilon,
                temperature, time_limit, s: _any_episode(model, setting, q, visits, memory,
                                                         allowed, epsilon, temperature,
                                                         time_limit, s))
    act, value = _ACT[exploration.literal_value], _VALUE[exploration.literal_value]
    learn = _LEARN[algo.literal_value]

    def one_method(algo, exploration, model, setting, q, visits, memory, allowed, epsilon,
                   temperature, time_limit, s):
        return _episode(model, setting, q, visits, memory, None, epsilon, temperature,
                        time_limit, act, value, learn, s)

    return one_method


def method_of(settings: np.ndarray, masked: bool) -> tuple[int, int] | None:
    """The method and strategy codes that every run of ``settings`` shares, which
    :func:`method_kernel` plays (Python side); None if they differ or a run masks actions."""
    pairs = {(int(setting[ALGO]), int(setting[EXPLORATION])) for setting in settings}
    return None if masked or len(pairs) != 1 else pairs.pop()


@_helper
def _moved_on(setting, own_setting, lr_moves, epsilon, temperature):
    """Epsilon, the temperature and the setting after an episode: each along its schedule, the
    learning rate too where it has a per-episode schedule (``own_setting``, the run's row of
    settings, keeps it for the next call)."""
    epsilon = _next_value(setting, EPSILON_SCHEDULE, epsilon)
    temperature = _next_value(setting, TEMPERATURE_SCHEDULE, temperature)
    if lr_moves:
        own_setting[LEARNING_RATE] = _next_value(setting, LR_SCHEDULE, own_setting[LEARNING_RATE])
        setting = to_fixed_tuple(own_setting, SETTING_SIZE)
    return epsilon, temperature, setting


@njit(cache=True)
def _run_episodes(model, observed, runs, i, start, stop, time_limit, algo, exploration):
    """Episodes ``start..stop-1`` of run ``i``, logged; epsilon and temperature decay after each.

    ``algo`` and ``exploration`` are the kernel's method and strategy, compile-time constants
    (``literally``: one compiled version for each): :data:`ANY`, or the run's own.

    Not inlined: inlined into the parallel loop of :func:`train_runs`, its writes to the logs
    were lost (numba 0.68).
    """
    literally(algo)
    literally(exploration)
    setting, s = to_fixed_tuple(runs.settings[i], SETTING_SIZE), to_fixed_tuple(runs.rng[i], 4)
    q, visits = runs.q[i], runs.visits[i]
    memory = Memory(runs.half_difference[i], runs.marks[i], runs.memory_pairs[i],
                    runs.memory_values[i], runs.model_counts[i], runs.model_pairs[i],
                    runs.sizes[i], np.empty_like(q[:1]), q.reshape(q.size),
                    visits.reshape(visits.size), observed)
    allowed = runs.allowed[i]
    own_setting = runs.settings[i]  # its learning rate entry moves on under a per-episode schedule
    lr_moves = own_setting[LR_SCHEDULE] == LINEAR or own_setting[LR_SCHEDULE] == EXPONENTIAL
    epsilon, temperature = runs.epsilon[i], runs.temperature[i]
    returns, lengths, td_errors, epsilons = (
        runs.returns[i], runs.lengths[i], runs.td_errors[i], runs.epsilons[i])
    for e in range(start, stop):
        returns[e], lengths[e], td_errors[e], s = _episode_of(
            algo, exploration, model, setting, q, visits, memory, allowed, epsilon, temperature,
            time_limit, s)
        epsilons[e] = epsilon
        epsilon, temperature, setting = _moved_on(setting, own_setting, lr_moves, epsilon,
                                                  temperature)
    runs.epsilon[i], runs.temperature[i] = epsilon, temperature
    runs.rng[i] = s


@njit(cache=True, parallel=True, nogil=True)
def train_runs(model, observed, runs, start, stop, time_limit):
    """Episodes ``start..stop-1`` of every run, the runs spread over numba's threads: the
    kernel of every method and strategy, with action masks.

    Even a single run goes through this parallel kernel, on one thread: the same loop in a
    serial kernel measured at less than half the speed (numba compiles the body of a parallel
    loop with its arrays marked as not overlapping). The run index is cast because the parallel
    loop's own is unsigned: ``_run_episodes`` is then compiled for one signature, not two.
    It releases the GIL (``nogil``), so that a sweep runs its jobs on threads of one process.
    """
    for i in prange(runs.q.shape[0]):
        _run_episodes(model, observed, runs, np.int64(i), start, stop, time_limit, ANY, ANY)


@functools.cache
def method_kernel(algo: int, exploration: int) -> Any:
    """:func:`train_runs` of runs that all learn by ``algo`` exploring by ``exploration``
    (:func:`method_of`), with the same results and arguments: a kernel of its own, compiled the
    first time it is asked for (a fraction of :func:`train_runs`'s compile), and faster, its
    method and strategy inlined in its loop.

    Its two codes are the closure's constants (and its ``method``); numba's disk cache keys
    each kernel by them.
    """

    @njit(cache=True, parallel=True, nogil=True)
    def train_method_runs(model, observed, runs, start, stop, time_limit):
        for i in prange(runs.q.shape[0]):
            _run_episodes(model, observed, runs, np.int64(i), start, stop, time_limit, algo,
                          exploration)

    train_method_runs.method = algo, exploration
    return train_method_runs


# --- playing a fixed policy (evaluation) ----------------------------------------------------------


@njit(cache=True, nogil=True)
def play_policy(model, action_of_state, cut, n_actions, time_limit, stop_after_capped, capped,
                rng, returns, lengths, ends, final_states, start, stop):
    """Episodes ``start..stop-1`` of the deterministic policy ``action_of_state``: each one's
    return, length, end (:data:`TERMINATED`, :data:`TRUNCATED` at ``time_limit`` steps, or
    :data:`LOOPED`: cut on entering a state where ``cut`` is set) and last state.

    ``capped`` episodes in a row have been truncated before ``start``; the play stops early once
    ``stop_after_capped`` have (0: never). Returns the episodes played, and ``capped`` after
    them; ``rng`` is advanced, so that slices of one evaluation give the result of one call.
    """
    offsets, cdf, next_states = model.offsets, model.cdf, model.next_state
    rewards, terminals = model.reward, model.terminal
    s = to_fixed_tuple(rng, 4)
    played = stop
    for e in range(start, stop):
        state, s = _sample_start(model, s)
        total, steps, end = 0.0, 0, TRUNCATED
        while steps < time_limit:
            if cut[state]:
                end = LOOPED
                break
            k, s = _sample_outcome(offsets, cdf, state * n_actions + action_of_state[state], s)
            state = next_states[k]
            total += rewards[k]
            steps += 1
            if terminals[k]:
                end = TERMINATED
                break
        returns[e], lengths[e], ends[e], final_states[e] = total, steps, end, state
        capped = capped + 1 if end == TRUNCATED else 0
        if stop_after_capped > 0 and capped == stop_after_capped:
            played = e + 1
            break
    rng[:] = s
    return played, capped
