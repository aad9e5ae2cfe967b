"""Trainer module: builds and trains the stacked dropout LSTM, exports the serving SavedModel.

``run_fn`` is what TFX's Trainer calls, ``tuner_fn`` what TFX's Tuner calls (``--tune``). The
export follows :mod:`serving.contract`: raw windows in, forecasts in original units out, with the
Transform graph inside the SavedModel, no cuDNN-only op in it, and TF Serving warmup requests.
"""

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features, quantiles, settings, trainer_options, windowing
from components import transform as transform_lib
from components.example_gen import options as window_options
from components.trainer_options import CALIBRATION_FILE, TRAINING_LOG_FILE, TRAINING_RECORD_FILE
from serving import contract

__all__ = ["AUTO_BASE_MIX_FITS", "BranchLoss", "CALIBRATION_FILE", "DEFAULT_LSTM_GRAPH", "DefaultsFirstOracle",
           "EnsembleBranches", "EnsembleMean", "LSTM_GRAPHS", "NonCrossingQuantiles", "PinballLoss",
           "SERVING_INPUT_FEATURES", "SeasonalBaseMix", "TRAINING_LOG_FILE", "TRAINING_RECORD_FILE", "TrainerSearch",
           "Training", "base_calibration", "build_model", "calibrate", "choose_base_mix_fit", "export_serving_model",
           "fit", "fit_mix_weights", "interval_spread", "make_dataset", "mix_candidates", "model_description",
           "model_inputs", "quantile_outputs", "raw_feature", "read_training_record", "refit_config", "run_fn",
           "search_space", "serving_inputs", "serving_model", "train", "training_model", "training_record",
           "training_series_ids", "tuned_config", "tuner_fn", "warmup_inputs_from", "write_model_description",
           "write_training_record", "write_warmup_requests"]

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


def model_inputs(tft_output: tft.TFTransformOutput) -> dict[str, int]:
    """The Transform outputs the model reads, with their widths: sequence inputs, then per-step future inputs.

    With a series embedding, :data:`features.SERIES_INDEX` comes last, with its number of indices.
    """
    spec = tft_output.transformed_feature_spec()
    names = [n for n in sorted(spec) if _is_sequence_input(n) or _is_future_input(n)]
    names.sort(key=lambda n: (not _is_sequence_input(n), n != features.HISTORY_SCALED, n))
    widths = {n: int(spec[n].shape[0]) for n in names}
    if features.SERIES_INDEX in spec:
        # Not a width: the number of indices, the training split's ids and one for every other id.
        widths[features.SERIES_INDEX] = tft_output.vocabulary_size_by_name(features.SERIES_VOCABULARY) + 1
    return widths


def _is_sequence_input(name: str) -> bool:
    # One value per history step: the scaled history, the past covariates, the history's calendar.
    return name == features.HISTORY_SCALED or name == features.CALENDAR_HISTORY or (
        name.startswith(features.COVARIATE_PREFIX) and name.endswith(transform_lib.SCALED_SUFFIX))


def _is_future_input(name: str) -> bool:
    # One value per target step, known at the origin: seasonal lags, future covariates, the calendar.
    return name == features.CALENDAR_FUTURE or (
        name.startswith((features.LAG_PREFIX, features.FUTURE_PREFIX, features.BASE_PREFIX))
        and name.endswith(transform_lib.SCALED_SUFFIX))


def mix_candidates(inputs_spec: dict[str, int]) -> list[str]:
    """The inputs :class:`SeasonalBaseMix` weighs, in its order: the primary season's lags (the seasonal
    naive forecast), then the smoothed bases among ``inputs_spec``; empty without lags or bases."""
    lags = sorted((n for n in inputs_spec if n.startswith(features.LAG_PREFIX)),
                  key=lambda n: int(n[len(features.LAG_PREFIX):].split("_")[0]))
    bases = [n for n in (transform_lib.scaled_feature(features.base_feature(k))
                         for k in features.SEASONAL_BASES + features.SMOOTHING_BASES + features.INDEX_BASES)
             if n in inputs_spec]
    return [lags[0], *bases] if lags and bases else []


def _is_smoothing_base(name: str) -> bool:
    return name in {transform_lib.scaled_feature(features.base_feature(k))
                    for k in features.SMOOTHING_BASES + features.INDEX_BASES}


def build_model(inputs_spec: dict[str, int], history: int, horizon: int,
                model_config: trainer_options.ModelConfig) -> keras.Model:
    """Stacked dropout LSTM over the history, with the known future of each target step beside it.

    The sequence inputs (the scaled history, past covariates, the calendar of each history step)
    are stacked as channels of one ``[L, channels]`` sequence and read by one LSTM per entry of
    ``lstm_units``, dropout after each. The LSTM's last state, concatenated with the per-step
    future inputs (seasonal lags, future covariates, the calendar of each target step), feeds a
    head of H outputs with a linear path and a ReLU path. With ``seasonal_base`` (the default) the
    head's output, zero at the start, is added to the primary season's lags: the model starts as
    the seasonal naive forecast and learns a correction to it (measured on five public data sets:
    model MAE over MSTL's 1.09 on average, against 1.17 with a free head). With
    ``seasonal_base_mix`` (the default) and the smoothed seasonal forecasts among the inputs
    (:func:`components.transform.seasonal_bases`), the correction is added to a learnt weighted
    mean of those and the lags instead (:class:`SeasonalBaseMix`); with ``smoothing_bases`` the
    exponential-smoothing and Theta forecasts (:func:`components.transform.smoothing_bases`) join
    the mix as candidates, not the head's inputs. With ``base_mix_weights`` ``per_step`` the mix has
    one set of weights per target step; ``base_mix_fit`` (:func:`fit`) sets their start.

    With ``ensemble_size`` K > 1, K such networks (branches, each with its own layers ``lstm_{k}_{i}``,
    ``correction_{k}``, ...) read the same inputs, and the output is their mean (:class:`EnsembleMean`):
    one flat functional model, so the export fuses every branch's LSTMs and the calibration and
    quantiles use the mean. Training fits :func:`training_model`, each branch on its own loss.

    Args:
      inputs_spec: Transform output name -> width (see :func:`model_inputs`); sequence inputs
        are ``[L * k]``, future inputs ``[H * k]``; the series index (with ``series_embedding_dim``),
        its number of indices.
      history: L.
      horizon: H (the output is ``[batch, H]`` scaled values).
      model_config: Layers, units, dropout, recurrent dropout, learning rate and loss.

    Returns:
      The compiled model; its input is a dict keyed by Transform output name. Train it through
      :func:`training_model`.
    """
    inputs = {name: keras.Input(shape=(1,) if name == features.SERIES_INDEX else (width,), name=name,
                                dtype="int64" if name == features.SERIES_INDEX else None)
              for name, width in inputs_spec.items()}
    sequence = [keras.layers.Reshape((history, inputs_spec[n] // history), name=f"steps_{n}")(inputs[n])
                for n in inputs_spec if _is_sequence_input(n)]
    x = sequence[0] if len(sequence) == 1 else keras.layers.Concatenate(axis=-1, name="channels")(sequence)
    if model_config.ensemble_size == 1:
        outputs = _network(inputs, x, inputs_spec, horizon, model_config, None)
    else:
        outputs = EnsembleMean(name=_output_name(model_config))(
            [_network(inputs, x, inputs_spec, horizon, model_config, k) for k in range(model_config.ensemble_size)])
    model = keras.Model(inputs, outputs, name="stacked_lstm")
    _compile(model, model_config, ensemble=False)
    return model


def _output_name(model_config: trainer_options.ModelConfig) -> str:
    return "quantiles_scaled" if model_config.quantile_head else "forecast_scaled"


def _layer_name(base: str, branch: Optional[int], *index: int) -> str:
    # A single network keeps its plain names (lstm_0); branch k of an ensemble is lstm_k_0.
    return "_".join([base, *(str(i) for i in ((branch,) if branch is not None else ()) + index)])


def _network(inputs: dict[str, Any], sequence: Any, inputs_spec: dict[str, int], horizon: int,
             model_config: trainer_options.ModelConfig, branch: Optional[int]) -> Any:
    """One stacked LSTM and its head over the shared ``inputs`` (see :func:`build_model`); ``branch``: its index
    in an ensemble, or None for the only network. Returns its scaled forecast ``[batch, H]`` or quantiles."""
    x = sequence
    for i, units in enumerate(model_config.lstm_units):
        last = i == len(model_config.lstm_units) - 1
        x = keras.layers.LSTM(units, return_sequences=not last, recurrent_dropout=model_config.recurrent_dropout,
                              name=_layer_name("lstm", branch, i))(x)
        x = keras.layers.Dropout(model_config.dropout, name=_layer_name("dropout", branch, i))(x)
    # The smoothing bases are candidates of the base mix only: as head inputs too (seven more H-wide
    # inputs) the eval skill was worse on each of four benchmark sets (hyndsight 1.036 against 0.963).
    future = [inputs[n] for n in inputs_spec if _is_future_input(n) and not _is_smoothing_base(n)]
    if features.SERIES_INDEX in inputs_spec:
        # Zeros at the start and for ids the training split never saw (their index gets no
        # gradient): an unknown series is forecast as the average series.
        embedding = keras.layers.Embedding(inputs_spec[features.SERIES_INDEX], model_config.series_embedding_dim,
                                           embeddings_initializer="zeros",
                                           name=_layer_name("series_embedding", branch))
        future.append(keras.layers.Flatten(name=_layer_name("series_vector", branch))(
            embedding(inputs[features.SERIES_INDEX])))
    if future:
        x = keras.layers.Concatenate(name=_layer_name("state_and_future", branch))([x, *future])
    hidden = keras.layers.Dense(model_config.lstm_units[-1], activation="relu",
                                name=_layer_name("head_hidden", branch))(x)
    hidden = keras.layers.Dropout(model_config.dropout, name=_layer_name("head_dropout", branch))(hidden)
    head = keras.layers.Concatenate(name=_layer_name("head", branch))([x, hidden])
    lags = sorted((n for n in inputs_spec if n.startswith(features.LAG_PREFIX)),
                  key=lambda n: int(n[len(features.LAG_PREFIX):].split("_")[0]))
    levels = model_config.quantiles if model_config.quantile_head else ()
    point_name = _layer_name("median_scaled" if levels else "forecast_scaled", branch)
    if model_config.seasonal_base and lags:
        # The primary season's lags are the seasonal naive forecast; the head learns what to add.
        candidates = mix_candidates(inputs_spec) if model_config.seasonal_base_mix else []
        if candidates:
            base = SeasonalBaseMix(horizon if model_config.base_mix_weights == "per_step" else 0,
                                   name=_layer_name("seasonal_base", branch))([inputs[n] for n in candidates])
        else:
            base = inputs[lags[0]]
        correction = keras.layers.Dense(horizon, kernel_initializer="zeros",
                                        name=_layer_name("correction", branch))(head)
        outputs = keras.layers.Add(name=point_name)([base, correction])
    else:
        outputs = keras.layers.Dense(horizon, name=point_name)(head)
    if levels:
        # Q - 1 positive gaps per step, each between a level and the next one outwards from the median.
        gaps = keras.layers.Dense(horizon * (len(levels) - 1), name=_layer_name("quantile_gaps", branch))(head)
        outputs = NonCrossingQuantiles(horizon, levels.index(trainer_options.MEDIAN),
                                       name=_layer_name("quantiles_scaled", branch))(outputs, gaps)
    return outputs


def _compile(model: keras.Model, model_config: trainer_options.ModelConfig, ensemble: bool) -> None:
    """Compiles ``model``: the pinball loss for a quantile head, else ``model_config.loss``; the MAE (of the
    median) as metric. ``ensemble``: the model outputs its branches ``[batch, K, ...]`` (:func:`training_model`),
    the loss is the mean of their losses and the metric the MAE of their mean."""
    levels = model_config.quantiles if model_config.quantile_head else ()
    losses = {"huber": keras.losses.Huber(), "mse": "mse", "mae": "mae"}
    loss = PinballLoss(levels) if levels else losses[model_config.loss]
    if ensemble:
        loss = BranchLoss(loss)
        metric = keras.metrics.MeanMetricWrapper(_ensemble_error(levels), name="mae")
    elif levels:
        metric = keras.metrics.MeanMetricWrapper(_median_error(levels), name="mae")
    else:
        metric = keras.metrics.MeanAbsoluteError(name="mae")
    optimizer = keras.optimizers.Adam(model_config.learning_rate, weight_decay=model_config.weight_decay or None)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])


def training_model(model: keras.Model, model_config: trainer_options.ModelConfig) -> keras.Model:
    """The model that training fits: ``model`` itself, or for an ensemble its branches side by side.

    Fitting an ensemble's mean would train its branches together (each would learn to offset the
    others' errors); each branch instead minimises its own loss, so the mean averages K independent
    networks. The returned model shares every layer and weight with ``model``, outputs the branches
    stacked ``[batch, K, ...]`` and is compiled with the mean of their losses (:class:`BranchLoss`).

    Args:
      model: From :func:`build_model` with the same ``model_config``.
      model_config: Its ``ensemble_size``, loss and learning rate.
    """
    if model_config.ensemble_size == 1:
        return model
    branches = model.get_layer(_output_name(model_config)).input
    members = keras.Model(model.input, EnsembleBranches(name="branches")(branches), name="stacked_lstm_branches")
    _compile(members, model_config, ensemble=True)
    return members


class EnsembleMean(keras.layers.Layer):
    """The mean of K branch outputs of one shape (forecasts ``[batch, H]`` or quantiles ``[batch, H, Q]``).

    The mean of non-crossing quantiles does not cross either (each level is a mean of ordered values).
    """

    def call(self, branches: list[Any]) -> Any:
        return keras.ops.mean(keras.ops.stack(branches, axis=0), axis=0)


class EnsembleBranches(keras.layers.Layer):
    """K branch outputs stacked on axis 1, ``[batch, K, ...]``, for :class:`BranchLoss`."""

    def call(self, branches: list[Any]) -> Any:
        return keras.ops.stack(branches, axis=1)


class BranchLoss(keras.losses.Loss):
    """The mean over K branches ``[batch, K, ...]`` of a loss of each branch against the same targets.

    Args:
      loss: A Keras loss (an instance, or a name such as ``"mae"``) of one branch's output.
    """

    def __init__(self, loss: Any, name: str = "branch_loss", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.loss = loss
        self._per_window = loss.call if isinstance(loss, keras.losses.Loss) else keras.losses.get(loss)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        branches = y_pred.shape[1]
        return sum(self._per_window(y_true, y_pred[:, k]) for k in range(branches)) / branches


def _ensemble_error(levels: tuple[float, ...]) -> Any:
    median = levels.index(trainer_options.MEDIAN) if levels else None

    def ensemble_absolute_error(y_true: Any, y_pred: Any) -> Any:
        mean = keras.ops.mean(y_pred, axis=1)
        if median is not None:
            mean = mean[..., median]
        return keras.ops.mean(keras.ops.abs(keras.ops.cast(y_true, mean.dtype) - mean), axis=-1)

    return ensemble_absolute_error


class SeasonalBaseMix(keras.layers.Layer):
    """A learnt weighted mean of candidate forecasts ``[batch, H]`` each: softmax weights, one per candidate.

    The candidates are the seasonal naive forecast and the smoothed ones of
    :func:`components.transform.seasonal_bases` (and, with ``--smoothing-bases``, of
    :func:`components.transform.smoothing_bases`); the weights start equal. A handful of weights
    shared by all steps and series: the data choose the base (the long profile where the season is
    stable, the recent trend where the level moves) without room to overfit a short series.
    """

    # The weights' logits are this times the trained variable: Adam moves a variable about one
    # learning rate a step, which would take hundreds of epochs to move a logit by a few units.
    LOGIT_SCALE = 20.0

    def __init__(self, horizon: int = 0, **kwargs: Any):
        """``horizon``: H for one set of weights per target step (logits ``[H, K]``), 0 for one shared set ``[K]``."""
        super().__init__(**kwargs)
        self.horizon = horizon

    def build(self, input_shape: Any) -> None:
        shape = (self.horizon, len(input_shape)) if self.horizon else (len(input_shape),)
        self.logits = self.add_weight(shape=shape, initializer="zeros", name="logits")

    def call(self, candidates: list[Any]) -> Any:
        ops = keras.ops
        weights = ops.softmax(self.logits * self.LOGIT_SCALE, axis=-1)
        return ops.sum(ops.stack(candidates, axis=-1) * weights, axis=-1)

    def set_mix_weights(self, weights: np.ndarray) -> None:
        """Sets the logits so that the softmax weights are ``weights`` (``[K]`` or ``[H, K]``, rows on the simplex),
        each at least :data:`MIX_WEIGHT_FLOOR` so that training can still raise it."""
        logits = np.log(np.maximum(np.asarray(weights, np.float64), MIX_WEIGHT_FLOOR))
        logits = np.broadcast_to(logits - logits.mean(axis=-1, keepdims=True), tuple(self.logits.shape))
        self.logits.assign((logits / self.LOGIT_SCALE).astype(np.float32))

    def mix_weights(self) -> np.ndarray:
        """The softmax weights ``[K]`` or ``[H, K]``."""
        return keras.ops.convert_to_numpy(keras.ops.softmax(self.logits * self.LOGIT_SCALE, axis=-1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "horizon": self.horizon}


# The smallest weight a fitted mix starts training with (a logit about 9 below the largest one's).
MIX_WEIGHT_FLOOR = 1e-4
# Exponentiated-gradient steps of the mix's fit (fit_mix_weights) and the first step's size.
_MIX_FIT_STEPS = 500
_MIX_FIT_STEP_SIZE = 0.5


def fit_mix_weights(candidates: np.ndarray, targets: np.ndarray, absolute: bool = True,
                    per_step: bool = False) -> np.ndarray:
    """The weights on the simplex of the mean of ``candidates`` closest to ``targets``.

    Minimises the mean absolute error (``absolute``) or the mean squared error over convex weights
    by exponentiated gradient (multiplicative steps, a shrinking step size, the best iterate kept):
    exact enough for a handful of candidates, deterministic, and no solver to depend on.

    Args:
      candidates: ``[N, H, K]`` forecasts of each of K candidates.
      targets: ``[N, H]`` actual values.
      absolute: Least absolute deviations (the MAE or the median's pinball loss) or least squares.
      per_step: One set of weights per target step (``[H, K]``) instead of one shared set (``[K]``).

    Returns:
      The weights, ``[K]`` or ``[H, K]``, each row summing to 1.
    """
    x = np.asarray(candidates, np.float64)
    y = np.asarray(targets, np.float64)
    steps, k = x.shape[1], x.shape[2]
    # Per step: each step's weights see only that step's errors (the means keep the H axis).
    axes = (0,) if per_step else (0, 1)
    weights = np.full((steps if per_step else 1, k), 1.0 / k)

    def loss_and_gradient(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        residual = (np.einsum("nhk,hk->nh", x, w) if per_step else x @ w[0]) - y
        if absolute:
            loss, slope = np.abs(residual), np.sign(residual)
        else:
            loss, slope = residual ** 2, 2 * residual
        gradient = np.einsum("nh,nhk->hk", slope, x) / len(x) if per_step else \
            np.einsum("nh,nhk->k", slope, x)[None] / slope.size
        return loss.mean(axis=axes), gradient

    best_loss, best = None, weights
    for step in range(_MIX_FIT_STEPS):
        loss, gradient = loss_and_gradient(weights)
        loss = np.broadcast_to(np.asarray(loss).reshape(-1), (weights.shape[0],))
        if best_loss is None:
            best_loss, best = loss.copy(), weights.copy()
        else:
            better = loss < best_loss
            best_loss, best = np.where(better, loss, best_loss), np.where(better[:, None], weights, best)
        # Normalised by the largest slope, so the step size does not depend on the data's scale.
        size = _MIX_FIT_STEP_SIZE / np.sqrt(step + 1) / np.maximum(np.abs(gradient).max(axis=-1, keepdims=True),
                                                                    1e-12)
        weights = weights * np.exp(-size * gradient)
        weights /= weights.sum(axis=-1, keepdims=True)
    return best if per_step else best[0]


class NonCrossingQuantiles(keras.layers.Layer):
    """Quantiles ``[batch, H, Q]`` from the median ``[batch, H]`` and unconstrained gaps ``[batch, H * (Q - 1)]``.

    Each gap goes through softplus (positive) and the gaps are summed outwards from the median, so
    every level lies strictly beyond the one next to it towards the median: quantiles never cross,
    by construction. The other levels reach the median through a stop-gradient: only its own
    pinball loss (half its absolute error) moves the median, as the MAE moved the point model's
    forecast, and the other levels move their gaps. Without it the outer levels pull the median
    towards whatever makes their own loss lower (measured on seattle_temps: median MAE 1.25 times
    the point model's).

    Args:
      horizon: H.
      median_index: Index of the median among the Q increasing levels.
    """

    def __init__(self, horizon: int, median_index: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.horizon = horizon
        self.median_index = median_index

    def call(self, median: Any, gaps: Any) -> Any:
        ops = keras.ops
        gaps = ops.softplus(ops.reshape(gaps, (-1, self.horizon, gaps.shape[-1] // self.horizon)))
        m = self.median_index
        # Gap j below the median separates level m - j from level m - j - 1: the lowest level is furthest.
        below = ops.flip(ops.cumsum(gaps[..., :m], axis=-1), axis=-1)
        above = ops.cumsum(gaps[..., m:], axis=-1)
        median = ops.expand_dims(median, -1)
        anchor = ops.stop_gradient(median)
        return ops.concatenate([anchor - below, median, anchor + above], axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "horizon": self.horizon, "median_index": self.median_index}


class PinballLoss(keras.losses.Loss):
    """The pinball loss of quantiles ``[batch, H, Q]`` against targets ``[batch, H]``, mean over levels and steps.

    The same arithmetic as :func:`components.quantiles.pinball`.
    """

    def __init__(self, levels: tuple[float, ...], name: str = "pinball", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.levels = tuple(levels)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        error = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred
        p = ops.convert_to_tensor(np.asarray(self.levels, dtype=np.float32))
        return ops.mean(ops.maximum(p * error, (p - 1) * error), axis=(-2, -1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "levels": self.levels}


def _median_error(levels: tuple[float, ...]) -> Any:
    median = levels.index(trainer_options.MEDIAN)

    def median_absolute_error(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.abs(keras.ops.cast(y_true, y_pred.dtype) - y_pred[..., median]), axis=-1)

    return median_absolute_error


def make_dataset(file_pattern: list[str], data_accessor: tfx.components.DataAccessor,
                 tft_output: tft.TFTransformOutput, batch_size: int, shuffle: bool, seed: int,
                 extra_keys: tuple[str, ...] = (), keep: Optional[np.ndarray] = None) -> tf.data.Dataset:
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
      extra_keys: Further transformed features to keep in the features dict beside the model's
        inputs (the calibration reads the raw context and the scale).
      keep: Which windows to read, bool ``[N]`` over the files' windows in their order (the order
        :func:`window_keys` reads them in; a cross-validation fold's); None: all.
    """
    schema = tft_output.transformed_metadata.schema
    keys = list(model_inputs(tft_output)) + list(extra_keys)
    options = tfxio.TensorFlowDatasetOptions(batch_size=_READ_BATCH_SIZE, label_key=features.TARGET_SCALED,
                                             num_epochs=1, shuffle=False)
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, schema)
    dataset = dataset.map(lambda f, y: ({k: f[k] for k in keys}, y), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.unbatch()
    if keep is not None:
        # An index past the mask (files that changed since it was made) fails the gather, never a silent subset.
        mask = tf.constant(np.asarray(keep, dtype=bool))
        dataset = dataset.enumerate().filter(lambda i, window: tf.gather(mask, i)).map(lambda i, window: window)
    dataset = dataset.cache()
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


# How the export runs the LSTMs when it does not use XLA (see serving/contract.py for the figures):
#   fused     TensorFlow's BlockLSTMV2 op, one op per layer for the whole sequence (the default)
#   unrolled  the Keras cell once per history step, no while loop (the history length L is static)
#   loop      Keras' own graph: a while loop over the steps
# All three are standard TensorFlow ops with CPU and GPU kernels, and compute the same forecasts
# from the same weights. The XLA export always compiles the loop.
LSTM_GRAPHS = ("fused", "unrolled", "loop")
DEFAULT_LSTM_GRAPH = "fused"


def _fusable(layer: keras.layers.LSTM) -> bool:
    """Whether BlockLSTMV2 computes what ``layer`` does: Keras' default gates, no state carried in or out."""
    return (layer.cell.activation is keras.activations.tanh
            and layer.cell.recurrent_activation is keras.activations.sigmoid
            and layer.cell.use_bias and not (layer.go_backwards or layer.return_state or layer.stateful))


class _ExportLSTM(keras.layers.Layer):
    """Runs a trained Keras LSTM, with its own weights, as an unrolled or a fused graph (inference only).

    Args:
      lstm: The trained layer; its variables are read, not copied.
      graph: ``"unrolled"`` or ``"fused"`` (see :data:`LSTM_GRAPHS`).
    """

    def __init__(self, lstm: keras.layers.LSTM, graph: str, **kwargs: Any):
        super().__init__(name=f"{lstm.name}_{graph}", **kwargs)
        self.lstm = lstm
        self.graph = graph

    def call(self, sequence: tf.Tensor, mask: Optional[tf.Tensor] = None) -> tf.Tensor:
        # No mask: the model's sequences are whole windows.
        cell = self.lstm.cell
        if self.graph == "unrolled":
            batch = tf.shape(sequence)[0]
            states = [tf.zeros([batch, cell.units], sequence.dtype)] * 2
            outputs = []
            for step in range(sequence.shape[1]):
                output, states = cell(sequence[:, step], states, training=False)
                outputs.append(output)
            return tf.stack(outputs, axis=1) if self.lstm.return_sequences else outputs[-1]
        # BlockLSTMV2 takes time-major input, the input and recurrent kernels stacked, and the gates
        # in Keras' order (input, forget, cell, output); no peepholes, no cell clipping (0 turns it off).
        time_major = tf.transpose(sequence, [1, 0, 2])
        zeros = tf.zeros([tf.shape(sequence)[0], cell.units], sequence.dtype)
        no_peephole = tf.zeros([cell.units], sequence.dtype)
        outputs = tf.raw_ops.BlockLSTMV2(
            seq_len_max=tf.cast(tf.shape(time_major)[0], tf.int64), x=time_major, cs_prev=zeros, h_prev=zeros,
            w=tf.concat([tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.recurrent_kernel)], axis=0),
            wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=tf.convert_to_tensor(cell.bias), cell_clip=0.0,
            use_peephole=False)
        hidden = outputs.h
        return tf.transpose(hidden, [1, 0, 2]) if self.lstm.return_sequences else hidden[-1]


def serving_model(model: keras.Model, lstm_graph: str = DEFAULT_LSTM_GRAPH) -> keras.Model:
    """The model as the export runs it: the same layers and weights, each LSTM in graph ``lstm_graph``.

    Args:
      model: The trained model (from :func:`build_model`).
      lstm_graph: One of :data:`LSTM_GRAPHS`; ``"loop"`` returns ``model`` itself. An LSTM that
        the fused op cannot compute (another activation, state carried out) keeps Keras' loop.
    """
    if lstm_graph not in LSTM_GRAPHS:
        raise ValueError(f"lstm_graph must be one of {LSTM_GRAPHS}, got {lstm_graph!r}")
    if lstm_graph == "loop":
        return model

    def replace(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.LSTM) and (lstm_graph == "unrolled" or _fusable(layer)):
            return _ExportLSTM(layer, lstm_graph)
        return layer  # shared, with its weights

    # The clone only runs forward: left uncompiled, Keras does not rebuild the loss and metrics from
    # their configs (the quantile head's are custom, with no registered config).
    compiled, model.compiled = model.compiled, False
    try:
        return keras.models.clone_model(model, clone_function=replace)
    finally:
        model.compiled = compiled


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


def interval_spread(context: tf.Tensor, scale: tf.Tensor, period: int,
                    statistic: str = quantiles.SPREAD_STATISTIC) -> tf.Tensor:
    """Each window's conformal spread ``[batch, 1]`` in the graph: :func:`components.quantiles.interval_spread`.

    Computed from the raw context ``[batch, C]`` alone, so a served model calibrates each window
    it is sent without anything but the window.
    """
    quantiles.check_spread_statistic(statistic)
    if period == 0:
        return tf.ones_like(scale)
    context = tf.cast(context, tf.float32)
    reduce = tf.reduce_max if statistic == "max" else tf.reduce_mean
    summary = reduce(tf.abs(context[:, -period:] - context[:, -2 * period:-period]), axis=1, keepdims=True)
    spread = tf.maximum(summary, quantiles.SPREAD_FLOOR * tf.reduce_mean(tf.abs(context), axis=1, keepdims=True))
    return tf.where(spread > 0, spread / scale, tf.ones_like(scale))


# Serving inputs that are [batch] but hold example features stored as [batch, 1], by input name;
# every other input is named like its raw feature.
SERVING_INPUT_FEATURES = {contract.ORIGIN_TIMESTAMP_INPUT_KEY: features.ORIGIN_TIMESTAMP,
                          contract.SERIES_ID_INPUT_KEY: features.SERIES_ID}


def raw_feature(input_key: str) -> str:
    """The raw (example) feature behind ``serving_default`` input ``input_key``."""
    return SERVING_INPUT_FEATURES.get(input_key, input_key)


def serving_inputs(tft_output: tft.TFTransformOutput, series_id: bool) -> list[tf.TensorSpec]:
    """The inputs of ``serving_default``, in order (see :mod:`serving.contract`)."""
    raw = tft_output.raw_feature_spec()
    transformed = tft_output.transformed_feature_spec()
    specs = [tf.TensorSpec([None, raw[features.HISTORY].shape[0]], tf.float32, name=contract.INPUT_KEY)]
    for name in transform_lib.covariate_features(raw) + transform_lib.future_features(raw):
        specs.append(tf.TensorSpec([None, raw[name].shape[0]], tf.float32, name=name))
    if features.CALENDAR_HISTORY in transformed:
        specs.append(tf.TensorSpec([None], tf.int64, name=contract.ORIGIN_TIMESTAMP_INPUT_KEY))
    if series_id:
        specs.append(tf.TensorSpec([None], tf.string, name=contract.SERIES_ID_INPUT_KEY))
    return specs


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, export_dir: str,
                         model_config: trainer_options.ModelConfig,
                         warmup_inputs: Optional[dict[str, np.ndarray]] = None,
                         adjustments: Optional[np.ndarray] = None,
                         lstm_graph: str = DEFAULT_LSTM_GRAPH, spread_period: int = 0,
                         spread_statistic: str = quantiles.SPREAD_STATISTIC) -> None:
    """Saves the model with the Transform graph and the signatures of :mod:`serving.contract`.

    Args:
      model: The trained model on scaled values (from :func:`build_model`).
      tft_output: Output of the Transform component (its graph does the scaling, lags and calendar).
      export_dir: Where to write the SavedModel.
      model_config: Its ``scaling`` and ``series_embedding_dim`` (``per_series`` or an embedding adds
        the series id input), ``serving_xla`` and ``quantiles`` (when set, the signatures also return
        the quantiles and their levels).
      warmup_inputs: Raw ``serving_default`` inputs keyed by input name, rows aligned, written as
        TF Serving warmup requests (:func:`write_warmup_requests`); None writes none.
      adjustments: The calibration ``[H, Q]``, per unit of spread, added to the scaled quantiles
        inside the graph (:func:`components.quantiles.conformal_adjustments`); None: the model's
        own quantiles.
      lstm_graph: How the LSTMs run without XLA (:data:`LSTM_GRAPHS`); the XLA export compiles
        Keras' loop whatever this says.
      spread_period: The period of each window's spread (:func:`interval_spread`), as
        :func:`calibrate` was given it; 0: the window scale.
      spread_statistic: The spread's statistic, as :func:`calibrate` was given it.
    """
    _portable(model)
    raw_spec = tft_output.raw_feature_spec()
    series_id = model_config.takes_series_id
    model_keys = list(model_inputs(tft_output))
    input_specs = serving_inputs(tft_output, series_id)

    # Keras 3 variables must be exported through ExportArchive: a plain tf.saved_model.save of a
    # module holding the model writes each variable twice, and the TF1 session loader that TF
    # Serving uses then runs the graph on a copy it never restored.
    archive = keras.export.ExportArchive()
    archive.track(model)
    tft_layer = tft_output.transform_features_layer()
    archive.track(tft_layer)

    if model_config.serving_xla:
        # Only the model is compiled with XLA: the Transform graph may hold lookup tables (per-series
        # statistics), which XLA cannot compile. XLA compiles once per batch size: pad to buckets.
        predict_scaled = _padded_to_buckets(tf.function(lambda inputs: model(inputs, training=False),
                                                        jit_compile=True))
    else:
        # Runs in any TF Serving, no flag needed; shape-agnostic, so batches are not padded.
        exported = serving_model(model, lstm_graph)
        predict_scaled = lambda inputs: exported(inputs, training=False)  # noqa: E731

    levels = model_config.quantiles

    def forecast(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = tft_layer(raw)
        scaled = predict_scaled({k: transformed[k] for k in model_keys})
        if not levels:
            return {contract.OUTPUT_KEY: scaled * transformed[features.SCALE] + transformed[features.LOC]}
        if not model_config.quantile_head:
            # Conformal intervals around the point forecast: every level starts at it.
            scaled = tf.repeat(tf.expand_dims(scaled, -1), len(levels), axis=-1)
        spread = interval_spread(transformed[features.HISTORY], transformed[features.SCALE], spread_period,
                                 spread_statistic)
        return quantile_outputs(scaled, transformed[features.SCALE], transformed[features.LOC], levels, adjustments,
                                spread)

    def from_inputs(*values: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = {}
        for spec, value in zip(input_specs, values):
            name = raw_feature(spec.name)
            raw[name] = tf.reshape(value, [-1, *raw_spec[name].shape]) if spec.name in SERVING_INPUT_FEATURES \
                else value
        return forecast(raw)

    parse_spec = {raw_feature(spec.name): raw_spec[raw_feature(spec.name)] for spec in input_specs}
    archive.add_endpoint(name=contract.SIGNATURE_NAME, fn=from_inputs, input_signature=input_specs)
    archive.add_endpoint(
        name=contract.EXAMPLES_SIGNATURE_NAME,
        fn=lambda serialized: forecast(tf.io.parse_example(serialized, parse_spec)),
        input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT_KEY)])
    archive.write_out(export_dir, verbose=False)
    if warmup_inputs is not None:
        write_warmup_requests(export_dir, warmup_inputs)


def quantile_outputs(scaled: tf.Tensor, scale: tf.Tensor, loc: tf.Tensor, levels: tuple[float, ...],
                     adjustments: Optional[np.ndarray] = None,
                     spread: Optional[tf.Tensor] = None) -> dict[str, tf.Tensor]:
    """The outputs of a quantile model (see :mod:`serving.contract`) from its scaled quantiles ``[batch, H, Q]``.

    The calibration (constants in the graph, times each window's ``spread`` ``[batch, 1]`` in
    scaled units; None: 1) is added in scaled units, the values are put back in original units
    (``scale`` and ``loc`` ``[batch, 1]``) and sorted across levels, so calibrated quantiles never
    cross (:func:`components.quantiles.calibrate`); ``forecast`` is their median.
    """
    if adjustments is not None:
        adjustment = tf.constant(adjustments, scaled.dtype)
        if spread is not None:
            adjustment = tf.expand_dims(tf.cast(spread, scaled.dtype), -1) * adjustment
        scaled = scaled + adjustment
    values = tf.sort(scaled * tf.expand_dims(scale, -1) + tf.expand_dims(loc, -1), axis=-1)
    rows = tf.shape(values)[0]
    return {contract.OUTPUT_KEY: values[..., levels.index(trainer_options.MEDIAN)],
            contract.QUANTILES_OUTPUT_KEY: values,
            contract.QUANTILE_LEVELS_OUTPUT_KEY: tf.tile(tf.constant([levels], tf.float32), [rows, 1])}


def calibrate(model: keras.Model, eval_files: list[str], data_accessor: tfx.components.DataAccessor,
              tft_output: tft.TFTransformOutput, model_config: trainer_options.ModelConfig,
              spread_period: int = 0, spread_statistic: str = quantiles.SPREAD_STATISTIC,
              folds: Sequence[tuple[keras.Model, list[str], np.ndarray]] = ()) -> tuple[np.ndarray, dict[str, Any]]:
    """Split-conformal calibration of the intervals on the eval split and the folds (:mod:`components.quantiles`).

    A point model's raw quantiles are all its point forecast, so each interval becomes the point
    forecast plus and minus a quantile of the absolute scaled errors, each divided by its
    window's spread (normalised split conformal prediction), times the window's spread; the median
    stays the point forecast. That quantile is taken over every step's errors, each step's over
    their mean (:func:`components.quantiles.pooled_conformal_adjustments`: lower cross-fit coverage
    error than one quantile per step, ``benchmarks/calibration.py``); a quantile head's
    intervals are adjusted per step (:func:`components.quantiles.conformal_adjustments`).

    The scores are the model's on eval, and each cross-validation fold's model's on the stretch of
    the train split it held out (:func:`train_folds`): more than one stretch of the series, so one
    stretch's luck (a calm eval quarter) sets the intervals less (statsforecast's and
    neuralforecast's ``PredictionIntervals(n_windows)`` score several cross-validation windows
    alike). The eval split also drives early stopping, so it is not quite unseen by the model: the
    calibrated coverage on the test split is the honest figure (the run's report shows it).

    Args:
      spread_period: The period of each window's spread (:func:`interval_spread`,
        :func:`components.quantiles.spread_period`); 0: the window scale, every spread 1.
      spread_statistic: How the spread summarises the last season (:data:`components.quantiles.SPREAD_STATISTICS`).
      folds: ``(model, files, keep)`` of each fold: its model, and the windows it held out
        (:func:`make_dataset`'s ``keep`` over ``files``).

    Returns:
      The adjustments ``[H, Q]`` in scaled units per unit of spread, and what the report shows of
      them: the eval windows and each fold's, the median's scaled MAE on each (``scaled_mae``), the
      spread's period and statistic, how the score quantile was taken (``score_quantile``:
      ``"pooled_steps"`` or ``"per_step"``), and the raw and calibrated eval coverage of each central
      interval.
    """
    levels = model_config.quantiles
    horizon = int(model.output.shape[1])

    def scored(model: keras.Model, files: list[str], keep: Optional[np.ndarray] = None) -> tuple[np.ndarray, ...]:
        data = make_dataset(files, data_accessor, tft_output, model_config.batch_size, False, model_config.seed,
                            extra_keys=(features.HISTORY, features.SCALE), keep=keep)
        predicted, actual, spread = [], [], []
        for inputs, target in data:
            spread.append(interval_spread(inputs.pop(features.HISTORY), inputs.pop(features.SCALE), spread_period,
                                          spread_statistic).numpy())
            output = model(inputs, training=False).numpy()
            predicted.append(output if model_config.quantile_head else np.repeat(output[..., None], len(levels), -1))
            actual.append(target.numpy())
        return (np.concatenate(predicted) if predicted else np.zeros((0, horizon, len(levels))),
                np.concatenate(actual) if actual else np.zeros((0, horizon)),
                np.concatenate(spread) if spread else np.zeros((0, 1)))

    predicted, actual, spread = scored(model, eval_files)
    held_out = [scored(*fold) for fold in folds]
    pooled_predicted, pooled_actual, pooled_spread = (
        np.concatenate(parts) for parts in zip((predicted, actual, spread), *held_out))
    adjust = quantiles.conformal_adjustments if model_config.quantile_head else quantiles.pooled_conformal_adjustments
    adjustments = adjust(pooled_actual, pooled_predicted, levels, pooled_spread)

    def coverage(values: np.ndarray) -> dict[str, float]:
        hits = quantiles.covered(actual, values, levels).reshape(-1, len(quantiles.interval_pairs(levels)))
        return {trainer_options.interval_name(c): float(hits[:, i].mean()) if len(hits) else float("nan")
                for i, (_, _, c) in enumerate(quantiles.interval_pairs(levels))}

    def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
        # The median's (a point model's forecast's), in scaled units: what a choice between variants
        # of the model could be made on, on windows no choice has seen (the folds').
        median = predicted[..., list(levels).index(trainer_options.MEDIAN)]
        return float(np.mean(np.abs(median - actual))) if len(actual) else float("nan")

    report = {"levels": list(levels), "windows": len(actual), "fold_windows": [len(a) for _, a, _ in held_out],
              "scaled_mae": {"eval": mae(predicted, actual), "folds": [mae(p, a) for p, a, _ in held_out]},
              "spread_period": spread_period, "spread_statistic": spread_statistic,
              "score_quantile": "per_step" if model_config.quantile_head else "pooled_steps",
              "calibrated_coverage": coverage(quantiles.calibrate(predicted, adjustments, spread)),
              "adjustments": adjustments.tolist()}
    if model_config.quantile_head:  # a point model's raw "intervals" are a point: nothing to show
        report["raw_coverage"] = coverage(predicted)
    return adjustments, report


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
                       tft_output: tft.TFTransformOutput, series_id: bool) -> dict[str, np.ndarray]:
    """Raw ``serving_default`` inputs of the first transformed windows of ``file_pattern``.

    Transform passes the raw inputs through (:func:`components.transform.preprocessing_fn`), so
    they are read back as they were.
    """
    options = tfxio.TensorFlowDatasetOptions(batch_size=_WARMUP_WINDOWS, num_epochs=1, shuffle=False)
    batch = next(iter(data_accessor.tf_dataset_factory(file_pattern, options,
                                                        tft_output.transformed_metadata.schema)))
    inputs = {}
    for spec in serving_inputs(tft_output, series_id):
        values = batch[raw_feature(spec.name)].numpy()
        if spec.shape.rank == 1:
            values = values.reshape(-1)
        dtype = object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
        inputs[spec.name] = values.astype(dtype)
    return inputs


# The data settings a forecast of new data must repeat; the path is the training data's, not kept.
_DESCRIBED_DATA = ("timestamp_column", "target_column", "series_id_column", "covariate_columns",
                   "future_covariate_columns", "frequency", "duplicates", "gap_policy", "max_gap",
                   "business_hours", "business_days")
_DESCRIBED_WINDOWS = ("history", "horizon", "seasonal_periods", "step_seconds", "calendar_features")
# The description's format version, bumped when a field changes meaning.
MODEL_DESCRIPTION_FORMAT = 1


def model_description(custom_config: dict[str, Any], model_config: trainer_options.ModelConfig,
                      known_series: Optional[list[str]] = None,
                      quantile_levels: Optional[list[float]] = None) -> dict[str, Any]:
    """What the exported model was trained on, for :data:`serving.contract.MODEL_DESCRIPTION_FILE`.

    Args:
      custom_config: The Trainer's custom config (``windows``, ``data``; see ``PipelineConfig.trainer_config``).
      model_config: The model settings (its ``scaling``).
      known_series: The series ids of the training split (``per_series`` scaling: others get the
        global statistics), or None.
      quantile_levels: The levels of the ``forecast_quantiles`` output, or None for a point model.

    Returns:
      A JSON-safe dict: ``data`` (columns, frequency, policies), ``windows`` (history L, context C,
      horizon H, seasonal periods, step), ``scaling``, ``series_embedding_dim``,
      ``takes_series_id`` (whether ``serving_default`` takes the series id), and ``known_series`` /
      ``quantile_levels`` when given.
    """
    windows = custom_config["windows"]
    data = custom_config.get("data") or {}
    description = {
        "format": MODEL_DESCRIPTION_FORMAT,
        "data": {k: data[k] for k in _DESCRIBED_DATA if k in data},
        "windows": {**{k: windows[k] for k in _DESCRIBED_WINDOWS if k in windows},
                    "context": _context(windows)},
        "scaling": model_config.scaling,
        "series_embedding_dim": model_config.series_embedding_dim,
        "takes_series_id": model_config.takes_series_id,
    }
    if known_series is not None:
        description["known_series"] = sorted(known_series)
    if quantile_levels:
        description["quantile_levels"] = [float(q) for q in quantile_levels]
    return description


def _context(windows: dict[str, Any]) -> int:
    """The context C of the windows (``asdict`` of WindowConfig through JSON): WindowConfig.context.

    Windows without ``seasonal_cycles`` (written before it existed) held one cycle.
    """
    fields = ("history", "seasonal_periods", "seasonal_lags", "seasonal_cycles")
    values = {"seasonal_cycles": 1, **{k: windows[k] for k in fields if k in windows}}
    return settings.from_dict(window_options.WindowConfig, values).context


def write_model_description(export_dir: str, description: dict[str, Any]) -> str:
    """Writes ``description`` as JSON into the SavedModel's assets.extra; returns the file's path."""
    path = os.path.join(export_dir, contract.MODEL_DESCRIPTION_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(description, f, indent=1, sort_keys=True)
    return path


def training_series_ids(file_pattern: list[str], data_accessor: tfx.components.DataAccessor,
                tft_output: tft.TFTransformOutput) -> list[str]:
    """The distinct series ids of transformed examples (Transform passes the raw id through)."""
    options = tfxio.TensorFlowDatasetOptions(batch_size=_READ_BATCH_SIZE, num_epochs=1, shuffle=False)
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.transformed_metadata.schema)
    ids = set()
    for batch in dataset.map(lambda f: f[features.SERIES_ID]):
        ids.update(v.decode() for v in batch.numpy().reshape(-1))
    return sorted(ids)


def _model_config(fn_args: Any) -> trainer_options.ModelConfig:
    """The model settings of the pipeline, with the Tuner's best hyperparameters when it ran."""
    model_config = trainer_options.model_config_from_dict((fn_args.custom_config or {}).get("model"))
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if hyperparameters:
        return tuned_config(model_config, keras_tuner.HyperParameters.from_config(hyperparameters).values)
    return model_config


def tuned_config(model_config: trainer_options.ModelConfig, values: dict[str, Any]) -> trainer_options.ModelConfig:
    """``model_config`` with a trial's ``values`` of :func:`search_space` (layers of equal width)."""
    return dataclasses.replace(model_config, lstm_units=(int(values["units"]),) * int(values["layers"]),
                               dropout=float(values["dropout"]), learning_rate=float(values["learning_rate"]))


# The --tune search space; each range is widened to hold the configured value, which is its default.
TUNED_UNITS = (16, 32, 64, 128)
TUNED_LAYERS = (1, 3)
TUNED_DROPOUT = (0.0, 0.5)
TUNED_LEARNING_RATE = (1e-4, 1e-2)


def search_space(model_config: trainer_options.ModelConfig) -> keras_tuner.HyperParameters:
    """The --tune search space (layers, units, dropout, learning rate), with the configured model
    (``lstm_units``' depth and first width, ``dropout``, ``learning_rate``) as its default values."""
    hp = keras_tuner.HyperParameters()
    layers = len(model_config.lstm_units)
    hp.Int("layers", min(TUNED_LAYERS[0], layers), max(TUNED_LAYERS[1], layers), default=layers)
    units = model_config.lstm_units[0]
    hp.Choice("units", sorted({*TUNED_UNITS, units}), default=units)
    hp.Float("dropout", TUNED_DROPOUT[0], max(TUNED_DROPOUT[1], model_config.dropout), step=0.1,
             default=model_config.dropout)
    hp.Float("learning_rate", min(TUNED_LEARNING_RATE[0], model_config.learning_rate),
             max(TUNED_LEARNING_RATE[1], model_config.learning_rate), sampling="log",
             default=model_config.learning_rate)
    return hp


def _history_horizon(custom_config: Optional[dict[str, Any]]) -> tuple[int, int]:
    windows = (custom_config or {})["windows"]
    return int(windows["history"]), int(windows["horizon"])


def _callbacks(model_config: trainer_options.ModelConfig) -> list[keras.callbacks.Callback]:
    if model_config.early_stopping_patience <= 0:
        return []
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=model_config.early_stopping_patience,
                                          restore_best_weights=True)]


@dataclasses.dataclass(frozen=True)
class Training:
    """A trained model and how many epochs made it.

    Attributes:
      model: The trained model (the best eval-loss weights when early stopping was on).
      epochs: The epochs whose weights the model holds: early stopping's best epoch (1-based), or
        every epoch run without early stopping. A refit on more data trains this many.
      epochs_run: The epochs run (early stopping runs ``patience`` past the best one).
      windows: The training windows of each epoch.
      eval_loss: The eval loss of the weights the model holds (early stopping's best, else the last
        epoch's), or None when trained without eval data (the refit).
      base_mix_fit: How the mix's weights started (``ModelConfig.base_mix_fit``; for ``auto``, the
        variant it chose).
      eval_losses: With ``auto``: the eval loss of each variant it trained; else None.
    """

    model: keras.Model
    epochs: int
    epochs_run: int
    windows: int
    eval_loss: Optional[float] = None
    base_mix_fit: str = "none"
    eval_losses: Optional[dict[str, float]] = None


def fit(train_files: list[str], eval_files: Optional[list[str]], data_accessor: tfx.components.DataAccessor,
        tft_output: tft.TFTransformOutput, history: int, horizon: int, model_config: trainer_options.ModelConfig,
        log_dir: Optional[str] = None, mix_weights: Optional[np.ndarray] = None,
        keep: Optional[np.ndarray] = None) -> Training:
    """Trains the model on transformed windows: seeded, early stopping on the eval loss.

    Args:
      train_files: Transformed training examples.
      eval_files: Transformed eval examples (early stopping watches their loss), or None to train
        ``model_config.epochs`` epochs without validation (the refit on train+eval).
      data_accessor: The Trainer's data accessor.
      tft_output: Output of the Transform component.
      history: Window length L.
      horizon: Horizon H.
      model_config: Model and training settings; ``seed`` fixes weights, dropout and shuffling.
      log_dir: Where TensorBoard's logs and :data:`TRAINING_LOG_FILE` go, or None for no logs.
      mix_weights: The mix's fitted start (:func:`fit_mix_weights` of these training windows) when
        the caller has it already (``auto``); None: fitted here where ``base_mix_fit`` asks for it.
      keep: Which training windows to train on (:func:`make_dataset`; a cross-validation fold's,
        not with ``auto``); None: all.

    Returns:
      The trained model and its epochs. With ``base_mix_fit`` ``auto``, the better on eval of a
      training with ``none`` and one with ``fit`` (:func:`_fit_auto`).
    """
    if model_config.base_mix_fit == "auto":
        if keep is not None:
            raise ValueError("--base-mix-fit auto trains on every training window; a fold trains the chosen start")
        return _fit_auto(train_files, eval_files, data_accessor, tft_output, history, horizon, model_config,
                         log_dir, mix_weights)
    # One seed for Python, NumPy, TF and Keras. The CPU kernels are deterministic; on a GPU some
    # (cuDNN, atomics) are not unless asked, at a cost in speed.
    keras.utils.set_random_seed(model_config.seed)
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    train_data = make_dataset(train_files, data_accessor, tft_output, model_config.batch_size, True, model_config.seed,
                              keep=keep)
    eval_data = None if eval_files is None else make_dataset(
        eval_files, data_accessor, tft_output, model_config.batch_size, False, model_config.seed)
    model = build_model(model_inputs(tft_output), history, horizon, model_config)
    if model_config.base_mix_fit != "none":
        _fit_base_mix(model, train_files, data_accessor, tft_output, model_config, mix_weights, keep)
    callbacks = _callbacks(model_config) if eval_data is not None else []
    if log_dir:
        callbacks += [keras.callbacks.TensorBoard(log_dir=log_dir),
                      # Loss per epoch as CSV, for the run's report (TensorBoard's files need TensorBoard).
                      keras.callbacks.CSVLogger(os.path.join(log_dir, TRAINING_LOG_FILE))]
    record = training_model(model, model_config).fit(train_data, validation_data=eval_data,
                                                     epochs=model_config.epochs, verbose=2, callbacks=callbacks)
    epochs_run = len(record.epoch)
    for layer in _mix_layers(model):
        logging.info("base mix weights after training (%s): %s", layer.name,
                     np.array2string(layer.mix_weights(), precision=3))
    stopping = [c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)]
    # Keras restores the best epoch's weights at the end of training, stopped early or not.
    epochs = stopping[0].best_epoch + 1 if stopping and stopping[0].best_weights is not None else epochs_run
    # Counted from the cache the epochs read, so it is what training saw (train+eval for the refit).
    windows = int(train_data.reduce(np.int64(0), lambda n, batch: n + tf.shape(batch[1], out_type=tf.int64)[0]))
    if eval_data is None:
        eval_loss = None
    elif stopping and stopping[0].best_weights is not None:
        eval_loss = float(stopping[0].best)
    else:
        eval_loss = float(record.history["val_loss"][-1])
    return Training(model, epochs, epochs_run, windows, eval_loss, model_config.base_mix_fit)


# The variants --base-mix-fit auto trains, in the order a tie of eval losses prefers (the default first).
AUTO_BASE_MIX_FITS = ("none", "fit")


def choose_base_mix_fit(eval_losses: dict[str, float]) -> str:
    """The variant of ``eval_losses`` (variant: eval loss) with the lowest loss; on a tie, the first of
    :data:`AUTO_BASE_MIX_FITS` (so the choice is the same on every run)."""
    return min(AUTO_BASE_MIX_FITS, key=lambda variant: (eval_losses[variant], AUTO_BASE_MIX_FITS.index(variant)))


def _equal_weights(weights: np.ndarray) -> bool:
    """Whether each row of mix ``weights`` is equal: :meth:`SeasonalBaseMix.set_mix_weights` then sets the
    logits ``none`` starts from (zeros), up to float32 rounding."""
    return bool(np.all(np.ptp(weights, axis=-1) < _EQUAL_WEIGHTS_TOLERANCE))


# How far apart fitted mix weights may be and still start the mix as equal weights do (float32 logits).
_EQUAL_WEIGHTS_TOLERANCE = 1e-6


def _fit_auto(train_files: list[str], eval_files: Optional[list[str]], data_accessor: tfx.components.DataAccessor,
              tft_output: tft.TFTransformOutput, history: int, horizon: int,
              model_config: trainer_options.ModelConfig, log_dir: Optional[str],
              mix_weights: Optional[np.ndarray] = None) -> Training:
    """:func:`fit` with ``base_mix_fit`` ``auto``: trains each of :data:`AUTO_BASE_MIX_FITS` (same seed and
    data, each with its own early stopping) and keeps the one with the lower eval loss at its best epoch.

    A per-data-set choice on eval: neither start is better on every set (README, "Fitting the mix
    first"). Without a mix in the model, or where the fit keeps the equal weights ``none`` starts
    from (a context of one cycle: every candidate is the seasonal naive forecast), the variants are
    the same model, so it trains ``none`` once. Each
    variant logs under ``log_dir/base_mix_fit_<variant>``; the chosen one's :data:`TRAINING_LOG_FILE`
    is copied to ``log_dir``, where the run's report reads it. ``mix_weights``: as :func:`fit` takes them.

    Raises:
      ValueError: No eval files: the refit takes its base model's choice (:func:`refit_config`).
    """
    if eval_files is None:
        raise ValueError("--base-mix-fit auto chooses on the eval loss and needs eval data; a refit takes its "
                         "base model's choice")
    # Fitted once: the fit variant starts from them, and they say whether it differs from none.
    weights = mix_weights if mix_weights is not None else \
        _start_weights(train_files, data_accessor, tft_output, model_config)
    if weights is None or _equal_weights(weights):
        return fit(train_files, eval_files, data_accessor, tft_output, history, horizon,
                   dataclasses.replace(model_config, base_mix_fit="none"), log_dir)
    trainings = {}
    for variant in AUTO_BASE_MIX_FITS:
        variant_dir = os.path.join(log_dir, f"base_mix_fit_{variant}") if log_dir else None
        trainings[variant] = fit(train_files, eval_files, data_accessor, tft_output, history, horizon,
                                 dataclasses.replace(model_config, base_mix_fit=variant), variant_dir, weights)
    eval_losses = {variant: training.eval_loss for variant, training in trainings.items()}
    chosen = choose_base_mix_fit(eval_losses)
    logging.info("--base-mix-fit auto: eval loss %s; chose %s",
                 ", ".join(f"{v} {loss:.6g}" for v, loss in eval_losses.items()), chosen)
    if log_dir:
        tf.io.gfile.copy(os.path.join(log_dir, f"base_mix_fit_{chosen}", TRAINING_LOG_FILE),
                         os.path.join(log_dir, TRAINING_LOG_FILE), overwrite=True)
    return dataclasses.replace(trainings[chosen], eval_losses=eval_losses)


def _mix_layers(model: keras.Model) -> list[SeasonalBaseMix]:
    return [layer for layer in model.layers if isinstance(layer, SeasonalBaseMix)]


def _fit_base_mix(model: keras.Model, train_files: list[str], data_accessor: tfx.components.DataAccessor,
                  tft_output: tft.TFTransformOutput, model_config: trainer_options.ModelConfig,
                  weights: Optional[np.ndarray] = None, keep: Optional[np.ndarray] = None) -> None:
    """Starts every :class:`SeasonalBaseMix` of ``model`` at :func:`fit_mix_weights` of the training windows
    (``model_config.base_mix_fit``; ``weights``, if given, are those; ``keep``: of those training windows
    only, :func:`make_dataset`); ``frozen`` also keeps them out of training (the model is recompiled).

    Early stopping ends training after a few epochs on short series (hyndsight: its best epoch is the first,
    3 steps of 64 windows), too few steps for Adam to move the weights from equal; fitted first, the mix
    is the best convex base the data allow before the head learns its correction.
    """
    layers = _mix_layers(model)
    if not layers:
        return
    if weights is None:
        weights = _fitted_mix_weights(train_files, data_accessor, tft_output, model_config, keep)
    for layer in layers:
        layer.set_mix_weights(weights)
        if model_config.base_mix_fit == "frozen":
            layer.trainable = False
    if model_config.base_mix_fit == "frozen":
        _compile(model, model_config, ensemble=False)


def _start_weights(train_files: list[str], data_accessor: tfx.components.DataAccessor,
                   tft_output: tft.TFTransformOutput,
                   model_config: trainer_options.ModelConfig) -> Optional[np.ndarray]:
    """The fitted start of the model's mix (:func:`_fitted_mix_weights`), or None when the model has no mix."""
    has_mix = model_config.seasonal_base and model_config.seasonal_base_mix and mix_candidates(model_inputs(tft_output))
    return _fitted_mix_weights(train_files, data_accessor, tft_output, model_config) if has_mix else None


def _fitted_mix_weights(train_files: list[str], data_accessor: tfx.components.DataAccessor,
                        tft_output: tft.TFTransformOutput, model_config: trainer_options.ModelConfig,
                        keep: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`fit_mix_weights` of the training windows' (``keep``: of those, :func:`make_dataset`)
    :func:`mix_candidates` and targets."""
    names = mix_candidates(model_inputs(tft_output))
    data = make_dataset(train_files, data_accessor, tft_output, _READ_BATCH_SIZE, False, model_config.seed, keep=keep)
    candidates, targets = [], []
    for inputs, target in data:
        candidates.append(np.stack([inputs[n].numpy() for n in names], axis=-1))
        targets.append(target.numpy())
    weights = fit_mix_weights(np.concatenate(candidates), np.concatenate(targets),
                              absolute=model_config.quantile_head or model_config.loss != "mse",
                              per_step=model_config.base_mix_weights == "per_step")
    logging.info("base mix weights fitted on the training windows (%s): %s", ", ".join(names),
                 np.array2string(weights, precision=3))
    return weights


def train(train_files: list[str], eval_files: list[str], data_accessor: tfx.components.DataAccessor,
          tft_output: tft.TFTransformOutput, history: int, horizon: int, model_config: trainer_options.ModelConfig,
          log_dir: Optional[str] = None) -> keras.Model:
    """The model of :func:`fit` (same arguments), without its epochs."""
    return fit(train_files, eval_files, data_accessor, tft_output, history, horizon, model_config, log_dir).model


def window_keys(files: list[str], data_accessor: tfx.components.DataAccessor,
                tft_output: tft.TFTransformOutput) -> tuple[np.ndarray, np.ndarray]:
    """Each window's series id and origin (epoch seconds), in :func:`make_dataset`'s unshuffled order."""
    data = make_dataset(files, data_accessor, tft_output, _READ_BATCH_SIZE, False, 0,
                        extra_keys=(features.SERIES_ID, features.ORIGIN_TIMESTAMP))
    series, origins = [np.zeros(0, object)], [np.zeros(0, np.int64)]
    for inputs, _ in data:
        series.append(inputs[features.SERIES_ID].numpy().reshape(-1))
        origins.append(inputs[features.ORIGIN_TIMESTAMP].numpy().reshape(-1))
    return np.concatenate(series), np.concatenate(origins)


def train_folds(train_files: list[str], eval_files: list[str], data_accessor: tfx.components.DataAccessor,
                tft_output: tft.TFTransformOutput, history: int, horizon: int, stride: int,
                model_config: trainer_options.ModelConfig, training: Training) -> list[tuple[keras.Model, np.ndarray]]:
    """The cross-validation folds :func:`calibrate` scores beside eval: ``(model, held-out windows of train)`` each.

    ``model_config.calibration_folds`` folds (:func:`components.windowing.held_out_folds`), each
    holding out a stretch of the train split as long as the eval split's (its latest origin less
    train's), counted back from train's end. Each fold's model is the Trainer's model trained
    afresh, as the refit is (:func:`refit_config`: the same settings and seed, ``training``'s epochs
    and chosen mix start, no early stopping), on the windows before its stretch; it is used for its
    scores only. A fold without windows to train on, or holding out fewer windows than one step's
    conformal quantile of the widest interval needs
    (:func:`components.quantiles.fewest_conformal_windows`: 19 for a 95% interval), is left out
    untrained: such a fold's model trains on little more than nothing (a short series: the benchmark's
    insurance set, whose folds of 0-6 windows took its pooled test coverage of the 80% interval from
    0.77 to 0.97). So is a fold after the first whose training windows span less than a year
    (:func:`components.windowing.fold_left_out`).
    """
    if model_config.calibration_folds < 1:
        return []
    series, origins = window_keys(train_files, data_accessor, tft_output)
    _, eval_origins = window_keys(eval_files, data_accessor, tft_output)
    width = float(eval_origins.max() - origins.max()) if len(origins) and len(eval_origins) else 0.0
    if width <= 0:
        logging.info("calibration folds: none (no eval windows after the training windows)")
        return []
    config = refit_config(model_config, training.epochs, training.base_mix_fit)
    fewest = max(quantiles.fewest_conformal_windows(model_config.quantiles), 1)
    folds = []
    for j, (train, held_out) in enumerate(windowing.held_out_folds(
            series, origins, width, model_config.calibration_folds, horizon, stride), start=1):
        reason = windowing.fold_left_out(j, train, held_out, origins, fewest)
        if reason:
            logging.info("calibration fold %d: left out (trains on %d windows, holds out %d): %s",
                         j, train.sum(), held_out.sum(), reason)
        else:
            logging.info("calibration fold %d: trains on %d windows, holds out %d", j, train.sum(), held_out.sum())
            folds.append((fit(train_files, None, data_accessor, tft_output, history, horizon, config,
                              keep=train).model, held_out))
    return folds


def refit_config(model_config: trainer_options.ModelConfig, epochs: int,
                 base_mix_fit_chosen: Optional[str] = None) -> trainer_options.ModelConfig:
    """The settings of the refit on train+eval: the same model and seed, ``epochs`` epochs, no early stopping.

    With ``base_mix_fit`` ``auto``, the refit has no eval data to choose on: it trains the variant its
    base model chose, ``base_mix_fit_chosen`` (its :func:`training_record`'s).

    Raises:
      ValueError: ``auto`` without a recorded choice.
    """
    refit = dataclasses.replace(model_config, epochs=epochs, early_stopping_patience=0)
    if model_config.base_mix_fit != "auto":
        return refit
    if base_mix_fit_chosen not in AUTO_BASE_MIX_FITS:
        raise ValueError(f"--base-mix-fit auto: the base model's training record names no variant it chose "
                         f"(base_mix_fit_chosen: {base_mix_fit_chosen!r}); retrain the base model")
    return dataclasses.replace(refit, base_mix_fit=base_mix_fit_chosen)


def training_record(splits: list[str], training: Training, adjustments: Optional[np.ndarray], spread_period: int,
                    refit_of: Optional[str] = None,
                    spread_statistic: str = quantiles.SPREAD_STATISTIC) -> dict[str, Any]:
    """What :data:`trainer_options.TRAINING_RECORD_FILE` holds (JSON-safe).

    Args:
      splits: The splits the model was trained on.
      training: The trained model's epochs, eval loss and how its base mix started.
      adjustments: The calibration ``[H, Q]`` baked into its graph, or None.
      spread_period: The period of its conformal spread.
      refit_of: The SavedModel whose settings, epochs and calibration a refit took, or None.
      spread_statistic: The statistic of its conformal spread.
    """
    return {"splits": list(splits), "windows": training.windows, "epochs": training.epochs,
            "epochs_run": training.epochs_run, "eval_loss": training.eval_loss,
            "base_mix_fit_chosen": training.base_mix_fit, "base_mix_fit_eval_losses": training.eval_losses,
            "refit_of": refit_of, "spread_period": spread_period, "spread_statistic": spread_statistic,
            "adjustments": None if adjustments is None else np.asarray(adjustments).tolist()}


def base_calibration(record: dict[str, Any]) -> tuple[np.ndarray, int, str]:
    """The calibration a refit takes from its base model's :func:`training_record`.

    Returns:
      The adjustments ``[H, Q]``, the spread's period and its statistic: the one the adjustments
      were computed with, :data:`components.quantiles.LEGACY_SPREAD_STATISTIC` for a record
      written before the statistic was recorded.
    """
    return (np.asarray(record["adjustments"]), int(record["spread_period"]),
            record.get("spread_statistic", quantiles.LEGACY_SPREAD_STATISTIC))


def write_training_record(export_dir: str, record: dict[str, Any]) -> str:
    """Writes ``record`` (:func:`training_record`) into the SavedModel ``export_dir``; returns the file's path."""
    path = os.path.join(export_dir, trainer_options.TRAINING_RECORD_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(record, f, indent=1)
    return path


def read_training_record(export_dir: str) -> dict[str, Any]:
    """The :func:`training_record` of the SavedModel ``export_dir``.

    Raises:
      FileNotFoundError: The model has none (exported before the record existed).
    """
    record = trainer_options.read_training_record(export_dir)
    if record is None:
        raise FileNotFoundError(f"{export_dir} has no {trainer_options.TRAINING_RECORD_FILE}: it cannot be refitted")
    return record


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the model on the transformed windows and exports it (called by TFX's Trainer).

    Two Trainers call it (see :mod:`pipeline.pipeline`). The first (the gate's model) trains on the
    train split with early stopping on eval and calibrates its intervals on eval. The refit
    (``custom_config["refit"]``, with the first one's model as ``base_model``) trains the same model
    afresh, seed included, on train and eval for the first one's epochs, and bakes in the first
    one's calibration: it forecasts test as far past its training data as the first model forecast
    eval, so the first model's eval errors are the right conformal scores for it.
    """
    model_config = _model_config(fn_args)
    history, horizon = _history_horizon(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    # The context C is the raw history's width (max of L and the seasonal periods). The quantile
    # head's own quantiles already follow each window; its conformal scores stay in scaled units.
    spread_period = 0 if model_config.quantile_head else quantiles.spread_period(
        int(tft_output.raw_feature_spec()[features.HISTORY].shape[0]),
        fn_args.custom_config["windows"].get("seasonal_periods", ()))
    adjustments, spread_statistic = None, quantiles.SPREAD_STATISTIC
    if fn_args.custom_config.get(trainer_options.REFIT_KEY):
        if not fn_args.base_model:
            raise ValueError("the refit Trainer needs the trained model as its base_model")
        base = read_training_record(fn_args.base_model)
        training = fit(fn_args.train_files, None, fn_args.data_accessor, tft_output, history, horizon,
                       refit_config(model_config, base["epochs"], base.get("base_mix_fit_chosen")),
                       log_dir=fn_args.model_run_dir)
        if model_config.quantiles:
            adjustments, spread_period, spread_statistic = base_calibration(base)
    else:
        training = fit(fn_args.train_files, fn_args.eval_files, fn_args.data_accessor, tft_output,
                       history, horizon, model_config, log_dir=fn_args.model_run_dir)
        if model_config.quantiles:
            folds = train_folds(fn_args.train_files, fn_args.eval_files, fn_args.data_accessor, tft_output,
                                history, horizon, int(fn_args.custom_config["windows"].get("stride", 1)),
                                model_config, training)
            adjustments, calibration = calibrate(
                training.model, fn_args.eval_files, fn_args.data_accessor, tft_output, model_config, spread_period,
                spread_statistic, [(model, fn_args.train_files, held_out) for model, held_out in folds])
            with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, CALIBRATION_FILE), "w") as f:
                f.write(json.dumps(calibration, indent=1))
    warmup = warmup_inputs_from(fn_args.eval_files, fn_args.data_accessor, tft_output,
                                model_config.takes_series_id)
    export_serving_model(training.model, tft_output, fn_args.serving_model_dir, model_config, warmup_inputs=warmup,
                         adjustments=adjustments, spread_period=spread_period, spread_statistic=spread_statistic)
    known = training_series_ids(fn_args.train_files, fn_args.data_accessor, tft_output) \
        if model_config.scaling == "per_series" else None
    write_model_description(fn_args.serving_model_dir, model_description(
        fn_args.custom_config, model_config, known, quantile_levels=list(model_config.quantiles) or None))
    splits = [_split_of(p) for p in fn_args.train_files]
    write_training_record(fn_args.serving_model_dir, training_record(
        splits, training, adjustments, spread_period,
        refit_of=fn_args.base_model if fn_args.custom_config.get(trainer_options.REFIT_KEY) else None,
        spread_statistic=spread_statistic))


def _split_of(file_pattern: str) -> str:
    # TFX's split directories are named Split-<name>.
    folder = os.path.basename(os.path.dirname(file_pattern))
    return folder[len("Split-"):] if folder.startswith("Split-") else folder


class DefaultsFirstOracle(keras_tuner.oracles.RandomSearchOracle):
    """Random search whose first trial is the space's default values (the configured model), so the
    search's best never has a higher eval loss than the model the pipeline trains without --tune."""

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if not self.trials:
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": self.hyperparameters.values}
        return super().populate_space(trial_id)


class TrainerSearch(keras_tuner.Tuner):
    """KerasTuner search whose trials train as the Trainer does: :func:`fit` with the trial's settings
    (same seed, early stopping, ``base_mix_fit`` included, so ``auto`` trains both starts), scored by
    :func:`fit`'s eval loss. The Trainer then retrains the best trial's settings to the same model."""

    def __init__(self, train_files: list[str], eval_files: list[str], data_accessor: tfx.components.DataAccessor,
                 tft_output: tft.TFTransformOutput, history: int, horizon: int,
                 model_config: trainer_options.ModelConfig, **kwargs: Any):
        super().__init__(oracle=DefaultsFirstOracle(
            objective=keras_tuner.Objective("val_loss", "min"), max_trials=model_config.tuner_trials,
            seed=model_config.seed, hyperparameters=search_space(model_config), tune_new_entries=False,
            allow_new_entries=False), **kwargs)
        self._fit_args = (train_files, eval_files, data_accessor, tft_output, history, horizon)
        self._model_config = model_config
        # The mix's fitted start depends on the training windows and the loss, which no trial changes:
        # fitted for the first trial that needs it, then handed to every other.
        self._mix_weights: Optional[np.ndarray] = None

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> float:
        config = tuned_config(self._model_config, trial.hyperparameters.values)
        logging.info("tuner trial %s: %s", trial.trial_id, trial.hyperparameters.values)
        if self._mix_weights is None and config.base_mix_fit != "none":
            train_files, _, data_accessor, tft_output, _, _ = self._fit_args
            self._mix_weights = _start_weights(train_files, data_accessor, tft_output, config)
        return fit(*self._fit_args, config, mix_weights=self._mix_weights).eval_loss


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """KerasTuner random search over layers, units, dropout and learning rate (called by TFX's Tuner):
    the configured model first, then random trials, each trained as the Trainer trains (:class:`TrainerSearch`)."""
    model_config = trainer_options.model_config_from_dict((fn_args.custom_config or {}).get("model"))
    history, horizon = _history_horizon(fn_args.custom_config)
    tuner = TrainerSearch(fn_args.train_files, fn_args.eval_files, fn_args.data_accessor,
                          tft.TFTransformOutput(fn_args.transform_graph_path), history, horizon, model_config,
                          directory=fn_args.working_dir, project_name="lstm_forecast_tuning", overwrite=True)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={})
