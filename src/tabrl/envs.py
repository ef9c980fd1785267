"""Making environments from ids and keywords, with one-line errors.

``gymnasium.make`` does the work; this module turns its exceptions into advice (the closest
registered ids, the keywords the environment accepts) and checks that the spaces are tabular.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

from tabrl.errors import UsageError
from tabrl.mdp import time_limit_of
from tabrl.spaces import encoder_for, n_actions_of

#: Episodes of environments without a time limit (CliffWalking) stop after this many steps,
#: so that an exploring agent cannot wander forever; the step is a truncation, not a terminal.
DEFAULT_STEP_CAP = 10_000


def suggest_ids(env_id: str) -> str:
    """Advice for an unknown id: other versions of the same name first, then similar names."""
    name = env_id.rsplit("-v", 1)[0]
    versions = [i for i in gym.registry if i.rsplit("-v", 1)[0] == name]
    close = versions or difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(sorted(close))}?"
    return "run `tabrl envs` for the environments tabrl can train on"


def accepted_kwargs(env_id: str) -> list[str]:
    """The keyword arguments the environment's constructor accepts."""
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(__import__(module, fromlist=[name]), name)
    params = inspect.signature(entry).parameters
    return [p for p in params if p not in ("self", "render_mode") and not p.startswith("_")]


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs)``, with tabular spaces checked."""
    env_kwargs = dict(env_kwargs or {})
    if env_id not in gym.registry:
        raise UsageError(f"unknown environment id {env_id!r}: {suggest_ids(env_id)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, **env_kwargs)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise UsageError(
            f"{env_id} does not accept these keyword arguments ({error}); "
            f"it accepts: {', '.join(accepted_kwargs(env_id)) or 'none'}"
        ) from None
    except gym.error.Error as error:
        raise UsageError(f"cannot make {env_id}: {error}") from None
    except (ValueError, KeyError, AssertionError) as error:
        raise UsageError(f"cannot make {env_id} with {env_kwargs}: {error!r}") from None
    check_tabular(env)
    return env


def check_tabular(env: gym.Env) -> None:
    """A one-line error unless states and actions are discrete and finite."""
    encoder_for(env.observation_space)
    n_actions_of(env.action_space)


def with_step_cap(env: gym.Env, max_steps: int = DEFAULT_STEP_CAP) -> gym.Env:
    """``env`` itself if it has a time limit, else wrapped in a ``TimeLimit`` of ``max_steps``."""
    return env if time_limit_of(env) is not None else TimeLimit(env, max_episode_steps=max_steps)


@dataclass(frozen=True)
class EnvInfo:
    """One line of ``tabrl envs``."""

    env_id: str
    n_states: int
    n_actions: int
    time_limit: int | None
    compiled: bool


def tabular_envs() -> list[EnvInfo]:
    """Every registered environment that makes without extra dependencies and is tabular."""
    from tabrl.mdp import mdp_of

    found = []
    for env_id, spec in sorted(gym.registry.items()):
        if spec.vector_entry_point and not spec.entry_point:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = gym.make(env_id)
            encoder = encoder_for(env.observation_space)
            n_actions = n_actions_of(env.action_space)
        except Exception:  # noqa: BLE001 - any env that cannot be made here is simply not listed
            continue
        try:
            mdp_of(env)
            compiled = True
        except UsageError:
            compiled = False
        found.append(EnvInfo(env_id, encoder.n_states, n_actions, time_limit_of(env), compiled))
        env.close()
    return found
