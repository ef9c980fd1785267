"""Plots: exact rolling means, and a valid PNG for every environment family, left atomically."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import matplotlib.image
import numpy as np
import pytest

from tabrl import plots
from tabrl.errors import RunFolderError, UsageError
from tabrl.plots import figures
from tabrl.spaces import encoder_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ENVS = {
    "blackjack": ("Blackjack-v1", {}),
    "lake4": ("FrozenLake-v1", {}),
    "lake8": ("FrozenLake-v1", {"map_name": "8x8"}),
    "lake-custom": ("FrozenLake-v1", {"desc": ["SFFHF", "FHFFG", "FFFHF"]}),
    "cliff": ("CliffWalking-v1", {}),
    "taxi": ("Taxi-v4", {}),
}


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same figures, fewer pixels: keeps the file fast without changing what is drawn."""
    monkeypatch.setattr(figures, "DPI", 40)


def assert_png(path: Path, min_side: int = 100) -> np.ndarray:
    """``path`` is a PNG of sensible size, and nothing temporary is left beside it."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank page
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        p.name for p in path.parent.iterdir() if p.suffix == ".png"
    )
    return image


def random_table(env: gym.Env, seed: int = 0) -> np.ndarray:
    n_rows = encoder_for(env.observation_space).n_states
    return np.random.default_rng(seed).normal(size=(n_rows, int(env.action_space.n)))


def fake_metrics(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "return": (rng.random(n) < np.linspace(0, 0.7, n)).astype(float),
        "length": rng.integers(5, 50, n).astype(float),
        "td_error": np.exp(-np.arange(n) / (n / 4)) + 0.01 * rng.random(n),
    }


# --- rolling_mean ------------------------------------------------------------------------------
def test_rolling_mean_exact_values() -> None:
    episodes, means = plots.rolling_mean(np.arange(10), window=3)
    np.testing.assert_array_equal(episodes, np.arange(2, 10))
    np.testing.assert_allclose(means, np.arange(1, 9))


def test_rolling_mean_window_longer_than_data_uses_all_values() -> None:
    episodes, means = plots.rolling_mean(np.array([1.0, 2.0, 6.0]), window=500)
    np.testing.assert_array_equal(episodes, [2])
    np.testing.assert_allclose(means, [3.0])


def test_curve_window_is_at_most_a_tenth_of_the_run() -> None:
    assert plots.curve_window(500, 100_000) == 500
    assert plots.curve_window(500, 500) == 50  # a curve, not one point
    assert plots.curve_window(500, 5) == 1


def test_rolling_mean_downsamples_to_the_bound_and_keeps_the_ends() -> None:
    values = np.random.default_rng(1).random(1_000_000)
    episodes, means = plots.rolling_mean(values, window=100, max_points=500)
    assert len(episodes) == len(means) <= 500
    assert episodes[0] == 99 and episodes[-1] == values.size - 1
    assert np.all(np.diff(episodes) > 0)
    np.testing.assert_allclose(means[-1], values[-100:].mean())


def test_rolling_mean_of_nothing_and_bad_window() -> None:
    episodes, means = plots.rolling_mean(np.array([]), window=5)
    assert episodes.size == means.size == 0
    with pytest.raises(UsageError):
        plots.rolling_mean(np.arange(5), window=0)


# --- learning curves ---------------------------------------------------------------------------
def test_learning_curves_png(tmp_path: Path) -> None:
    path = plots.plot_learning_curves(
        fake_metrics(5000), tmp_path / "curves.png", window=100, optimal_value=0.74, title="t"
    )
    assert path == tmp_path / "curves.png"
    image = assert_png(path)
    assert image.shape[0] < image.shape[1] < 2 * image.shape[0]  # four panels, two by two


def test_pictures_are_drawn_at_the_dpi_on_white(tmp_path: Path) -> None:
    """One draw on the canvas writes what savefig wrote: the figure's inches at DPI, on white."""
    image = matplotlib.image.imread(
        plots.plot_learning_curves(fake_metrics(10**6), tmp_path / "curves.png", window=500))
    assert image.shape[:2] == (round(8.4 * figures.DPI), 12 * figures.DPI)
    np.testing.assert_array_equal(image[0, 0], [1.0, 1.0, 1.0, 1.0])


def test_learning_curves_short_run_and_missing_series(tmp_path: Path) -> None:
    metrics = fake_metrics(7)
    del metrics["td_error"]
    assert_png(plots.plot_learning_curves(metrics, tmp_path / "curves.png"))


def test_comparison_png(tmp_path: Path) -> None:
    runs = {f"seed {s}": fake_metrics(3000 + 500 * s, seed=s) for s in range(3)}
    path = plots.plot_comparison(runs, tmp_path / "compare.png", window=200, optimal_value=0.7)
    assert_png(path)
    with pytest.raises(UsageError):
        plots.plot_comparison({}, tmp_path / "none.png")


# --- policies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("with_optimum", [False, True], ids=["learned", "with-optimum"])
@pytest.mark.parametrize("name", list(ENVS))
def test_policy_png_per_family(tmp_path: Path, name: str, with_optimum: bool) -> None:
    env_id, kwargs = ENVS[name]
    env = gym.make(env_id, **kwargs)
    q = random_table(env)
    rng = np.random.default_rng(2)
    optimal = rng.integers(0, q.shape[1], len(q)) if with_optimum else None
    visited = rng.random(len(q)) < 0.8
    path = plots.plot_policy(env, q, tmp_path / "policy.png", optimal_policy=optimal,
                             visited=visited)
    assert_png(path)


def test_policy_without_visited_and_with_ties(tmp_path: Path) -> None:
    env = gym.make("FrozenLake-v1")
    assert_png(plots.plot_policy(env, np.zeros((16, 4)), tmp_path / "zeros.png"))


class _Corridor(gym.Env):
    """A user environment of no known family: Discrete(n) observations starting at 3."""

    def __init__(self, n: int) -> None:
        self.observation_space = gym.spaces.Discrete(n, start=3)
        self.action_space = gym.spaces.Discrete(3)


@pytest.mark.parametrize("n", [37, 2500], ids=["outlined", "fine-grid"])
def test_policy_png_for_an_unknown_family(tmp_path: Path, n: int) -> None:
    env = _Corridor(n)
    q = random_table(env)
    optimal = np.zeros(len(q), dtype=int)
    path = plots.plot_policy(env, q, tmp_path / "policy.png", optimal_policy=optimal,
                             visited=np.arange(len(q)) % 5 != 0, title="corridor")
    assert_png(path)


def test_policy_rejects_tables_that_do_not_fit(tmp_path: Path) -> None:
    env = gym.make("FrozenLake-v1")
    with pytest.raises(UsageError, match="rows"):
        plots.plot_policy(env, np.zeros((64, 4)), tmp_path / "p.png")
    with pytest.raises(UsageError, match="optimal_policy"):
        plots.plot_policy(env, np.zeros((16, 4)), tmp_path / "p.png", optimal_policy=[0, 1])
    with pytest.raises(UsageError, match="outside"):
        plots.plot_policy(env, np.zeros((16, 4)), tmp_path / "p.png", optimal_policy=np.full(16, 4))
    with pytest.raises(UsageError):
        plots.plot_policy(env, np.zeros(16), tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="writable"):
        plots.plot_learning_curves(fake_metrics(50), tmp_path / "missing" / "curves.png")
