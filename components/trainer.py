"""Trainer module: builds and trains the stacked dropout LSTM, exports the serving SavedModel.

``run_fn`` is what TFX's Trainer calls, ``tuner_fn`` what TFX's Tuner calls (``--tune``). The
export follows :mod:`serving.contract`: raw windows in, forecasts in original units out, with the
Transform graph inside the SavedModel, no cuDNN-only op in it, and TF Serving warmup requests.
"""

import dataclasses
import os
from typing import Any, Optional

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features
from components import transform as transform_lib
from pipeline import config as config_lib
from serving import contract

LOSSES = ("mse", "huber")
# Loss and eval loss per epoch (Keras' CSVLogger), in the Trainer's model_run directory.
TRAINING_LOG_FILE = "training_log.csv"
# XLA compiles once per input shape (about 0.25 s for this model on 2 cores). The XLA signatures
# pad each batch up to the next of these sizes (beyond the largest, to a multiple of it), so a
# server compiles at most these shapes, and the warmup requests (one per size) compile them
# before the first real request.
XLA_BATCH_BUCKETS = tuple(2 ** i for i in range(11))
# With server-side batching TF Serving replays warmup requests through the batching layer, which
# rejects a request above max_batch_size (256 in the CPU image's batching parameters), and a
# failed warmup request fails the load: the warmup stops at 256. Larger buckets compile on first use.
WARMUP_MAX_BATCH_SIZE = 256
WARMUP_BATCH_SIZES = tuple(b for b in XLA_BATCH_BUCKETS if b <= WARMUP_MAX_BATCH_SIZE)
# Windows read for the warmup requests; the larger requests repeat them.
_WARMUP_WINDOWS = 64
# Windows read from the files per step of the first pass; the cache holds them afterwards.
_READ_BATCH_SIZE = 1024
# Shuffle buffer in windows: the whole training split of any series this project targets, so
# each epoch is a full permutation.
_SHUFFLE_BUFFER = 1 << 17


def _model_feature_keys(tft_output: tft.TFTransformOutput) -> list[str]:
    """Transform outputs the model reads, in channel order: the history, then the covariates."""
    raw_names = tft_output.raw_feature_spec()
    covariates = [transform_lib.scaled_feature(c) for c in transform_lib.covariate_features(raw_names)]
    return [features.HISTORY_SCALED, *covariates]


def build_model(history: int, horizon: int, model_config: config_lib.ModelConfig,
                covariates: tuple[str, ...] = ()) -> keras.Model:
    """Stacked LSTM: one LSTM per entry of ``lstm_units``, dropout after each, a Dense head of H.

    Args:
      history: Window length L.
      horizon: Forecast horizon H (the output is ``[batch, H]`` scaled values).
      model_config: Layers, units, dropout, recurrent dropout, learning rate and loss.
      covariates: Names of the raw covariate features (``covariate_<column>``); each becomes one
        more input channel next to the history.

    Returns:
      The compiled model. Its input is a dict of ``[batch, L]`` scaled values keyed by Transform
      output name (:data:`features.HISTORY_SCALED` and one per covariate).
    """
    if model_config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got '{model_config.loss}'")
    names = [features.HISTORY_SCALED, *(transform_lib.scaled_feature(c) for c in covariates)]
    inputs = {name: keras.Input(shape=(history,), name=name) for name in names}
    channels = [keras.layers.Reshape((history, 1), name=f"channel_{i}")(inputs[n]) for i, n in enumerate(names)]
    x = channels[0] if len(channels) == 1 else keras.layers.Concatenate(axis=-1, name="channels")(channels)
    for i, units in enumerate(model_config.lstm_units):
        last = i == len(model_config.lstm_units) - 1
        x = keras.layers.LSTM(units, return_sequences=not last, recurrent_dropout=model_config.recurrent_dropout,
                              name=f"lstm_{i}")(x)
        x = keras.layers.Dropout(model_config.dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(horizon, name="forecast_scaled")(x)
    model = keras.Model(inputs, outputs, name="stacked_lstm")
    loss = keras.losses.Huber() if model_config.loss == "huber" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(model_config.learning_rate), loss=loss,
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    return model


def make_dataset(file_pattern: list[str], data_accessor: tfx.components.DataAccessor,
                 tft_output: tft.TFTransformOutput, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """Transformed windows through the TFX data accessor: ``(features dict, scaled target)`` batches.

    The files are parsed once, in large batches, and cached in memory: later epochs read the cache,
    reshuffled window by window with ``seed`` (a fresh permutation each epoch, the same sequence of
    permutations for the same seed), so the input pipeline never holds the model back.

    Args:
      file_pattern: Files of transformed examples.
      data_accessor: The Trainer's (or Tuner's) data accessor.
      tft_output: Output of the Transform component.
      batch_size: Windows per batch.
      shuffle: Reshuffle every epoch (training) or keep file order (evaluation).
      seed: Shuffle seed.
    """
    schema = tft_output.transformed_metadata.schema
    keys = _model_feature_keys(tft_output)
    options = tfxio.TensorFlowDatasetOptions(batch_size=_READ_BATCH_SIZE, label_key=features.TARGET_SCALED,
                                             num_epochs=1, shuffle=False)
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, schema)
    dataset = dataset.map(lambda f, y: ({k: f[k] for k in keys}, y), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.unbatch().cache()
    if shuffle:
        dataset = dataset.shuffle(_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _portable(model: keras.Model) -> None:
    # On a GPU, Keras traces an LSTM into CudnnRNN* ops, which have no CPU kernel: a SavedModel
    # exported there would fail on TF Serving's CPU image. The generic kernel gives the same
    # results from the same weights on either device.
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.use_cudnn = False


def _padded_to_buckets(fn: Any) -> Any:
    """Wraps ``fn`` (dict of ``[batch, L]`` in, ``[batch, H]`` out) to run on a bucketed batch size."""
    buckets = tf.constant(XLA_BATCH_BUCKETS, tf.int32)
    largest = XLA_BATCH_BUCKETS[-1]

    def padded(inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        n = tf.shape(next(iter(inputs.values())))[0]
        # The smallest bucket that holds n; past the largest, the next multiple of the largest.
        index = tf.minimum(tf.searchsorted(buckets, tf.reshape(n, [1]))[0], len(XLA_BATCH_BUCKETS) - 1)
        bucket = tf.where(n <= largest, tf.gather(buckets, index), (n + largest - 1) // largest * largest)
        return fn({k: tf.pad(v, [[0, bucket - n], [0, 0]]) for k, v in inputs.items()})[:n]

    return padded


def _serving_inputs(history: int, covariates: list[str], per_series: bool) -> list[tf.TensorSpec]:
    specs = [tf.TensorSpec([None, history], tf.float32, name=contract.INPUT_KEY)]
    specs += [tf.TensorSpec([None, history], tf.float32, name=c) for c in covariates]
    if per_series:
        specs.append(tf.TensorSpec([None], tf.string, name=contract.SERIES_ID_INPUT_KEY))
    return specs


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, export_dir: str,
                         history: int, model_config: config_lib.ModelConfig,
                         warmup_inputs: Optional[dict[str, np.ndarray]] = None) -> None:
    """Saves the model with the Transform graph and the signatures of :mod:`serving.contract`.

    Args:
      model: The trained model on scaled values (from :func:`build_model`).
      tft_output: Output of the Transform component (its graph does the scaling).
      export_dir: Where to write the SavedModel.
      history: Window length L, fixed in the signatures' input shape.
      model_config: Its ``scaling`` (``per_series`` adds the series id input) and ``serving_xla``.
      warmup_inputs: Raw ``serving_default`` inputs keyed by input name, rows aligned, written as
        TF Serving warmup requests (:func:`write_warmup_requests`); None writes none.
    """
    _portable(model)
    raw_spec = tft_output.raw_feature_spec()
    covariates = transform_lib.covariate_features(raw_spec)
    per_series = model_config.scaling == "per_series"
    model_keys = _model_feature_keys(tft_output)

    # Keras 3 variables must be exported through ExportArchive: a plain tf.saved_model.save of a
    # module holding the model writes each variable twice, and the TF1 session loader that TF
    # Serving uses then runs the graph on a copy it never restored.
    archive = keras.export.ExportArchive()
    archive.track(model)
    tft_layer = tft_output.transform_features_layer()
    archive.track(tft_layer)

    # Only the model is compiled with XLA: the Transform graph may hold lookup tables (per-series
    # statistics), which XLA cannot compile.
    predict_scaled = tf.function(lambda inputs: model(inputs, training=False), jit_compile=model_config.serving_xla)
    if model_config.serving_xla:
        predict_scaled = _padded_to_buckets(predict_scaled)

    def forecast(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = tft_layer(raw)
        scaled = predict_scaled({k: transformed[k] for k in model_keys})
        return {contract.OUTPUT_KEY: scaled * transformed[features.SCALE] + transformed[features.LOC]}

    def from_inputs(*values: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = dict(zip([features.HISTORY, *covariates], values))
        if per_series:
            # The serving input is [batch]; the raw feature may be [batch, 1].
            shape = [-1, *raw_spec[features.SERIES_ID].shape]
            raw[features.SERIES_ID] = tf.reshape(values[-1], shape)
        return forecast(raw)

    parse_spec = {name: raw_spec[name] for name in [features.HISTORY, *covariates]}
    if per_series:
        parse_spec[features.SERIES_ID] = raw_spec[features.SERIES_ID]

    archive.add_endpoint(name=contract.SIGNATURE_NAME, fn=from_inputs,
                         input_signature=_serving_inputs(history, covariates, per_series))
    archive.add_endpoint(
        name=contract.EXAMPLES_SIGNATURE_NAME,
        fn=lambda serialized: forecast(tf.io.parse_example(serialized, parse_spec)),
        input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT_KEY)])
    archive.write_out(export_dir, verbose=False)
    if warmup_inputs is not None:
        write_warmup_requests(export_dir, warmup_inputs)


def write_warmup_requests(export_dir: str, inputs: dict[str, np.ndarray]) -> str:
    """Writes TF Serving warmup requests for ``serving_default`` into the SavedModel's assets.extra.

    Args:
      export_dir: The SavedModel directory.
      inputs: Raw input arrays keyed by ``serving_default`` input name, rows aligned; one request
        is written per size in :data:`WARMUP_BATCH_SIZES`, repeating the rows where there are fewer.

    Returns:
      The path of the warmup file.
    """
    path = os.path.join(export_dir, contract.WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    rows = len(next(iter(inputs.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for size in WARMUP_BATCH_SIZES:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=contract.SIGNATURE_NAME))
            take = np.arange(size) % rows
            for key, values in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(values[take]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def warmup_inputs_from(file_pattern: list[str], data_accessor: tfx.components.DataAccessor,
                       tft_output: tft.TFTransformOutput, per_series: bool) -> dict[str, np.ndarray]:
    """Raw ``serving_default`` inputs rebuilt from the first transformed windows of ``file_pattern``.

    The history comes back exactly through the per-example map (``scaled * scale + loc``); each
    covariate through its affine Transform map, read off the Transform graph at 0 and 1.
    """
    options = tfxio.TensorFlowDatasetOptions(batch_size=_WARMUP_WINDOWS, num_epochs=1, shuffle=False)
    batch = next(iter(data_accessor.tf_dataset_factory(file_pattern, options,
                                                        tft_output.transformed_metadata.schema)))
    history = batch[features.HISTORY_SCALED] * batch[features.SCALE] + batch[features.LOC]
    inputs = {contract.INPUT_KEY: history.numpy().astype(np.float32)}
    for name in transform_lib.covariate_features(tft_output.raw_feature_spec()):
        probe = tf.stack([tf.zeros_like(history[0]), tf.ones_like(history[0])])
        at = tft_output.transform_raw_features({name: probe})[transform_lib.scaled_feature(name)]
        scale = 1.0 / (at[1] - at[0])
        inputs[name] = (batch[transform_lib.scaled_feature(name)] * scale - at[0] * scale).numpy().astype(np.float32)
    if per_series:
        inputs[contract.SERIES_ID_INPUT_KEY] = np.reshape(batch[features.SERIES_ID].numpy(), [-1]).astype(object)
    return inputs


def _model_config(fn_args: Any) -> config_lib.ModelConfig:
    """The model settings of the pipeline, with the Tuner's best hyperparameters when it ran."""
    model_config = config_lib.model_config_from_custom_config(fn_args.custom_config)
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if hyperparameters:
        values = keras_tuner.HyperParameters.from_config(hyperparameters).values
        model_config = dataclasses.replace(
            model_config, lstm_units=(values["units"],) * values["layers"], dropout=values["dropout"],
            learning_rate=values["learning_rate"])
    return model_config


def _callbacks(model_config: config_lib.ModelConfig) -> list[keras.callbacks.Callback]:
    if model_config.early_stopping_patience <= 0:
        return []
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=model_config.early_stopping_patience,
                                          restore_best_weights=True)]


def train(train_files: list[str], eval_files: list[str], data_accessor: tfx.components.DataAccessor,
          tft_output: tft.TFTransformOutput, history: int, horizon: int, model_config: config_lib.ModelConfig,
          log_dir: Optional[str] = None) -> keras.Model:
    """Trains the model on transformed windows: seeded, early stopping on the eval loss.

    Args:
      train_files: Transformed training examples.
      eval_files: Transformed eval examples (early stopping watches their loss).
      data_accessor: The Trainer's data accessor.
      tft_output: Output of the Transform component.
      history: Window length L.
      horizon: Horizon H.
      model_config: Model and training settings; ``seed`` fixes weights, dropout and shuffling.
      log_dir: Where TensorBoard's logs and :data:`TRAINING_LOG_FILE` go, or None for no logs.

    Returns:
      The trained model (the best eval-loss weights when early stopping is on).
    """
    # One seed for Python, NumPy, TF and Keras. The CPU kernels are deterministic; on a GPU some
    # (cuDNN, atomics) are not unless asked, at a cost in speed.
    keras.utils.set_random_seed(model_config.seed)
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    covariates = tuple(transform_lib.covariate_features(tft_output.raw_feature_spec()))
    train_data = make_dataset(train_files, data_accessor, tft_output, model_config.batch_size, True, model_config.seed)
    eval_data = make_dataset(eval_files, data_accessor, tft_output, model_config.batch_size, False, model_config.seed)
    model = build_model(history, horizon, model_config, covariates)
    callbacks = _callbacks(model_config)
    if log_dir:
        callbacks += [keras.callbacks.TensorBoard(log_dir=log_dir),
                      # Loss per epoch as CSV, for the run's report (TensorBoard's files need TensorBoard).
                      keras.callbacks.CSVLogger(os.path.join(log_dir, TRAINING_LOG_FILE))]
    model.fit(train_data, validation_data=eval_data, epochs=model_config.epochs, verbose=2, callbacks=callbacks)
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the model on the transformed windows and exports it (called by TFX's Trainer)."""
    custom_config: dict[str, Any] = fn_args.custom_config or {}
    model_config = _model_config(fn_args)
    window_config = config_lib.window_config_from_custom_config(custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    model = train(fn_args.train_files, fn_args.eval_files, fn_args.data_accessor, tft_output,
                  window_config.history, window_config.horizon, model_config, log_dir=fn_args.model_run_dir)
    warmup = warmup_inputs_from(fn_args.eval_files, fn_args.data_accessor, tft_output,
                                model_config.scaling == "per_series")
    export_serving_model(model, tft_output, fn_args.serving_model_dir, window_config.history, model_config,
                         warmup_inputs=warmup)


def _hypermodel(history: int, horizon: int, model_config: config_lib.ModelConfig, covariates: tuple[str, ...]):
    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        layers = hp.Int("layers", 1, 3, default=len(model_config.lstm_units))
        units = hp.Choice("units", [16, 32, 64, 128], default=64)
        tuned = dataclasses.replace(
            model_config, lstm_units=(units,) * layers,
            dropout=hp.Float("dropout", 0.0, 0.5, step=0.1, default=model_config.dropout),
            learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=model_config.learning_rate))
        return build_model(history, horizon, tuned, covariates)

    return build


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """KerasTuner random search over layers, units, dropout and learning rate (called by TFX's Tuner)."""
    custom_config: dict[str, Any] = fn_args.custom_config or {}
    model_config = config_lib.model_config_from_custom_config(custom_config)
    window_config = config_lib.window_config_from_custom_config(custom_config)
    keras.utils.set_random_seed(model_config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    covariates = tuple(transform_lib.covariate_features(tft_output.raw_feature_spec()))
    tuner = keras_tuner.RandomSearch(
        _hypermodel(window_config.history, window_config.horizon, model_config, covariates),
        objective="val_loss", max_trials=model_config.tuner_trials, seed=model_config.seed,
        directory=fn_args.working_dir, project_name="lstm_forecast_tuning", overwrite=True)
    train_data = make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, model_config.batch_size,
                              True, model_config.seed)
    eval_data = make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, model_config.batch_size,
                             False, model_config.seed)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={"x": train_data, "validation_data": eval_data, "epochs": model_config.epochs,
                    "callbacks": _callbacks(model_config), "verbose": 2})
