"""The exponential-smoothing and Theta bases (components.transform.smoothing_bases): each method
against statsmodels or a hand computation, the seasonal adjustment, the one-matrix form in the
graph, the Transform's outputs, and the served model computing them from a raw window."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features
from components import trainer as trainer_lib
from components import transform as transform_lib
from pipeline import cli
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from serving import contract, repository
from tests import conftest


def _walk(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n).cumsum() + 10.0


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.6])
def test_ses_is_statsmodels_simple_exponential_smoothing_with_the_same_alpha(alpha):
    # statsmodels comes with the benchmark's statsforecast.
    holtwinters = pytest.importorskip("statsmodels.tsa.holtwinters")
    values = _walk(40, 1)
    fitted = holtwinters.SimpleExpSmoothing(values, initialization_method="known", initial_level=values[0]).fit(
        smoothing_level=alpha, optimized=False)
    np.testing.assert_allclose(transform_lib.ses_forecast(values, 5, alpha), fitted.forecast(5), rtol=1e-12)


def test_damped_trend_is_statsmodels_holt_with_the_same_parameters():
    holtwinters = pytest.importorskip("statsmodels.tsa.holtwinters")
    values = _walk(50, 2)
    # Level and trend start at the first value and difference, and the recursion reads the rest:
    # statsmodels' "known" initial state before its first observation.
    fitted = holtwinters.Holt(values[1:], damped_trend=True, initialization_method="known",
                              initial_level=values[0], initial_trend=values[1] - values[0]).fit(
        smoothing_level=0.3, smoothing_trend=0.1, damping_trend=0.9, optimized=False)
    np.testing.assert_allclose(transform_lib.damped_trend_forecast(values, 6, 0.3, 0.1, 0.9), fitted.forecast(6),
                               rtol=1e-10)


def test_theta_is_ses_plus_half_the_least_squares_slope_with_hyndman_and_billahs_steps():
    values, alpha, horizon = _walk(30, 3), 0.3, 4
    level = values[0]
    for v in values[1:]:
        level = alpha * v + (1 - alpha) * level
    slope = np.polyfit(np.arange(len(values)), values, 1)[0]
    h = np.arange(1, horizon + 1)
    expected = level + slope / 2 * (h - 1 + 1 / alpha - (1 - alpha) ** len(values) / alpha)
    np.testing.assert_allclose(transform_lib.theta_forecast(values, horizon, alpha), expected, rtol=1e-12)


def test_seasonal_indices_are_the_mean_profile_of_the_seasonal_bases():
    period, horizon, width = 4, 6, 14
    context = np.random.default_rng(4).normal(size=(2, width))
    points, steps = transform_lib.seasonal_indices(context, horizon, period)
    # The last 3 whole cycles, each less its mean; points 0 and 1 lie before them, at phases 2 and 3.
    cycles = context[:, 2:].reshape(2, 3, period)
    profile = (cycles - cycles.mean(axis=-1, keepdims=True)).mean(axis=1)
    np.testing.assert_allclose(points, profile[:, [2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]], rtol=1e-12)
    bases = transform_lib.seasonal_bases(tf.constant(context), horizon, period)
    np.testing.assert_allclose(steps + cycles[:, -1].mean(axis=-1, keepdims=True), bases["profile"].numpy(),
                               rtol=1e-12)


def test_a_level_plus_a_fixed_season_is_forecast_exactly_by_every_smoothing_base():
    period, horizon, width = 12, 18, 60
    season = np.sin(np.arange(width + horizon) * 2 * np.pi / period) * 5
    series = 100.0 + season
    forecasts = transform_lib.smoothing_forecasts(series[None, :width], horizon, period)
    assert sorted(forecasts) == sorted(features.SMOOTHING_BASES)
    for kind, forecast in forecasts.items():
        np.testing.assert_allclose(forecast[0], series[width:], atol=1e-9, err_msg=kind)


def test_the_seasonal_adjustment_removes_the_season_before_smoothing():
    period, horizon, width = 4, 4, 40
    context = _walk(width, 5) + np.tile([3.0, -1.0, 0.0, -2.0], width // period)
    forecasts = transform_lib.smoothing_forecasts(context, horizon, period)
    points, steps = transform_lib.seasonal_indices(context, horizon, period)
    np.testing.assert_allclose(forecasts["ses_a30"], transform_lib.ses_forecast(context - points, horizon, 0.3)
                               + steps, rtol=1e-12)
    # The re-seasonalised forecast keeps the season's shape: step 1 sits 4 above step 2.
    assert abs((forecasts["ses_a30"][0] - forecasts["ses_a30"][1]) - (steps[0] - steps[1])) < 1e-12
    assert abs(steps[0] - steps[1] - 4.0) < 1.5


@pytest.mark.parametrize("width, period, horizon", [(30, 10, 2), (60, 12, 18), (7, 7, 9), (100, 24, 24)])
def test_the_graph_computes_the_bases_with_one_precomputed_matrix(width, period, horizon):
    context = np.random.default_rng(width).normal(size=(3, width)) + np.arange(width) * 0.2
    weights = transform_lib.smoothing_weights(width, horizon, period)
    assert weights.shape == (width, len(features.SMOOTHING_BASES) * horizon)
    graph = transform_lib.smoothing_bases(tf.constant(context), horizon, period)
    direct = transform_lib.smoothing_forecasts(context, horizon, period)
    for kind in features.SMOOTHING_BASES:
        assert graph[kind].shape == (3, horizon)
        np.testing.assert_allclose(graph[kind].numpy(), direct[kind], rtol=1e-9, atol=1e-9, err_msg=kind)


def _config(smoothing: bool) -> dict:
    # A period of 5 in the unit windows' context of 10: two cycles, so the bases differ from the naive.
    config = conftest.unit_transform_config("window_std", seasonal_periods=(5,))
    return {**config, "smoothing_bases": smoothing}


def test_preprocessing_emits_the_scaled_smoothing_bases_only_when_asked():
    context = np.random.default_rng(6).normal(size=(4, conftest.UNIT_CONTEXT)) * 3 + 20
    raw = {features.HISTORY: tf.constant(context, tf.float32),
           features.ORIGIN_TIMESTAMP: tf.constant([[conftest.JAN1]] * 4, tf.int64)}
    names = [transform_lib.scaled_feature(features.base_feature(k)) for k in features.SMOOTHING_BASES]
    off = transform_lib.preprocessing_fn(raw, _config(False))
    assert not set(names) & set(off)
    out = {k: v.numpy() for k, v in transform_lib.preprocessing_fn(raw, _config(True)).items()}
    expected = transform_lib.smoothing_forecasts(context, conftest.UNIT_HORIZON, 5)
    for kind, name in zip(features.SMOOTHING_BASES, names, strict=True):
        np.testing.assert_allclose(out[name] * out[features.SCALE] + out[features.LOC], expected[kind], rtol=1e-4)


def test_the_served_model_computes_a_smoothing_base_from_the_raw_window(tmp_path):
    values = 50 + 10 * np.sin(np.arange(120) * 2 * np.pi / 5) + np.random.default_rng(7).normal(size=120).cumsum()
    splits = {"train": conftest.make_windows(values[:80], "s", covariate=False),
              "eval": conftest.make_windows(values[80:], "s", covariate=False, start=80)}
    out = str(tmp_path)
    conftest.run_transform(out, splits, _config(True), covariate=False)
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    spec = trainer_lib.model_inputs(tft_output)
    assert {transform_lib.scaled_feature(features.base_feature(k)) for k in features.SMOOTHING_BASES} <= set(spec)
    model_config = config_lib.ModelConfig(lstm_units=(4,), quantiles=(), smoothing_bases=True)
    model = trainer_lib.build_model(spec, conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, model_config)
    # The naive, the three seasonal bases, then the smoothing ones: all the weight on Theta (alpha 0.3).
    mix = model.get_layer("seasonal_base")
    chosen = 1 + len(features.SEASONAL_BASES) + features.SMOOTHING_BASES.index("theta_a30")
    logits = np.zeros(1 + len(features.SEASONAL_BASES) + len(features.SMOOTHING_BASES), np.float32)
    logits[chosen] = 5.0
    mix.logits.assign(logits)
    export_dir = str(tmp_path / "export")
    trainer_lib.export_serving_model(model, tft_output, export_dir, model_config)
    loaded = repository.load_version(export_dir, 1)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    windows = np.stack([r["history"] for r in splits["eval"]])
    origins = np.concatenate([r["origin_timestamp"] for r in splits["eval"]])
    forecast = loaded.session.run(signature.outputs[contract.OUTPUT_KEY].name,
                                  {signature.inputs[contract.INPUT_KEY].name: windows,
                                   signature.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].name: origins})
    # The untrained correction is zero: the served forecast is Theta's, computed from the raw window.
    expected = transform_lib.smoothing_forecasts(windows.astype(np.float64), conftest.UNIT_HORIZON, 5)["theta_a30"]
    np.testing.assert_allclose(forecast, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(forecast - windows[:, -5:-3]).max() > 0.1, "Theta's forecast should differ from the naive one"



@pytest.mark.parametrize("flag, expected", [("--smoothing-bases", True), ("--no-smoothing-bases", False)])
def test_the_flag_reaches_the_model_config(flag, expected):
    args = cli.build_parser().parse_args(["run", "--data", "d.csv", "--output", "o", flag])
    assert cli.pipeline_config_from_flags(args).model.smoothing_bases is expected


@pytest.mark.parametrize("smoothing", [True, False])
def test_the_pipeline_hands_the_setting_to_the_transform(pipeline_run, smoothing):
    config, _ = pipeline_run
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, smoothing_bases=smoothing))
    transform = next(c for c in pipeline_lib.create_pipeline(config).components if c.id == "Transform")
    assert json.loads(transform.exec_properties["custom_config"])["smoothing_bases"] is smoothing
