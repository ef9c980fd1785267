"""Schedules for epsilon, temperature and the learning rate.

A schedule is a small immutable rule: ``next(value)`` gives the value after one more episode
(the tutorial's ``max(final, epsilon - decay)`` is the linear kind), ``visit_value(n)`` the value
for the ``n``-th visit of a state-action pair (the ``1/n^w`` kind of stochastic approximation).
The compiled engine reads the same rule as four numbers (``as_array``), so both engines agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tabrl.errors import UsageError

KINDS = ("constant", "linear", "exponential", "visits")


@dataclass(frozen=True)
class Schedule:
    """``kind`` with a ``start`` value, an ``end`` floor and a ``rate``.

    - constant: always ``start``.
    - linear: ``start``, then minus ``rate`` per episode, never below ``end``.
    - exponential: ``start``, then times ``rate`` per episode, never below ``end``.
    - visits: ``start / n ** rate`` at the n-th visit of a state-action pair (the learning rate)
      or of a state (epsilon, temperature), never below ``end``.
    """

    kind: str = "constant"
    start: float = 1.0
    end: float = 0.0
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown schedule kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.kind != "constant" and self.end > self.start:
            raise UsageError(
                f"the schedule's floor {self.end} is above its start {self.start}: "
                "the floor must be at most the start value"
            )
        if self.kind == "exponential" and not 0 < self.rate <= 1:
            raise UsageError(f"an exponential decay factor must be in (0, 1], not {self.rate}")
        if self.kind in ("linear", "visits") and self.rate < 0:
            raise UsageError(f"a {self.kind} schedule's rate must be >= 0, not {self.rate}")

    @classmethod
    def constant(cls, value: float) -> Schedule:
        return cls("constant", value, value, 0.0)

    @classmethod
    def linear(cls, start: float, end: float, steps: int) -> Schedule:
        """From ``start`` to ``end`` in ``steps`` equal decrements (the default epsilon rule)."""
        if steps <= 0:
            raise UsageError(f"a linear decay needs a positive number of episodes, not {steps}")
        return cls("linear", start, end, (start - end) / steps)

    @classmethod
    def exponential(cls, start: float, end: float, factor: float) -> Schedule:
        return cls("exponential", start, end, factor)

    @classmethod
    def visits(cls, start: float, exponent: float, end: float = 0.0) -> Schedule:
        return cls("visits", start, end, exponent)

    def next(self, value: float) -> float:
        """The value one episode after ``value``."""
        if self.kind == "linear":
            return max(self.end, value - self.rate)
        if self.kind == "exponential":
            return max(self.end, value * self.rate)
        return value

    def at(self, episode: int) -> float:
        """The value at the start of episode ``episode`` (0-based), in closed form."""
        if self.kind == "linear":
            return max(self.end, self.start - self.rate * episode)
        if self.kind == "exponential":
            return max(self.end, self.start * self.rate**episode)
        return self.start

    def visit_value(self, n_visits: int) -> float:
        """The value at the ``n_visits``-th visit (1-based) of a state-action pair."""
        if self.kind == "visits":
            return max(self.end, self.start / max(n_visits, 1) ** self.rate)
        return self.start

    def in_state(self, value: float, state_updates: int) -> float:
        """The value to use in a state whose pairs were updated ``state_updates`` times so far.

        ``value`` (the episode's) for the per-episode kinds; for the visits kind the state's own,
        ``start / (n(s) + 1) ** rate`` (a GLIE schedule when ``rate`` is at most 1: every state
        keeps exploring, and less the more it is visited), never above ``value``, so that an
        agent whose epsilon is set to 0 is greedy whatever its schedule.
        """
        if self.kind == "visits":
            return min(value, self.visit_value(state_updates + 1))
        return value

    def as_array(self) -> np.ndarray:
        """``[kind code, start, end, rate]`` as float64, the form the compiled kernels read."""
        return np.array([KINDS.index(self.kind), self.start, self.end, self.rate], dtype=np.float64)

    def describe(self) -> str:
        """The rule in a few words, e.g. ``30.0 -> 0.5 (x0.9988 per episode)``."""
        if self.kind == "linear":
            return f"{self.start} -> {self.end} (-{self.rate:g} per episode)"
        if self.kind == "exponential":
            return f"{self.start} -> {self.end} (x{self.rate:g} per episode)"
        if self.kind == "visits":
            return f"{self.start}/n^{self.rate} (n: visits)" + (
                f", at least {self.end}" if self.end else "")
        return f"{self.start}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        return cls(**data)


def as_schedule(value: Schedule | dict[str, Any] | None) -> Schedule | None:
    """A schedule given as itself or as its dict (from YAML or a run's config.json)."""
    if value is None or isinstance(value, Schedule):
        return value
    try:
        return Schedule.from_dict(value)
    except TypeError:
        raise UsageError(
            f"cannot read the schedule {value!r}: give kind, start, end and rate"
        ) from None
