"""Time grids: a series' frequency (a pandas offset alias), its inference, and the points that follow.

Times are epoch seconds (UTC) throughout. A frequency is any pandas offset alias: fixed steps such
as ``30min``, ``1h`` or ``1D``, and calendar ones such as ``W-SAT`` or ``MS`` whose steps vary in
seconds. The grid of a series runs from its first timestamp in steps of its frequency.

A business-hours grid (:class:`BusinessHours`, e.g. 07:00-21:00 Monday to Friday) holds only the
points of a fixed step that fall inside the open hours of the open days, like pandas'
``CustomBusinessHour`` but for any step that divides the open hours: its steps jump over nights
and closed days, which are then no missing points. The hours are read on the clock of the
timestamps as parsed: UTC (timestamps written without offset are read as UTC, so local times
without offset keep their local hours).
"""

import dataclasses
import re
from typing import Optional

import numpy as np
import pandas as pd

_DAY = 86_400
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
# A frequency finer than the data by more than this many grid points a row is a mistake.
MAX_GRID_POINTS_PER_ROW = 100


class FrequencyError(ValueError):
    """A frequency is unknown, or cannot be inferred from the timestamps."""


_CLOCK = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_DAY_NAMES = tuple(day.capitalize() for day in _WEEKDAYS)


@dataclasses.dataclass(frozen=True)
class BusinessHours:
    """Open hours on open weekdays: the points a business-hours grid holds.

    Attributes:
      opens: Seconds after midnight of the first open moment.
      closes: Seconds after midnight when it closes (up to 86400); a point at it is closed.
      weekdays: The open days, Monday 0, increasing.
    """

    opens: int
    closes: int
    weekdays: tuple[int, ...]

    @classmethod
    def parse(cls, hours: str, days: str = "Mon-Fri") -> "BusinessHours":
        """Business hours from text: ``07:00-21:00`` and ``Mon-Fri`` (or ``Mon,Wed,Fri``, ``Mon-Wed,Sat``).

        Raises:
          ValueError: A text that does not read as hours or weekdays; the message says what is expected.
        """
        match = _CLOCK.fullmatch(hours.strip())
        if not match:
            raise ValueError(f"must be HH:MM-HH:MM, e.g. 07:00-21:00; got '{hours}'")
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"must be times of day from 00:00 to 24:00; got '{hours}'")
        opens, closes = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if closes <= opens:
            raise ValueError(f"must close after it opens on the same day; got '{hours}'")
        weekdays = set()
        for part in (p.strip().capitalize() for p in days.split(",") if p.strip()):
            first, _, last = part.partition("-")
            if first not in _DAY_NAMES or (last and last.capitalize() not in _DAY_NAMES):
                raise ValueError(f"must be weekdays or ranges of them, e.g. Mon-Fri or Mon,Wed,Fri; got '{days}'")
            a, b = _DAY_NAMES.index(first), _DAY_NAMES.index(last.capitalize()) if last else None
            weekdays.update(range(a, (b if b is not None else a) + 1))
        if not weekdays:
            raise ValueError(f"must be weekdays or ranges of them, e.g. Mon-Fri or Mon,Wed,Fri; got '{days}'")
        return cls(opens, closes, tuple(sorted(weekdays)))

    @classmethod
    def from_tuple(cls, values: tuple[int, ...]) -> Optional["BusinessHours"]:
        """The hours that :meth:`to_tuple` wrote, or None for ``()``."""
        return cls(int(values[0]), int(values[1]), tuple(int(v) for v in values[2:])) if values else None

    def to_tuple(self) -> tuple[int, ...]:
        """``(opens, closes, *weekdays)``: plain numbers, for settings that go through JSON."""
        return (self.opens, self.closes, *self.weekdays)

    def __str__(self) -> str:
        runs, start = [], None
        for day in range(8):
            if day < 7 and day in self.weekdays:
                start = day if start is None else start
            elif start is not None:
                runs.append(_DAY_NAMES[start] if start == day - 1 else f"{_DAY_NAMES[start]}-{_DAY_NAMES[day - 1]}")
                start = None
        clock = lambda s: f"{s // 3600:02d}:{s % 3600 // 60:02d}"  # noqa: E731
        return f"{','.join(runs)} {clock(self.opens)}-{clock(self.closes)}"

    def contains(self, times: np.ndarray) -> np.ndarray:
        """Whether each of epoch seconds ``times`` is inside the open hours of an open day."""
        times = np.asarray(times, np.int64)
        seconds = times % _DAY
        weekday = (times // _DAY + 3) % 7  # the epoch was a Thursday
        return (seconds >= self.opens) & (seconds < self.closes) & np.isin(weekday, self.weekdays)

    def steps_per_day(self, step: int) -> int:
        """Grid points in an open day for a fixed step (which must divide the open hours)."""
        return (self.closes - self.opens) // step


def observed_hours(times: np.ndarray, frequency: str) -> Optional[BusinessHours]:
    """The business hours a sub-daily series keeps to, when its rows leave hours of the day or days out.

    The hours run from the earliest time of day of a row to a step after the latest; the days are
    the weekdays with rows (all seven for a series shorter than two weeks, too short to tell).

    Args:
      times: Epoch seconds of the rows, increasing.
      frequency: The series' frequency.

    Returns:
      The hours, or None when the rows cover every hour of every day, or the step is not a fixed
      one that divides a day.
    """
    try:
        step = int(pd.Timedelta(check_frequency(frequency)).total_seconds())
    except (ValueError, TypeError, FrequencyError):
        return None
    if step <= 0 or step >= _DAY or _DAY % step or len(times) < 2:
        return None
    seconds = np.asarray(times, np.int64) % _DAY
    opens, closes = int(seconds.min()), int(seconds.max()) + step
    weekdays = tuple(int(d) for d in np.unique((np.asarray(times, np.int64) // _DAY + 3) % 7))
    if times[-1] - times[0] < 14 * _DAY:
        weekdays = tuple(range(7))
    if closes - opens >= _DAY and len(weekdays) == 7:
        return None
    return BusinessHours(opens, closes, weekdays)


def business_step(frequency: str, hours: BusinessHours) -> int:
    """The fixed step in seconds of a business-hours grid of ``frequency``.

    Raises:
      FrequencyError: The frequency is not a fixed step that divides the open hours (then every
        open day would not hold the same points).
    """
    offset = check_frequency(frequency)
    try:
        step = int(pd.Timedelta(offset).total_seconds())
    except (ValueError, TypeError):
        step = 0
    open_seconds = hours.closes - hours.opens
    if step <= 0 or open_seconds % step or _DAY % step:
        raise FrequencyError(f"needs a step that divides its {open_seconds / 3600:g} hours, such as 1h or 30min; "
                             f"the frequency is {frequency}")
    return step


def business_step_times(origin: int, offsets: np.ndarray, step: int, hours: BusinessHours) -> np.ndarray:
    """The times ``offsets`` business steps from ``origin``, a point of the business-hours grid.

    Counts open days and the points inside each: the transform computes the same in the served
    graph (:func:`components.transform.business_step_times`), so both agree by construction of
    the arithmetic and this one is checked against :func:`grid`.

    Args:
      origin: Epoch seconds of a grid point.
      offsets: Steps from it, negative into the past, ``[n]``.
      step: The fixed step in seconds (see :func:`business_step`).
      hours: The open hours and days.

    Returns:
      int64 epoch seconds ``[n]``.
    """
    offsets = np.asarray(offsets, np.int64)
    per_day, open_days = hours.steps_per_day(step), len(hours.weekdays)
    rank = np.zeros(7, np.int64)
    rank[list(hours.weekdays)] = np.arange(open_days)
    day, seconds = divmod(int(origin), _DAY)
    first = hours.opens + (seconds - hours.opens) % step  # the day's first point, on the grid's phase
    week, weekday = divmod(day + 3, 7)  # weeks from a Monday
    position = (week * open_days + rank[weekday]) * per_day + (seconds - first) // step + offsets
    open_day, slot = np.divmod(position, per_day)
    week, nth = np.divmod(open_day, open_days)
    days = week * 7 + np.asarray(hours.weekdays, np.int64)[nth] - 3
    return days * _DAY + first + slot * step


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


def grid(start: int, end: int, frequency: str, hours: Optional[BusinessHours] = None) -> np.ndarray:
    """The grid points from ``start`` to at most ``end`` in steps of ``frequency``, epoch seconds.

    Args:
      start: Epoch seconds of the first point (the grid starts there, or at the first point of a
        calendar frequency after it).
      end: Epoch seconds of the last point.
      frequency: A pandas offset alias.
      hours: Business hours: only the points inside them (the steps on the phase of ``start``).

    Returns:
      Increasing int64 epoch seconds.
    """
    if hours is not None:
        step = business_step(frequency, hours)
        points = np.arange(int(start), int(end) + 1, step, dtype=np.int64)
        return points[hours.contains(points)]
    points = pd.date_range(_to_timestamps([start])[0], _to_timestamps([end])[0], freq=check_frequency(frequency))
    return points.as_unit("s").asi8.astype(np.int64)


def following(time: int, frequency: str, steps: int, hours: Optional[BusinessHours] = None) -> np.ndarray:
    """The ``steps`` grid points after ``time``: when a forecast from that origin lands."""
    if hours is not None:
        return business_step_times(time, np.arange(1, steps + 1), business_step(frequency, hours), hours)
    start = _to_timestamps([time])[0]
    points = pd.date_range(start, periods=steps + 1, freq=check_frequency(frequency))[1:]
    return points.as_unit("s").asi8.astype(np.int64)
