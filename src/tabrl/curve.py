"""The greedy learning curve: the value of the current greedy policy at evenly spaced episodes.

A moving average of training returns mixes how good the policy is with how much it explores and
with the environment's noise. The greedy curve has neither: at ``n_points`` evenly spaced episode
counts (:func:`curve_episodes`) the engines hand over a copy of the greedy policy (ties to the
lowest action, the policy tabrl evaluates), and :class:`GreedyValue` values it, exactly where the
MDP is known (:func:`tabrl.exact.dp.evaluate_policy_exact`, undiscounted, milliseconds on
toy-text MDPs) and by Monte Carlo with one fixed seed elsewhere (the same episodes' randomness at
every point, so the curve moves only with the policy).

**Curve points never change training.** A point is taken where an episode ends inside a chunk:
the Python loop reads the Q-table between two episodes, and the compiled engine ends a kernel
slice there (its random streams live in its run arrays, so where slices end never changes its
numbers; slices already follow the machine's speed). Chunks, and hence chunk seeds, stay where
they were, so a run with 0, 100 or 1,000 points learns bit for bit the same, and a resumed run
takes the same points as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from tabrl.envs import DEFAULT_STEP_CAP
from tabrl.errors import UsageError
from tabrl.exact.readers import known_mdp
from tabrl.spaces import StateEncoder

CURVE_POINTS = 100  #: points of a run's curve unless told otherwise
CURVE_EVAL_EPISODES = 20  #: Monte Carlo episodes per point where the MDP is unknown
MAX_CURVE_POINTS = 100_000  #: each point costs an evaluation
CURVE_SEED_OFFSET = 1_000_003  #: Monte Carlo points use the seed of the run's evaluation


def curve_episodes(n_episodes: int, n_points: int) -> np.ndarray:
    """The episode counts after which a run of ``n_episodes`` takes its ``n_points`` points:
    ``ceil(k * n_episodes / n_points)`` for k = 1 .. n_points (the last at the run's end), or
    every episode if there are fewer episodes than points."""
    if n_points < 0:
        raise UsageError(f"the number of curve points must be 0 or more, not {n_points}")
    n = min(n_points, n_episodes)
    k = np.arange(1, n + 1, dtype=np.int64)
    return -(-k * n_episodes // max(n, 1))


@dataclass
class Curve:
    """The greedy policy's value (``values``) after ``episodes`` episodes of training."""

    episodes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.episodes)

    def extended(self, later: Curve) -> Curve:
        """This curve followed by ``later``'s points."""
        return Curve(np.concatenate([self.episodes, later.episodes]),
                     np.concatenate([self.values, later.values]))

    def head(self, n_episodes: int) -> Curve:
        """The points taken within the first ``n_episodes`` episodes."""
        keep = int(np.searchsorted(self.episodes, n_episodes, side="right"))
        return Curve(self.episodes[:keep], self.values[:keep])


class GreedyValue:
    """How a curve values a greedy policy (one action per row of ``encoder``) on ``env``.

    Exact (``exact`` is True) where the MDP is known; elsewhere the mean return of
    ``n_episodes`` greedy episodes on a copy of ``env``, every point from the same ``seed``
    (the training environment's random stream is never touched). An exact value is kept for the
    policies valued last (``REMEMBERED``): once learning settles, most points, and the run's
    final value, are a policy valued before, which is then not solved again.
    """

    #: Exact values kept, keyed by a digest of the policy (bytes each, whatever its size).
    REMEMBERED = 256

    def __init__(self, env: gym.Env, encoder: StateEncoder, *, seed: int,
                 max_steps: int = DEFAULT_STEP_CAP, n_episodes: int = CURVE_EVAL_EPISODES
                 ) -> None:
        self.mdp = known_mdp(env)
        self.exact = self.mdp is not None
        self.encoder = encoder
        self.env, self.seed, self.max_steps, self.n_episodes = env, seed, max_steps, n_episodes
        self._copy: gym.Env | None = None
        self._values: dict[tuple, float] = {}

    def __call__(self, policy: np.ndarray) -> float:
        if self.mdp is not None:
            return self._exact(policy)
        from tabrl.evaluate import evaluate_policy

        if self._copy is None:  # reset with the seed at every point: its past does not matter
            self._copy = copy.deepcopy(self.env)
        evaluation = evaluate_policy(policy, self.encoder, self._copy, self.n_episodes,
                                     seed=self.seed, max_steps=self.max_steps)
        return evaluation.mean_return if math.isfinite(evaluation.mean_return) else -math.inf

    def _exact(self, policy: np.ndarray) -> float:
        """The exact value, from memory where this policy was valued lately."""
        from tabrl.exact.dp import policy_value

        policy = np.asarray(policy)
        key = (policy.dtype.str, policy.shape,
               hashlib.blake2b(policy.tobytes(), digest_size=16).digest())
        value = self._values.pop(key, None)
        if value is None:
            value = float(policy_value(self.mdp, policy))
            if len(self._values) >= self.REMEMBERED:
                del self._values[next(iter(self._values))]  # the one valued longest ago
        self._values[key] = value  # last in: the most recent
        return value


def describe_values(exact: bool, n_episodes: int = CURVE_EVAL_EPISODES) -> str:
    """What the values of a curve are, for a picture or a table."""
    if exact:
        return "exact value of the greedy policy"
    return f"greedy mean return (Monte Carlo, {n_episodes} episodes)"
