"""A series on its time grid: rows from any files put in order, duplicates merged, gaps handled.

Pure functions on numpy values, one series at a time (:func:`assemble`, :func:`apply_gap_policy`);
:func:`probe` reads the first series of the data to learn its frequency and length before a run.
"""

import dataclasses
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from components.example_gen import frequency as frequency_lib
from components.example_gen import reader
from components.example_gen.options import DataConfig
from components.example_gen.reader import Chunk, DataError, location


@dataclasses.dataclass(frozen=True)
class Series:
    """One series on its regular time grid; missing points are NaN.

    Attributes:
      series_id: Name of the series.
      frequency: Its pandas offset alias.
      times: Epoch seconds of the grid points, ``[n]``.
      target: Target values, ``[n]``.
      covariates: Covariate values, ``[n, C]``.
      files: The files its rows came from.
      file_index: Index into ``files`` of each grid point's row, -1 for a point with no row.
      rows: Data row of each grid point in its file, -1 for a point with no row.
    """

    series_id: str
    frequency: str
    times: np.ndarray
    target: np.ndarray
    covariates: np.ndarray
    files: tuple[str, ...]
    file_index: np.ndarray
    rows: np.ndarray

    def where(self, i: int) -> Optional[str]:
        """Where the row of grid point ``i`` is in its file, or None if it has no row."""
        if self.file_index[i] < 0:
            return None
        return location(self.files[self.file_index[i]], int(self.rows[i]))


def stamp(seconds: int) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp, for messages."""
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()


def _describe_offset(offset: str) -> str:
    return f"UTC offset {offset}" if offset else "no UTC offset"


def mixed_forms(forms: Sequence[tuple[str, bool, str, str]], column: str, series_id: str) -> Optional[str]:
    """What explains timestamps that fit no grid, if their forms do: mixed UTC offsets, or dates mixed with times.

    Args:
      forms: Each distinct way the series' timestamps are written, ``(offset, has_time, location,
        text)`` with its first occurrence, in the files' order (see :attr:`reader.Chunk.forms`).
      column: The timestamp column.
      series_id: The series.

    Returns:
      A message naming the two rows that differ, or None when the forms do not explain it.
    """
    # No offset reads as UTC, the same instants as +00:00.
    offsets = {}
    for form in forms:
        offsets.setdefault(form[0] or "+00:00", form)
    if len(offsets) > 1:
        a, b = list(offsets.values())[:2]
        return (f"{b[2]}: column '{column}': '{b[3]}' has {_describe_offset(b[0])} but {a[2]} has "
                f"{a[0] or 'none (read as UTC)'}: the timestamps of series '{series_id}' mix UTC offsets, so in UTC "
                "they fit no regular grid; write them all with one offset, or all without one (read as UTC)")
    dates = [f for f in forms if not f[1]]
    times = [f for f in forms if f[1]]
    if dates and times:
        date, time = dates[0], times[0]
        return (f"{time[2]}: column '{column}': '{time[3]}' has a time of day but {date[2]} ('{date[3]}') is a "
                f"date alone, read as midnight: series '{series_id}' mixes the two, so its times fit no regular "
                "grid; write them all one way")
    return None


def assemble(series_id: str, chunks: Iterable[Chunk], data: DataConfig) -> tuple[Series, dict[str, int]]:
    """Puts the rows of one series, from any files and in any order, on its time grid.

    Args:
      series_id: The series.
      chunks: Its rows, as read.
      data: Its columns, frequency and duplicate policy.

    Returns:
      The series, and counts for the summary: ``rows``, ``duplicates_merged`` and
      ``missing_points`` (grid points with no row or an empty target).

    Raises:
      DataError: A repeated timestamp (with the ``error`` policy), a frequency that cannot be
        inferred, or a timestamp off the grid; the message names the file and line.
    """
    chunks = list(chunks)
    files = tuple(c.file for c in chunks)
    times = np.concatenate([c.times for c in chunks])
    target = np.concatenate([c.target for c in chunks])
    covariates = np.concatenate([c.covariates for c in chunks])
    file_index = np.concatenate([np.full(len(c), i, dtype=np.int32) for i, c in enumerate(chunks)])
    file_rows = np.concatenate([c.rows for c in chunks])
    rows = len(times)
    order = np.argsort(times, kind="stable")
    times, target, covariates = times[order], target[order], covariates[order]
    file_index, file_rows = file_index[order], file_rows[order]

    def where(i: int) -> str:
        return location(files[file_index[i]], int(file_rows[i]))

    def no_grid(message: str) -> DataError:
        """The error of timestamps that fit no grid: what their forms explain, or ``message``."""
        written = sorted(((chunk.file, form[2]), (form[0], form[1], location(chunk.file, form[2]), form[3]))
                         for chunk in chunks for form in chunk.forms)
        return DataError(mixed_forms([f for _, f in written], data.columns.timestamp, series_id) or message)

    merged = 0
    repeated = np.flatnonzero(np.diff(times) == 0)
    if len(repeated):
        if data.duplicates == "error":
            i = repeated[0]
            raise DataError(f"{where(i + 1)}: column '{data.columns.timestamp}': timestamp {stamp(times[i])} "
                            f"of series '{series_id}' repeats {where(i)} (merge repeats with --duplicates)")
        frame = pd.DataFrame(np.column_stack([target, covariates]))
        grouped = frame.groupby(times, sort=True)
        if data.duplicates == "sum":
            values = grouped.sum(min_count=1)
        else:
            values = getattr(grouped, data.duplicates)()
        first = np.unique(times, return_index=True)[1]
        merged = rows - len(first)
        times, file_index, file_rows = times[first], file_index[first], file_rows[first]
        target, covariates = values.to_numpy()[:, 0], values.to_numpy()[:, 1:]

    if len(times) < 2:
        raise DataError(f"{where(0)}: series '{series_id}' has {len(times)} "
                        f"timestamp(s); at least 2 are needed to place it on a time grid")
    hours = data.business
    try:
        freq = data.frequency or frequency_lib.infer_frequency(times)
    except frequency_lib.FrequencyError as error:
        raise no_grid(f"{where(0)}: series '{series_id}': {error}") from error
    try:
        grid = frequency_lib.grid(int(times[0]), int(times[-1]), freq, hours)
    except frequency_lib.FrequencyError as error:
        raise no_grid(f"{where(0)}: series '{series_id}': --business-hours {data.business_hours} {error}") from error
    if len(grid) > frequency_lib.MAX_GRID_POINTS_PER_ROW * len(times):
        raise no_grid(f"{where(0)}: series '{series_id}': frequency {freq} gives {len(grid)} grid points for "
                      f"{len(times)} rows; is the frequency right?")
    position = np.minimum(np.searchsorted(grid, times), len(grid) - 1)
    # A business-hours grid is empty when even the first row is outside the hours.
    off_grid = grid[position] != times if len(grid) else np.ones(len(times), bool)
    if off_grid.any():
        i = int(np.argmax(off_grid))
        if hours is not None and not hours.contains(times[i:i + 1])[0]:
            day = pd.Timestamp(int(times[i]), unit="s").day_name()
            raise DataError(f"{where(i)}: column '{data.columns.timestamp}': timestamp {stamp(times[i])} (a {day}) of "
                            f"series '{series_id}' is outside its business hours, {hours} (--business-hours, "
                            "--business-days)")
        raise no_grid(f"{where(i)}: column '{data.columns.timestamp}': timestamp {stamp(times[i])} of "
                      f"series '{series_id}' is off its {freq} grid that starts at {stamp(grid[0])}")

    n = len(grid)
    gridded_target = np.full(n, np.nan)
    gridded_target[position] = target
    gridded_covariates = np.full((n, covariates.shape[1]), np.nan)
    gridded_covariates[position] = covariates
    gridded_file_index = np.full(n, -1, dtype=np.int32)
    gridded_file_index[position] = file_index
    gridded_rows = np.full(n, -1, dtype=np.int64)
    gridded_rows[position] = file_rows
    series = Series(series_id, freq, grid, gridded_target, gridded_covariates, files, gridded_file_index,
                    gridded_rows)
    # Missing: grid points without a row, and rows with an empty target.
    return series, {"rows": rows, "duplicates_merged": merged,
                    "missing_points": int(np.isnan(gridded_target).sum())}


# Closed hours as a share of the grid above which a series is worth a business-hours grid.
_HINT_MISSING_SHARE = 0.25


def business_hours_hint(series: Series) -> Optional[str]:
    """A hint to use ``--business-hours`` when the rows of a series on a grid of every step keep to
    business hours and its closed hours make many missing points; None otherwise."""
    hours = frequency_lib.observed_hours(series.times[series.file_index >= 0], series.frequency)
    if hours is None:
        return None
    closed = int((~hours.contains(series.times)).sum())
    if closed <= _HINT_MISSING_SHARE * len(series.times):
        return None
    days, clock = str(hours).split()
    return (f"series '{series.series_id}': its rows keep to {hours}, and its {series.frequency} grid has {closed} "
            f"missing points in the closed hours: --business-hours {clock} --business-days {days} makes a grid of "
            "the open hours only")


def interpolate_gaps(values: np.ndarray, max_gap: int) -> tuple[np.ndarray, int]:
    """Fills each run of at most ``max_gap`` missing points between two known ones linearly.

    Example: ``[1, nan, 3, nan, nan, nan, 7]`` with ``max_gap=2`` gives ``[1, 2, 3, nan, nan,
    nan, 7]``: the run of three is longer than 2 and stays missing.

    Args:
      values: ``[n]``, NaN where missing.
      max_gap: Longest run to fill.

    Returns:
      The filled copy and the number of points filled.
    """
    missing = np.isnan(values)
    if not missing.any():
        return values, 0
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    fillable = (run_starts > 0) & (run_ends < len(values)) & (run_ends - run_starts <= max_gap)
    if not fillable.any():
        return values, 0
    index = np.concatenate([np.arange(s, e) for s, e in zip(run_starts[fillable], run_ends[fillable])])
    known = np.flatnonzero(~missing)
    filled = values.copy()
    filled[index] = np.interp(index, known, values[known])
    return filled, len(index)


def apply_gap_policy(series: Series, data: DataConfig) -> tuple[Series, int]:
    """Applies ``data.gap_policy`` to the missing points of a series.

    Returns:
      The series (interpolated where the policy says so) and the number of points filled.

    Raises:
      DataError: The ``error`` policy and a missing point; the message names the empty cell, or
        the rows around a timestamp that has no row.
    """
    columns = [(data.columns.target, series.target)] + [
        (name, series.covariates[:, i]) for i, name in enumerate(data.columns.covariates)]
    if data.gap_policy == "error":
        for name, values in columns:
            missing = np.flatnonzero(np.isnan(values))
            if len(missing):
                i = int(missing[0])
                if series.where(i):
                    raise DataError(f"{series.where(i)}: column '{name}': missing value (gap policy 'error')")
                has_row = np.flatnonzero(series.file_index >= 0)
                before, after = has_row[has_row < i][-1], has_row[has_row > i][0]
                raise DataError(f"series '{series.series_id}': no row for {stamp(series.times[i])} on its "
                                f"{series.frequency} grid, between {series.where(before)} and "
                                f"{series.where(after)} (gap policy 'error')")
        return series, 0
    if data.gap_policy == "skip":
        return series, 0
    target, filled = interpolate_gaps(series.target, data.max_gap)
    covariates = series.covariates.copy()
    for i in range(covariates.shape[1]):
        covariates[:, i], count = interpolate_gaps(covariates[:, i], data.max_gap)
        filled += count
    return dataclasses.replace(series, target=target, covariates=covariates), filled


def probe(data: DataConfig) -> tuple[str, int, np.ndarray]:
    """The frequency, number of grid points and missing targets of the first series in the first file of ``data``.

    Reads one chunk of rows; what the example generator would infer, known before the run starts.
    The missing targets are those left after the gap policy's interpolation (bool ``[points]``).

    Raises:
      DataError: No file matches, or the first series cannot be put on a grid (the message names the file).
    """
    files = reader.match_files(data.path)
    for series_id, chunk in reader.read_chunks(files[0], data.columns):
        series, _ = assemble(series_id, [chunk], data)
        target = interpolate_gaps(series.target, data.max_gap)[0] if data.gap_policy == "interpolate" \
            else series.target
        return series.frequency, len(series.times), np.isnan(target)
    raise DataError(f"{files[0]}: no rows")
