"""Action masks: the actions an environment allows in a state, as a table over Q-table rows.

Some environments say which actions make sense in a state: Taxi gives ``info["action_mask"]``
(an int8 array, 1 for an allowed action) at every reset and step, and ``action_mask(state)`` on
its unwrapped environment. A masked agent never plays a masked action, while exploring or not,
and its targets bootstrap from the allowed actions of the next state only (the maximum, the
expectation, the tree of its policy): a masked action is not available there, so its value is
no part of the state's (Huang and Ontañón, 2022, "A Closer Look at Invalid Action Masking").

The agent keeps one mask per row, ``QTable.allowed`` (``None``: every action allowed). Where the
environment computes masks from a state, the whole table is known before training
(:func:`mask_table`), which the compiled engine needs; elsewhere each row's mask is learned from
the ``info`` of the steps that reach it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tabrl.errors import TabrlError, UsageError
from tabrl.spaces import StateEncoder

INFO_KEY = "action_mask"


def env_name(env: gym.Env) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def mask_table(env: gym.Env, encoder: StateEncoder, n_actions: int) -> np.ndarray | None:
    """The mask of every row, from ``env.unwrapped.action_mask(state)``; None where the
    environment has no such method or its observations are not its integer states."""
    base = env.unwrapped
    method = getattr(base, "action_mask", None)
    space = env.observation_space
    if not (callable(method) and isinstance(space, gym.spaces.Discrete)
            and space == base.observation_space and not encoder.lazy):
        return None
    table = np.ones((encoder.n_states, n_actions), dtype=np.bool_)
    for key in range(encoder.n_states):
        obs = encoder.observation(key)
        table[encoder.encode(obs)] = checked(method(obs), n_actions, obs)
    return table


def check_gives_masks(env: gym.Env) -> None:
    """A one-line error unless ``env`` gives action masks (a method, or ``info`` on reset).

    Without the method, the environment is reset once (seeded) to look at its ``info``."""
    if callable(getattr(env.unwrapped, "action_mask", None)):
        return
    _, info = env.reset(seed=0)
    if INFO_KEY not in info:
        raise UsageError(
            f"--action-mask: {env_name(env)} gives no action mask (no info['action_mask'], no "
            "action_mask(state)): train without --action-mask (Taxi-v4 gives one)"
        )


def checked(mask: Any, n_actions: int, obs: Any) -> np.ndarray:
    """``mask`` as booleans, if it has one entry per action and allows at least one."""
    allowed = np.asarray(mask).astype(np.bool_, copy=False)
    if allowed.shape != (n_actions,):
        raise TabrlError(f"the action mask of observation {obs!r} has shape {allowed.shape}, "
                         f"not ({n_actions},): it does not fit the action space")
    if not allowed.any():
        raise TabrlError(f"the action mask of observation {obs!r} allows no action: an agent "
                         "cannot act there; fix the environment's action_mask")
    return allowed
