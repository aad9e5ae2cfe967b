"""Per-series logic of the example generator: validate, put on the time grid, fill or skip gaps,
cut windows, assign splits, encode tf.Examples, and summarize.

Pure functions on numpy values, one series at a time; the Beam executor only moves their results
around. Window and split arithmetic is :mod:`components.windowing`.
"""

import collections
import dataclasses
import json
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import tensorflow as tf
from tfx_bsl.coders import example_coder

from components import features, windowing
from components.example_gen import frequency as frequency_lib
from components.example_gen import reader
from components.example_gen.reader import Chunk, Columns, DataError, location
from pipeline import config as config_lib

GAP_POLICIES = ("error", "interpolate", "skip")
DUPLICATE_POLICIES = ("error", "first", "last", "mean", "sum", "min", "max")
# Windows per encoded batch: bounds the memory of one element of the Beam pipeline.
BATCH_WINDOWS = 4096


class OptionsError(ValueError):
    """The windowing options contradict each other or are out of range."""


@dataclasses.dataclass(frozen=True)
class WindowingOptions:
    """Everything the example generator does to the data, checked once when it is built.

    Attributes:
      data: Where the data is, its columns, its frequency, and the duplicate and gap policies.
      windows: History, horizon, stride, the split cuts and the calendar features.
    """

    data: config_lib.DataConfig
    windows: config_lib.WindowConfig = config_lib.WindowConfig()

    def __post_init__(self):
        try:
            self._check()
        except ValueError as error:
            raise OptionsError(str(error)) from error

    def _check(self) -> None:
        data, windows = self.data, self.windows
        if data.gap_policy not in GAP_POLICIES:
            raise ValueError(f"gap_policy must be one of {GAP_POLICIES}, got '{data.gap_policy}'")
        if data.duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got '{data.duplicates}'")
        if data.max_gap < 1 or windows.split_gap < 0:
            raise ValueError(f"max_gap must be >= 1 and split_gap >= 0, got {data.max_gap}, {windows.split_gap}")
        windowing.window_starts(0, windows.history, windows.horizon, windows.stride)  # checks L, H, S
        if data.frequency:
            frequency_lib.check_frequency(data.frequency)
        if windows.split_times is None:
            windowing.check_split_fractions(windows.split_fractions)
        else:
            cuts = parse_split_times(windows.split_times)
            if len(cuts) != len(windowing.SPLITS) - 1 or not cuts[0] < cuts[1]:
                raise ValueError(f"split_times must be two increasing timestamps, got {list(windows.split_times)}")
        _ = self.columns  # Columns checks the names

    @property
    def columns(self) -> Columns:
        return Columns(timestamp=self.data.timestamp_column, target=self.data.target_column,
                       series_id=self.data.series_id_column, covariates=self.data.covariate_columns)

    @classmethod
    def of(cls, **settings: Any) -> "WindowingOptions":
        """Options from flat settings, each a field of DataConfig or WindowConfig (``path`` may be left out)."""
        data_fields = {f.name for f in dataclasses.fields(config_lib.DataConfig)}
        data = {k: v for k, v in settings.items() if k in data_fields}
        windows = {k: v for k, v in settings.items() if k not in data_fields}
        return cls(config_lib.DataConfig(**{"path": "", **data}), config_lib.WindowConfig(**windows))

    def to_json(self) -> str:
        return json.dumps({"data": dataclasses.asdict(self.data), "windows": dataclasses.asdict(self.windows)},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WindowingOptions":
        values = json.loads(text)
        return cls(config_lib.data_config_from_custom_config(values),
                   config_lib.window_config_from_custom_config(values))


def parse_split_times(split_times: Sequence[str]) -> np.ndarray:
    """Epoch seconds of ISO 8601 cut timestamps (a timestamp without zone is UTC)."""
    try:
        stamps = pd.to_datetime(list(split_times), utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise ValueError(f"split_times must be ISO 8601 timestamps, got {list(split_times)}") from error
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


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


@dataclasses.dataclass(frozen=True)
class SplitWindows:
    """The windows of one series that fall into one split (or a batch of them).

    Attributes:
      series_id: The series.
      split: One of :data:`windowing.SPLITS`.
      histories: ``[N, L]``.
      targets: ``[N, H]``.
      origin_times: Epoch seconds of each forecast origin (last history point), ``[N]``.
      target_times: Epoch seconds of each target step, ``[N, H]``.
      covariates: History of each covariate column, ``{column: [N, L]}``.
      calendar: Calendar features of each origin, ``{feature name: [N]}``.
    """

    series_id: str
    split: str
    histories: np.ndarray
    targets: np.ndarray
    origin_times: np.ndarray
    target_times: np.ndarray
    covariates: dict[str, np.ndarray]
    calendar: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.origin_times)

    def select(self, index: Any) -> "SplitWindows":
        return dataclasses.replace(
            self, histories=self.histories[index], targets=self.targets[index],
            origin_times=self.origin_times[index], target_times=self.target_times[index],
            covariates={k: v[index] for k, v in self.covariates.items()},
            calendar={k: v[index] for k, v in self.calendar.items()})


def _stamp(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()


def assemble(series_id: str, chunks: Iterable[Chunk], options: WindowingOptions) -> tuple[Series, dict[str, int]]:
    """Puts the rows of one series, from any files and in any order, on its time grid.

    Args:
      series_id: The series.
      chunks: Its rows, as read.
      options: Frequency and duplicate policy.

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

    merged = 0
    repeated = np.flatnonzero(np.diff(times) == 0)
    if len(repeated):
        if options.data.duplicates == "error":
            i = repeated[0]
            raise DataError(f"{where(i + 1)}: column '{options.columns.timestamp}': timestamp {_stamp(times[i])} "
                            f"of series '{series_id}' repeats {where(i)} (merge repeats with --duplicates)")
        frame = pd.DataFrame(np.column_stack([target, covariates]))
        grouped = frame.groupby(times, sort=True)
        if options.data.duplicates == "sum":
            values = grouped.sum(min_count=1)
        else:
            values = getattr(grouped, options.data.duplicates)()
        first = np.unique(times, return_index=True)[1]
        merged = rows - len(first)
        times, file_index, file_rows = times[first], file_index[first], file_rows[first]
        target, covariates = values.to_numpy()[:, 0], values.to_numpy()[:, 1:]

    if len(times) < 2:
        raise DataError(f"{where(0)}: series '{series_id}' has {len(times)} "
                        f"timestamp(s); at least 2 are needed to place it on a time grid")
    try:
        freq = options.data.frequency or frequency_lib.infer_frequency(times)
        grid = frequency_lib.grid(int(times[0]), int(times[-1]), freq)
    except frequency_lib.FrequencyError as error:
        raise DataError(f"{where(0)}: series '{series_id}': {error}") from error
    if len(grid) > frequency_lib.MAX_GRID_POINTS_PER_ROW * len(times):
        raise DataError(f"{where(0)}: series '{series_id}': frequency {freq} gives {len(grid)} grid points for "
                        f"{len(times)} rows; is the frequency right?")
    position = np.minimum(np.searchsorted(grid, times), len(grid) - 1)
    off_grid = grid[position] != times
    if off_grid.any():
        i = int(np.argmax(off_grid))
        raise DataError(f"{where(i)}: column '{options.columns.timestamp}': timestamp {_stamp(times[i])} of "
                        f"series '{series_id}' is off its {freq} grid that starts at {_stamp(grid[0])}")

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


def apply_gap_policy(series: Series, options: WindowingOptions) -> tuple[Series, int]:
    """Applies ``options.data.gap_policy`` to the missing points of a series.

    Returns:
      The series (interpolated where the policy says so) and the number of points filled.

    Raises:
      DataError: The ``error`` policy and a missing point; the message names the empty cell, or
        the rows around a timestamp that has no row.
    """
    columns = [(options.columns.target, series.target)] + [
        (name, series.covariates[:, i]) for i, name in enumerate(options.columns.covariates)]
    if options.data.gap_policy == "error":
        for name, values in columns:
            missing = np.flatnonzero(np.isnan(values))
            if len(missing):
                i = int(missing[0])
                if series.where(i):
                    raise DataError(f"{series.where(i)}: column '{name}': missing value (gap policy 'error')")
                has_row = np.flatnonzero(series.file_index >= 0)
                before, after = has_row[has_row < i][-1], has_row[has_row > i][0]
                raise DataError(f"series '{series.series_id}': no row for {_stamp(series.times[i])} on its "
                                f"{series.frequency} grid, between {series.where(before)} and "
                                f"{series.where(after)} (gap policy 'error')")
        return series, 0
    if options.data.gap_policy == "skip":
        return series, 0
    target, filled = interpolate_gaps(series.target, options.data.max_gap)
    covariates = series.covariates.copy()
    for i in range(covariates.shape[1]):
        covariates[:, i], count = interpolate_gaps(covariates[:, i], options.data.max_gap)
        filled += count
    return dataclasses.replace(series, target=target, covariates=covariates), filled


def cut_times(series: Series, options: WindowingOptions) -> np.ndarray:
    """The split cut times of a series: the given timestamps, or fractions of its span."""
    if options.windows.split_times is not None:
        return parse_split_times(options.windows.split_times)
    return windowing.split_cut_times(series.times[0], series.times[-1], options.windows.split_fractions)


def cut_windows(series: Series, options: WindowingOptions) -> tuple[list[SplitWindows], dict[str, int]]:
    """Cuts a series into windows, drops incomplete ones and assigns the rest to splits.

    Args:
      series: On its grid, after the gap policy.
      options: L, H, S, the split cuts and the calendar features.

    Returns:
      One :class:`SplitWindows` per split in :data:`windowing.SPLITS` order (possibly empty), and
      counts of the windows dropped: ``incomplete`` (a missing point), ``straddling`` (targets on
      both sides of a cut) and ``split_gap``.
    """
    L, H = options.windows.history, options.windows.horizon  # noqa: N806 (the names of the docs)
    starts = windowing.window_starts(len(series.times), L, H, options.windows.stride)
    complete = windowing.complete_spans(np.isnan(series.target), starts, L + H)
    for i in range(series.covariates.shape[1]):
        complete &= windowing.complete_spans(np.isnan(series.covariates[:, i]), starts, L)
    cuts = windowing.cut_indices(series.times, cut_times(series, options))
    split_of = windowing.assign_splits(starts + L, starts + L + H - 1, cuts, gap=options.windows.split_gap)
    dropped = {
        "incomplete": int((~complete).sum()),
        "straddling": int((complete & (split_of == windowing.DROPPED_STRADDLING)).sum()),
        "split_gap": int((complete & (split_of == windowing.DROPPED_SPLIT_GAP)).sum()),
    }
    keep = complete & (split_of >= 0)
    starts, split_of = starts[keep], split_of[keep]
    origins = series.times[starts + L - 1]
    calendar = frequency_lib.calendar_features(origins, frequency_lib.typical_step(series.times)) \
        if options.windows.calendar_features else {}
    everything = SplitWindows(
        series_id=series.series_id, split="",
        histories=windowing.spans(series.target, starts, L).astype(np.float32),
        targets=windowing.spans(series.target, starts + L, H).astype(np.float32),
        origin_times=origins,
        target_times=windowing.spans(series.times, starts + L, H),
        covariates={name: windowing.spans(series.covariates[:, i], starts, L).astype(np.float32)
                    for i, name in enumerate(options.columns.covariates)},
        calendar=calendar)
    result = [dataclasses.replace(everything.select(split_of == index), split=name)
              for index, name in enumerate(windowing.SPLITS)]
    return result, dropped


def window_series(series_id: str, chunks: Iterable[Chunk],
                  options: WindowingOptions) -> tuple[list[SplitWindows], dict[str, Any]]:
    """All the per-series work: grid, gap policy, windows and splits, and the series' summary.

    Returns:
      The windows of each split (empty for a series too short to window) and the series' report.
    """
    series, counts = assemble(series_id, chunks, options)
    report: dict[str, Any] = {"series_id": series_id, "frequency": series.frequency,
                              "frequency_inferred": options.data.frequency is None, "points": len(series.times),
                              **counts, "interpolated_points": 0, "skipped": None,
                              "windows": dict.fromkeys(windowing.SPLITS, 0)}
    needed = options.windows.history + options.windows.horizon
    if len(series.times) < needed:
        report["skipped"] = f"{len(series.times)} points, needs at least history + horizon = {needed}"
        return [], report
    series, report["interpolated_points"] = apply_gap_policy(series, options)
    splits, report["dropped_windows"] = cut_windows(series, options)
    report["windows"] = {w.split: len(w) for w in splits}
    if not any(report["windows"].values()):
        report["skipped"] = "no complete window inside a split"
    return splits, report


def chunks_by_series(files: Sequence[str], columns: Columns) -> dict[str, list[Chunk]]:
    """Every row of ``files``, read in this process and grouped per series (small data only)."""
    chunks = collections.defaultdict(list)
    for path in files:
        for series_id, chunk in reader.read_chunks(path, columns):
            chunks[series_id].append(chunk)
    return chunks


def window_files(files: Sequence[str], options: WindowingOptions) -> dict[str, tuple[list[SplitWindows], dict]]:
    """The whole example generation in this process, without Beam: ``{series_id: window_series(...)}``.

    For small data, checks and tests; the component runs the same functions on Beam.
    """
    chunks = chunks_by_series(files, options.columns)
    return {series_id: window_series(series_id, chunks[series_id], options) for series_id in sorted(chunks)}


def latest_window(files: Sequence[str], options: WindowingOptions, history: int,
                  series_id: Optional[str] = None) -> tuple[Series, np.ndarray]:
    """The last ``history`` points of one series: the window to forecast from now.

    Args:
      files: The series' files.
      options: Its columns and frequency (the gap policy is not applied: the window must be whole).
      history: Window length L of the served model.
      series_id: The series, when the files hold several.

    Returns:
      The series on its grid, and its last ``history`` values.

    Raises:
      DataError: No such series, fewer than L points, or a missing point among the last L.
    """
    chunks = chunks_by_series(files, options.columns)
    if series_id is None and len(chunks) == 1:
        series_id = next(iter(chunks))
    if series_id not in chunks:
        raise DataError(f"{', '.join(files)}: no series '{series_id}' (series: {', '.join(sorted(chunks)[:20])})")
    series, _ = assemble(series_id, chunks[series_id], options)
    values = series.target[-history:]
    if len(values) < history:
        raise DataError(f"series '{series_id}' has {len(values)} points; the model needs the last {history}")
    if np.isnan(values).any():
        missing = series.times[len(series.times) - history + int(np.argmax(np.isnan(values)))]
        raise DataError(f"series '{series_id}': the point at {_stamp(missing)} is missing among the last {history}")
    return series, values


def batches(windows: SplitWindows, size: int = BATCH_WINDOWS) -> list[SplitWindows]:
    """Splits windows into batches of at most ``size``."""
    return [windows.select(slice(i, i + size)) for i in range(0, len(windows), size)]


def _list_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.ListArray:
    rows, width = values.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values).ravel(), arrow_type))


def encode_examples(windows: SplitWindows) -> list[bytes]:
    """Serializes each window as a ``tf.Example`` with the features of :mod:`components.features`.

    The windows are encoded together, in C++, from an Arrow record batch.
    """
    n = len(windows)
    columns = {
        features.HISTORY: _list_array(windows.histories, pa.float32()),
        features.TARGET: _list_array(windows.targets, pa.float32()),
        features.SERIES_ID: _list_array(np.full((n, 1), windows.series_id.encode(), dtype=object), pa.binary()),
        features.ORIGIN_TIMESTAMP: _list_array(windows.origin_times.reshape(n, 1), pa.int64()),
        features.TARGET_TIMESTAMPS: _list_array(windows.target_times, pa.int64()),
    }
    for name, values in windows.covariates.items():
        columns[features.covariate_feature(name)] = _list_array(values, pa.float32())
    for name, values in windows.calendar.items():
        columns[name] = _list_array(values.reshape(n, 1), pa.float32())
    return example_coder.RecordBatchToExamples(pa.RecordBatch.from_pydict(columns))


def summarize(file_reports: Sequence[dict[str, Any]], series_reports: Sequence[dict[str, Any]],
              options: WindowingOptions) -> dict[str, Any]:
    """The run's summary: rows read, windows per split and series, and what was dropped and why."""
    series_reports = sorted(series_reports, key=lambda r: r["series_id"])
    windows = {s: sum(r["windows"][s] for r in series_reports) for s in windowing.SPLITS}
    dropped_windows = collections.Counter()
    for report in series_reports:
        dropped_windows.update(report.get("dropped_windows", {}))
    frequencies = collections.Counter(r["frequency"] for r in series_reports)
    return {
        "options": json.loads(options.to_json()),
        "files": len(file_reports),
        "rows_read": sum(r["rows"] for r in file_reports),
        "series": len(series_reports),
        "series_windowed": sum(1 for r in series_reports if not r["skipped"]),
        "series_skipped": [{"series_id": r["series_id"], "reason": r["skipped"], "rows": r["rows"]}
                           for r in series_reports if r["skipped"]],
        "rows_in_skipped_series": sum(r["rows"] for r in series_reports if r["skipped"]),
        "frequencies": dict(frequencies),
        "frequency_inferred": options.data.frequency is None,
        "rows_merged_as_duplicates": sum(r["duplicates_merged"] for r in series_reports),
        "missing_points": sum(r["missing_points"] for r in series_reports),
        "interpolated_points": sum(r["interpolated_points"] for r in series_reports),
        "windows": windows,
        "dropped_windows": {k: dropped_windows[k] for k in ("incomplete", "straddling", "split_gap")},
        "per_series": series_reports,
    }


def format_summary(summary: dict[str, Any], max_series: int = 10) -> str:
    """The summary as a short text a person reads at a glance."""
    w, d = summary["windows"], summary["dropped_windows"]
    freq = ", ".join(f"{k} ({v} series)" for k, v in summary["frequencies"].items())
    lines = [
        f"rows read        {summary['rows_read']} from {summary['files']} file(s)",
        f"series           {summary['series']} ({summary['series_windowed']} windowed, "
        f"{len(summary['series_skipped'])} skipped, holding {summary['rows_in_skipped_series']} rows)",
        f"frequency        {freq or '-'}{' (inferred)' if summary['frequency_inferred'] else ''}",
        f"missing points   {summary['missing_points']} ({summary['interpolated_points']} interpolated); "
        f"rows merged as duplicates: {summary['rows_merged_as_duplicates']}",
        f"windows          train {w['train']}, eval {w['eval']}, test {w['test']}",
        f"windows dropped  {d['incomplete']} with a missing point, {d['straddling']} straddling a cut, "
        f"{d['split_gap']} in a split gap",
    ]
    per_series = summary["per_series"]
    if len(per_series) > 1:
        lines.append("per series       " + "; ".join(
            f"{r['series_id']}: {r['windows']['train']}/{r['windows']['eval']}/{r['windows']['test']}"
            for r in per_series[:max_series]) + ("; ..." if len(per_series) > max_series else ""))
    for skipped in summary["series_skipped"][:max_series]:
        lines.append(f"skipped          series '{skipped['series_id']}' ({skipped['rows']} rows): {skipped['reason']}")
    return "\n".join(lines)


def read_split_windows(examples_uri: str, split: str, series_id: Optional[str] = None) -> SplitWindows:
    """Reads back the windows of one series in one split of an Examples artifact, ordered by origin.

    Everything an example holds comes back, so :func:`encode_examples` re-encodes the windows as
    the model's ``serving_examples`` signature expects them. This reads the whole split into
    memory: it is for checks, the demo and the report, not for large data.

    Args:
      examples_uri: The Examples artifact's directory.
      split: One of :data:`windowing.SPLITS`.
      series_id: The series; may be left out when the split holds one series.
    """
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no files in {examples_uri}/Split-{split}")
    by_series = collections.defaultdict(list)
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        by_series[feature[features.SERIES_ID].bytes_list.value[0].decode()].append(feature)
    if series_id is None:
        if len(by_series) != 1:
            raise ValueError(f"Split-{split} holds {len(by_series)} series; name one of {sorted(by_series)}")
        series_id = next(iter(by_series))
    rows = sorted(by_series[series_id], key=lambda f: f[features.ORIGIN_TIMESTAMP].int64_list.value[0])

    def column(name: str, kind: str, dtype: type) -> np.ndarray:
        return np.asarray([list(getattr(f[name], kind).value) for f in rows], dtype)

    names = rows[0].keys() if rows else ()
    return SplitWindows(
        series_id=series_id, split=split,
        histories=column(features.HISTORY, "float_list", np.float32),
        targets=column(features.TARGET, "float_list", np.float32),
        origin_times=column(features.ORIGIN_TIMESTAMP, "int64_list", np.int64).reshape(-1),
        target_times=column(features.TARGET_TIMESTAMPS, "int64_list", np.int64),
        covariates={name[len(features.COVARIATE_PREFIX):]: column(name, "float_list", np.float32)
                    for name in names if name.startswith(features.COVARIATE_PREFIX)},
        calendar={name: column(name, "float_list", np.float32).reshape(-1)
                  for name in features.CALENDAR_FEATURES if name in names})
