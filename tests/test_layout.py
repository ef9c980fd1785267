"""Fixed layouts: the pictures of a run, placed in inches with no layout engine, keep every
title, label, colour bar and legend on the page and apart from the panels beside them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from tabrl import plots
from tabrl.curve import Curve

POLICY_ENVS = {
    "blackjack": ("Blackjack-v1", {}),
    "lake4": ("FrozenLake-v1", {}),
    "lake8": ("FrozenLake-v1", {"map_name": "8x8"}),
    "cliff": ("CliffWalking-v1", {}),
    "taxi": ("Taxi-v4", {}),
}


def assert_laid_out(fig: Figure) -> None:
    """Every axes (with its ticks, labels and title), legend and figure text lies on the page,
    and no two of them overlap by more than a pixel."""
    assert fig.get_layout_engine() is None
    fig.set_dpi(72)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = {f"axes {i} ({ax.get_title()!r})": ax.get_tightbbox(renderer)
             for i, ax in enumerate(fig.axes)}
    boxes |= {f"legend {i}": legend.get_window_extent(renderer)
              for i, legend in enumerate(fig.legends)}
    texts = [*fig.texts, *([fig._suptitle] if fig._suptitle else [])]
    boxes |= {f"text {t.get_text()!r}": t.get_window_extent(renderer) for t in texts}
    page = fig.bbox.padded(1)
    for name, box in boxes.items():
        assert page.containsx(box.x0) and page.containsx(box.x1), f"{name} cut off: {box}"
        assert page.containsy(box.y0) and page.containsy(box.y1), f"{name} cut off: {box}"
    items = list(boxes.items())
    for k, (name, box) in enumerate(items):
        for other, other_box in items[k + 1:]:
            overlap = Bbox.intersection(box, other_box)
            assert overlap is None or min(overlap.width, overlap.height) <= 1, (
                f"{name} overlaps {other}")


def metrics(n: int, scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-episode columns whose tick labels are as wide as they get (-1.2e5, 0.00012)."""
    rng = np.random.default_rng(seed)
    return {"return": -scale * rng.random(n), "length": rng.integers(1, 9, n).astype(float),
            "td_error": 1e-4 * rng.random(n)}


def test_curves_of_one_run_with_a_policy_that_never_ends() -> None:
    curve = Curve(np.arange(100, 1100, 100), np.r_[-np.inf, np.linspace(-3e4, -1e3, 9)])
    greedy = plots.GreedyPanel({"": curve}, "exact value", optimal_value=-900.0,
                               stationary_value=-950.0)
    assert_laid_out(plots.learning_curves_figure(metrics(1000, 1.2e5), 50, -900.0,
                                                 "q-learning on a long title", greedy))


def test_curves_of_runs_compared_and_of_seeds() -> None:
    runs = {f"a run named at length {s}": metrics(800, 10.0, s) for s in range(8)}
    assert_laid_out(plots.comparison_figure(runs, 50, 0.5, "eight runs"))
    seeds = plots.SeedCurves(np.arange(100, 900, 100), np.random.default_rng(1).random((3, 8)),
                             [metrics(800, 1.0, s) for s in range(3)])
    assert_laid_out(plots.seed_curves_figure({"": seeds}, 50, plots.GreedyPanel(), "3 seeds"))


@pytest.mark.parametrize(("name", "picture"), [
    *((name, "with-optimum") for name in POLICY_ENVS),  # two policies side by side or stacked
    ("lake4", "optimum"), ("cliff", "learned"),  # one (tabrl solve; no optimum known)
])
def test_policy_pictures(name: str, picture: str) -> None:
    env_id, kwargs = POLICY_ENVS[name]
    env = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(3)
    q = 100 * rng.normal(size=(plots.policies.encoder_for(env.observation_space).n_states,
                               int(env.action_space.n)))
    optimal = None if picture == "learned" else rng.integers(0, q.shape[1], len(q))
    assert_laid_out(plots.policy_figure(env, q, optimal_policy=optimal, visited=rng.random(len(q))
                                        < 0.8, optimum=picture == "optimum"))
