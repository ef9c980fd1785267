"""Robust statistics over seeds, after rliable (Agarwal et al., *Deep RL at the Edge of the
Statistical Precipice*, NeurIPS 2021).

A handful of seeds is a small, often lopsided sample: tabular learners split into runs that found
the optimum and runs stuck elsewhere. A Student's t interval assumes a normal mean and can reach
past every value a policy can have (above the optimum); the estimates here cannot:

* the **mean**, the **median** and the **interquartile mean** (IQM: the mean of the middle 50%
  of the runs, robust to a few outliers yet using half the data);
* **stratified bootstrap** percentile intervals: runs are resampled with replacement within each
  task (each column of a ``runs x tasks`` matrix), the statistic recomputed, and its 2.5% and
  97.5% percentiles taken. The mean, median and IQM of a resample lie within the range of the
  data, so these intervals never leave it;
* the **probability of improvement** ``P(X > Y)``: the chance that a run of X beats a run of Y
  (the Mann-Whitney U statistic over ``n m``, ties counting half), averaged over tasks;
* **performance profiles**: the fraction of runs whose score exceeds each threshold ``tau``.

Scores are arrays of shape ``(runs,)`` (one task) or ``(runs, tasks)``; everything is numpy and
seeded, so the same scores give the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: A statistic of scores shaped ``(..., runs, tasks)``: one value (or a vector) per leading index.
Statistic = Callable[[np.ndarray], np.ndarray]

#: Bootstrap resamples: rliable's plots use tens of thousands; 10,000 keep the percentiles of a few
#: seeds stable to the third decimal and take milliseconds.
RESAMPLES = 10_000
#: What the intervals of many seeds' estimates are, for tables, pictures and files (``n``: seeds).
INTERVALS = "95% stratified-bootstrap percentile intervals over {n} seeds"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float


def as_matrix(scores: np.ndarray) -> np.ndarray:
    """Scores as a ``(runs, tasks)`` matrix: a vector of runs is one task."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be (runs,) or (runs, tasks) with runs, not {scores.shape}")
    return scores


def mean(scores: np.ndarray) -> np.ndarray:
    """The mean over runs and tasks."""
    return np.mean(scores, axis=(-2, -1))


def median(scores: np.ndarray) -> np.ndarray:
    """The median over runs and tasks, pooled as the IQM pools them.

    rliable's median is the median of the tasks' mean scores, which on one task (a sweep's
    setting) is the mean again; pooled, it is the IQM's limit, the 50% trimmed mean.
    """
    return np.median(scores.reshape(*scores.shape[:-2], -1), axis=-1)


def iqm_weights(n: int) -> np.ndarray:
    """The weight of each of ``n`` sorted scores in the mean of the middle 50%.

    Each score holds ``1/n`` of the empirical distribution; its weight is the share of its slice
    that lies between the quartiles 0.25 and 0.75. When ``n`` is a multiple of 4 this drops the
    lowest and highest quarter exactly (rliable's ``trim_mean(..., 0.25)``); otherwise the two
    scores that straddle a quartile count in part instead of being kept or cut whole.
    """
    edges = np.arange(n + 1) / n
    inside = np.clip(edges[1:], 0.25, 0.75) - np.clip(edges[:-1], 0.25, 0.75)
    return inside / 0.5


def iqm(scores: np.ndarray) -> np.ndarray:
    """The interquartile mean over all runs and tasks (fractional at the quartiles)."""
    flat = scores.reshape(*scores.shape[:-2], -1)
    weights = iqm_weights(flat.shape[-1])
    kept = weights > 0  # a trimmed -inf (a policy that never ends) must not become 0 * inf = NaN
    middle = np.sort(flat, axis=-1)[..., kept]
    # a weighted mean lies between its smallest and largest value; rounding (a matrix product
    # sums in an order of its own, another for a batch of resamples than for one sample) could
    # put it an ulp outside, so that a constant sample's IQM would not be its value
    return np.clip(middle @ weights[kept], middle[..., 0], middle[..., -1])


def stratified_resamples(
    scores: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_resamples`` copies of ``scores`` (runs x tasks), runs drawn with replacement within
    each task: the strata are the tasks, so every task keeps its number of runs."""
    runs, tasks = scores.shape
    picks = rng.integers(0, runs, size=(n_resamples, runs, tasks))
    return np.take_along_axis(np.broadcast_to(scores, (n_resamples, runs, tasks)), picks, axis=1)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap percentile interval of ``samples`` (first axis: the resamples).

    The bounds are resampled values themselves (no interpolation): they stay within what the
    statistic took, and an infinite value (a policy that never ends) cannot turn into a NaN.
    """
    tail = (1 - confidence) / 2
    low = np.quantile(samples, tail, axis=0, method="lower")
    high = np.quantile(samples, 1 - tail, axis=0, method="higher")
    return low, high


def bootstrap(
    scores: np.ndarray, statistic: Statistic, *, n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE, seed: int = 0,
) -> Estimate:
    """The statistic of ``scores`` and its stratified-bootstrap percentile interval."""
    matrix = as_matrix(scores)
    resamples = stratified_resamples(matrix, n_resamples, np.random.default_rng(seed))
    return _estimate(matrix, resamples, statistic, confidence)


def _estimate(matrix: np.ndarray, resamples: np.ndarray, statistic: Statistic,
              confidence: float) -> Estimate:
    low, high = percentile_interval(statistic(resamples), confidence)
    return Estimate(float(statistic(matrix)), float(low), float(high))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y)``: over tasks, the mean of ``U / (n m)``, for runs ``x`` (n x tasks) and ``y``
    (m x tasks); a pair of runs counts 1 if x wins, 1/2 on a tie, 0 otherwise (Mann-Whitney U)."""
    x, y = as_matrix(x), as_matrix(y)
    return float(_improvement_per_resample(x[None], y[None])[0])


def _improvement_per_resample(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y)`` of every resample: ``x`` is ``(R, n, tasks)``, ``y`` ``(R, m, tasks)``."""
    return np.mean([_wins(x[..., task], y[..., task]) for task in range(x.shape[-1])], axis=0)


def _wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``U / (n m)`` of each row pair of ``x`` (R x n) and ``y`` (R x m), in O(R (n+m) log).

    Scores become their ranks among all the values, and row ``r`` is shifted by ``r`` times the
    number of ranks, so that one sorted array answers every row: below a shifted ``x`` lie all
    earlier rows' ``y`` and the ``y`` of its own row that it beats.
    """
    rows, n = x.shape
    m = y.shape[1]
    pooled = np.unique(np.concatenate([x.ravel(), y.ravel()]))
    shift = np.arange(rows)[:, None] * len(pooled)
    x_ranks = (np.searchsorted(pooled, x) + shift).ravel()
    y_sorted = np.sort(np.searchsorted(pooled, y) + shift, axis=1).ravel()
    earlier = np.repeat(np.arange(rows) * m, n)
    below = np.searchsorted(y_sorted, x_ranks, side="left") - earlier
    tied = np.searchsorted(y_sorted, x_ranks, side="right") - earlier - below
    return (below + 0.5 * tied).reshape(rows, n).sum(axis=1) / (n * m)


def improvement(
    x: np.ndarray, y: np.ndarray, *, n_resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE, seed: int = 0,
) -> Estimate:
    """``P(X > Y)`` with its interval: the runs of X and of Y resampled independently, per task."""
    x, y = as_matrix(x), as_matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}: compare the same tasks")
    rng = np.random.default_rng(seed)
    samples = _improvement_per_resample(stratified_resamples(x, n_resamples, rng),
                                        stratified_resamples(y, n_resamples, rng))
    low, high = percentile_interval(samples, confidence)
    return Estimate(probability_of_improvement(x, y), float(low), float(high))


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The fraction of runs (over all tasks) whose score exceeds each ``tau``."""
    flat = as_matrix(scores).ravel()
    return (flat[None, :] > np.asarray(taus, dtype=np.float64)[:, None]).mean(axis=1)


def profile_band(
    scores: np.ndarray, taus: np.ndarray, *, n_resamples: int = 2_000,
    confidence: float = CONFIDENCE, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile at ``taus`` with its pointwise stratified-bootstrap band."""
    matrix = as_matrix(scores)
    taus = np.asarray(taus, dtype=np.float64)
    resamples = stratified_resamples(matrix, n_resamples, np.random.default_rng(seed))
    flat = resamples.reshape(n_resamples, -1)
    fractions = (flat[:, None, :] > taus[None, :, None]).mean(axis=2)
    low, high = percentile_interval(fractions, confidence)
    return performance_profile(matrix, taus), low, high


@dataclass(frozen=True)
class Summary:
    """The robust summary of a set of runs: three estimates, each with its interval."""

    n_runs: int
    mean: Estimate
    median: Estimate
    iqm: Estimate
    confidence: float = CONFIDENCE

    @property
    def interval_meaning(self) -> str:
        """What the intervals are, in the words a table's caption needs."""
        return (f"{self.confidence:.0%} stratified-bootstrap percentile intervals over "
                f"{self.n_runs} runs")


def summarize_runs(scores: np.ndarray, *, seed: int = 0, n_resamples: int = RESAMPLES) -> Summary:
    """Mean, median and IQM of ``scores`` with their stratified-bootstrap intervals (the same
    resamples for all three, so that they are read side by side)."""
    matrix = as_matrix(scores)
    resamples = stratified_resamples(matrix, n_resamples, np.random.default_rng(seed))
    mean_, median_, iqm_ = (_estimate(matrix, resamples, statistic, CONFIDENCE)
                            for statistic in (mean, median, iqm))
    return Summary(matrix.shape[0], mean_, median_, iqm_)


def curve_band(
    curves: np.ndarray, *, n_resamples: int = 2_000, confidence: float = CONFIDENCE, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IQM of learning curves (``runs x points``) at each point, with its pointwise bootstrap
    band: the runs are resampled whole (a resample is a set of curves), so every point of one
    resample comes from the same runs; like every interval here, the band never leaves the
    range of the curves.

    A resample is counted, not copied: how often it draws each run. At each point its IQM
    weighs the runs sorted by their value there (:func:`_counted_iqm`): no sort of every
    resample, and memory of resamples x runs, not x points (sorting copies of every resample
    took 4 s and 1.6 GB for 512 seeds of 100 points).
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[0] == 0:
        raise ValueError(f"curves must be (runs, points) with runs, not {curves.shape}")
    runs, points = curves.shape
    picks = np.random.default_rng(seed).integers(0, runs, (n_resamples, runs))
    counts = np.bincount((picks + runs * np.arange(n_resamples)[:, None]).ravel(),
                         minlength=n_resamples * runs).reshape(n_resamples, runs)
    quarters = np.ascontiguousarray(4.0 * counts.T)  # runs x resamples: a run's row is whole
    order = np.argsort(curves, axis=0, kind="stable")
    samples = np.stack([_counted_iqm(curves[order[:, p], p], quarters[order[:, p]])
                        for p in range(points)], axis=1)
    low, high = percentile_interval(samples, confidence)
    return iqm(curves.T[..., None]), low, high


def _counted_iqm(values: np.ndarray, quarters: np.ndarray) -> np.ndarray:
    """The IQM of each resample of the sorted ``values`` (runs,) that draws run ``i``
    ``quarters[i] / 4`` times (runs x resamples, a copy that this overwrites).

    :func:`iqm`'s weights: a run's share is the slice of the resample its copies hold, counted
    in quarters of a run (the middle half of a resample of n runs is quarters n to 3n), so that
    the sums stay whole numbers. Runs of equal value are one: a learning curve's seeds often
    share a policy, and with it a value. The sums are numpy's own (``einsum``), not a BLAS
    library's, whose order of adding may change with its threads.
    """
    n = values.size
    upto = quarters
    for row in range(1, n):  # a cumulative sum, in place: far faster than np.cumsum on axis 0
        upto[row] += upto[row - 1]
    distinct = np.flatnonzero(np.r_[values[1:] != values[:-1], True])  # the last of each value
    if distinct.size < n:
        values, upto = values[distinct], upto[distinct]
    first, last = (upto <= n).sum(axis=0), (upto < 3 * n).sum(axis=0)  # the values kept
    weights = np.clip(upto, n, 3 * n, out=upto)
    weights[1:] -= weights[:-1].copy()
    weights[0] -= n
    finite = np.isfinite(values)
    means = np.einsum("i,ij->j", np.where(finite, values, 0.0), weights) / (2 * n)
    if not finite.all():  # a kept -inf (a policy that never ends) counts whole, never as 0 * inf
        means += np.where(weights[~finite] > 0, values[~finite, None], 0.0).sum(axis=0)
    # within the first and last values kept despite rounding, as iqm() keeps its mean
    return np.clip(means, values[first], values[last])
