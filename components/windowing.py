"""Window and split arithmetic, written once: pure numpy, no TFX or Beam.

A series of n points ``v[0..n-1]`` yields windows of ``history`` L and ``horizon`` H every
``stride`` S points. Window k starts at ``s = k * S`` and covers::

    history = v[s : s + L]          (the past, ends at the forecast origin v[s + L - 1])
    target  = v[s + L : s + L + H]  (the H points that follow, the label)

Example: n = 7, L = 3, H = 2, S = 2 gives starts [0, 2]::

    index   0  1  2  3  4  5  6
    k = 0   h  h  h  t  t
    k = 1         h  h  h  t  t

A window whose target steps all lie in one split belongs to that split; see :func:`assign_splits`.
"""

from typing import Sequence

import numpy as np

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS: tuple[str, ...] = (TRAIN, EVAL, TEST)
# Split index of a window whose targets straddle a cut point: it belongs to no split.
DROPPED = -1


def window_starts(n: int, history: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Returns the start index of every complete window over ``n`` points.

    Args:
      n: Number of points in the series.
      history: History length L (>= 1).
      horizon: Forecast horizon H (>= 1).
      stride: Step S between consecutive window starts (>= 1).

    Returns:
      int64 array ``[0, S, 2S, ...]`` of the starts ``s`` with ``s + L + H <= n``.
    """
    if history < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"history, horizon and stride must be >= 1, got {history}, {horizon}, {stride}")
    last_start = n - history - horizon
    if last_start < 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, last_start + 1, stride, dtype=np.int64)


def make_windows(
    values: np.ndarray, history: int, horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cuts a 1-D series into (history, target) windows, vectorised.

    Args:
      values: The series, shape ``[n]``.
      history: History length L.
      horizon: Forecast horizon H.
      stride: Step between window starts.

    Returns:
      ``(histories [N, L], targets [N, H], starts [N])`` as copies (not views of ``values``).
    """
    values = np.asarray(values)
    starts = window_starts(len(values), history, horizon, stride)
    if len(starts) == 0:
        return (np.zeros((0, history), values.dtype), np.zeros((0, horizon), values.dtype), starts)
    windows = np.lib.stride_tricks.sliding_window_view(values, history + horizon)[starts]
    return windows[:, :history].copy(), windows[:, history:].copy(), starts


def split_cut_times(start: float, end: float, fractions: Sequence[float]) -> np.ndarray:
    """Turns split fractions of a series' time span into cut times.

    Args:
      start: Time of the series' first point.
      end: Time of its last point.
      fractions: Fractions of the span for train and eval (test takes the rest), e.g. (0.7, 0.15).

    Returns:
      The cut times ``[c_eval, c_test]``: train is ``t < c_eval``, eval ``c_eval <= t < c_test``,
      test ``t >= c_test``.
    """
    if len(fractions) != len(SPLITS) - 1 or min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError(f"need {len(SPLITS) - 1} positive split fractions summing to < 1, got {fractions}")
    return start + (end - start) * np.cumsum(fractions)


def assign_splits(
    first_target_times: np.ndarray, last_target_times: np.ndarray, cut_times: np.ndarray
) -> np.ndarray:
    """Assigns each window to the split that holds all of its target steps.

    History may reach back into an earlier split (the past is known at forecast time); a window
    whose targets straddle a cut point is dropped so that no target is seen in two splits.

    Args:
      first_target_times: Time of each window's first target step, ``[N]``.
      last_target_times: Time of each window's last target step, ``[N]``.
      cut_times: Increasing cut times, one fewer than there are splits.

    Returns:
      int array ``[N]`` of indices into :data:`SPLITS`, or :data:`DROPPED`.
    """
    first = np.searchsorted(cut_times, first_target_times, side="right")
    last = np.searchsorted(cut_times, last_target_times, side="right")
    return np.where(first == last, first, DROPPED)
