"""Reads the user's tables (CSV or Parquet files) in chunks and validates every cell it keeps.

A chunk of rows is checked and converted to numpy (epoch seconds, float64 values), then split by
series id, so that the Beam executor can group rows per series without ever holding a whole file.
Every error names the file and the line (CSV, the header being line 1) or row (Parquet), and the
column.
"""

import dataclasses
import os
import re
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_SERIES_ID = "series"
CHUNK_ROWS = 200_000
_EPOCH_SECONDS = re.compile(r"\s*-?\d+(\.\d*)?\s*")
# A time of day followed by a zone: Z, +HH, +HHMM or +HH:MM.
_ZONE_SUFFIX = r"[T ]\d\d(?::?\d\d)*(?:\.\d+)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"
_MISSING = frozenset(["", "nan", "na", "null"])
_FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DataError(ValueError):
    """The input data is unusable; the message names the file, and the line or column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which input columns hold what.

    Attributes:
      timestamp: ISO 8601 timestamps (with or without zone; without is read as UTC) or epoch seconds.
      target: The numeric value to forecast.
      series_id: Optional column naming the series of each row; without it the file is one series.
      covariates: Optional numeric columns whose histories go with each window.
    """

    timestamp: str = "timestamp"
    target: str = "value"
    series_id: Optional[str] = None
    covariates: tuple[str, ...] = ()

    def __post_init__(self):
        for column in self.covariates:
            if not _FEATURE_NAME.fullmatch(column):
                raise DataError(f"covariate column '{column}' must be letters, digits and _ (it names a feature)")
        used = [self.timestamp, self.target, *([self.series_id] if self.series_id else []), *self.covariates]
        if len(set(used)) != len(used):
            raise DataError(f"a column is given two roles: {used}")

    @property
    def all(self) -> list[str]:
        return [self.timestamp, self.target] + ([self.series_id] if self.series_id else []) + list(self.covariates)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Rows of one series from one file, validated.

    Attributes:
      file: The file they come from.
      rows: 0-based data row of each (the CSV line is ``row + 2``), ``[n]``.
      times: Epoch seconds, ``[n]``.
      target: Target values, NaN where empty, ``[n]``.
      covariates: Covariate values, NaN where empty, ``[n, C]``.
    """

    file: str
    rows: np.ndarray
    times: np.ndarray
    target: np.ndarray
    covariates: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def location(path: str, row: int) -> str:
    """Where data row ``row`` (0-based) of ``path`` is, as an editor shows it."""
    if path.endswith(PARQUET_SUFFIXES):
        return f"{path}: row {row + 1}"
    return f"{path}:{row + 2}"


def match_files(pattern: str) -> list[str]:
    """The data files of a path: a file, a directory (its CSV and Parquet files) or a glob.

    Raises:
      DataError: Nothing matches, or a matched file is neither CSV nor Parquet.
    """
    if tf.io.gfile.isdir(pattern):
        names = sorted(tf.io.gfile.listdir(pattern))
        files = [os.path.join(pattern, n) for n in names if n.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
        if not files:
            raise DataError(f"{pattern}: no CSV or Parquet files in this directory")
        return files
    if any(c in pattern for c in "*?["):
        files = sorted(tf.io.gfile.glob(pattern))
        if not files:
            raise DataError(f"{pattern}: no file matches")
    elif tf.io.gfile.exists(pattern):
        files = [pattern]
    else:
        raise DataError(f"{pattern}: no such file")
    unknown = [f for f in files if not f.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
    if unknown:
        raise DataError(f"{unknown[0]}: not a CSV ({', '.join(CSV_SUFFIXES)}) or Parquet "
                        f"({', '.join(PARQUET_SUFFIXES)}) file")
    return files


def _frames(path: str, columns: Columns, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's needed columns in chunks of at most ``chunk_rows`` rows, with a 0-based row index."""
    if path.endswith(PARQUET_SUFFIXES):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            table = pq.ParquetFile(f)
            _check_columns(path, columns, table.schema_arrow.names)
            first = 0
            for batch in table.iter_batches(batch_size=chunk_rows, columns=columns.all):
                frame = batch.to_pandas()
                frame.index = pd.RangeIndex(first, first + len(frame))
                first += len(frame)
                yield frame
        return
    # Beam's file systems read local, GCS, S3 and HDFS paths alike, and un-gzip ``.gz`` files.
    with FileSystems.open(path) as f:
        header = pd.read_csv(f, nrows=0)
        _check_columns(path, columns, list(header.columns))
    with FileSystems.open(path) as f:
        yield from pd.read_csv(f, dtype=str, keep_default_na=False, usecols=columns.all, chunksize=chunk_rows)


def _check_columns(path: str, columns: Columns, present: list[str]) -> None:
    for column in columns.all:
        if column not in present:
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(map(str, present))})")


def _first_bad(mask: np.ndarray, frame: pd.DataFrame) -> int:
    return int(frame.index[int(np.argmax(mask))])


def _parse_times(path: str, frame: pd.DataFrame, column: str, epoch: bool) -> np.ndarray:
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = pd.to_datetime(raw, utc=True)
    elif pd.api.types.is_numeric_dtype(raw) or epoch:
        seconds = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(seconds)
        if bad.any():
            row = _first_bad(bad, frame)
            raise DataError(f"{location(path, row)}: column '{column}': cannot parse epoch seconds "
                            f"'{raw.loc[row]}'")
        return np.floor(seconds).astype(np.int64)
    else:
        stamps = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        zoned = raw.str.contains(_ZONE_SUFFIX).to_numpy()
        if zoned.any() and not zoned.all():
            # pandas gives a timestamp without zone the zone of the one before it: parse apart.
            stamps = stamps.copy()
            for part in (zoned, ~zoned):
                stamps[part] = pd.to_datetime(raw[part], errors="coerce", utc=True, format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = _first_bad(bad, frame)
        raise DataError(f"{location(path, row)}: column '{column}': cannot parse timestamp '{raw.loc[row]}'")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _parse_numbers(path: str, frame: pd.DataFrame, column: str) -> np.ndarray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(np.float64)
        text = raw.astype(str)
    else:
        text = raw.astype(str).str.strip()
        missing = text.str.lower().isin(_MISSING).to_numpy()
        values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(np.float64)
        unparsed = np.isnan(values) & ~missing
        if unparsed.any():
            row = _first_bad(unparsed, frame)
            raise DataError(f"{location(path, row)}: column '{column}': not a number: '{text.loc[row]}'")
    infinite = np.isinf(values)
    if infinite.any():
        row = _first_bad(infinite, frame)
        raise DataError(f"{location(path, row)}: column '{column}': value is not finite: '{text.loc[row]}'")
    return values


def _series_ids(path: str, frame: pd.DataFrame, column: Optional[str]) -> np.ndarray:
    if column is None:
        return np.full(len(frame), DEFAULT_SERIES_ID, dtype=object)
    ids = frame[column].astype(str).str.strip()
    empty = (ids == "").to_numpy() | frame[column].isna().to_numpy()
    if empty.any():
        raise DataError(f"{location(path, _first_bad(empty, frame))}: column '{column}': empty series id")
    return ids.to_numpy(dtype=object)


def _is_epoch(frame: pd.DataFrame, column: str) -> bool:
    values = frame[column]
    return len(values) > 0 and isinstance(values.iloc[0], str) and bool(_EPOCH_SECONDS.fullmatch(values.iloc[0]))


def read_chunks(path: str, columns: Columns, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, Chunk]]:
    """Reads and validates a file chunk by chunk, yielding its rows per series.

    Args:
      path: A CSV (a header row, then one row a line) or Parquet file.
      columns: Which columns to read and how.
      chunk_rows: Rows read at a time; memory stays bounded by it.

    Yields:
      ``(series_id, chunk)`` pairs; one series may come in many chunks.

    Raises:
      DataError: A column is missing, or a timestamp, number or series id does not parse, or a
        value is infinite.
    """
    epoch = None
    for frame in _frames(path, columns, chunk_rows):
        if epoch is None:
            # Epoch seconds or ISO 8601 is decided once per file, by its first row.
            epoch = _is_epoch(frame, columns.timestamp)
        times = _parse_times(path, frame, columns.timestamp, epoch)
        target = _parse_numbers(path, frame, columns.target)
        covariates = np.stack([_parse_numbers(path, frame, c) for c in columns.covariates], axis=1) \
            if columns.covariates else np.zeros((len(frame), 0))
        ids = _series_ids(path, frame, columns.series_id)
        rows = frame.index.to_numpy(np.int64)
        if columns.series_id is None:
            groups = {DEFAULT_SERIES_ID: slice(None)}
        else:
            groups = pd.Series(ids).groupby(ids, sort=False).indices
        for series_id, index in groups.items():
            yield str(series_id), Chunk(path, rows[index], times[index], target[index], covariates[index])
