"""Forecast metrics and naive baselines: hand-computed values, and the TFMA combiner that feeds them."""

import json

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_specs, metric_types
from tensorflow_model_analysis.proto import config_pb2

from components import features
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


def test_all_zero_targets_give_nan_mape_not_a_division_error():
    sums = fm.ErrorSums.of(np.zeros((2, 2)), np.zeros((2, 2)))
    assert sums.metrics()["mae"] == 0.0
    assert np.isnan(sums.metrics()["mape"]) and np.isnan(sums.metrics()["smape"])


def test_sums_of_parts_equal_the_sum_of_the_whole():
    rng = np.random.default_rng(0)
    history, actual, forecast = rng.normal(size=(10, 8)), rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    whole = fm.ForecastErrorSums.of(history, actual, forecast, season_length=4)
    parts = fm.ForecastErrorSums.of(history[:3], actual[:3], forecast[:3], 4) + \
        fm.ForecastErrorSums.of(history[3:], actual[3:], forecast[3:], 4)
    for name, value in whole.named_metrics().items():
        assert parts.named_metrics()[name] == pytest.approx(value), name


def test_skill_is_model_mae_over_the_best_naive_mae():
    history = np.array([[0.0, 10.0, 0.0, 10.0]])  # season 2: the seasonal naive forecast is exact
    actual = np.array([[0.0, 10.0]])
    model = np.array([[1.0, 9.0]])
    report = fm.ForecastErrorSums.of(history, actual, model, season_length=2).report()
    assert report[fm.PERSISTENCE]["mae"] == pytest.approx(5.0)
    assert report[fm.SEASONAL_NAIVE]["mae"] == 0.0
    assert np.isnan(report[fm.SKILL])  # a perfect naive forecast leaves nothing to divide by
    report = fm.ForecastErrorSums.of(history, actual, model, season_length=1).report()
    assert report[fm.SKILL] == pytest.approx(1.0 / 5.0)


def _metric(config: config_pb2.MetricConfig) -> metric_types.Metric:
    return metric_specs.metric_instance(config)


def test_the_tfma_metrics_give_the_numpy_values_per_model():
    """The combiner and derived metrics of ForecastError/ForecastSkill, fed as TFMA feeds them."""
    rng = np.random.default_rng(1)
    history, actual = rng.normal(size=(5, 6)), rng.normal(size=(5, 2))
    forecasts = {"candidate": rng.normal(size=(5, 2)), "baseline": rng.normal(size=(5, 2))}
    eval_config = config_pb2.EvalConfig(model_specs=[config_pb2.ModelSpec(name="candidate"),
                                                     config_pb2.ModelSpec(name="baseline", is_baseline=True)])
    configs = [config_pb2.MetricConfig(class_name="ForecastError", module=fm.__name__, config=json.dumps(
        {"error": "smape", "forecaster": fm.SEASONAL_NAIVE, "horizon": 2, "season_length": 3})),
        config_pb2.MetricConfig(class_name="ForecastSkill", module=fm.__name__,
                                config=json.dumps({"season_length": 3}))]
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
                labels=actual[i], predictions={name: f[i] for name, f in forecasts.items()},
                example_weights=None, features={features.HISTORY: history[i]})
            accumulator = computation.combiner.add_input(accumulator, element)
        results.update(computation.combiner.extract_output(accumulator))
    for computation in derived:
        results.update(computation.result(results))
    for model, forecast in forecasts.items():
        expected = fm.ForecastErrorSums.of(history, actual, forecast, 3).named_metrics()
        by_name = {k.name: v for k, v in results.items() if k.model_name == model and not k.name.startswith("_")}
        assert set(by_name) == {"seasonal_naive_smape", "seasonal_naive_smape/step_1",
                                "seasonal_naive_smape/step_2", "skill"}
        for name, value in by_name.items():
            assert value == pytest.approx(expected[name]), (model, name)
    # Independently of ErrorSums: sMAPE of the seasonal naive forecast, by numpy.
    naive = history[:, [3, 4]]
    expected_smape = np.mean(200 * np.abs(actual - naive) / (np.abs(actual) + np.abs(naive)))
    candidate = {k.name: v for k, v in results.items() if k.model_name == "candidate"}
    assert candidate["seasonal_naive_smape"] == pytest.approx(expected_smape)
