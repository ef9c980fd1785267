"""Results in a notebook: short reprs (80 columns), HTML tables that escape their text, ``.plot()``
figures, and docs/quickstart.ipynb executed fresh by a kernel of this test environment."""

from __future__ import annotations

import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from matplotlib.figure import Figure

import tabrl
from tabrl.display import as_html, as_text
from tabrl.errors import UsageError

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def lake():
    """A short FrozenLake training (python engine), its evaluation and the optimum."""
    env = gym.make("FrozenLake-v1")
    training = tabrl.train(env, n_episodes=600, engine="python", seed=0, learning_rate=0.1,
                           epsilon_decay=1 / 300, final_epsilon=0.05, discount_factor=0.99)
    evaluation = tabrl.evaluate(training.agent, training.env, n_episodes=200, seed=1)
    return env, training, evaluation, tabrl.solve(env)


class Table(HTMLParser):
    """The caption and the (name, value) rows of a result's HTML table, as text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.caption = ""
        self.tag = ""
        self.feed(html)
        self.rows = list(zip(self.cells[::2], self.cells[1::2], strict=True))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tag = tag
        if tag in ("th", "td"):
            self.cells.append("")

    def handle_data(self, data: str) -> None:
        if self.tag == "caption":
            self.caption += data
        elif self.tag in ("th", "td"):
            self.cells[-1] += data


def assert_shown(result: object, title: str, names: list[str]) -> list[str]:
    """The repr is the title and one line per fact, within 80 columns and 12 lines; the HTML
    table holds the same facts. Returns the repr's lines."""
    lines = repr(result).splitlines()
    assert lines[0] == title
    assert [line.split("  ")[1].strip() for line in lines[1:]] == names
    assert max(map(len, lines)) <= 80 and len(lines) <= 12
    table = Table(result._repr_html_())
    assert table.caption == title
    assert [name for name, _ in table.rows] == names
    return lines


def test_training_shows_its_facts_and_draws_curves_and_policy(lake) -> None:
    env, training, _, _ = lake
    lines = assert_shown(training, "Training: q-learning on FrozenLake-v1", [
        "episodes", "engine", "time", "mean return", "epsilon now", "states visited"])
    assert lines[1].endswith(" 600") and lines[2].endswith(" python")
    tail = training.log.returns[-60:].mean()
    assert lines[4].endswith(f"{tail:+.4f} over the last 60 episodes")
    assert lines[6].endswith(f"{int(training.agent.q_values.visited().sum())} of 16")
    curves = training.plot(window=50)
    assert isinstance(curves, Figure)
    greedy, *averages = curves.axes
    assert greedy.get_title().startswith("Greedy policy")  # tabrl.train records no curve
    assert [ax.get_title() for ax in averages] == [
        f"{name}\nmoving average over 50 episodes"
        for name in ("Episode rewards", "Episode lengths", "Training error")]
    optimum = [line for line in averages[0].lines if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in optimum] == [tabrl.solve(env).value]
    policy = training.plot("policy", title="<mine>")
    assert policy.get_suptitle() == "<mine>"
    assert [text.get_text() for text in policy.texts] == [  # the panels' titles, the figure's
        "Learned greedy policy", "Optimal policy", "<mine>"]
    with pytest.raises(UsageError, match="unknown picture 'values': use one of curves, policy"):
        training.plot("values")


def test_evaluation_shows_the_cli_table_and_draws_outcomes(lake) -> None:
    _, _, evaluation, _ = lake
    e = evaluation
    lines = assert_shown(e, "Evaluation of the greedy policy (seed 1)", [
        "episodes", "mean return", "std / sem", "success / failure / truncated", "mean length"])
    assert lines[2].endswith(f"{e.mean_return:+.4f}  (95% CI {e.ci95_low:+.4f} .. "
                             f"{e.ci95_high:+.4f})")
    shares = " / ".join(f"{share:.1%}" for share in e.outcomes.values())
    assert lines[4].endswith(shares)
    figure = e.plot()
    assert figure.get_suptitle() == f"greedy policy: mean return {e.mean_return:+.4f}"
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["success", "failure", "truncated"]
    assert [round(bar.get_width(), 12) for bar in ax.patches] == [
        round(share, 12) for share in e.outcomes.values()]


def test_evaluation_with_exact_figures_draws_them_too(lake) -> None:
    _, _, evaluation, _ = lake
    exact = {"success": 0.7, "failure": 0.2, "truncated": 0.1}
    e = type(evaluation).from_dict({**evaluation.to_dict(), "exact": {
        "policy_value": 0.7, "optimal_value": 0.7442, "stationary_optimal_value": 0.7402,
        "gap": 0.0442, "optimal_action_share": 0.9, "outcomes": exact}})
    facts = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in repr(e).splitlines()]
    assert facts[-5:] == [
        ["exact value of this policy", "+0.7000"],
        ["optimal value", "+0.7442  (best stationary +0.7402)"],
        ["gap to optimum", "+0.0442"],
        ["optimal actions (visit-weighted)", "90.0%"],
        ["exact success / failure / truncated", "70.0% / 20.0% / 10.0%"],
    ]
    diamonds = e.plot().axes[0].collections[-1].get_offsets()
    assert diamonds[:, 0].tolist() == [0.7, 0.2, 0.1]


def test_solution_shows_the_optimum_and_draws_it(lake) -> None:
    env, _, _, solution = lake
    lines = assert_shown(solution, "Solution: the exact optimum", [
        "objective", "backward induction", "optimal value", "best stationary policy", "size"])
    assert lines[1:] == [
        "  objective               undiscounted return within 100 steps",
        "  backward induction      values still changing at 100 steps",
        "  optimal value           +0.7442",
        "  best stationary policy  +0.7402",
        "  size                    16 states, 16 observations, 4 actions",
    ]
    figure = solution.plot(env)
    assert figure.get_suptitle() == "optimal policy of FrozenLake-v1"
    assert [text.get_text() for text in figure.texts] == [
        "Optimal policy", "optimal policy of FrozenLake-v1"]


def test_a_run_folder_shows_itself_and_draws_what_tabrl_plot_saves(tiny_run: Path) -> None:
    run = tabrl.load_run(tiny_run)
    lines = assert_shown(run, "Run: q-learning on FrozenLake-v1", [
        "folder", "episodes", "settings", "engine", "greedy mean return",
        "exact value / optimum"])
    assert lines[2].endswith(" 30 of 30") and lines[4].endswith(" python")
    assert Table(run._repr_html_()).rows[0] == ("folder", str(tiny_run))  # never cut in HTML
    curves = run.plot()
    assert curves.axes[1].get_title() == "Episode rewards\nmoving average over 3 episodes"
    assert run.plot("curves", window=2).axes[1].get_title().endswith("over 2 episodes")
    assert run.plot("policy").get_suptitle() == "q-learning on FrozenLake-v1"


def test_a_sweep_shows_a_line_per_setting_and_draws_its_seeds() -> None:
    sweep = tabrl.sweep("FrozenLake-v1", {"learning_rate": [0.1, 0.5]}, seeds=2, jobs=1,
                        episodes=100, engine="python")
    lines = assert_shown(sweep, "Sweep: q-learning on FrozenLake-v1: 2 seeds per setting", [
        "each setting", "optimum", "learning_rate=0.1", "learning_rate=0.5"])
    for line, summary in zip(lines[3:], sweep.summaries, strict=True):
        mean = summary.mean
        assert f"{mean.value:+.4g} [{mean.low:.4g}, {mean.high:.4g}], IQM " in line
    figure = sweep.plot()
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "learning_rate=0.1", "learning_rate=0.5"]
    dots = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections[:2]])
    assert sorted(dots) == sorted(job.value for job in sweep.jobs)
    with pytest.raises(UsageError, match="'learning_rat' is not a setting"):
        tabrl.sweep("FrozenLake-v1", {"learning_rat": [0.1]}, seeds=1)
    with pytest.raises(UsageError, match=r"grid\['episodes'\] must be a non-empty list"):
        tabrl.sweep("FrozenLake-v1", {"episodes": 100}, seeds=1)


def test_text_stays_within_80_columns_and_html_escapes() -> None:
    facts = [("path", "/a/" + "x" * 200 + "/end"), ("<b>", "a & b")]
    lines = as_text("t" * 100, facts).splitlines()
    assert max(map(len, lines)) == 80 and lines[0].endswith("ttt")
    assert lines[1].startswith("  path  /a/xx") and lines[1].endswith("x/end")
    assert "..." in lines[1]
    html = as_html("<title>", facts)
    assert "<title>" not in html and "&lt;title&gt;" in html and "a &amp; b" in html
    assert Table(html).rows[1] == ("<b>", "a & b")


def test_figures_show_themselves_in_jupyter_as_png(lake) -> None:
    png = lake[2].plot()._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_quickstart_notebook_runs(tmp_path: Path) -> None:
    """Executed fresh (stored without outputs), by a kernel of this interpreter with this tabrl,
    every cell without error, and every figure shown as a picture."""
    nbformat = pytest.importorskip("nbformat")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(cell.outputs for cell in code), "store docs/quickstart.ipynb without outputs"
    kernels = tmp_path / "kernels" / "tabrl-test"
    kernels.mkdir(parents=True)
    source = str(Path(tabrl.__file__).resolve().parents[1])
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tabrl tests", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])},
    }))
    manager = KernelManager(kernel_name="tabrl-test", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(kernels.parent)]))
    client = NotebookClient(notebook, km=manager, timeout=120, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert all(cell.outputs for cell in code)
    pictures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    tables = [o for cell in code for o in cell.outputs if "text/html" in o.get("data", {})]
    assert len(pictures) == 6 and len(tables) == 4
    assert any("Solution: the exact optimum" in o["data"]["text/html"] for o in tables)
