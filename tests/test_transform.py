"""The Transform module through real tf.Transform: train-split statistics, each scaling, covariates."""

import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features, windowing
from components import transform as transform_lib
from components.example_gen import series as series_lib
from tests import conftest


def _stack(rows: list[dict], key: str) -> np.ndarray:
    return np.stack([r[key] for r in rows]).astype(np.float64)


def _apply(tft_output: tft.TFTransformOutput, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = {k: tf.constant(v) for k, v in raw.items()}
    return {k: v.numpy() for k, v in tft_output.transform_raw_features(tensors).items()}


def test_pipeline_scaling_statistics_are_those_of_the_train_split_alone(pipeline_run):
    config, result = pipeline_run
    assert config.model.scaling == "last_value"
    graph_dir = glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*"))[0]
    tft_output = tft.TFTransformOutput(graph_dir)
    splits = {s: series_lib.read_split_windows(result.examples_uri, s).histories.astype(np.float64)
              for s in windowing.SPLITS}

    def spread(histories: np.ndarray) -> float:
        return float(np.std(histories - histories[:, -1:]))

    probe = splits[windowing.TEST][:3]
    scale = _apply(tft_output, {features.HISTORY: probe.astype(np.float32)})[features.SCALE]
    np.testing.assert_allclose(scale, spread(splits[windowing.TRAIN]), rtol=1e-4)
    everything = spread(np.concatenate(list(splits.values())))
    assert abs(everything - spread(splits[windowing.TRAIN])) > 1e-3, "the check could not tell the splits apart"


@pytest.fixture(scope="module")
def per_series_output(covariate_transform):
    """Two series at levels 10 and 1000, with a covariate and a calendar feature, scaled per series."""
    out, splits = covariate_transform
    return tft.TFTransformOutput(os.path.join(out, "transform_graph")), splits


def test_per_series_scaling_uses_each_series_training_statistics(per_series_output):
    tft_output, splits = per_series_output
    train = splits["train"]
    history = _stack(train, "history")
    ids = np.array([r["series_id"][0] for r in train])
    probe_ids = [b"low", b"high", b"never_seen"]
    raw = {features.HISTORY: np.zeros((3, conftest.UNIT_HISTORY), np.float32),
           features.TARGET: np.full((3, conftest.UNIT_HORIZON), 5.0, np.float32),
           features.SERIES_ID: np.array([[i] for i in probe_ids], dtype=object),
           conftest.COVARIATE: np.zeros((3, conftest.UNIT_HISTORY), np.float32),
           conftest.CALENDAR: np.array([[0.25], [-0.5], [1.0]], np.float32)}
    out = _apply(tft_output, raw)
    want_loc = [history[ids == b"low"].mean(), history[ids == b"high"].mean(), history.mean()]
    want_scale = [history[ids == b"low"].std(), history[ids == b"high"].std(), history.std()]
    np.testing.assert_allclose(out[features.LOC][:, 0], want_loc, rtol=1e-4)
    np.testing.assert_allclose(out[features.SCALE][:, 0], want_scale, rtol=1e-3)
    # The target takes the history's map, so forecasts map back with it.
    np.testing.assert_allclose(out[features.TARGET_SCALED] * out[features.SCALE] + out[features.LOC], 5.0, atol=1e-3)
    # Covariates are scaled by their own training statistics, whatever the series.
    covariate = _stack(train, conftest.COVARIATE)
    np.testing.assert_allclose(out[transform_lib.scaled_feature(conftest.COVARIATE)],
                               -covariate.mean() / covariate.std(), rtol=1e-4)
    # Calendar features pass through; the series id is carried for the Trainer.
    np.testing.assert_array_equal(out[conftest.CALENDAR], raw[conftest.CALENDAR])
    assert out[features.SERIES_ID].ravel().tolist() == probe_ids


@pytest.mark.parametrize("scaling", ["global", "last_value", "window_mean"])
def test_scalings_map_history_and_target_with_one_invertible_map(tmp_path, scaling):
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(0.5, 1.0, 80)) + 300  # a trending series, as CO2 is
    splits = {"train": conftest.make_windows(values[:60], "s", covariate=False)}
    out_dir = conftest.run_transform(str(tmp_path), splits, {"scaling": scaling}, covariate=False)
    tft_output = tft.TFTransformOutput(out_dir)
    train = _stack(splits["train"], "history")
    loc_of = {"global": lambda h: np.full((len(h), 1), train.mean()),
              "last_value": lambda h: h[:, -1:],
              "window_mean": lambda h: h.mean(axis=1, keepdims=True)}[scaling]
    test = conftest.make_windows(values[60:], "s", covariate=False)
    history, target = _stack(test, "history"), _stack(test, "target")
    out = _apply(tft_output, {features.HISTORY: history.astype(np.float32), features.TARGET: target.astype(np.float32)})
    np.testing.assert_allclose(out[features.LOC], loc_of(history), rtol=1e-5)
    np.testing.assert_allclose(out[features.SCALE], np.std(train - loc_of(train)), rtol=1e-4)
    np.testing.assert_allclose(out[features.TARGET_SCALED] * out[features.SCALE] + out[features.LOC], target,
                               rtol=1e-5)


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="scaling must be one of"):
        transform_lib.preprocessing_fn({features.HISTORY: tf.zeros([1, 4])}, {"scaling": "minmax"})


@pytest.mark.slow
def test_changing_eval_and_test_values_leaves_the_statistics_unchanged(tmp_path, pipeline_run):
    """The whole pipeline again on the same series with everything after the train cut raised by 40."""
    import pandas as pd  # pylint: disable=g-import-not-at-top

    from pipeline import local_runner  # pylint: disable=g-import-not-at-top

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

    before = series_lib.read_split_windows(result.examples_uri, windowing.EVAL)
    after = series_lib.read_split_windows(changed_result.examples_uri, windowing.EVAL)
    assert np.all(after.targets > before.targets + 30), "the eval values did not change"
    probe = {features.HISTORY: before.histories[:5]}
    for key, value in _apply(graph(config), probe).items():
        np.testing.assert_array_equal(_apply(graph(changed), probe)[key], value, err_msg=key)
