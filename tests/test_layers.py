"""The package's layers hold: the library never imports the application, and nothing imports in
a circle (import-linter's contracts in pyproject.toml, and grimp's import graph)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("tabrl", cache_dir=None)
    modules = sorted(m for m in graph.modules if m != "tabrl")  # the root only re-exports
    cycles = [
        (importer, imported)
        for importer in modules
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if imported != "tabrl"
        and graph.find_shortest_chain(importer=imported, imported=importer) is not None
    ]
    assert cycles == []
