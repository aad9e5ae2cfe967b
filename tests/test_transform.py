"""The Transform module: train-split statistics through real tf.Transform, each scaling, the model's
history sliced from the context, seasonal lags, covariates, and the calendar computed in the graph."""

import dataclasses
import glob
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features, windowing
from components import forecast_metrics as fm
from components import transform as transform_lib
from pipeline import local_data
from tests import conftest

L, H, C, M = conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, conftest.UNIT_CONTEXT, conftest.UNIT_PERIOD
PRICE_LAG = transform_lib.scaled_feature(f"{conftest.FUTURE}_{features.lag_feature(M)}")


def _stack(rows: list[dict], key: str) -> np.ndarray:
    return np.stack([r[key] for r in rows]).astype(np.float64)


def _raw(rows: list[dict]) -> dict[str, np.ndarray]:
    """The raw features of ``rows`` as arrays, in their stored dtypes."""
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def _apply(tft_output: tft.TFTransformOutput, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = {k: tf.constant(v) for k, v in raw.items()}
    return {k: v.numpy() for k, v in tft_output.transform_raw_features(tensors).items()}


def test_pipeline_scaling_statistics_are_those_of_the_train_split_alone(pipeline_run):
    config, result = pipeline_run
    assert config.model.scaling == "last_value"
    graph_dir = glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*"))[0]
    tft_output = tft.TFTransformOutput(graph_dir)
    splits = {s: local_data.read_split_windows(result.examples_uri, s) for s in windowing.SPLITS}
    L_run = config.windows.history  # noqa: N806

    def spread(histories: np.ndarray) -> float:
        histories = histories[:, -L_run:].astype(np.float64)
        return float(np.std(histories - histories[:, -1:]))

    test = splits[windowing.TEST]
    probe = {features.HISTORY: test.histories[:3], features.ORIGIN_TIMESTAMP: test.origin_times[:3, None]}
    scale = _apply(tft_output, probe)[features.SCALE]
    train = splits[windowing.TRAIN].histories
    np.testing.assert_allclose(scale, spread(train), rtol=1e-4)
    everything = spread(np.concatenate([w.histories for w in splits.values()]))
    assert abs(everything - spread(train)) > 1e-3, "the check could not tell the splits apart"


@pytest.fixture(scope="module")
def per_series_output(covariate_transform):
    """Two series at levels 10 and 1000, with covariates, scaled per series."""
    out, splits = covariate_transform
    return tft.TFTransformOutput(os.path.join(out, "transform_graph")), splits


def test_per_series_scaling_uses_each_series_training_statistics_over_the_last_l_points(per_series_output):
    tft_output, splits = per_series_output
    train = splits["train"]
    history = _stack(train, "history")[:, -L:]  # the model's history: the last L of the context
    ids = np.array([r["series_id"][0] for r in train])
    probe_ids = [b"low", b"high", b"never_seen"]
    raw = {features.HISTORY: np.zeros((3, C), np.float32),
           features.TARGET: np.full((3, H), 5.0, np.float32),
           features.SERIES_ID: np.array([[i] for i in probe_ids], dtype=object),
           features.ORIGIN_TIMESTAMP: np.full((3, 1), conftest.JAN1, np.int64),
           conftest.COVARIATE: np.zeros((3, C), np.float32),
           conftest.FUTURE_HISTORY: np.zeros((3, C), np.float32),
           conftest.FUTURE: np.full((3, H), 26.0, np.float32)}
    out = _apply(tft_output, raw)
    want_loc = [history[ids == b"low"].mean(), history[ids == b"high"].mean(), history.mean()]
    want_scale = [history[ids == b"low"].std(), history[ids == b"high"].std(), history.std()]
    np.testing.assert_allclose(out[features.LOC][:, 0], want_loc, rtol=1e-4)
    np.testing.assert_allclose(out[features.SCALE][:, 0], want_scale, rtol=1e-3)
    # The target takes the history's map, so forecasts map back with it.
    np.testing.assert_allclose(out[features.TARGET_SCALED] * out[features.SCALE] + out[features.LOC], 5.0, atol=1e-3)
    # Covariates are scaled by their own training statistics (over the context), whatever the series;
    # the model reads their last L points.
    covariate = _stack(train, conftest.COVARIATE)
    scaled = out[transform_lib.scaled_feature(conftest.COVARIATE)]
    assert scaled.shape == (3, L)
    np.testing.assert_allclose(scaled, -covariate.mean() / covariate.std(), rtol=1e-4)
    # A known-future covariate's future takes the statistics of its own history.
    price = _stack(train, conftest.FUTURE_HISTORY)
    np.testing.assert_allclose(out[transform_lib.scaled_feature(conftest.FUTURE)], (26 - price.mean()) / price.std(),
                               rtol=1e-4)
    # The raw serving inputs pass through unchanged, for the Trainer's warmup requests.
    for key in (features.HISTORY, features.ORIGIN_TIMESTAMP, conftest.COVARIATE, conftest.FUTURE_HISTORY,
                conftest.FUTURE):
        np.testing.assert_array_equal(out[key], raw[key], err_msg=key)
    assert out[features.SERIES_ID].ravel().tolist() == probe_ids


def test_seasonal_lags_are_read_a_season_back_in_the_context(per_series_output):
    tft_output, splits = per_series_output
    rows = splits["eval"]
    raw = _raw(rows)
    out = _apply(tft_output, raw)
    context = raw[features.HISTORY].astype(np.float64)
    # m = 10, H = 2: offsets [-9, -8] from the origin (index 9): context points 0 and 1, the values a
    # season before the targets, which is the seasonal naive forecast.
    lag = out[transform_lib.scaled_feature(features.lag_feature(M))]
    np.testing.assert_allclose(lag * out[features.SCALE] + out[features.LOC], context[:, [0, 1]], rtol=1e-4)
    np.testing.assert_allclose(context[:, [0, 1]], fm.seasonal_naive_forecast(context, H, M))
    # The future covariate where those lags were read, in its own scaling.
    price = _stack(splits["train"], conftest.FUTURE_HISTORY)
    np.testing.assert_allclose(out[PRICE_LAG], (raw[conftest.FUTURE_HISTORY][:, [0, 1]] - price.mean()) / price.std(),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scaling", ["global", "last_value", "window_mean", "window_std"])
def test_scalings_map_history_and_target_with_one_invertible_map(tmp_path, scaling):
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(0.5, 1.0, 80)) + 300  # a trending series, as CO2 is
    splits = {"train": conftest.make_windows(values[:60], "s", covariate=False)}
    out_dir = conftest.run_transform(str(tmp_path), splits, conftest.unit_transform_config(scaling), covariate=False)
    tft_output = tft.TFTransformOutput(out_dir)
    train = _stack(splits["train"], "history")[:, -L:]
    loc_of = {"global": lambda h: np.full((len(h), 1), train.mean()),
              "last_value": lambda h: h[:, -1:],
              "window_mean": lambda h: h.mean(axis=1, keepdims=True),
              "window_std": lambda h: h.mean(axis=1, keepdims=True)}[scaling]
    test = conftest.make_windows(values[60:], "s", covariate=False)
    history, target = _stack(test, "history"), _stack(test, "target")
    out = _apply(tft_output, _raw(test))
    np.testing.assert_allclose(out[features.LOC], loc_of(history[:, -L:]), rtol=1e-5)
    if scaling == "window_std":  # the spread of each window's whole context, at least 1% of its level
        floor = 0.01 * np.abs(history).mean(axis=1, keepdims=True)
        np.testing.assert_allclose(out[features.SCALE], np.maximum(history.std(axis=1, keepdims=True), floor),
                                   rtol=1e-4)
    else:
        np.testing.assert_allclose(out[features.SCALE], np.std(train - loc_of(train)), rtol=1e-4)
    np.testing.assert_allclose(out[features.HISTORY_SCALED] * out[features.SCALE] + out[features.LOC],
                               history[:, -L:], rtol=1e-5)
    np.testing.assert_allclose(out[features.TARGET_SCALED] * out[features.SCALE] + out[features.LOC], target,
                               rtol=1e-5)


def test_window_std_centres_on_the_history_and_scales_by_the_context():
    # Contexts of 6 points; the model's history is their last 4.
    context = tf.constant([[500.0] * 6, [0.0] * 6, [9.0, -9.0, -3.0, 3.0, -3.0, 3.0],
                           [100.0, 100.0, 100.0, 100.0, 100.0, 100.6]])
    loc, scale = (v.numpy()[:, 0] for v in transform_lib.loc_scale(context[:, 2:], context, None, "window_std"))
    np.testing.assert_allclose(loc, [500, 0, 0, 100.15], rtol=1e-6)
    # The context's std (the third's: sqrt((81 + 81 + 4 * 9) / 6) = sqrt(33)), at least 1% of its mean
    # magnitude: a flat context gets 5, an all-zero one 1, the last 1.001 (its std, 0.224, is below that).
    np.testing.assert_allclose(scale, [5.0, 1.0, np.sqrt(33.0), 1.001], rtol=1e-5)


def test_the_graph_computes_lags_and_calendar_without_the_examples_holding_them():
    """preprocessing_fn called directly (window_std has no analyzer): the model's inputs from raw features."""
    context = np.arange(2 * C, dtype=np.float32).reshape(2, C) * 3 + 7
    origin = np.array([[conftest.JAN1 + 6 * 3600], [conftest.JAN1 + 30 * 3600]], np.int64)
    config = conftest.unit_transform_config("window_std")
    out = {k: v.numpy() for k, v in transform_lib.preprocessing_fn(
        {features.HISTORY: tf.constant(context), features.ORIGIN_TIMESTAMP: tf.constant(origin)}, config).items()}
    history = context[:, -L:]
    np.testing.assert_allclose(out[features.LOC][:, 0], history.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out[features.SCALE][:, 0], context.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(out[features.HISTORY_SCALED] * out[features.SCALE] + out[features.LOC], history,
                               rtol=1e-5)
    lag = out[transform_lib.scaled_feature(features.lag_feature(M))] * out[features.SCALE] + out[features.LOC]
    np.testing.assert_allclose(lag, context[:, :2], rtol=1e-5)
    # Hourly steps: hour of day, day of week and day of year, sin and cos of each (6 values a step).
    assert out[features.CALENDAR_HISTORY].shape == (2, L * 6) and out[features.CALENDAR_FUTURE].shape == (2, H * 6)
    hours = out[features.CALENDAR_HISTORY].reshape(2, L, 6)[0, :, 0]  # sin of the hour of day of 23:00 .. 06:00
    np.testing.assert_allclose(hours, np.sin(2 * np.pi * np.arange(-1, 7) / 24), atol=1e-6)
    future = out[features.CALENDAR_FUTURE].reshape(2, H, 6)[1, :, :2]  # 07:00 and 08:00 on Tuesday
    np.testing.assert_allclose(future, [[np.sin(2 * np.pi * 7 / 24), np.cos(2 * np.pi * 7 / 24)],
                                        [np.sin(2 * np.pi * 8 / 24), np.cos(2 * np.pi * 8 / 24)]], atol=1e-6)
    assert features.TARGET_SCALED not in out  # serving: no target
    # Without seasonal lags or calendar features, neither is computed.
    off = transform_lib.preprocessing_fn({features.HISTORY: tf.constant(context), features.ORIGIN_TIMESTAMP:
                                          tf.constant(origin)},
                                         conftest.unit_transform_config("window_std", seasonal_lags=False,
                                                                        calendar_features=False))
    assert not [k for k in off if k.startswith(features.LAG_PREFIX) or k.startswith("calendar")]


def _phases(times: list[str], step_seconds: float) -> dict[str, np.ndarray]:
    """Each calendar cycle's phase in [0, 1) at ``times``, read back from its sin and cos."""
    seconds = pd.to_datetime(times, utc=True).asi8 // 10**9
    cycles = transform_lib.calendar_cycles(step_seconds)
    values = transform_lib.calendar_phases(tf.constant(seconds[None, :]), cycles).numpy()[0]
    angles = np.arctan2(values[:, 0::2], values[:, 1::2]) / (2 * np.pi) % 1.0
    return {name: angles[:, i] for i, (name, _) in enumerate(cycles)}


def test_calendar_phases_of_known_timestamps():
    phases = _phases(["2024-01-01T06:00Z", "2024-01-03T18:00Z", "2024-01-07T00:00Z", "2024-07-02T00:00Z"], 3600)
    # 06:00 is a quarter of a day, 18:00 three quarters.
    np.testing.assert_allclose(phases["hour_of_day"], [0.25, 0.75, 0.0, 0.0], atol=1e-6)
    # Monday 06:00 (day 0.25 of the week), Wednesday 18:00 (2.75), Sunday 00:00 (6), Tuesday (1).
    np.testing.assert_allclose(phases["day_of_week"], np.array([0.25, 2.75, 6.0, 1.0]) / 7, atol=1e-6)
    # The year's phase is within a day of the calendar's: 1 January 06:00 is day 0.25 of 2024, and
    # 2 July 00:00 is half way through the leap year (183 of 366 days).
    np.testing.assert_allclose(phases["day_of_year"], [0.25 / 366, 2.75 / 366, 6 / 366, 0.5], atol=1 / 365)


@pytest.mark.parametrize("step_seconds, cycles", [
    (1800, ["hour_of_day", "day_of_week", "day_of_year"]),
    (3600, ["hour_of_day", "day_of_week", "day_of_year"]),
    (86_400, ["day_of_week", "day_of_year"]),  # a day's phase is the same at every daily point
    (7 * 86_400, ["day_of_year"]),
    (31_556_952 / 12, ["day_of_year"]),
    (31_556_952, []),
])
def test_only_cycles_longer_than_the_step_are_used(step_seconds, cycles):
    assert [name for name, _ in transform_lib.calendar_cycles(step_seconds)] == cycles


def test_calendar_features_of_every_history_and_target_step():
    origin = tf.constant([[pd.Timestamp("2024-01-03T00:00Z").value // 10**9]], tf.int64)  # a Wednesday
    out = {k: v.numpy() for k, v in transform_lib.calendar_features(origin, 3, 2, 86_400).items()}
    # Daily: day of week and day of year (4 values a step), step-major; history Mon..Wed, targets Thu, Fri.
    history, future = out[features.CALENDAR_HISTORY].reshape(3, 4), out[features.CALENDAR_FUTURE].reshape(2, 4)
    weekday = np.arctan2(np.concatenate([history, future])[:, 0], np.concatenate([history, future])[:, 1])
    np.testing.assert_allclose(weekday / (2 * np.pi) % 1 * 7, [0, 1, 2, 3, 4], atol=1e-5)
    assert transform_lib.calendar_features(origin, 3, 2, 31_556_952) == {}


def test_transform_config_comes_from_the_window_settings():
    windows = dataclasses.replace(conftest.UNIT_WINDOWS, calendar_features=False)
    assert transform_lib.transform_config(dataclasses.asdict(windows), "global") == {
        "scaling": "global", "series_embedding": False, "smoothing_bases": False, "calendar_index": False, "history": 8,
        "horizon": 2, "seasonal_lags": True,
        "seasonal_periods": [10], "calendar": False, "step_seconds": 3600.0, "business_hours": []}


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="scaling must be one of"):
        transform_lib.preprocessing_fn({features.HISTORY: tf.zeros([1, 4])}, {"scaling": "minmax"})


@pytest.mark.slow
def test_changing_eval_and_test_values_leaves_the_statistics_unchanged(tmp_path, pipeline_run):
    """The whole pipeline again on the same series with everything after the train cut raised by 40."""
    from pipeline import local_runner

    config, result = pipeline_run
    frame = pd.read_csv(config.data.path)
    seconds = pd.to_datetime(frame["timestamp"]).astype("int64") // 10**9
    cut = windowing.split_cut_times(seconds.min(), seconds.max(), config.windows.split_fractions)[0]
    frame.loc[seconds > cut, "value"] += 40
    changed_csv = tmp_path / "changed.csv"
    frame.to_csv(changed_csv, index=False)
    changed = dataclasses.replace(config, output_dir=str(tmp_path / "run"),
                                  data=dataclasses.replace(config.data, path=str(changed_csv)))
    changed_result = local_runner.run(changed)

    def graph(cfg) -> tft.TFTransformOutput:
        return tft.TFTransformOutput(glob.glob(os.path.join(cfg.pipeline_root, "Transform", "transform_graph", "*"))[0])

    before = local_data.read_split_windows(result.examples_uri, windowing.EVAL)
    after = local_data.read_split_windows(changed_result.examples_uri, windowing.EVAL)
    assert np.all(after.targets > before.targets + 30), "the eval values did not change"
    probe = {features.HISTORY: before.histories[:5], features.ORIGIN_TIMESTAMP: before.origin_times[:5, None]}
    for key, value in _apply(graph(config), probe).items():
        np.testing.assert_array_equal(_apply(graph(changed), probe)[key], value, err_msg=key)


def _decomposition_forecast(context: np.ndarray, horizon: int, period: int, cycles: int, trend_cycles: int
                            ) -> np.ndarray:
    """Classical decomposition of one context, written out in loops: the mean of the last ``cycles``
    cycles' values (each less its cycle's mean) at each step's phase, plus the latest cycle's mean,
    plus the trend of the means of the last ``trend_cycles`` cycles over the whole seasons back."""
    width = len(context)
    means = [context[width - k * period:width - (k - 1) * period].mean() for k in range(1, cycles + 1)]
    slope = (means[0] - means[trend_cycles - 1]) / ((trend_cycles - 1) * period) if trend_cycles > 1 else 0.0
    forecast = np.empty(horizon)
    for h in range(1, horizon + 1):
        back = period * -(-h // period)  # whole seasons back to an observed point
        seasonal = np.mean([context[width - 1 + h - back - (k - 1) * period] - means[k - 1]
                            for k in range(1, cycles + 1)])
        forecast[h - 1] = seasonal + means[0] + slope * back
    return forecast


@pytest.mark.parametrize("width, period, horizon", [(24, 4, 6), (26, 12, 3), (7, 7, 9), (168, 24, 24)])
def test_seasonal_bases_are_the_classical_decomposition_of_the_context(width, period, horizon):
    rng = np.random.default_rng(width + horizon)
    context = rng.normal(size=(3, width)) + np.arange(width) * 0.3 + 5 * np.sin(np.arange(width) * 2 * np.pi / period)
    bases = {k: v.numpy() for k, v in transform_lib.seasonal_bases(tf.constant(context), horizon, period).items()}
    assert sorted(bases) == sorted(features.SEASONAL_BASES)
    cycles = width // period
    for row in range(len(context)):
        np.testing.assert_allclose(bases["profile"][row], _decomposition_forecast(context[row], horizon, period,
                                                                                  cycles, 1), rtol=1e-9)
        np.testing.assert_allclose(bases["profile_trend"][row],
                                   _decomposition_forecast(context[row], horizon, period, cycles, cycles), rtol=1e-9)
        np.testing.assert_allclose(bases["recent_trend"][row], _decomposition_forecast(
            context[row], horizon, period, min(2, cycles), min(2, cycles)), rtol=1e-9)
    if cycles == 1:
        # One cycle: every base is the seasonal naive forecast.
        for base in bases.values():
            np.testing.assert_allclose(base, fm.seasonal_naive_forecast(context, horizon, period), rtol=1e-9)


def test_a_linear_trend_plus_a_fixed_season_is_forecast_exactly_by_the_trend_bases():
    period, horizon, width = 4, 6, 16
    t = np.arange(width + horizon, dtype=np.float64)
    series = 2.0 * t + np.tile([3.0, -1.0, 0.0, -2.0], (width + horizon) // period + 1)[:width + horizon]
    bases = transform_lib.seasonal_bases(tf.constant(series[None, :width]), horizon, period)
    np.testing.assert_allclose(bases["profile_trend"].numpy()[0], series[width:], atol=1e-9)
    np.testing.assert_allclose(bases["recent_trend"].numpy()[0], series[width:], atol=1e-9)
    # Without the trend the profile lags by the whole seasons back to each step's lag: 4 steps, then 8.
    np.testing.assert_allclose(series[width:] - bases["profile"].numpy()[0], 2.0 * np.array([4, 4, 4, 4, 8, 8]))


def test_a_context_of_several_cycles_gives_the_seasonal_bases_and_keeps_the_scale_of_one():
    """preprocessing_fn on a context of 3 cycles of m = 10: the bases read all of it, the scale only
    the last max(L, m) points (window_std), as with a context of one cycle."""
    rng = np.random.default_rng(3)
    context = (np.arange(3 * M) * 2.0 + 5 * np.sin(np.arange(3 * M) * 2 * np.pi / M) + rng.normal(size=(2, 3 * M)))
    origin = np.array([[conftest.JAN1], [conftest.JAN1 + 3600]], np.int64)
    out = {k: v.numpy() for k, v in transform_lib.preprocessing_fn(
        {features.HISTORY: tf.constant(context, tf.float32), features.ORIGIN_TIMESTAMP: tf.constant(origin)},
        conftest.unit_transform_config("window_std")).items()}
    np.testing.assert_allclose(out[features.LOC][:, 0], context[:, -L:].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(out[features.SCALE][:, 0], context[:, -M:].std(axis=1), rtol=1e-4)
    bases = transform_lib.seasonal_bases(tf.constant(context), H, M)
    for kind in features.SEASONAL_BASES:
        scaled = out[transform_lib.scaled_feature(features.base_feature(kind))]
        np.testing.assert_allclose(scaled * out[features.SCALE] + out[features.LOC], bases[kind].numpy(), rtol=1e-4)
    # Three cycles of a trending series: the trend bases differ from the seasonal naive forecast.
    naive = out[transform_lib.scaled_feature(features.lag_feature(M))]
    assert np.abs(out[transform_lib.scaled_feature(features.base_feature("profile_trend"))] - naive).min() > 1e-3
