r"""Exploration strategies: how an agent turns a row of action values into a behaviour action.

Each strategy gives the action to play in a state and the probabilities with which it plays each
action there (Expected SARSA and Monte Carlo's truncated episodes need the policy's expectation
:math:`\sum_a \pi(a \mid s)\, Q(s, a)`). Values arrive as a plain list: rows are short, and plain
floats are faster than numpy calls on a handful of numbers.

**Exploration off.** With ``agent.epsilon == 0`` every strategy plays the greedy policy, ties to
the lowest action (:func:`first_greedy`, ``QTable.greedy_policy``): the one deterministic policy
that tabrl evaluates, draws and saves, and that a loaded agent plays after ``agent.epsilon = 0``
(as the Gymnasium tutorial switches exploration off). ``TabularAgent.act`` applies that rule
before asking a strategy.

* **epsilon-greedy**: with probability :math:`\varepsilon` a uniformly random action, otherwise a
  greedy one; while exploring (:math:`\varepsilon > 0`) ties among greedy actions are broken at
  random, so a fresh all-zero row does not always start with action 0.
  :math:`\pi(a \mid s) = \varepsilon / |A| + (1 - \varepsilon) / |G|` for each of the
  :math:`|G|` greedy actions, :math:`\varepsilon / |A|` for the others.
* **softmax** (Boltzmann): :math:`\pi(a \mid s) \propto \exp(Q(s, a) / \tau)`. A high temperature
  :math:`\tau` explores uniformly, a low one is nearly greedy; the agent decays :math:`\tau` once
  per episode, as it decays epsilon.
* **ucb** (upper confidence bound, Auer et al. 2002): the greedy action of
  :math:`Q(s, a) + c \sqrt{\ln N(s) / N(s, a)}`, where :math:`N(s, a)` counts the updates of the
  pair (``q_values.visits``) and :math:`N(s) = \sum_a N(s, a)`; an action never tried goes first.
  The choice is deterministic up to ties, so its "probabilities" put all mass on that choice.

**Action masks.** Under a mask (:mod:`tabrl.masks`) every strategy chooses among the actions
allowed in the state: greedy choices read ``q_values.choices(row)`` (``-inf`` for a masked
action), epsilon-greedy's random action is uniform over the allowed ones (:math:`|A(s)|` in place
of :math:`|A|` above), softmax gives masked actions weight 0 and UCB a score of ``-inf``.

Epsilon and the temperature come from the agent per state (``epsilon_at``, ``temperature_at``):
the episode's value, or under a schedule of the visits kind the state's own, which decays with
the state's visits (``Schedule.in_state``).
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

import numpy as np

from tabrl.errors import UsageError
from tabrl.qtable import QTable


class Explorer(Protocol):
    """What a strategy reads from the agent it serves (its current parameters and table)."""

    q_values: QTable
    rng: np.random.Generator
    n_actions: int
    ucb_c: float

    def epsilon_at(self, row: int) -> float: ...

    def temperature_at(self, row: int) -> float: ...


def uniform_index(n: int, rng: np.random.Generator) -> int:
    """A uniform draw from ``0..n-1``: ``rng.random()`` scaled, 3x faster than ``rng.integers``."""
    return int(rng.random() * n)


def first_greedy(values: list[float]) -> int:
    """The lowest action of highest value: the greedy policy, deterministic."""
    return values.index(max(values))


def greedy(values: list[float], rng: np.random.Generator) -> int:
    """An action of highest value, chosen uniformly at random among equals."""
    best = max(values)
    ties = [action for action, value in enumerate(values) if value == best]
    return ties[0] if len(ties) == 1 else ties[uniform_index(len(ties), rng)]


def greedy_probabilities(values: list[float]) -> list[float]:
    """The uniform distribution over the actions of highest value."""
    best = max(values)
    n_best = values.count(best)
    return [1.0 / n_best if value == best else 0.0 for value in values]


def sample(probabilities: list[float], rng: np.random.Generator) -> int:
    """An action drawn from ``probabilities`` by inverting their cumulative sum."""
    u, total = rng.random(), 0.0
    for action, p in enumerate(probabilities):
        total += p
        if u < total:
            return action
    return max(range(len(probabilities)), key=probabilities.__getitem__)  # rounding: u ~ 1


class Exploration:
    """A behaviour policy over a Q-table: ``action`` samples it, ``probabilities`` describes it."""

    name: ClassVar[str] = ""

    def action(self, agent: Explorer, row: int) -> int:
        return sample(self.probabilities(agent, row), agent.rng)

    def probabilities(self, agent: Explorer, row: int) -> list[float]:
        raise NotImplementedError


class EpsilonGreedy(Exploration):
    """A random action with probability ``agent.epsilon``, else greedy (random tie-breaking);
    with epsilon 0 the greedy policy itself, drawing nothing."""

    name = "epsilon-greedy"

    def action(self, agent: Explorer, row: int) -> int:
        epsilon = agent.epsilon_at(row)
        if epsilon == 0:
            return first_greedy(agent.q_values.choices(row))
        if agent.rng.random() < epsilon:
            allowed = agent.q_values.allowed_actions(row)
            if allowed is None:
                return uniform_index(agent.n_actions, agent.rng)
            return allowed[uniform_index(len(allowed), agent.rng)]
        return greedy(agent.q_values.choices(row), agent.rng)

    def probabilities(self, agent: Explorer, row: int) -> list[float]:
        epsilon = agent.epsilon_at(row)
        greedy_share = greedy_probabilities(agent.q_values.choices(row))
        allowed = agent.q_values.allowed_actions(row)
        if allowed is None:
            return [epsilon / agent.n_actions + (1.0 - epsilon) * p for p in greedy_share]
        uniform = [0.0] * agent.n_actions
        for action in allowed:
            uniform[action] = epsilon / len(allowed)
        return [u + (1.0 - epsilon) * p for u, p in zip(uniform, greedy_share, strict=True)]


class Softmax(Exploration):
    """Boltzmann exploration at the agent's temperature in the state."""

    name = "softmax"

    def probabilities(self, agent: Explorer, row: int) -> list[float]:
        values = agent.q_values.choices(row)  # a masked action: exp(-inf) = 0
        best = max(values)  # shifting by the maximum keeps exp() in range
        temperature = agent.temperature_at(row)
        weights = [math.exp((value - best) / temperature) for value in values]
        total = sum(weights)
        return [w / total for w in weights]


class UCB(Exploration):
    """The greedy action of the values plus a bonus ``agent.ucb_c * sqrt(ln N(s) / N(s, a))``."""

    name = "ucb"

    def scores(self, agent: Explorer, row: int) -> list[float]:
        """The bonus-raised values, ``-inf`` for a masked action."""
        values = agent.q_values.choices(row)
        counts = agent.q_values.visits[row].tolist()
        log_total = math.log(max(sum(counts), 1))
        return [
            q if q == -math.inf else math.inf if n == 0 else q + agent.ucb_c * math.sqrt(
                log_total / n)
            for q, n in zip(values, counts, strict=True)
        ]

    def action(self, agent: Explorer, row: int) -> int:
        return greedy(self.scores(agent, row), agent.rng)

    def probabilities(self, agent: Explorer, row: int) -> list[float]:
        return greedy_probabilities(self.scores(agent, row))


EXPLORATIONS: dict[str, type[Exploration]] = {
    cls.name: cls for cls in (EpsilonGreedy, Softmax, UCB)
}


def exploration_for(name: str) -> Exploration:
    """The strategy called ``name``, or a one-line error listing the known ones."""
    try:
        return EXPLORATIONS[name]()
    except KeyError:
        raise UsageError(
            f"unknown exploration {name!r}: use one of {', '.join(EXPLORATIONS)}"
        ) from None
