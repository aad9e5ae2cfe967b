"""Shared fixtures: one real pipeline run on a slice of the bundled data, reused by the tests."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from pipeline import config as config_lib
from pipeline import local_runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data", "co2_weekly_mlo.csv")
# Fast settings: a slice of the series, a small model, few epochs. The skill bound is loose on
# purpose: these tests check plumbing and numbers, not accuracy (tests/test_blessing.py does).
SLICE_ROWS = 700
FAST_WINDOWS = config_lib.WindowConfig(history=16, horizon=3, stride=1, split_fractions=(0.6, 0.2))
FAST_MODEL = config_lib.ModelConfig(lstm_units=(16, 16), epochs=2, batch_size=32)
FAST_EVALUATION = config_lib.EvaluationConfig(season_length=8, max_skill=1e6)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """Runs the whole TFX pipeline once; returns (config, RunResult)."""
    root = tmp_path_factory.mktemp("pipeline_run")
    data = root / "co2_slice.csv"
    with open(DATA) as f:
        data.write_text("".join(line for _, line in zip(range(SLICE_ROWS + 1), f)))
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=str(data)), output_dir=str(root / "run"),
        windows=FAST_WINDOWS, model=FAST_MODEL, evaluation=FAST_EVALUATION)
    return config, local_runner.run(config)


@pytest.fixture(scope="session")
def pushed_model(pipeline_run):
    """Path of the pushed SavedModel version."""
    _, result = pipeline_run
    assert result.pushed_model is not None, "the fast pipeline run pushed nothing"
    return result.pushed_model


def in_process_forecast(saved_model_dir: str, windows: np.ndarray) -> np.ndarray:
    """Forecasts of the SavedModel's serving_default signature, called in this process (TF2)."""
    from serving import contract  # pylint: disable=g-import-not-at-top
    signature = tf.saved_model.load(saved_model_dir).signatures[contract.SIGNATURE_NAME]
    return signature(**{contract.INPUT_KEY: tf.constant(windows, tf.float32)})[contract.OUTPUT_KEY].numpy()


@pytest.fixture()
def model_base_path(tmp_path, pushed_model):
    """A fresh model base path holding the pushed model as version 1."""
    base = tmp_path / "models" / "co2"
    shutil.copytree(pushed_model, base / "1")
    return base


# Windows made up in the tests (not through the ExampleGen), for the Transform and Trainer
# functions: a covariate and a calendar feature that the ExampleGen does not write yet.
UNIT_HISTORY, UNIT_HORIZON = 8, 2
COVARIATE = "covariate_temperature"
CALENDAR = "day_of_year_sin"


def unit_feature_spec(covariate: bool = True) -> dict:
    """Raw feature spec of the made-up windows, shaped as SchemaGen infers the ExampleGen's."""
    spec = {
        "history": tf.io.FixedLenFeature([UNIT_HISTORY], tf.float32),
        "target": tf.io.FixedLenFeature([UNIT_HORIZON], tf.float32),
        "series_id": tf.io.FixedLenFeature([1], tf.string),
        "origin_timestamp": tf.io.FixedLenFeature([1], tf.int64),
    }
    if covariate:
        spec[COVARIATE] = tf.io.FixedLenFeature([UNIT_HISTORY], tf.float32)
        spec[CALENDAR] = tf.io.FixedLenFeature([1], tf.float32)
    return spec


def make_windows(values: np.ndarray, series_id: str, covariate: bool = True, start: int = 0) -> list[dict]:
    """Sliding windows of ``values`` as raw instance dicts; the covariate is 2 * value + 50."""
    rows = []
    span = UNIT_HISTORY + UNIT_HORIZON
    for s in range(len(values) - span + 1):
        row = {"history": values[s:s + UNIT_HISTORY].astype(np.float32),
               "target": values[s + UNIT_HISTORY:s + span].astype(np.float32),
               "series_id": np.array([series_id.encode()], dtype=object),
               "origin_timestamp": np.array([start + s + UNIT_HISTORY - 1], np.int64)}
        if covariate:
            row[COVARIATE] = (2 * values[s:s + UNIT_HISTORY] + 50).astype(np.float32)
            row[CALENDAR] = np.array([np.sin(2 * np.pi * (s % 52) / 52)], np.float32)
        rows.append(row)
    return rows


def run_transform(out_dir: str, splits: dict[str, list[dict]], custom_config: dict, covariate: bool = True) -> str:
    """Runs the project's ``preprocessing_fn`` with tf.Transform on Beam, as the Transform component does.

    The statistics are analyzed on ``splits["train"]`` only; every split is transformed and written
    as gzipped ``Split-<name>/transformed-*.gz`` TFRecords of transformed ``tf.Example``s.

    Returns:
      The transform output directory (for ``tft.TFTransformOutput``).
    """
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
    import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
    from tensorflow_transform.tf_metadata import metadata_io  # pylint: disable=g-import-not-at-top

    from components import transform  # pylint: disable=g-import-not-at-top

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
    from tfx.components.trainer import fn_args_utils  # pylint: disable=g-import-not-at-top
    from tfx.components.util import tfxio_utils  # pylint: disable=g-import-not-at-top
    from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=g-import-not-at-top

    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out_dir, "transformed")
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    return fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)


def two_series_splits(seed: int = 0) -> dict[str, list[dict]]:
    """Two noisy series at levels 10 and 1000 with a covariate; eval values far outside training."""
    rng = np.random.default_rng(seed)
    low = 10 + rng.normal(0, 1, 60)
    high = 1000 + rng.normal(0, 20, 60)
    return {"train": make_windows(low[:45], "low") + make_windows(high[:45], "high"),
            "eval": make_windows(low[35:] * 7, "low", start=35) + make_windows(high[35:] * 7, "high", start=35)}


@pytest.fixture(scope="session")
def covariate_transform(tmp_path_factory):
    """Made-up two-series windows with a covariate, transformed with per-series scaling.

    Returns:
      (directory with ``transform_graph`` and ``transformed``, the raw splits).
    """
    out = str(tmp_path_factory.mktemp("covariate_transform"))
    splits = two_series_splits()
    run_transform(out, splits, {"scaling": "per_series"})
    return out, splits
