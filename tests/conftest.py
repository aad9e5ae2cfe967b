"""Shared fixtures: one real pipeline run on a slice of the bundled data, reused by the tests, and
made-up windows run through the project's Transform module for the Transform and Trainer tests."""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from pipeline import config as config_lib
from pipeline import local_runner
from serving import contract

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data", "co2_weekly_mlo.csv")
# Fast settings: a slice of the series, a small model, few epochs. The skill bound is loose on
# purpose: these tests check plumbing and numbers, not accuracy (tests/test_blessing.py does).
# The scaling is last_value, whose statistics come from the training split: test_transform
# checks that they come from it alone.
SLICE_ROWS = 700
# Five cycles of context (the default before 12): the fixtures' windows and the figures tests assert on them.
FAST_WINDOWS = config_lib.WindowConfig(history=16, horizon=3, seasonal_periods=(8,), split_fractions=(0.6, 0.2),
                                       seasonal_cycles=5)
# A calibration fold (the default; one more training and its scores), and an option off the defaults'
# path where it exercises more of the pipeline end to end: auto's two trainings and choice of the mix's start.
FAST_MODEL = config_lib.ModelConfig(scaling="last_value", lstm_units=(16, 16), epochs=2, batch_size=32,
                                    calibration_folds=1, base_mix_fit="auto")
FAST_EVALUATION = config_lib.EvaluationConfig(max_skill=1e6)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """Runs the whole TFX pipeline once; returns (the resolved config the run used, RunResult)."""
    root = tmp_path_factory.mktemp("pipeline_run")
    data = root / "co2_slice.csv"
    with open(DATA) as f:
        data.write_text("".join(line for _, line in zip(range(SLICE_ROWS + 1), f)))
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=str(data)), output_dir=str(root / "run"),
        windows=FAST_WINDOWS, model=FAST_MODEL, evaluation=FAST_EVALUATION)
    result = local_runner.run(config)
    return result.config, result


@pytest.fixture(scope="session")
def pushed_model(pipeline_run):
    """Path of the pushed SavedModel version."""
    _, result = pipeline_run
    assert result.pushed_model is not None, "the fast pipeline run pushed nothing"
    return result.pushed_model


def origins(windows, rows=slice(None)) -> dict[str, np.ndarray]:
    """The input beyond the history that the pushed model takes: each window's origin timestamp.

    The fast run has calendar features (the default) and no covariate, so its ``serving_default``
    takes ``history`` and ``origin_timestamp``.
    """
    return {contract.ORIGIN_TIMESTAMP_INPUT_KEY: np.asarray(windows.origin_times[rows], np.int64)}


def in_process_forecast(saved_model_dir: str, windows: np.ndarray, extra: dict[str, np.ndarray]) -> np.ndarray:
    """Forecasts of the SavedModel's serving_default signature, called in this process (TF2).

    Args:
      saved_model_dir: The SavedModel.
      windows: Histories ``[N, C]``.
      extra: The signature's other inputs by name (see :func:`origins`).
    """
    return in_process_outputs(saved_model_dir, windows, extra)[contract.OUTPUT_KEY]


def in_process_outputs(saved_model_dir: str, windows: np.ndarray,
                       extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the SavedModel's serving_default signature, called in this process (TF2)."""
    signature = tf.saved_model.load(saved_model_dir).signatures[contract.SIGNATURE_NAME]
    inputs = {contract.INPUT_KEY: tf.constant(windows, tf.float32)}
    inputs.update({k: tf.constant(np.asarray(v, contract.input_dtype(k))) for k, v in extra.items()})
    return {k: v.numpy() for k, v in signature(**inputs).items()}


@pytest.fixture()
def model_base_path(tmp_path, pushed_model):
    """A fresh model base path holding the pushed model as version 1."""
    base = tmp_path / "models" / "co2"
    shutil.copytree(pushed_model, base / "1")
    return base


# Windows made up in the tests (not through the ExampleGen), shaped as the ExampleGen writes them,
# for the Transform and Trainer functions: hourly windows whose seasonal period (10) is longer than
# the history L (8), so the raw history holds the context C = 10 and the model reads its last 8; a
# past covariate (temperature, [C]) and a known-future one (price: [C] up to the origin, [H] after).
UNIT_WINDOWS = config_lib.WindowConfig(history=8, horizon=2, seasonal_periods=(10,), seasonal_cycles=1,
                                       step_seconds=3600.0)
UNIT_HISTORY, UNIT_HORIZON, UNIT_PERIOD = UNIT_WINDOWS.history, UNIT_WINDOWS.horizon, 10
UNIT_CONTEXT = UNIT_WINDOWS.context
COVARIATE = "covariate_temperature"
FUTURE_HISTORY, FUTURE = "covariate_price", "future_price"
JAN1 = 1704067200  # 2024-01-01T00:00:00Z, a Monday


def unit_transform_config(scaling: str, **windows) -> dict:
    """The Transform's custom_config for the made-up windows, as the pipeline builds it."""
    from components import transform

    return transform.transform_config(dataclasses.asdict(dataclasses.replace(UNIT_WINDOWS, **windows)), scaling)


def unit_feature_spec(covariate: bool = True) -> dict:
    """Raw feature spec of the made-up windows, shaped as SchemaGen infers the ExampleGen's."""
    spec = {
        "history": tf.io.FixedLenFeature([UNIT_CONTEXT], tf.float32),
        "target": tf.io.FixedLenFeature([UNIT_HORIZON], tf.float32),
        "series_id": tf.io.FixedLenFeature([1], tf.string),
        "origin_timestamp": tf.io.FixedLenFeature([1], tf.int64),
        "mase_scale": tf.io.FixedLenFeature([1], tf.float32),
    }
    if covariate:
        spec[COVARIATE] = tf.io.FixedLenFeature([UNIT_CONTEXT], tf.float32)
        spec[FUTURE_HISTORY] = tf.io.FixedLenFeature([UNIT_CONTEXT], tf.float32)
        spec[FUTURE] = tf.io.FixedLenFeature([UNIT_HORIZON], tf.float32)
    return spec


def future_price(points: np.ndarray) -> np.ndarray:
    """The known-future covariate at grid points ``points``: a price that cycles every 5 hours."""
    return (20 + 3 * (points % 5)).astype(np.float32)


def make_windows(values: np.ndarray, series_id: str, covariate: bool = True, start: int = 0) -> list[dict]:
    """Sliding hourly windows of ``values`` (point i at ``JAN1 + (start + i)`` hours) as raw instance dicts.

    Each history holds the C points up to the origin; the covariate is 2 * value + 50 at them, the
    future covariate :func:`future_price` at them and at the H target points.
    """
    rows = []
    span = UNIT_CONTEXT + UNIT_HORIZON
    for s in range(len(values) - span + 1):
        origin = s + UNIT_CONTEXT - 1
        row = {"history": values[s:origin + 1].astype(np.float32),
               "target": values[origin + 1:s + span].astype(np.float32),
               "series_id": np.array([series_id.encode()], dtype=object),
               "origin_timestamp": np.array([JAN1 + (start + origin) * 3600], np.int64),
               "mase_scale": np.array([1.0], np.float32)}
        if covariate:
            row[COVARIATE] = (2 * values[s:origin + 1] + 50).astype(np.float32)
            row[FUTURE_HISTORY] = future_price(start + s + np.arange(UNIT_CONTEXT))
            row[FUTURE] = future_price(start + origin + 1 + np.arange(UNIT_HORIZON))
        rows.append(row)
    return rows


def serving_inputs_of(rows: list[dict]) -> dict[str, np.ndarray]:
    """The raw ``serving_default`` inputs of windows from :func:`make_windows` (with covariates)."""
    return {contract.INPUT_KEY: np.stack([r["history"] for r in rows]),
            COVARIATE: np.stack([r[COVARIATE] for r in rows]),
            FUTURE_HISTORY: np.stack([r[FUTURE_HISTORY] for r in rows]),
            FUTURE: np.stack([r[FUTURE] for r in rows]),
            contract.ORIGIN_TIMESTAMP_INPUT_KEY: np.concatenate([r["origin_timestamp"] for r in rows]),
            contract.SERIES_ID_INPUT_KEY: np.array([r["series_id"][0] for r in rows], dtype=object)}


def run_transform(out_dir: str, splits: dict[str, list[dict]], custom_config: dict, covariate: bool = True) -> str:
    """Runs the project's ``preprocessing_fn`` with tf.Transform on Beam, as the Transform component does.

    The statistics are analyzed on ``splits["train"]`` only; every split is transformed and written
    as gzipped ``Split-<name>/transformed-*.gz`` TFRecords of transformed ``tf.Example``s.

    Returns:
      The transform output directory (for ``tft.TFTransformOutput``).
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import metadata_io

    from components import transform

    metadata = tft.DatasetMetadata.from_feature_spec(unit_feature_spec(covariate))
    transform_dir = os.path.join(out_dir, "transform_graph")
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        transform_fn = ((p | "Train" >> beam.Create(splits["train"]), metadata)
                        | tft_beam.AnalyzeDataset(lambda x: transform.preprocessing_fn(x, custom_config)))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
        for name, rows in splits.items():
            data, out_metadata = (((p | f"Read{name}" >> beam.Create(rows), metadata), transform_fn)
                                  | f"Transform{name}" >> tft_beam.TransformDataset())
            coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
            _ = (data | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Write{name}" >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, "transformed", f"Split-{name}", "transformed"), file_name_suffix=".gz"))
    # The Transform component also keeps the raw schema; raw_feature_spec() reads it.
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return transform_dir


def transformed_files(out_dir: str, split: str) -> list[str]:
    return tf.io.gfile.glob(os.path.join(out_dir, "transformed", f"Split-{split}", "*"))


def data_accessor(out_dir: str, splits: tuple[str, ...] = ("train", "eval")):
    """The TFX DataAccessor the Trainer gets, over the transformed examples in ``out_dir``."""
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out_dir, "transformed")
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    return fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)


def fit_inputs(out_dir: str) -> tuple[list[str], list[str], tuple]:
    """What ``components.trainer.fit`` takes of the transformed windows in ``out_dir``: the train and
    eval files, and ``(data accessor, TFTransformOutput, history, horizon)``."""
    import tensorflow_transform as tft

    args = (data_accessor(out_dir), tft.TFTransformOutput(os.path.join(out_dir, "transform_graph")),
            UNIT_HISTORY, UNIT_HORIZON)
    return transformed_files(out_dir, "train"), transformed_files(out_dir, "eval"), args


def two_series_splits(seed: int = 0) -> dict[str, list[dict]]:
    """Two noisy series at levels 10 and 1000 with covariates; eval values far outside training."""
    rng = np.random.default_rng(seed)
    low = 10 + rng.normal(0, 1, 60)
    high = 1000 + rng.normal(0, 20, 60)
    return {"train": make_windows(low[:45], "low") + make_windows(high[:45], "high"),
            "eval": make_windows(low[35:] * 7, "low", start=35) + make_windows(high[35:] * 7, "high", start=35)}


@pytest.fixture(scope="session")
def covariate_transform(tmp_path_factory):
    """Made-up two-series windows with covariates, transformed with per-series scaling, seasonal lags
    and calendar features.

    Returns:
      (directory with ``transform_graph`` and ``transformed``, the raw splits).
    """
    out = str(tmp_path_factory.mktemp("covariate_transform"))
    splits = two_series_splits()
    run_transform(out, splits, unit_transform_config("per_series"))
    return out, splits
