"""The accuracy benchmark's arithmetic: naive forecasts from a whole series, and the error metrics.

Pure numpy, no TensorFlow, so that ``tests/test_accuracy_metrics.py`` checks every number against
a hand computation in milliseconds. Forecasts and actuals are ``[windows, H]`` arrays; a series is
its values on its time grid, and a forecast origin is the index of the last value known.

* MAE, RMSE: over every window and horizon step.
* sMAPE (%): ``200 |y - f| / (|y| + |f|)``, leaving out points where both are 0 (as the
  pipeline's Evaluator does, :mod:`components.forecast_metrics`).
* MASE: per series, the MAE over its windows divided by the in-sample MAE of the seasonal naive
  forecast (primary period ``m``) on the series up to its first test origin; then the mean over
  series.
* Skill: a forecaster's MAE over the best naive MAE (persistence and every seasonal naive);
  below 1 beats them all.
"""

from typing import Mapping, Sequence

import numpy as np


def persistence_forecast(values: np.ndarray, origin: int, horizon: int) -> np.ndarray:
    """The value at ``origin`` repeated ``horizon`` times."""
    return np.full(horizon, float(values[origin]))


def seasonal_naive_forecast(values: np.ndarray, origin: int, horizon: int, period: int) -> np.ndarray:
    """Step ``h`` (1-based) takes the value ``ceil(h / m) * m`` steps before its target time.

    That is the last known value at the same phase of the season: the target is at
    ``origin + h``, the value used at ``origin + h - ceil(h / m) * m <= origin``.

    Raises:
      ValueError: The series does not reach back one season from ``origin``.
    """
    steps = np.arange(1, horizon + 1)
    source = origin + steps - np.ceil(steps / period).astype(np.int64) * period
    if source.min() < 0:
        raise ValueError(f"origin {origin} has less than one season ({period}) of data before it")
    return np.asarray(values, dtype=np.float64)[source]


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(actual, np.float64) - forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(actual, np.float64) - forecast) ** 2)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in %, leaving out points where actual and forecast are both 0 (NaN if all are)."""
    actual, forecast = np.asarray(actual, np.float64).ravel(), np.asarray(forecast, np.float64).ravel()
    denominator = np.abs(actual) + np.abs(forecast)
    kept = denominator > 0
    if not kept.any():
        return float("nan")
    return float(np.mean(200 * np.abs(actual - forecast)[kept] / denominator[kept]))


def seasonal_naive_scale(values: np.ndarray, period: int) -> float:
    """In-sample MAE of the seasonal naive forecast, ``mean |y_t - y_{t-m}|``, over known pairs.

    Args:
      values: The series up to the point where the scale is taken; NaN where missing.
      period: The season ``m``.

    Returns:
      The scale, or NaN when no pair ``(t, t - m)`` is known.
    """
    values = np.asarray(values, dtype=np.float64)
    differences = np.abs(values[period:] - values[:-period]) if len(values) > period else np.array([])
    differences = differences[~np.isnan(differences)]
    return float(differences.mean()) if len(differences) else float("nan")


def mase(actual: np.ndarray, forecast: np.ndarray, series_ids: Sequence[str],
         scales: Mapping[str, float]) -> float:
    """Mean over series of (MAE on that series' windows / that series' seasonal naive scale).

    Args:
      actual: ``[windows, H]``.
      forecast: ``[windows, H]``.
      series_ids: The series of each window.
      scales: :func:`seasonal_naive_scale` of each series.
    """
    series_ids = np.asarray(series_ids)
    ratios = [mae(actual[series_ids == s], forecast[series_ids == s]) / scales[s] for s in np.unique(series_ids)]
    return float(np.mean(ratios))


def skill(forecaster_mae: float, naive_maes: Sequence[float]) -> float:
    """MAE over the best (lowest) naive MAE; below 1 beats every naive forecast."""
    return float(forecaster_mae / min(naive_maes))


def even_subsample(count: int, at_most: int) -> np.ndarray:
    """Indices of at most ``at_most`` of ``count`` items, evenly spread, first and last included."""
    if count <= at_most:
        return np.arange(count)
    if at_most == 1:
        return np.array([count - 1])
    return np.unique(np.rint(np.linspace(0, count - 1, at_most)).astype(np.int64))
