"""The accuracy benchmark's metrics and naive forecasts against hand computations (fast, no pipeline)."""

import math

import numpy as np
import pytest

from benchmarks import accuracy_metrics as am


def test_persistence_repeats_the_value_at_the_origin():
    np.testing.assert_array_equal(am.persistence_forecast(np.array([1.0, 2.0, 5.0, 9.0]), 2, 3), [5, 5, 5])


def test_seasonal_naive_looks_back_whole_seasons_from_each_target():
    values = np.arange(10.0)  # value = index
    # Origin 7, m = 3: targets 8, 9, 10, 11 take 8-3, 9-3, 10-3, 11-6 = 5, 6, 7, 5.
    np.testing.assert_array_equal(am.seasonal_naive_forecast(values, 7, 4, 3), [5, 6, 7, 5])
    # m = 1 is persistence.
    np.testing.assert_array_equal(am.seasonal_naive_forecast(values, 7, 3, 1), [7, 7, 7])
    # It equals the pipeline's window version: the last full season of the history, repeated.
    history = values[: 7 + 1]
    np.testing.assert_array_equal(am.seasonal_naive_forecast(values, 7, 5, 4),
                                  history[len(history) - 4 + np.arange(5) % 4])


def test_seasonal_naive_needs_one_season_before_the_origin():
    with pytest.raises(ValueError, match="less than one season"):
        am.seasonal_naive_forecast(np.arange(10.0), 2, 2, 4)


def test_errors_against_a_hand_computation():
    actual = np.array([[2.0, 0.0], [4.0, -1.0]])
    forecast = np.array([[1.0, 0.0], [5.0, 1.0]])
    # |errors| = [[1, 0], [1, 2]]
    assert am.mae(actual, forecast) == pytest.approx(1.0)
    assert am.rmse(actual, forecast) == pytest.approx(np.sqrt(6 / 4))
    # The point where both are 0 is left out: 200 * (1/3 + 1/9 + 2/2) / 3.
    assert am.smape(actual, forecast) == pytest.approx(200 * (1 / 3 + 1 / 9 + 1) / 3)
    assert np.isnan(am.smape(np.zeros((1, 2)), np.zeros((1, 2))))


def test_seasonal_naive_scale_skips_missing_pairs():
    values = np.array([1.0, 2.0, 4.0, np.nan, 7.0])
    # m = 2: pairs (4-1), (nan-2), (7-4) -> mean(3, 3) = 3.
    assert am.seasonal_naive_scale(values, 2) == pytest.approx(3.0)
    # m = 1: |2-1| and |4-2|; the two pairs with the missing point are left out.
    assert am.seasonal_naive_scale(values, 1) == pytest.approx(1.5)
    assert np.isnan(am.seasonal_naive_scale(values[:2], 2))


def test_mase_is_the_mean_over_series_of_scaled_maes():
    actual = np.array([[1.0, 1.0], [2.0, 2.0], [10.0, 10.0]])
    forecast = np.array([[2.0, 2.0], [2.0, 4.0], [13.0, 13.0]])
    ids = ["a", "a", "b"]
    # Series a: MAE mean(1, 1, 0, 2) = 1, scale 2 -> 0.5; series b: MAE 3, scale 6 -> 0.5; b's
    # windows do not weigh more for being larger.
    assert am.mase(actual, forecast, ids, {"a": 2.0, "b": 6.0}) == pytest.approx(0.5)
    assert am.mase(actual, forecast, ids, {"a": 1.0, "b": 6.0}) == pytest.approx((1.0 + 0.5) / 2)


def test_skill_divides_by_the_best_naive():
    assert am.skill(0.5, [2.0, 1.0, 4.0]) == pytest.approx(0.5)
    assert am.skill(1.0, [1.0]) == 1.0


@pytest.mark.parametrize("count, at_most, expected", [
    (5, 10, [0, 1, 2, 3, 4]),
    (10, 4, [0, 3, 6, 9]),
    (100, 2, [0, 99]),
    (7, 1, [6]),
])
def test_even_subsample_spreads_origins_over_the_split(count, at_most, expected):
    np.testing.assert_array_equal(am.even_subsample(count, at_most), expected)


def test_newey_west_se_is_the_bartlett_weighted_variance_of_the_mean():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50).cumsum() * 0.1 + rng.normal(size=50)
    u, n, lags = values - values.mean(), 50, 3
    autocovariance = [(u[lag:] * u[:n - lag]).sum() / n for lag in range(lags + 1)]
    variance = (autocovariance[0] + 2 * sum((1 - lag / (lags + 1)) * autocovariance[lag]
                                            for lag in range(1, lags + 1))) / n
    assert am.newey_west_se(values, lags) == pytest.approx(np.sqrt(variance), rel=1e-12)
    # Without lags: the plain standard error (ddof 0).
    assert am.newey_west_se(values, 0) == pytest.approx(values.std() / np.sqrt(n), rel=1e-12)


def test_band_lags_cover_every_overlap_of_the_windows_targets():
    one = np.array(["a"] * 40)
    # Consecutive daily windows of 14 days share targets up to 13 origins apart.
    assert am.band_lags(np.arange(40), one, 14, 40) == 13
    # Windows 32 steps apart of 24 steps share none: the usual rule, floor(4 (40/100)^(2/9)) = 3.
    assert am.band_lags(np.arange(40) * 32, one, 24, 40) == 3
    # Two series on the same origins: the gap is each series' own.
    assert am.band_lags(np.tile(np.arange(10) * 2, 2), np.repeat(["a", "b"], 10), 4, 10) == 2


def test_origin_means_average_the_series_at_each_origin_in_time_order():
    np.testing.assert_allclose(am.origin_means(np.array([1.0, 3.0, 10.0, 20.0]), np.array([5, 5, 2, 2])), [15, 2])


def test_ratio_band_holds_the_ratio_and_widens_with_noisier_differences():
    rng = np.random.default_rng(1)
    actual = rng.normal(size=(40, 3))
    reference = actual + 1.0  # MAE 1 on every window
    close = actual + np.where(rng.random((40, 3)) < 0.5, 0.9, -1.1)  # MAE about 1

    def split(forecast, rows=slice(None), origins=None):
        """One split of per-window MAEs (forecast, reference) at ``origins`` (default: one each, 0..39)."""
        return (np.abs(actual[rows] - forecast[rows]).mean(axis=1), np.abs(actual[rows] - reference[rows]).mean(axis=1),
                np.arange(40) if origins is None else origins, 2)

    band = am.ratio_band([split(close)])
    assert band.estimate == pytest.approx(np.abs(actual - close).mean())
    assert band.low < band.estimate < band.high and band.origins == 40 and band.lags == 2
    # Every window 20% better than the reference: no spread of the differences, so no width.
    exact = am.ratio_band([split(actual + 0.8)])
    assert exact.estimate == pytest.approx(0.8) and exact.high - exact.low == pytest.approx(0, abs=1e-12)
    assert not exact.holds(1.0)
    # Too few origins (two series at 5 origins): no band.
    assert am.ratio_band([split(close, slice(10), np.tile(np.arange(5), 2))]) is None


def test_coverage_band_is_the_hit_rate_and_its_newey_west_band():
    hits = np.zeros((20, 2), dtype=bool)
    hits[::2] = True  # every other window covers both steps: coverage 0.5
    band = am.coverage_band(hits, np.arange(20), lags=1)
    se = am.newey_west_se(np.where(np.arange(20) % 2 == 0, 1.0, 0.0), 1)
    assert band.estimate == 0.5
    assert (band.low, band.high) == pytest.approx((0.5 - am.Z_90 * se, 0.5 + am.Z_90 * se))
    assert band.holds(0.5) and not band.holds(0.5 + 2 * am.Z_90 * se)


def test_pooled_mean_se_adds_independent_stretches_weighted_by_their_origins():
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=30), rng.normal(size=12) + 0.5
    assert am.pooled_mean_se([(first, 2)]) == pytest.approx(am.newey_west_se(first, 2), rel=1e-12)
    expected = np.sqrt((30 * am.newey_west_se(first, 2)) ** 2 + (12 * am.newey_west_se(second, 1)) ** 2) / 42
    assert am.pooled_mean_se([(first, 2), (second, 1)]) == pytest.approx(expected, rel=1e-12)


def test_ratio_band_pools_the_windows_of_every_split():
    rng = np.random.default_rng(3)
    a, b = rng.random(20) + 0.5, rng.random(20) + 1.0
    c, d = rng.random(15) + 0.2, rng.random(15) + 1.0
    one, two = (a, b, np.arange(20), 2), (c, d, np.arange(15), 1)
    band = am.ratio_band([one, two])
    ratio = np.concatenate([a, c]).mean() / np.concatenate([b, d]).mean()
    se = am.pooled_mean_se([(a - ratio * b, 2), (c - ratio * d, 1)]) / np.concatenate([b, d]).mean()
    assert band.estimate == pytest.approx(ratio, rel=1e-12)
    assert (band.low, band.high) == pytest.approx((ratio - am.Z_90 * se, ratio + am.Z_90 * se), rel=1e-12)
    assert (band.origins, band.lags) == (35, 2)
    # The same stretch twice (as if independent): the same ratio, a band narrower by sqrt(2).
    twice = am.ratio_band([one, one])
    single = am.ratio_band([one])
    assert twice.estimate == pytest.approx(single.estimate)
    assert (twice.high - twice.low) * np.sqrt(2) == pytest.approx(single.high - single.low, rel=1e-9)
    # One split with too few origins is joined to the others: one series of their origins.
    short = (c[:5], d[:5], np.arange(100, 105), 1)
    joined = am.ratio_band([one, short])
    ratio = np.concatenate([a, c[:5]]).mean() / np.concatenate([b, d[:5]]).mean()
    se = am.newey_west_se(np.concatenate([a, c[:5]]) - ratio * np.concatenate([b, d[:5]]), 2) \
        / np.concatenate([b, d[:5]]).mean()
    assert joined.estimate == pytest.approx(ratio, rel=1e-12) and (joined.origins, joined.lags) == (25, 2)
    assert joined.high - joined.estimate == pytest.approx(am.Z_90 * se, rel=1e-12)
    # Too few origins in all: no band.
    assert am.ratio_band([(a[:4], b[:4], np.arange(4), 1), short]) is None


def test_short_stretches_are_joined_in_time_order_and_long_ones_kept_apart():
    values = np.arange(9, dtype=np.float64)
    stretch = lambda first: (values + first, np.arange(first, first + 9), 3)  # noqa: E731
    # Listed latest first, as benchmarks.stretches lists its cuts: one split, origins in time order.
    [(fractions, origins, lags)] = am.joined_if_short([stretch(200), stretch(100), stretch(0)])
    assert lags == 3 and len(origins) == 27
    np.testing.assert_array_equal(am.origin_means(fractions, origins),
                                  np.concatenate([values, values + 100, values + 200]))
    long = (np.ones(12), np.arange(12), 2)
    assert am.joined_if_short([long, long]) == [long, long]
    assert len(am.joined_if_short([long, stretch(100)])) == 1
    tiny = (np.ones(4), np.arange(4), 1)
    assert am.joined_if_short([tiny, tiny]) == [tiny, tiny]
    assert am.fraction_band([tiny, tiny]) is None


def test_fraction_band_pools_per_window_fractions():
    hits_a = np.where(np.arange(20) % 2 == 0, 1.0, 0.5)
    hits_b = np.where(np.arange(10) % 5 == 0, 0.0, 1.0)
    band = am.fraction_band([(hits_a, np.arange(20), 1), (hits_b, np.arange(10), 1)])
    assert band.estimate == pytest.approx(np.concatenate([hits_a, hits_b]).mean())
    se = am.pooled_mean_se([(hits_a, 1), (hits_b, 1)])
    assert band.high - band.estimate == pytest.approx(am.Z_90 * se, rel=1e-12)
    # A window's fraction of its targets or each target: the same band.
    per_target = np.stack([hits_a > 0.9, hits_a > 0.4], axis=1)
    assert am.coverage_band(per_target, np.arange(20), 1) == am.coverage_band(hits_a, np.arange(20), 1)


def test_a_backtest_fold_drops_the_last_fraction_of_the_time_span_of_every_series(tmp_path):
    import pandas as pd

    from benchmarks import datasets
    days = pd.date_range("2024-01-01", periods=11, freq="D").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"timestamp": list(days) * 2, "value": np.arange(22.0), "series_id": ["a"] * 11 + ["b"] * 11})
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    # A span of 10 days less its last 0.3: days 0..7 of each series.
    assert datasets.truncate(str(path), 0.3) == 16
    kept = pd.read_csv(path)
    assert list(kept["timestamp"]) == list(days[:8]) * 2
    np.testing.assert_array_equal(kept["value"], np.r_[0:8, 11:19])


def test_set_means_are_what_defaults_are_chosen_on():
    coverages = {"a": {"50": 0.1, "80": 0.75, "95": 0.97}, "b": {"80": 0.8, "95": 0.95}, "c": None}
    means = am.set_means({"a": 1.1, "b": 0.9, "c": float("nan")}, coverages)
    # (|0.75 - 0.8| + |0.97 - 0.95|) / 2 = 0.035 and 0 for b: the 50% interval is not scored.
    assert means == {"model_mae_over_mstl": pytest.approx(1.0), "sets": 2,
                     "coverage_error": pytest.approx(0.0175), "coverage_sets": 2}
    assert math.isnan(am.set_means({}, {})["coverage_error"])


def test_the_summaries_count_sets_in_words():
    assert [am.sets_phrase(n) for n in (0, 1, 7)] == ["0 sets", "1 set", "7 sets"]
