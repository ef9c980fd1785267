"""The README's promises that a number can hold: `make run` prints the table it shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_make_run_prints_the_readme_table(tabrl_cli, tmp_path, monkeypatch):
    """`tabrl train` with no arguments (the tutorial's Blackjack) gives the README's figures, and
    its greedy policy beats the seed's -0.08 (exactly, and over its 10,000 greedy episodes)."""
    monkeypatch.chdir(tmp_path)
    result = tabrl_cli("train", "-q")
    assert result.code == 0, result.stderr
    evaluation = json.loads((Path(result.stdout.strip()) / "evaluation.json").read_text())
    block = README.read_text().split("$ make run\n", 1)[1].split("```", 1)[0]
    rows = {name.strip(): value.strip() for name, value in
            re.findall(r"│ ([a-z /()-]+?)\s+│ (.+?)\s+│", block)}
    assert rows["mean return"].startswith(f"{evaluation['mean_return']:.4f}")
    assert rows["exact value of this policy"] == f"{evaluation['exact']['policy_value']:.4f}"
    assert rows["optimal value"] == f"{evaluation['exact']['optimal_value']:.4f}"
    assert rows["win / draw / loss"] == " / ".join(
        f"{share:.1%}" for share in evaluation["outcomes"].values())
    assert evaluation["exact"]["policy_value"] > -0.08 and evaluation["mean_return"] > -0.08
