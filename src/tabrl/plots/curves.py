"""Learning curves: the greedy value and moving averages of a run's metrics, runs side by side,
and sweeps.

The first panel is the greedy learning curve (:mod:`tabrl.curve`), the value of the greedy policy
during training, beside the optimum and the best stationary value. The others are moving averages
over a window of episodes (500 by default, as in the Gymnasium tutorial, and at most a tenth of
the run). A run of millions of episodes must plot as fast as a short one, so the moving average
is computed from prefix sums at the few thousand points drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

from tabrl.curve import Curve
from tabrl.errors import UsageError
from tabrl.metrics import prefix_sums_at
from tabrl.plots.figures import (
    LABEL,
    SUPTITLE,
    TICKS,
    PathLike,
    figure_title,
    fix_grid,
    legend_below,
    lines_of,
    new_figure,
    save_png,
    title_room,
)

_CURVE_PANELS = (
    ("return", "Episode rewards", "return"),
    ("length", "Episode lengths", "length (steps)"),
    ("td_error", "Training error", "mean |TD error|"),
)


def rolling_mean(
    values: np.ndarray, window: int, max_points: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """The moving average of ``values`` over ``window``, with the episode index of each point.

    Computed from one cumulative sum ("valid" mode: point ``i`` averages ``values[i:i+window]`` and
    sits at episode ``i + window - 1``, the last one it includes), so it costs O(n) however large
    the window. With fewer values than ``window`` the window shrinks to all of them. The result is
    downsampled to at most ``max_points`` evenly spaced points (first and last kept), because a
    curve of millions of episodes is drawn no better, only slower, with all of them; only the
    sums those points need are kept, read block by block, so a memory-mapped column of any
    length is never loaded whole.
    """
    if window < 1 or max_points < 2:
        raise UsageError(f"rolling window {window} and max_points {max_points} must be >= 1 and 2")
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    window = min(window, n)
    points = n - window + 1
    if points > max_points:  # never an index per episode: 8 bytes each, 800 MB at 10^8
        keep = np.unique(np.linspace(0, points - 1, max_points).round().astype(np.int64))
    else:
        keep = np.arange(points, dtype=np.int64)
    ends = np.unique(np.concatenate([keep, keep + window]))
    sums = prefix_sums_at(np.ravel(values), ends)  # one blockwise pass: memory-mapped stays so
    means = (sums[np.searchsorted(ends, keep + window)] - sums[np.searchsorted(ends, keep)])
    return keep + window - 1, means / window


@dataclass(frozen=True)
class GreedyPanel:
    """What the first panel draws: each run's greedy curve, what its values are, and the lines
    of the optimum and of the best stationary value (the best a Q-table's policy can reach under
    a time limit) where they are known."""

    curves: Mapping[str, Curve] = field(default_factory=dict)
    label: str = "value of the greedy policy"
    optimal_value: float | None = None
    stationary_value: float | None = None


def plot_learning_curves(
    metrics: Mapping[str, np.ndarray],
    path: PathLike,
    window: int = 500,
    optimal_value: float | None = None,
    title: str = "",
    greedy: GreedyPanel | None = None,
) -> Path:
    """Draw one run's greedy curve, rewards, episode lengths and training error.

    ``metrics`` holds one value per episode under ``"return"``, ``"length"`` and ``"td_error"``
    (mean absolute TD error of the episode); those panels are moving averages over ``window``
    episodes, as the Gymnasium tutorial draws them. ``greedy`` is the first panel (its curve
    under the label ``""``). ``optimal_value``, when known, is drawn on the rewards panel as a
    dashed line, so the remaining gap is visible at a glance. Returns the path of the PNG written.
    """
    return save_png(learning_curves_figure(metrics, window, optimal_value, title, greedy),
                    path)


def learning_curves_figure(
    metrics: Mapping[str, np.ndarray],
    window: int = 500,
    optimal_value: float | None = None,
    title: str = "",
    greedy: GreedyPanel | None = None,
) -> Figure:
    """The figure :func:`plot_learning_curves` saves: four panels, one run."""
    return _curves_figure({"": metrics}, window, optimal_value, title, greedy)


def plot_comparison(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: PathLike,
    window: int = 500,
    optimal_value: float | None = None,
    title: str = "",
    greedy: GreedyPanel | None = None,
) -> Path:
    """Draw several runs' learning curves on shared axes, one labelled line per run.

    ``curves`` maps a label (an algorithm, a hyperparameter setting, a seed) to metrics shaped as
    for :func:`plot_learning_curves`, and ``greedy.curves`` the same labels to their greedy
    curves; same panels, same window, so runs compare line by line.
    """
    return save_png(comparison_figure(curves, window, optimal_value, title, greedy), path)


def comparison_figure(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    window: int = 500,
    optimal_value: float | None = None,
    title: str = "",
    greedy: GreedyPanel | None = None,
) -> Figure:
    """The figure :func:`plot_comparison` saves: the four panels, one labelled line per run."""
    if not curves:
        raise UsageError("plot_comparison needs at least one run: pass {label: metrics}")
    return _curves_figure(curves, window, optimal_value, title, greedy)


@dataclass(frozen=True)
class SeedCurves:
    """The curves of one setting's seeds: greedy values (``seeds x points``, taken after
    ``episodes``) and each seed's per-episode metrics (all of the same length)."""

    episodes: np.ndarray
    values: np.ndarray
    metrics: Sequence[Mapping[str, np.ndarray]]


def plot_seed_curves(
    groups: Mapping[str, SeedCurves],
    path: PathLike,
    window: int = 500,
    greedy: GreedyPanel | None = None,
    title: str = "",
) -> Path:
    """The panels of :func:`plot_learning_curves` over seeds: in each, a group's interquartile
    mean over its seeds as a line, and its pointwise 95% stratified-bootstrap band
    (:func:`tabrl.stats.curve_band`), one colour per group (label ``""`` for a lone group)."""
    return save_png(seed_curves_figure(groups, window, greedy, title), path)


def seed_curves_figure(
    groups: Mapping[str, SeedCurves],
    window: int = 500,
    greedy: GreedyPanel | None = None,
    title: str = "",
) -> Figure:
    """The figure :func:`plot_seed_curves` saves."""
    from tabrl.stats import curve_band

    if not groups:
        raise UsageError("plot_seed_curves needs at least one group of seeds")
    greedy = greedy or GreedyPanel()
    fig = new_figure(_PANELS_SIZE, layout=None)
    greedy_ax, *axes = fig.subplots(2, 2).ravel()
    longest = max(len(m.get("return", ())) for g in groups.values() for m in g.metrics)
    shown = curve_window(window, longest)
    for i, group in enumerate(groups.values()):
        if group.values.size:
            _band(greedy_ax, group.episodes, *curve_band(group.values), f"C{i}")
        for ax, (key, _, _) in zip(axes, _CURVE_PANELS, strict=True):
            series = [np.asanyarray(m[key]) for m in group.metrics if len(m.get(key, ()))]
            if series and len({len(s) for s in series}) == 1:
                means = [rolling_mean(s, shown) for s in series]
                _band(ax, means[0][0], *curve_band(np.array([m for _, m in means])), f"C{i}")
    _greedy_panel(greedy_ax, {}, greedy)
    for ax, (_, name, ylabel) in zip(axes, _CURVE_PANELS, strict=True):
        _curve_panel(ax, {}, shown, ylabel, drawn=True)
        ax.set_title(f"{name}\nmoving average over {shown:,} episodes")
    n_seeds = sorted({len(g.values) or len(g.metrics) for g in groups.values()})
    seeds = " or ".join(map(str, n_seeds))
    handles = [Line2D([], [], color=f"C{i}", label=label) for i, label in enumerate(groups)
               if label]
    handles.append(Patch(color="grey", alpha=0.3, label=f"lines: IQM over {seeds} seeds; bands: "
                         "95% stratified-bootstrap intervals"))
    if greedy.optimal_value is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", label="optimum"))
    if greedy.stationary_value is not None:
        handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1.6,
                              label="best stationary policy"))
    _fix_panels(fig, legend_below(fig, handles, 3), title)
    return fig


def plot_profiles(
    taus: np.ndarray,
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: PathLike,
    optimal_value: float | None = None,
    title: str = "",
    xlabel: str = "final greedy value",
) -> Path:
    """Performance profiles (rliable): for each group, the share of its seeds whose value
    exceeds each ``tau``, with its pointwise 95% stratified-bootstrap band
    (:func:`tabrl.stats.profile_band`). A profile above another everywhere dominates it."""
    fig = new_figure((7.5, 4.8))
    ax = fig.subplots()
    for i, (label, (share, low, high)) in enumerate(profiles.items()):
        ax.step(taus, share, where="post", color=f"C{i}", linewidth=1.5, label=label)
        ax.fill_between(taus, low, high, step="post", color=f"C{i}", alpha=0.2, linewidth=0)
    if optimal_value is not None:
        ax.axvline(optimal_value, color="black", linestyle="--", linewidth=1.2, label="optimum")
    ax.set_xlabel(f"{xlabel} tau")
    ax.set_ylabel("share of seeds above tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title("Performance profiles; bands: 95% stratified-bootstrap intervals",
                 fontsize="medium")
    if title:
        fig.suptitle(title, fontsize="large", fontweight="bold")
    return save_png(fig, path)


def _band(ax: Axes, x: np.ndarray, centre: np.ndarray, low: np.ndarray, high: np.ndarray,
          colour: str, label: str | None = None) -> None:
    """A line (named ``label`` in a legend) with its band; infinite values (a policy that never
    ends) are left out."""
    finite = np.isfinite(centre)
    ax.plot(x, np.where(finite, centre, np.nan), color=colour, linewidth=1.5, label=label)
    ok = np.isfinite(low) & np.isfinite(high)
    ax.fill_between(x, np.where(ok, low, np.nan), np.where(ok, high, np.nan), color=colour,
                    alpha=0.25, linewidth=0)


def curve_window(window: int, n_episodes: int) -> int:
    """``window``, but at most a tenth of the longest run drawn: a run of 500 episodes under the
    tutorial's window of 500 would otherwise be a single point, not a curve."""
    return max(1, min(window, n_episodes // 10))


def _curves_figure(
    runs: Mapping[str, Mapping[str, np.ndarray]],
    window: int,
    optimal_value: float | None,
    title: str,
    greedy: GreedyPanel | None,
) -> Figure:
    """Four panels in a square, the greedy curve first; a legend when the lines are labelled or
    an optimum is drawn."""
    fig = new_figure(_PANELS_SIZE, layout=None)
    greedy_ax, *axes = fig.subplots(2, 2).ravel()
    greedy = greedy or GreedyPanel()
    _greedy_panel(greedy_ax, {label: greedy.curves.get(label, Curve()) for label in runs},
                  greedy)
    for ax, (key, name, ylabel) in zip(axes, _CURVE_PANELS, strict=True):
        series = {label: np.asanyarray(m.get(key, ())) for label, m in runs.items()}
        shown = curve_window(window, max(s.size for s in series.values()))
        _curve_panel(ax, series, shown, ylabel)
        ax.set_title(f"{name}\nmoving average over {shown:,} episodes")
    handles = [Line2D([], [], color=f"C{i}", label=label) for i, label in enumerate(runs) if label]
    if optimal_value is not None:
        axes[0].axhline(optimal_value, color="black", linestyle="--", linewidth=1.2)
    if optimal_value is not None or greedy.optimal_value is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", label="optimum"))
    if greedy.stationary_value is not None:
        handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1.6,
                              label="best stationary policy"))
    legend = 0.0
    if handles and not any(runs):
        greedy_ax.legend(handles=handles, loc="lower right")
    elif handles:
        legend = legend_below(fig, handles, 6)
    _fix_panels(fig, legend, title)
    return fig


_PANELS_SIZE = (12, 8.4)


def _fix_panels(fig: Figure, legend: float, title: str) -> None:
    """Lay the four panels out in fixed margins (no layout engine measuring them): room on the
    left for tick labels of up to eight characters (-0.00025) and the axis label, above each
    row for its longest title, and below for the ``legend`` inches and the ``title`` above."""
    if title:
        figure_title(fig, title, fontsize="x-large")
    rows = np.reshape(fig.axes[:4], (2, 2))
    titles = [title_room(max(lines_of(ax.get_title()) for ax in row)) for row in rows]
    axis = TICKS + LABEL  # under each row: tick labels and "episode"
    fix_grid(rows, left=1.05, right=0.2, wspace=1.2,
             top=(SUPTITLE if title else 0.12) + titles[0] + 0.04,
             hspace=axis + 0.16 + titles[1], bottom=axis + 0.12 + legend)


def plot_sweep(
    labels: Sequence[str],
    values: Sequence[np.ndarray],
    estimates: Mapping[str, Sequence],
    path: PathLike,
    optimal_value: float | None = None,
    title: str = "",
    interval: str = "95% intervals over seeds",
) -> Path:
    """One row per setting: every seed's greedy value as a dot, and each estimate (``{"mean":
    [Estimate per setting], "IQM": [...]}``, with ``value``, ``low``, ``high``) with its interval.

    Seeds are drawn, not only their mean, because tabular learners often split into runs that
    found the optimum and runs stuck elsewhere, which a mean and an interval alone would hide.
    """
    return save_png(sweep_figure(labels, values, estimates, optimal_value, title, interval), path)


def sweep_figure(
    labels: Sequence[str],
    values: Sequence[np.ndarray],
    estimates: Mapping[str, Sequence],
    optimal_value: float | None = None,
    title: str = "",
    interval: str = "95% intervals over seeds",
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Figure:
    """The figure :func:`plot_sweep` saves: a row per setting, seeds as dots, estimates as bars;
    with ``curves`` (label -> episodes and ``seeds x points`` greedy values), each setting's
    greedy learning curve beside it, as an IQM line in a 95% stratified-bootstrap band."""
    if not labels:
        raise UsageError("plot_sweep needs at least one setting")
    height = 1.4 + 0.5 * len(labels)
    fig = new_figure((16, max(height, 4.8)) if curves else (9, height))
    ax, *beside = fig.subplots(1, 2 if curves else 1, squeeze=False).ravel()
    rows = np.arange(len(labels))[::-1]
    for row, seed_values in zip(rows, values, strict=True):
        finite = np.asarray(seed_values)[np.isfinite(seed_values)]
        ax.scatter(finite, np.full(finite.size, row), s=14, color="C0", alpha=0.45, zorder=2)
    offsets = np.linspace(0.18, -0.18, len(estimates)) if len(estimates) > 1 else [0.0]
    for (name, per_setting), offset, marker, colour in zip(
            estimates.items(), offsets, "Dos^", ("C3", "C2", "C1", "C4")):
        centre, low, high = (np.array([getattr(e, part) for e in per_setting], dtype=np.float64)
                             for part in ("value", "low", "high"))
        shown = np.isfinite(centre) & np.isfinite(low) & np.isfinite(high)
        # a percentile interval need not hold its point estimate (a skewed bootstrap): no bar
        # reaches below zero length
        below = np.maximum(centre[shown] - low[shown], 0)
        above = np.maximum(high[shown] - centre[shown], 0)
        ax.errorbar(centre[shown], rows[shown] + offset, xerr=[below, above], fmt=marker,
                    color=colour, capsize=4, zorder=3, label=name)
    if optimal_value is not None:
        ax.axvline(optimal_value, color="black", linestyle="--", linewidth=1.2, label="optimum")
    ax.set_yticks(rows, labels)
    ax.set_xlabel(f"greedy value\ndots: seeds; bars: {interval}")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(handles=ax.get_legend_handles_labels()[0], loc="outside lower center",
               ncols=len(estimates) + 1)
    if curves:
        _sweep_curves(beside[0], curves, optimal_value)
    if title:
        fig.suptitle(title, fontsize="large", fontweight="bold")
    return fig


def _sweep_curves(ax: Axes, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  optimal_value: float | None) -> None:
    """Each setting's greedy learning curves: IQM over its seeds, pointwise bootstrap band."""
    from tabrl.stats import curve_band

    for i, (label, (episodes, values)) in enumerate(curves.items()):
        _band(ax, episodes, *curve_band(values), f"C{i}", label)
    if optimal_value is not None:
        ax.axhline(optimal_value, color="black", linestyle="--", linewidth=1.2)
    ax.set_title("Greedy policy during training\nIQM over seeds, 95% stratified-bootstrap bands")
    ax.set_xlabel("episode")
    ax.set_ylabel("value of the greedy policy")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.legend(fontsize="small", loc="lower right")


def _greedy_panel(ax: Axes, curves: Mapping[str, Curve], greedy: GreedyPanel) -> None:
    """Each run's greedy curve, points joined; a policy that never ends (value -inf) is an x
    on the panel's lower edge."""
    never_ends = False
    for i, curve in enumerate(curves.values()):
        finite = np.isfinite(curve.values)
        ax.plot(curve.episodes, np.where(finite, curve.values, np.nan), color=f"C{i}",
                linewidth=1.4, marker="." if len(curve) <= 30 else None)
        if not finite.all():
            never_ends = True
            ax.plot(curve.episodes[~finite], np.zeros((~finite).sum()), "x", color=f"C{i}",
                    transform=ax.get_xaxis_transform(), clip_on=False)
    if not ax.lines:
        ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="grey")
    if greedy.optimal_value is not None:
        ax.axhline(greedy.optimal_value, color="black", linestyle="--", linewidth=1.2)
    if greedy.stationary_value is not None:
        ax.axhline(greedy.stationary_value, color="grey", linestyle=":", linewidth=1.6)
    ax.set_title("Greedy policy\n" + greedy.label + ("\nx: it never ends (-inf)"
                                                     if never_ends else ""))
    ax.set_xlabel("episode")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _curve_panel(ax: Axes, series: Mapping[str, np.ndarray], window: int, ylabel: str,
                 drawn: bool = False) -> None:
    """One line per run (colour by run order, so a run keeps its colour across panels);
    ``drawn``: the lines are on the axes already."""
    for i, values in enumerate(series.values()):
        if values.size:
            episodes, means = rolling_mean(values, window)
            ax.plot(episodes, means, color=f"C{i}", linewidth=1.4)
    if not drawn and not any(values.size for values in series.values()):
        ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 250k, 1.5M: episodes read at a glance
