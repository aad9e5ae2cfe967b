"""Quantile forecasts in numpy: the pinball loss, interval coverage, and split-conformal calibration.

A quantile forecast holds, for each window and horizon step, one value per level of
``ModelConfig.quantiles`` (increasing levels, the median 0.5 in the middle, the others in pairs
``p``, ``1 - p``); each pair bounds a central interval of nominal coverage ``1 - 2p``.

Calibration is conformalized quantile regression (Romano et al., 2019), split-conformal per
horizon step: on held-out windows (the eval split) each interval's score is
``max(lo - y, y - hi)`` (positive when the target falls outside, by how far), and the interval
is widened at both ends by the ``ceil((n + 1)(1 - a)) / n`` empirical quantile of its scores
(``a = 1 - coverage``; negative: narrowed). On windows exchangeable with those, the calibrated
interval then covers at least ``1 - a`` of the targets. The median is left as it is; the values
are sorted across levels afterwards (a monotone rearrangement), so no two quantiles cross even
where an interval was narrowed past its neighbour. TensorFlow-free: the trainer bakes
:func:`conformal_adjustments`' output into the served graph, and the tests use the same functions.
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


def conformal_adjustments(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """What to add to each quantile, per horizon step, for calibrated central intervals: ``[H, Q]``.

    Args:
      actual: Targets ``[N, H]`` of held-out windows.
      quantiles: The model's quantiles of those windows ``[N, H, Q]``, same units.
      levels: The ``Q`` levels, increasing.

    Returns:
      ``[H, Q]``: ``-c`` at each interval's lower level, ``+c`` at its upper, 0 at the median,
      ``c`` being the ``ceil((n + 1)(1 - a))``-th smallest score of the step (the largest when
      ``n`` is too small for that rank, which then promises less than ``1 - a``). All zeros
      without windows.
    """
    actual = np.asarray(actual, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    n, horizon = actual.shape
    adjustments = np.zeros((horizon, len(levels)))
    if n == 0:
        return adjustments
    for lo, hi, coverage in interval_pairs(levels):
        scores = np.sort(np.maximum(quantiles[..., lo] - actual, actual - quantiles[..., hi]), axis=0)
        rank = min(math.ceil((n + 1) * coverage - 1e-9), n)
        adjustments[:, lo] = -scores[rank - 1]
        adjustments[:, hi] = scores[rank - 1]
    return adjustments


def calibrate(quantiles: np.ndarray, adjustments: np.ndarray) -> np.ndarray:
    """Quantiles ``[..., H, Q]`` with the adjustments ``[H, Q]`` added, sorted across levels (never crossing)."""
    return np.sort(np.asarray(quantiles, dtype=np.float64) + adjustments, axis=-1)
