"""Per-series logic of the example generator: read and validate a CSV, cut windows, encode them.

Pure functions on pandas/numpy values; the Beam executor only moves their results around.
"""

import dataclasses
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from components import features, windowing

DEFAULT_SERIES_ID = "series"


class DataError(ValueError):
    """The input data is unusable; the message names the file, and the line or column."""


@dataclasses.dataclass(frozen=True)
class Series:
    """One series on a regular time grid. Missing points are NaN.

    Attributes:
      series_id: Name of the series.
      times: Epoch seconds of each grid point, increasing by ``step`` seconds, ``[n]``.
      values: Observed values, ``[n]``, NaN where nothing was observed.
      step: Grid step in seconds.
    """

    series_id: str
    times: np.ndarray
    values: np.ndarray
    step: int


def read_series(path: str, timestamp_column: str, target_column: str) -> Series:
    """Reads one series from a CSV file and puts it on its regular time grid.

    Rows may come in any order. The grid step is the most common difference between consecutive
    timestamps; points missing from the grid, and empty values, become NaN.

    Args:
      path: CSV file with a header row.
      timestamp_column: Column of ISO 8601 timestamps.
      target_column: Column of the numeric target.

    Returns:
      The series on its grid.

    Raises:
      DataError: A column is missing, a timestamp or number does not parse, a value is infinite, a
        timestamp repeats, or a timestamp lies off the grid. The message names file, line, column.
    """
    with tf.io.gfile.GFile(path) as f:
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    for column in (timestamp_column, target_column):
        if column not in frame.columns:
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(frame.columns)})")
    # Line numbers as an editor shows them: the header is line 1.
    lines = np.arange(len(frame)) + 2

    times = pd.to_datetime(frame[timestamp_column], errors="coerce", utc=True, format="ISO8601")
    bad = times.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{path}:{lines[i]}: column '{timestamp_column}': cannot parse timestamp "
            f"'{frame[timestamp_column].iloc[i]}'")
    raw = frame[target_column].str.strip()
    values = pd.to_numeric(raw.where(raw != ""), errors="coerce").to_numpy(np.float64)
    unparsed = np.isnan(values) & (raw != "").to_numpy() & ~raw.str.lower().isin(["nan", "na"]).to_numpy()
    if unparsed.any():
        i = int(np.argmax(unparsed))
        raise DataError(f"{path}:{lines[i]}: column '{target_column}': not a number: '{raw.iloc[i]}'")
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.argmax(infinite))
        raise DataError(f"{path}:{lines[i]}: column '{target_column}': value is not finite: '{raw.iloc[i]}'")

    seconds = ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    order = np.argsort(seconds, kind="stable")
    seconds, values, lines = seconds[order], values[order], lines[order]
    repeated = np.flatnonzero(np.diff(seconds) == 0)
    if len(repeated):
        i = repeated[0]
        raise DataError(
            f"{path}:{lines[i + 1]}: column '{timestamp_column}': timestamp "
            f"{pd.Timestamp(seconds[i], unit='s').isoformat()} repeats line {lines[i]}")
    if len(seconds) < 2:
        raise DataError(f"{path}: needs at least 2 rows to find the time step, has {len(seconds)}")

    deltas = np.diff(seconds)
    step_values, counts = np.unique(deltas, return_counts=True)
    step = int(step_values[np.argmax(counts)])
    offsets = seconds - seconds[0]
    off_grid = offsets % step != 0
    if off_grid.any():
        i = int(np.argmax(off_grid))
        raise DataError(
            f"{path}:{lines[i]}: column '{timestamp_column}': timestamp "
            f"{pd.Timestamp(seconds[i], unit='s').isoformat()} is off the {step} s grid that starts at "
            f"{pd.Timestamp(seconds[0], unit='s').isoformat()}")

    grid = np.arange(seconds[0], seconds[-1] + 1, step, dtype=np.int64)
    gridded = np.full(len(grid), np.nan)
    gridded[offsets // step] = values
    return Series(series_id=DEFAULT_SERIES_ID, times=grid, values=gridded, step=step)


@dataclasses.dataclass(frozen=True)
class SplitWindows:
    """The windows of one series that fall into one split."""

    split: str
    histories: np.ndarray
    targets: np.ndarray
    origin_times: np.ndarray


def split_windows(
    series: Series, history: int, horizon: int, stride: int, split_fractions: Sequence[float]
) -> list[SplitWindows]:
    """Cuts a series into windows and groups them by split; windows with a missing value are skipped.

    Args:
      series: The series on its grid.
      history: History length L.
      horizon: Horizon H.
      stride: Step between window starts.
      split_fractions: Fractions of the series' time span for train and eval.

    Returns:
      One entry per split in :data:`windowing.SPLITS` order (possibly empty).
    """
    histories, targets, starts = windowing.make_windows(series.values, history, horizon, stride)
    complete = ~(np.isnan(histories).any(axis=1) | np.isnan(targets).any(axis=1))
    cuts = windowing.split_cut_times(series.times[0], series.times[-1], split_fractions)
    split_of = windowing.assign_splits(
        series.times[starts + history], series.times[starts + history + horizon - 1], cuts)
    origin_times = series.times[starts + history - 1]
    result = []
    for index, name in enumerate(windowing.SPLITS):
        keep = complete & (split_of == index)
        result.append(SplitWindows(name, histories[keep], targets[keep], origin_times[keep]))
    return result


def encode_examples(series_id: str, windows: SplitWindows) -> Iterator[bytes]:
    """Serializes each window as a ``tf.Example`` with the features of :mod:`components.features`."""
    sid = series_id.encode()
    for history, target, origin in zip(windows.histories, windows.targets, windows.origin_times):
        example = tf.train.Example(features=tf.train.Features(feature={
            features.HISTORY: tf.train.Feature(float_list=tf.train.FloatList(value=history)),
            features.TARGET: tf.train.Feature(float_list=tf.train.FloatList(value=target)),
            features.SERIES_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[sid])),
            features.ORIGIN_TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(origin)])),
        }))
        yield example.SerializeToString()


def read_split_windows(examples_uri: str, split: str) -> SplitWindows:
    """Reads back the windows of one split of an Examples artifact, ordered by forecast origin."""
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no files in {examples_uri}/Split-{split}")
    histories, targets, origins = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        histories.append(feature[features.HISTORY].float_list.value)
        targets.append(feature[features.TARGET].float_list.value)
        origins.append(feature[features.ORIGIN_TIMESTAMP].int64_list.value[0])
    order = np.argsort(origins, kind="stable")
    return SplitWindows(split, np.asarray(histories, np.float32)[order],
                        np.asarray(targets, np.float32)[order], np.asarray(origins, np.int64)[order])
