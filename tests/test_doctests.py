"""The examples in tabrl's docstrings run, and print what they say."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import tabrl

WITH_EXAMPLES = [
    info.name for info in pkgutil.walk_packages(tabrl.__path__, "tabrl.")
    if not info.name.endswith("__main__")  # importing it runs the command line
    and ">>>" in inspect.getsource(importlib.import_module(info.name))
] + ["tabrl"]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
