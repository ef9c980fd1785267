"""Pictures: learning curves (:mod:`tabrl.plots.curves`) and policies (:mod:`tabrl.plots.policies`).

Every function draws on its own :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot) and
writes a PNG atomically.
"""

from tabrl.plots.curves import (
    GreedyPanel,
    SeedCurves,
    curve_window,
    plot_comparison,
    plot_learning_curves,
    plot_profiles,
    plot_seed_curves,
    plot_sweep,
    rolling_mean,
)
from tabrl.plots.policies import plot_policy

__all__ = [
    "GreedyPanel", "SeedCurves", "plot_profiles", "plot_seed_curves",
    "curve_window", "plot_comparison", "plot_learning_curves", "plot_policy", "plot_sweep",
    "rolling_mean",
]
