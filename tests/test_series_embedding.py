"""The optional series embedding: a vocabulary of the training split's ids, in the served graph."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features, transform
from components import trainer as trainer_lib
from pipeline import config as config_lib
from serving import contract, repository
from tests import conftest

MODEL = config_lib.ModelConfig(series_embedding_dim=3, lstm_units=(6,), epochs=2, batch_size=16,
                               early_stopping_patience=0)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Two training series, an eval split that adds a third; transformed with the embedding, trained, exported."""
    out = str(tmp_path_factory.mktemp("series_embedding"))
    splits = conftest.two_series_splits()
    rng = np.random.default_rng(1)
    splits["eval"] = splits["eval"] + conftest.make_windows(50 + rng.normal(0, 1, 25), "new", start=35)
    config = dict(conftest.unit_transform_config("window_std"), series_embedding=True)
    run_transform = conftest.run_transform(out, splits, config)
    tft_output = tft.TFTransformOutput(run_transform)
    accessor = conftest.data_accessor(out)
    eval_files = conftest.transformed_files(out, "eval")
    model = trainer_lib.train(conftest.transformed_files(out, "train"), eval_files, accessor, tft_output,
                              conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, MODEL)
    export_dir = os.path.join(out, "export")
    trainer_lib.export_serving_model(model, tft_output, export_dir, MODEL,
                                     trainer_lib.warmup_inputs_from(eval_files, accessor, tft_output, series_id=True))
    return out, splits, tft_output, model, export_dir


def _transformed(out: str, split: str) -> list[dict]:
    examples = []
    for path in conftest.transformed_files(out, split):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            examples.append(tf.train.Example.FromString(record.numpy()).features.feature)
    return examples


def test_series_index_is_the_training_vocabulary_and_an_unseen_id_gets_the_last(embedded):
    out, _, tft_output, _, _ = embedded
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name(features.SERIES_VOCABULARY)]
    assert sorted(vocabulary) == ["high", "low"]  # "new" is in eval only: not in the vocabulary
    for example in _transformed(out, "eval"):
        series = example[features.SERIES_ID].bytes_list.value[0].decode()
        index = example[features.SERIES_INDEX].int64_list.value[0]
        assert index == (vocabulary.index(series) if series in vocabulary else len(vocabulary))


def test_the_model_embeds_each_known_series_and_an_unseen_one_as_zeros(embedded):
    _, _, tft_output, model, _ = embedded
    assert trainer_lib.model_inputs(tft_output)[features.SERIES_INDEX] == 3  # two ids and one for the rest
    weights = model.get_layer("series_embedding").get_weights()[0]
    assert weights.shape == (3, MODEL.series_embedding_dim)
    assert np.all(weights[2] == 0)  # never trained: an unknown series is the average one
    assert np.any(weights[:2] != 0)  # trained from zeros


def test_the_served_model_takes_the_series_id_and_gives_the_keras_forecasts(embedded):
    _, splits, tft_output, model, export_dir = embedded
    rows = splits["eval"]
    inputs = conftest.serving_inputs_of(rows)
    loaded = repository.load_version(export_dir, 1)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    assert contract.SERIES_ID_INPUT_KEY in signature.inputs
    served = loaded.session.run(signature.outputs[contract.OUTPUT_KEY].name,
                                {signature.inputs[k].name: v for k, v in inputs.items()})
    raw = {k: tf.constant(v) for k, v in inputs.items()}
    for key in (contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY):
        raw[key] = tf.reshape(raw[key], [-1, 1])
    transformed = tft_output.transform_raw_features(raw)
    keys = trainer_lib.model_inputs(tft_output)
    scaled = model({k: transformed[k] for k in keys}, training=False).numpy()
    expected = scaled * transformed[features.SCALE].numpy() + transformed[features.LOC].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-3)


def test_an_embedding_without_series_ids_is_refused():
    inputs = {features.HISTORY: tf.zeros([2, conftest.UNIT_CONTEXT])}
    with pytest.raises(ValueError, match="series embedding needs the feature 'series_id'"):
        transform.preprocessing_fn(inputs, dict(conftest.unit_transform_config("window_std"), series_embedding=True))


def test_the_embedding_width_is_a_flag_and_needs_no_per_series_scaling():
    from pipeline import cli
    args = cli.build_parser().parse_args(["run", "--data", "x.csv", "--output", "out", "--series-embedding-dim", "4"])
    assert args.series_embedding_dim == 4
    assert config_lib.ModelConfig(series_embedding_dim=4).takes_series_id
    assert not config_lib.ModelConfig().takes_series_id
    with pytest.raises(config_lib.ConfigError, match="--series-embedding-dim"):
        config_lib.ModelConfig(series_embedding_dim=-1)


def test_the_model_description_tells_the_forecast_job_to_send_the_series_id():
    from components import batch_forecast
    custom = {"windows": {"history": 8, "horizon": 2, "seasonal_periods": [10]}, "data": {}}
    description = trainer_lib.model_description(custom, MODEL)
    assert description["takes_series_id"] is True
    inputs = batch_forecast.ModelInputs.from_description(description)
    assert inputs.series_id and inputs.known_series is None  # an unseen id gets the zero vector: not skipped
    assert not batch_forecast.ModelInputs.from_description(
        trainer_lib.model_description(custom, config_lib.ModelConfig())).series_id
