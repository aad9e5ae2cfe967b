"""Feature names of the windowed examples: the format between example generation and training.

Each ``tf.Example`` written by :mod:`components.example_gen` is one window of one series:

* :data:`HISTORY` float ``[L]``: the L observed values up to and including the forecast origin.
* :data:`TARGET` float ``[H]``: the H values that follow, the label.
* :data:`SERIES_ID` bytes: which series the window comes from.
* :data:`ORIGIN_TIMESTAMP` int64: epoch seconds of the last history point (the forecast origin).
* :data:`TARGET_TIMESTAMPS` int64 ``[H]``: epoch seconds of each target step.
* ``covariate_<column>`` float ``[L]`` (:func:`covariate_feature`): the history of each numeric
  covariate column the user named, aligned with :data:`HISTORY`.
* The calendar features of the forecast origin in :data:`CALENDAR_FEATURES`, float ``[1]`` each,
  only those whose cycle is longer than the series' time step (weekly data gets day of year only):
  ``hour_of_day_{sin,cos}``, ``day_of_week_{sin,cos}``, ``day_of_year_{sin,cos}``.

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
TARGET_TIMESTAMPS: Final = "target_timestamps"
COVARIATE_PREFIX: Final = "covariate_"

# Calendar cycles: name and period in seconds (the day of year uses 365.2425 days).
CALENDAR_CYCLES: Final = (("hour_of_day", 86_400), ("day_of_week", 7 * 86_400),
                          ("day_of_year", 31_556_952))
CALENDAR_FEATURES: Final = tuple(f"{name}_{part}" for name, _ in CALENDAR_CYCLES for part in ("sin", "cos"))

HISTORY_SCALED: Final = "history_scaled"
TARGET_SCALED: Final = "target_scaled"
LOC: Final = "loc"
SCALE: Final = "scale"


def covariate_feature(column: str) -> str:
    """Name of the example feature that holds the history of covariate ``column``."""
    return COVARIATE_PREFIX + column
