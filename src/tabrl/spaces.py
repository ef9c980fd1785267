"""Observations to rows of a Q-table.

A tabular method needs every state to be a row. ``Discrete(n, start)`` gives ``obs - start``;
a ``Tuple`` of discrete spaces or a ``MultiDiscrete`` gives the mixed-radix index of its parts
(Blackjack-v1: 32 x 11 x 2 = 704 rows). Spaces too large to allocate up front get a lazy
encoder that hands out rows in the order states are first seen, as the tutorial's defaultdict does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from tabrl.errors import UsageError

#: Above this many states a dense table would be wasteful; rows are then handed out lazily.
MAX_DENSE_STATES = 1 << 22


class StateEncoder:
    """Maps an observation to a Q-table row (and back), by mixed radix over discrete parts.

    ``sizes[i]`` and ``starts[i]`` describe part ``i``; a plain ``Discrete`` is a single part.
    ``scalar`` is True when observations are plain integers rather than tuples.
    """

    def __init__(self, sizes: tuple[int, ...], starts: tuple[int, ...], scalar: bool) -> None:
        self.sizes = tuple(int(n) for n in sizes)
        self.starts = tuple(int(s) for s in starts)
        self.scalar = scalar
        self.n_states = math.prod(self.sizes)
        self.lazy = self.n_states > MAX_DENSE_STATES
        self._rows: dict[int, int] = {}
        self._keys: list[int] = []
        self._start = self.starts[0]
        if not self.lazy:  # the hot path of every step: a dense row is its key
            self.encode = self.key  # type: ignore[method-assign]

    # --- the mixed-radix key of an observation -------------------------------------------------
    def key(self, obs: Any) -> int:
        """The position of ``obs`` in the enumeration of the whole space."""
        if self.scalar:
            return int(obs) - self._start
        key = 0
        for part, size, start in zip(obs, self.sizes, self.starts):
            key = key * size + (int(part) - start)
        return key

    def observation(self, key: int) -> Any:
        """The observation at position ``key``, as the environment emits it."""
        if self.scalar:
            return key + self.starts[0]
        parts = []
        for size, start in zip(reversed(self.sizes), reversed(self.starts)):
            key, digit = divmod(key, size)
            parts.append(digit + start)
        return tuple(reversed(parts))

    # --- rows ------------------------------------------------------------------------------------
    def encode(self, obs: Any) -> int:
        """The Q-table row of ``obs``; a lazy encoder adds a row the first time it sees a state."""
        key = self.key(obs)
        if not self.lazy:
            return key
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = len(self._keys)
            self._keys.append(key)
        return row

    def find(self, obs: Any) -> int | None:
        """The row of ``obs`` if it has one, without handing out a new row (for evaluation)."""
        key = self.key(obs)
        return self._rows.get(key) if self.lazy else key

    def decode(self, row: int) -> Any:
        """The observation stored in ``row``."""
        return self.observation(self._keys[row] if self.lazy else row)

    @property
    def n_rows(self) -> int:
        """Rows in use: every state for a dense encoder, the states seen so far for a lazy one."""
        return len(self._keys) if self.lazy else self.n_states

    @property
    def keys(self) -> np.ndarray:
        """The key of every row (saved with a lazy table so that its rows can be found again)."""
        if self.lazy:
            return np.asarray(self._keys, dtype=np.int64)
        return np.arange(self.n_states, dtype=np.int64)

    def restore_keys(self, keys: np.ndarray) -> None:
        """Give a lazy encoder back the rows it had handed out (on reload)."""
        self._keys = [int(k) for k in keys]
        self._rows = {k: i for i, k in enumerate(self._keys)}

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, stored beside a Q-table to check it fits on reload."""
        return {"sizes": list(self.sizes), "starts": list(self.starts), "scalar": self.scalar}


def encoder_for(space: spaces.Space) -> StateEncoder:
    """The encoder for an observation space, or a one-line error saying why it is not tabular."""
    if isinstance(space, spaces.Discrete):
        return StateEncoder((int(space.n),), (int(space.start),), scalar=True)
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
        starts = tuple(getattr(space, "start", [0] * len(space.nvec)))
        return StateEncoder(tuple(space.nvec), starts, scalar=False)
    if isinstance(space, spaces.Tuple) and all(isinstance(p, spaces.Discrete) for p in space):
        return StateEncoder(tuple(int(p.n) for p in space), tuple(int(p.start) for p in space),
                            scalar=False)
    if isinstance(space, spaces.Box):
        raise UsageError(
            f"the observation space {space} is continuous, and tabular methods need discrete "
            "states: cut it into bins with --bins N (and --obs-bounds where it is unbounded), "
            "or pick a toy-text environment such as FrozenLake-v1"
        )
    raise UsageError(
        f"the observation space {space} is not discrete: tabular methods need Discrete, "
        "MultiDiscrete or a Tuple of Discrete observations"
    )


def n_actions_of(space: spaces.Space) -> int:
    """The number of actions of a ``Discrete`` action space, or a one-line error."""
    if isinstance(space, spaces.Discrete) and space.start == 0:
        return int(space.n)
    raise UsageError(
        f"the action space {space} is not Discrete(n) starting at 0: "
        "tabular methods need a finite set of actions 0..n-1"
    )
