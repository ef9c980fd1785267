"""The catalogue of ``tabrl envs``: every registered environment tabrl can train on."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym

from tabrl.envs import discretize, env_source, load_plugin_envs, time_limit_of
from tabrl.errors import UsageError
from tabrl.exact.readers import mdp_of
from tabrl.hyperparams import environment_defaults
from tabrl.spaces import encoder_for, n_actions_of


@dataclass(frozen=True)
class EnvInfo:
    """One line of ``tabrl envs``."""

    env_id: str
    n_states: int
    n_actions: int
    time_limit: int | None
    compiled: bool
    bins: list[int] | int | None = None  #: the shipped bins of a continuous observation space
    source: str = ""  #: the module, plugin or package that registered it (see env_source)


def tabular_envs() -> list[EnvInfo]:
    """Every registered environment that makes without extra dependencies and is tabular, or
    continuous with bins shipped for it (``hyperparams/environments.yml``)."""
    load_plugin_envs()
    found = []
    for env_id, spec in sorted(gym.registry.items()):
        if spec.vector_entry_point and not spec.entry_point:
            continue
        shipped = environment_defaults(env_id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = gym.make(env_id)
            if "bins" in shipped:
                env = discretize(env, shipped["bins"], shipped.get("obs_bounds"))
            encoder = encoder_for(env.observation_space)
            n_actions = n_actions_of(env.action_space)
        except Exception:  # noqa: BLE001 - any env that cannot be made here is simply not listed
            continue
        try:
            mdp_of(env)
            compiled = True
        except UsageError:
            compiled = False
        found.append(EnvInfo(env_id, encoder.n_states, n_actions, time_limit_of(env), compiled,
                             shipped.get("bins"), env_source(env_id)))
        env.close()
    return found
