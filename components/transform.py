"""Transform module: scales windows with statistics of the training split (tf.Transform).

Transform analyzes only ``Split-train``, so eval and test values never shape the scaling. The
affine map is emitted with every example (:data:`features.LOC`, :data:`features.SCALE`) so the
exported model returns forecasts in original units whatever the scaling.

Scalings (``custom_config["scaling"]``):

* ``global``: ``(x - mean) / std`` with the mean and std of all training histories.
* ``last_value`` (default): each window relative to its own last history value, divided by the
  training split's std of those differences. A trending series (the bundled CO2) leaves the
  training range in eval and test; relative to the last value it does not.
"""

from typing import Any, Optional

import tensorflow as tf
import tensorflow_transform as tft

from components import features

SCALINGS = ("global", "last_value")
DEFAULT_SCALING = "last_value"


def _safe_std(values: tf.Tensor) -> tf.Tensor:
    # A constant training series would give std 0; 1 keeps the map invertible.
    std = tf.sqrt(tft.var(values))
    return tf.where(std > 0, std, tf.ones_like(std))


def preprocessing_fn(inputs: dict[str, tf.Tensor],
                     custom_config: Optional[dict[str, Any]] = None) -> dict[str, tf.Tensor]:
    """Scales history and target with the same per-example affine map.

    Args:
      inputs: Raw features; :data:`features.HISTORY` float ``[batch, L]`` and, except at serving
        time, :data:`features.TARGET` float ``[batch, H]``.
      custom_config: ``{"scaling": one of SCALINGS}``.

    Returns:
      The scaled history and target, and the per-example ``loc`` and ``scale`` ``[batch, 1]``.
    """
    scaling = (custom_config or {}).get("scaling", DEFAULT_SCALING)
    history = inputs[features.HISTORY]
    ones = tf.ones_like(history[:, :1])
    if scaling == "global":
        loc = ones * tft.mean(history)
    elif scaling == "last_value":
        loc = history[:, -1:]
    else:
        raise ValueError(f"scaling must be one of {SCALINGS}, got '{scaling}'")
    scale = ones * _safe_std(history - loc)
    outputs = {
        features.HISTORY_SCALED: (history - loc) / scale,
        features.LOC: loc,
        features.SCALE: scale,
    }
    if features.TARGET in inputs:
        outputs[features.TARGET_SCALED] = (inputs[features.TARGET] - loc) / scale
    return outputs
