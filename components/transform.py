"""Transform module: scales windows with statistics of the training split (tf.Transform).

Transform analyzes only ``Split-train``, so eval and test values never shape the scaling. The
affine map of the target is emitted with every example (:data:`features.LOC`,
:data:`features.SCALE`) so the exported model returns forecasts in original units whatever the
scaling: ``original = scaled * scale + loc``.

Scalings of the target history and the target (``custom_config["scaling"]``), one map for both:

* ``global``: ``(x - mean) / std`` with the mean and std of all training histories.
* ``per_series``: the same with the mean and std of each series' training histories (keyed by
  :data:`features.SERIES_ID`), for multi-series data whose levels differ. A series the training
  split never saw falls back to the global statistics.
* ``last_value`` (default): each window relative to its own last history value, divided by the
  training split's std of those differences. A trending series (the bundled CO2) leaves the
  training range in eval and test; relative to the last value it does not.
* ``window_mean``: each window relative to its own mean, divided by the training split's std of
  those differences.

Measured on the bundled CO2 (L=52, H=4, default 2 x 64 LSTM, 20 epochs with early stopping,
MAE in ppm, eval / test split): ``last_value`` 0.345 / 0.353, ``window_mean`` 0.381 / 0.427,
``global`` 1.12 / 6.11, ``per_series`` 1.12 / 6.11 (one series: the same statistics as
``global``); repeating the last value scores 0.764 / 0.756. Hence the default.

Covariates (``covariate_<column>`` ``[L]``, present only when the raw schema has them) are scaled
on their own, each by its training mean and std. Calendar features (:data:`features.CALENDAR_FEATURES`
present in the schema) are already in [-1, 1] and pass through unchanged.
"""

from typing import Any, Optional

import tensorflow as tf
import tensorflow_transform as tft

# Per-key mean and variance are public in TFT only fused into scale_to_z_score_per_key, which
# hides the statistics; the affine map must be carried out of the graph to invert the forecast,
# so the two private helpers that function is built on are used directly.
from tensorflow_transform import analyzers as tft_analyzers
from tensorflow_transform import tf_utils as tft_tf_utils

from components import features

SCALINGS = ("global", "per_series", "last_value", "window_mean")
DEFAULT_SCALING = "last_value"
SCALED_SUFFIX = "_scaled"


def scaled_feature(name: str) -> str:
    """Name of the Transform output that holds raw feature ``name`` scaled (covariates)."""
    return name + SCALED_SUFFIX


def covariate_features(feature_names: Any) -> list[str]:
    """The covariate features among ``feature_names``, sorted (the model's channel order)."""
    return sorted(n for n in feature_names if n.startswith(features.COVARIATE_PREFIX) and not n.endswith(SCALED_SUFFIX))


def calendar_features(feature_names: Any) -> list[str]:
    """The calendar features among ``feature_names``, in :data:`features.CALENDAR_FEATURES` order."""
    names = set(feature_names)
    return [n for n in features.CALENDAR_FEATURES if n in names]


def _positive(std: tf.Tensor) -> tf.Tensor:
    # A constant training series would give std 0; 1 keeps the map invertible.
    return tf.where(std > 0, std, tf.ones_like(std))


def _safe_std(values: tf.Tensor) -> tf.Tensor:
    return _positive(tf.sqrt(tft.var(values)))


def _per_series_loc_scale(history: tf.Tensor, series_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and std of each series' training histories, mapped onto each example ``[batch, 1]``."""
    key = tf.reshape(series_id, [-1])
    vocab, means, variances = tft_analyzers._mean_and_var_per_key(history, key)  # pylint: disable=protected-access
    known = tf.ones_like(means)
    mean, var, is_known = tft_tf_utils.map_per_key_reductions((means, variances, known), key, vocab, history, True)
    # Unseen series map to 0 for all three; they get the global statistics instead.
    mean = tf.where(is_known > 0, mean, tft.mean(history) * tf.ones_like(mean))
    std = tf.where(is_known > 0, _positive(tf.sqrt(tf.maximum(var, 0.0))), _safe_std(history) * tf.ones_like(var))
    return tf.reshape(mean, [-1, 1]), tf.reshape(std, [-1, 1])


def preprocessing_fn(inputs: dict[str, tf.Tensor],
                     custom_config: Optional[dict[str, Any]] = None) -> dict[str, tf.Tensor]:
    """Scales history and target with one per-example affine map; scales covariates on their own.

    Args:
      inputs: Raw features; :data:`features.HISTORY` float ``[batch, L]``, and, when present,
        :data:`features.TARGET` float ``[batch, H]`` (absent at serving time),
        :data:`features.SERIES_ID` (needed by ``per_series``), ``covariate_<column>`` float
        ``[batch, L]`` and calendar features float ``[batch, 1]``.
      custom_config: ``{"scaling": one of SCALINGS}``.

    Returns:
      The scaled history and target, the per-example ``loc`` and ``scale`` ``[batch, 1]``, each
      covariate scaled (:func:`scaled_feature`), and the calendar features and the series id
      unchanged.
    """
    scaling = (custom_config or {}).get("scaling", DEFAULT_SCALING)
    history = inputs[features.HISTORY]
    ones = tf.ones_like(history[:, :1])
    if scaling == "global":
        loc = ones * tft.mean(history)
        scale = ones * _safe_std(history - loc)
    elif scaling == "per_series":
        if features.SERIES_ID not in inputs:
            raise ValueError(f"scaling 'per_series' needs the feature '{features.SERIES_ID}'")
        loc, scale = _per_series_loc_scale(history, inputs[features.SERIES_ID])
    elif scaling in ("last_value", "window_mean"):
        loc = history[:, -1:] if scaling == "last_value" else tf.reduce_mean(history, axis=1, keepdims=True)
        scale = ones * _safe_std(history - loc)
    else:
        raise ValueError(f"scaling must be one of {SCALINGS}, got '{scaling}'")
    outputs = {
        features.HISTORY_SCALED: (history - loc) / scale,
        features.LOC: loc,
        features.SCALE: scale,
    }
    if features.TARGET in inputs:
        outputs[features.TARGET_SCALED] = (inputs[features.TARGET] - loc) / scale
    for name in covariate_features(inputs):
        # Covariates have their own units; a global z-score over the training split suits them.
        values = tf.cast(inputs[name], tf.float32)
        outputs[scaled_feature(name)] = (values - tft.mean(values)) / _safe_std(values)
    for name in calendar_features(inputs):
        outputs[name] = tf.cast(inputs[name], tf.float32)
    if features.SERIES_ID in inputs:
        # Carried so the Trainer can write per-series warmup requests with real ids.
        outputs[features.SERIES_ID] = inputs[features.SERIES_ID]
    return outputs
