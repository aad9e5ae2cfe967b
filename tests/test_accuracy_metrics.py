"""The accuracy benchmark's metrics and naive forecasts against hand computations (fast, no pipeline)."""

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
