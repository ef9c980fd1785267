"""Command-line values written as ``key=value`` lists: environment keywords, schedules.

Values are read as YAML scalars or lists (``false``, ``0.5``, ``[a,b]``), as in the shipped YAML
files, so a setting reads the same on the command line and in ``hyperparams/<algo>.yml``.
"""

from __future__ import annotations

from typing import Any

import yaml

from tabrl.errors import UsageError


def split_items(text: str) -> list[str]:
    """``"a=1,b=[2,3],c={x: 4, y: 5}"`` -> ``["a=1", "b=[2,3]", "c={x: 4, y: 5}"]``: the commas
    inside brackets or braces belong to their value."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


def parse_key_values(text: str | None, option: str, example: str) -> dict[str, Any]:
    """Parse ``"is_slippery=false,map_name=8x8,desc=[SFF,FHF,FFG]"`` into typed values.

    ``option`` and ``example`` name the command-line option in the error of a malformed item.
    """
    if not text:
        return {}
    values: dict[str, Any] = {}
    for item in split_items(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(
                f"malformed {option} item {item!r}: write key=value pairs separated by commas, "
                f"e.g. {example}"
            )
        try:
            values[key.strip()] = yaml.safe_load(value.strip().replace("(", "[").replace(")", "]"))
        except yaml.YAMLError:
            raise UsageError(f"cannot read the value of {option} {key.strip()}={value!r}") from None
    return values
