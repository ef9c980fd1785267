"""The Q-table: a float64 array behind a mapping from observations to rows.

Users of the Gymnasium tutorial write ``agent.q_values[obs]`` and get the action values of a state,
zeros for a state never seen: a ``defaultdict``. ``QTable`` keeps that interface over a dense
numpy array (one row per state, so the compiled engine and the solver can read it whole) and
counts visits per state-action pair, which tells plots which states were never seen and feeds
count-based learning rates and exploration bonuses. A masked agent's table also keeps the actions
allowed in each row (:mod:`tabrl.masks`), and its greedy policy is the best allowed action.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from tabrl.spaces import StateEncoder

_LAZY_INITIAL_ROWS = 1024


class QTable:
    """Action values ``array[row, action]`` and visit counts ``visits[row, action]``."""

    def __init__(self, encoder: StateEncoder, n_actions: int) -> None:
        self.encoder = encoder
        self.n_actions = n_actions
        rows = _LAZY_INITIAL_ROWS if encoder.lazy else encoder.n_states
        self.array = np.zeros((rows, n_actions), dtype=np.float64)
        self.visits = np.zeros((rows, n_actions), dtype=np.int64)
        #: bool per row and action: allowed (by the action mask); None: every action, everywhere
        self.allowed: np.ndarray | None = None
        if not encoder.lazy:  # a dense table never grows: its row is the encoder's key
            self.row = encoder.encode  # type: ignore[method-assign]

    def row(self, obs: Any) -> int:
        """The row of ``obs``; a lazy table grows (doubling) to make room for a new state."""
        row = self.encoder.encode(obs)
        if row >= len(self.array):
            grow = max(len(self.array), row + 1 - len(self.array))
            self.array = np.vstack([self.array, np.zeros((grow, self.n_actions))])
            self.visits = np.vstack([self.visits, np.zeros((grow, self.n_actions), np.int64)])
            if self.allowed is not None:
                self.allowed = np.vstack([self.allowed, np.ones((grow, self.n_actions), bool)])
        return row

    # --- action masks -----------------------------------------------------------------------------
    def allow(self, row: int, mask: np.ndarray) -> None:
        """Record the actions allowed at ``row`` (booleans, one per action)."""
        if self.allowed is None:
            self.allowed = np.ones(self.array.shape, dtype=np.bool_)
        self.allowed[row] = mask

    def allowed_actions(self, row: int) -> list[int] | None:
        """The actions allowed at ``row``, in order; None if every action is."""
        if self.allowed is None or self.allowed[row].all():
            return None
        return np.flatnonzero(self.allowed[row]).tolist()

    def choices(self, row: int) -> list[float]:
        """The action values of ``row`` as a list, ``-inf`` for a masked action: what greedy
        choices and maxima read, so that they never pick a masked action."""
        values = self.array[row].tolist()
        if self.allowed is None:
            return values
        return [v if ok else -math.inf for v, ok in zip(values, self.allowed[row].tolist())]

    # --- the defaultdict interface of the tutorial ----------------------------------------------
    def __getitem__(self, obs: Any) -> np.ndarray:
        """The action values of ``obs`` (a writable view; zeros for a state never seen)."""
        row = self.row(obs)  # first: a lazy table may grow, replacing self.array
        return self.array[row]

    def __contains__(self, obs: Any) -> bool:
        return bool(self.visits[self.encoder.encode(obs)].any())

    def __len__(self) -> int:
        """The number of states visited, as ``len`` of the tutorial's defaultdict."""
        return int(self.visited().sum())

    def __iter__(self) -> Iterator[Any]:
        return (self.encoder.decode(int(r)) for r in np.flatnonzero(self.visited()))

    def items(self) -> Iterator[tuple[Any, np.ndarray]]:
        """``(observation, action values)`` of every visited state."""
        return ((obs, self[obs]) for obs in self)

    # --- whole-table views ------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.encoder.n_rows

    def visited(self) -> np.ndarray:
        """Bool per row: was any action of this state ever updated?"""
        return self.visits[: self.n_rows].any(axis=1)

    def greedy_policy(self) -> np.ndarray:
        """The greedy action per row, ties to the lowest action: the one greedy policy, which tabrl
        evaluates, draws and saves, and which ``get_action`` plays when ``agent.epsilon == 0``;
        the lowest of the best allowed actions under an action mask."""
        return self.masked()[: self.n_rows].argmax(axis=1)

    def state_values(self) -> np.ndarray:
        """``max_a Q(s, a)`` per row, over the allowed actions."""
        return self.masked()[: self.n_rows].max(axis=1)

    def masked(self) -> np.ndarray:
        """The whole table with ``-inf`` for masked actions (the table itself if none is)."""
        if self.allowed is None:
            return self.array
        return np.where(self.allowed, self.array, -np.inf)
