"""Pictures: learning curves, policies, sweeps and evaluations, as figures or PNG files.

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` on its own Agg canvas (no
pyplot, no global state, no display needed; Jupyter shows it inline), and every ``plot_*``
function saves that same figure as a PNG, atomically, and returns the path:

* :func:`learning_curves_figure` / :func:`plot_learning_curves`: one run's rewards, episode
  lengths and training error, moving averages, the optimum dashed (the Gymnasium tutorial's);
* :func:`comparison_figure` / :func:`plot_comparison`: several runs' curves on shared axes;
* :func:`policy_figure` / :func:`plot_policy`: the greedy policy and state values as the
  environment is read (Blackjack's grids, arrows on a map, bins in the observation's units),
  beside the optimal policy with the differences outlined;
* :func:`sweep_figure` / :func:`plot_sweep`: a row per setting, every seed a dot, mean and IQM
  with their intervals;
* :func:`outcomes_figure`: how the episodes of an evaluation ended, Monte Carlo beside exact;
* :func:`agent_curves`, :func:`agent_policy`: a trained agent's curves and policy beside the
  exact optimum of its environment (what ``tabrl plot`` saves and ``.plot()`` shows);
* :func:`rolling_mean`, :func:`curve_window`: the moving average the curves draw.

The results of the library draw themselves with these: ``Training.plot()``,
``Evaluation.plot()``, ``Solution.plot(env)``, ``Run.plot()`` and ``Sweep.plot()``.
"""

from tabrl.plots.agent import agent_curves, agent_policy
from tabrl.plots.curves import (
    GreedyPanel,
    SeedCurves,
    comparison_figure,
    curve_window,
    learning_curves_figure,
    plot_comparison,
    plot_learning_curves,
    plot_profiles,
    plot_seed_curves,
    plot_sweep,
    rolling_mean,
    seed_curves_figure,
    sweep_figure,
)
from tabrl.plots.outcomes import outcomes_figure
from tabrl.plots.policies import plot_policy, policy_figure

__all__ = [
    "GreedyPanel", "SeedCurves", "agent_curves", "agent_policy", "comparison_figure",
    "curve_window", "learning_curves_figure", "outcomes_figure", "plot_comparison",
    "plot_learning_curves", "plot_policy", "plot_profiles", "plot_seed_curves", "plot_sweep",
    "policy_figure", "rolling_mean", "seed_curves_figure", "sweep_figure",
]
