"""Quantile forecasts in numpy: the pinball loss, interval coverage, and split-conformal calibration.

A quantile forecast holds, for each window and horizon step, one value per level of
``ModelConfig.quantiles`` (increasing levels, the median 0.5 in the middle, the others in pairs
``p``, ``1 - p``); each pair bounds a central interval of nominal coverage ``1 - 2p``.

Calibration is conformalized quantile regression (Romano et al., 2019), split-conformal per
horizon step: on held-out windows (the eval split, and the stretches of the train split that
cross-validation folds held out: ``components.trainer.train_folds``) each interval's score is
``max(lo - y, y - hi)`` (positive when the target falls outside, by how far), and the interval
is widened at both ends by the ``ceil((n + 1)(1 - a)) / n`` empirical quantile of its scores
(``a = 1 - coverage``; negative: narrowed). On windows exchangeable with those, the calibrated
interval then covers at least ``1 - a`` of the targets. The median is left as it is; the values
are sorted across levels afterwards (a monotone rearrangement), so no two quantiles cross even
where an interval was narrowed past its neighbour. TensorFlow-free: the trainer bakes
:func:`conformal_adjustments`' output (a quantile head's) or :func:`pooled_conformal_adjustments`'
(one quantile over the steps' scores, each step's over their mean: a point model's) into the
served graph, and the tests use the same functions.

For the point model's intervals (``--interval-method conformal``) the scores are normalised
(locally adaptive, "normalized nonconformity scores": Papadopoulos et al., 2008; Lei et al., 2018):
each window's score is divided by its spread, a difficulty measure computed from the window's own
raw context (:func:`interval_spread`), and the calibrated interval is widened by the score
quantile times that window's spread. A window whose recent seasonal changes are large gets a wide
interval, a calm one a narrow interval, and the coverage holds across windows of different
difficulty rather than only on average. The spread is the largest absolute seasonal difference
``|x_t - x_{t-m}|`` over the context's last season (the in-window seasonal naive forecast's
largest error over its most recent cycle) where the context holds at least two seasons
(:func:`spread_period`), else the scaling's own window scale. Chosen on a cross-fit over the eval
windows (calibrated on the earlier half by time, measured on the later, and the reverse;
``benchmarks/calibration.py``), the mean coverage error of the 80% and 95% intervals over seven
public data sets: 0.084 with the mean difference over the whole context, 0.056 with the mean over
the last season, 0.045 with its largest (lower on four sets, higher on none), 0.031 with its
largest and one score quantile over every horizon step (:func:`pooled_conformal_adjustments`,
what the trainer uses for these intervals; lower on five sets, higher on none). The largest recent
change reacts at once to a season that grows or a level that shifts, which the test periods of the
drifting sets show; recency-weighted scores (Barber et al. 2023) and calibrating on the latest eval
windows only did worse there (the cross-fit's table). Models exported before record the mean
(``spread_statistic`` ``"mean"``), which the refit of such a model keeps.
"""

import math
from typing import Sequence

import numpy as np

from components.trainer_options import MEDIAN


def interval_pairs(levels: Sequence[float]) -> list[tuple[int, int, float]]:
    """``(lower index, upper index, nominal coverage)`` of each central interval, narrowest first."""
    levels = list(levels)
    below = [i for i, p in enumerate(levels) if p < MEDIAN]
    return [(i, len(levels) - 1 - i, round(1 - 2 * levels[i], 10)) for i in reversed(below)]


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The pinball (quantile) loss of each point and level: ``[..., H], [..., H, Q] -> [..., H, Q]``.

    ``max(p (y - q), (p - 1)(y - q))``: a quantile ``q`` at level ``p`` pays ``p`` per unit the
    target is above it and ``1 - p`` per unit below; at ``p = 0.5`` it is half the absolute error.
    """
    error = np.asarray(actual, dtype=np.float64)[..., None] - np.asarray(quantiles, dtype=np.float64)
    p = np.asarray(levels, dtype=np.float64)
    return np.maximum(p * error, (p - 1) * error)


def covered(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Whether each target lies in each central interval (bounds included): ``[..., H, intervals]``."""
    actual = np.asarray(actual, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    return np.stack([(quantiles[..., lo] <= actual) & (actual <= quantiles[..., hi])
                     for lo, hi, _ in interval_pairs(levels)], axis=-1)


def widths(quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The width of each central interval: ``[..., H, Q] -> [..., H, intervals]``."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    return np.stack([quantiles[..., hi] - quantiles[..., lo] for lo, hi, _ in interval_pairs(levels)], axis=-1)


# The spread's floor, as a fraction of the context's mean magnitude: the floor the window_std
# scaling puts under its scale (components.transform), so a flat window still gets an interval.
SPREAD_FLOOR = 0.01


def spread_period(context: int, seasonal_periods: Sequence[int]) -> int:
    """The season :func:`interval_spread` differences over, or 0 for the window scale.

    The primary (shortest) seasonal period ``m``, the one the seasonal bases and the context's
    cycles follow (:attr:`components.example_gen.options.WindowConfig.context`), where the context
    of ``context`` points holds at least one whole season of seasonal differences (``context >= 2
    m``), so every phase of the season is in the mean once; else 0 (no season, or one the context
    holds only once).
    """
    if not seasonal_periods:
        return 0
    period = min(int(m) for m in seasonal_periods)
    return period if period >= 1 and context >= 2 * period else 0


# How :func:`interval_spread` summarises the last season's absolute seasonal differences: their
# largest (exported since the drift cross-fit) or their mean (the in-window seasonal naive MAE,
# what models exported before use).
SPREAD_STATISTICS = ("max", "mean")
SPREAD_STATISTIC = "max"
# What a training record without ``spread_statistic`` (a model exported before it) was calibrated with.
LEGACY_SPREAD_STATISTIC = "mean"


def check_spread_statistic(statistic: str) -> None:
    """Raises ValueError unless ``statistic`` is one of :data:`SPREAD_STATISTICS` (both spreads' check)."""
    if statistic not in SPREAD_STATISTICS:
        raise ValueError(f"spread statistic {statistic!r} is not one of {', '.join(SPREAD_STATISTICS)}")


def interval_spread(context: np.ndarray, scale: np.ndarray, period: int,
                    statistic: str = SPREAD_STATISTIC) -> np.ndarray:
    """Each window's spread in scaled units ``[N, 1]``: what its conformal scores are divided by.

    With ``period`` m > 0: the largest (``statistic`` ``"max"``) or the mean (``"mean"``) absolute
    seasonal difference ``|x_t - x_{t-m}|`` over the raw context's last season (its last ``m``
    points ``t``: the in-window seasonal naive forecast's errors over the most recent cycle),
    floored at :data:`SPREAD_FLOOR` of the whole context's mean magnitude, divided by the window's
    scale; a window of zeros gets 1. With 0: 1 (the scores are the scaled errors themselves, the
    window scale their unit).

    Args:
      context: Raw contexts ``[N, C]``, original units.
      scale: The scaling's ``scale`` of each window ``[N, 1]`` (``original = scaled * scale + loc``).
      period: From :func:`spread_period`.
      statistic: One of :data:`SPREAD_STATISTICS`.
    """
    check_spread_statistic(statistic)
    context = np.asarray(context, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    if period == 0:
        return np.ones_like(scale)
    differences = np.abs(context[:, -period:] - context[:, -2 * period:-period])
    summary = differences.max(axis=1, keepdims=True) if statistic == "max" \
        else differences.mean(axis=1, keepdims=True)
    spread = np.maximum(summary, SPREAD_FLOOR * np.abs(context).mean(axis=1, keepdims=True))
    return np.where(spread > 0, spread / scale, 1.0)


def conformal_scores(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float],
                     spread: np.ndarray | None = None) -> list[tuple[int, int, float, np.ndarray]]:
    """Each central interval's nonconformity scores: ``(lower index, upper index, coverage, [N, H])``.

    A score is how far the target lies outside the interval (negative inside), over its window's
    spread ``[N, 1]`` (None: 1), as :func:`conformal_adjustments` ranks them.
    """
    actual = np.asarray(actual, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    n = len(actual)
    spread = np.ones((n, 1)) if spread is None else np.asarray(spread, dtype=np.float64).reshape(n, 1)
    return [(lo, hi, coverage, np.maximum(quantiles[..., lo] - actual, actual - quantiles[..., hi]) / spread)
            for lo, hi, coverage in interval_pairs(levels)]


def conformal_rank(n: int, coverage: float) -> int:
    """The 1-based rank, among ``n`` sorted scores, of the split-conformal quantile: ``ceil((n + 1) coverage)``,
    at most ``n`` (then the largest score, which promises less than ``coverage``)."""
    return min(math.ceil((n + 1) * coverage - 1e-9), n)


def fewest_conformal_windows(levels: Sequence[float]) -> int:
    """The fewest held-out windows whose split-conformal quantile is finite at every interval of ``levels``.

    The widest interval's coverage ``c`` needs ``ceil((n + 1) c) <= n`` scores per step, so
    ``n >= c / (1 - c)``: 19 for a 95% interval, 4 for 80%. Fewer can only give their largest
    score (:func:`conformal_rank`), which promises less than ``c``. 0 without intervals.

    Example: levels ``(0.025, 0.1, 0.5, 0.9, 0.975)`` -> 19.
    """
    coverages = [coverage for _, _, coverage in interval_pairs(levels)]
    if not coverages:
        return 0
    widest = max(coverages)
    return math.ceil(widest / (1 - widest) - 1e-9)


def conformal_adjustments(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float],
                          spread: np.ndarray | None = None) -> np.ndarray:
    """What to add to each quantile, per horizon step and unit of spread, for calibrated central intervals: ``[H, Q]``.

    Args:
      actual: Targets ``[N, H]`` of held-out windows.
      quantiles: The model's quantiles of those windows ``[N, H, Q]``, same units.
      levels: The ``Q`` levels, increasing.
      spread: Each window's spread ``[N, 1]`` (:func:`interval_spread`), positive, same units;
        None: 1 for every window.

    Returns:
      ``[H, Q]``: ``-c`` at each interval's lower level, ``+c`` at its upper, 0 at the median,
      ``c`` being the ``ceil((n + 1)(1 - a))``-th smallest score of the step, each score divided
      by its window's spread (the largest when ``n`` is too small for that rank, which then
      promises less than ``1 - a``). All zeros without windows. :func:`calibrate` multiplies
      them by each window's spread.
    """
    n, horizon = np.shape(actual)
    adjustments = np.zeros((horizon, len(levels)))
    if n == 0:
        return adjustments
    for lo, hi, coverage, scores in conformal_scores(actual, quantiles, levels, spread):
        scores = np.sort(scores, axis=0)
        rank = conformal_rank(n, coverage)
        adjustments[:, lo] = -scores[rank - 1]
        adjustments[:, hi] = scores[rank - 1]
    return adjustments


def pooled_conformal_adjustments(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float],
                                 spread: np.ndarray | None = None) -> np.ndarray:
    """Like :func:`conformal_adjustments`, one score quantile over every horizon step: ``[H, Q]``.

    Each step's scores are divided by their mean absolute value (the step's scale, so later
    steps' larger errors count alike), pooled over the ``N H`` scores of all steps, and the
    ``ceil((N H + 1)(1 - a))``-th smallest (the largest where ``N H`` is too small for that rank)
    times each step's scale is the step's adjustment. ``H`` times the scores of one step: a quantile
    that a few eval windows cannot pin down per step (95% of 4 windows) still can be over the steps.
    """
    n, horizon = np.shape(actual)
    adjustments = np.zeros((horizon, len(levels)))
    if n == 0:
        return adjustments
    for lo, hi, coverage, scores in conformal_scores(actual, quantiles, levels, spread):
        step_scale = np.abs(scores).mean(axis=0)
        step_scale = np.where(step_scale > 0, step_scale, 1.0)
        pooled = np.sort((scores / step_scale).ravel())
        rank = conformal_rank(pooled.size, coverage)
        adjustments[:, lo] = -pooled[rank - 1] * step_scale
        adjustments[:, hi] = pooled[rank - 1] * step_scale
    return adjustments


def calibrate(quantiles: np.ndarray, adjustments: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
    """Quantiles ``[N, H, Q]`` plus the adjustments ``[H, Q]`` times each window's spread ``[N, 1]``
    (None: 1), sorted across levels (never crossing)."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    scaled = adjustments if spread is None else np.asarray(spread, dtype=np.float64)[..., None] * adjustments
    return np.sort(quantiles + scaled, axis=-1)
