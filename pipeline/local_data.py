"""Series read in this process, without Beam: for checks, the CLI's predict, the demo and the report.

The example generator runs the same per-series functions on Beam (:mod:`components.example_gen`);
these helpers hold whole series in memory, so they are for small data and single series.
"""

import collections
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from components import features
from components.example_gen import grid
from components.example_gen.options import DataConfig, WindowingOptions
from components.example_gen.reader import Chunk, Columns, DataError, read_chunks
from components.example_gen.windows import SplitWindows, window_series

# Series ids a message lists, at most.
_LISTED_SERIES = 10


def chunks_by_series(files: Sequence[str], columns: Columns) -> dict[str, list[Chunk]]:
    """Every row of ``files``, read in this process and grouped per series (small data only)."""
    chunks = collections.defaultdict(list)
    for path in files:
        for series_id, chunk in read_chunks(path, columns):
            chunks[series_id].append(chunk)
    return chunks


def window_files(files: Sequence[str], options: WindowingOptions) -> dict[str, tuple[list[SplitWindows], dict]]:
    """The whole example generation in this process, without Beam: ``{series_id: window_series(...)}``."""
    chunks = chunks_by_series(files, options.columns)
    times = [t for c in chunks.values() for chunk in c for t in (chunk.times.min(), chunk.times.max()) if len(chunk)]
    span = (int(min(times)), int(max(times))) if times else None
    return {series_id: window_series(series_id, chunks[series_id], options, span) for series_id in sorted(chunks)}


def latest_window(files: Sequence[str], data: DataConfig, history: int,
                  series_id: Optional[str] = None) -> tuple[grid.Series, np.ndarray]:
    """The last ``history`` points of one series: the window to forecast from now.

    Args:
      files: The series' files.
      data: Its columns and frequency (the gap policy is not applied: the window must be whole).
      history: Window length L of the served model.
      series_id: The series, when the files hold several.

    Returns:
      The series on its grid, and its last ``history`` values.

    Raises:
      DataError: No such series, fewer than L points, or a missing point among the last L.
    """
    chunks = chunks_by_series(files, data.columns)
    names = sorted(chunks)
    listed = ", ".join(names[:_LISTED_SERIES]) + (", ..." if len(names) > _LISTED_SERIES else "")
    if series_id is None and len(chunks) == 1:
        series_id = names[0]
    if series_id is None:
        raise DataError(f"{', '.join(files)}: the data holds {len(names)} series (column '{data.series_id_column}'); "
                        f"name one with --series-id, e.g. --series-id {names[0]} (series: {listed})")
    if series_id not in chunks:
        column = f" in column '{data.series_id_column}'" if data.series_id_column else ""
        raise DataError(f"{', '.join(files)}: no series '{series_id}'{column} ({len(names)} series: {listed})")
    series, _ = grid.assemble(series_id, chunks[series_id], data)
    values = series.target[-history:]
    if len(values) < history:
        raise DataError(f"series '{series_id}' has {len(values)} points; the model needs the last {history}")
    if np.isnan(values).any():
        missing = series.times[len(series.times) - history + int(np.argmax(np.isnan(values)))]
        raise DataError(f"series '{series_id}': the point at {grid.stamp(missing)} is missing among the last {history}")
    return series, values


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
        future_covariates={name[len(features.FUTURE_PREFIX):]: column(name, "float_list", np.float32)
                           for name in names if name.startswith(features.FUTURE_PREFIX)},
        mase_scale=float(rows[0][features.MASE_SCALE].float_list.value[0]) if rows else float("nan"))
