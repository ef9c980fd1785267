"""How far a learned policy is from the best one, for every environment whose MDP is known.

An evaluation by Monte Carlo has noise; where tabrl knows the whole MDP it also reports the exact
value of the learned greedy policy, the optimal value (and the best stationary value found, which
is a little lower under a time limit), the gap, and the share of states, weighted by how often the
optimal policy visits them, where the learned action is optimal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tabrl.exact.dp import TIE, PolicyValue, Solution, evaluate_policy_exact, policy_agreement
from tabrl.exact.mdp import TabularMDP
from tabrl.exact.outcomes import outcome_names, start_loops
from tabrl.spaces import StateEncoder


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an endless policy's value is stored as null."""
    return float(value) if math.isfinite(value) else None


def exact_outcomes(mdp: TabularMDP, value: PolicyValue) -> dict[str, float]:
    """The law of how a policy's episodes end, named as the Monte Carlo outcomes are
    (:func:`tabrl.evaluate.outcome_names`); the shares add up to 1.

    Without a time limit, an episode that ``evaluate_policy_exact`` counts as truncated never
    ends: it loops.
    """
    if mdp.goal_rows is None:
        shares = {"win": value.win, "draw": value.draw, "loss": value.loss,
                  "truncated": value.truncated}
    else:
        endless = mdp.horizon is None
        shares = {"success": value.success_probability or 0.0,
                  "truncated": 0.0 if endless else value.truncated,
                  "loops": value.truncated if endless else 0.0}
        shares["failure"] = max(0.0, 1.0 - sum(shares.values()))
    return {name: shares[name] for name in outcome_names(mdp)}


def exact_report(mdp: TabularMDP, solution: Solution, policy_rows: np.ndarray) -> dict[str, Any]:
    """The exact figures of a greedy policy beside the optimum, ready for ``evaluation.json``."""
    learned = evaluate_policy_exact(mdp, policy_rows)
    loops_from, starts = start_loops(mdp, policy_rows)
    return {
        "policy_value": finite_or_none(learned.value),
        "optimal_value": solution.value,
        "stationary_optimal_value": solution.stationary_value,
        "gap": finite_or_none(solution.value - learned.value),
        "optimal_action_share": policy_agreement(solution, policy_rows),
        "outcomes": exact_outcomes(mdp, learned),
        "loop_start_states": loops_from,
        "start_states": starts,
        "mean_length": finite_or_none(learned.mean_length),
        "horizon": solution.horizon,
    }


def optimal_actions_near(solution: Solution, policy_rows: np.ndarray) -> np.ndarray:
    """An optimal policy as close as possible to ``policy_rows``.

    Where the learned action is one of several optimal actions it is kept, so a picture that marks
    "learned differs from optimal" marks only the states where the learned action is worse.
    """
    q = np.nan_to_num(solution.row_q_values, nan=0.0)
    chosen = q[np.arange(len(q)), policy_rows]
    is_optimal = chosen >= q.max(axis=1) - TIE
    return np.where(is_optimal, policy_rows, solution.policy)


def solution_summary(solution: Solution, mdp: TabularMDP, encoder: StateEncoder) -> dict[str, Any]:
    """The JSON form of a solution: value, objective, and the optimal action per row.

    The outcome probabilities (adding up to 1) are those of the best stationary policy (the one a
    Q-table can hold).
    """
    optimal = evaluate_policy_exact(mdp, solution.stationary_policy)
    return {
        "value": solution.value,
        "stationary_value": solution.stationary_value,
        "discount": solution.discount,
        "horizon": solution.horizon,
        "num_iter": solution.num_iter,
        "settled_at": solution.settled_at,
        "search_rounds": solution.search_rounds,
        "search_cut": solution.search_cut,
        "success_probability": optimal.success_probability,
        "outcomes": exact_outcomes(mdp, optimal),
        "mean_length": finite_or_none(optimal.mean_length),
        "start_values": [
            {"observation": encoder.decode(int(mdp.row_of_state[state])),
             "probability": float(mdp.initial[state]), "value": float(solution.values[state])}
            for state in np.flatnonzero(mdp.initial)
        ],
        "policy": solution.policy.tolist(),
        "stationary_policy": solution.stationary_policy.tolist(),
    }



