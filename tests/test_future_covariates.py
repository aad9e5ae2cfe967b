"""Known-future covariates end to end: windows carry them, the served model takes them, and they pay.

A synthetic hourly series whose level jumps by 8 during promotions that no history can predict
(random 3-hour blocks), plus a daily and a weekly pattern. The promotion flag is known in advance
(``--future-covariate-columns promo``): its past values come with the history (``covariate_promo``)
and its future ones with the horizon (``future_promo``). The model that sees it must beat the
model that does not by a wide margin on the same test windows, and the served signature must
refuse a request without it, naming the input.
"""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import windowing
from pipeline import config as config_lib
from pipeline import local_data, local_runner
from serving import contract

HORIZON = 6
SMALL_MODEL = config_lib.ModelConfig(lstm_units=(32,), epochs=40, batch_size=64)


def synthetic_promotions(days: int = 56, seed: int = 0) -> pd.DataFrame:
    """Hourly values: daily and weekly cycles, noise, and +8 during random 3-hour promotions."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=days * 24, freq="h", tz="UTC")
    promo = np.zeros(len(times))
    for start in rng.choice(len(times) - 3, size=len(times) // 30, replace=False):
        promo[start:start + 3] = 1.0
    value = (10 + 3 * np.sin(2 * np.pi * times.hour / 24) + 2 * (times.dayofweek < 5) + 8 * promo
             + rng.normal(0, 0.3, len(times)))
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": value, "promo": promo})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same data and model, trained with and without the future covariate."""
    root = tmp_path_factory.mktemp("future")
    data = root / "promotions.csv"
    synthetic_promotions().to_csv(data, index=False)
    results = {}
    for name, future in (("with", ("promo",)), ("without", ())):
        config = config_lib.PipelineConfig(
            data=config_lib.DataConfig(path=str(data), future_covariate_columns=future),
            output_dir=str(root / name), windows=config_lib.WindowConfig(horizon=HORIZON),
            model=SMALL_MODEL, evaluation=config_lib.EvaluationConfig(max_skill=1e6))
        results[name] = local_runner.run(config)
    return results


def _test_mae(result: local_runner.RunResult) -> float:
    test = local_data.read_split_windows(result.examples_uri, windowing.TEST)
    signature = tf.saved_model.load(result.pushed_model).signatures[contract.SIGNATURE_NAME]
    inputs = {contract.INPUT_KEY: tf.constant(test.histories),
              contract.ORIGIN_TIMESTAMP_INPUT_KEY: tf.constant(test.origin_times)}
    inputs.update({contract.covariate_input_key(c): tf.constant(v) for c, v in test.covariates.items()})
    inputs.update({contract.future_input_key(c): tf.constant(v) for c, v in test.future_covariates.items()})
    forecast = signature(**inputs)[contract.OUTPUT_KEY].numpy()
    return float(np.mean(np.abs(forecast - test.targets)))


def test_windows_carry_the_future_values_of_the_covariate(two_runs):
    frame = synthetic_promotions()
    promo = dict(zip(pd.to_datetime(frame["timestamp"]).astype("int64") // 10**9, frame["promo"]))
    test = local_data.read_split_windows(two_runs["with"].examples_uri, windowing.TEST)
    expected = np.vectorize(promo.get)(test.target_times)
    np.testing.assert_array_equal(test.future_covariates["promo"], expected)
    assert test.future_covariates["promo"].shape == (len(test), HORIZON)


def test_the_model_with_the_future_covariate_beats_the_one_without_by_far(two_runs):
    with_mae, without_mae = _test_mae(two_runs["with"]), _test_mae(two_runs["without"])
    # Promotions move the level by 8 on a tenth of the hours; knowing them must remove most of that error.
    assert with_mae < 0.6 * without_mae, (with_mae, without_mae)


def test_a_request_without_the_future_covariate_is_refused_naming_it(two_runs):
    signature = tf.saved_model.load(two_runs["with"].pushed_model).signatures[contract.SIGNATURE_NAME]
    assert contract.future_input_key("promo") in signature.structured_input_signature[1]
    context = two_runs["with"].config.windows.context
    with pytest.raises(TypeError, match="future_promo"):
        signature(history=tf.zeros([1, context]), covariate_promo=tf.zeros([1, context]),
                  origin_timestamp=tf.constant([0], tf.int64))
