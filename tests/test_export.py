"""The exported SavedModel against the serving contract, through the loader TF Serving uses."""

import dataclasses
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from components import features, quantiles
from components import trainer as trainer_lib
from pipeline import config as config_lib
from serving import contract, dataplane, repository
from tests import conftest

MODEL = config_lib.ModelConfig(scaling="per_series", interval_method="quantile_head", lstm_units=(6, 4),
                               epochs=2, batch_size=16,
                               early_stopping_patience=0, seed=3)


def _ops(saved_model_dir: str) -> set[str]:
    """Every op type in the SavedModel's graphs, the function library included."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def _xla_functions(saved_model_dir: str) -> int:
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return sum(1 for mg in proto.meta_graphs for fn in mg.graph_def.library.function
               if fn.attr.get("_XlaMustCompile") is not None and fn.attr["_XlaMustCompile"].b)


def _session_forecast(loaded: repository.LoadedVersion, inputs: dict[str, np.ndarray],
                      output: str = contract.OUTPUT_KEY) -> np.ndarray:
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    return loaded.session.run(signature.outputs[output].name,
                              {signature.inputs[k].name: v for k, v in inputs.items()})


@pytest.fixture(scope="module")
def covariate_export(covariate_transform, tmp_path_factory):
    """A tiny model with a covariate and per-series scaling, trained and exported as the Trainer does.

    Both exports are calibrated on the eval split, as the Trainer does it.

    Returns:
      (model, tft_output, export dir, XLA export dir, raw eval inputs of serving_default).
    """
    out, splits = covariate_transform
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    accessor = conftest.data_accessor(out)
    eval_files = conftest.transformed_files(out, "eval")
    model = trainer_lib.train(conftest.transformed_files(out, "train"), eval_files, accessor, tft_output,
                              conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, MODEL)
    warmup = trainer_lib.warmup_inputs_from(eval_files, accessor, tft_output, series_id=True)
    root = tmp_path_factory.mktemp("covariate_export")
    export_dir, xla_dir = str(root / "plain"), str(root / "xla")
    adjustments, _ = trainer_lib.calibrate(model, eval_files, accessor, tft_output, MODEL)
    trainer_lib.export_serving_model(model, tft_output, export_dir, MODEL, warmup, adjustments)
    trainer_lib.export_serving_model(model, tft_output, xla_dir, dataclasses.replace(MODEL, serving_xla=True), warmup,
                                     adjustments)
    rows = splits["eval"]
    inputs = conftest.serving_inputs_of(rows)
    return model, tft_output, export_dir, xla_dir, inputs


def _raw_features(inputs: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """The raw example features of serving inputs: the timestamp and the series id are [batch, 1]."""
    raw = {k: tf.constant(v) for k, v in inputs.items()}
    for key in (contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY):
        raw[key] = tf.reshape(raw[key], [-1, 1])
    return raw


def _assert_tensor(info, dtype: tf.DType, shape: list[int]) -> None:
    assert tf.dtypes.as_dtype(info.dtype) == dtype
    assert [d.size for d in info.tensor_shape.dim] == shape


def test_pushed_model_signatures_follow_the_contract(pipeline_run, pushed_model):
    config, _ = pipeline_run
    signatures = repository.load_version(pushed_model, 1).signatures
    assert {contract.SIGNATURE_NAME, contract.EXAMPLES_SIGNATURE_NAME} <= set(signatures)
    default = signatures[contract.SIGNATURE_NAME]
    assert default.method_name == contract.PREDICT_METHOD_NAME
    # The context (max of L and the seasonal periods) and, for the calendar, the origin's timestamp.
    assert set(default.inputs) == {contract.INPUT_KEY, contract.ORIGIN_TIMESTAMP_INPUT_KEY}
    _assert_tensor(default.inputs[contract.INPUT_KEY], tf.float32, [-1, config.windows.context])
    _assert_tensor(default.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY], tf.int64, [-1])
    levels = len(config.model.quantiles)
    examples = signatures[contract.EXAMPLES_SIGNATURE_NAME]
    _assert_tensor(examples.inputs[contract.EXAMPLES_INPUT_KEY], tf.string, [-1])
    for signature in (default, examples):
        assert set(signature.outputs) == {contract.OUTPUT_KEY, contract.QUANTILES_OUTPUT_KEY,
                                          contract.QUANTILE_LEVELS_OUTPUT_KEY}
        _assert_tensor(signature.outputs[contract.OUTPUT_KEY], tf.float32, [-1, config.windows.horizon])
        _assert_tensor(signature.outputs[contract.QUANTILES_OUTPUT_KEY], tf.float32,
                       [-1, config.windows.horizon, levels])
        _assert_tensor(signature.outputs[contract.QUANTILE_LEVELS_OUTPUT_KEY], tf.float32, [-1, levels])


def test_covariate_model_takes_each_covariate_the_timestamp_and_the_series_id(covariate_export):
    _, _, export_dir, _, _ = covariate_export
    default = repository.load_version(export_dir, 1).signatures[contract.SIGNATURE_NAME]
    assert set(default.inputs) == {contract.INPUT_KEY, contract.covariate_input_key("temperature"),
                                   contract.covariate_input_key("price"), contract.future_input_key("price"),
                                   contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY}
    _assert_tensor(default.inputs[contract.INPUT_KEY], tf.float32, [-1, conftest.UNIT_CONTEXT])
    _assert_tensor(default.inputs[conftest.COVARIATE], tf.float32, [-1, conftest.UNIT_CONTEXT])
    _assert_tensor(default.inputs[conftest.FUTURE_HISTORY], tf.float32, [-1, conftest.UNIT_CONTEXT])
    _assert_tensor(default.inputs[conftest.FUTURE], tf.float32, [-1, conftest.UNIT_HORIZON])
    _assert_tensor(default.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY], tf.int64, [-1])
    _assert_tensor(default.inputs[contract.SERIES_ID_INPUT_KEY], tf.string, [-1])
    for key in default.inputs:
        assert np.dtype(tf.dtypes.as_dtype(default.inputs[key].dtype).as_numpy_dtype) == contract.input_dtype(key), key
    _assert_tensor(default.outputs[contract.OUTPUT_KEY], tf.float32, [-1, conftest.UNIT_HORIZON])


def test_session_loader_gives_the_calibrated_keras_quantiles(covariate_export, covariate_transform):
    model, tft_output, export_dir, _, inputs = covariate_export
    out = covariate_transform[0]
    transformed = tft_output.transform_raw_features(_raw_features(inputs))
    keys = list(trainer_lib.model_inputs(tft_output))
    # History, 2 covariates, the calendar of past and future, the future covariate, 2 lags, 3 seasonal bases.
    assert len(keys) == 11
    scaled = model.predict({k: transformed[k].numpy() for k in keys}, verbose=0)
    assert scaled.shape == (len(inputs[contract.INPUT_KEY]), conftest.UNIT_HORIZON, len(MODEL.quantiles))
    # The calibration the export baked in, recomputed here in numpy from the eval windows.
    eval_data = list(trainer_lib.make_dataset(conftest.transformed_files(out, "eval"), conftest.data_accessor(out),
                                              tft_output, 16, False, 0))
    eval_scaled = np.concatenate([model(x, training=False).numpy() for x, _ in eval_data])
    eval_targets = np.concatenate([y.numpy() for _, y in eval_data])
    adjustments = quantiles.conformal_adjustments(eval_targets, eval_scaled, MODEL.quantiles)
    assert np.abs(adjustments).max() > 0
    scale, loc = transformed[features.SCALE].numpy()[..., None], transformed[features.LOC].numpy()[..., None]
    through_keras = np.sort(quantiles.calibrate(scaled, adjustments) * scale + loc, axis=-1)
    loaded = repository.load_version(export_dir, 1)
    through_session = _session_forecast(loaded, inputs, contract.QUANTILES_OUTPUT_KEY)
    np.testing.assert_allclose(through_session, through_keras, rtol=1e-5, atol=1e-3)
    assert (np.diff(through_session, axis=-1) >= 0).all()
    median = MODEL.quantiles.index(0.5)
    np.testing.assert_array_equal(_session_forecast(loaded, inputs), through_session[..., median])
    levels = _session_forecast(loaded, inputs, contract.QUANTILE_LEVELS_OUTPUT_KEY)
    np.testing.assert_array_equal(levels, np.tile(np.float32(MODEL.quantiles), (len(levels), 1)))
    through_session = through_session[..., median]
    # Original units of each series: the level-1000 series is forecast near 7000 (its eval level
    # is 7 times the training one), the level-10 one near 70, not near 0.
    high = inputs[contract.SERIES_ID_INPUT_KEY] == b"high"
    assert np.all(through_session[high] > 1000) and np.all(through_session[~high] < 1000)


@pytest.mark.parametrize("rows", [None, 3, 1])
def test_xla_signature_gives_the_same_forecasts(covariate_export, rows):
    """Also at batch sizes that the XLA signature pads up to a bucket (3 -> 4)."""
    _, _, export_dir, xla_dir, inputs = covariate_export
    inputs = {k: v[:rows] for k, v in inputs.items()}
    assert _xla_functions(xla_dir) >= 1 and _xla_functions(export_dir) == 0
    with_xla = _session_forecast(repository.load_version(xla_dir, 1), inputs)
    assert with_xla.shape == (len(inputs[contract.INPUT_KEY]), conftest.UNIT_HORIZON)
    np.testing.assert_allclose(with_xla, _session_forecast(repository.load_version(export_dir, 1), inputs),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("which", ["pushed", "covariate"])
def test_warmup_requests_parse_and_the_signature_accepts_them(which, pushed_model, covariate_export):
    export_dir = pushed_model if which == "pushed" else covariate_export[2]
    loaded = repository.load_version(export_dir, 1)
    path = os.path.join(export_dir, contract.WARMUP_FILE)
    sizes = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.signature_name == contract.SIGNATURE_NAME
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert set(inputs) == set(loaded.signatures[contract.SIGNATURE_NAME].inputs)
        forecast = _session_forecast(loaded, inputs)
        assert forecast.shape[0] == len(inputs[contract.INPUT_KEY]) and np.isfinite(forecast).all()
        sizes.append(len(inputs[contract.INPUT_KEY]))
    assert sizes == list(trainer_lib.WARMUP_BATCH_SIZES)


def test_warmup_windows_are_real_eval_windows(covariate_export):
    _, _, export_dir, _, inputs = covariate_export
    record = next(tf.data.TFRecordDataset(os.path.join(export_dir, contract.WARMUP_FILE)).as_numpy_iterator())
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    history = tf.make_ndarray(request.inputs[contract.INPUT_KEY])[0]
    match = np.abs(inputs[contract.INPUT_KEY] - history).max(axis=1).argmin()
    assert set(request.inputs) == set(inputs)
    for key, values in inputs.items():
        sent = tf.make_ndarray(request.inputs[key])
        assert sent.dtype == contract.input_dtype(key), key
        if key in (contract.SERIES_ID_INPUT_KEY, contract.ORIGIN_TIMESTAMP_INPUT_KEY):
            assert sent[0] == values[match], key
        else:
            np.testing.assert_allclose(sent[0], values[match], rtol=1e-5, err_msg=key)


def test_no_cudnn_op_in_the_pushed_model(pushed_model):
    ops = _ops(pushed_model)
    assert "PartitionedCall" in ops or "StatefulPartitionedCall" in ops, "the op listing found no functions"
    assert not [op for op in ops if op.startswith("CudnnRNN")]


def test_export_traced_as_on_a_gpu_holds_no_cudnn_op(monkeypatch, tmp_path, covariate_export, covariate_transform):
    """Keras picks cuDNN when it sees a GPU at trace time; the export must not, whatever the device."""
    model, tft_output, _, _, inputs = covariate_export
    rnn = sys.modules["keras.src.backend.tensorflow.rnn"]
    monkeypatch.setattr(rnn, "_is_gpu_available", lambda: True)
    spec = trainer_lib.model_inputs(tft_output)
    fresh = trainer_lib.build_model(spec, conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, MODEL)
    fresh.set_weights(model.get_weights())
    # The check can fail: traced plainly under the same conditions, the model holds cuDNN ops.
    traced = tf.function(lambda x: fresh(x, training=False)).get_concrete_function(
        {k: tf.TensorSpec([None, width]) for k, width in spec.items()})
    graph_ops = {node.op for f in traced.graph.as_graph_def().library.function for node in f.node_def}
    graph_ops |= {node.op for node in traced.graph.as_graph_def().node}
    assert any(op.startswith("CudnnRNN") for op in graph_ops)
    export_dir = str(tmp_path / "gpu_traced")
    out = covariate_transform[0]
    adjustments, _ = trainer_lib.calibrate(fresh, conftest.transformed_files(out, "eval"), conftest.data_accessor(out),
                                           tft_output, MODEL)
    trainer_lib.export_serving_model(fresh, tft_output, export_dir, MODEL, adjustments=adjustments)
    assert not [op for op in _ops(export_dir) if op.startswith("CudnnRNN")]
    np.testing.assert_allclose(_session_forecast(repository.load_version(export_dir, 1), inputs),
                               _session_forecast(repository.load_version(covariate_export[2], 1), inputs),
                               rtol=1e-5, atol=1e-3)


def test_xla_batches_are_padded_to_the_warmed_up_buckets():
    seen = []

    def record(inputs):
        seen.append(int(inputs["x"].shape[0]))
        return inputs["x"][:, :2] * 2

    padded = trainer_lib._padded_to_buckets(record)
    for n, bucket in [(1, 1), (2, 2), (3, 4), (8, 8), (9, 16), (1000, 1024), (1024, 1024), (1025, 2048)]:
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        np.testing.assert_array_equal(padded({"x": tf.constant(x)}).numpy(), x[:, :2] * 2)
        assert seen[-1] == bucket, n
    assert set(seen) - {2048} <= set(trainer_lib.XLA_BATCH_BUCKETS)
    assert set(trainer_lib.WARMUP_BATCH_SIZES) <= set(trainer_lib.XLA_BATCH_BUCKETS)
    assert max(trainer_lib.WARMUP_BATCH_SIZES) == trainer_lib.WARMUP_MAX_BATCH_SIZE


def test_examples_signature_reads_every_input_from_the_examples(covariate_export):
    _, _, export_dir, _, inputs = covariate_export
    serialized = []
    for i in range(len(inputs[contract.INPUT_KEY])):
        feature = {key: tf.train.Feature(float_list=tf.train.FloatList(value=inputs[key][i]))
                   for key in (features.HISTORY, conftest.COVARIATE, conftest.FUTURE_HISTORY, conftest.FUTURE)}
        feature[features.ORIGIN_TIMESTAMP] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY][i]]))
        feature[features.SERIES_ID] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[inputs[contract.SERIES_ID_INPUT_KEY][i]]))
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    loaded = repository.load_version(export_dir, 1)
    signature = loaded.signatures[contract.EXAMPLES_SIGNATURE_NAME]
    from_examples = loaded.session.run(signature.outputs[contract.OUTPUT_KEY].name,
                                       {signature.inputs[contract.EXAMPLES_INPUT_KEY].name: serialized})
    np.testing.assert_allclose(from_examples, _session_forecast(loaded, inputs), rtol=1e-6, atol=1e-5)


def test_a_request_without_an_input_is_refused_naming_it(covariate_export):
    from serving import client as client_lib

    _, _, export_dir, _, inputs = covariate_export
    loaded = repository.load_version(export_dir, 1)
    extra = {k: v[:2] for k, v in inputs.items() if k not in (contract.INPUT_KEY, conftest.FUTURE)}
    request = client_lib.build_predict_request("m", inputs[contract.INPUT_KEY][:2], extra_inputs=extra)
    with pytest.raises(dataplane.RequestError, match=r"missing input\(s\) \['future_price'\]"):
        dataplane.run_request(loaded, request)
    # The timestamp must be int64 seconds, as the client sends it.
    request = client_lib.build_predict_request("m", inputs[contract.INPUT_KEY][:2], extra_inputs={
        **extra, conftest.FUTURE: inputs[conftest.FUTURE][:2]})
    assert request.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].dtype == tf.int64.as_datatype_enum
    _, outputs = dataplane.run_request(loaded, request)
    np.testing.assert_allclose(outputs[contract.OUTPUT_KEY], _session_forecast(loaded, {
        k: v[:2] for k, v in inputs.items()}), rtol=1e-6)
    request.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].CopyFrom(tf.make_tensor_proto(
        inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY][:2].astype(np.float32)))
    with pytest.raises(dataplane.RequestError, match="input 'origin_timestamp' has dtype float32, expected int64"):
        dataplane.run_request(loaded, request)


def test_the_default_export_is_not_xla():
    assert config_lib.ModelConfig().serving_xla is False
    assert trainer_lib.DEFAULT_LSTM_GRAPH == "fused"


def test_the_default_pushed_model_runs_in_a_session_without_xla(pushed_model):
    """As stock TF Serving runs it (--xla_cpu_compilation_enabled false): both signatures, no XLA function."""
    assert _xla_functions(pushed_model) == 0
    ops = _ops(pushed_model)
    # The LSTMs are BlockLSTMV2 ops, not Keras' while loop over the steps.
    assert "BlockLSTMV2" in ops and not {"While", "StatelessWhile"} & ops
    loaded = repository.load_version(pushed_model, 1, xla_cpu_compilation_enabled=False)
    (request, *_) = repository.warmup_requests(pushed_model)
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    forecast = _session_forecast(loaded, inputs)
    assert forecast.shape == (1, loaded.signatures[contract.SIGNATURE_NAME].outputs[contract.OUTPUT_KEY]
                              .tensor_shape.dim[1].size) and np.isfinite(forecast).all()
    example = tf.train.Example(features=tf.train.Features(feature={
        features.HISTORY: tf.train.Feature(float_list=tf.train.FloatList(value=inputs[contract.INPUT_KEY][0])),
        features.ORIGIN_TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(
            value=[inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY][0]]))}))
    examples = loaded.signatures[contract.EXAMPLES_SIGNATURE_NAME]
    serialized = [example.SerializeToString()]
    from_examples = loaded.session.run(examples.outputs[contract.OUTPUT_KEY].name,
                                       {examples.inputs[contract.EXAMPLES_INPUT_KEY].name: serialized})
    np.testing.assert_allclose(from_examples, forecast, rtol=1e-6)


@pytest.mark.parametrize("lstm_graph", ["unrolled", "loop"])
def test_every_portable_graph_gives_the_default_exports_forecasts(covariate_export, covariate_transform, tmp_path,
                                                                  lstm_graph):
    """The fused default against Keras' loop (what the model trained as) and the unrolled cell."""
    model, tft_output, export_dir, _, inputs = covariate_export
    out = covariate_transform[0]
    adjustments, _ = trainer_lib.calibrate(model, conftest.transformed_files(out, "eval"), conftest.data_accessor(out),
                                           tft_output, MODEL)
    other = str(tmp_path / lstm_graph)
    trainer_lib.export_serving_model(model, tft_output, other, MODEL, adjustments=adjustments, lstm_graph=lstm_graph)
    assert "BlockLSTMV2" in _ops(export_dir) and "BlockLSTMV2" not in _ops(other)
    assert ("While" in _ops(other) or "StatelessWhile" in _ops(other)) == (lstm_graph == "loop")
    np.testing.assert_allclose(_session_forecast(repository.load_version(export_dir, 1, False), inputs),
                               _session_forecast(repository.load_version(other, 1, False), inputs),
                               rtol=1e-5, atol=1e-4)


def test_only_the_xla_export_pads_batches(covariate_export):
    """The padding to power-of-two buckets (tf.searchsorted: LowerBound, then Pad) is for XLA's compilations."""
    _, _, export_dir, xla_dir, _ = covariate_export
    assert {"LowerBound", "Pad", "PadV2"} & _ops(xla_dir)
    assert not {"LowerBound", "Pad", "PadV2"} & _ops(export_dir)


@pytest.mark.parametrize("ensemble_size", [1, 3])
@pytest.mark.parametrize("lstm_graph", trainer_lib.LSTM_GRAPHS)
def test_serving_model_computes_the_keras_model_with_its_weights(lstm_graph, ensemble_size):
    """Three stacked LSTMs (the first two return sequences) with random weights and biases, batch 5; an
    ensemble has three per branch, and every one of them runs in ``lstm_graph``."""
    spec = {features.HISTORY_SCALED: 9, features.CALENDAR_HISTORY: 9 * 4}
    model = trainer_lib.build_model(spec, 9, 2, config_lib.ModelConfig(lstm_units=(5, 4, 3),
                                                                       ensemble_size=ensemble_size))
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.7, weight.shape).astype(np.float32))
    inputs = {name: rng.normal(size=(5, width)).astype(np.float32) for name, width in spec.items()}
    exported = trainer_lib.serving_model(model, lstm_graph)
    assert len([layer for layer in exported.layers if isinstance(layer, keras.layers.LSTM)]) == (
        3 * ensemble_size if lstm_graph == "loop" else 0)
    # The same variables, not copies: the export writes the trained weights once.
    assert {id(w) for w in exported.weights} == {id(w) for w in model.weights}
    np.testing.assert_allclose(exported(inputs, training=False).numpy(), model(inputs, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_an_lstm_the_fused_op_cannot_compute_keeps_keras_loop():
    inputs = keras.Input((6, 2))
    model = keras.Model(inputs, keras.layers.LSTM(3, activation="relu")(inputs))
    exported = trainer_lib.serving_model(model, "fused")
    assert [type(layer) for layer in exported.layers[1:]] == [keras.layers.LSTM]
    with pytest.raises(ValueError, match="lstm_graph must be one of"):
        trainer_lib.serving_model(model, "cudnn")


def test_conformal_intervals_are_the_point_forecast_plus_minus_its_normalised_eval_errors(covariate_transform,
                                                                                           tmp_path):
    """The default: the point model; each interval is its forecast -/+ a quantile of the scaled eval errors over
    their windows' spread (pooled over steps, each step's over their mean), times the window's spread, computed
    in the graph from the raw context."""
    out, splits = covariate_transform
    config = dataclasses.replace(MODEL, interval_method="conformal")
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    accessor = conftest.data_accessor(out)
    eval_files = conftest.transformed_files(out, "eval")
    model = trainer_lib.train(conftest.transformed_files(out, "train"), eval_files, accessor, tft_output,
                              conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, config)
    assert model.output_shape == (None, conftest.UNIT_HORIZON)  # a point model
    # The unit windows' context (10 points) holds one season of 10: spread_period would give 0 (the
    # window scale); the differences over 3 steps exercise the spread.
    period = 3
    adjustments, report = trainer_lib.calibrate(model, eval_files, accessor, tft_output, config, period)
    trainer_lib.export_serving_model(model, tft_output, str(tmp_path / "m"), config, None, adjustments,
                                     spread_period=period)
    # By hand: absolute scaled errors on eval over each window's spread (from its raw context, in
    # numpy), each step's over their mean, pooled: their ceil((n H + 1)c)-th smallest times the step's mean.
    eval_data = list(trainer_lib.make_dataset(eval_files, accessor, tft_output, 16, False, 0,
                                              extra_keys=(features.HISTORY, features.SCALE)))
    spread = np.concatenate([quantiles.interval_spread(x.pop(features.HISTORY).numpy(), x.pop(features.SCALE).numpy(),
                                                       period) for x, _ in eval_data])
    assert spread.std() > 0.05 * spread.mean()  # the windows differ: the spread matters
    errors = np.abs(np.concatenate([y.numpy() - model(x, training=False).numpy() for x, y in eval_data])) / spread
    levels, step_mean = config.quantiles, errors.mean(axis=0)
    pooled = np.sort((errors / step_mean).ravel())
    for lo, hi, coverage in quantiles.interval_pairs(levels):
        rank = min(int(np.ceil((pooled.size + 1) * coverage - 1e-9)), pooled.size)
        np.testing.assert_allclose(adjustments[:, hi], pooled[rank - 1] * step_mean, rtol=1e-6)
        np.testing.assert_allclose(adjustments[:, lo], -adjustments[:, hi])
    rows = splits["eval"]
    inputs = conftest.serving_inputs_of(rows)
    transformed = tft_output.transform_raw_features(_raw_features(inputs))
    scaled = model({k: transformed[k] for k in trainer_lib.model_inputs(tft_output)}, training=False).numpy()
    scale, loc = transformed[features.SCALE].numpy(), transformed[features.LOC].numpy()
    loaded = repository.load_version(str(tmp_path / "m"), 1)
    np.testing.assert_allclose(_session_forecast(loaded, inputs), scaled * scale + loc, rtol=1e-5, atol=1e-3)
    served = _session_forecast(loaded, inputs, contract.QUANTILES_OUTPUT_KEY)
    window_spread = quantiles.interval_spread(inputs[contract.INPUT_KEY], scale, period)
    expected = np.sort((scaled[..., None] + window_spread[..., None] * adjustments) * scale[..., None]
                       + loc[..., None], axis=-1)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-3)
    assert set(report["calibrated_coverage"]) == {"50", "80", "95"} and "raw_coverage" not in report
    assert (report["spread_period"], report["spread_statistic"], report["score_quantile"]) == (period, "max",
                                                                                               "pooled_steps")
    # A refit of a model calibrated with the last season's mean spread (before the max) keeps the mean.
    trainer_lib.export_serving_model(model, tft_output, str(tmp_path / "mean"), config, None, adjustments,
                                     spread_period=period, spread_statistic="mean")
    served = _session_forecast(repository.load_version(str(tmp_path / "mean"), 1), inputs,
                               contract.QUANTILES_OUTPUT_KEY)
    mean_spread = quantiles.interval_spread(inputs[contract.INPUT_KEY], scale, period, "mean")
    assert (mean_spread < window_spread - 1e-3).any()
    expected = np.sort((scaled[..., None] + mean_spread[..., None] * adjustments) * scale[..., None]
                       + loc[..., None], axis=-1)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-3)


def test_an_ensemble_exports_fused_and_serves_the_mean_of_its_branches(covariate_transform, tmp_path):
    """Two branches, trained as the Trainer does: the SavedModel runs each branch's LSTMs as BlockLSTMV2, and
    its forecast (the conformal median) is the mean of the branches' forecasts in original units."""
    out, splits = covariate_transform
    config = dataclasses.replace(MODEL, interval_method="conformal", ensemble_size=2)
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    accessor, eval_files = conftest.data_accessor(out), conftest.transformed_files(out, "eval")
    model = trainer_lib.train(conftest.transformed_files(out, "train"), eval_files, accessor, tft_output,
                              conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, config)
    adjustments, _ = trainer_lib.calibrate(model, eval_files, accessor, tft_output, config)
    export_dir = str(tmp_path / "ensemble")
    trainer_lib.export_serving_model(model, tft_output, export_dir, config, adjustments=adjustments)
    assert "BlockLSTMV2" in _ops(export_dir) and not {"While", "StatelessWhile"} & _ops(export_dir)
    inputs = conftest.serving_inputs_of(splits["eval"])
    served = _session_forecast(repository.load_version(export_dir, 1, False), inputs)
    # The branches' forecasts, each through the same Transform graph, back in original units.
    raw_spec = tft_output.raw_feature_spec()
    raw = {trainer_lib.raw_feature(k): tf.reshape(v, [-1, *raw_spec[trainer_lib.raw_feature(k)].shape])
           for k, v in inputs.items()}
    transformed = tft_output.transform_features_layer()(raw)
    model_inputs = {k: transformed[k] for k in trainer_lib.model_inputs(tft_output)}
    scale, loc = transformed[features.SCALE].numpy(), transformed[features.LOC].numpy()
    branches = [keras.Model(model.input, model.get_layer(f"forecast_scaled_{k}").output)(model_inputs).numpy()
                * scale + loc for k in range(2)]
    assert not np.allclose(branches[0], branches[1], atol=1e-4)
    np.testing.assert_allclose(served, (branches[0] + branches[1]) / 2, rtol=1e-5, atol=1e-4)
