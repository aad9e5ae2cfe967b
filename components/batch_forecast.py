"""Batch forecasting: the next H points of every series, from its last C points, as a Beam job.

The per-series work is pure (:func:`series_inputs`, :func:`forecast_columns`): a series is put on
its grid with the example generator's reader and grid (:mod:`components.example_gen`), its gaps
handled by the same policy, its last C points and covariates cut, and the H timestamps that follow
its last one computed on its own grid (:func:`frequency.following`). A series that cannot be
forecast becomes a :class:`Skipped` with its reason, never dropped. :func:`prepare_series` does
the same for many series at once with numpy (the series already on a regular grid, the common
case) and hands the others to :func:`series_inputs`.

The Beam graph (:func:`ForecastFiles`) reads the files in chunks of many series
(:class:`SeriesRows`). One file whose rows keep each series together (the usual long format,
sorted by series then time; :class:`ContiguousSeries` checks every chunk) is forecast as it is
read: each chunk's complete series go straight to :class:`_ForecastParts`, fused with the read,
with no shuffle, so memory stays flat. Otherwise (several files, which may share a series; future
covariates, from their own files; rows of series mixed, from where that shows) the rows go to
their series' shards (:func:`shard_of`) and each shard's series are forecast together. Either way
the series are prepared in bulk (:func:`prepare_series`, with the future covariates' rows when the
model takes them) and the model is run on blocks of 1024 series, in a thread of its own while the
next chunk is read: the SavedModel is loaded once per worker process, and warmed up, as the worker
sets the job up, or a running server is asked (:class:`ServedModel`). Nothing in
the job is one element per series: Beam's per-element work cost more than the forecast
(benchmarks/forecast.py). Each element's forecasts go to a part file (:func:`write_part`); the
parts are then written into one output file in the data's order, a group of parts at a time
(:func:`part_groups`, :func:`write_forecast_groups`), with the summary of skipped series
(:func:`write_summary`). The ``forecast`` command (:mod:`pipeline.forecast`) and the pipeline's
Forecaster step (:mod:`components.forecaster`) both run this job (:func:`add_forecast_job`).
"""

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import io
import json
import re
import sys
import time
import uuid
import zlib
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from components.example_gen import frequency as frequency_lib
from components.example_gen import grid, reader
from components.example_gen.columns import Columns, DataError
from components.example_gen.options import DataConfig
from components.settings import ConfigError
from serving import contract

OUTPUT_SUFFIXES = (".csv", ".parquet")
TIMESTAMP_COLUMN, STEP_COLUMN, FORECAST_COLUMN = "timestamp", "step", "forecast"
# The forecast rows' order (where each series first appears in the data), not written.
POSITION_COLUMN = "position"
# Series per model call: the batch of benchmarks/predict.py's baseline (and the largest an XLA
# export compiles for, components/trainer.py).
MAX_BATCH = 1024
# Missing timestamps named in one skip reason; the rest are counted.
_NAMED_TIMES = 5
_PROGRESS_SECONDS = 5.0
# Blocks of series given to the model's thread and not yet done: enough to keep it busy while the
# next chunk is read, few enough that memory stays flat.
_IN_FLIGHT = 2
# Rows of zeros the model is called on once, as it is opened (:meth:`LocalModel.open`): a loaded
# model's first call costs some 0.1 s more than later ones, of any size; 64 rows take it off
# the first real block's (benchmarks/forecast.py).
_WARMUP_ROWS = 64
# What makes a CSV cell need quotes.
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')
# Outputs of the job's steps.
_SERIES, _SHUFFLE, _WITHDRAWN, _PARTS, _SKIPPED = "series", "shuffle", "withdrawn", "parts", "skipped"


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What the model's ``serving_default`` takes and gives, as :mod:`serving.contract` names it.

    Attributes:
      context: C, the points of history each input row holds.
      horizon: H, the forecast steps.
      covariates: Columns whose last C values go in ``covariate_<column>`` (past and known-future ones).
      future_covariates: Columns whose H future values go in ``future_<column>``.
      origin_timestamp: Whether the model takes the origin's epoch seconds (calendar features).
      series_id: Whether the model takes the series id (per-series scaling).
      known_series: With ``series_id``: the ids the model was trained on (others cannot be
        forecast: they would get the global scaling silently), or None when not known.
    """

    context: int
    horizon: int
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()
    origin_timestamp: bool = False
    series_id: bool = False
    known_series: Optional[frozenset[str]] = None

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "ModelInputs":
        """The inputs of a model exported with :data:`contract.MODEL_DESCRIPTION_FILE` ``description``."""
        data, windows = description["data"], description["windows"]
        per_series = description.get("scaling") == "per_series"
        known = description.get("known_series")
        future = tuple(data.get("future_covariate_columns", ()))
        return cls(context=int(windows["context"]), horizon=int(windows["horizon"]),
                   covariates=tuple(data.get("covariate_columns", ())) + future, future_covariates=future,
                   origin_timestamp=bool(windows.get("calendar_features", True)),
                   series_id=bool(description.get("takes_series_id", per_series)),
                   known_series=frozenset(known) if per_series and known is not None else None)

    @classmethod
    def from_signature(cls, inputs: dict[str, list[int]], outputs: dict[str, list[int]]) -> "ModelInputs":
        """The inputs of a served signature, from its input and output shapes (``ForecastClient.metadata``)."""
        def columns(prefix: str) -> tuple[str, ...]:
            return tuple(sorted(k[len(prefix):] for k in inputs if k.startswith(prefix)))

        return cls(context=int(inputs[contract.INPUT_KEY][-1]), horizon=int(outputs[contract.OUTPUT_KEY][-1]),
                   covariates=columns(contract.COVARIATE_INPUT_PREFIX),
                   future_covariates=columns(contract.FUTURE_INPUT_PREFIX),
                   origin_timestamp=contract.ORIGIN_TIMESTAMP_INPUT_KEY in inputs,
                   series_id=contract.SERIES_ID_INPUT_KEY in inputs)


@dataclasses.dataclass(frozen=True)
class SeriesInputs:
    """One series, ready for the model.

    Attributes:
      series_id: The series.
      times: Epoch seconds of the H forecast steps, on the series' grid after its last point.
      inputs: One row of each ``serving_default`` input, keyed by input name.
    """

    series_id: str
    times: np.ndarray
    inputs: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A series that could not be forecast, and why."""

    series_id: str
    reason: str


def _missing(times: np.ndarray) -> str:
    named = ", ".join(grid.stamp(t) for t in times[:_NAMED_TIMES])
    more = len(times) - _NAMED_TIMES
    return named + (f" and {more} more" if more > 0 else "")


def series_inputs(series_id: str, chunks: Sequence[reader.Chunk], data: DataConfig, model: ModelInputs,
                  future_chunks: Sequence[reader.Chunk] = ()) -> Union[SeriesInputs, Skipped]:
    """The model's inputs for the next H points of one series, or why there are none.

    The series is put on its grid and its gaps handled as the example generator does
    (``data.gap_policy`` ``interpolate`` fills runs up to ``max_gap``); the forecast then needs its
    last C points whole: a gap among them (``error`` and ``skip`` policies alike) skips the series.

    Args:
      series_id: The series.
      chunks: Its rows, as :func:`reader.read_chunks` gives them, in any order.
      data: Its columns (covariates in the order of ``model.covariates``), frequency and policies.
      model: What the model takes.
      future_chunks: With future covariates: rows of the future covariates file for this series,
        the first future column as the chunks' target and the others as their covariates.

    Returns:
      The inputs, or a :class:`Skipped` whose reason names the series' problem (and the missing
      timestamps where some are missing).
    """
    try:
        series = regular_series(series_id, chunks, data) or grid.assemble(series_id, chunks, data)[0]
    except DataError as error:
        return Skipped(series_id, str(error))
    if data.gap_policy == "interpolate":
        series, _ = grid.apply_gap_policy(series, data)
    c = model.context
    if len(series.times) < c:
        return Skipped(series_id, f"has {len(series.times)} points on its {series.frequency} grid; "
                                  f"the model needs the last {c}")
    if model.series_id and model.known_series is not None and series_id not in model.known_series:
        return Skipped(series_id, "unknown to the model, which scales each series by its own training "
                                  "statistics (per_series)")
    last = slice(len(series.times) - c, None)
    values = np.column_stack([series.target[last], series.covariates[last]])
    holes = np.isnan(values)
    if holes.any():
        columns = [data.columns.target, *data.columns.covariates]
        which = sorted({columns[i] for i in np.flatnonzero(holes.any(axis=0))})
        return Skipped(series_id, f"missing values ({', '.join(which)}) among its last {c} points at "
                                  f"{_missing(series.times[last][holes.any(axis=1)])}")
    origin = int(series.times[-1])
    times = _following(origin, series.frequency, model.horizon, data.business)
    inputs = _signature_inputs(model, data, series.target[last], series.covariates[last], np.int64(origin),
                               np.array(series_id, dtype=object))
    if model.future_covariates:
        future = _future_values(series_id, future_chunks, model.future_covariates, times)
        if isinstance(future, Skipped):
            return future
        inputs.update(future)
    return SeriesInputs(series_id, times, inputs)


def _signature_inputs(model: ModelInputs, data: DataConfig, target: np.ndarray, covariates: np.ndarray,
                      origin: np.ndarray, series_id: np.ndarray) -> dict[str, np.ndarray]:
    """The signature's inputs but the future covariates, for one window or many: the target's last C
    points ``[..., C]``, the covariates' ``[..., C, K]`` (in the order of ``data``), the origin and
    the series id ``[...]``; each kept when the model takes it."""
    inputs = {contract.INPUT_KEY: target.astype(contract.INPUT_DTYPE)}
    covariate_index = {name: i for i, name in enumerate(data.columns.covariates)}
    for name in model.covariates:
        inputs[contract.covariate_input_key(name)] = covariates[..., covariate_index[name]].astype(
            contract.INPUT_DTYPE)
    if model.origin_timestamp:
        inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY] = origin
    if model.series_id:
        inputs[contract.SERIES_ID_INPUT_KEY] = series_id
    return inputs


_DAY, _WEEK = 86_400, 7 * 86_400
# Steps from about four weeks up may be calendar months, quarters or years: pandas decides those.
_CALENDAR_STEPS = 28 * _DAY


def regular_series(series_id: str, chunks: Sequence[reader.Chunk], data: DataConfig) -> Optional[grid.Series]:
    """The series on its grid, when its rows already are one: sorted, distinct, every step alike.

    The common case of data to forecast, done with numpy alone: :func:`grid.assemble` builds the
    grid with pandas, about 2 ms a series, most of a forecast's per-series time. The result is the
    one :func:`grid.assemble` gives; None when the rows are not such a grid (gaps, duplicates, rows
    out of order, steps that may be calendar months, a frequency given that is not the step),
    which :func:`grid.assemble` then handles, errors included.
    """
    if len(chunks) != 1 or len(chunks[0]) < 2 or data.business_hours is not None:
        return None
    chunk = chunks[0]
    steps = np.diff(chunk.times)
    step = int(steps[0])
    frequency = _grid_frequency(step, int(_weekday(chunk.times[0]))) if (steps == step).all() else None
    if frequency is None or (data.frequency and data.frequency != frequency):
        return None
    n = len(chunk)
    return grid.Series(series_id, frequency, chunk.times, chunk.target, chunk.covariates, (chunk.file,),
                       np.zeros(n, np.int32), chunk.rows)


def _weekday(times: Any) -> Any:
    """pandas' day of the week (Monday 0) of epoch seconds: 1970-01-01 was a Thursday (3)."""
    return (times // _DAY + 3) % 7


def _grid_frequency(step: int, weekday: int) -> Optional[str]:
    """The frequency of a regular grid of ``step`` seconds whose first point falls on ``weekday``,
    where numpy can tell it; None for a step that is not positive, that may be calendar months
    (pandas decides those), or that no frequency has (:func:`grid.assemble` then names the problem)."""
    if step <= 0 or (step >= _CALENDAR_STEPS and step % _WEEK):
        return None
    try:
        return _step_frequency(step, weekday)
    except frequency_lib.FrequencyError:
        return None


@functools.lru_cache(maxsize=1024)
def _step_frequency(step: int, weekday: int) -> str:
    """The frequency :func:`frequency.infer_frequency` gives a grid of ``step`` seconds starting on ``weekday``."""
    monday = 4 * _DAY  # 1970-01-05
    start = monday + weekday * _DAY
    return frequency_lib.infer_frequency(np.array([start, start + step], np.int64))


@functools.lru_cache(maxsize=4096)
def _following(origin: int, frequency: str, steps: int,
               hours: Optional[frequency_lib.BusinessHours] = None) -> np.ndarray:
    """:func:`frequency.following`, once per origin: series of one data set mostly end together."""
    times = frequency_lib.following(origin, frequency, steps, hours)
    times.setflags(write=False)
    return times


def _future_values(series_id: str, chunks: Sequence[reader.Chunk], columns: tuple[str, ...],
                   times: np.ndarray) -> Union[dict[str, np.ndarray], Skipped]:
    """Each future covariate at the forecast steps ``times``, from the future covariates' rows."""
    have_times = np.concatenate([c.times for c in chunks]) if chunks else np.zeros(0, np.int64)
    have = np.concatenate([np.column_stack([c.target, c.covariates]) for c in chunks]) if chunks \
        else np.zeros((0, len(columns)))
    found = {int(t): row for t, row in zip(have_times, have) if not np.isnan(row).any()}
    missing = np.array([t for t in times if int(t) not in found], np.int64)
    if len(missing):
        return Skipped(series_id, f"no future values of {', '.join(columns)} for {_missing(missing)}")
    rows = np.stack([found[int(t)] for t in times])
    return {contract.future_input_key(name): rows[:, i].astype(contract.INPUT_DTYPE)
            for i, name in enumerate(columns)}


def future_columns(data: DataConfig) -> Columns:
    """How the future covariates file is read: its first future column in the target's place."""
    first, *rest = data.future_covariate_columns
    return Columns(timestamp=data.timestamp_column, target=first, series_id=data.series_id_column,
                   covariates=tuple(rest))


@dataclasses.dataclass(frozen=True)
class SeriesBlock:
    """Many series, ready for the model: the bulk form of :class:`SeriesInputs`.

    Attributes:
      series_ids: The series ``[N]``.
      times: Epoch seconds of each series' H forecast steps ``[N, H]``.
      inputs: The ``serving_default`` inputs, one row per series, keyed by input name.
      positions: Where each series first appears in the data ``[N]`` (:func:`data_position`): the
        output's order; None where not known (the output is then ordered by series id).
    """

    series_ids: np.ndarray
    times: np.ndarray
    inputs: dict[str, np.ndarray]
    positions: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.series_ids)

    def rows(self, part: Any) -> "SeriesBlock":
        """The series ``part`` (a slice, or a boolean mask) of the block."""
        return SeriesBlock(self.series_ids[part], self.times[part], {k: v[part] for k, v in self.inputs.items()},
                           self.positions[part] if self.positions is not None else None)


# Rows a file may have, as bits of :func:`data_position`.
_ROW_BITS = 40


def data_position(file_index: Any, row: Any) -> Any:
    """Where a row is in the data, as one integer that orders rows by file (in the job's order), then row."""
    return (np.asarray(file_index, np.int64) << _ROW_BITS) + np.asarray(row, np.int64)


@dataclasses.dataclass(frozen=True)
class SeriesRows:
    """Rows of many series from one chunk of a file, as the job's shuffle carries them.

    The ids go as codes into the distinct ones: pickling one text per row took longer than the
    forecast itself (10k series, benchmarks/forecast.py).

    Attributes:
      names: The distinct series ids that have rows here ``[k]``.
      codes: Each row's index into ``names`` ``[n]``.
      chunk: The rows (:func:`reader.read_blocks`).
    """

    names: np.ndarray
    codes: np.ndarray
    chunk: reader.Chunk

    @classmethod
    def of(cls, series_ids: np.ndarray, chunk: reader.Chunk) -> "SeriesRows":
        """The rows ``chunk``, of series ``series_ids`` ``[n]``."""
        codes, names = pd.factorize(np.asarray(series_ids, dtype=object))
        return cls(np.asarray(names, dtype=object), codes.astype(np.int32), chunk)

    def __len__(self) -> int:
        return len(self.codes)

    def slice(self, begin: int, end: int) -> "SeriesRows":
        """Rows ``begin:end`` of rows whose codes never decrease (each series' rows together), without
        :meth:`take`'s search of the timestamp forms: a chunk's rows are numbered one after another."""
        chunk = self.chunk
        if begin >= end:
            return self.take(np.zeros(0, np.int64))
        low, high = int(chunk.rows[begin]), int(chunk.rows[end - 1])
        first = int(self.codes[begin])
        return SeriesRows(self.names[first:int(self.codes[end - 1]) + 1], self.codes[begin:end] - first, reader.Chunk(
            chunk.file, chunk.rows[begin:end], chunk.times[begin:end], chunk.target[begin:end],
            chunk.covariates[begin:end], tuple(f for f in chunk.forms if low <= f[2] <= high)))

    def take(self, at: np.ndarray) -> "SeriesRows":
        """Rows ``at`` (increasing), with their series' timestamp forms."""
        chunk = self.chunk
        mine = set(chunk.rows[at].tolist())
        # Only the series that have rows among them.
        present, codes = np.unique(self.codes[at], return_inverse=True)
        return SeriesRows(self.names[present], codes.astype(np.int32), reader.Chunk(
            chunk.file, chunk.rows[at], chunk.times[at], chunk.target[at], chunk.covariates[at],
            tuple(f for f in chunk.forms if f[2] in mine)))


def _grouped(parts: Sequence[SeriesRows], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The series code of each row of ``parts`` (codes index ``ids``; -1: not one of them), the rows
    ordered by series, then part, then file order, and each series' bounds in that order."""
    index = pd.Index(ids)
    codes = np.concatenate([index.get_indexer(p.names)[p.codes] for p in parts]) if parts \
        else np.zeros(0, np.int64)
    part = np.concatenate([np.full(len(p), i, np.int64) for i, p in enumerate(parts)]) if parts else codes
    order = np.lexsort((part, codes))
    bounds = np.searchsorted(codes[order], np.arange(len(ids) + 1))
    return codes, order, bounds


def _series_chunks(parts: Sequence[SeriesRows], order: np.ndarray, begin: int, end: int) -> list[reader.Chunk]:
    """The rows ``order[begin:end]`` of ``parts`` (one series, ordered by part), one Chunk per part,
    each with its own timestamp forms (``Chunk.forms`` of a part lists each series' first rows)."""
    offsets = np.cumsum([0] + [len(p) for p in parts])
    index = order[begin:end]
    part = np.searchsorted(offsets, index, side="right") - 1
    return [parts[p].take(index[part == p] - offsets[p]).chunk for p in np.unique(part)]


def _future_lookup(parts: Sequence[SeriesRows], codes: np.ndarray, wanted: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Future covariates of many series at their forecast steps, as :func:`_future_values` finds them.

    Args:
      parts: The future covariates' rows.
      codes: Each of their rows' series code (-1: a series not wanted).
      wanted: The series' codes ``[N]``.
      times: Their forecast steps ``[N, H]``.

    Returns:
      ``[N, H, F]``: the values of the last row at each series and step that has no missing value;
      NaN where there is none.
    """
    width = parts[0].chunk.covariates.shape[1] + 1 if parts else 1
    found = np.full((*times.shape, width), np.nan)
    if not parts:
        return found
    rows = np.concatenate([np.column_stack([p.chunk.target, p.chunk.covariates]) for p in parts])
    usable = (codes >= 0) & ~np.isnan(rows).any(axis=1)
    keys = pd.DataFrame({"series": codes[usable], "time": np.concatenate([p.chunk.times for p in parts])[usable]})
    last = ~keys.duplicated(keep="last").to_numpy()
    index = pd.MultiIndex.from_frame(keys[last])
    at = index.get_indexer(pd.MultiIndex.from_arrays([np.repeat(wanted, times.shape[1]), times.reshape(-1)]))
    flat = found.reshape(-1, width)
    flat[at >= 0] = rows[usable][last][at[at >= 0]]
    return found


def prepare_series(parts: Sequence[SeriesRows], data: DataConfig, model: ModelInputs,
                   future_parts: Sequence[SeriesRows] = (),
                   files: Sequence[str] = ()) -> tuple[Optional[SeriesBlock], list[Skipped]]:
    """The model's inputs for the next H points of every series in ``parts``, in bulk.

    What :func:`series_inputs` gives each series, computed with numpy for all series at once where
    a series is already on its grid (sorted, distinct, every step alike, not a calendar step), its
    last C points whole and its id known: the common case. Any other series goes through
    :func:`series_inputs` itself (grids with gaps, duplicates, interpolation, business hours, errors).

    Args:
      parts: The rows of the series, from any files and in any order; one series may be in many parts.
      data: Their columns (covariates in the order of ``model.covariates``), frequency and policies.
      model: What the model takes.
      future_parts: With future covariates: the future covariates file's rows
        (:func:`future_columns`); rows of series that ``parts`` does not hold are ignored.
      files: The data files in the job's order, for the series' positions (:attr:`SeriesBlock.positions`).

    Returns:
      The series that can be forecast (None when there are none), with where each first appears in
      the data, and the others, each with its reason.
    """
    uniques = pd.unique(np.concatenate([p.names for p in parts])) if parts else np.zeros(0, object)
    if not len(uniques):
        return None, []
    c, h = model.context, model.horizon
    k = len(uniques)
    codes, order, bounds = _grouped(parts, uniques)
    file_index = {f: i for i, f in enumerate(files)}
    rows_at = np.concatenate([data_position(file_index.get(p.chunk.file, 0), p.chunk.rows) for p in parts])
    # Each series' rows lie together in ``order``: its first row in the data is their least.
    positions = np.minimum.reduceat(rows_at[order], bounds[:-1])
    times = np.concatenate([p.chunk.times for p in parts])
    target = np.concatenate([p.chunk.target for p in parts])
    covariates = np.concatenate([p.chunk.covariates for p in parts])
    # Rows by series, then time (the grid check); a stable sort keeps each series' file order in ties.
    by_time = np.lexsort((times, codes))
    sorted_codes, sorted_times = codes[by_time], times[by_time]
    starts, ends = bounds[:-1], bounds[1:]
    counts = ends - starts
    fast = counts >= max(2, c)
    if data.business_hours is not None:
        fast[:] = False
    first = np.minimum(starts + 1, len(times) - 1)
    step = np.where(counts >= 2, sorted_times[first] - sorted_times[starts], 0)
    same = sorted_codes[1:] == sorted_codes[:-1]
    uneven = same & (np.diff(sorted_times) != step[sorted_codes[1:]])
    fast &= np.bincount(sorted_codes[1:][uneven], minlength=k) == 0
    weekday = _weekday(sorted_times[starts])
    frequencies = np.full(k, "", dtype=object)
    for s, w in set(zip(step[fast].tolist(), weekday[fast].tolist())):
        alike = fast & (step == s) & (weekday == w)
        frequency = _grid_frequency(s, w)
        if frequency is None:
            fast &= ~alike
        else:
            frequencies[alike] = frequency
    if data.frequency:
        fast &= frequencies == data.frequency
    # The last C points of each series, [k, C] (rows of short series are clipped, and unused).
    last = by_time[np.clip(ends[:, None] - c + np.arange(c), 0, max(len(times) - 1, 0))]
    fast &= ~np.isnan(target[last]).any(axis=1)
    if covariates.shape[1]:
        fast &= ~np.isnan(covariates[last]).any(axis=(1, 2))
    if model.series_id and model.known_series is not None:
        fast &= np.isin(uniques, list(model.known_series))
    fast_codes = np.flatnonzero(fast)
    origins = sorted_times[ends[fast_codes] - 1]
    steps = np.zeros((len(fast_codes), h), np.int64)
    for origin, frequency in set(zip(origins.tolist(), frequencies[fast_codes].tolist())):
        steps[(origins == origin) & (frequencies[fast_codes] == frequency)] = _following(origin, frequency, h)
    window = last[fast_codes]
    inputs = _signature_inputs(model, data, target[window], covariates[window], origins.astype(np.int64),
                               uniques[fast_codes].astype(object))
    ready = [SeriesBlock(uniques[fast_codes].astype(object), steps, inputs, positions[fast_codes])]
    skipped, slow = [], []
    future = _grouped(future_parts, uniques) if model.future_covariates else None
    if future is not None:
        values = _future_lookup(future_parts, future[0], fast_codes, steps)
        keep = ~np.isnan(values).any(axis=(1, 2))
        extra = {contract.future_input_key(name): values[:, :, i].astype(contract.INPUT_DTYPE)
                 for i, name in enumerate(model.future_covariates)}
        # A series lacking some future values: the per-series lookup names them.
        for i in np.flatnonzero(~keep):
            code = fast_codes[i]
            chunks = _series_chunks(future_parts, future[1], future[2][code], future[2][code + 1])
            skipped.append(_future_values(str(uniques[code]), chunks, model.future_covariates, steps[i]))
        ready = [SeriesBlock(ready[0].series_ids, steps, {**inputs, **extra}, positions[fast_codes]).rows(keep)]
    slow_codes = []
    for code in np.flatnonzero(~fast):
        series_id = str(uniques[code])
        future_chunks = _series_chunks(future_parts, future[1], future[2][code], future[2][code + 1]) \
            if future is not None else ()
        result = series_inputs(series_id, _series_chunks(parts, order, bounds[code], bounds[code + 1]), data,
                               model, future_chunks)
        (skipped if isinstance(result, Skipped) else slow).append(result)
        if not isinstance(result, Skipped):
            slow_codes.append(code)
    if slow:
        ready.append(SeriesBlock(np.array([s.series_id for s in slow], dtype=object),
                                 np.stack([s.times for s in slow]).astype(np.int64), stack_inputs(slow),
                                 positions[np.array(slow_codes, np.int64)]))
    return concatenate_blocks(ready), skipped


def concatenate_blocks(blocks: Sequence[SeriesBlock]) -> Optional[SeriesBlock]:
    """The series of ``blocks``, one after another, as one block; None when there are none."""
    blocks = [b for b in blocks if len(b)]
    if len(blocks) <= 1:
        return blocks[0] if blocks else None
    positions = np.concatenate([b.positions for b in blocks]) if all(b.positions is not None for b in blocks) \
        else None
    return SeriesBlock(np.concatenate([b.series_ids for b in blocks]), np.concatenate([b.times for b in blocks]),
                       {k: np.concatenate([b.inputs[k] for b in blocks]) for k in blocks[0].inputs}, positions)


def shard_of(series_ids: np.ndarray, shards: int) -> np.ndarray:
    """Each series' shard in ``0..shards-1``, the same on every worker and run (CRC-32 of the id)."""
    if shards == 1:
        return np.zeros(len(series_ids), np.int64)
    codes, uniques = pd.factorize(series_ids)
    return np.array([zlib.crc32(str(u).encode()) % shards for u in uniques], np.int64)[codes]


def stack_inputs(batch: Sequence[SeriesInputs]) -> dict[str, np.ndarray]:
    """The inputs of a batch of series, one row each, keyed by input name."""
    return {name: np.stack([s.inputs[name] for s in batch]) for name in batch[0].inputs}


def quantile_column(level: float) -> str:
    """The output column of a quantile level: 0.1 gives ``p10``, 0.025 ``p2.5``, 0.5 ``p50``."""
    return f"p{round(float(level) * 100, 6):g}"


def forecast_columns(block: SeriesBlock, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The output rows of a block of series, H per series, as columns.

    Args:
      block: The series, as given to the model.
      outputs: The model's outputs for them: ``forecast`` ``[N, H]``, and with quantiles
        ``forecast_quantiles`` ``[N, H, Q]`` and ``quantile_levels`` ``[N, Q]``.

    Returns:
      ``series_id`` (text), ``timestamp`` (epoch seconds), ``step`` (1..H), ``forecast``, and one
      ``p<percent>`` column per quantile level; with the block's positions, ``position`` (the
      output's order, not written).
    """
    forecast = np.asarray(outputs[contract.OUTPUT_KEY])
    n, h = forecast.shape
    columns = {"series_id": np.repeat(block.series_ids.astype(object), h),
               TIMESTAMP_COLUMN: block.times.reshape(-1).astype(np.int64),
               STEP_COLUMN: np.tile(np.arange(1, h + 1, dtype=np.int64), n),
               FORECAST_COLUMN: forecast.reshape(-1).astype(np.float64)}
    if contract.QUANTILES_OUTPUT_KEY in outputs:
        quantiles = np.asarray(outputs[contract.QUANTILES_OUTPUT_KEY])
        levels = np.asarray(outputs[contract.QUANTILE_LEVELS_OUTPUT_KEY]).reshape(-1, quantiles.shape[-1])[0]
        for q, level in enumerate(levels):
            columns[quantile_column(level)] = quantiles[:, :, q].reshape(-1).astype(np.float64)
    if block.positions is not None:
        columns[POSITION_COLUMN] = np.repeat(block.positions, h)
    return columns


# The data settings that a model's description carries and a forecast's flags may override.
DATA_FIELDS = ("timestamp_column", "target_column", "series_id_column", "frequency", "duplicates", "gap_policy",
               "max_gap", "covariate_columns", "future_covariate_columns", "business_hours", "business_days")
SUMMARY_SUFFIX = ".summary.json"


def read_description(model_dir: str) -> dict[str, Any]:
    """The model description the export wrote into ``model_dir`` (:data:`contract.MODEL_DESCRIPTION_FILE`).

    Raises:
      FileNotFoundError: The model has none (exported before descriptions were written).
    """
    import tensorflow as tf
    path = f"{model_dir.rstrip('/')}/{contract.MODEL_DESCRIPTION_FILE}"
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: the model carries no description of its data; re-run the pipeline "
                                "to export one, or ask a server (--server) and give the data's columns")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def data_config(path: str, description: Optional[dict[str, Any]], overrides: dict[str, Any]) -> DataConfig:
    """The data settings: the model's description, then the ``overrides`` that are not None.

    Raises:
      ConfigError: A setting out of its choices or range, naming its flag.
    """
    values = {k: v for k, v in ((description or {}).get("data") or {}).items() if k in DATA_FIELDS}
    values.update({k: v for k, v in overrides.items() if k in DATA_FIELDS and v is not None})
    return DataConfig(path=path, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check_covariates(data: DataConfig, model: ModelInputs) -> None:
    """The data's covariate columns must be the model's (their order does not matter).

    Raises:
      ConfigError: They differ; the message names both.
    """
    if sorted(data.columns.covariates) != sorted(model.covariates) or \
            sorted(data.future_covariate_columns) != sorted(model.future_covariates):
        raise ConfigError(f"the model takes covariates {', '.join(model.covariates) or 'none'} (future: "
                          f"{', '.join(model.future_covariates) or 'none'}); the settings give "
                          f"{', '.join(data.columns.covariates) or 'none'} (future: "
                          f"{', '.join(data.future_covariate_columns) or 'none'}): give --covariate-columns "
                          "and --future-covariate-columns as in training")


class LocalModel:
    """A SavedModel version on disk, called in this process (TF2)."""

    def __init__(self, path: str):
        self.path = path

    def open(self, warmup_rows: int = 0) -> Any:
        """A callable from stacked inputs to the signature's outputs as numpy arrays.

        Batches go in at their own size: an XLA export pads each batch to its few compiled sizes
        itself (``components/trainer.py``), and the default export compiles nothing.

        Args:
          warmup_rows: With more than 0, the signature is called once on that many rows of zeros
            before it is returned, as TF Serving's warmup does: a loaded model's first call (and
            its first calls) costs some 0.1 s more than a later one (benchmarks/forecast.py).
        """
        import tensorflow as tf
        signature = tf.saved_model.load(self.path).signatures[contract.SIGNATURE_NAME]
        if warmup_rows > 0:
            _, specs = signature.structured_input_signature
            signature(**{name: tf.zeros([warmup_rows, *spec.shape[1:]], spec.dtype) for name, spec in specs.items()})

        def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            tensors = {k: tf.constant(np.asarray(v, contract.input_dtype(k))) for k, v in inputs.items()}
            return {k: v.numpy() for k, v in signature(**tensors).items()}

        return predict


class ServedModel:
    """A model on a running TF Serving (or ``lstm-forecast serve``) server, asked over gRPC."""

    def __init__(self, target: str, model_name: str, version: Optional[int] = None, timeout_s: float = 30.0):
        self.target, self.model_name, self.version, self.timeout_s = target, model_name, version, timeout_s

    def open(self, warmup_rows: int = 0) -> Any:
        """A callable from stacked inputs to the server's outputs as numpy arrays (``warmup_rows`` is
        unused: the server warms its models up itself)."""
        from serving import client as client_lib
        client = client_lib.ForecastClient(self.target, self.model_name, version=self.version,
                                           timeout_s=self.timeout_s)

        with_quantiles = contract.QUANTILES_OUTPUT_KEY in client.metadata()[contract.SIGNATURE_NAME]["outputs"]

        def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            extra = {k: v for k, v in inputs.items() if k != contract.INPUT_KEY}
            if not with_quantiles:
                return {contract.OUTPUT_KEY: client.predict(inputs[contract.INPUT_KEY], extra_inputs=extra)}
            result = client.predict_quantiles(inputs[contract.INPUT_KEY], extra_inputs=extra)
            return {contract.OUTPUT_KEY: result.forecast, contract.QUANTILES_OUTPUT_KEY: result.quantiles,
                    contract.QUANTILE_LEVELS_OUTPUT_KEY: result.levels}

        return predict


class SeenIds:
    """The series ids seen, kept as a sorted numpy array of their 64-bit hashes: 8 bytes an id.

    A Python set of the id strings cost about 0.5 KB a series (benchmarks/forecast.py, peak RSS at
    10k and 40k series). Two ids share a hash with odds of about ``n**2 / 2**65``: an id then
    taken for seen is handled as a series that comes again (shuffled and read again, from all its
    rows), which costs time, never a wrong forecast.
    """

    def __init__(self) -> None:
        self._hashes = np.zeros(0, np.uint64)

    def __len__(self) -> int:
        return len(self._hashes)

    @staticmethod
    def hashes(ids: Sequence[str]) -> np.ndarray:
        """The 64-bit hash of each id ``[n]`` (pandas' stable hash: the same in every process)."""
        return pd.util.hash_array(np.asarray(ids, dtype=object)) if len(ids) else np.zeros(0, np.uint64)

    def add(self, ids: Sequence[str]) -> None:
        """Adds ``ids`` (a chunk's), merged into the sorted hashes."""
        if len(ids):
            self._hashes = np.union1d(self._hashes, self.hashes(ids))

    def seen(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` seen before (or sharing a seen id's hash)."""
        if not len(ids) or not len(self._hashes):
            return []
        wanted = self.hashes(ids)
        at = np.minimum(np.searchsorted(self._hashes, wanted), len(self._hashes) - 1)
        return [ids[i] for i in np.flatnonzero(self._hashes[at] == wanted)]


class ContiguousSeries:
    """Tells, chunk by chunk, the complete series of a file whose rows keep each series together.

    The usual long format (rows sorted by series, then time) holds each series' rows in one run:
    a series is then complete when the next one starts, and can be forecast at once, with no
    shuffle holding every row. While that holds, :meth:`add` gives each chunk's complete series and
    keeps its last one, maybe unfinished, for the next chunk. Checked on every chunk: within it, the
    series appear in runs (their codes, numbered by first appearance, never decrease), and no run
    belongs to a series already given. Once broken, every chunk from then on is to be shuffled,
    as the series still unfinished; a series already given whose rows come again is
    :attr:`withdrawn`, its rows before :attr:`broken_at` to be read again and shuffled too.

    Holds the hashes of the ids of the series given (:class:`SeenIds`), not their rows, to tell a
    series that comes again: memory stays flat as the series grow.
    """

    def __init__(self) -> None:
        self.contiguous = True
        self.broken_at: Optional[int] = None
        self.withdrawn: set[str] = set()
        self._given = SeenIds()
        self._carry: list[SeriesRows] = []
        self._carry_id: Optional[str] = None
        self._shuffled_whole: Optional[str] = None
        self._chunks = 0

    def add(self, rows: SeriesRows) -> tuple[list[SeriesRows], list[SeriesRows]]:
        """The next chunk's rows; returns the parts of the series complete now, and the parts to shuffle."""
        chunk, self._chunks = self._chunks, self._chunks + 1
        names = [str(n) for n in rows.names]
        if not self.contiguous:
            self._withdraw(names)
            return [], [rows]
        continues = bool(names) and names[0] == self._carry_id
        new = names[1:] if continues else names
        runs = len(rows) < 2 or bool((np.diff(rows.codes) >= 0).all())
        if not runs or self._carry_id in new or self._given.seen(new):
            self.contiguous, self.broken_at, self._shuffled_whole = False, chunk, self._carry_id
            self._withdraw(names)
            shuffle, self._carry, self._carry_id = [*self._carry, rows], [], None
            return [], shuffle
        if len(names) == 1 and continues:
            self._carry.append(rows)
            return [], []
        # The rows of the chunk's last series, the one maybe unfinished, start at its code's first row.
        last = int(np.searchsorted(rows.codes, len(names) - 1))
        complete = self._carry + ([rows.slice(0, last)] if last else [])
        self._given.add(names[:-1] + ([self._carry_id] if self._carry_id is not None else []))
        self._carry, self._carry_id = [rows.slice(last, len(rows))], names[-1]
        return complete, []

    def _withdraw(self, names: list[str]) -> None:
        # A hash shared by chance may name a series never given: one with no rows before the break
        # is harmless (nothing to read again, no forecast to replace); the one series that has, the
        # unfinished one the break shuffled with all its rows, must not be read again.
        self.withdrawn.update(n for n in self._given.seen(names) if n != self._shuffled_whole)

    def finish(self) -> list[SeriesRows]:
        """The parts of the file's last series, complete at its end (none when the file was shuffled)."""
        complete, self._carry = self._carry, []
        if self._carry_id is not None:
            self._given.add([self._carry_id])
        self._carry_id = None
        return complete


class _ReadFile(beam.DoFn):
    """Reads one file in chunks of rows (:func:`reader.read_blocks`).

    With ``stream``, while the file keeps each series' rows together (:class:`ContiguousSeries`), the
    main output is each chunk's complete series (a list of :class:`SeriesRows`), forecast at once by
    the steps fused after this one; else, and from where that breaks, tagged ``shuffle``:
    ``(shard, (role, SeriesRows))`` for the series' shards; tagged ``withdrawn``: the series sent on
    whose rows came again, whose forecasts the shuffle's replace, as ``("withdrawn", id)``. Rows
    travel in bulk, a shard's part of a chunk at a time: one element per series cost more in Beam's
    per-element work than the whole forecast (10k series, benchmarks/forecast.py).
    """

    def __init__(self, columns: Columns, role: str, shards: int, stream: bool = False):
        self._columns, self._role, self._shards, self._stream = columns, role, shards, stream

    def _shuffled(self, rows: SeriesRows) -> Iterator[Any]:
        if self._shards == 1:
            yield beam.pvalue.TaggedOutput(_SHUFFLE, (0, (self._role, rows)))
            return
        shards = shard_of(rows.names, self._shards)[rows.codes]
        for shard in np.unique(shards).tolist():
            yield beam.pvalue.TaggedOutput(_SHUFFLE, (shard, (self._role, rows.take(np.flatnonzero(shards == shard)))))

    def process(self, path: str) -> Iterator[Any]:
        series = ContiguousSeries() if self._stream else None
        for ids, chunk in reader.read_blocks(path, self._columns):
            rows = SeriesRows.of(ids, chunk)
            complete, shuffle = series.add(rows) if series is not None else ([], [rows])
            if complete:
                yield complete
            for part in shuffle:
                yield from self._shuffled(part)
        if series is None:
            return
        if series.contiguous:
            yield series.finish()
            return
        # Series sent on before the file broke its runs and found again after: their earlier rows
        # are read again, to be forecast from all their rows.
        withdrawn = np.array(sorted(series.withdrawn), dtype=object)
        for chunk_index, (ids, chunk) in enumerate(reader.read_blocks(path, self._columns)):
            if chunk_index >= series.broken_at or not len(withdrawn):
                break
            rows = SeriesRows.of(ids, chunk)
            at = np.flatnonzero(np.isin(rows.names, withdrawn)[rows.codes])
            if len(at):
                yield from self._shuffled(rows.take(at))
        for series_id in series.withdrawn:
            yield beam.pvalue.TaggedOutput(_WITHDRAWN, (_WITHDRAWN, series_id))


class _ForecastParts(beam.DoFn):
    """Prepares series in bulk (:func:`prepare_series`), forecasts them in blocks of up to ``max_batch``
    and writes their rows to a part file in ``parts_dir``; emits ``("parts", part)`` (:func:`write_part`),
    and ``("skipped", (streamed, entry))`` for each :class:`Skipped`: one output, so that the job's
    results reach its last step as one side input.

    Its input: lists of :class:`SeriesRows` (complete series, from :class:`_ReadFile` with ``stream``),
    or with ``grouped`` a shard's ``(shard, [(role, SeriesRows)])``. The model is opened once per
    worker process (:class:`apache_beam.utils.shared.Shared`) and called in a thread of this DoFn's
    own, at most :data:`_IN_FLIGHT` blocks ahead of the series being read: TensorFlow lets go of the
    GIL while the model runs, so the next chunk is read and prepared meanwhile on what the model
    leaves of the cores (it keeps about 1.6 of 2 busy; 10k series at load 1.7: 0.97 s a job against
    1.10 s with the model called in line, medians of five, benchmarks/forecast.py). With
    ``open_at_setup`` (the path that surely gets series) that thread opens the model and warms it up
    (:meth:`LocalModel.open`) as soon as the worker sets the DoFn up, while the file is read; the other
    path opens it on its first series, so that one that gets none loads nothing.
    """

    def __init__(self, data: DataConfig, model_inputs: ModelInputs, model: Union["LocalModel", "ServedModel"],
                 shared_model: Any, parts_dir: str, max_batch: int, progress: bool, grouped: bool,
                 files: Sequence[str], open_at_setup: bool = False):
        self._data, self._model_inputs, self._model, self._shared = data, model_inputs, model, shared_model
        self._files, self._open_at_setup = tuple(files), open_at_setup
        self._parts_dir, self._max_batch, self._progress, self._grouped = parts_dir, max_batch, progress, grouped

    def setup(self) -> None:
        import tensorflow as tf
        tf.io.gfile.makedirs(self._parts_dir)
        self._predict, self._done, self._last_report = None, 0, time.monotonic()
        # One thread: the model's calls, in order; it runs only while the job waits for it or reads.
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-model")
        if self._open_at_setup:
            # A failure here comes again from the first block's call, which opens the model if this did not.
            self._calls.submit(self._opened)

    def teardown(self) -> None:
        self._calls.shutdown(wait=True)

    def start_bundle(self) -> None:
        # Series prepared but not yet forecast: less than a block, kept for the next element's.
        self._pending: list[SeriesBlock] = []
        # Blocks given to the model's thread, oldest first: each a future of (part, series).
        self._running: collections.deque = collections.deque()

    def process(self, element: Any) -> Iterator[Any]:
        if self._grouped:
            parts = {"data": [], "future": []}
            for role, part in element[1]:
                parts[role].append(part)
            data_parts, future_parts = parts["data"], parts["future"]
        else:
            data_parts, future_parts = element, []
        block, skipped = prepare_series(data_parts, self._data, self._model_inputs, future_parts, self._files)
        for entry in skipped:
            yield _SKIPPED, (not self._grouped, dataclasses.asdict(entry))
        if block is not None:
            self._pending.append(block)
        self._submit(whole_blocks=True)
        yield from self._finished(keep=_IN_FLIGHT)

    def finish_bundle(self) -> Iterator[Any]:
        self._submit(whole_blocks=False)
        for part in self._finished(keep=0):
            yield beam.utils.windowed_value.WindowedValue(part, beam.transforms.window.GlobalWindow().max_timestamp(),
                                                          [beam.transforms.window.GlobalWindow()])

    def _submit(self, whole_blocks: bool) -> None:
        """Gives the pending series to the model's thread (``whole_blocks``: only whole blocks of
        ``max_batch``, the rest stays pending; a smaller block costs nearly as much)."""
        pending = concatenate_blocks(self._pending)
        if pending is None:
            return
        ready = len(pending) // self._max_batch * self._max_batch if whole_blocks else len(pending)
        self._pending = [pending.rows(slice(ready, None))] if ready < len(pending) else []
        if ready:
            self._running.append(self._calls.submit(self._forecast, pending.rows(slice(0, ready))))

    def _finished(self, keep: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The parts of the blocks done, in order (``("parts", part)``); waits for the oldest while more
        than ``keep`` run."""
        while self._running and (self._running[0].done() or len(self._running) > keep):
            part, series = self._running.popleft().result()
            self._done += series
            now = time.monotonic()
            if self._progress and now - self._last_report >= _PROGRESS_SECONDS:
                self._last_report = now
                # On a distributed runner each worker counts its own series.
                print(f"forecast: {self._done} series so far", file=sys.stdout, flush=True)
            yield _PARTS, part

    def _opened(self) -> Any:
        """The model's predict function (in the model's thread only)."""
        if self._predict is None:
            # The model object itself cannot be weakly referenced (Shared needs that): a holder can.
            self._predict = self._shared.acquire(lambda: _Holder(self._model.open(warmup_rows=_WARMUP_ROWS))).value
        return self._predict

    def _forecast(self, series: SeriesBlock) -> tuple[dict[str, Any], int]:
        """Forecasts ``series`` in blocks of ``max_batch`` and writes them as a part (in the model's thread)."""
        predict = self._opened()
        size = self._max_batch
        blocks = (series.rows(slice(start, start + size)) for start in range(0, len(series), size))
        batches = [forecast_columns(block, predict(block.inputs)) for block in blocks]
        return write_part(batches, self._parts_dir, streamed=not self._grouped), len(series)


class _Holder:
    """A value :class:`apache_beam.utils.shared.Shared` can hold (it keeps weak references)."""

    def __init__(self, value: Any):
        self.value = value


# Bytes of input files per shard: a shard's rows are held together on one worker while prepared
# (about 16k series of 60 points in Parquet, their arrays some 70 MB while prepared).
SHARD_BYTES = 8 << 20


def shard_count(files: Sequence[str]) -> int:
    """Shards for ``files``: one per :data:`SHARD_BYTES` of them, so that the work spreads over
    workers as the data grows, while a small job makes full batches of :data:`MAX_BATCH`."""
    from apache_beam.io.filesystems import FileSystems
    sizes = [m.size_in_bytes for result in FileSystems.match(list(files)) for m in result.metadata_list]
    return max(1, -(-sum(sizes) // SHARD_BYTES))


@beam.ptransform_fn
def ForecastFiles(pipeline: beam.Pipeline, files: Sequence[str], data: DataConfig,  # noqa: N802
                  model_inputs: ModelInputs, model: Union[LocalModel, ServedModel], parts_dir: str,
                  future_files: Sequence[str] = (), progress: bool = False,
                  max_batch: int = MAX_BATCH, shards: int = 1,
                  stream: Optional[bool] = None) -> list[beam.pvalue.PCollection]:
    """Forecasts every series of ``files``, each block's rows written to a part file in ``parts_dir``.

    One data file whose rows keep each series together (:class:`ContiguousSeries`) is forecast as it
    is read, a chunk's complete series at a time, with no shuffle: memory stays flat. Otherwise
    (several files, which may share a series; future covariates, from their own files; rows of
    series mixed), the rows go to the series' shards (:func:`shard_of`) and each shard's series are
    forecast together. Either way the series are prepared in bulk (:func:`prepare_series`) and given
    to the model in blocks of up to ``max_batch`` series.

    Args:
      pipeline: The Beam pipeline.
      files: The data files.
      data: Their columns and policies.
      model_inputs: What the model takes (:meth:`ModelInputs.from_description` or ``from_signature``).
      model: Where the model runs.
      parts_dir: Where the forecasts' part files go (:func:`write_part`).
      future_files: The future covariates' files, when the model takes future covariates.
      progress: Print ``forecast: N series so far`` to standard output now and then (standard
        error is the libraries' log while the command runs).
      max_batch: Most series per model call.
      shards: Groups of series prepared together on the shuffle's path (:func:`shard_count`).
      stream: Forecast series as they are read when their rows allow it; None: for one data file
        and no future covariates.

    Returns:
      The job's results, in PCollections of ``(kind, value)``: ``("parts", part)`` (:func:`write_part`),
      ``("skipped", (streamed, {series_id, reason}))`` and ``("withdrawn", id)``, the ids of series
      whose streamed results the grouped path's replace.
    """
    from apache_beam.utils import shared
    if stream is None:
        stream = len(files) == 1 and not model_inputs.future_covariates

    def spread(names: beam.pvalue.PCollection, paths: Sequence[str], label: str) -> beam.pvalue.PCollection:
        # Files spread over workers; one file gains nothing, and each transform costs set-up time.
        return names | label >> beam.Reshuffle() if len(paths) > 1 else names

    def forecast(rows: beam.pvalue.PCollection, label: str, grouped: bool) -> beam.pvalue.DoOutputsTuple:
        # The model is opened at set-up by the path that surely gets series: the streamed one if any.
        return rows | label >> beam.ParDo(_ForecastParts(
            data, model_inputs, model, shared_model, parts_dir, max_batch, progress, grouped, files,
            open_at_setup=grouped != stream))

    shared_model = shared.Shared()
    read = (spread(pipeline | "Files" >> beam.Create(list(files)), files, "SpreadFiles")
            | "Read" >> beam.ParDo(_ReadFile(data.columns, "data", shards, stream)).with_outputs(
                _SHUFFLE, _WITHDRAWN, main=_SERIES))
    shuffled = [read[_SHUFFLE]]
    if model_inputs.future_covariates:
        future = (spread(pipeline | "FutureFiles" >> beam.Create(list(future_files)), future_files,
                         "SpreadFutureFiles")
                  | "ReadFuture" >> beam.ParDo(_ReadFile(future_columns(data), "future", shards)).with_outputs(
                      _SHUFFLE, main=_SERIES))
        shuffled.append(future[_SHUFFLE])
    rows = shuffled[0] if len(shuffled) == 1 else shuffled | "AllRows" >> beam.Flatten()
    grouped = forecast(rows | "GroupByShard" >> beam.GroupByKey(), "ForecastShards", grouped=True)
    outputs = [grouped, read[_WITHDRAWN]]
    if stream:
        outputs.append(forecast(read[_SERIES], "ForecastSeries", grouped=False))
    return outputs


def write_part(batches: Sequence[dict[str, np.ndarray]], parts_dir: str, streamed: bool) -> dict[str, Any]:
    """Writes forecast rows (:func:`forecast_columns`) to a new Arrow file in ``parts_dir``.

    Returns:
      The part: its ``path``, ``rows``, the ``first`` and ``last`` of its series' positions in the
      data, and whether it was ``streamed``.
    """
    import tensorflow as tf
    columns = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    path = f"{parts_dir.rstrip('/')}/{uuid.uuid4().hex}.arrow"
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(sink.getvalue().to_pybytes())
    positions = columns[POSITION_COLUMN]
    return {"path": path, "rows": len(positions), "first": int(positions.min()), "last": int(positions.max()),
            "streamed": streamed}


def read_part(part: dict[str, Any], withdrawn: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """The forecast rows of a part (:func:`write_part`), less those of ``withdrawn`` series if it was streamed."""
    import tensorflow as tf
    with tf.io.gfile.GFile(part["path"], "rb") as f:
        table = pa.ipc.open_file(pa.py_buffer(f.read())).read_all()
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    columns["series_id"] = columns["series_id"].astype(object)
    if part["streamed"] and withdrawn:
        keep = ~np.isin(columns["series_id"], list(withdrawn))
        columns = {k: v[keep] for k, v in columns.items()}
    return columns


def part_groups(parts: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The parts in groups whose ranges of positions in the data do not overlap, in order.

    Each group is ordered on its own and written after the one before: the parts of the streamed
    path come in the data's order, groups of one, so the output is written a part at a time.
    """
    groups, end = [], None
    for part in sorted(parts, key=lambda p: (p["first"], p["last"])):
        if groups and part["first"] <= end:
            groups[-1].append(part)
            end = max(end, part["last"])
        else:
            groups.append([part])
            end = part["last"]
    return groups


def output_format(path: str) -> str:
    """``csv`` or ``parquet`` from the output's name; DataError for another."""
    for suffix in OUTPUT_SUFFIXES:
        if path.endswith(suffix):
            return suffix[1:]
    raise DataError(f"{path}: the output must end in {' or '.join(OUTPUT_SUFFIXES)}")


def forecast_table(batches: Iterable[dict[str, np.ndarray]], series_id_column: Optional[str]) -> Any:
    """All forecast rows as a pandas DataFrame, the series in the order they first appear in the data
    (by their ids where the rows do not say: no ``position`` column), each series' steps in order.

    The series id column is named as in the data, and left out when the data has none; the
    timestamps are UTC.
    """
    batches = list(batches)
    if batches:
        columns = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    else:
        columns = {k: np.zeros(0, t) for k, t in (("series_id", object), (TIMESTAMP_COLUMN, np.int64),
                                                  (STEP_COLUMN, np.int64), (FORECAST_COLUMN, np.float64))}
    frame = pd.DataFrame(columns)
    first = POSITION_COLUMN if POSITION_COLUMN in frame else "series_id"
    frame = frame.sort_values([first, STEP_COLUMN], kind="stable").reset_index(drop=True)
    frame = frame.drop(columns=[POSITION_COLUMN], errors="ignore")
    frame[TIMESTAMP_COLUMN] = pd.to_datetime(frame[TIMESTAMP_COLUMN], unit="s", utc=True)
    if series_id_column is None:
        return frame.drop(columns="series_id")
    return frame.rename(columns={"series_id": series_id_column})


def _csv_bytes(frame: pd.DataFrame, header: bool) -> bytes:
    """Forecast rows as CSV: ISO 8601 timestamps, the model's float32 values as float32 (the shortest
    text that reads back the same number), text quoted only where a cell needs it."""
    # Each distinct timestamp formatted once: series of one data set mostly share their steps.
    codes, distinct = pd.factorize(frame[TIMESTAMP_COLUMN])
    frame = frame.assign(**{TIMESTAMP_COLUMN: np.asarray(distinct.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)[codes]
                            if len(frame) else np.zeros(0, object)})
    # Written by pyarrow: pandas took as long as the model did (10k series, benchmarks/forecast.py).
    values = [c for c in frame.columns if frame[c].dtype == np.float64]
    table = pa.Table.from_pandas(frame.astype(dict.fromkeys(values, np.float32)), preserve_index=False)
    buffer = io.BytesIO()
    if header:
        # pyarrow quotes every text cell (and the header) or none: the header as the csv module
        # writes it, and the cells unquoted unless one holds a separator or a quote.
        csv.writer(text := io.StringIO(), lineterminator="\n").writerow(frame.columns)
        buffer.write(text.getvalue().encode())
    # The timestamps, as formatted, never need quotes; the ids are looked at once each, in one text.
    texts = [frame[c] for c in frame.columns if frame[c].dtype == object and c != TIMESTAMP_COLUMN]
    special = any(_NEEDS_QUOTES.search("".join(map(str, pd.unique(t)))) for t in texts)
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False,
                                                        quoting_style="needed" if special else "none"))
    return buffer.getvalue()


class _KeepOpen(io.RawIOBase):
    """A file that pyarrow may close: it closes a file object it writes to, before GFile can flush it."""

    def __init__(self, file: Any):
        self._file, self._position = file, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._file.write(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position


def write_forecast_groups(groups: Iterable[Iterable[dict[str, np.ndarray]]], path: str,
                          series_id_column: Optional[str]) -> int:
    """Writes forecast rows to ``path`` (CSV with ISO 8601 timestamps, or Parquet), a group at a time;
    returns the rows.

    Each group is ordered by series and step and written after the one before; the groups must
    hold series ranges that do not overlap, in order (:func:`part_groups`). Written beside the
    output, then renamed: a reader never sees half a file.
    """
    import pyarrow.parquet as pq
    import tensorflow as tf
    temporary, csv_output = path + ".tmp", output_format(path) == "csv"
    rows, parquet = 0, None
    with tf.io.gfile.GFile(temporary, "wb") as f:

        def append(frame: pd.DataFrame) -> None:
            nonlocal parquet
            if csv_output:
                f.write(_csv_bytes(frame, header=not rows))
                return
            table = pa.Table.from_pandas(frame, preserve_index=False)
            parquet = parquet or pq.ParquetWriter(_KeepOpen(f), table.schema)
            parquet.write_table(table)

        for batches in groups:
            frame = forecast_table(batches, series_id_column)
            if len(frame):
                append(frame)
                rows += len(frame)
        if not rows:
            # No forecasts: the header (or schema) alone.
            append(forecast_table([], series_id_column))
        if parquet is not None:
            parquet.close()
    tf.io.gfile.rename(temporary, path, overwrite=True)
    return rows


def write_forecasts(batches: Iterable[dict[str, np.ndarray]], path: str, series_id_column: Optional[str]) -> int:
    """Writes forecast rows (:func:`forecast_columns`) to ``path``, ordered by series and step; returns the rows."""
    return write_forecast_groups([list(batches)], path, series_id_column)


def summarize(forecast: int, skipped: Iterable[dict[str, str]], rows: int) -> dict[str, Any]:
    """The job's summary: series seen, forecast and skipped (each with its reason, by id), rows written."""
    skipped = sorted(skipped, key=lambda s: s["series_id"])
    return {"series": forecast + len(skipped), "forecast": forecast, "skipped": skipped, "rows": rows}


def write_summary(summary: dict[str, Any], path: str) -> None:
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)


def _write_all(_: Any, results: list[tuple[str, Any]], path: str, series_id_column: Optional[str],
               summary_path: str, horizon: int, parts_dir: str, progress: bool) -> None:
    """Writes the parts into the output (then deletes them), and the summary; the streamed results of
    withdrawn series are left out (the grouped path's replace them). ``results``: as
    :func:`ForecastFiles` gives them."""
    import tensorflow as tf
    gone = frozenset(value for kind, value in results if kind == _WITHDRAWN)
    groups = part_groups([value for kind, value in results if kind == _PARTS])
    rows = write_forecast_groups(([read_part(p, gone) for p in group] for group in groups), path, series_id_column)
    if tf.io.gfile.exists(parts_dir):
        tf.io.gfile.rmtree(parts_dir)
    forecast = rows // horizon
    if progress:
        print(f"forecast: {forecast} of {forecast} series", file=sys.stdout, flush=True)
    skipped = [entry for kind, value in results if kind == _SKIPPED for streamed, entry in [value]
               if not (streamed and entry["series_id"] in gone)]
    write_summary(summarize(forecast, skipped, rows), summary_path)


def parts_dir_of(output: str) -> str:
    """A new directory beside ``output`` for a job's part files (removed once the output is written)."""
    return f"{output}.parts-{uuid.uuid4().hex[:12]}"


def add_forecast_job(pipeline: beam.Pipeline, files: Sequence[str], data: DataConfig, model_inputs: ModelInputs,
                     model: Union[LocalModel, ServedModel], output: str, future_files: Sequence[str] = (),
                     progress: bool = False, max_batch: int = MAX_BATCH, parts_dir: Optional[str] = None,
                     stream: Optional[bool] = None) -> str:
    """Adds the whole job to ``pipeline``: forecast every series of ``files``, write ``output`` and its summary.

    The forecasts are written to part files in ``parts_dir`` (default: :func:`parts_dir_of`), then
    into ``output``, one group of parts at a time (:func:`part_groups`); only the parts' names and
    the skipped series meet on one worker.

    Returns:
      The path the summary JSON will have (``output`` + :data:`SUMMARY_SUFFIX`) once the pipeline ran.
    """
    output_format(output)
    summary_path = output + SUMMARY_SUFFIX
    parts_dir = parts_dir or parts_dir_of(output)
    outputs = pipeline | "ForecastFiles" >> ForecastFiles(files, data, model_inputs, model, parts_dir, future_files,
                                                          progress=progress, max_batch=max_batch,
                                                          shards=shard_count([*files, *future_files]), stream=stream)
    # One side input for all the results: each costs the runner a materialized PCollection.
    results = beam.pvalue.AsList(outputs | "Results" >> beam.Flatten())
    _ = (pipeline | "Done" >> beam.Create([None])
         | "Write" >> beam.Map(_write_all, results, output, data.series_id_column, summary_path, model_inputs.horizon,
                               parts_dir, progress))
    return summary_path


def read_summary(summary_path: str) -> dict[str, Any]:
    import tensorflow as tf
    with tf.io.gfile.GFile(summary_path) as f:
        return json.load(f)
