"""Settings of the example generator: the data's columns and policies, the windows and the splits.

TensorFlow-free. ``pipeline/config.py`` composes these into the run's settings; the component
receives them as JSON (:meth:`WindowingOptions.to_json`). Every value is checked when the object is
built (:mod:`components.settings`), so a bad setting fails before any work, naming its flag.

Seasonality: the natural periods of a frequency (:func:`natural_periods`; 30 min: 48 and 336,
hourly: 24 and 168, daily: 7 and 365, weekly: 52, monthly: 12, quarterly: 4, business days: 5;
on business hours, the points of a business day and week: hourly 07:00-21:00 Mon-Fri: 14 and 70)
are the default seasonal periods, and the primary (shortest) period sets the default history
(:func:`default_history`). :func:`resolve` fills both in from the data's frequency.
"""

import dataclasses
import json
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from components import settings, windowing
from components.example_gen import frequency as frequency_lib
from components.example_gen.columns import Columns, DataError
from components.settings import ConfigError, setting

GAP_POLICIES = ("error", "interpolate", "skip")
DUPLICATE_POLICIES = ("error", "first", "last", "mean", "sum", "min", "max")
# One set of cut times for all series (from the span of all of them), or cuts per series.
SPLIT_SCOPES = ("global", "per_series")

_DAY = 86_400
_WEEK = 7 * _DAY
# The mean Gregorian year.
_YEAR = 31_556_952
# A seasonal period is used only when the data holds this many of its cycles.
MIN_CYCLES = 3
# The context holds --seasonal-cycles of the primary season only while they take at most this
# share of a series: each point of context is one window fewer per series.
MAX_CONTEXT_SHARE = 0.25
# With gaps and --gap-policy skip, a window whose context holds a missing point is left out: the
# context keeps fewer cycles where more would leave out more than this share of the windows that
# one cycle keeps.
MAX_WINDOWS_LOST_TO_CONTEXT = 0.1


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the series are, which columns hold what, and how to treat flawed data."""

    path: str = setting(help="the series: a CSV or Parquet file, a directory of them, or a glob (quote it)",
                        flag="--data")
    timestamp_column: str = setting("timestamp", help="ISO 8601 timestamps (with or without zone) or epoch seconds")
    target_column: str = setting("value", help="the value to forecast")
    series_id_column: Optional[str] = setting(None, help="column naming the series of each row (many series)")
    covariate_columns: tuple[str, ...] = setting(
        (), help="numeric columns known only up to the forecast origin (their histories go with each window), "
                 "comma-separated")
    future_covariate_columns: tuple[str, ...] = setting(
        (), help="numeric columns known in advance for the forecast steps too (holidays, planned prices, "
                 "weather forecasts), comma-separated; a request must send their H future values")
    frequency: Optional[str] = setting(
        None, help="pandas offset alias, e.g. 30min, 1h, 1D, W-SAT, MS (default: inferred per series)")
    duplicates: str = setting("error", choices=DUPLICATE_POLICIES,
                              help="repeated timestamps in a series: error, or merge them")
    gap_policy: str = setting("skip", choices=GAP_POLICIES,
                              help="missing points (no row, or an empty, NaN, NA or null value; inf or a value "
                                   "beyond ±1e15 is an error): error; interpolate runs up to --max-gap; skip "
                                   "windows that touch one")
    max_gap: int = setting(3, minimum=1, help="longest run of missing points that --gap-policy interpolate fills")
    business_hours: Optional[str] = setting(
        None, help="a grid of business hours HH:MM-HH:MM, e.g. 07:00-21:00 (on --business-days): nights and closed "
                   "days are no points and no gaps, the seasons are a business day and week; on the timestamps' "
                   "clock as read (UTC; written without offset: as written)")
    business_days: str = setting("Mon-Fri", help="with --business-hours: the open weekdays, e.g. Mon-Fri, Mon-Sat, "
                                                 "Mon,Wed,Fri")

    def __post_init__(self) -> None:
        settings.check_fields(self)
        if self.frequency:
            try:
                frequency_lib.check_frequency(self.frequency)
            except frequency_lib.FrequencyError as error:
                raise settings.fail(DataConfig, "frequency", str(error)) from error
        if self.business_hours is None and self.business_days != settings.default_of(DataConfig, "business_days"):
            raise settings.fail(DataConfig, "business_days", f"{self.business_days} needs --business-hours: the open "
                                                             "hours of those days")
        if self.business_hours is not None:
            try:
                frequency_lib.BusinessHours.parse(self.business_hours)
            except ValueError as error:
                raise settings.fail(DataConfig, "business_hours", str(error)) from error
            try:
                hours = frequency_lib.BusinessHours.parse(self.business_hours, self.business_days)
            except ValueError as error:
                raise settings.fail(DataConfig, "business_days", str(error)) from error
            if self.frequency:
                try:
                    frequency_lib.business_step(self.frequency, hours)
                except frequency_lib.FrequencyError as error:
                    raise settings.fail(DataConfig, "business_hours", f"{self.business_hours} {error}") from error
        try:
            _ = self.columns
        except DataError as error:
            raise ConfigError(str(error)) from error

    @property
    def business(self) -> Optional[frequency_lib.BusinessHours]:
        """The business hours of the grid, or None for a grid of every step."""
        if self.business_hours is None:
            return None
        return frequency_lib.BusinessHours.parse(self.business_hours, self.business_days)

    @property
    def columns(self) -> Columns:
        """The columns the reader reads; past covariates first, then the future ones."""
        return Columns(timestamp=self.timestamp_column, target=self.target_column, series_id=self.series_id_column,
                       covariates=self.covariate_columns + self.future_covariate_columns)


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """How series become examples: window lengths, seasonal lags and the split of time.

    ``history`` None and ``seasonal_periods`` empty mean "from the frequency" (:func:`resolve`).
    """

    history: Optional[int] = setting(None, minimum=1,
                                     help="window length L fed to the LSTM (default: from the frequency)")
    horizon: int = setting(4, minimum=1, help="forecast steps H")
    stride: int = setting(1, minimum=1, help="step between window starts")
    seasonal_periods: tuple[int, ...] = setting(
        (), minimum=2, flag="--season-length",
        help="seasonal period(s) in steps, comma-separated (default: the frequency's natural periods)")
    seasonal_lags: bool = setting(True, help="give the model each target step's value one season earlier")
    # 12 rather than 5: a daily series' weekly profile from 5 weeks is noisy (README, Benchmarks:
    # "A context of 12 cycles"); long seasons are cut by MAX_CONTEXT_SHARE first.
    seasonal_cycles: int = setting(
        12, minimum=1, help="with seasonal lags: whole cycles of the primary season that a window's context holds, "
                           "for the model's smoothed seasonal forecasts (fewer where they would exceed a quarter "
                           "of a series)")
    split_fractions: tuple[float, ...] = setting(
        (0.7, 0.15), above=0.0, help="train,eval fractions of the time span; test takes the rest")
    split_times: Optional[tuple[str, ...]] = setting(
        None, help="EVAL_START,TEST_START timestamps (ISO 8601), in place of --split-fractions")
    split_scope: str = setting("global", choices=SPLIT_SCOPES,
                               help="cut all series at the same times (from the span of all of them), or each "
                                    "series at fractions of its own span")
    split_gap: int = setting(0, minimum=0, help="grid points left out after each split cut")
    calendar_features: bool = setting(True, help="calendar features of every history and target step")
    # Filled in by resolve(): the frequency's mean step in seconds (the served graph computes the
    # calendar of each step from the origin's timestamp with it).
    step_seconds: float = 0.0
    # Filled in by resolve() on a business-hours grid: BusinessHours.to_tuple(), for the same calendar.
    business_hours: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        settings.check_fields(self)
        if self.split_times is None:
            try:
                windowing.check_split_fractions(self.split_fractions)
            except ValueError as error:
                raise settings.fail(WindowConfig, "split_fractions", str(error)) from error
        else:
            cuts = parse_split_times(self.split_times)
            if len(cuts) != len(windowing.SPLITS) - 1 or not cuts[0] < cuts[1]:
                raise settings.fail(WindowConfig, "split_times",
                                    f"must be two increasing timestamps, got {','.join(self.split_times)}")

    @property
    def context(self) -> int:
        """Points up to the origin that a window holds: C = max(L, longest season, cycles of the primary one).

        The model's recurrence reads the last L; the seasonal lags and the seasonal naive
        forecasts read a season back, however long (:func:`components.windowing.seasonal_lag_offsets`);
        with the lags, the smoothed seasonal forecasts (:func:`components.transform.seasonal_bases`)
        average ``seasonal_cycles`` cycles of the primary season.
        """
        return max([self.history or 1, *self.seasonal_periods, self.seasonal_cycles * self.primary_period])

    @property
    def primary_period(self) -> int:
        """The shortest seasonal period, the one the seasonal bases are built on; 0 without seasonal lags."""
        return min(self.seasonal_periods) if self.seasonal_lags and self.seasonal_periods else 0

    @property
    def resolved(self) -> bool:
        """Whether what is left to the data (history, step) is filled in (:func:`resolve`)."""
        return self.history is not None and self.step_seconds > 0


def parse_split_times(split_times: Sequence[str]) -> np.ndarray:
    """Epoch seconds of ISO 8601 cut timestamps (a timestamp without zone is UTC)."""
    try:
        stamps = pd.to_datetime(list(split_times), utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise settings.fail(WindowConfig, "split_times",
                            f"must be ISO 8601 timestamps, got {','.join(split_times)}") from error
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def natural_periods(frequency: str, hours: Optional[frequency_lib.BusinessHours] = None) -> tuple[int, ...]:
    """The seasonal periods, in steps, that a frequency's calendar implies, shortest first.

    Examples: ``30min`` gives (48, 336) (a day, a week); ``h`` (24, 168); ``D`` (7, 365); ``W-SAT``
    (52,); ``MS`` (12,); ``QS`` (4,); ``B`` (5,); ``YS`` () (no season). On business hours the
    points of a business day and of a business week: ``h`` on 07:00-21:00 Mon-Fri gives (14, 70).

    Sub-daily data gets the day and the week (a year of half-hours is too long a season to use),
    daily data the week and the year, weekly data the year.
    """
    if hours is not None:
        per_day = hours.steps_per_day(frequency_lib.business_step(frequency, hours))
        return tuple(dict.fromkeys(m for m in (per_day, per_day * len(hours.weekdays)) if m >= 2))
    offset = frequency_lib.check_frequency(frequency)
    name = offset.name if hasattr(offset, "name") else offset.freqstr
    n = getattr(offset, "n", 1) or 1
    if name.startswith(("Y", "A", "BY", "BA")):
        return ()
    if name.startswith(("Q", "BQ")):
        return (4 // n,) if 4 % n == 0 and n < 4 else ()
    if name.startswith(("M", "BM", "SM", "CBM")):
        return (12 // n,) if 12 % n == 0 and n < 12 else ()
    if name.startswith("W"):
        return (round(_YEAR / (n * _WEEK)),)
    if name in ("B", "C"):
        return (5 // n,) if 5 % n == 0 and n < 5 else ()
    step = pd.Timedelta(offset).total_seconds()
    cycles = (_DAY, _WEEK) if step < _DAY else (_WEEK, _YEAR)
    periods = []
    for cycle in cycles:
        ratio = cycle / step
        # A period must be a whole number of steps (365.24 days round to 365).
        if ratio >= 2 and (abs(ratio - round(ratio)) < 1e-9 or cycle == _YEAR):
            periods.append(round(ratio))
    return tuple(periods)


def default_history(periods: Sequence[int], horizon: int) -> int:
    """The default history L: two primary seasons (one when a season is longer than 26 steps), at least 2H and 8.

    Longer seasons reach the model through the seasonal lags, not a longer recurrence.
    """
    primary = min(periods) if periods else 0
    seasons = primary * (2 if primary <= 26 else 1)
    return max(seasons, 2 * horizon, 8)


def context_cycles(cycles: int, periods: Sequence[int], points: int) -> int:
    """The cycles of the primary season a context holds: ``cycles``, fewer where they would take more
    than :data:`MAX_CONTEXT_SHARE` of a series of ``points`` points, at least one.

    Example: monthly (12) on 40 points keeps 1 cycle (two would be 24 > 10); on 500 points, 5.
    """
    if not periods:
        return cycles
    return max(1, min(cycles, int(points * MAX_CONTEXT_SHARE) // min(periods)))


def gap_tolerant_cycles(windows: WindowConfig, missing: np.ndarray) -> int:
    """The most cycles of context, up to ``windows.seasonal_cycles``, that keep the windows of a series with gaps.

    A window needs its C context points (:attr:`WindowConfig.context`) and H targets present. More
    cycles give a longer C, so each missing point rules out more windows; this keeps the largest
    number of cycles whose windows are at least ``1 - MAX_WINDOWS_LOST_TO_CONTEXT`` of those of one
    cycle.

    Example: the bundled CO2 (weekly, season 52, L = 52, H = 4, 2,284 weeks with 59 missing):
    one cycle keeps 1,743 windows, two 1,479 (85%), five 961, so the context keeps one cycle.

    Args:
      windows: The settings, with ``history`` and ``seasonal_periods`` resolved.
      missing: bool ``[n]``: the series' missing points, after the gap policy.
    """
    def kept(cycles: int) -> int:
        span = dataclasses.replace(windows, seasonal_cycles=cycles).context + windows.horizon
        if span > len(missing):
            return 0
        return int(windowing.complete_spans(missing, np.arange(len(missing) - span + 1), span).sum())

    if windows.seasonal_cycles <= 1:
        return windows.seasonal_cycles
    least = (1 - MAX_WINDOWS_LOST_TO_CONTEXT) * kept(1)
    return next((k for k in range(windows.seasonal_cycles, 1, -1) if kept(k) >= least), 1)


def _sample_offsets(frequency: str) -> np.ndarray:
    # Seconds from the first of 121 grid points of the frequency (ten years of months) to each.
    start = pd.Timestamp("2000-01-01", tz="UTC")
    points = pd.date_range(start, periods=121, freq=frequency_lib.check_frequency(frequency))
    return (points - start).total_seconds().to_numpy()


def step_seconds(frequency: str) -> float:
    """The mean step of a frequency in seconds (a month: a twelfth of the mean Gregorian year)."""
    return float(_sample_offsets(frequency)[-1] / 120)


def step_drift(frequency: str) -> float:
    """How far (in steps) a grid's points stray from a grid of its mean step (:func:`step_seconds`):
    months about 0.05 (28 to 31 days), business days over 0.4 (weekends), fixed steps 0."""
    offsets = _sample_offsets(frequency)
    mean = offsets[-1] / 120
    return float(np.abs(offsets - mean * np.arange(len(offsets))).max() / mean)


def resolve(windows: WindowConfig, frequency: str, points: int,
            hours: Optional[frequency_lib.BusinessHours] = None,
            missing: Optional[np.ndarray] = None) -> WindowConfig:
    """Fills in what ``windows`` leaves to the data: seasonal periods, history, cycles of context and step.

    Args:
      windows: The settings as given.
      frequency: The data's frequency (given, or inferred from a sample).
      points: The length of a series of the data: periods with fewer than :data:`MIN_CYCLES`
        cycles in it are left out of the defaults.
      hours: The business hours of the grid, if it has them (:attr:`DataConfig.business`).
      missing: The missing points of that series after the gap policy, if known: fewer cycles
        of context where gaps would rule out many windows (:func:`gap_tolerant_cycles`).

    Returns:
      Settings with ``history``, ``seasonal_periods``, ``step_seconds`` and ``business_hours`` set.

    Raises:
      ConfigError: Business hours and a frequency whose step does not divide them.
    """
    if hours is not None:
        try:
            frequency_lib.business_step(frequency, hours)
        except frequency_lib.FrequencyError as error:
            raise settings.fail(DataConfig, "business_hours", f"{str(hours).split()[-1]} {error}") from error
    periods = windows.seasonal_periods
    if not periods:
        periods = tuple(m for m in natural_periods(frequency, hours) if MIN_CYCLES * m <= points)
    history = windows.history or default_history(periods, windows.horizon)
    resolved = dataclasses.replace(windows, seasonal_periods=periods, history=history,
                                   seasonal_cycles=context_cycles(windows.seasonal_cycles, periods, points))
    if missing is not None and missing.any():
        resolved = dataclasses.replace(resolved, seasonal_cycles=gap_tolerant_cycles(resolved, missing))
    return dataclasses.replace(resolved, step_seconds=step_seconds(frequency),
                               business_hours=hours.to_tuple() if hours is not None else ())


@dataclasses.dataclass(frozen=True)
class WindowingOptions:
    """Everything the example generator does to the data: its settings, resolved and checked."""

    data: DataConfig
    windows: WindowConfig

    def __post_init__(self) -> None:
        if not self.windows.resolved:
            raise ConfigError("the window settings must be resolved against the data first (options.resolve)")

    @property
    def columns(self) -> Columns:
        return self.data.columns

    @classmethod
    def of(cls, points: int = 10**6, **values: Any) -> "WindowingOptions":
        """Options from flat settings, each a field of DataConfig or WindowConfig (``path`` may be left out).

        What the settings leave to the data is resolved against their ``frequency`` (daily when
        none is given) and a series of ``points`` points.
        """
        data_fields = {f.name for f in dataclasses.fields(DataConfig)}
        data = DataConfig(**{"path": "", **{k: v for k, v in values.items() if k in data_fields}})
        windows = WindowConfig(**{k: v for k, v in values.items() if k not in data_fields})
        return cls(data, resolve(windows, data.frequency or ("h" if data.business else "D"), points, data.business))

    def to_json(self) -> str:
        return json.dumps({"data": dataclasses.asdict(self.data), "windows": dataclasses.asdict(self.windows)},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WindowingOptions":
        values = json.loads(text)
        return cls(settings.from_dict(DataConfig, values["data"]), settings.from_dict(WindowConfig, values["windows"]))
