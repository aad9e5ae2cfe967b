"""Transform module: scales windows with statistics of the training split, and computes the inputs
that are known at the forecast origin: seasonal lags and the calendar (tf.Transform).

Everything here is part of the served graph, so a client sends raw values and a timestamp, and
training and serving compute the same features from them. Transform analyzes only ``Split-train``,
so eval and test values never shape the scaling. The affine map of the target is emitted with every
example (:data:`features.LOC`, :data:`features.SCALE`) so the exported model returns forecasts in
original units whatever the scaling: ``original = scaled * scale + loc``.

The raw ``history`` is the window's context, C = max(L, longest seasonal period) points up to the
origin. The model's history is its last L points; the seasonal lag of period m of each target step
(its value one season earlier, :func:`components.windowing.seasonal_lag_offsets`) is read from the
context, so the model sees last week without a 168-step recurrence.

Scalings of the target's history, lags and target (``custom_config["scaling"]``), one map for all:

* ``window_std`` (default): each window relative to its history's mean, divided by the std of its
  last max(L, longest season) points (a season or more, so one spike does not change the scale
  much; not the further cycles the context holds for the seasonal bases). Scale-free
  across series of any size, and an additive effect (a promotion, a holiday) keeps about one size
  in scaled units.
* ``window_mean``: relative to the history's mean, divided by the training split's std of those
  differences (one scale for all windows).
* ``last_value``: relative to the last history value, divided by the training split's std of
  those differences.
* ``global``: ``(x - mean) / std`` with the mean and std of all training histories.
* ``per_series``: the same with the mean and std of each series' training histories (keyed by
  :data:`features.SERIES_ID`); a series the training split never saw gets the global statistics.

With the lags, the context's cycles of the primary season also give smoothed seasonal forecasts
(:func:`seasonal_bases`) and, with ``smoothing_bases``, exponential smoothing and Theta forecasts
of the seasonally adjusted context (:func:`smoothing_bases`, one precomputed matrix product) and,
with ``calendar_index``, the same smoothing on the context less a seasonal index by calendar phase
fitted on the training split (:func:`seasonal_index`, :func:`index_bases`), each scaled like the
target: candidates of the model's seasonal base.

Covariates (``covariate_<column>`` ``[C]``; for known-future ones also ``future_<column>`` ``[H]``)
are scaled on their own, each by its training mean and std; a known-future covariate also gives,
per seasonal period, its value where each lag was read (was last week's value a holiday?).
Calendar features (sin and cos of hour of day, day of week and day of year, those cycles longer
than the step) of every history and target step come from :data:`features.ORIGIN_TIMESTAMP`; on a
business-hours grid the steps' times skip nights and closed days as the grid does.
"""

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

# Per-key mean and variance are public in TFT only fused into scale_to_z_score_per_key, which
# hides the statistics; the affine map must be carried out of the graph to invert the forecast,
# so the two private helpers that function is built on are used directly.
from tensorflow_transform import analyzers as tft_analyzers
from tensorflow_transform import tf_utils as tft_tf_utils

from components import features, trainer_options, windowing

DEFAULT_SCALING = trainer_options.ModelConfig().scaling
DEFAULT_SMOOTHING_BASES = trainer_options.ModelConfig().smoothing_bases
SCALED_SUFFIX = "_scaled"
# Calendar cycles longer than the step carry information; one no longer than it (weekday of
# weekly data) is the same at every point and is left out.
_DAY = 86_400.0


def scaled_feature(name: str) -> str:
    """Name of the Transform output that holds raw feature ``name`` scaled."""
    return name + SCALED_SUFFIX


def covariate_features(feature_names: Any) -> list[str]:
    """The past covariate features among ``feature_names``, sorted (the model's channel order)."""
    return sorted(n for n in feature_names if n.startswith(features.COVARIATE_PREFIX) and not n.endswith(SCALED_SUFFIX))


def future_features(feature_names: Any) -> list[str]:
    """The known-future covariate features among ``feature_names``, sorted."""
    return sorted(n for n in feature_names if n.startswith(features.FUTURE_PREFIX) and not n.endswith(SCALED_SUFFIX))


def calendar_cycles(step_seconds: float) -> list[tuple[str, float]]:
    """The calendar cycles (name, seconds) longer than the step: those a model can use."""
    return [(name, float(period)) for name, period in features.CALENDAR_CYCLES if period > step_seconds]


def calendar_phases(times: tf.Tensor, cycles: list[tuple[str, float]]) -> tf.Tensor:
    """Sin and cos of each cycle's phase at epoch seconds ``times`` ``[batch, T]`` -> ``[batch, T, 2K]``.

    Phases in UTC: hour of day, day of week (Monday 0; the epoch was a Thursday) and the fraction
    of the mean Gregorian year since the epoch (within a day of the calendar's day of year). The
    same graph computes them in training and serving, so the two always agree.
    """
    t = tf.cast(times, tf.float64)
    phases = {
        "hour_of_day": tf.math.floormod(t, _DAY) / _DAY,
        "day_of_week": tf.math.floormod(t / _DAY + 3.0, 7.0) / 7.0,
        "day_of_year": tf.math.floormod(t, 31_556_952.0) / 31_556_952.0,
    }
    parts = []
    for name, _ in cycles:
        angle = 2.0 * np.pi * phases[name]
        parts += [tf.sin(angle), tf.cos(angle)]
    return tf.cast(tf.stack(parts, axis=-1), tf.float32)


def step_times(origin: tf.Tensor, steps: np.ndarray, step_seconds: float) -> tf.Tensor:
    """Epoch seconds ``[batch, T]`` float64 of ``steps`` steps from each origin ``[batch, 1]`` (a regular grid)."""
    return tf.cast(tf.reshape(origin, [-1, 1]), tf.float64) + tf.constant(steps * step_seconds, tf.float64)


def business_step_times(origin: tf.Tensor, offsets: np.ndarray, step_seconds: float,
                        business_hours: Sequence[int]) -> tf.Tensor:
    """Epoch seconds ``offsets`` steps from each origin on a business-hours grid, ``[batch, T]`` float64.

    The graph of :func:`components.example_gen.frequency.business_step_times` (same arithmetic:
    count open days and the points inside each, then map back to the calendar), so the served
    model computes the real time of every step across nights and closed days.

    Args:
      origin: Epoch seconds of each window's origin, a grid point, ``[batch, 1]``.
      offsets: Steps from the origin, ``[T]``.
      step_seconds: The grid's fixed step.
      business_hours: ``(opens, closes, *weekdays)`` (``BusinessHours.to_tuple()``).
    """
    opens, closes, weekdays = float(business_hours[0]), float(business_hours[1]), list(business_hours[2:])
    per_day, open_days = (closes - opens) // step_seconds, float(len(weekdays))
    rank = np.zeros(7)
    rank[weekdays] = np.arange(len(weekdays))
    t = tf.cast(tf.reshape(origin, [-1, 1]), tf.float64)
    day = tf.math.floor(t / _DAY)
    seconds = t - day * _DAY
    first = opens + tf.math.floormod(seconds - opens, step_seconds)
    week = tf.math.floor((day + 3.0) / 7.0)  # weeks from a Monday; the epoch was a Thursday
    weekday = tf.cast(day + 3.0 - 7.0 * week, tf.int32)
    open_day = week * open_days + tf.gather(tf.constant(rank, tf.float64), weekday)
    position = open_day * per_day + tf.round((seconds - first) / step_seconds) + tf.constant(offsets, tf.float64)
    open_day = tf.math.floor(position / per_day)
    slot = position - open_day * per_day
    week = tf.math.floor(open_day / open_days)
    nth = tf.cast(open_day - week * open_days, tf.int32)
    days = week * 7.0 + tf.gather(tf.constant(weekdays, tf.float64), nth) - 3.0
    return days * _DAY + first + slot * step_seconds


def calendar_features(origin: tf.Tensor, history: int, horizon: int, step_seconds: float,
                      business_hours: Sequence[int] = ()) -> dict[str, tf.Tensor]:
    """The calendar of every history and target step, from the origin's timestamp ``[batch, 1]`` int64.

    Step i of the history lies ``(L - 1 - i)`` steps before the origin, target step h ``h`` steps
    after it (a month is a twelfth of the mean year, so monthly steps land within a day of the
    month start they stand for; on business hours the steps skip nights and closed days, see
    :func:`business_step_times`).

    Returns:
      :data:`features.CALENDAR_HISTORY` ``[batch, L * 2K]`` and :data:`features.CALENDAR_FUTURE`
      ``[batch, H * 2K]``, step-major; empty when no cycle is longer than the step.
    """
    cycles = calendar_cycles(step_seconds)
    if not cycles:
        return {}
    past_steps, future_steps = np.arange(-(history - 1), 1), np.arange(1, horizon + 1)
    if business_hours:
        past = business_step_times(origin, past_steps, step_seconds, business_hours)
        future = business_step_times(origin, future_steps, step_seconds, business_hours)
    else:
        past = step_times(origin, past_steps, step_seconds)
        future = step_times(origin, future_steps, step_seconds)
    flat = len(cycles) * 2
    return {
        features.CALENDAR_HISTORY: tf.reshape(calendar_phases(past, cycles), [-1, history * flat]),
        features.CALENDAR_FUTURE: tf.reshape(calendar_phases(future, cycles), [-1, horizon * flat]),
    }


def seasonal_bases(context: tf.Tensor, horizon: int, period: int) -> dict[str, tf.Tensor]:
    """Smoothed seasonal forecasts ``[batch, H]`` of each target step from the K = C // m whole cycles
    that end at the origin of the context ``[batch, C]`` (classical decomposition, in the graph).

    Each cycle minus its own mean is a seasonal profile; the profile of step h is read at the phase
    of its seasonal lag (:func:`components.windowing.seasonal_lag_offsets`), ``d_h = m * ceil(h / m)``
    steps before it. With cycle means ``mu_1`` (the latest cycle) .. ``mu_K``:

    * ``profile``: the mean profile of the K cycles plus ``mu_1``;
    * ``profile_trend``: that plus the trend of the cycle means over the d_h steps,
      ``d_h (mu_1 - mu_K) / ((K - 1) m)`` (a profile keeps the trend within its cycle, so a linear
      trend plus a fixed season is forecast exactly);
    * ``recent_trend``: the same from the last two cycles alone (follows a changing level and shape sooner).

    With one cycle (K = 1) each is the seasonal naive forecast. Measured on the benchmark's data
    sets, none of them is best everywhere (the recent trend on hourly temperatures, the long profile
    on quarterly tourism), so the model learns how to weigh them (:func:`components.trainer.build_model`).

    Args:
      context: The raw context, at least one cycle (C >= m).
      horizon: H.
      period: m.

    Returns:
      ``{kind: [batch, H]}`` for each kind of :data:`features.SEASONAL_BASES`.
    """
    width = int(context.shape[1])
    cycles = max(1, width // period)
    # [batch, K, m], the latest cycle first.
    stacked = tf.stack([context[:, width - k * period:width - (k - 1) * period] for k in range(1, cycles + 1)], axis=1)
    means = tf.reduce_mean(stacked, axis=2, keepdims=True)
    profiles = stacked - means
    steps = np.arange(1, horizon + 1)
    phase = period - 1 + windowing.seasonal_lag_offsets(horizon, period)
    distance = tf.constant(steps - windowing.seasonal_lag_offsets(horizon, period), dtype=context.dtype)
    latest = means[:, 0]

    def trend(oldest: int) -> tf.Tensor:
        if oldest == 0:
            return tf.zeros_like(latest)
        return (latest - means[:, oldest]) / float(oldest * period)

    def profile(count: int) -> tf.Tensor:
        return tf.gather(tf.reduce_mean(profiles[:, :count], axis=1), phase, axis=1)

    recent = min(2, cycles)
    return {
        "profile": profile(cycles) + latest,
        "profile_trend": profile(cycles) + latest + trend(cycles - 1) * distance,
        "recent_trend": profile(recent) + latest + trend(recent - 1) * distance,
    }


def seasonal_indices(context: np.ndarray, horizon: int, period: int) -> tuple[np.ndarray, np.ndarray]:
    """The seasonal index of every context point and target step, from the K = C // m whole cycles that end
    at the origin (the mean profile of :func:`seasonal_bases`), in numpy.

    Args:
      context: ``[..., C]``, C >= m.
      horizon: H.
      period: m.

    Returns:
      ``([..., C], [..., H])``: each point's and each target step's index (the profile at its phase;
      a target step's phase is its seasonal lag's, :func:`components.windowing.seasonal_lag_offsets`).
    """
    width = context.shape[-1]
    cycles = max(1, width // period)
    recent = context[..., width - cycles * period:].reshape(*context.shape[:-1], cycles, period)
    profile = (recent - recent.mean(axis=-1, keepdims=True)).mean(axis=-2)
    # Point i lies (i - C) mod m steps into a cycle that ends at the origin.
    points = profile[..., (np.arange(width) - width) % period]
    steps = profile[..., period - 1 + windowing.seasonal_lag_offsets(horizon, period)]
    return points, steps


def ses_level(values: np.ndarray, alpha: float) -> np.ndarray:
    """Simple exponential smoothing's last level of ``values`` ``[..., n]`` (the first value starts it)."""
    level = values[..., 0]
    for t in range(1, values.shape[-1]):
        level = alpha * values[..., t] + (1.0 - alpha) * level
    return level


def ses_forecast(values: np.ndarray, horizon: int, alpha: float) -> np.ndarray:
    """SES with smoothing ``alpha``: the last level at every step, ``[..., H]``."""
    return np.repeat(ses_level(values, alpha)[..., None], horizon, axis=-1)


def theta_forecast(values: np.ndarray, horizon: int, alpha: float) -> np.ndarray:
    """The Theta method (Assimakopoulos and Nikolopoulos; SES with drift, Hyndman and Billah 2003), ``[..., H]``.

    SES plus half the least-squares slope ``b`` of the values on time, ``b / 2 (h - 1 + 1 / alpha -
    (1 - alpha)^n / alpha)`` at step h: the theta = 0 line's trend and the theta = 2 line's smoothing.
    """
    n = values.shape[-1]
    t = np.arange(n) - (n - 1) / 2.0
    slope = (values * t).sum(axis=-1) / (t * t).sum() if n > 1 else np.zeros(values.shape[:-1])
    steps = np.arange(1, horizon + 1) - 1.0 + (1.0 - (1.0 - alpha) ** n) / alpha
    return ses_forecast(values, horizon, alpha) + slope[..., None] / 2.0 * steps


def damped_trend_forecast(values: np.ndarray, horizon: int, alpha: float, beta: float, phi: float) -> np.ndarray:
    """Holt's linear method with a damped trend (Gardner and McKenzie), ``[..., H]``.

    Level and trend start at the first value and the first difference; the forecast of step h is
    the last level plus ``(phi + ... + phi^h)`` times the last trend.
    """
    level = values[..., 0]
    trend = values[..., 1] - values[..., 0] if values.shape[-1] > 1 else np.zeros_like(level)
    for t in range(1, values.shape[-1]):
        previous = level
        level = alpha * values[..., t] + (1.0 - alpha) * (previous + phi * trend)
        trend = beta * (level - previous) + (1.0 - beta) * phi * trend
    damping = np.cumsum(phi ** np.arange(1, horizon + 1))
    return level[..., None] + damping * trend[..., None]


# The methods of features.SMOOTHING_METHODS, by name.
_SMOOTHING_FUNCTIONS = {"ses": ses_forecast, "theta": theta_forecast, "damped_trend": damped_trend_forecast}


def smoothing_forecasts(context: np.ndarray, horizon: int, period: int) -> dict[str, np.ndarray]:
    """The forecasts of :data:`features.SMOOTHING_BASES` ``[..., H]`` of each context ``[..., C]``, in numpy.

    Each method runs on the seasonally adjusted context (less :func:`seasonal_indices`) and its
    forecast is re-seasonalised with the target steps' indices: the classical models' recipe for
    a seasonal series (statsforecast's Theta and SES on a decomposition).
    """
    points, steps = seasonal_indices(context, horizon, period)
    adjusted = context - points
    forecasts = {}
    for kind, (method, params) in features.SMOOTHING_METHODS.items():
        forecasts[kind] = _SMOOTHING_FUNCTIONS[method](adjusted, horizon, *params) + steps
    return forecasts


def smoothing_weights(width: int, horizon: int, period: int) -> np.ndarray:
    """The linear map ``[C, B * H]`` from a context to the B forecasts of :func:`smoothing_forecasts`.

    With fixed parameters each forecast is linear in the context (the seasonal adjustment, the
    smoothing recursions and the slope all are), so the forecasts of the unit contexts are the
    map's rows: serving computes every base with one matrix product.
    """
    forecasts = smoothing_forecasts(np.eye(width), horizon, period)
    return np.concatenate([forecasts[kind] for kind in features.SMOOTHING_BASES], axis=1)


def smoothing_bases(context: tf.Tensor, horizon: int, period: int) -> dict[str, tf.Tensor]:
    """Exponential-smoothing and Theta forecasts ``[batch, H]`` of the raw context ``[batch, C]``, in the graph.

    The forecasts of :func:`smoothing_forecasts` (SES with several smoothings, the Theta method,
    Holt's damped trend, each on the seasonally adjusted context and re-seasonalised) computed as
    one product with the precomputed :func:`smoothing_weights`.

    Returns:
      ``{kind: [batch, H]}`` for each kind of :data:`features.SMOOTHING_BASES`.
    """
    weights = smoothing_weights(int(context.shape[1]), horizon, period)
    forecasts = tf.matmul(context, tf.constant(weights, dtype=context.dtype))
    return {kind: forecasts[:, i * horizon:(i + 1) * horizon] for i, kind in enumerate(features.SMOOTHING_BASES)}


def index_phases(times: tf.Tensor, period: int, step_seconds: float) -> tf.Tensor:
    """Each time's seasonal phase as one of ``period`` bins of its calendar cycle, int32, shaped like ``times``.

    The bin is the position in the cycle (:func:`components.windowing.index_cycle`) times m, rounded: weekly steps fall
    in the 52 bins of the year by their day of the year (so the 53rd week of some years shares a bin
    instead of shifting every later week by one, as a period of 52 steps would), monthly steps land
    on their month (a month is a twelfth of the mean year), hourly steps on their hour of the day.

    Example: a weekly step on 1 July lies 0.496 of a year in, bin round(0.496 * 52) = 26; a week
    later 0.515, bin 27; a year of 52 weeks later 0.493, bin 26 again.

    Raises:
      ValueError: m steps are no calendar cycle.
    """
    cycle = windowing.index_cycle(period, step_seconds)
    if cycle is None:
        raise ValueError(f"a season of {period} steps of {step_seconds:g} s is not a day, a week or a year")
    position = tf.math.floormod(tf.cast(times, tf.float64), cycle) / cycle * period
    # Half a bin up and a little more: points at the middle of a bin (noon of each day) fall the same way.
    return tf.cast(tf.math.floormod(tf.math.floor(position + 0.5 + 1e-6), period), tf.int32)


def seasonal_index(context: tf.Tensor, target: tf.Tensor, origin: tf.Tensor, scale: tf.Tensor, period: int,
                   step_seconds: float) -> tf.Tensor:
    """The seasonal index ``[m]`` by calendar phase of the analyzed (training) split, in scaled units (analyzer).

    Each target step less the mean of the last cycle of its context, divided by the window's scale,
    is averaged per phase bin (:func:`index_phases`) over every analyzed window, and the bins'
    means are centred: a classical decomposition's seasonal indices over the whole training split,
    shared by its series (in units of each window's scale, so series of any size pool). A trend
    adds the same offset to every bin (each bin is reached from every target step alike), which the
    centring removes. A bin the split never reached gets 0.
    """
    horizon = int(target.shape[1])
    phases = index_phases(step_times(origin, np.arange(1, horizon + 1), step_seconds), period, step_seconds)
    detrended = (target - tf.reduce_mean(context[:, -period:], axis=1, keepdims=True)) / scale
    onehot = tf.one_hot(phases, period, dtype=tf.float32)
    sums = tft.mean(tf.reduce_sum(onehot * detrended[..., None], axis=1), reduce_instance_dims=False)
    counts = tft.mean(tf.reduce_sum(onehot, axis=1), reduce_instance_dims=False)
    seen = counts > 0
    index = tf.math.divide_no_nan(sums, counts)
    centre = tf.math.divide_no_nan(tf.reduce_sum(tf.where(seen, index, 0.0)), tf.reduce_sum(tf.cast(seen, tf.float32)))
    return tf.where(seen, index - centre, 0.0)


def index_weights(width: int) -> np.ndarray:
    """``[C, B]``: each point's weight in the last level of simple exponential smoothing of a context
    of C points, for each alpha of :data:`features.INDEX_METHODS` (:func:`ses_level` of the unit contexts)."""
    return np.stack([ses_level(np.eye(width), alpha) for alpha in features.INDEX_METHODS.values()], axis=1)


def index_bases(context: tf.Tensor, origin: tf.Tensor, scale: tf.Tensor, index: tf.Tensor, horizon: int,
                period: int, step_seconds: float) -> dict[str, tf.Tensor]:
    """Forecasts ``[batch, H]`` from the context less the seasonal index, in the graph.

    The context ``[batch, C]`` less the index at each point's phase (:func:`index_phases`, times
    the window's scale) is smoothed (SES, each alpha of :data:`features.INDEX_METHODS`), and each
    target step gets that level plus the index at its phase. Unlike the context's own profile
    (:func:`seasonal_bases`) the index comes from every training cycle, and its phase from the
    calendar (a year is 52.18 weeks).

    Args:
      context: The raw context ``[batch, C]``.
      origin: Epoch seconds of each origin ``[batch, 1]``.
      scale: Each window's scale ``[batch, 1]``.
      index: :func:`seasonal_index` ``[m]``.
      horizon: H.
      period: m.
      step_seconds: The grid's step.

    Returns:
      ``{kind: [batch, H]}`` for each kind of :data:`features.INDEX_BASES`.
    """
    width = int(context.shape[1])
    past = index_phases(step_times(origin, np.arange(-(width - 1), 1), step_seconds), period, step_seconds)
    future = index_phases(step_times(origin, np.arange(1, horizon + 1), step_seconds), period, step_seconds)
    adjusted = context - tf.gather(index, past) * scale
    levels = tf.matmul(adjusted, tf.constant(index_weights(width), dtype=context.dtype))
    seasonal = tf.gather(index, future) * scale
    return {kind: levels[:, i:i + 1] + seasonal for i, kind in enumerate(features.INDEX_BASES)}


def _positive(std: tf.Tensor) -> tf.Tensor:
    # A constant training series would give std 0; 1 keeps the map invertible.
    return tf.where(std > 0, std, tf.ones_like(std))


def _safe_std(values: tf.Tensor) -> tf.Tensor:
    return _positive(tf.sqrt(tft.var(values)))


def _per_series_loc_scale(history: tf.Tensor, series_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and std of each series' training histories, mapped onto each example ``[batch, 1]``."""
    key = tf.reshape(series_id, [-1])
    vocab, means, variances = tft_analyzers._mean_and_var_per_key(history, key)
    known = tf.ones_like(means)
    mean, var, is_known = tft_tf_utils.map_per_key_reductions((means, variances, known), key, vocab, history, True)
    # Unseen series map to 0 for all three; they get the global statistics instead.
    mean = tf.where(is_known > 0, mean, tft.mean(history) * tf.ones_like(mean))
    std = tf.where(is_known > 0, _positive(tf.sqrt(tf.maximum(var, 0.0))), _safe_std(history) * tf.ones_like(var))
    return tf.reshape(mean, [-1, 1]), tf.reshape(std, [-1, 1])


def _window_std_loc_scale(history: tf.Tensor, context: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The history's mean, and the std of the whole context (a season or more: steadier than the
    history's alone, so an additive effect keeps one size in scaled units); the std floored at 1%
    of the context's mean magnitude (a flat window)."""
    loc = tf.reduce_mean(history, axis=1, keepdims=True)
    std = tf.math.reduce_std(context, axis=1, keepdims=True)
    floor = 0.01 * tf.reduce_mean(tf.abs(context), axis=1, keepdims=True)
    return loc, _positive(tf.maximum(std, floor))


def loc_scale(history: tf.Tensor, context: tf.Tensor, series_id: Optional[tf.Tensor],
              scaling: str) -> tuple[tf.Tensor, tf.Tensor]:
    """The per-example affine map ``[batch, 1]`` of a scaling (see the module docstring)."""
    ones = tf.ones_like(history[:, :1])
    if scaling == "global":
        loc = ones * tft.mean(history)
        return loc, ones * _safe_std(history - loc)
    if scaling == "per_series":
        if series_id is None:
            raise ValueError(f"scaling 'per_series' needs the feature '{features.SERIES_ID}'")
        return _per_series_loc_scale(history, series_id)
    if scaling == "window_std":
        return _window_std_loc_scale(history, context)
    loc = history[:, -1:] if scaling == "last_value" else tf.reduce_mean(history, axis=1, keepdims=True)
    return loc, ones * _safe_std(history - loc)


def transform_config(windows: dict[str, Any], scaling: str, series_embedding: bool = False,
                     smoothing_bases: bool = DEFAULT_SMOOTHING_BASES,
                     calendar_index: bool = False) -> dict[str, Any]:
    """The ``custom_config`` of :func:`preprocessing_fn` from the window settings (``asdict`` of WindowConfig)."""
    return {"scaling": scaling, "series_embedding": series_embedding, "smoothing_bases": smoothing_bases,
            "calendar_index": calendar_index,
            "history": windows["history"], "horizon": windows["horizon"],
            "seasonal_lags": windows["seasonal_lags"], "seasonal_periods": list(windows["seasonal_periods"]),
            "calendar": windows["calendar_features"], "step_seconds": windows["step_seconds"],
            "business_hours": list(windows.get("business_hours", ()))}


def preprocessing_fn(inputs: dict[str, tf.Tensor],
                     custom_config: Optional[dict[str, Any]] = None) -> dict[str, tf.Tensor]:
    """Scales the target's history, lags and future with one per-example affine map; scales covariates.

    Args:
      inputs: Raw features; :data:`features.HISTORY` float ``[batch, C]`` (the context: the model
        reads its last L points, the seasonal lags read further back), and, when present,
        :data:`features.TARGET` float ``[batch, H]`` (absent at serving time),
        :data:`features.SERIES_ID` (needed by ``per_series``), ``lag_<m>`` ``[batch, H]``,
        ``covariate_<column>`` ``[batch, C]``, ``future_<column>`` ``[batch, H]`` (a known-future
        covariate has both) and
        :data:`features.ORIGIN_TIMESTAMP` int64 ``[batch, 1]`` (for the calendar).
      custom_config: :func:`transform_config`: ``scaling`` (one of SCALINGS), ``history`` L,
        ``horizon`` H, ``seasonal_lags`` and ``seasonal_periods``, ``calendar`` and ``step_seconds``,
        ``series_embedding`` (the series id's vocabulary index, :data:`features.SERIES_INDEX`),
        ``smoothing_bases`` (with the lags: :func:`smoothing_bases` beside :func:`seasonal_bases`),
        ``calendar_index`` (with the lags: :func:`index_bases`, from the :func:`seasonal_index` of the
        analyzed split; the pipeline sets it from ``--calendar-index``,
        :func:`components.windowing.calendar_index_applies`).

    Returns:
      The scaled history, target and lags, the per-example ``loc`` and ``scale`` ``[batch, 1]``,
      each covariate scaled (:func:`scaled_feature`), the calendar of every step, and the series id.
    """
    config = custom_config or {}
    scaling = config.get("scaling", DEFAULT_SCALING)
    if scaling not in trainer_options.SCALINGS:
        raise ValueError(f"scaling must be one of {trainer_options.SCALINGS}, got '{scaling}'")
    context = inputs[features.HISTORY]
    width = context.shape[1]
    history_length = int(config.get("history") or width)
    history = context[:, width - history_length:]
    # window_std's spread: over the history and the longest season, not the further cycles the
    # context holds for the seasonal bases (five years of a trending series would mostly measure
    # its trend, and shrink every window's scaled values).
    spread = min(width, max([history_length, *(int(m) for m in config.get("seasonal_periods", ()))]))
    loc, scale = loc_scale(history, context[:, width - spread:], inputs.get(features.SERIES_ID), scaling)
    outputs = {
        features.HISTORY_SCALED: (history - loc) / scale,
        features.LOC: loc,
        features.SCALE: scale,
    }
    if features.TARGET in inputs:
        outputs[features.TARGET_SCALED] = (inputs[features.TARGET] - loc) / scale
    # Where each target step's value one season earlier lies in the context, per period.
    lag_index = {int(m): width - 1 + windowing.seasonal_lag_offsets(int(config["horizon"]), int(m))
                 for m in config.get("seasonal_periods", ())} if config.get("seasonal_lags") else {}
    for period, index in lag_index.items():
        outputs[scaled_feature(features.lag_feature(period))] = (tf.gather(context, index, axis=1) - loc) / scale
    if lag_index:
        # Smoothed seasonal forecasts of the primary (shortest) period, beside its seasonal naive.
        bases = seasonal_bases(context, int(config["horizon"]), min(lag_index))
        for kind in features.SEASONAL_BASES:
            outputs[scaled_feature(features.base_feature(kind))] = (bases[kind] - loc) / scale
        if config.get("smoothing_bases", DEFAULT_SMOOTHING_BASES):
            bases = smoothing_bases(context, int(config["horizon"]), min(lag_index))
            for kind in features.SMOOTHING_BASES:
                outputs[scaled_feature(features.base_feature(kind))] = (bases[kind] - loc) / scale
        if config.get("calendar_index"):
            if features.TARGET not in inputs or features.ORIGIN_TIMESTAMP not in inputs:
                raise ValueError(f"the calendar index is fitted on '{features.TARGET}' and "
                                 f"'{features.ORIGIN_TIMESTAMP}' of the analyzed split")
            period, step = min(lag_index), float(config["step_seconds"])
            origin = inputs[features.ORIGIN_TIMESTAMP]
            index = seasonal_index(context, inputs[features.TARGET], origin, scale, period, step)
            bases = index_bases(context, origin, scale, index, int(config["horizon"]), period, step)
            for kind in features.INDEX_BASES:
                outputs[scaled_feature(features.base_feature(kind))] = (bases[kind] - loc) / scale
    for name in covariate_features(inputs):
        # Covariates have their own units; a z-score with the training split's statistics suits them.
        values = tf.cast(inputs[name], tf.float32)
        mean, std = tft.mean(values), _safe_std(values)
        outputs[scaled_feature(name)] = (values[:, width - history_length:] - mean) / std
        future = features.future_feature(name[len(features.COVARIATE_PREFIX):])
        if future in inputs:
            # Known-future covariates: their values at the target steps, and where each seasonal
            # lag was read, in the units of the history's.
            outputs[scaled_feature(future)] = (tf.cast(inputs[future], tf.float32) - mean) / std
            for period, index in lag_index.items():
                outputs[scaled_feature(f"{future}_{features.lag_feature(period)}")] = (
                    tf.gather(values, index, axis=1) - mean) / std
    if config.get("calendar") and features.ORIGIN_TIMESTAMP in inputs:
        outputs.update(calendar_features(inputs[features.ORIGIN_TIMESTAMP], history_length,
                                         int(config["horizon"]), float(config["step_seconds"]),
                                         config.get("business_hours", ())))
    if config.get("series_embedding"):
        if features.SERIES_ID not in inputs:
            raise ValueError(f"a series embedding needs the feature '{features.SERIES_ID}'")
        # The vocabulary is the analyzed (training) split's; one extra index for every other id.
        index = tft.compute_and_apply_vocabulary(tf.reshape(inputs[features.SERIES_ID], [-1]), num_oov_buckets=1,
                                                 vocab_filename=features.SERIES_VOCABULARY)
        outputs[features.SERIES_INDEX] = tf.reshape(index, [-1, 1])
    # The raw serving inputs pass through, so the Trainer writes warmup requests from them as they were.
    passthrough = [features.HISTORY, features.ORIGIN_TIMESTAMP, features.SERIES_ID,
                   *covariate_features(inputs), *future_features(inputs)]
    outputs.update({name: inputs[name] for name in passthrough if name in inputs})
    return outputs
