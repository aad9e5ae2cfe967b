"""Trainer module: builds and trains the stacked dropout LSTM, exports the serving SavedModel.

``run_fn`` is what TFX's Trainer calls. The export follows :mod:`serving.contract`: raw windows in,
forecasts in original units out, with the Transform graph inside the SavedModel.
"""

from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features
from pipeline import config as config_lib
from serving import contract


def build_model(history: int, horizon: int, model_config: config_lib.ModelConfig) -> keras.Model:
    """Stacked LSTM: one LSTM per entry of ``lstm_units``, dropout after each, a Dense head of H.

    Args:
      history: Window length L (the model's input is ``[batch, L]`` scaled values).
      horizon: Forecast horizon H (the output is ``[batch, H]`` scaled values).
      model_config: Units, dropout and learning rate.

    Returns:
      The compiled model.
    """
    inputs = keras.Input(shape=(history,), name=features.HISTORY_SCALED)
    x = keras.layers.Reshape((history, 1))(inputs)
    for i, units in enumerate(model_config.lstm_units):
        last = i == len(model_config.lstm_units) - 1
        x = keras.layers.LSTM(units, return_sequences=not last, name=f"lstm_{i}")(x)
        x = keras.layers.Dropout(model_config.dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(horizon, name="forecast_scaled")(x)
    model = keras.Model(inputs, outputs, name="stacked_lstm")
    model.compile(optimizer=keras.optimizers.Adam(model_config.learning_rate), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    return model


def _dataset(file_pattern: list[str], data_accessor: tfx.components.DataAccessor,
             tft_output: tft.TFTransformOutput, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size, label_key=features.TARGET_SCALED, num_epochs=1,
        shuffle=shuffle, shuffle_seed=seed)
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.transformed_metadata.schema)
    return dataset.map(lambda f, y: (f[features.HISTORY_SCALED], y)).prefetch(tf.data.AUTOTUNE)


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, export_dir: str,
                         history: int) -> None:
    """Saves the model with the Transform graph and the signatures of :mod:`serving.contract`.

    Args:
      model: The trained model on scaled values.
      tft_output: Output of the Transform component (its graph does the scaling).
      export_dir: Where to write the SavedModel.
      history: Window length L, fixed in the signatures' input shape.
    """
    # Keras 3 variables must be exported through ExportArchive: a plain tf.saved_model.save of a
    # module holding the model writes each variable twice, and the TF1 session loader that TF
    # Serving uses then runs the graph on a copy it never restored.
    archive = keras.export.ExportArchive()
    archive.track(model)
    tft_layer = tft_output.transform_features_layer()
    archive.track(tft_layer)
    history_spec = {features.HISTORY: tft_output.raw_feature_spec()[features.HISTORY]}

    def forecast(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = tft_layer(raw)
        scaled = model(transformed[features.HISTORY_SCALED], training=False)
        return {contract.OUTPUT_KEY: scaled * transformed[features.SCALE] + transformed[features.LOC]}

    archive.add_endpoint(
        name=contract.SIGNATURE_NAME,
        fn=lambda history_values: forecast({features.HISTORY: history_values}),
        input_signature=[tf.TensorSpec([None, history], tf.float32, name=contract.INPUT_KEY)])
    archive.add_endpoint(
        name=contract.EXAMPLES_SIGNATURE_NAME,
        fn=lambda serialized: forecast(tf.io.parse_example(serialized, history_spec)),
        input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT_KEY)])
    archive.write_out(export_dir, verbose=False)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the model on the transformed windows and exports it (called by TFX's Trainer)."""
    custom_config: dict[str, Any] = fn_args.custom_config or {}
    model_config = config_lib.model_config_from_custom_config(custom_config)
    window_config = config_lib.window_config_from_custom_config(custom_config)
    keras.utils.set_random_seed(model_config.seed)

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tft_output,
                     model_config.batch_size, shuffle=True, seed=model_config.seed)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tft_output,
                          model_config.batch_size, shuffle=False, seed=model_config.seed)
    model = build_model(window_config.history, window_config.horizon, model_config)
    model.fit(train, validation_data=evaluation, epochs=model_config.epochs, verbose=2,
              callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    export_serving_model(model, tft_output, fn_args.serving_model_dir, window_config.history)
