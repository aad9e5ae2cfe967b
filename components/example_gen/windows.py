"""Windows of one series: cut, checked, assigned to a split by time, and encoded as tf.Examples.

Pure functions on numpy values, one series at a time; the Beam executor only moves their results
around. The window, lag and split arithmetic is :mod:`components.windowing`; the features written
are named in :mod:`components.features`.
"""

import dataclasses
from typing import Any, Iterable, Optional

import numpy as np
import pyarrow as pa
from tfx_bsl.coders import example_coder

from components import features, windowing
from components.example_gen import grid
from components.example_gen.options import WindowingOptions, parse_split_times
from components.example_gen.reader import Chunk

# Windows per encoded batch: bounds the memory of one element of the Beam pipeline.
BATCH_WINDOWS = 4096


@dataclasses.dataclass(frozen=True)
class SplitWindows:
    """The windows of one series that fall into one split (or a batch of them).

    Attributes:
      series_id: The series.
      split: One of :data:`windowing.SPLITS`.
      histories: ``[N, C]``: the context, the last C = max(L, longest season) points up to the origin.
      targets: ``[N, H]``.
      origin_times: Epoch seconds of each forecast origin (last history point), ``[N]``.
      target_times: Epoch seconds of each target step, ``[N, H]``.
      covariates: History of each covariate column (past-only and known-future alike) over the
        context, ``{column: [N, C]}``.
      future_covariates: Each future covariate at the target steps, ``{column: [N, H]}``.
      mase_scale: The series' in-sample MAE of the seasonal naive forecast on its training part
        (the scale of MASE), NaN where it cannot be computed.
    """

    series_id: str
    split: str
    histories: np.ndarray
    targets: np.ndarray
    origin_times: np.ndarray
    target_times: np.ndarray
    covariates: dict[str, np.ndarray]
    future_covariates: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    mase_scale: float = float("nan")

    def __len__(self) -> int:
        return len(self.origin_times)

    def select(self, index: Any) -> "SplitWindows":
        return dataclasses.replace(
            self, histories=self.histories[index], targets=self.targets[index],
            origin_times=self.origin_times[index], target_times=self.target_times[index],
            covariates={k: v[index] for k, v in self.covariates.items()},
            future_covariates={k: v[index] for k, v in self.future_covariates.items()})


def cut_times(times: np.ndarray, options: WindowingOptions,
              span: Optional[tuple[int, int]] = None) -> np.ndarray:
    """The split cut times: the given timestamps, or fractions of a time span.

    Args:
      times: The series' grid times.
      options: The split settings.
      span: First and last time of all series (``split_scope`` ``global``); None: the series' own.
    """
    if options.windows.split_times is not None:
        return parse_split_times(options.windows.split_times)
    start, end = span if span is not None and options.windows.split_scope == "global" else (times[0], times[-1])
    return windowing.split_cut_times(start, end, options.windows.split_fractions)


def mase_scale(values: np.ndarray, period: int) -> float:
    """In-sample MAE of the seasonal naive forecast ``v[t - m]`` over ``values`` (NaN points skipped).

    Falls back to persistence (m = 1) when there are no two points a season apart, and is NaN
    when that too is missing or zero (a constant series has no scale).
    """
    for m in (period, 1):
        if len(values) > m:
            errors = np.abs(values[m:] - values[:-m])
            errors = errors[~np.isnan(errors)]
            if len(errors) and errors.mean() > 0:
                return float(errors.mean())
    return float("nan")


def cut_windows(series: grid.Series, options: WindowingOptions,
                span: Optional[tuple[int, int]] = None) -> tuple[list[SplitWindows], dict[str, int]]:
    """Cuts a series into windows, drops incomplete ones and assigns the rest to splits.

    Args:
      series: On its grid, after the gap policy.
      options: L, H, S, the seasonal periods, the split cuts.
      span: First and last time of all series, for cuts common to all (see :func:`cut_times`).

    Returns:
      One :class:`SplitWindows` per split in :data:`windowing.SPLITS` order (possibly empty), and
      counts of the windows dropped: ``incomplete`` (a missing point), ``straddling`` (targets on
      both sides of a cut) and ``split_gap``.
    """
    windows = options.windows
    H, C = windows.horizon, windows.context  # noqa: N806 (the names of the docs)
    data = options.data
    n_past = len(data.covariate_columns)
    starts = windowing.window_starts(len(series.times), C, H, windows.stride)
    complete = windowing.complete_spans(np.isnan(series.target), starts, C + H)
    for i in range(n_past):
        complete &= windowing.complete_spans(np.isnan(series.covariates[:, i]), starts, C)
    for i in range(len(data.future_covariate_columns)):
        complete &= windowing.complete_spans(np.isnan(series.covariates[:, n_past + i]), starts, C + H)
    cuts = cut_times(series.times, options, span)
    split_of = windowing.assign_splits(starts + C, starts + C + H - 1, windowing.cut_indices(series.times, cuts),
                                       gap=windows.split_gap)
    dropped = {
        "incomplete": int((~complete).sum()),
        "straddling": int((complete & (split_of == windowing.DROPPED_STRADDLING)).sum()),
        "split_gap": int((complete & (split_of == windowing.DROPPED_SPLIT_GAP)).sum()),
    }
    keep = complete & (split_of >= 0)
    starts, split_of = starts[keep], split_of[keep]
    origins = starts + C - 1
    train_values = series.target[series.times < cuts[0]]
    everything = SplitWindows(
        series_id=series.series_id, split="",
        histories=windowing.spans(series.target, starts, C).astype(np.float32),
        targets=windowing.spans(series.target, origins + 1, H).astype(np.float32),
        origin_times=series.times[origins],
        target_times=windowing.spans(series.times, origins + 1, H),
        covariates={name: windowing.spans(series.covariates[:, i], starts, C).astype(np.float32)
                    for i, name in enumerate(data.covariate_columns + data.future_covariate_columns)},
        future_covariates={name: windowing.spans(series.covariates[:, n_past + i], origins + 1, H).astype(np.float32)
                           for i, name in enumerate(data.future_covariate_columns)},
        mase_scale=mase_scale(train_values, min(windows.seasonal_periods, default=1)))
    result = [dataclasses.replace(everything.select(split_of == index), split=name)
              for index, name in enumerate(windowing.SPLITS)]
    return result, dropped


def window_series(series_id: str, chunks: Iterable[Chunk], options: WindowingOptions,
                  span: Optional[tuple[int, int]] = None) -> tuple[list[SplitWindows], dict[str, Any]]:
    """All the per-series work: grid, gap policy, windows and splits, and the series' summary.

    Args:
      series_id: The series.
      chunks: Its rows, as read.
      options: What to do to it.
      span: First and last time of all series, for cuts common to all (see :func:`cut_times`).

    Returns:
      The windows of each split (empty for a series too short to window) and the series' report.
    """
    series, counts = grid.assemble(series_id, chunks, options.data)
    report: dict[str, Any] = {"series_id": series_id, "frequency": series.frequency,
                              "frequency_inferred": options.data.frequency is None, "points": len(series.times),
                              **counts, "interpolated_points": 0, "skipped": None,
                              "hint": None if options.data.business_hours else grid.business_hours_hint(series),
                              "windows": dict.fromkeys(windowing.SPLITS, 0)}
    needed = options.windows.context + options.windows.horizon
    if len(series.times) < needed:
        report["skipped"] = (f"{len(series.times)} points, needs at least {needed} (a context of "
                             f"{options.windows.context} and a horizon of {options.windows.horizon})")
        return [], report
    series, report["interpolated_points"] = grid.apply_gap_policy(series, options.data)
    splits, report["dropped_windows"] = cut_windows(series, options, span)
    report["windows"] = {w.split: len(w) for w in splits}
    if not any(report["windows"].values()):
        report["skipped"] = "no complete window inside a split"
    return splits, report


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
        features.MASE_SCALE: _list_array(np.full((n, 1), windows.mase_scale, np.float32), pa.float32()),
    }
    for name, values in windows.covariates.items():
        columns[features.covariate_feature(name)] = _list_array(values, pa.float32())
    for name, values in windows.future_covariates.items():
        columns[features.future_feature(name)] = _list_array(values, pa.float32())
    return example_coder.RecordBatchToExamples(pa.RecordBatch.from_pydict(columns))
