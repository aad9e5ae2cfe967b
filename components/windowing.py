"""Window and split arithmetic, written once: pure numpy, no TFX or Beam.

A series of n grid points ``v[0..n-1]`` yields windows of ``history`` L and ``horizon`` H every
``stride`` S points. Window k starts at ``s = k * S`` and covers::

    history = v[s : s + L]          (the past, ends at the forecast origin v[s + L - 1])
    target  = v[s + L : s + L + H]  (the H points that follow, the label)

Example: n = 7, L = 3, H = 2, S = 2 gives starts [0, 2]::

    index   0  1  2  3  4  5  6
    k = 0   h  h  h  t  t
    k = 1         h  h  h  t  t

A window may read further back than its history: with seasonal lags of period m, its *context*
is ``C = max(L, m)`` points ending at the origin, window k then starts at ``s = k * S`` with
``history = v[s + C - L : s + C]`` and ``target = v[s + C : s + C + H]``, and the lag of each
target step is read at :func:`seasonal_lag_offsets` from the origin ``s + C - 1``.

Splits are cut in time. A cut index ``c`` is the first grid point of the later split; a window
belongs to the split that holds all of its target steps (see :func:`assign_splits`). With cut
indices ``[4]`` in the example above, window 0 (targets 3, 4) straddles the cut and is dropped,
window 1 (targets 5, 6) belongs to the second split; its history (2, 3, 4) reaches back into the
first split, which is the known past at its forecast origin.
"""

import math
from typing import Sequence

import numpy as np

from components import features

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS: tuple[str, ...] = (TRAIN, EVAL, TEST)
# Split codes of windows that belong to no split.
DROPPED_STRADDLING = -1  # its targets straddle a cut point
DROPPED_SPLIT_GAP = -2  # its targets start inside the gap left after a cut
# A calibration fold after the first trains only on windows whose origins span at least this (epoch
# seconds: a year of 365.25 days): with less, each later fold's model has seen no whole year, and
# its errors on a season it never saw did not help (README, *Two calibration folds*).
LATER_FOLD_SPAN_SECONDS = 365.25 * 24 * 3600
# Calendar cycles a season can stand for (seconds): a day, a week, the mean Gregorian year.
INDEX_CYCLES = tuple(float(seconds) for _, seconds in features.CALENDAR_CYCLES)
# How far m steps may be from a calendar cycle for the cycle to give the season's phase: 52 weeks
# are 0.34% short of the mean year, and the calendar index places them by their day of the year.
INDEX_CYCLE_TOLERANCE = 0.02
# m steps closer than this to their calendar cycle are a whole cycle: 12 months (a decade's mean month
# is 5e-5 off a twelfth of the mean year), not 52 weeks (3.4e-3 short of it).
WHOLE_CYCLE_TOLERANCE = 1e-3


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


def spans(values: np.ndarray, firsts: np.ndarray, length: int) -> np.ndarray:
    """Gathers ``values[f : f + length]`` for every ``f`` in ``firsts``, vectorised.

    Args:
      values: A 1-D array ``[n]``.
      firsts: Start indices ``[N]``, each with ``f + length <= n``.
      length: Points per span.

    Returns:
      A copy (not a view of ``values``), ``[N, length]``.
    """
    values = np.asarray(values)
    if len(firsts) == 0:
        return np.zeros((0, length), values.dtype)
    return np.lib.stride_tricks.sliding_window_view(values, length)[firsts]


def seasonal_lag_offsets(horizon: int, period: int) -> np.ndarray:
    """For each target step h = 1..H, the offset from the origin of its value one season earlier.

    The value of step h a season back is ``v[origin + h - m * ceil(h / m)]``: a whole number of
    seasons back, the nearest already observed at the origin (this is also the seasonal naive
    forecast of step h). Example: m = 4, H = 6 gives ``[-3, -2, -1, 0, -3, -2]``: steps 5 and 6
    reuse the values that steps 1 and 2 do. Offsets are in ``[-(m - 1), 0]``, so a window whose
    context holds the ``m`` points up to the origin can read them.

    Args:
      horizon: H.
      period: Season length m in steps (>= 1).

    Returns:
      int64 ``[H]``.
    """
    h = np.arange(1, horizon + 1, dtype=np.int64)
    return h - period * ((h + period - 1) // period)


def index_cycle(period: int, step_seconds: float) -> float | None:
    """The calendar cycle (seconds) that a season of ``period`` steps stands for, where m steps are
    within :data:`INDEX_CYCLE_TOLERANCE` of one of :data:`INDEX_CYCLES`; None where none is.

    Example: 52 weekly steps are 0.9966 of a year, so the year; 12 monthly steps (a twelfth of the
    mean year each) the year; 24 hours the day; 5 business days none (a week is 7 days).
    """
    for seconds in INDEX_CYCLES:
        if abs(period * step_seconds / seconds - 1.0) <= INDEX_CYCLE_TOLERANCE:
            return seconds
    return None


def calendar_index_applies(mode: str, period: int, step_seconds: float) -> bool:
    """Whether the calendar index bases join the mix (``--calendar-index``) for a primary season of
    ``period`` steps (0: none): ``on`` wherever m steps are a calendar cycle (:func:`index_cycle`),
    ``auto`` only where they are one but not exactly (weekly steps in a year: 52 weeks are 0.9966 of
    it), ``off`` never. Without a season there are no seasonal bases.

    Example: weekly data, m = 52: True with ``auto`` and ``on``; monthly, m = 12 (a twelfth of the
    mean year each): True with ``on`` only.
    """
    cycle = index_cycle(period, step_seconds) if period else None
    if mode == "off" or cycle is None:
        return False
    return mode == "on" or not math.isclose(period * step_seconds, cycle, rel_tol=WHOLE_CYCLE_TOLERANCE)


def complete_spans(missing: np.ndarray, firsts: np.ndarray, length: int) -> np.ndarray:
    """Whether each span ``[f, f + length)`` is free of missing points.

    Args:
      missing: bool ``[n]``, True where a point is missing.
      firsts: Start indices ``[N]``.
      length: Points per span.

    Returns:
      bool ``[N]``.
    """
    # A running count of missing points answers each span in O(1).
    count = np.concatenate([[0], np.cumsum(missing, dtype=np.int64)])
    return count[firsts + length] == count[firsts]


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
    check_split_fractions(fractions)
    return start + (end - start) * np.cumsum(fractions)


def check_split_fractions(fractions: Sequence[float]) -> None:
    """Raises ValueError unless ``fractions`` are the train and eval fractions of a span."""
    if len(fractions) != len(SPLITS) - 1 or min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError(f"need {len(SPLITS) - 1} positive split fractions summing to < 1, got {list(fractions)}")


def cut_indices(times: np.ndarray, cut_times: np.ndarray) -> np.ndarray:
    """The first grid index at or after each cut time: where each later split starts.

    Args:
      times: Increasing times of the grid points ``[n]``.
      cut_times: Increasing cut times.

    Returns:
      int64 indices into ``times`` (``n`` where a cut lies after the last point).
    """
    return np.searchsorted(times, cut_times, side="left").astype(np.int64)


def assign_splits(first_targets: np.ndarray, last_targets: np.ndarray, cuts: np.ndarray,
                  gap: int = 0) -> np.ndarray:
    """Assigns each window to the split that holds all of its target steps.

    History may reach back into an earlier split (the past is known at forecast time); a window
    whose targets straddle a cut is dropped so that no target is seen in two splits. With a gap,
    the targets of a later split start at least ``gap`` points after its cut, so that the last
    train target and the first eval target are more than ``gap`` steps apart.

    Args:
      first_targets: Grid index of each window's first target step, ``[N]``.
      last_targets: Grid index of each window's last target step, ``[N]``.
      cuts: Increasing cut indices (see :func:`cut_indices`), one fewer than there are splits.
      gap: Grid points left out after each cut.

    Returns:
      int array ``[N]`` of indices into :data:`SPLITS`, or :data:`DROPPED_STRADDLING` or
      :data:`DROPPED_SPLIT_GAP`.
    """
    first = np.searchsorted(cuts, first_targets, side="right")
    last = np.searchsorted(cuts, last_targets, side="right")
    split = np.where(first == last, first, DROPPED_STRADDLING)
    if gap > 0 and len(cuts):
        cut_before = np.asarray(cuts)[np.maximum(split - 1, 0)]
        in_gap = (split > 0) & (first_targets < cut_before + gap)
        split = np.where(in_gap, DROPPED_SPLIT_GAP, split)
    return split


def held_out_folds(series_ids: np.ndarray, origins: np.ndarray, width: float, folds: int, horizon: int,
                   stride: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of cross-validation inside the train split, latest first: ``(train mask, held-out mask)`` each.

    Fold ``j`` (1-based) holds out the windows whose origins lie in the ``j``-th stretch of length
    ``width`` counted back from the latest origin ``T``, ``cut < origin <= cut + width`` with
    ``cut = T - j w``. It trains on each series' windows with origins at or before ``cut``, less the
    last ``ceil(H / S)`` of them: a series' windows are at least ``S`` steps apart, so every training
    target then lies at or before ``cut``, before every held-out origin (a gap only moves the earlier
    windows further back), as :func:`assign_splits` keeps train before eval. Windows after the
    stretch are in neither.

    Example: one series, origins 0..9 one step apart, ``width`` 3, H = 2, S = 1, two folds
    (``t``: trains, ``h``: held out)::

        origin   0  1  2  3  4  5  6  7  8  9
        fold 1   t  t  t  t  t  .  .  h  h  h      cut 6: window 4's targets are 5 and 6
        fold 2   t  t  .  .  h  h  h  .  .  .      cut 3

    Args:
      series_ids: Each window's series ``[N]``.
      origins: Each window's origin ``[N]`` (any increasing unit: epoch seconds).
      width: The length of each held-out stretch, in the origins' unit (> 0).
      folds: How many folds.
      horizon: H.
      stride: S, the step between a series' window starts.

    Returns:
      ``folds`` pairs of bool masks ``[N]``; a fold may hold no window (a short series).
    """
    series_ids = np.asarray(series_ids)
    origins = np.asarray(origins, dtype=np.float64)
    if len(origins) == 0 or folds < 1:
        return [(np.zeros(len(origins), bool), np.zeros(len(origins), bool)) for _ in range(max(folds, 0))]
    if width <= 0:
        raise ValueError(f"the held-out stretch must be longer than 0; got {width}")
    latest, overlap = origins.max(), -(-horizon // stride)
    result = []
    for j in range(1, folds + 1):
        cut = latest - j * width
        held_out = (origins > cut) & (origins <= cut + width)
        before = origins <= cut
        train = before.copy()
        for series in np.unique(series_ids[before]):
            index = np.flatnonzero(before & (series_ids == series))
            train[index[np.argsort(origins[index], kind="stable")][max(len(index) - overlap, 0):]] = False
        result.append((train, held_out))
    return result


def fold_left_out(fold: int, train: np.ndarray, held_out: np.ndarray, origins: np.ndarray, fewest: int) -> str:
    """Why fold ``fold`` (1-based) of :func:`held_out_folds` is left out untrained, or ``""`` when it is kept.

    A fold is left out when it has no window to train on, when it holds out fewer than ``fewest``
    windows, or, after the first fold, when its training windows' origins span less than
    :data:`LATER_FOLD_SPAN_SECONDS` (a year).

    Example: origins one month apart, 30 training windows (a span of 29 months) and 20 held out, with
    ``fewest`` 19: fold 1 and fold 2 are kept; with 10 training windows (9 months) fold 1 is kept
    and fold 2 is left out ("its training windows span 0.75 years ...").

    Args:
      fold: The fold's number, 1 for the latest.
      train: The fold's training mask ``[N]``.
      held_out: Its held-out mask ``[N]``.
      origins: Each window's origin ``[N]``, in epoch seconds.
      fewest: The fewest held-out windows a fold needs.
    """
    trained, scored = int(np.sum(train)), int(np.sum(held_out))
    if not trained:
        return "no window to train on"
    if scored < fewest:
        return f"holds out {scored} windows; it needs {fewest}"
    if fold > 1:
        span = float(np.max(origins[train]) - np.min(origins[train]))
        if span < LATER_FOLD_SPAN_SECONDS:
            return (f"its training windows span {span / LATER_FOLD_SPAN_SECONDS:.2f} years; a fold after the "
                    f"first needs a year")
    return ""
