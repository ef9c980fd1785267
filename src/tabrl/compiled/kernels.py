"""The numba kernels: a random generator, sampling an MDP, one episode of learning, many runs.

Every run owns a xoshiro256** generator (Blackman and Vigna, 2018) seeded through splitmix64, so a
run's result depends on its seed alone: never on the thread that runs it, the number of threads,
or how its episodes are split into calls.

An episode follows the Python engine step for step: the start state is drawn from the MDP's start
distribution; each step explores with probability epsilon (a uniform random action) or plays a
greedy action, ties broken uniformly at random; an outcome ``(next state, reward, terminal)`` is
drawn from the cumulative probabilities of ``(state, action)``; the TD update follows. A terminal
outcome bootstraps zero; reaching the time limit ends the episode but still bootstraps.

A run's hyperparameters are one float64 vector (see ``SETTING_SIZE``). Its first entry is the
algorithm code: a new update rule (expected SARSA, double Q-learning) is a new code and a branch
in :func:`_learn`, the one place that knows how a target is formed.

Every kernel lives in this one module on purpose: numba's disk cache notices edits only to the
file that defines a kernel, so a helper in another module could be silently served stale. (The
schedule kind codes come from ``tabrl.schedules.KINDS``: reordering it needs a cache clear.)

Speed comes from keeping the hot loop in registers; each of these measured 10% to 2x:

- small helpers are inlined by numba (``inline="always"``); left to LLVM, the calls stay;
- the generator state (four words) and a run's setting are tuples, passed by value: as arrays,
  they would be re-read from memory after every store to the Q-table that might overlap them;
  the helpers that draw return the advanced state with their result;
- arrays are taken out of their named tuples before a loop (each field read costs a reference
  count).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from tabrl.schedules import KINDS

# --- algorithm codes and the layout of a run's setting vector ------------------------------------
FIXED_POLICY = 0  #: no learning: play the greedy policy of the table as it is (evaluation)
Q_LEARNING = 1

ALGO, DISCOUNT, LEARNING_RATE = 0, 1, 2
LR_SCHEDULE = 3  #: four entries ``[kind, start, end, rate]`` (``Schedule.as_array``)
EPSILON_SCHEDULE = 7  #: four entries as well
SETTING_SIZE = 11

LINEAR = float(KINDS.index("linear"))
EXPONENTIAL = float(KINDS.index("exponential"))
VISITS = float(KINDS.index("visits"))

#: Outcome lists longer than this are searched by bisection instead of a linear scan.
LINEAR_SCAN_MAX = 16

_helper = njit(cache=True, inline="always")


class CompiledMDP(NamedTuple):
    """A :class:`~tabrl.mdp.TabularMDP` as the kernels sample it.

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


class Runs(NamedTuple):
    """The state and the logs of ``n_runs`` independent runs; every array starts with the run."""

    settings: np.ndarray  #: float64[n_runs, SETTING_SIZE]
    q: np.ndarray  #: float64[n_runs, n_rows, n_actions]
    visits: np.ndarray  #: int64[n_runs, n_rows, n_actions]
    rng: np.ndarray  #: uint64[n_runs, 4]: the generators' states
    epsilon: np.ndarray  #: float64[n_runs]: epsilon of the next episode
    returns: np.ndarray  #: float64[n_runs, n_episodes]
    lengths: np.ndarray  #: int64[n_runs, n_episodes]
    td_errors: np.ndarray  #: float64[n_runs, n_episodes]: mean absolute TD error
    epsilons: np.ndarray  #: float64[n_runs, n_episodes]: epsilon used


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
def _greedy(q, row, s):
    """An action of highest value in ``q[row]``, uniformly at random among equals."""
    best, ties = q[row, 0], 1
    for a in range(1, q.shape[1]):
        if q[row, a] > best:
            best, ties = q[row, a], 1
        elif q[row, a] == best:
            ties += 1
    pick = 0
    if ties > 1:
        pick, s = _below(s, ties)
    for a in range(q.shape[1]):
        if q[row, a] == best:
            if pick == 0:
                return a, s
            pick -= 1
    return 0, s


@_helper
def _epsilon_greedy(q, row, epsilon, s):
    """A uniformly random action with probability ``epsilon``, else a greedy one."""
    u, s = _uniform(s)
    if u < epsilon:
        return _below(s, q.shape[1])
    return _greedy(q, row, s)


# --- learning -------------------------------------------------------------------------------------
@_helper
def _max_value(q, next_row):
    """``max_a q[next_row, a]``: the value of the next state that Q-learning bootstraps from."""
    best = q[next_row, 0]
    for a in range(1, q.shape[1]):
        best = max(best, q[next_row, a])
    return best


@_helper
def _schedule(setting, at):
    """The schedule ``(kind, start, end, rate)`` stored at ``setting[at:at + 4]``."""
    return setting[at], setting[at + 1], setting[at + 2], setting[at + 3]


@_helper
def _step_size(setting, n_visits):
    """The learning rate: constant, or ``start / n ** rate`` (with a floor) by visit count."""
    kind, start, end, rate = _schedule(setting, LR_SCHEDULE)
    if kind == VISITS:
        return max(end, start / max(n_visits, 1) ** rate)
    return setting[LEARNING_RATE]


@_helper
def _learn(setting, q, visits, row, action, reward, terminal, next_row):
    """One TD update of ``q[row, action]`` by the run's algorithm; returns the TD error."""
    if setting[ALGO] == FIXED_POLICY:
        return 0.0
    future = 0.0 if terminal else setting[DISCOUNT] * _max_value(q, next_row)
    td_error = reward + future - q[row, action]
    visits[row, action] += 1
    q[row, action] += _step_size(setting, visits[row, action]) * td_error
    return td_error


@_helper
def _next_epsilon(setting, epsilon):
    """Epsilon one episode later (``Schedule.next``)."""
    kind, _, end, rate = _schedule(setting, EPSILON_SCHEDULE)
    if kind == LINEAR:
        return max(end, epsilon - rate)
    if kind == EXPONENTIAL:
        return max(end, epsilon * rate)
    return epsilon


# --- episodes and runs ----------------------------------------------------------------------------
@_helper
def _episode(model, setting, q, visits, epsilon, time_limit, s):
    """One episode: its return, its length, its mean absolute TD error, and the next state."""
    offsets, cdf, row_of_state = model.offsets, model.cdf, model.row_of_state
    next_states, rewards, terminals = model.next_state, model.reward, model.terminal
    n_actions = q.shape[1]
    state, s = _sample_start(model, s)
    row = row_of_state[state]
    total, abs_td, steps, done = 0.0, 0.0, 0, False
    while not done:
        action, s = _epsilon_greedy(q, row, epsilon, s)
        k, s = _sample_outcome(offsets, cdf, state * n_actions + action, s)
        state, reward, terminal = next_states[k], rewards[k], terminals[k]
        next_row = row_of_state[state]
        abs_td += abs(_learn(setting, q, visits, row, action, reward, terminal, next_row))
        total += reward
        steps += 1
        row = next_row
        done = terminal or steps >= time_limit
    return total, steps, abs_td / steps, s


@njit(cache=True)
def _run_episodes(model, runs, i, start, stop, time_limit):
    """Episodes ``start..stop-1`` of run ``i``, logged; epsilon decays after each.

    Not inlined: inlined into the parallel loop of :func:`train_runs`, its writes to the logs
    were lost (numba 0.68).
    """
    setting, s = to_fixed_tuple(runs.settings[i], SETTING_SIZE), to_fixed_tuple(runs.rng[i], 4)
    q, visits, epsilon = runs.q[i], runs.visits[i], runs.epsilon[i]
    returns, lengths, td_errors, epsilons = (
        runs.returns[i], runs.lengths[i], runs.td_errors[i], runs.epsilons[i])
    for e in range(start, stop):
        returns[e], lengths[e], td_errors[e], s = _episode(
            model, setting, q, visits, epsilon, time_limit, s)
        epsilons[e] = epsilon
        epsilon = _next_epsilon(setting, epsilon)
    runs.epsilon[i] = epsilon
    runs.rng[i] = s


@njit(cache=True, parallel=True)
def train_runs(model, runs, start, stop, time_limit):
    """Episodes ``start..stop-1`` of every run, the runs spread over numba's threads.

    Even a single run goes through this parallel kernel, on one thread: the same loop in a
    serial kernel measured at less than half the speed (numba compiles the body of a parallel
    loop with its arrays marked as not overlapping).
    """
    for i in prange(runs.q.shape[0]):
        _run_episodes(model, runs, i, start, stop, time_limit)
