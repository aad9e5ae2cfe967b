"""Feature names of the windowed examples: the format between example generation and training.

Each ``tf.Example`` written by :mod:`components.example_gen` is one window of one series:

* :data:`HISTORY` float ``[C]``: the C observed values up to and including the forecast origin,
  C = max(L, longest seasonal period): the model's recurrence reads the last L, the seasonal lags
  and the seasonal naive forecasts read one season back.
* :data:`TARGET` float ``[H]``: the H values that follow, the label.
* :data:`SERIES_ID` bytes: which series the window comes from.
* :data:`ORIGIN_TIMESTAMP` int64: epoch seconds of the last history point (the forecast origin).
* :data:`TARGET_TIMESTAMPS` int64 ``[H]``: epoch seconds of each target step.
* ``covariate_<column>`` float ``[C]`` (:func:`covariate_feature`): the history of each numeric
  covariate column the user named (past-only and known-future alike), aligned with :data:`HISTORY`.
* ``future_<column>`` float ``[H]`` (:func:`future_feature`): each known-future covariate at the
  target steps.
* :data:`MASE_SCALE` float ``[1]``: the series' in-sample seasonal naive MAE on its training part.

Calendar features are not stored: Transform computes them from :data:`ORIGIN_TIMESTAMP` inside
the served graph (:data:`CALENDAR_HISTORY`, :data:`CALENDAR_FUTURE`), so a client sends a timestamp.

Transform outputs (the model's inputs and label, in scaled units):

* :data:`HISTORY_SCALED` ``[L]`` and :data:`TARGET_SCALED` ``[H]``.
* :data:`CALENDAR_HISTORY` ``[L * K]`` and :data:`CALENDAR_FUTURE` ``[H * K]``: sin and cos of the
  K/2 calendar cycles longer than the step (:data:`CALENDAR_CYCLES`) at every history and target
  step, step-major.
* ``lag_<m>_scaled`` ``[H]`` (:func:`lag_feature`): for each seasonal period m, each target step's
  value one season earlier (:func:`components.windowing.seasonal_lag_offsets`), computed from the
  history in the graph.
* ``base_<kind>_scaled`` ``[H]`` (:func:`base_feature`, kinds :data:`SEASONAL_BASES`): smoothed
  seasonal forecasts of the primary period from the cycles the context holds
  (:func:`components.transform.seasonal_bases`), beside the seasonal naive forecast (the lag); with
  the smoothing bases, also each of :data:`SMOOTHING_BASES` (exponential smoothing and Theta on the
  seasonally adjusted context, :func:`components.transform.smoothing_bases`); with the calendar
  index, each of :data:`INDEX_BASES` (the same smoothing on the context less a seasonal index by
  calendar phase fitted on the training split, :func:`components.transform.index_bases`).
* ``future_<column>_scaled`` ``[H]`` and, per seasonal period m, ``future_<column>_lag_<m>_scaled``
  ``[H]``: the covariate where the seasonal lag of each target step was read (was last week's
  value a holiday?); ``covariate_<column>_scaled`` ``[L]``.
* :data:`LOC` and :data:`SCALE` ``[1]``: the affine map back to original units,
  ``original = scaled * SCALE + LOC``, carried per example so that per-series or per-window scaling
  changes only the transform.
"""

from typing import Final

from serving import contract

HISTORY: Final = contract.INPUT_KEY
TARGET: Final = "target"
# The features a client also sends are named as the serving inputs that carry them.
SERIES_ID: Final = contract.SERIES_ID_INPUT_KEY
# With a series embedding: the series id's index in the training split's vocabulary, int64 [batch, 1]
# (the last index for an id the training split never saw).
SERIES_INDEX: Final = "series_index"
SERIES_VOCABULARY: Final = "series_ids"
ORIGIN_TIMESTAMP: Final = contract.ORIGIN_TIMESTAMP_INPUT_KEY
TARGET_TIMESTAMPS: Final = "target_timestamps"
COVARIATE_PREFIX: Final = contract.COVARIATE_INPUT_PREFIX
FUTURE_PREFIX: Final = contract.FUTURE_INPUT_PREFIX
LAG_PREFIX: Final = "lag_"
# Smoothed seasonal forecasts of the primary period, from the context (components.transform.seasonal_bases).
BASE_PREFIX: Final = "base_"
SEASONAL_BASES: Final = ("profile", "profile_trend", "recent_trend")
# Exponential smoothing and Theta forecasts of the seasonally adjusted context, re-seasonalised
# (components.transform.smoothing_bases): kind -> (method, fixed parameters). SES and Theta with
# smoothing alpha; Holt's damped trend with (alpha, beta, phi).
SMOOTHING_METHODS: Final = {
    "ses_a10": ("ses", (0.1,)), "ses_a30": ("ses", (0.3,)), "ses_a60": ("ses", (0.6,)),
    "theta_a10": ("theta", (0.1,)), "theta_a30": ("theta", (0.3,)), "theta_a60": ("theta", (0.6,)),
    "damped_trend": ("damped_trend", (0.3, 0.1, 0.9)),
}
SMOOTHING_BASES: Final = tuple(SMOOTHING_METHODS)
# Simple exponential smoothing of the context less a seasonal index by calendar phase that Transform
# fits on the training split (components.transform.index_bases), re-seasonalised: kind -> alpha.
INDEX_METHODS: Final = {"index_ses_a10": 0.1, "index_ses_a30": 0.3, "index_ses_a60": 0.6}
INDEX_BASES: Final = tuple(INDEX_METHODS)
MASE_SCALE: Final = "mase_scale"

# Calendar cycles: name and period in seconds (the day of year uses 365.2425 days).
CALENDAR_CYCLES: Final = (("hour_of_day", 86_400), ("day_of_week", 7 * 86_400),
                          ("day_of_year", 31_556_952))
CALENDAR_HISTORY: Final = "calendar_history"
CALENDAR_FUTURE: Final = "calendar_future"

HISTORY_SCALED: Final = "history_scaled"  # the last L points of the history, scaled
TARGET_SCALED: Final = "target_scaled"
LOC: Final = "loc"
SCALE: Final = "scale"


# The example features that hold covariate ``column``'s history and future values.
covariate_feature = contract.covariate_input_key
future_feature = contract.future_input_key


def lag_feature(period: int) -> str:
    """Name of the Transform output that holds the (scaled) seasonal lags of ``period``."""
    return f"{LAG_PREFIX}{period}"


def base_feature(kind: str) -> str:
    """Name of the seasonal base ``kind`` (of :data:`SEASONAL_BASES`); its Transform output adds ``_scaled``."""
    return f"{BASE_PREFIX}{kind}"
