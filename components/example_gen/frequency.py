"""Time grids: a series' frequency (a pandas offset alias), its inference, and the points that follow.

Times are epoch seconds (UTC) throughout. A frequency is any pandas offset alias: fixed steps such
as ``30min``, ``1h`` or ``1D``, and calendar ones such as ``W-SAT`` or ``MS`` whose steps vary in
seconds. The grid of a series runs from its first timestamp in steps of its frequency.
"""

import numpy as np
import pandas as pd

_DAY = 86_400
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
# A frequency finer than the data by more than this many grid points a row is a mistake.
MAX_GRID_POINTS_PER_ROW = 100


class FrequencyError(ValueError):
    """A frequency is unknown, or cannot be inferred from the timestamps."""


def check_frequency(frequency: str) -> pd.DateOffset:
    """The pandas offset of ``frequency``; FrequencyError if pandas does not know it."""
    try:
        return pd.tseries.frequencies.to_offset(frequency)
    except ValueError as error:
        raise FrequencyError(f"unknown frequency '{frequency}' (use a pandas offset alias such as "
                             f"30min, 1h, 1D, W-SAT, MS)") from error


def _to_timestamps(seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)


def infer_frequency(times: np.ndarray) -> str:
    """Infers the frequency of sorted, distinct timestamps from their most common step.

    Gaps are allowed: the most common step decides. Weekly steps are anchored on the weekday of the
    first timestamp (``W-SAT``); steps of about a month, quarter or year become month, quarter or
    year starts or ends when every timestamp is one.

    Args:
      times: Increasing epoch seconds, at least 2.

    Returns:
      A pandas offset alias, e.g. ``h``, ``30min``, ``D``, ``W-SAT``, ``MS``.

    Raises:
      FrequencyError: The step is about a month, quarter or year but the timestamps are not all
        period starts or ends.
    """
    deltas = np.diff(times)
    values, counts = np.unique(deltas, return_counts=True)
    step = int(values[np.argmax(counts)])
    stamps = _to_timestamps(times)
    if step % (7 * _DAY) == 0:
        weeks = step // (7 * _DAY)
        return f"{weeks if weeks > 1 else ''}W-{_WEEKDAYS[stamps[0].dayofweek]}"
    for low, high, start, end in ((28, 31, "MS", "ME"), (89, 92, "QS", "QE"), (365, 366, "YS", "YE")):
        if low * _DAY <= step <= high * _DAY:
            midnight = (stamps.hour == 0) & (stamps.minute == 0) & (stamps.second == 0)
            for alias, on_anchor in ((start, stamps.is_month_start), (end, stamps.is_month_end)):
                if midnight.all() and on_anchor.all() and _anchor_matches(stamps, alias):
                    return alias
            raise FrequencyError(
                f"the most common step is {step / _DAY:g} days but the timestamps are not all "
                f"{start} or {end} period boundaries at midnight; give the frequency")
    return pd.tseries.frequencies.to_offset(pd.Timedelta(seconds=step)).freqstr


def _anchor_matches(stamps: pd.DatetimeIndex, alias: str) -> bool:
    return bool(pd.tseries.frequencies.to_offset(alias).is_on_offset(stamps[0]))


def grid(start: int, end: int, frequency: str) -> np.ndarray:
    """The grid points from ``start`` to at most ``end`` in steps of ``frequency``, epoch seconds.

    Args:
      start: Epoch seconds of the first point (the grid starts there, or at the first point of a
        calendar frequency after it).
      end: Epoch seconds of the last point.
      frequency: A pandas offset alias.

    Returns:
      Increasing int64 epoch seconds.
    """
    points = pd.date_range(_to_timestamps([start])[0], _to_timestamps([end])[0], freq=check_frequency(frequency))
    return points.as_unit("s").asi8.astype(np.int64)


def following(time: int, frequency: str, steps: int) -> np.ndarray:
    """The ``steps`` grid points after ``time``: when a forecast from that origin lands."""
    start = _to_timestamps([time])[0]
    points = pd.date_range(start, periods=steps + 1, freq=check_frequency(frequency))[1:]
    return points.as_unit("s").asi8.astype(np.int64)
