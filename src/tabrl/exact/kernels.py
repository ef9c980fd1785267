"""The numba kernels of dynamic programming (``tabrl.exact.dp``): Bellman sweeps over CSR outcomes.

A *table* is an MDP's outcomes in CSR form with ``width`` segments per state: ``offsets[s * width +
j] : offsets[s * width + j + 1]`` are the outcomes of segment ``j`` of state ``s``. With ``width =
n_actions`` a segment is a state-action pair (the whole MDP); with ``width = 1`` it is a state under
a fixed policy. Per outcome a table holds ``next_state`` and ``continuing`` (its probability where
the episode goes on, 0 where it ends); per segment ``expected_reward``.

Every sum runs over a segment's outcomes in their order, starting from 0.0, exactly as
``numpy.bincount`` adds them, so these kernels give the numpy solver's numbers bit for bit (tested
in ``tests/test_solve.py``).

Sweeps stop once the values *settle*: when no value moves by more than a threshold. Under a time
limit the threshold is 0: the new values equal the old ones in float64, so every later backup
returns them again and stopping there is exact.

Every kernel lives in this one module: numba's disk cache notices edits only to the file that
defines a kernel (see ``tabrl.compiled.kernels``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_helper = njit(cache=True, inline="always")


@_helper
def _backup(offsets, next_state, continuing, expected_reward, segment, values, discount):
    """``r + discount * sum_o p_o v(s'_o)`` of one segment (the numpy solver's order of sums)."""
    future = 0.0
    for o in range(offsets[segment], offsets[segment + 1]):
        future += continuing[o] * values[next_state[o]]
    return expected_reward[segment] + discount * future


@_helper
def _sweep(offsets, next_state, continuing, expected_reward, width, values, discount, q, out):
    """One Bellman backup of every segment into ``q``, and each state's best into ``out``.

    The best is chosen by a select on a local, not a conditional store: the branch it replaces
    was mispredicted often enough to cost a quarter of the sweep (and more where next states are
    scattered, each misprediction discarding loads in flight).
    """
    for s in range(values.size):
        best = 0.0
        for j in range(width):
            value = _backup(offsets, next_state, continuing, expected_reward, s * width + j,
                            values, discount)
            q[s, j] = value
            best = value if j == 0 or value > best else best
        out[s] = best


@_helper
def _threshold(values, discount, tolerance):
    """The change per sweep below which values count as settled (0 under a time limit)."""
    if tolerance == 0.0:
        return 0.0
    if discount == 0.0:
        return np.inf
    scale = tolerance * max(1.0, np.max(np.abs(values)) if values.size else 0.0)
    return scale * (1.0 - discount) / discount if discount < 1.0 else scale


@_helper
def _settled(old, new, threshold):
    """Whether no value moved by more than ``threshold`` (NaN never settles)."""
    for s in range(old.size):  # noqa: SIM110 (a loop that numba compiles, and stops early)
        if not abs(new[s] - old[s]) <= threshold:
            return False
    return True


@njit(cache=True)
def sweep_until_settled(offsets, next_state, continuing, expected_reward, width, discount,
                        max_sweeps, tolerance):
    """Sweeps ``V <- max_j q_j(V)`` from ``V = 0``: at most ``max_sweeps``, until the values settle.

    Returns ``(q, sweeps, settled)``: ``q`` of the last sweep, the number of sweeps, and whether
    the values settled (``tolerance`` 0: exactly; else as in ``tabrl.exact.dp._threshold``).
    """
    n_states = (offsets.size - 1) // width
    return _sweeps_from(offsets, next_state, continuing, expected_reward, width, discount,
                        np.zeros(n_states), np.zeros((n_states, width)), 0, max_sweeps, tolerance)


@_helper
def _sweeps_from(offsets, next_state, continuing, expected_reward, width, discount, values, q,
                 done, max_sweeps, tolerance):
    """``sweep_until_settled`` from ``values``, the values after ``done`` sweeps."""
    new_values = np.empty(values.size)
    for sweep in range(done + 1, max_sweeps + 1):
        _sweep(offsets, next_state, continuing, expected_reward, width, values, discount, q,
               new_values)
        if _settled(values, new_values, _threshold(new_values, discount, tolerance)):
            return q, sweep, True
        values, new_values = new_values, values
    return q, max_sweeps, False


@njit(cache=True)
def sweep_two_until_settled(offsets, next_state, continuing, expected_reward, width, discount,
                            other_discount, max_sweeps, tolerance):
    """``sweep_until_settled`` of two problems that differ only in their discount, at once.

    While both run, one pass over the outcomes backs up both: each outcome is read once and the
    two values of a next state share a cache line. Once one settles, the other goes on alone.
    Each problem's sums are those it makes alone, bit for bit. Returns ``(q, sweeps, settled)``
    of each problem, ``discount``'s first.
    """
    n_states = (offsets.size - 1) // width
    discounts = np.array([discount, other_discount])
    values, new_values = np.zeros((n_states, 2)), np.empty((n_states, 2))
    q, other_q = np.zeros((n_states, width)), np.zeros((n_states, width))
    for sweep in range(1, max_sweeps + 1):
        _sweep_two(offsets, next_state, continuing, expected_reward, width, values, discounts,
                   q, other_q, new_values)
        settled = _settled(values[:, 0], new_values[:, 0],
                           _threshold(new_values[:, 0], discount, tolerance))
        other_settled = _settled(values[:, 1], new_values[:, 1],
                                 _threshold(new_values[:, 1], other_discount, tolerance))
        if settled and other_settled:
            return (q, sweep, True), (other_q, sweep, True)
        if settled:
            return (q, sweep, True), _sweeps_from(
                offsets, next_state, continuing, expected_reward, width, other_discount,
                new_values[:, 1].copy(), other_q, sweep, max_sweeps, tolerance)
        if other_settled:
            return _sweeps_from(
                offsets, next_state, continuing, expected_reward, width, discount,
                new_values[:, 0].copy(), q, sweep, max_sweeps, tolerance), (other_q, sweep, True)
        values, new_values = new_values, values
    return (q, max_sweeps, False), (other_q, max_sweeps, False)


@_helper
def _sweep_two(offsets, next_state, continuing, expected_reward, width, values, discounts, q,
               other_q, out):
    """``_sweep`` of two problems in one pass: ``values[:, i]`` and ``discounts[i]`` are problem
    ``i``'s, and its backups go to ``q`` (i = 0) or ``other_q`` (i = 1), its bests to ``out``."""
    for s in range(values.shape[0]):
        best, other_best = 0.0, 0.0
        for j in range(width):
            segment = s * width + j
            future, other_future = 0.0, 0.0
            for o in range(offsets[segment], offsets[segment + 1]):
                future += continuing[o] * values[next_state[o], 0]
                other_future += continuing[o] * values[next_state[o], 1]
            value = expected_reward[segment] + discounts[0] * future
            other_value = expected_reward[segment] + discounts[1] * other_future
            q[s, j], other_q[s, j] = value, other_value
            best = value if j == 0 or value > best else best
            other_best = other_value if j == 0 or other_value > other_best else other_best
        out[s, 0], out[s, 1] = best, other_best


@_helper
def _step(offsets, next_state, continuing, mass, out):
    """``mu P_pi``: the law one step later of the episodes still running (numpy's order of sums)."""
    out[:] = 0.0
    for s in range(mass.size):
        for o in range(offsets[s], offsets[s + 1]):
            out[next_state[o]] += continuing[o] * mass[s]


@_helper
def _total(mass):
    """The sum of ``mass``, added in index order as ``mass.sum()`` does."""
    total = 0.0
    for s in range(mass.size):
        total += mass[s]
    return total


@_helper
def _policy_values(policy, discount, horizon, every):
    """A policy's values backwards from ``V_0 = 0`` until they settle (``width = 1``).

    Returns ``(marks, final, last)``: ``marks[i]`` is ``V_{i * every}`` for every such row up to
    ``last``, the number of steps to go from which on the values no longer change (``horizon``
    where they still change at the limit), and ``final`` is ``V_horizon``.
    """
    offsets, next_state, continuing, expected_reward = policy
    n_states = offsets.size - 1
    marks = np.empty((horizon // every + 1, n_states))
    marks[0] = 0.0
    values, new_values = np.zeros(n_states), np.empty(n_states)
    q = np.empty((n_states, 1))
    for k in range(1, horizon + 1):
        _sweep(offsets, next_state, continuing, expected_reward, 1, values, discount, q,
               new_values)
        if _settled(values, new_values, 0.0):
            return marks, new_values, k - 1
        values, new_values = new_values, values
        if k % every == 0:
            marks[k // every] = values
    return marks, values, horizon


@njit(cache=True)
def time_weighted_advantages(table, policy, actions, initial, horizon, discount, tolerance,
                             max_rows):
    """``sum_t gamma^t mu_t(s) (q_t(s, a) - V_t(s))`` of a policy under a time limit ``horizon``.

    ``table`` and ``policy`` are ``(offsets, next_state, continuing, expected_reward)`` of the
    whole MDP and of the policy, whose action in state ``s`` is ``actions[s]``; ``V_t`` are the
    policy's values at time ``t``, ``q_t`` the backups of ``V_{t+1}``, and ``mu_t`` the law of
    its state at ``t``. The sum stops once the episodes still running weigh at most
    ``tolerance``.

    The policy's values settle (exactly) ``last`` steps before the end, so up to time
    ``horizon - last`` the summand is ``mu_t(s)`` times a constant: those steps only add up
    ``gamma^t mu_t``. The last ``last`` steps need the values with ``k = last .. 0`` steps to
    go, backwards, while the episodes run forwards: at most ``max_rows`` rows of them are kept.
    Beyond that, every ``every``-th row (about the square root of ``horizon``) is kept by the
    first pass, and each block of rows between two is computed again when its turn comes: one
    more sweep of the policy per step, instead of a table of states x horizon.

    Nothing is added where it would add exactly zero: the policy's own action (its backup is
    the policy's value, bit for bit) and states no episode reaches at that time. Returns the
    advantages and the work done: the number of outcomes backed up or stepped through.
    """
    offsets, next_state, continuing, expected_reward = table
    n_states = initial.size
    width = (offsets.size - 1) // n_states
    every = 1 if horizon + 1 <= max_rows else int(np.ceil(np.sqrt(horizon + 1)))
    marks, final, last = _policy_values(policy, discount, horizon, every)
    p_offsets, p_next_state, p_continuing, p_reward = policy
    policy_sweeps, full_sweeps = min(last + 1, horizon), 1
    q, best = np.empty((n_states, width)), np.empty(n_states)
    mass, next_mass = initial.copy(), np.empty(n_states)
    weight, t = 1.0, 0
    occupancy = np.zeros(n_states)
    while t < horizon - last and _total(mass) > tolerance:
        for s in range(n_states):
            occupancy[s] += weight * mass[s]
        _step(p_offsets, p_next_state, p_continuing, mass, next_mass)
        mass, next_mass = next_mass, mass
        weight *= discount
        t += 1
    policy_sweeps += t
    _sweep(offsets, next_state, continuing, expected_reward, width, final, discount, q, best)
    advantage = np.empty((n_states, width))
    for s in range(n_states):
        for a in range(width):
            advantage[s, a] = occupancy[s] * (q[s, a] - final[s])
    block, block_start = np.empty((every + 1, n_states)), -1
    pair = np.empty((n_states, 1))
    while t < horizon and _total(mass) > tolerance:
        k = horizon - t  # steps to go: back up V_{k - 1}, compare with V_k
        if every == 1:
            lower, upper = marks[k - 1], marks[k]
        else:
            start = (k - 1) // every
            if start != block_start:
                block_start = start
                block[0] = marks[start]
                for i in range(1, min(every, last - start * every) + 1):
                    _sweep(p_offsets, p_next_state, p_continuing, p_reward, 1, block[i - 1],
                           discount, pair, block[i])
                    policy_sweeps += 1
            lower, upper = block[k - 1 - start * every], block[k - start * every]
        for s in range(n_states):
            if mass[s] != 0.0:
                for a in range(width):
                    if a != actions[s]:
                        gain = _backup(offsets, next_state, continuing, expected_reward,
                                       s * width + a, lower, discount) - upper[s]
                        advantage[s, a] += weight * mass[s] * gain
        _step(p_offsets, p_next_state, p_continuing, mass, next_mass)
        mass, next_mass = next_mass, mass
        weight *= discount
        t += 1
        policy_sweeps += 1
        full_sweeps += 1
    return advantage, full_sweeps * next_state.size + policy_sweeps * p_next_state.size


@njit(cache=True)
def occupancy(offsets, next_state, continuing, ending, initial, limit, tolerance):
    """Expected visits per state and ending probability per outcome of a policy (``width = 1``).

    Forward in time, ``mu_{t+1} = mu_t P_pi``, for at most ``limit`` steps (-1: no limit) and
    while the running mass exceeds ``tolerance``. Returns ``(visits, ended, running mass)``.
    """
    n_states = initial.size
    visits, ended = np.zeros(n_states), np.zeros(ending.size)
    mass, next_mass = initial.copy(), np.empty(n_states)
    steps = 0
    while (limit < 0 or steps < limit) and mass.sum() > tolerance:
        next_mass[:] = 0.0
        for s in range(n_states):  # ``_step`` and the endings in one pass over the outcomes
            visits[s] += mass[s]
            for o in range(offsets[s], offsets[s + 1]):
                ended[o] += ending[o] * mass[s]
                next_mass[next_state[o]] += continuing[o] * mass[s]
        mass, next_mass = next_mass, mass
        steps += 1
    return visits, ended, mass.sum()


@njit(cache=True)
def endless_policy_values(offsets, next_state, continuing, expected_reward, discount, ending,
                          drift_sweeps, tolerance):
    """A policy's values without a time limit (``width = 1``), with "loops forever" detection.

    Sweeps until every value settles; after ``drift_sweeps`` sweeps, once the values of the
    states in ``ending`` (those whose episodes surely end) have settled, every value still
    moving is ``+-inf`` in the direction it drifts.
    """
    n_states = offsets.size - 1
    values, new_values = np.zeros(n_states), np.empty(n_states)
    q = np.empty((n_states, 1))
    sweep = 0
    while True:
        sweep += 1
        _sweep(offsets, next_state, continuing, expected_reward, 1, values, discount, q,
               new_values)
        threshold = _threshold(new_values, discount, tolerance)
        if _settled(values, new_values, threshold):
            return new_values
        if sweep >= drift_sweeps:
            drifting = np.abs(new_values - values) > threshold
            if not (drifting & ending).any():
                for s in range(n_states):
                    if drifting[s]:
                        new_values[s] = np.inf if new_values[s] > values[s] else -np.inf
                return new_values
        values, new_values = new_values, values


@njit(cache=True)
def reaching(offsets, next_state, goes_on, targets):
    """States with a path of continuing outcomes (``goes_on``) into ``targets``, targets included.

    A search backwards from the targets over the reversed outcomes of a policy (``width = 1``).
    """
    n_states = targets.size
    source = np.empty(next_state.size, np.int64)
    for s in range(n_states):
        source[offsets[s]:offsets[s + 1]] = s
    into = np.zeros(n_states + 1, np.int64)  # CSR of the reversed outcomes that go on
    for o in range(next_state.size):
        if goes_on[o]:
            into[next_state[o] + 1] += 1
    into = np.cumsum(into)
    sources = np.empty(into[-1], np.int64)
    filled = into[:-1].copy()
    for o in range(next_state.size):
        if goes_on[o]:
            sources[filled[next_state[o]]] = source[o]
            filled[next_state[o]] += 1
    reached = targets.copy()
    stack = [s for s in range(n_states) if targets[s]]
    while len(stack) > 0:
        state = stack.pop()
        for i in range(into[state], into[state + 1]):
            if not reached[sources[i]]:
                reached[sources[i]] = True
                stack.append(sources[i])
    return reached
