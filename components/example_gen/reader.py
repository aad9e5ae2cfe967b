"""Reads the user's tables (CSV or Parquet files) in chunks and validates every cell it keeps.

A chunk of rows is checked and converted to numpy (epoch seconds, float64 values), then split by
series id, so that the Beam executor can group rows per series without ever holding a whole file.
Every error names the file and the line (CSV, the header being line 1) or row (Parquet), and the
column.

Value policy: an empty cell, ``NaN``, ``NA`` or ``null`` is a missing point (a gap, handled by
``--gap-policy``); any other value must be a number within ``±MAX_ABS_VALUE``, so ``inf`` and
``1e300`` are errors that name the cell, not NaNs found after training.
"""

import bz2
import contextlib
import dataclasses
import gzip
import json
import lzma
import os
import re
import struct
import zlib
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.example_gen.columns import Columns, DataError

__all__ = ["Chunk", "Columns", "DataError", "location", "match_files", "read_blocks", "read_chunks"]

# Python's own decompressors, not Beam's: they check each stream's end marker and checksum, so a
# cut or damaged file is an error instead of the rows before the damage read as if they were all.
_DECOMPRESSORS = {".csv.gz": lambda f: gzip.GzipFile(fileobj=f), ".csv.bz2": bz2.BZ2File, ".csv.xz": lzma.LZMAFile}
CSV_SUFFIXES = (".csv", ".txt", *_DECOMPRESSORS)
PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_SERIES_ID = "series"
CHUNK_ROWS = 200_000
# Bytes of CSV text parsed at a time: pyarrow's default; 4 and 16 MB were slower (10k series).
CSV_BLOCK_BYTES = 1 << 20
PARQUET_BUFFER_BYTES = 1 << 20
_EPOCH_SECONDS = re.compile(r"\s*-?\d+(\.\d*)?\s*")
# A time of day followed by a zone: Z, +HH, +HHMM or +HH:MM.
_ZONE_SUFFIX = re.compile(r"[T ]\d\d(?::?\d\d)*(?:\.\d+)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)$")
_MISSING = frozenset(["", "nan", "na", "null"])
# CSV cells converted in C++ (:func:`plain_numbers`): a plain decimal number, or a missing value as
# _MISSING has it (RE2 syntax; its \s is ASCII white space, all of which str.strip removes).
_PLAIN_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
# Built from _MISSING, so that the two never disagree (its empty text is the optional group's absence).
_MISSING_CELL = r"^\s*(?i:" + "|".join(sorted(re.escape(m) for m in _MISSING if m)) + r")?\s*$"
_OTHER_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}
# The UTC offset at the end of a timestamp that has one (see _ZONE_SUFFIX): Z, +HH, +HHMM or +HH:MM.
_OFFSET = re.compile(r"(?:[Zz]|(?<=\d)[+-]\d\d(?::?\d\d)?)$")
# A timestamp's last 6 characters hold its whole UTC offset, if it has one; with its length they
# tell whether it has one and whether it has a time of day.
_SUFFIX = 6
# The largest magnitude a value may have. The model works in float32 (largest 3.4e38), and the
# Transform's statistics sum squares: (1e15)^2 summed over 1e8 rows is 1e38, still finite.
MAX_ABS_VALUE = 1e15


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Rows of one series from one file, validated.

    Attributes:
      file: The file they come from.
      rows: 0-based data row of each (the CSV line is ``row + 2``), ``[n]``.
      times: Epoch seconds, ``[n]``.
      target: Target values, NaN where empty, ``[n]``.
      covariates: Covariate values, NaN where empty, ``[n, C]``.
      forms: How its text timestamps are written, for messages when they fit no grid: one
        ``(offset, has_time, row, text)`` per distinct UTC offset (``""`` where none is written)
        and date-or-time form, with the first row written so.
    """

    file: str
    rows: np.ndarray
    times: np.ndarray
    target: np.ndarray
    covariates: np.ndarray
    forms: tuple[tuple[str, bool, int, str], ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def to_bytes(self) -> bytes:
        """A compact encoding for the shuffle between reading and windowing.

        Times and row numbers are stored as differences, which are nearly constant and compress
        to almost nothing: 24 bytes a row become about 7, and the DirectRunner, which holds its
        shuffle in memory, needs a third of the memory (measured in benchmarks/windows.py).
        """
        header = json.dumps({"file": self.file, "rows": len(self), "covariates": self.covariates.shape[1],
                             "forms": self.forms}).encode()
        payload = b"".join([np.diff(self.times, prepend=0).astype(np.int64).tobytes(),
                            np.diff(self.rows, prepend=0).astype(np.int64).tobytes(),
                            self.target.astype(np.float64).tobytes(),
                            np.ascontiguousarray(self.covariates, np.float64).tobytes()])
        return struct.pack("<I", len(header)) + header + zlib.compress(payload, 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Chunk":
        """The chunk that :meth:`to_bytes` encoded."""
        (size,) = struct.unpack_from("<I", data)
        header = json.loads(data[4:4 + size])
        payload = zlib.decompress(data[4 + size:])
        n, c = header["rows"], header["covariates"]
        arrays = np.frombuffer(payload, np.int64, 2 * n).reshape(2, n)
        values = np.frombuffer(payload, np.float64, n * (1 + c), offset=16 * n)
        return cls(header["file"], np.cumsum(arrays[1]), np.cumsum(arrays[0]), values[:n].copy(),
                   values[n:].reshape(n, c).copy(), tuple(tuple(f) for f in header.get("forms", ())))


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
    """The file's needed columns in chunks of at most ``chunk_rows`` rows, with a 0-based row index.

    Raises:
      DataError: The file is empty, has a header but no rows, is compressed and cut short or
        damaged, or lacks a column.
    """
    rows = 0
    if path.endswith(PARQUET_SUFFIXES):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            try:
                # Read through a buffer, not a row group's column at once: memory follows chunk_rows,
                # not the size of the file's row groups.
                table = pq.ParquetFile(f, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
                _check_columns(path, columns, table.schema_arrow.names)
                for batch in table.iter_batches(batch_size=chunk_rows, columns=columns.all):
                    frame = batch.to_pandas()
                    frame.index = pd.RangeIndex(rows, rows + len(frame))
                    rows += len(frame)
                    yield frame
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{path}: not a readable Parquet file (it may be truncated or corrupt: "
                                f"{error})") from error
    else:
        try:
            with _open_csv(path) as f:
                try:
                    header = pd.read_csv(f, nrows=0)
                except pd.errors.EmptyDataError:
                    raise DataError(f"{path}: empty file: a CSV needs a header line naming its columns, "
                                    "then one row a line") from None
                _check_columns(path, columns, list(header.columns))
            with _open_csv(path) as f:
                for frame in _csv_frames(path, f, columns, chunk_rows):
                    frame.index = pd.RangeIndex(rows, rows + len(frame))
                    rows += len(frame)
                    yield frame
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as error:
            if not path.endswith(tuple(_DECOMPRESSORS)):
                raise
            raise DataError(f"{path}: the compressed file is truncated or corrupt ({error}); "
                            "nothing of it is used") from error
    if not rows:
        raise DataError(f"{path}: no data rows, only the header line")


def _csv_frames(path: str, f: Any, columns: Columns, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The CSV's needed columns, every cell as its text, in frames of ``chunk_rows`` rows (the last fewer).

    pyarrow's reader parses a block of bytes at a time, in C++, three times as fast as pandas'
    (benchmarks/forecast.py); its blocks' rows are then cut into chunks of ``chunk_rows``.

    Raises:
      DataError: A row has more or fewer cells than the header, or the text is not UTF-8.
    """
    ragged: list[Any] = []

    def refuse(row: Any) -> str:
        # Kept for the message: pyarrow's own names no line.
        ragged.append(row)
        return "error"

    options = pa_csv.ConvertOptions(column_types={c: pa.string() for c in columns.all}, include_columns=columns.all,
                                    strings_can_be_null=False, quoted_strings_can_be_null=False)
    parse = pa_csv.ParseOptions(invalid_row_handler=refuse)
    pending: list[pa.RecordBatch] = []
    held = 0
    numbers = (columns.target, *columns.covariates)
    try:
        for batch in pa_csv.open_csv(f, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                                     parse_options=parse, convert_options=options):
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield _numbers_converted(table.slice(0, chunk_rows), numbers)
                rest = table.slice(chunk_rows)
                pending, held = rest.to_batches(), rest.num_rows
    except pa.ArrowInvalid as error:
        if ragged:
            row = ragged[0]
            raise DataError(f"{path}:{row.number}: {row.actual_columns} cells, but the header names "
                            f"{row.expected_columns} columns") from None
        raise DataError(f"{path}: not a readable CSV file ({error})") from error
    if held:
        yield _numbers_converted(pa.Table.from_batches(pending), numbers)


def plain_numbers(cells: Any) -> Optional[np.ndarray]:
    """CSV cells (pyarrow strings) as float64, when each is a number or a missing value, else None.

    A column of numbers is converted in C++: as Python texts through pandas it cost more than the
    rest of reading the file (one distinct text a row: benchmarks/forecast.py, CSV input). The
    values are correctly rounded, as Python's ``float`` and Parquet's writers give them
    (``pd.to_numeric`` is one unit in the last place off on some texts of 17 digits). Missing
    cells (``_MISSING``, any case, white space around) become NaN.

    Returns:
      The values ``[n]``; None when a cell is anything else (white space around a number, ``inf``,
      text) or a value is beyond ±MAX_ABS_VALUE: :func:`_parse_numbers` then reads the texts, and
      names a bad cell as written.
    """
    try:
        # pyarrow's parse takes a number as Python does, with no white space around it; NaN, inf
        # and the like are looked at below.
        values = np.array(pc.cast(cells, pa.float64()).to_numpy(), np.float64)
    except pa.ArrowInvalid:
        # A cell that is no number: missing cells (or worse) among the numbers.
        number = pc.match_substring_regex(cells, _PLAIN_NUMBER)
        if not pc.all(pc.or_(number, pc.match_substring_regex(cells, _MISSING_CELL))).as_py():
            return None
        values = np.asarray(pc.cast(pc.if_else(number, cells, None), pa.float64()).to_numpy(), np.float64)
    else:
        odd = np.flatnonzero(~np.isfinite(values))
        texts = pc.take(cells, pa.array(odd)).to_pylist() if len(odd) else []
        if any(t.strip().lower() not in _MISSING for t in texts):
            return None
        values[odd] = np.nan
    return None if (np.abs(values) > MAX_ABS_VALUE).any() else values


def _numbers_converted(table: pa.Table, numbers: tuple[str, ...]) -> pd.DataFrame:
    """The CSV cells ``table`` as a DataFrame, the columns ``numbers`` as float64 where :func:`plain_numbers` can."""
    converted = {name: plain_numbers(table.column(name)) for name in dict.fromkeys(numbers)}
    converted = {name: values for name, values in converted.items() if values is not None}
    frame = table.drop_columns(list(converted)).to_pandas()
    for name, values in converted.items():
        frame[name] = values
    return frame


@contextlib.contextmanager
def _open_csv(path: str) -> Iterator:
    """The file's bytes, decompressed by its suffix; any file system Beam reads (local, GCS, S3, HDFS)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        decompressor = next((d for suffix, d in _DECOMPRESSORS.items() if path.endswith(suffix)), None)
        if decompressor is None:
            yield raw
            return
        with decompressor(raw) as f:
            yield f


def _check_columns(path: str, columns: Columns, present: list[str]) -> None:
    for column in columns.all:
        if column not in present:
            separator = next((s for s in _OTHER_SEPARATORS if len(present) == 1 and s in str(present[0])), None)
            if separator:
                # Only commas are read as separators: European spreadsheets write ';', some tools tabs.
                raise DataError(f"{path}:1: the header is one column, '{present[0]}': the file looks separated "
                                f"by {_OTHER_SEPARATORS[separator]}, but columns are read separated by commas: "
                                "write it with commas")
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(map(str, present))})")


def _first_bad(mask: np.ndarray, frame: pd.DataFrame) -> int:
    return int(frame.index[int(np.argmax(mask))])


def _parse_times(path: str, frame: pd.DataFrame, column: str, epoch: bool,
                 factorized: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """Epoch seconds of the timestamp column; ``factorized``: its texts' ``pd.factorize``, if made already."""
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
        # Text of one length has one format; only a column of several lengths can mix zones.
        # Each distinct text looked at once: the rows repeat the same timestamps, series after series.
        text_codes, text = factorized if factorized is not None else pd.factorize(raw.to_numpy(dtype=object))
        lengths = np.fromiter(map(len, text), np.int64, len(text))
        if (lengths != lengths[0]).any():
            zoned = np.fromiter((bool(_ZONE_SUFFIX.search(t)) for t in text), bool, len(text))[text_codes]
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
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    # Plain numpy and Python on the cells: pandas' .str accessor makes reference cycles that keep
    # each chunk's memory until a full garbage collection.
    if not pd.api.types.is_numeric_dtype(raw):
        # NaN is either a missing value or a cell that is not a number: look at those cells only.
        unknown = np.flatnonzero(np.isnan(values))
        cells = raw.to_numpy(dtype=object)[unknown]
        # pandas does not parse what overflows (1e400); Python does, to inf, refused below as such.
        values[unknown] = [_overflow(str(cell)) for cell in cells]
        unparsed = [str(cell).strip().lower() not in _MISSING and not np.isinf(v)
                    for cell, v in zip(cells, values[unknown])]
        if any(unparsed):
            i = unparsed.index(True)
            raise DataError(f"{location(path, int(frame.index[unknown[i]]))}: column '{column}': "
                            f"not a number: '{str(cells[i]).strip()}'")
    beyond = np.abs(values) > MAX_ABS_VALUE  # NaN compares False: a gap, not an error
    if beyond.any():
        row = _first_bad(beyond, frame)
        raise DataError(f"{location(path, row)}: column '{column}': value {str(raw.loc[row]).strip()} is beyond "
                        f"±{MAX_ABS_VALUE:.0e}, more than the model can hold (a gap is an empty cell or NaN)")
    return values


def _offset(text: str) -> str:
    """The UTC offset written at the end of timestamp ``text`` as +HH:MM, or "" when none is written."""
    if not _ZONE_SUFFIX.search(text):
        return ""
    written = _OFFSET.search(text).group()
    if written in ("Z", "z"):
        return "+00:00"
    digits = written[1:].replace(":", "")
    return f"{written[0]}{digits[:2]}:{digits[2:] or '00'}"


def timestamp_forms(text: np.ndarray, factorized: Optional[tuple[np.ndarray, np.ndarray]] = None
                    ) -> tuple[np.ndarray, list[tuple[str, bool]]]:
    """How each text timestamp is written: its UTC offset, and whether a time of day follows the date.

    Only the distinct (length, last characters) of the texts are looked at closely, which tell
    both apart, so a chunk costs a pass of slicing and hashing.

    Args:
      text: Timestamps as written ``[n]``.
      factorized: ``pd.factorize(text)``, if made already.

    Returns:
      A form code per timestamp ``[n]``, and per code ``(offset, has_time)``: the offset as
      ``+HH:MM``, or ``""`` where none is written.
    """
    # Hash-based factorize (sorting the texts would cost several times their parsing); its codes
    # number the keys in order of first appearance, so a code's first row is where the running
    # maximum of the codes grows. A series' timestamps repeat across series: the distinct texts,
    # far fewer than the rows, are the ones sliced and measured.
    text_codes, distinct = factorized if factorized is not None else pd.factorize(np.asarray(text, dtype=object))
    suffixes, _ = pd.factorize(np.asarray([t[-_SUFFIX:] for t in distinct], dtype=object))
    lengths = np.fromiter(map(len, distinct), np.int64, len(distinct))
    # The distinct texts are in order of first appearance: so are the keys numbered from them.
    key_codes, _ = pd.factorize(suffixes * (int(lengths.max(initial=0)) + 1) + lengths)
    codes = key_codes[text_codes] if len(text) else np.zeros(0, np.int64)
    first = np.flatnonzero(np.diff(np.maximum.accumulate(key_codes), prepend=-1) > 0)
    forms = [(_offset(distinct[i]), len(distinct[i].strip()) > len("YYYY-MM-DD")) for i in first]
    return codes.reshape(-1), forms


def _forms_of(text: np.ndarray, rows: np.ndarray, codes: np.ndarray, forms: list[tuple[str, bool]],
              index: np.ndarray) -> tuple[tuple[str, bool, int, str], ...]:
    """The distinct forms among rows ``index`` of a chunk: ``(offset, has_time, first row, its text)`` each."""
    if not forms:
        return ()
    _, first = np.unique(codes[index], return_index=True)
    return tuple(forms[codes[i]] + (int(rows[i]), str(text[i])) for i in index[np.sort(first)])


def _overflow(cell: str) -> float:
    """inf (signed) for a number too large for float64, such as ``1e400``; NaN for anything else."""
    try:
        value = float(cell)
    except ValueError:
        return np.nan
    return value if np.isinf(value) else np.nan


def _series_ids(path: str, frame: pd.DataFrame, column: Optional[str]) -> np.ndarray:
    if column is None:
        return np.full(len(frame), DEFAULT_SERIES_ID, dtype=object)
    raw = frame[column]
    ids = raw.to_numpy(dtype=object) if raw.dtype == object else raw.astype(str).to_numpy(dtype=object)
    empty = raw.isna().to_numpy() | (ids == "")
    if empty.any():
        raise DataError(f"{location(path, _first_bad(empty, frame))}: column '{column}': empty series id")
    return ids


def _is_epoch(frame: pd.DataFrame, column: str) -> bool:
    values = frame[column]
    return len(values) > 0 and isinstance(values.iloc[0], str) and bool(_EPOCH_SECONDS.fullmatch(values.iloc[0]))


def _parsed(path: str, columns: Columns, chunk_rows: int) -> Iterator[tuple[np.ndarray, Chunk, np.ndarray, np.ndarray,
                                                                      list[tuple[str, bool]]]]:
    """Each chunk of rows of a file, validated: series ids, the rows as one Chunk (no forms), and
    the timestamps' texts, form codes and forms (:func:`timestamp_forms`; none for epoch seconds)."""
    epoch = None
    for frame in _frames(path, columns, chunk_rows):
        if epoch is None:
            # Epoch seconds or ISO 8601 is decided once per file, by its first row.
            epoch = _is_epoch(frame, columns.timestamp)
        text = frame[columns.timestamp].to_numpy(dtype=object)
        # Forms matter only for text timestamps: a grid that fails is then explained by them.
        written = len(text) and not epoch and isinstance(text[0], str)
        # The texts' distinct values serve both the parse's zone check and the forms.
        factorized = pd.factorize(text) if written else None
        times = _parse_times(path, frame, columns.timestamp, epoch, factorized)
        target = _parse_numbers(path, frame, columns.target)
        covariates = np.stack([_parse_numbers(path, frame, c) for c in columns.covariates], axis=1) \
            if columns.covariates else np.zeros((len(frame), 0))
        ids = _series_ids(path, frame, columns.series_id)
        rows = frame.index.to_numpy(np.int64)
        form_codes, forms = timestamp_forms(text, factorized) if written else (np.zeros(len(text), np.int64), [])
        yield ids, Chunk(path, rows, times, target, covariates), text, form_codes, forms


def read_blocks(path: str, columns: Columns, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, Chunk]]:
    """Reads and validates a file chunk by chunk, many series at a time (for work done in bulk).

    Args:
      path: A CSV or Parquet file, as :func:`read_chunks` reads it.
      columns: Which columns to read and how.
      chunk_rows: Rows read at a time.

    Yields:
      ``(series_ids, chunk)``: each row's series id ``[n]`` and the rows, in the file's order;
      ``chunk.forms`` lists the first row of each distinct (series, timestamp form) pair: each
      series' own distinct forms (what :func:`grid.mixed_forms` looks at) can be told from it.

    Raises:
      DataError: As :func:`read_chunks`.
    """
    for ids, chunk, text, form_codes, forms in _parsed(path, columns, chunk_rows):
        if forms:
            # Codes tell texts apart by their last characters; many codes share one form.
            distinct: dict[tuple[str, bool], int] = {}
            form_of_code = np.array([distinct.setdefault(form, len(distinct)) for form in forms], np.int64)
            series, _ = pd.factorize(ids)
            pairs = series.astype(np.int64) * len(distinct) + form_of_code[form_codes]
            first = np.sort(np.unique(pairs, return_index=True)[1])
            chunk = dataclasses.replace(chunk, forms=tuple(
                forms[form_codes[i]] + (int(chunk.rows[i]), str(text[i])) for i in first))
        yield ids, chunk


def read_chunks(path: str, columns: Columns, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, Chunk]]:
    """Reads and validates a file chunk by chunk, yielding its rows per series.

    Args:
      path: A CSV (a header row, then one row a line) or Parquet file.
      columns: Which columns to read and how.
      chunk_rows: Rows read at a time; memory stays bounded by it.

    Yields:
      ``(series_id, chunk)`` pairs; one series may come in many chunks.

    Raises:
      DataError: The file is empty, cut short or damaged, or has no rows; a column is missing; a
        timestamp, number or series id does not parse; or a value is beyond ``±MAX_ABS_VALUE``.
    """
    for ids, block, text, form_codes, forms in _parsed(path, columns, chunk_rows):
        rows, times, target, covariates = block.rows, block.times, block.target, block.covariates
        if columns.series_id is None:
            yield DEFAULT_SERIES_ID, Chunk(path, rows, times, target, covariates,
                                           _forms_of(text, rows, form_codes, forms, np.arange(len(rows))))
            continue
        # Hash-based factorize and one stable sort: a pandas groupby here would create reference
        # cycles that hold every chunk's memory until the garbage collector happens to run.
        codes, uniques = pd.factorize(ids)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        for code, series_id in enumerate(uniques):
            index = order[bounds[code]:bounds[code + 1]]
            yield str(series_id), Chunk(path, rows[index], times[index], target[index], covariates[index],
                                        _forms_of(text, rows, form_codes, forms, index))
