"""Robust statistics: values computed by hand, intervals against data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tabrl import stats


def test_iqm_by_hand_on_sizes_divisible_by_four_and_not():
    # 8 runs: the lowest two and the highest two go, the middle four are averaged
    assert stats.iqm(stats.as_matrix([9, 1, 2, 3, 4, 5, 6, 100])) == pytest.approx(4.5)
    # 5 runs: each holds a fifth; the middle half [0.25, 0.75] takes 0.05 of the 2nd, all of the
    # 3rd, 0.05 of the 4th... weights (0, 0.3, 0.4, 0.3, 0) after dividing by the half
    assert stats.iqm_weights(5) == pytest.approx([0, 0.3, 0.4, 0.3, 0])
    assert stats.iqm(stats.as_matrix([10, 0, 1, 2, -50])) == pytest.approx(
        0.3 * 0 + 0.4 * 1 + 0.3 * 2)
    # 6 runs: slices of 1/6; [0.25, 0.75] keeps 1/12 of the 2nd, all of the 3rd and 4th, 1/12
    # of the 5th
    assert stats.iqm_weights(6) == pytest.approx([0, 1 / 6, 1 / 3, 1 / 3, 1 / 6, 0])
    # a looping policy's -inf is trimmed like any other low score
    assert stats.iqm(stats.as_matrix([-np.inf, 1, 2, 3])) == 1.5
    summary = stats.summarize_runs([-np.inf] + [-13.0] * 7)
    assert summary.mean.value == -np.inf and summary.iqm.value == -13.0
    # resamples that draw the looping seed three times or more have an IQM of -inf
    assert (summary.iqm.low, summary.iqm.high, summary.mean.high) == (-np.inf, -13.0, -13.0)
    # rliable's example: runs x tasks, IQM over all 8 scores
    x = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
    assert (stats.mean(x), stats.median(x), stats.iqm(x)) == (1.5, 1.5, 1.5)


@pytest.mark.parametrize("n", [8, 64, 512])
@pytest.mark.parametrize("value", [0.7402, 0.1, 0.7297660174187544])
def test_a_constant_sample_has_zero_width_intervals(n, value):
    """Exactly the value: rounding in the IQM's weighted sums once put a 512-seed sweep's IQM an
    ulp above its interval (and its error bar below zero length)."""
    summary = stats.summarize_runs([value] * n)
    assert summary.iqm.value == summary.iqm.low == summary.iqm.high == value
    assert summary.median.value == summary.median.low == summary.median.high == value
    assert summary.mean.low <= summary.mean.value <= summary.mean.high
    assert summary.mean.value == pytest.approx(value, rel=1e-15)


def test_the_bootstrap_mean_interval_of_a_large_normal_sample_is_mean_pm_1_96_sem():
    sample = np.random.default_rng(7).normal(3.0, 2.0, 2_000)
    sem = sample.std(ddof=1) / np.sqrt(sample.size)
    estimate = stats.bootstrap(sample, stats.mean, seed=1)
    assert estimate.value == pytest.approx(sample.mean())
    assert estimate.low == pytest.approx(sample.mean() - 1.96 * sem, abs=0.1 * sem)
    assert estimate.high == pytest.approx(sample.mean() + 1.96 * sem, abs=0.1 * sem)


def test_intervals_never_leave_the_range_of_the_data():
    # seven seeds at the best stationary value, one stuck: a t interval reaches past 0.7402
    values = np.array([0.7402] * 7 + [0.6522])
    summary = stats.summarize_runs(values)
    for estimate in (summary.mean, summary.median, summary.iqm):
        assert values.min() <= estimate.low <= estimate.value <= estimate.high <= values.max()
    assert summary.iqm.value == pytest.approx(0.7402)  # the stuck seed is trimmed away
    assert "95% stratified-bootstrap" in summary.interval_meaning and "8 runs" in \
        summary.interval_meaning


def test_the_bootstrap_is_stratified_by_task_and_seeded():
    # two tasks with different scales: every resample keeps 3 runs of each task, so the mean of
    # a resample is an average of task means and never mixes a task's runs into the other
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    resamples = stats.stratified_resamples(scores, 500, np.random.default_rng(0))
    assert resamples.shape == (500, 3, 2)
    assert resamples[..., 0].max() <= 2 and resamples[..., 1].min() >= 100
    assert stats.bootstrap(scores, stats.mean, seed=3) == stats.bootstrap(scores, stats.mean,
                                                                          seed=3)


def test_probability_of_improvement_by_hand():
    # every x beats every y; all tied; and 1 of 4 pairs won, 1 tied: (1 + 0.5) / 4
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert stats.probability_of_improvement([2, 2], [2, 2]) == 0.5
    assert stats.probability_of_improvement([1, 2], [1, 3]) == pytest.approx(0.375)
    # rliable's example: tasks averaged; P(X > Y) + P(Y > X) = 1
    x = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
    y = np.array([[1, 1], [2, 2], [3, 3]])
    assert stats.probability_of_improvement(x, y) == pytest.approx(1 / 3)
    assert stats.probability_of_improvement(y, x) == pytest.approx(2 / 3)
    # infinite values (a policy that loops) compare as numbers do
    assert stats.probability_of_improvement([-np.inf, 0.0], [-1.0]) == 0.5


def test_probability_of_improvement_interval():
    sure = stats.improvement([3, 3, 4], [1, 2, 2])
    assert (sure.value, sure.low, sure.high) == (1.0, 1.0, 1.0)
    same = stats.improvement(np.arange(10.0), np.arange(10.0))
    assert same.value == 0.5 and same.low < 0.35 and same.high > 0.65
    shifted = np.random.default_rng(2).normal(0, 1, 200)
    better = stats.improvement(shifted + 1.0, shifted)  # P(N(1,1) > N(0,1)) = Phi(1/sqrt 2)
    assert better.low < 0.76 < better.high and better.high - better.low < 0.12


def test_performance_profile_is_the_fraction_above_each_threshold():
    taus = np.array([0.0, 1.5, 3.5, 5.0])
    assert stats.performance_profile([1, 2, 3, 4], taus).tolist() == [1.0, 0.75, 0.25, 0.0]
    fraction, low, high = stats.profile_band([1, 2, 3, 4], taus)
    assert fraction.tolist() == [1.0, 0.75, 0.25, 0.0]
    assert (low <= fraction).all() and (fraction <= high).all()
    assert (low[0], high[-1]) == (1.0, 0.0)  # above every run, below none: no uncertainty


@pytest.mark.parametrize("runs", [1, 3, 6, 8, 13])
def test_the_curve_band_is_the_iqm_of_each_resample_of_whole_curves(runs):
    """Counted resamples give what copying each resample and sorting it gives (to rounding):
    ties, a never-ending policy's -inf, and sizes not a multiple of 4 included; the band stays
    within the curves and a constant point is exactly its value."""
    rng = np.random.default_rng(runs)
    curves = np.round(rng.normal(size=(runs, 12)), 1)
    curves[rng.random(curves.shape) < 0.15] = -np.inf
    curves[:, 0] = 0.7402
    picks = np.random.default_rng(5).integers(0, runs, (300, runs))
    copied = stats.iqm(np.moveaxis(curves[picks], 1, -1)[..., None])  # resamples x points
    low, high = stats.percentile_interval(copied, stats.CONFIDENCE)
    value, band_low, band_high = stats.curve_band(curves, n_resamples=300, seed=5)
    assert np.array_equal(value, stats.iqm(curves.T[..., None]))
    for ours, theirs in ((band_low, low), (band_high, high)):
        assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
        assert np.allclose(ours, theirs, rtol=0, atol=1e-12, equal_nan=True)
    assert (band_low >= curves.min(axis=0)).all() and (band_high <= curves.max(axis=0)).all()
    assert band_low[0] == band_high[0] == value[0] == 0.7402
