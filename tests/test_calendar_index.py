"""The calendar index bases (components.transform.seasonal_index, index_bases): which calendar cycle a
season stands for, the phase bins, the index Transform fits on the training split against a numpy
computation, and the served model computing the bases from a raw window."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features, windowing
from components import trainer as trainer_lib
from components import transform as transform_lib
from components.settings import ConfigError
from pipeline import cli
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from serving import contract, repository
from tests import conftest

# The unit windows' season of 10 steps made a day: steps of 2.4 hours.
STEP = 8640.0
PERIOD = conftest.UNIT_PERIOD


@pytest.mark.parametrize("period, step, cycle", [
    (52, 7 * 86_400.0, 31_556_952.0),   # weeks: 0.9966 of the mean year
    (12, 31_556_952.0 / 12, 31_556_952.0),
    (4, 31_556_952.0 / 4, 31_556_952.0),
    (7, 86_400.0, 7 * 86_400.0),
    (24, 3600.0, 86_400.0),
    (168, 3600.0, 7 * 86_400.0),
    (48, 1800.0, 86_400.0),
    (5, 86_400.0, None),                # business days: 5 days are no week
    (14, 3600.0, None),                 # business hours 07:00-21:00
    (10, 3600.0, None),
])
def test_a_season_stands_for_the_calendar_cycle_its_steps_span(period, step, cycle):
    assert windowing.index_cycle(period, step) == cycle


def _phases(times, period: int, step: float) -> np.ndarray:
    return transform_lib.index_phases(tf.constant(np.asarray(times, np.float64)), period, step).numpy()


def test_month_starts_fall_on_their_month_in_every_year():
    months = pd.date_range("1973-01-01", "2030-12-01", freq="MS")
    bins = _phases(months.asi8 // 10**9, 12, 31_556_952.0 / 12)
    np.testing.assert_array_equal(bins, months.month - 1)
    # The graph places a context's points at whole mean months (a twelfth of the mean year) from the
    # origin: ten years back they stray up to two days from the month starts, still in their bins.
    step = 31_556_952.0 / 12
    origin = pd.Timestamp("2013-06-01").value // 10**9
    steps = np.arange(-119, 1)
    bins = transform_lib.index_phases(transform_lib.step_times(tf.constant([[origin]], tf.int64), steps, step),
                                      12, step).numpy()[0]
    np.testing.assert_array_equal(bins, pd.date_range("2003-07-01", "2013-06-01", freq="MS").month - 1)


def test_a_week_falls_in_the_bin_of_its_day_of_the_year():
    saturdays = pd.date_range("1991-02-02", periods=1355, freq="W-SAT")
    bins = _phases(saturdays.asi8 // 10**9, 52, 7 * 86_400.0)
    assert set(bins) == set(range(52))
    # 52 weeks later is 1.24 days earlier in the year: the same bin, or the one before.
    assert set((bins[52:] - bins[:-52]) % 52) <= {0, 51}
    # A week later is the next bin, or now and then the same one (a bin is 7.02 days).
    steps = (bins[1:] - bins[:-1]) % 52
    assert set(steps) == {0, 1} and (steps == 0).sum() < 1355 / 52


def test_noon_of_each_day_falls_the_same_way_every_week():
    noons = conftest.JAN1 + 43_200 + 86_400 * np.arange(70)
    bins = _phases(noons, 7, 86_400.0)
    np.testing.assert_array_equal(bins, bins[np.arange(70) % 7])
    assert len(set(bins[:7])) == 7


def test_a_season_that_is_no_calendar_cycle_is_refused():
    with pytest.raises(ValueError, match="not a day, a week or a year"):
        _phases([0.0], 5, 86_400.0)


def _windows(values: np.ndarray, start: int = 0) -> list[dict]:
    """The unit windows (C = 10, H = 2) of ``values``, point i at JAN1 + (start + i) * 2.4 hours."""
    rows, span = [], conftest.UNIT_CONTEXT + conftest.UNIT_HORIZON
    for s in range(len(values) - span + 1):
        origin = s + conftest.UNIT_CONTEXT - 1
        rows.append({"history": values[s:origin + 1].astype(np.float32),
                     "target": values[origin + 1:s + span].astype(np.float32),
                     "series_id": np.array([b"s"], dtype=object),
                     "origin_timestamp": np.array([conftest.JAN1 + int((start + origin) * STEP)], np.int64),
                     "mase_scale": np.array([1.0], np.float32)})
    return rows


def _config(index: bool) -> dict:
    config = conftest.unit_transform_config("window_std", seasonal_periods=(PERIOD,), step_seconds=STEP)
    return {**config, "calendar_index": index}


def _window_scale(context: np.ndarray) -> np.ndarray:
    # window_std over the whole unit context (max(L, m) = C).
    std = context.std(axis=1, keepdims=True)
    std = np.maximum(std, 0.01 * np.abs(context).mean(axis=1, keepdims=True))
    return np.where(std > 0, std, 1.0)


def _numpy_index(train: list[dict]) -> np.ndarray:
    """seasonal_index's definition, in numpy: point i of the unit series is in phase bin i mod 10."""
    sums, counts = np.zeros(PERIOD), np.zeros(PERIOD)
    for row in train:
        context, target = row["history"].astype(np.float64)[None], row["target"].astype(np.float64)
        origin = (int(row["origin_timestamp"][0]) - conftest.JAN1) / STEP
        detrended = (target - context[0, -PERIOD:].mean()) / _window_scale(context)[0, 0]
        for h, value in enumerate(detrended, start=1):
            sums[int(origin + h) % PERIOD] += value
            counts[int(origin + h) % PERIOD] += 1
    index = sums / counts
    return index - index.mean()


def _numpy_bases(rows: list[dict], index: np.ndarray) -> dict[str, np.ndarray]:
    contexts = np.stack([r["history"] for r in rows]).astype(np.float64)
    origins = np.array([(int(r["origin_timestamp"][0]) - conftest.JAN1) / STEP for r in rows]).astype(int)
    scale = _window_scale(contexts)
    past = (origins[:, None] + np.arange(-(conftest.UNIT_CONTEXT - 1), 1)) % PERIOD
    future = (origins[:, None] + np.arange(1, conftest.UNIT_HORIZON + 1)) % PERIOD
    adjusted = contexts - index[past] * scale
    return {kind: transform_lib.ses_level(adjusted, alpha)[:, None] + index[future] * scale
            for kind, alpha in features.INDEX_METHODS.items()}


def _served_base(tmp_path, splits: dict[str, list[dict]], kind: str) -> np.ndarray:
    """Runs the Transform, exports a model whose mix puts all its weight on ``kind`` (its correction
    untrained, zero), loads it as the server does and forecasts the eval windows."""
    out = str(tmp_path)
    conftest.run_transform(out, splits, _config(True), covariate=False)
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    spec = trainer_lib.model_inputs(tft_output)
    names = [transform_lib.scaled_feature(features.base_feature(k)) for k in features.INDEX_BASES]
    assert set(names) <= set(spec)
    model_config = config_lib.ModelConfig(lstm_units=(4,), quantiles=(), calendar_index="on")
    model = trainer_lib.build_model(spec, conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, model_config)
    candidates = trainer_lib.mix_candidates(spec)
    logits = np.zeros(len(candidates), np.float32)
    logits[candidates.index(transform_lib.scaled_feature(features.base_feature(kind)))] = 8.0
    model.get_layer("seasonal_base").logits.assign(logits)
    export_dir = str(tmp_path / "export")
    trainer_lib.export_serving_model(model, tft_output, export_dir, model_config)
    loaded = repository.load_version(export_dir, 1)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    rows = splits["eval"]
    return loaded.session.run(signature.outputs[contract.OUTPUT_KEY].name, {
        signature.inputs[contract.INPUT_KEY].name: np.stack([r["history"] for r in rows]),
        signature.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].name: np.concatenate(
            [r["origin_timestamp"] for r in rows])})


def test_a_level_plus_a_fixed_season_is_served_exactly(tmp_path):
    pattern = np.random.default_rng(1).normal(size=PERIOD) * 5
    values = 100.0 + pattern[np.arange(150) % PERIOD]
    splits = {"train": _windows(values[:100]), "eval": _windows(values[100:], start=100)}
    forecast = _served_base(tmp_path, splits, "index_ses_a30")
    targets = np.stack([r["target"] for r in splits["eval"]])
    np.testing.assert_allclose(forecast, targets, atol=2e-3)
    # The seasonal naive forecast of a 10-step season reads the context; this one needs the index.
    assert np.abs(targets[:, 1] - targets[:, 0]).max() > 1.0


def test_the_index_is_fitted_on_the_training_split_and_the_bases_follow_it(tmp_path):
    rng = np.random.default_rng(2)
    values = 50.0 + 0.3 * np.arange(160) + 8 * rng.normal(size=PERIOD)[np.arange(160) % PERIOD] + rng.normal(size=160)
    splits = {"train": _windows(values[:110]), "eval": _windows(values[110:], start=110)}
    index = _numpy_index(splits["train"])
    expected = _numpy_bases(splits["eval"], index)
    forecast = _served_base(tmp_path, splits, "index_ses_a10")
    np.testing.assert_allclose(forecast, expected["index_ses_a10"], rtol=1e-4, atol=2e-3)
    # The eval windows do not shape the index: fitted on them it gives other forecasts.
    other = _numpy_bases(splits["eval"], _numpy_index(splits["eval"]))["index_ses_a10"]
    assert np.abs(other - expected["index_ses_a10"]).max() > 0.05


def test_the_bases_are_emitted_only_when_asked():
    context = np.random.default_rng(3).normal(size=(4, conftest.UNIT_CONTEXT)) + 20
    raw = {features.HISTORY: tf.constant(context, tf.float32),
           features.ORIGIN_TIMESTAMP: tf.constant([[conftest.JAN1]] * 4, tf.int64)}
    out = transform_lib.preprocessing_fn(raw, _config(False))
    assert not {transform_lib.scaled_feature(features.base_feature(k)) for k in features.INDEX_BASES} & set(out)
    with pytest.raises(ValueError, match="fitted on 'target'"):
        transform_lib.preprocessing_fn(raw, _config(True))


@pytest.mark.parametrize("mode, period, step, applies", [
    ("auto", 52, 7 * 86_400.0, True),           # weeks in a year: not a whole number
    ("on", 52, 7 * 86_400.0, True),
    ("off", 52, 7 * 86_400.0, False),
    ("auto", 12, 31_556_952.0 / 12, False),     # months: a whole year
    ("auto", 12, 3653 * 86_400.0 / 120, False),  # the mean month of 2000-2009 (3 leap days)
    ("on", 12, 31_556_952.0 / 12, True),
    ("auto", 24, 3600.0, False),
    ("on", 24, 3600.0, True),
    ("on", 14, 3600.0, False),                  # business hours: no calendar cycle
    ("on", 0, 7 * 86_400.0, False),             # no season
])
def test_where_the_index_joins_the_mix(mode, period, step, applies):
    assert windowing.calendar_index_applies(mode, period, step) is applies


@pytest.mark.parametrize("value", ["off", "auto", "on"])
def test_the_flag_reaches_the_model_config(value):
    args = cli.build_parser().parse_args(["run", "--data", "d.csv", "--output", "o", "--calendar-index", value])
    assert cli.pipeline_config_from_flags(args).model.calendar_index == value


@pytest.mark.parametrize("mode, frequency, expected", [("on", "MS", True), ("auto", "MS", False),
                                                       ("auto", "W-SAT", True), ("off", "W-SAT", False)])
def test_the_pipeline_hands_where_it_applies_to_the_transform(pipeline_run, mode, frequency, expected):
    config, _ = pipeline_run
    period = {"MS": 12, "W-SAT": 52}[frequency]
    step = config_lib.options.step_seconds(frequency)
    windows = dataclasses.replace(config.windows, seasonal_periods=(period,), step_seconds=step)
    config = dataclasses.replace(config, windows=windows,
                                 model=dataclasses.replace(config.model, calendar_index=mode))
    transform = next(c for c in pipeline_lib.create_pipeline(config).components if c.id == "Transform")
    assert json.loads(transform.exec_properties["custom_config"])["calendar_index"] is expected


@pytest.mark.parametrize("mode, frequency, points, refused", [
    ("on", "B", 2000, True), ("auto", "B", 2000, False), ("on", "W-SAT", 2000, False), ("on", "MS", 2000, False),
    ("on", "h", 2000, False), ("on", "MS", 34, False)])
def test_a_season_that_is_no_calendar_cycle_is_refused_before_any_work(mode, frequency, points, refused):
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path="d.csv"), output_dir="o",
                                       model=config_lib.ModelConfig(calendar_index=mode))
    if refused:
        with pytest.raises(ConfigError, match="--calendar-index needs a primary season that is a day, a week or a"):
            config_lib.resolve(config, frequency, points=points)
    else:
        # 34 months hold no 3 years: no season, no seasonal bases, and the flag changes nothing.
        resolved = config_lib.resolve(config, frequency, points=points)
        assert resolved.model.calendar_index == mode and bool(resolved.windows.seasonal_periods) == (points > 36)
