"""The serving contract: the one place that names what a pushed model takes and returns.

The trainer's export, the local server, the gRPC client and the tests all import these names, so
a change here is a change of the contract, visible in one diff.

A forecasting SavedModel has two signatures:

* ``serving_default`` (:data:`SIGNATURE_NAME`): raw windows in, forecasts in original units out.
  Input :data:`INPUT_KEY` float32 ``[batch, C]``: the last C values up to the forecast origin,
  C = max(L, the longest seasonal period) (the model's LSTM reads the last L; the seasonal lags,
  the value of each target step one season earlier, are read further back inside the graph).
  Output :data:`OUTPUT_KEY` float32 ``[batch, H]``.
* With quantiles (``ModelConfig.quantiles``, the default; ``--quantiles ''`` gives a point model)
  both signatures also return :data:`QUANTILES_OUTPUT_KEY` float32 ``[batch, H, Q]``, the
  forecast's quantiles in original units, increasing along the last axis (they never cross), and
  :data:`QUANTILE_LEVELS_OUTPUT_KEY` float32 ``[batch, Q]``, their levels (quantile probabilities,
  increasing: the median 0.5 and pairs ``p``, ``1 - p``, each pair a central interval of nominal
  coverage ``1 - 2p``; the same on every row, which has a batch dimension so that TF Serving's
  batching can split every output). The quantiles are calibrated on the eval split (split-conformal
  per horizon step, :mod:`components.quantiles`). :data:`OUTPUT_KEY` is then the median, the 0.5
  quantile: the point model's default MAE loss already estimated the median (the minimiser of the
  expected absolute error), so the point forecast keeps its meaning, and it stays inside every
  interval. A client that reads only :data:`OUTPUT_KEY` works with either kind of model.
* ``serving_examples`` (:data:`EXAMPLES_SIGNATURE_NAME`): serialized ``tf.Example`` protos in (as
  written by the example generator), the same forecasts out. The Evaluator and batch scoring use
  it. The Evaluator reads the raw label (``target``) from the same examples and compares in
  original units, so no ``transform_features`` signature is exported.

Inputs beyond the history, present only in models that use them:

* One float32 ``[batch, C]`` input per covariate, named like its example feature
  (``covariate_<column>``, see :func:`covariate_input_key`), in raw units, aligned with the history
  (known-future covariates too: their past comes here, their future in ``future_<column>``).
* One float32 ``[batch, H]`` input per known-future covariate (``future_<column>``, see
  :func:`future_input_key`): its values at the H forecast steps. A request without it gets
  INVALID_ARGUMENT naming the input.
* :data:`ORIGIN_TIMESTAMP_INPUT_KEY` int64 ``[batch]`` in models with calendar features (the
  default): epoch seconds (UTC) of the last history point. The calendar of every history and
  target step is computed from it inside the graph (Transform), so a client sends a timestamp,
  not features.
* :data:`SERIES_ID_INPUT_KEY` string ``[batch]`` in models scaled ``per_series``: the statistics of
  the scaling are looked up by series id (an id the training split never saw gets the global ones).

Portability and XLA: the default export runs in any TF Serving without flags (TF Serving's
``--xla_cpu_compilation_enabled`` is false by default). Each LSTM is one ``BlockLSTMV2`` op, a
core TensorFlow op with CPU and GPU kernels, over the whole window, in place of Keras' while loop
over the steps; it gives the Keras model's forecasts (tested). Measured in-process (TF1 session,
as TF Serving runs it), 2 busy cores, one window p50 / windows/s at batch 1024: fused 0.53 ms /
11,170; the Keras cell unrolled 0.90 ms / 11,125; Keras' loop 1.31 ms / 10,693; XLA 0.36 ms /
19,754 (``benchmarks/predict.py``; README, *Benchmarks*).

With ``ModelConfig.serving_xla`` (opt-in, ``--serving-xla``) the model inside both signatures is
compiled with XLA (``jit_compile``). The server must then run with TF Serving's
``--xla_cpu_compilation_enabled=true`` (``lstm-forecast serve``: ``--xla-cpu-compilation-enabled``);
without it the version fails to load, with an error naming the flag. XLA compiles once per input
shape (about 0.25 s), so the XLA signatures pad each batch up to a power of two (at most 1024;
larger batches to a multiple of 1024). Every export's warmup file (:data:`WARMUP_FILE`) holds one
request per power of two up to 256 (TF Serving replays warmup through its batching layer, which
refuses a request above ``max_batch_size``, 256 on the CPU image): a warmed-up server has run (and
with XLA compiled) every batch size of up to 256 windows.
"""

from collections.abc import Iterable
from typing import Final

import numpy as np

SIGNATURE_NAME: Final = "serving_default"
EXAMPLES_SIGNATURE_NAME: Final = "serving_examples"
# TF Serving's method name for Predict signatures.
PREDICT_METHOD_NAME: Final = "tensorflow/serving/predict"
SERVING_TAG: Final = "serve"

INPUT_KEY: Final = "history"
EXAMPLES_INPUT_KEY: Final = "examples"
OUTPUT_KEY: Final = "forecast"
# Quantile models: the quantiles [batch, H, Q] and their levels [batch, Q].
QUANTILES_OUTPUT_KEY: Final = "forecast_quantiles"
QUANTILE_LEVELS_OUTPUT_KEY: Final = "quantile_levels"
INPUT_DTYPE: Final = np.float32

# Models with calendar features: epoch seconds of each window's last history point.
ORIGIN_TIMESTAMP_INPUT_KEY: Final = "origin_timestamp"
# Per-series scaling: the series id of each window.
SERIES_ID_INPUT_KEY: Final = "series_id"
# Prefix of the covariate inputs; the example features are named the same (components.features).
COVARIATE_INPUT_PREFIX: Final = "covariate_"
# Prefix of the known-future covariate inputs ([batch, H]); the example features are named the same.
FUTURE_INPUT_PREFIX: Final = "future_"

# TF Serving replays these PredictionLog records when it loads a version, before serving it.
WARMUP_FILE: Final = "assets.extra/tf_serving_warmup_requests"
# What the model was trained on (columns, frequency, history, horizon, scaling, covariates), as
# JSON, so that batch forecasting needs only the model and the data (pipeline/forecast.py).
MODEL_DESCRIPTION_FILE: Final = "assets.extra/model_description.json"


def covariate_input_key(column: str) -> str:
    """Input key of the history (``[batch, C]``) of covariate ``column`` in ``serving_default``."""
    return COVARIATE_INPUT_PREFIX + column


def future_input_key(column: str) -> str:
    """Input key of the future values of covariate ``column`` in ``serving_default``."""
    return FUTURE_INPUT_PREFIX + column


def input_dtype(key: str) -> type:
    """The numpy dtype of ``serving_default`` input ``key``."""
    return {ORIGIN_TIMESTAMP_INPUT_KEY: np.int64, SERIES_ID_INPUT_KEY: np.object_}.get(key, INPUT_DTYPE)


def central_intervals(levels: Iterable[float]) -> tuple[float, ...]:
    """The nominal coverage of each central interval of quantile ``levels``, narrowest first.

    A level ``p`` below the median bounds the interval ``1 - 2p`` with ``1 - p``: the levels
    0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975 give ``(0.5, 0.8, 0.95)``. Rounded to 6 digits, so
    float32 levels (0.1 reads 0.100000001) give the same numbers.
    """
    return tuple(round(1 - 2 * float(p), 6) for p in sorted((p for p in levels if p < 0.5), reverse=True))
