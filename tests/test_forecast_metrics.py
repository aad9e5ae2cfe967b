"""Forecast metrics and naive baselines: hand-computed values, and the TFMA combiner that feeds them."""

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_specs, metric_types
from tensorflow_model_analysis.proto import config_pb2

from components import features, windowing
from components import forecast_metrics as fm


def test_persistence_repeats_the_last_history_value():
    np.testing.assert_array_equal(fm.persistence_forecast([[1.0, 2.0, 5.0], [3.0, 4.0, 0.0]], 2),
                                  [[5.0, 5.0], [0.0, 0.0]])


def test_seasonal_naive_takes_the_last_season_and_repeats_it():
    history = np.arange(6.0)  # a b c d e f = 0 1 2 3 4 5
    # The docstring's example: L=6, m=4, H=5 gives [c, d, e, f, c].
    np.testing.assert_array_equal(fm.seasonal_naive_forecast(history, 5, 4), [2, 3, 4, 5, 2])
    np.testing.assert_array_equal(fm.seasonal_naive_forecast(history, 3, 6), [0, 1, 2])
    # m = 1 is persistence.
    np.testing.assert_array_equal(fm.seasonal_naive_forecast(history, 3, 1), [5, 5, 5])


@pytest.mark.parametrize("season", [0, 7])
def test_a_season_outside_the_history_is_refused(season):
    with pytest.raises(ValueError, match=r"season length must be in 1\.\.6"):
        fm.seasonal_naive_forecast(np.zeros(6), 2, season)


def test_errors_against_a_hand_computation_with_zero_targets_left_out():
    actual = np.array([[2.0, 0.0], [4.0, -1.0]])
    forecast = np.array([[1.0, 0.0], [5.0, 1.0]])
    sums = fm.ErrorSums.of(actual, forecast)
    # |errors| = [[1, 0], [1, 2]]
    assert sums.metrics()["mae"] == pytest.approx(4 / 4)
    assert sums.metrics()["rmse"] == pytest.approx(np.sqrt((1 + 0 + 1 + 4) / 4))
    # MAPE leaves out the zero target: 100 * (1/2 + 1/4 + 2/1) / 3.
    assert sums.metrics()["mape"] == pytest.approx(100 * (0.5 + 0.25 + 2.0) / 3)
    # sMAPE leaves out the point where target and forecast are both 0: 200 * (1/3 + 1/9 + 2/2) / 3.
    assert sums.metrics()["smape"] == pytest.approx(200 * (1 / 3 + 1 / 9 + 1.0) / 3)
    per_step = sums.metrics_per_step()
    assert per_step[0]["mae"] == pytest.approx(1.0) and per_step[1]["mae"] == pytest.approx(1.0)
    assert per_step[1]["mape"] == pytest.approx(200.0)  # only the target -1 counts
    assert per_step[1]["smape"] == pytest.approx(200.0)  # only |-1 - 1| / (1 + 1) counts
    assert np.isnan(sums.metrics()["mase"])  # no window has a scale


def test_mase_against_a_hand_computation():
    actual = np.array([[2.0, 0.0], [4.0, -1.0]])
    forecast = np.array([[1.0, 0.0], [5.0, 1.0]])
    # |errors| = [[1, 0], [1, 2]]; over the windows' scales 2 and 0.5: [[0.5, 0], [2, 4]].
    sums = fm.ErrorSums.of(actual, forecast, scale=[2.0, 0.5])
    assert sums.metrics()["mase"] == pytest.approx(6.5 / 4)
    assert [s["mase"] for s in sums.metrics_per_step()] == pytest.approx([1.25, 2.0])
    # A window without a scale (NaN, or 0: a constant training series) is left out of MASE alone.
    for missing in (np.nan, 0.0):
        sums = fm.ErrorSums.of(actual, forecast, scale=[missing, 0.5])
        assert sums.metrics()["mase"] == pytest.approx((2 + 4) / 2)
        assert sums.metrics()["mae"] == pytest.approx(4 / 4)
    # One scale for every window.
    assert fm.ErrorSums.of(actual, forecast, scale=2.0).metrics()["mase"] == pytest.approx(0.5)
    # Summing the parts keeps the counts apart: (0.5 + 0) / 2 and (2 + 4) / 2 make 6.5 / 4.
    parts = fm.ErrorSums.of(actual[:1], forecast[:1], [2.0]) + fm.ErrorSums.of(actual[1:], forecast[1:], [0.5])
    assert parts.metrics()["mase"] == pytest.approx(6.5 / 4)


def test_all_zero_targets_give_nan_mape_not_a_division_error():
    sums = fm.ErrorSums.of(np.zeros((2, 2)), np.zeros((2, 2)))
    assert sums.metrics()["mae"] == 0.0
    assert np.isnan(sums.metrics()["mape"]) and np.isnan(sums.metrics()["smape"])


def test_the_forecasters_follow_the_periods():
    assert fm.forecasters([24, 168]) == ("model", "persistence", "seasonal_naive_24", "seasonal_naive_168",
                                         "seasonal_naive")
    assert fm.naive_forecasters([]) == ("persistence",)
    assert fm.seasonal_naive(48) == "seasonal_naive_48"
    assert fm.ERRORS == ("mae", "rmse", "mape", "smape", "mase")
    assert fm.metric_name("mase", "seasonal_naive_48", 2) == "seasonal_naive_48_mase/step_2"


def test_sums_of_parts_equal_the_sum_of_the_whole():
    rng = np.random.default_rng(0)
    history, actual, forecast = rng.normal(size=(10, 8)), rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    scale = rng.uniform(0.5, 2, 10)
    whole = fm.ForecastErrorSums.of(history, actual, forecast, periods=[4, 8], scale=scale)
    parts = fm.ForecastErrorSums.of(history[:3], actual[:3], forecast[:3], [4, 8], scale[:3]) + \
        fm.ForecastErrorSums.of(history[3:], actual[3:], forecast[3:], [4, 8], scale[3:])
    assert len(whole.named_metrics()) == 1 + 5 * 5 * (1 + 3)  # skill; 5 forecasters x 5 errors x (all + 3 steps)
    for name, value in whole.named_metrics().items():
        assert parts.named_metrics()[name] == pytest.approx(value), name


def test_skill_is_model_mae_over_the_best_naive_mae():
    history = np.array([[0.0, 10.0, 0.0, 10.0]])  # season 2: the seasonal naive forecast is exact
    actual = np.array([[0.0, 10.0]])
    model = np.array([[1.0, 9.0]])
    report = fm.ForecastErrorSums.of(history, actual, model, periods=[2]).report()
    assert report[fm.PERSISTENCE]["mae"] == pytest.approx(5.0)
    assert report[fm.seasonal_naive(2)]["mae"] == 0.0 and report[fm.SEASONAL_NAIVE]["mae"] == 0.0
    assert np.isnan(report[fm.SKILL])  # a perfect naive forecast leaves nothing to divide by
    report = fm.ForecastErrorSums.of(history, actual, model, periods=[]).report()
    assert fm.SEASONAL_NAIVE not in report
    assert report[fm.SKILL] == pytest.approx(1.0 / 5.0)


def test_the_report_names_the_best_seasonal_naive_forecast():
    # Histories [a b c d e f]; H = 2. m = 2 forecasts [e, f], m = 3 [d, e].
    history = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 0.0, 7.0, 8.0, 9.0, 9.0]])
    actual = np.array([[4.0, 5.0], [8.0, 9.0]])
    model = np.array([[4.5, 5.0], [8.0, 8.0]])
    report = fm.ForecastErrorSums.of(history, actual, model, periods=[2, 3], scale=[1.0, 2.0]).report()
    # m = 2: |[4, 5] - [5, 6]| = [1, 1], |[8, 9] - [9, 9]| = [1, 0]: MAE 3/4. m = 3: [4, 5] and [8, 9]: 0.
    assert report[fm.seasonal_naive(2)]["mae"] == pytest.approx(0.75)
    assert report[fm.seasonal_naive(3)]["mae"] == 0.0
    best = report[fm.SEASONAL_NAIVE]
    assert best["period"] == 3 and best["mae"] == 0.0 and best["per_step"] == report[fm.seasonal_naive(3)]["per_step"]
    # Persistence: [6, 6] and [9, 9]: errors [2, 1], [1, 0], MAE 1. MASE: (2 + 1) / 1 and (1 + 0) / 2 over 4 points.
    assert report[fm.PERSISTENCE]["mae"] == pytest.approx(1.0)
    assert report[fm.PERSISTENCE]["mase"] == pytest.approx((3 + 0.5) / 4)
    assert np.isnan(report[fm.SKILL])  # the best naive forecast is exact
    named = fm.ForecastErrorSums.of(history, actual, model, periods=[2, 3], scale=[1.0, 2.0]).named_metrics()
    assert named["seasonal_naive_mae"] == 0.0 and named["seasonal_naive_2_mae"] == pytest.approx(0.75)
    # Without the exact one, the model (MAE 1.5 / 4) is scored against the best that remains.
    report = fm.ForecastErrorSums.of(history, actual, model, periods=[2]).report()
    assert report[fm.SEASONAL_NAIVE]["period"] == 2
    assert report[fm.SKILL] == pytest.approx((1.5 / 4) / 0.75)


def _metric(config: config_pb2.MetricConfig) -> metric_types.Metric:
    return metric_specs.metric_instance(config)


def test_the_tfma_metrics_give_the_numpy_values_per_model():
    """The combiner and derived metrics of ForecastError/ForecastSkill, fed as TFMA feeds them."""
    rng = np.random.default_rng(1)
    history, actual = rng.normal(size=(5, 6)), rng.normal(size=(5, 2))
    scale = rng.uniform(0.5, 2, 5)
    forecasts = {"candidate": rng.normal(size=(5, 2)), "baseline": rng.normal(size=(5, 2))}
    eval_config = config_pb2.EvalConfig(model_specs=[config_pb2.ModelSpec(name="candidate"),
                                                     config_pb2.ModelSpec(name="baseline", is_baseline=True)])
    periods = [2, 3]
    configs = [
        config_pb2.MetricConfig(class_name="ForecastError", module=fm.__name__, config=fm.metric_config_json(
            error="smape", forecaster=fm.SEASONAL_NAIVE, horizon=2, periods=periods)),
        config_pb2.MetricConfig(class_name="ForecastError", module=fm.__name__, config=fm.metric_config_json(
            error="mase", forecaster=fm.MODEL, horizon=2, periods=periods)),
        config_pb2.MetricConfig(class_name="ForecastSkill", module=fm.__name__,
                                config=fm.metric_config_json(periods=periods))]
    computations = []
    for config in configs:
        computations += _metric(config).computations(eval_config=eval_config, model_names=["candidate", "baseline"])
    combiners = {c.keys[0]: c for c in computations if isinstance(c, metric_types.MetricComputation)}
    derived = [c for c in computations if isinstance(c, metric_types.DerivedMetricComputation)]
    assert len(combiners) == 2  # one shared sums computation per model, whatever the metrics
    results = {}
    for computation in combiners.values():
        accumulator = computation.combiner.create_accumulator()
        for i in range(len(actual)):
            element = metric_types.StandardMetricInputs(
                labels=actual[i], predictions={name: f[i] for name, f in forecasts.items()}, example_weights=None,
                features={features.HISTORY: history[i], features.MASE_SCALE: np.array([scale[i]], np.float32)})
            accumulator = computation.combiner.add_input(accumulator, element)
        results.update(computation.combiner.extract_output(accumulator))
    for computation in derived:
        results.update(computation.result(results))
    for model, forecast in forecasts.items():
        expected = fm.ForecastErrorSums.of(history, actual, forecast, periods, scale).named_metrics()
        by_name = {k.name: v for k, v in results.items() if k.model_name == model and not k.name.startswith("_")}
        assert set(by_name) == {"seasonal_naive_smape", "seasonal_naive_smape/step_1", "seasonal_naive_smape/step_2",
                                "mase", "mase/step_1", "mase/step_2", "skill"}
        for name, value in by_name.items():
            assert value == pytest.approx(expected[name], rel=1e-6), (model, name)
    # Independently of ErrorSums, by numpy: the sMAPE of the seasonal naive forecast with the lower
    # MAE (m = 2 reads history points 4, 5; m = 3 points 3, 4), and the model's MASE.
    naive = {m: history[:, 5 + windowing.seasonal_lag_offsets(2, m)] for m in periods}
    np.testing.assert_array_equal(naive[2], history[:, [4, 5]])
    np.testing.assert_array_equal(naive[3], history[:, [3, 4]])
    best = min(periods, key=lambda m: np.mean(np.abs(actual - naive[m])))
    expected_smape = np.mean(200 * np.abs(actual - naive[best]) / (np.abs(actual) + np.abs(naive[best])))
    candidate = {k.name: v for k, v in results.items() if k.model_name == "candidate"}
    assert candidate["seasonal_naive_smape"] == pytest.approx(expected_smape)
    expected_mase = np.mean(np.abs(actual - forecasts["candidate"]) / scale.astype(np.float32)[:, None])
    assert candidate["mase"] == pytest.approx(expected_mase, rel=1e-6)


def test_a_metric_of_an_unknown_forecaster_is_refused():
    with pytest.raises(ValueError, match="unknown forecast error"):
        fm.ForecastError(error="mae", forecaster=fm.seasonal_naive(12), periods=[24])
    with pytest.raises(ValueError, match="unknown forecast error"):
        fm.ForecastError(error="mae", forecaster=fm.SEASONAL_NAIVE, periods=[])
