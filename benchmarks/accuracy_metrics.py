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
* Bands: how far a figure measured on one test split could be from the same model's figure on
  another stretch of the same series. Windows at nearby origins share targets and errors, so the
  per-window figures are averaged per origin (over series) and the standard error of their mean
  is Newey and West's (Bartlett weights up to :func:`band_lags`, which covers every lag at which
  two windows' targets overlap); a ratio of MAEs gets the delta method's band (as in the
  Diebold-Mariano test of equal accuracy). A band that holds 1 (a ratio) or the nominal coverage
  says the test split cannot tell the difference.
"""

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from components.trainer_options import interval_name


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


# The two-sided 90% band's normal quantile.
Z_90 = 1.6448536269514722
# Fewer distinct origins than this give no band: the standard error of a mean of so few
# autocorrelated points is itself too noisy to read.
MIN_BAND_ORIGINS = 10


@dataclasses.dataclass(frozen=True)
class Band:
    """A figure measured on the test windows and its 90% band.

    Attributes:
      estimate: The figure (a ratio of MAEs, or a coverage).
      low, high: ``estimate -/+ Z_90`` standard errors.
      origins: The distinct origins averaged over (the time points of the standard error).
      lags: The Newey-West lags.
    """

    estimate: float
    low: float
    high: float
    origins: int
    lags: int

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


def newey_west_se(values: np.ndarray, lags: int) -> float:
    """The standard error of the mean of time-ordered ``values``, robust to autocorrelation up to ``lags``.

    Newey and West (1987): ``var = (g_0 + 2 sum_{l=1..lags} (1 - l / (lags + 1)) g_l) / n`` with
    ``g_l = sum_t u_t u_{t-l} / n`` of the deviations ``u`` from the mean; statsmodels' HAC
    covariance of a regression on a constant (statsmodels comes with statsforecast, bench.in).
    """
    import statsmodels.api as sm
    values = np.asarray(values, dtype=np.float64)
    fit = sm.OLS(values, np.ones((len(values), 1))).fit(cov_type="HAC", cov_kwds={"maxlags": int(lags)})
    return float(fit.bse[0])


def origin_means(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The mean of per-window ``values`` ``[n]`` over the windows (of every series) at each distinct origin, by time."""
    _, inverse = np.unique(np.asarray(origins), return_inverse=True)
    return np.bincount(inverse, weights=np.asarray(values, dtype=np.float64)) / np.bincount(inverse)


def band_lags(origin_index: np.ndarray, series_ids: np.ndarray, horizon: int, points: int) -> int:
    """Newey-West lags for windows ``horizon`` steps long whose origins lie at grid ``origin_index``.

    Windows ``g`` steps apart (the median gap between a series' consecutive origins) share targets
    up to ``ceil(horizon / g) - 1`` origins apart, so at least that many lags; and at least the
    usual rule ``floor(4 (points / 100)^(2/9))`` of the ``points`` averaged. For example 40
    consecutive daily windows of 14 days: 13 lags; 40 windows 32 hours apart of 24 hours: 3.
    """
    gaps = [np.diff(np.sort(origin_index[series_ids == s])) for s in np.unique(series_ids)]
    gaps = np.concatenate([g for g in gaps if len(g)]) if any(len(g) for g in gaps) else np.array([horizon])
    gap = max(float(np.median(gaps)), 1.0)
    return max(math.ceil(horizon / gap) - 1, math.floor(4 * (points / 100) ** (2 / 9)))


# One split's per-window figures for a band: values ``[n]`` (one or two arrays), each window's origin
# ``[n]`` and the split's Newey-West lags (:func:`band_lags`). Several of them are independent stretches
# of the same series (backtest folds, :mod:`benchmarks.stretches`).
Split = tuple[np.ndarray, ...]


def pooled_mean_se(parts: Sequence[tuple[np.ndarray, int]]) -> float:
    """The standard error of the mean of per-origin values pooled over independent stretches.

    Each part is one stretch's time-ordered values and its lags; the pooled mean weighs each
    stretch by its count ``n_s``, so ``se = sqrt(sum_s (n_s se_s)^2) / sum_s n_s`` with ``se_s`` the
    stretch's :func:`newey_west_se` (stretches that do not overlap share no window, and errors
    across their boundary correlate over a few origins only). With one part: its :func:`newey_west_se`.
    """
    total = sum(len(values) for values, _ in parts)
    return math.sqrt(sum((len(values) * newey_west_se(values, lags)) ** 2 for values, lags in parts)) / total


def pooled_ratio(splits: Sequence[Split]) -> float:
    """``mean(a) / mean(b)`` of per-window MAEs pooled over ``splits`` ``(a, b, origins, lags)``."""
    return float(np.concatenate([np.asarray(split[0], np.float64) for split in splits]).mean()
                 / np.concatenate([np.asarray(split[1], np.float64) for split in splits]).mean())


def pooled_fraction(splits: Sequence[Split]) -> float:
    """The mean of per-window fractions pooled over ``splits`` ``(fractions, origins, lags)``."""
    return float(np.concatenate([np.asarray(split[0], np.float64) for split in splits]).mean())


def joined_if_short(splits: Sequence[Split]) -> list[Split]:
    """``splits`` as they are, or as one where a split has fewer than :data:`MIN_BAND_ORIGINS` distinct origins
    and all of them together have at least that many.

    Joined, each array is the splits' concatenated (the stretches of :mod:`benchmarks.stretches` share
    no origin, so :func:`origin_means` puts the joined origins in time order) with the largest lags:
    the standard error is then Newey and West's over every stretch's origins as one series, as if
    the stretches followed each other (they correlate across their boundaries over a few origins at
    most, which the lags cover). A many-series set with few origins a stretch (visnights: 20
    quarterly series, 5-9 origins) so gets a pooled band where no stretch has one alone.

    Example: stretches of 9, 9 and 9 origins -> one split of 27; 12 and 9 -> one of 21; 12 and 15 ->
    unchanged; 4 and 5 -> unchanged (9 in all: still no band).
    """
    if not splits:
        return []
    # Each split is (*values, origins, lags): gathered position by position over the splits.
    *values, origins, lags = zip(*splits)
    counts = [len(np.unique(o)) for o in origins]
    if min(counts) >= MIN_BAND_ORIGINS or sum(counts) < MIN_BAND_ORIGINS:
        return list(splits)
    return [(*(np.concatenate(v) for v in values), np.concatenate(origins), max(int(n) for n in lags))]


def ratio_band(splits: Sequence[Split]) -> Optional[Band]:
    """``mean(a) / mean(b)`` of per-window MAEs pooled over ``splits`` ``(a, b, origins, lags)`` and its 90%
    band, or None where too few origins (:func:`joined_if_short`).

    Delta method: with ``r`` the pooled ratio, ``r`` is off its expectation by about
    ``mean(a - r b) / mean(b)``, whose standard error is :func:`pooled_mean_se` of ``a - r b``
    averaged per origin (the Diebold-Mariano test's arithmetic), over ``mean(b)``.
    """
    splits = joined_if_short(splits)
    ratio = pooled_ratio(splits)
    parts = [(origin_means(np.asarray(sa, np.float64) - ratio * np.asarray(sb, np.float64), origins), lags)
             for sa, sb, origins, lags in splits]
    return _band(ratio, parts, float(np.concatenate([np.asarray(split[1], np.float64) for split in splits]).mean()))


def fraction_band(splits: Sequence[Split]) -> Optional[Band]:
    """The mean of per-window fractions (a coverage) pooled over ``splits`` ``(fractions, origins, lags)`` and
    its 90% band, or None where too few origins (:func:`joined_if_short`)."""
    splits = joined_if_short(splits)
    parts = [(origin_means(fractions, origins), lags) for fractions, origins, lags in splits]
    return _band(pooled_fraction(splits), parts, 1.0)


def _band(estimate: float, parts: list[tuple[np.ndarray, int]], unit: float) -> Optional[Band]:
    if any(len(values) < MIN_BAND_ORIGINS for values, _ in parts):
        return None
    se = pooled_mean_se(parts) / unit
    return Band(estimate, estimate - Z_90 * se, estimate + Z_90 * se, sum(len(values) for values, _ in parts),
                max(lags for _, lags in parts))


def coverage_band(hits: np.ndarray, origins: np.ndarray, lags: int) -> Optional[Band]:
    """The fraction of one split's targets in an interval and its 90% band (:func:`fraction_band`); ``hits``
    ``[n, H]`` (each target) or ``[n]`` (each window's fraction)."""
    hits = np.asarray(hits, dtype=np.float64)
    return fraction_band([(hits.mean(axis=1) if hits.ndim == 2 else hits, origins, lags)])


# The intervals the coverage goal is stated for (issue 14: within 3 points of nominal), by nominal coverage.
SCORED_INTERVALS = (0.8, 0.95)


def coverage_error(coverage: dict[str, float], intervals: Sequence[float] = SCORED_INTERVALS) -> float:
    """Mean ``|coverage - nominal|`` over ``intervals``, ``coverage`` keyed as summary.json's
    (:func:`components.trainer_options.interval_name`: ``"80"`` for 0.8)."""
    return float(np.mean([abs(coverage[interval_name(c)] - c) for c in intervals]))


def sets_phrase(count: int) -> str:
    """``1 set``, ``7 sets``: how the summaries name how many data sets a mean is over."""
    return f"{count} set" if count == 1 else f"{count} sets"


def set_means(ratios: dict[str, float], coverages: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What defaults are chosen on, over the data sets: the mean model MAE over MSTL's and the mean
    :func:`coverage_error` (``ratios`` and ``coverages`` by data set; a set missing from either is left
    out of that mean, NaN where none is left)."""
    ratio = [v for v in ratios.values() if math.isfinite(v)]
    errors = [coverage_error(c) for c in coverages.values() if c]
    return {"model_mae_over_mstl": float(np.mean(ratio)) if ratio else float("nan"), "sets": len(ratio),
            "coverage_error": float(np.mean(errors)) if errors else float("nan"), "coverage_sets": len(errors)}
