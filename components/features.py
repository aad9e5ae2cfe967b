"""Feature names of the windowed examples: the format between example generation and training.

Each ``tf.Example`` written by :mod:`components.example_gen` is one window of one series:

* :data:`HISTORY` float ``[L]``: the L observed values up to and including the forecast origin.
* :data:`TARGET` float ``[H]``: the H values that follow, the label.
* :data:`SERIES_ID` bytes: which series the window comes from.
* :data:`ORIGIN_TIMESTAMP` int64: epoch seconds of the last history point (the forecast origin).

Transform outputs (the model's inputs and label, in scaled units):

* :data:`HISTORY_SCALED` ``[L]`` and :data:`TARGET_SCALED` ``[H]``.
* :data:`LOC` and :data:`SCALE` ``[1]``: the affine map back to original units,
  ``original = scaled * SCALE + LOC``, carried per example so that per-series or per-window scaling
  changes only the transform.
"""

from typing import Final

from serving import contract

HISTORY: Final = contract.INPUT_KEY
TARGET: Final = "target"
SERIES_ID: Final = "series_id"
ORIGIN_TIMESTAMP: Final = "origin_timestamp"

HISTORY_SCALED: Final = "history_scaled"
TARGET_SCALED: Final = "target_scaled"
LOC: Final = "loc"
SCALE: Final = "scale"
