"""Tuned defaults per environment id and algorithm, shipped as YAML (one file per algorithm).

As in rl_zoo3, ``<algo>.yml`` maps environment ids to hyperparameters; ``default`` covers ids
without an entry. ``environments.yml`` holds what belongs to an environment whatever the method:
the bins of a continuous observation space, and settings that suit every method there. What the
user sets on the command line always wins, and the run's config records the values actually used.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

from tabrl.errors import UsageError, did_you_mean


def defaults_for(algo: str, env_id: str) -> dict[str, Any]:
    """The default hyperparameters of ``algo`` on ``env_id``: the method's ``default``, then what
    ``environments.yml`` ships for the environment whatever the method (its bins, a sensible
    length of training), then the method's own entry for the environment."""
    shipped = methods()
    if algo not in shipped:
        raise UsageError(f"unknown method {algo!r}: {did_you_mean(algo, shipped)}")
    table = _table(algo)
    return {**table["default"], **environment_defaults(env_id),
            **(table.get(registered_id(env_id)) or {})}


def environment_defaults(env_id: str) -> dict[str, Any]:
    """What ``environments.yml`` ships for ``env_id`` whatever the method (its bins), or ``{}``."""
    return dict(_table("environments").get(registered_id(env_id)) or {})


def registered_id(env_id: str) -> str:
    """The id without the module of the ``module:EnvName-v0`` form: the key of the tables."""
    return env_id.rpartition(":")[2]


def methods() -> list[str]:
    """The methods with shipped hyperparameters: one ``<algo>.yml`` each."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yml") for f in files
                  if f.name.endswith(".yml") and f.name != "environments.yml")


def _table(name: str) -> dict[str, Any]:
    """A shipped file's table, a copy the caller may change (``tabrl envs`` asks once per id)."""
    return copy.deepcopy(_parsed(name))


@functools.cache
def _parsed(name: str) -> dict[str, Any]:
    text = resources.files(__name__).joinpath(f"{name}.yml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
