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
# Fast settings: a slice of the series, a small model, few epochs. The bound is loose on purpose:
# these tests check plumbing and numbers, not accuracy.
SLICE_ROWS = 700
FAST_WINDOWS = config_lib.WindowConfig(history=16, horizon=3, stride=1, split_fractions=(0.6, 0.2))
FAST_MODEL = config_lib.ModelConfig(lstm_units=(16, 16), epochs=2, batch_size=32)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """Runs the whole TFX pipeline once; returns (config, RunResult)."""
    root = tmp_path_factory.mktemp("pipeline_run")
    data = root / "co2_slice.csv"
    with open(DATA) as f:
        data.write_text("".join(line for _, line in zip(range(SLICE_ROWS + 1), f)))
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=str(data)), output_dir=str(root / "run"),
        windows=FAST_WINDOWS, model=FAST_MODEL, max_eval_mae=1e6)
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
