"""A trained agent's pictures, beside the exact optimum where the environment's MDP is known:
what ``Training.plot``, ``Run.plot`` and ``tabrl plot`` draw (one definition for the three)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import gymnasium as gym
import numpy as np
from matplotlib.figure import Figure

from tabrl.agents import TabularAgent
from tabrl.curve import Curve, describe_values
from tabrl.errors import UsageError
from tabrl.exact.dp import Solution, solve
from tabrl.exact.readers import known_mdp
from tabrl.exact.reference import optimal_actions_near
from tabrl.plots.curves import GreedyPanel, learning_curves_figure
from tabrl.plots.policies import policy_figure


def agent_curves(
    metrics: Mapping[str, np.ndarray], env: gym.Env, window: int = 500, title: str = "",
    curve: Curve | None = None,
) -> Figure:
    """The learning curves of ``metrics`` (a run's columns) after the greedy ``curve``, the
    optimum of ``env`` dashed."""
    solution = optimum_of(env)
    return learning_curves_figure(metrics, window, None if solution is None else solution.value,
                                  title, greedy_panel(env, {"": curve or Curve()}))


def greedy_panel(env: gym.Env | None, curves: Mapping[str, Curve]) -> GreedyPanel:
    """The first panel of curves pictures: the greedy curves, exact where ``env``'s MDP is known
    (None: runs of different environments), with the optimum and the best stationary value."""
    solution = None if env is None else optimum_of(env)
    if solution is None:
        return GreedyPanel(curves, describe_values(False))
    return GreedyPanel(curves, describe_values(True), solution.value, solution.stationary_value)


def agent_policy(env: gym.Env, agent: TabularAgent, title: str = "") -> Figure:
    """The agent's greedy policy (rows never visited greyed), beside an optimal one that keeps
    the learned action wherever it is also optimal, so only worse actions are outlined."""
    table = agent.q_values
    greedy = table.greedy_policy()
    solution = optimum_of(env)
    optimal = None if solution is None else optimal_actions_near(solution, greedy)
    return policy_figure(env, table.array[: table.n_rows], optimal_policy=optimal,
                         visited=table.visited(), title=title)


def optimum_of(env: gym.Env) -> Solution | None:
    """The exact optimum of ``env``, or None where its MDP is unknown (``solve`` caches it)."""
    mdp = known_mdp(env)
    return None if mdp is None else solve(mdp)


#: What ``Training.plot(kind)`` and ``Run.plot(kind)`` draw.
AGENT_PICTURES = ("curves", "policy")


def agent_figure(
    kind: str,
    env: gym.Env,
    agent: TabularAgent,
    metrics: Callable[[], Mapping[str, np.ndarray]],
    window: int,
    title: str,
    curve: Curve | None = None,
) -> Figure:
    """``"curves"`` (of ``metrics()``, read only then, and the greedy ``curve``) or
    ``"policy"``, or a one-line error."""
    if kind == "curves":
        return agent_curves(metrics(), env, window, title, curve)
    if kind == "policy":
        return agent_policy(env, agent, title)
    raise UsageError(f"unknown picture {kind!r}: use one of {', '.join(AGENT_PICTURES)}")
