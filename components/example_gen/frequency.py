"""Time grids: a series' frequency (a pandas offset alias), its inference, and calendar features.

Times are epoch seconds (UTC) throughout. A frequency is any pandas offset alias: fixed steps such
as ``30min``, ``1h`` or ``1D``, and calendar ones such as ``W-SAT`` or ``MS`` whose steps vary in
seconds. The grid of a series runs from its first timestamp in steps of its frequency.
"""

import numpy as np
import pandas as pd

from components import features

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


def typical_step(grid_times: np.ndarray) -> float:
    """Mean step of a grid in seconds (calendar frequencies vary around it)."""
    if len(grid_times) < 2:
        return float("inf")
    return float(grid_times[-1] - grid_times[0]) / (len(grid_times) - 1)


def calendar_features(origin_times: np.ndarray, step_seconds: float) -> dict[str, np.ndarray]:
    """Sine and cosine of the calendar cycles longer than the time step, at each forecast origin.

    A cycle no longer than the step carries no information (weekly data has the same weekday at
    every point), so it is left out: hourly data gets hour of day, day of week and day of year;
    weekly data only day of year. Times are read in UTC.

    Args:
      origin_times: Epoch seconds ``[N]``.
      step_seconds: The series' step (see :func:`typical_step`).

    Returns:
      ``{name: float32 [N]}`` for the names in :data:`features.CALENDAR_FEATURES` that apply.
    """
    t = np.asarray(origin_times, dtype=np.int64)
    seconds_of_day = t % _DAY
    stamps = t.astype("datetime64[s]")
    year_start = stamps.astype("datetime64[Y]").astype("datetime64[s]")
    next_year = (stamps.astype("datetime64[Y]") + 1).astype("datetime64[s]")
    phases = {
        "hour_of_day": seconds_of_day / _DAY,
        # The epoch, 1970-01-01, was a Thursday: Monday is 0.
        "day_of_week": (((t // _DAY) + 3) % 7 + seconds_of_day / _DAY) / 7,
        "day_of_year": (stamps - year_start).astype(np.float64) / (next_year - year_start).astype(np.float64),
    }
    result = {}
    for name, period in features.CALENDAR_CYCLES:
        if period > step_seconds:
            angle = 2 * np.pi * phases[name]
            result[f"{name}_sin"] = np.sin(angle).astype(np.float32)
            result[f"{name}_cos"] = np.cos(angle).astype(np.float32)
    return result


def following(time: int, frequency: str, steps: int) -> np.ndarray:
    """The ``steps`` grid points after ``time``: when a forecast from that origin lands."""
    start = _to_timestamps([time])[0]
    points = pd.date_range(start, periods=steps + 1, freq=check_frequency(frequency))[1:]
    return points.as_unit("s").asi8.astype(np.int64)
