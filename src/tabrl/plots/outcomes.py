"""How the episodes of a greedy evaluation ended: one bar per outcome, in the words of the
environment's family (win / draw / loss, success / failure / truncated, loops)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from tabrl.errors import UsageError
from tabrl.plots.figures import new_figure


def outcomes_figure(
    outcomes: Mapping[str, float],
    n_episodes: int,
    exact: Mapping[str, float] | None = None,
    title: str = "",
) -> Figure:
    """The share of each outcome over ``n_episodes`` Monte Carlo episodes, with its 95% interval
    (normal approximation of the binomial), and the exact share as a black diamond where known:
    a bar whose interval misses its diamond would be a bug, not noise."""
    if not outcomes or n_episodes < 1:
        raise UsageError("an outcomes picture needs the shares of at least one episode's outcome")
    names = list(outcomes)
    shares = np.array([outcomes[name] for name in names], dtype=np.float64)
    half = 1.96 * np.sqrt(shares * (1 - shares) / n_episodes)
    fig = new_figure((6.4, 1.3 + 0.45 * len(names)))
    ax = fig.subplots()
    rows = np.arange(len(names))[::-1]
    ax.barh(rows, shares, xerr=half, color="C0", alpha=0.8, capsize=4,
            label=f"Monte Carlo, {n_episodes:,} episodes (95% interval)")
    for row, share, reach in zip(rows, shares, shares + half, strict=True):
        ax.text(reach, row, f"  {share:.1%}", va="center", ha="left", fontsize="small")
    if exact:
        known = [(row, exact[name]) for row, name in zip(rows, names, strict=True) if name in exact]
        ax.scatter([share for _, share in known], [row for row, _ in known], marker="D",
                   color="black", zorder=3, label="exact")
    ax.set_yticks(rows, names)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("share of episodes")
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, frameon=False, fontsize="small")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig
