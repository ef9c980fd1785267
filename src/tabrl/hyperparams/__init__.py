"""Tuned defaults per environment id and algorithm, shipped as YAML (one file per algorithm).

As in rl_zoo3, ``<algo>.yml`` maps environment ids to hyperparameters; ``default`` covers ids
without an entry. What the user sets on the command line always wins, and the run's config
records the values actually used.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from tabrl.errors import UsageError


def defaults_for(algo: str, env_id: str) -> dict[str, Any]:
    """The default hyperparameters of ``algo`` on ``env_id``."""
    try:
        text = resources.files(__name__).joinpath(f"{algo}.yml").read_text()
    except FileNotFoundError:
        raise UsageError(f"no shipped hyperparameters for the algorithm {algo!r}") from None
    table = yaml.safe_load(text)
    return {**table["default"], **(table.get(env_id) or {})}
