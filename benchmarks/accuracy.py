"""Benchmark of forecast accuracy: the pipeline's model against strong simple baselines, same windows.

For each public data set in :mod:`benchmarks.datasets` this runs the real pipeline
(``lstm-forecast run --no-cache`` in a subprocess, its log in a file), reads the windows of the
test split back from the run's Examples artifact, takes up to ``--max-origins`` of them per series
(evenly spread over the split) and forecasts exactly those windows with:

* **model**: the pushed SavedModel's ``serving_examples`` signature, fed the very examples the
  pipeline wrote; when the model was not blessed (so not pushed), the RefitTrainer's model (or
  the Trainer's with ``--no-refit``), marked "not blessed";
* with the refit (the default), **model, train only**: the Trainer's model, trained on the train
  split alone (the gate's model, and the model ``--no-refit`` pushes), on the same windows;
* **persistence** and **seasonal naive** for each natural period ``m`` of the set;
* statsforecast's **MSTL** (all the set's periods) and **AutoTheta** (the primary period).

Every baseline is fitted only on the series' own values up to and including the window's origin
(the whole series on the pipeline's grid, not just the window's L points; for MSTL and AutoTheta
the last ``max(10 x longest period, 1000)`` of them, gaps filled linearly). The metrics
(:mod:`benchmarks.accuracy_metrics`) are MAE, RMSE, sMAPE, MASE and skill (MAE over the best naive
MAE). "fit s" is the seconds each forecaster took: the Trainer components' for the model, all
fits and forecasts over the chosen windows for the others.

It prints a table per data set, a summary table, and one JSON line with everything. Progress goes
to stderr.

Usage:
  tools/in-env python -m benchmarks.accuracy [--datasets hyndsight,usmelec] [--max-origins 40]
      [--epochs N] [--point-model] [--keep] [--output-dir DIR]

A quantile model (the default) also gets the coverage and mean width of each central interval
and its quantile loss on every test window (not only the scored ones), beside the raw and
calibrated eval coverage its Trainer measured; ``--point-model`` adds the same pipeline with a
point model (``--quantiles ''``), scored on the same windows.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, TextIO

import numpy as np

import benchmarks
from benchmarks import REPO
from benchmarks import accuracy_metrics as am
from benchmarks import datasets as datasets_lib
from benchmarks.datasets import DatasetSpec
from pipeline import config as config_lib

if TYPE_CHECKING:
    from components.example_gen.grid import Series

MODEL, PERSISTENCE, MSTL, AUTOTHETA = "model", "persistence", "MSTL", "AutoTheta"
# The same pipeline with a point model (--point-model): what the median is compared with.
POINT_MODEL = "point model"
POINT_MODEL_FLAGS = ["--quantiles="]
# The Trainer's model when the pipeline refits: trained on the train split only.
TRAIN_ONLY_MODEL = "model, train only"
# Points the classical models are fitted on: the last max(10 x longest period, FIT_POINTS_MIN).
FIT_POINTS_MIN, FIT_PERIODS = 1000, 10
LOG_TAIL_LINES = 30
# The JSON line, also written into --output-dir (what benchmarks.stretches reads).
RESULTS_FILE = "accuracy.json"


def seasonal_naive_name(period: int) -> str:
    return f"seasonal naive {period}"


# Where progress lines go: the terminal's stderr, even while file descriptor 2 goes to the log.
_terminal: TextIO = sys.stderr


def progress(message: str) -> None:
    print(f"[accuracy] {message}", file=_terminal, flush=True)


@contextlib.contextmanager
def library_output_to(log_path: str) -> Iterator[None]:
    """:func:`benchmarks.library_output_to`, with :func:`progress` writing to the terminal meanwhile."""
    global _terminal
    with benchmarks.library_output_to(log_path) as terminal:
        _terminal = terminal
        try:
            yield
        finally:
            _terminal = sys.stderr


@dataclasses.dataclass(frozen=True)
class TestWindows:
    """Windows of a test split, ordered by series and origin.

    Attributes:
      records: The serialized ``tf.Example`` of each window, as the pipeline wrote it.
      series_ids: ``[n]`` series of each window.
      origins: ``[n]`` epoch seconds of each window's last history point.
      histories: ``[n, L]``.
      targets: ``[n, H]`` the actual values.
    """

    records: list[bytes]
    series_ids: np.ndarray
    origins: np.ndarray
    histories: np.ndarray
    targets: np.ndarray

    def select(self, index: np.ndarray) -> "TestWindows":
        return TestWindows([self.records[i] for i in index], self.series_ids[index], self.origins[index],
                           self.histories[index], self.targets[index])


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """What the benchmark takes from one pipeline run.

    Attributes:
      examples_uri: The Examples artifact.
      model_dir: The SavedModel scored: the pushed version, or the refit's (else the Trainer's) when
        none was pushed.
      train_only_model_dir: The Trainer's SavedModel when the run refitted it, else None.
      blessed: Whether the Evaluator blessed the model.
      reasons: The report's reasons for the verdict.
      seconds: Wall time of the ``lstm-forecast run`` subprocess.
      component_seconds: Each component's seconds, from ML Metadata.
      report_test_skill: The run report's own test skill (model over best naive, window history only).
      history: The history L the run used (its default, or the data set's own).
      seasonal_periods: The seasonal periods the run found from the frequency.
      calibration: A quantile model's raw and calibrated eval coverage (the report's ``calibration``).
    """

    examples_uri: str
    model_dir: str
    train_only_model_dir: Optional[str]
    blessed: bool
    history: int
    seasonal_periods: tuple[int, ...]
    reasons: list[str]
    seconds: float
    component_seconds: dict[str, float]
    report_test_skill: Optional[float]
    calibration: Optional[dict[str, Any]] = None


class PipelineFailed(RuntimeError):
    """The pipeline subprocess failed; the message holds the end of its log."""


def run_pipeline(spec: DatasetSpec, data_path: str, output: str, epochs: Optional[int],
                 model_flags: Sequence[str] = ()) -> PipelineRun:
    """Runs ``lstm-forecast run`` on one data set into ``output``; its output goes to ``output/pipeline.log``.

    ``model_flags`` are further flags of the run (a variant to compare, :func:`run_argv`).

    Raises:
      PipelineFailed: An exit status other than 0 (pushed) or 2 (not blessed).
    """
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx
    from tfx.utils import path_utils

    from components.example_gen.component import TimeSeriesExampleGen
    from components.pusher import AtomicPusher
    from pipeline import local_runner
    from pipeline.pipeline import REFIT_TRAINER

    config = pipeline_config(spec, data_path, output, epochs, model_flags)
    os.makedirs(output, exist_ok=True)
    log_path = os.path.join(output, "pipeline.log")
    started = time.perf_counter()
    with open(log_path, "w") as log:
        argv = run_argv(spec, data_path, output, epochs, model_flags)
        status = subprocess.call([sys.executable, "-m", "pipeline.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                 cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - started
    if status not in (0, 2):
        with open(log_path) as log:
            tail = "".join(log.readlines()[-LOG_TAIL_LINES:])
        raise PipelineFailed(f"lstm-forecast run exited {status} after {seconds:.0f} s; end of {log_path}:\n{tail}")

    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path))
    name = config.pipeline_name
    examples = local_runner.output_artifact(store, name, TimeSeriesExampleGen.__name__, "examples", 0)
    pushed = local_runner.output_artifact(store, name, AtomicPusher.__name__, "pushed_model", 0)
    trained = local_runner.output_artifact(store, name, tfx.components.Trainer.__name__, "model", 0)
    refit = local_runner.output_artifact(store, name, REFIT_TRAINER, "model", 0)
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        model_dir = pushed.custom_properties["pushed_destination"].string_value
    else:
        model_dir = path_utils.serving_model_path((refit or trained).uri)
    with open(os.path.join(config.report_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(examples.uri, "windows_summary.json")) as f:
        resolved = json.load(f)["options"]["windows"]
    return PipelineRun(examples_uri=examples.uri, model_dir=model_dir, blessed=bool(summary["blessed"]),
                       train_only_model_dir=path_utils.serving_model_path(trained.uri) if refit else None,
                       history=resolved["history"], seasonal_periods=tuple(resolved["seasonal_periods"]),
                       reasons=list(summary.get("reasons", [])), seconds=seconds,
                       component_seconds={c.name: c.seconds for c in local_runner.component_runs(store, name, 0)},
                       report_test_skill=summary.get("test_skill"), calibration=summary.get("calibration") or None)


def run_argv(spec: DatasetSpec, data_path: str, output: str, epochs: Optional[int],
             model_flags: Sequence[str] = ()) -> list[str]:
    """The ``lstm-forecast`` arguments of a data set's run; ``model_flags``: further flags (``--model-flags``)."""
    argv = ["run", "--data", data_path, "--output", output, "--no-cache", *spec.run_flags(), *model_flags]
    return argv + (["--epochs", str(epochs)] if epochs is not None else [])


def pipeline_config(spec: DatasetSpec, data_path: str, output: str, epochs: Optional[int],
                    model_flags: Sequence[str] = ()) -> config_lib.PipelineConfig:
    """The :class:`PipelineConfig` the run's flags make, parsed by the command's own parser."""
    from pipeline import cli
    argv = run_argv(spec, data_path, output, epochs, model_flags)
    return cli.pipeline_config_from_flags(cli.build_parser().parse_args(argv))


def read_test_windows(examples_uri: str, split: str = "test") -> TestWindows:
    """Every window of a split (test unless told), as serialized examples and parsed arrays, by series and origin."""
    import tensorflow as tf

    from components import features
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz")))
    if not files:
        raise FileNotFoundError(f"no {split} split files in {examples_uri}/Split-{split}")
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        rows.append((feature[features.SERIES_ID].bytes_list.value[0].decode(),
                     feature[features.ORIGIN_TIMESTAMP].int64_list.value[0],
                     list(feature[features.HISTORY].float_list.value),
                     list(feature[features.TARGET].float_list.value), record))
    rows.sort(key=lambda row: (row[0], row[1]))
    return TestWindows(records=[r[4] for r in rows], series_ids=np.array([r[0] for r in rows]),
                       origins=np.array([r[1] for r in rows], dtype=np.int64),
                       histories=np.array([r[2] for r in rows], dtype=np.float32),
                       targets=np.array([r[3] for r in rows], dtype=np.float32))


def choose_windows(windows: TestWindows, max_origins: int) -> TestWindows:
    """At most ``max_origins`` windows per series, evenly spread over its test origins."""
    chosen = [np.flatnonzero(windows.series_ids == s)[am.even_subsample(int((windows.series_ids == s).sum()),
                                                                          max_origins)]
              for s in np.unique(windows.series_ids)]
    return windows.select(np.concatenate(chosen))


def series_grids(config: config_lib.PipelineConfig) -> dict[str, "Series"]:
    """Each series of the run's data on the pipeline's own grid, after its gap policy.

    The example generator's functions do it, so the baselines see the very values the windows
    were cut from.
    """
    from components.example_gen import grid as grid_lib
    from pipeline import local_data

    chunks = local_data.chunks_by_series([config.data.path], config.data.columns)
    grids = {}
    for series_id, series_chunks in chunks.items():
        grid, _ = grid_lib.assemble(series_id, series_chunks, config.data)
        grids[series_id], _ = grid_lib.apply_gap_policy(grid, config.data)
    return grids


def origin_indices(windows: TestWindows, grids: dict[str, "Series"]) -> np.ndarray:
    """The grid index of each window's origin, checked against the window's history and target.

    Raises:
      AssertionError: A window that is not where the grid says: the baselines would not see the
        same series as the model.
    """
    indices = np.empty(len(windows.origins), dtype=np.int64)
    length, horizon = windows.histories.shape[1], windows.targets.shape[1]
    for i, (series_id, origin) in enumerate(zip(windows.series_ids, windows.origins)):
        grid = grids[series_id]
        index = int(np.searchsorted(grid.times, origin))
        values = grid.target.astype(np.float32)
        if (index >= len(grid.times) or grid.times[index] != origin
                or not np.array_equal(values[index - length + 1:index + 1], windows.histories[i])
                or not np.array_equal(values[index + 1:index + 1 + horizon], windows.targets[i])):
            raise AssertionError(f"series '{series_id}': the window at origin {origin} does not match its grid")
        indices[i] = index
    return indices


def filled(values: np.ndarray) -> np.ndarray:
    """``values`` with every NaN filled linearly (ends: the nearest known value), for the classical fits."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    known = np.flatnonzero(~missing)
    result = values.copy()
    result[missing] = np.interp(np.flatnonzero(missing), known, values[known])
    return result


def load_model(model_dir: str) -> Callable[[list[bytes]], np.ndarray]:
    """The SavedModel's ``serving_examples`` signature as a function: serialized examples -> ``[n, H]``."""
    outputs = load_model_outputs(model_dir)
    return lambda records: outputs(records)[0]


def load_model_outputs(model_dir: str) -> Callable[[list[bytes]], tuple[np.ndarray, Optional[np.ndarray], tuple]]:
    """The signature as a function: serialized examples -> forecasts ``[n, H]``, quantiles ``[n, H, Q]`` or None,
    and their levels."""
    import tensorflow as tf

    from serving import contract
    signature = tf.saved_model.load(model_dir).signatures[contract.EXAMPLES_SIGNATURE_NAME]

    def forecast(records: list[bytes]) -> tuple[np.ndarray, Optional[np.ndarray], tuple]:
        outputs = signature(**{contract.EXAMPLES_INPUT_KEY: tf.constant(records)})
        quantiles = outputs.get(contract.QUANTILES_OUTPUT_KEY)
        levels = outputs.get(contract.QUANTILE_LEVELS_OUTPUT_KEY)
        return (outputs[contract.OUTPUT_KEY].numpy().astype(np.float64),
                None if quantiles is None else quantiles.numpy().astype(np.float64),
                () if levels is None or not len(levels) else tuple(round(float(p), 6) for p in levels.numpy()[0]))

    return forecast


def interval_scores(actual: np.ndarray, quantiles: np.ndarray, levels: tuple, naive_mae: float) -> dict[str, Any]:
    """Coverage and mean width of each central interval, and the quantile loss (and over ``naive_mae``)."""
    from components import forecast_metrics
    from components.trainer_options import central_intervals, interval_name
    metrics = forecast_metrics.QuantileSums.of(actual, quantiles, levels).metrics(naive_mae)
    intervals = central_intervals(levels)
    return {"quantile_loss": metrics[forecast_metrics.QUANTILE_LOSS],
            "scaled_quantile_loss": metrics[forecast_metrics.SCALED_QUANTILE_LOSS],
            "coverage": {interval_name(c): metrics[forecast_metrics.coverage_name(c)] for c in intervals},
            "width": {interval_name(c): metrics[forecast_metrics.width_name(c)] for c in intervals}}


def window_hits(windows: TestWindows, quantiles_: np.ndarray, levels: tuple) -> dict[str, np.ndarray]:
    """Each central interval's fraction of each window's targets inside it, ``{"80": [n], ...}``."""
    from components import quantiles
    from components.trainer_options import interval_name
    hits = quantiles.covered(windows.targets, quantiles_, levels).mean(axis=1)
    return {interval_name(nominal): hits[:, i] for i, (_, _, nominal) in enumerate(quantiles.interval_pairs(levels))}


def coverage_bands(hits: dict[str, np.ndarray], origins: np.ndarray, lags: int) -> dict[str, Optional[dict[str, Any]]]:
    """Each central interval's test coverage with its 90% band (:func:`accuracy_metrics.coverage_band`)."""
    bands = {name: am.coverage_band(fractions, origins, lags) for name, fractions in hits.items()}
    return {name: None if band is None else dataclasses.asdict(band) for name, band in bands.items()}


def window_errors(windows: TestWindows, forecasts: dict[str, np.ndarray], lags: int) -> dict[str, Any]:
    """What :mod:`benchmarks.stretches` pools over backtest folds: each scored window's origin, series and
    MAE of the model and the classical baselines, and the Newey-West lags of the split's bands."""
    actual = windows.targets.astype(np.float64)
    return {"origins": windows.origins, "series": windows.series_ids, "lags": lags,
            "mae": {name: np.abs(actual - forecasts[name]).mean(axis=1) for name in (MODEL, MSTL, AUTOTHETA)}}


def baseline_forecasts(spec: DatasetSpec, windows: TestWindows, grids: dict[str, "Series"],
                       indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every baseline's forecast of each window, from the series' values up to its origin.

    Returns:
      ``{forecaster: [n, H]}`` and ``{forecaster: seconds}`` (fits and forecasts, all windows).
    """
    from statsforecast.models import MSTL as MSTLModel
    from statsforecast.models import AutoTheta as AutoThetaModel

    horizon = windows.targets.shape[1]
    fit_points = max(FIT_PERIODS * max(spec.periods), FIT_POINTS_MIN)
    naive = {PERSISTENCE: lambda v, i: am.persistence_forecast(v, i, horizon)}
    for period in spec.periods:
        naive[seasonal_naive_name(period)] = (
            lambda v, i, m=period: am.seasonal_naive_forecast(v, i, horizon, m))
    classical = {
        MSTL: lambda y: MSTLModel(season_length=list(spec.periods)).forecast(y=y, h=horizon)["mean"],
        AUTOTHETA: lambda y: AutoThetaModel(season_length=spec.primary_period).forecast(y=y, h=horizon)["mean"],
    }
    forecasts = {name: np.empty(windows.targets.shape) for name in [*naive, *classical]}
    seconds = dict.fromkeys(forecasts, 0.0)
    known = {series_id: filled(grid.target.astype(np.float64)) for series_id, grid in grids.items()}
    for row, (series_id, index) in enumerate(zip(windows.series_ids, indices)):
        values = known[series_id]
        for name, forecaster in naive.items():
            started = time.perf_counter()
            forecasts[name][row] = forecaster(values, index)
            seconds[name] += time.perf_counter() - started
        history = values[max(0, index + 1 - fit_points):index + 1]
        for name, forecaster in classical.items():
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forecasts[name][row] = forecaster(history)
            seconds[name] += time.perf_counter() - started
    return forecasts, seconds


def mase_scales(spec: DatasetSpec, all_windows: TestWindows, grids: dict[str, "Series"]) -> dict[str, float]:
    """Each series' in-sample seasonal naive MAE (primary period), on its values up to its first test origin."""
    scales = {}
    for series_id in np.unique(all_windows.series_ids):
        grid = grids[series_id]
        first = int(np.searchsorted(grid.times, all_windows.origins[all_windows.series_ids == series_id].min()))
        scales[series_id] = am.seasonal_naive_scale(grid.target[:first + 1], spec.primary_period)
    return scales


def score(windows: TestWindows, forecasts: dict[str, np.ndarray], seconds: dict[str, float],
          scales: dict[str, float], naive_names: list[str]) -> dict[str, dict[str, float]]:
    """Each forecaster's metrics on the windows: ``{forecaster: {mae, rmse, smape, mase, skill, fit_seconds}}``."""
    actual = windows.targets.astype(np.float64)
    best_naive = min(am.mae(actual, forecasts[name]) for name in naive_names)
    rows = {}
    for name, forecast in forecasts.items():
        error = am.mae(actual, forecast)
        rows[name] = {"mae": error, "rmse": am.rmse(actual, forecast), "smape": am.smape(actual, forecast),
                      "mase": am.mase(actual, forecast, windows.series_ids, scales),
                      "skill": error / best_naive, "fit_seconds": seconds[name]}
    return rows


def benchmark_dataset(spec: DatasetSpec, root: str, max_origins: int, epochs: Optional[int],
                      point_model: bool = False, backtest_cut: Optional[float] = None,
                      model_flags: Sequence[str] = ()) -> dict[str, Any]:
    """Runs the pipeline on one data set and scores every forecaster on the same test windows.

    With ``point_model``, also runs the pipeline with ``--quantiles ''`` (a point model, as before
    quantiles) and scores it on the same windows, as ``point model``. With ``backtest_cut`` F, the
    last F of the set's time span is dropped first (:func:`benchmarks.datasets.truncate`).
    """
    started = time.perf_counter()
    data_path = spec.write(os.path.join(root, "data"))
    if backtest_cut:
        rows = datasets_lib.truncate(data_path, backtest_cut)
        progress(f"{spec.name}: backtest fold, the last {backtest_cut:g} of the span dropped ({rows} rows kept)")
    output = os.path.join(root, "run")
    progress(f"{spec.name}: lstm-forecast run {' '.join(spec.run_flags())} (log: {output}/pipeline.log)")
    run = run_pipeline(spec, data_path, output, epochs, model_flags)
    point_run = None
    if point_model:
        progress(f"{spec.name}: the point model, {' '.join(POINT_MODEL_FLAGS)}")
        point_run = run_pipeline(spec, data_path, os.path.join(root, "run_point"), epochs,
                                 [*model_flags, *POINT_MODEL_FLAGS])
    progress(f"{spec.name}: pipeline done in {run.seconds:.0f} s (Trainer {run.component_seconds.get('Trainer', 0):.0f}"
             f" s); blessed: {'yes' if run.blessed else 'no'}")
    all_windows = read_test_windows(run.examples_uri)
    windows = choose_windows(all_windows, max_origins)
    grids = series_grids(pipeline_config(spec, data_path, output, epochs, model_flags))
    indices = origin_indices(windows, grids)
    progress(f"{spec.name}: {len(windows.origins)} of {len(all_windows.origins)} test windows "
             f"({len(np.unique(windows.series_ids))} series); forecasting")
    model = load_model_outputs(run.model_dir)
    predict_started = time.perf_counter()
    forecasts = {MODEL: model(windows.records)[0]}
    predict_seconds = time.perf_counter() - predict_started
    trainer_seconds = run.component_seconds.get("Trainer", float("nan"))
    seconds = {MODEL: trainer_seconds + run.component_seconds.get("RefitTrainer", 0.0)}
    train_only = load_model_outputs(run.train_only_model_dir) if run.train_only_model_dir else None
    if train_only is not None:
        forecasts[TRAIN_ONLY_MODEL] = train_only(windows.records)[0]
        seconds[TRAIN_ONLY_MODEL] = trainer_seconds
    if point_run is not None:
        forecasts[POINT_MODEL] = load_model(point_run.model_dir)(windows.records)
        seconds[POINT_MODEL] = point_run.component_seconds.get("Trainer", float("nan"))
    baselines, baseline_seconds = baseline_forecasts(spec, windows, grids, indices)
    forecasts.update(baselines)
    seconds.update(baseline_seconds)
    naive_names = [PERSISTENCE, *(seasonal_naive_name(m) for m in spec.periods)]
    metrics = score(windows, forecasts, seconds, mase_scales(spec, all_windows, grids), naive_names)
    lags = am.band_lags(indices, windows.series_ids, spec.horizon, len(np.unique(windows.origins)))
    scored = window_errors(windows, forecasts, lags)
    ratio_bands = {name: am.ratio_band([(scored["mae"][MODEL], scored["mae"][name], windows.origins, lags)])
                   for name in (MSTL, AUTOTHETA)}
    all_forecast, all_quantiles, levels = model(all_windows.records)
    intervals = None
    if all_quantiles is not None:
        # Coverage on every test window (more points than the scored ones); the scaled loss uses
        # the best naive MAE of the scored windows.
        best_naive = min(metrics[name]["mae"] for name in naive_names)
        intervals = {"levels": list(levels), "test_windows": len(all_windows.origins),
                     **interval_scores(all_windows.targets.astype(np.float64), all_quantiles, levels, best_naive),
                     "calibration": run.calibration}
        hits = window_hits(all_windows, all_quantiles, levels)
        all_lags = am.band_lags(origin_indices(all_windows, grids), all_windows.series_ids, spec.horizon,
                                len(np.unique(all_windows.origins)))
        intervals["coverage_band"] = coverage_bands(hits, all_windows.origins, all_lags)
        intervals["windows"] = {"origins": all_windows.origins, "series": all_windows.series_ids, "lags": all_lags,
                                "hits": hits}
        if train_only is not None:
            _, train_only_quantiles, _ = train_only(all_windows.records)
            intervals[TRAIN_ONLY_MODEL] = interval_scores(all_windows.targets.astype(np.float64),
                                                          train_only_quantiles, levels, best_naive)
    progress(f"{spec.name}: done in {time.perf_counter() - started:.0f} s")
    return {
        "spec": {"source": spec.source, "frequency": spec.frequency, "horizon": spec.horizon,
                 "history": run.history, "periods": list(spec.periods), "model_periods": list(run.seasonal_periods),
                 "flags": [*spec.run_flags(), *model_flags],
                 "note": spec.note},
        "windows": {"test": len(all_windows.origins), "scored": len(windows.origins),
                    "series": len(np.unique(windows.series_ids))},
        "blessed": run.blessed, "reasons": run.reasons, "model_dir": run.model_dir,
        "pipeline_seconds": run.seconds, "component_seconds": run.component_seconds,
        "model_predict_seconds": predict_seconds,
        "model_mae_all_test_windows": am.mae(all_windows.targets.astype(np.float64), all_forecast),
        "report_test_skill": run.report_test_skill,
        "metrics": metrics, "intervals": intervals,
        "model_mae_over_band": {name: None if band is None else dataclasses.asdict(band)
                                for name, band in ratio_bands.items()},
        "model_mae_over": {MSTL: metrics[MODEL]["mae"] / metrics[MSTL]["mae"],
                           AUTOTHETA: metrics[MODEL]["mae"] / metrics[AUTOTHETA]["mae"],
                           **{other: metrics[MODEL]["mae"] / metrics[other]["mae"]
                              for other in (POINT_MODEL, TRAIN_ONLY_MODEL) if other in metrics}},
        "train_only_mae_over_mstl": metrics[TRAIN_ONLY_MODEL]["mae"] / metrics[MSTL]["mae"]
        if TRAIN_ONLY_MODEL in metrics else None,
        "scored_windows": scored,
        "seconds": time.perf_counter() - started,
    }


def _number(value: Optional[float], digits: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, digits)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A plain table: first column left-aligned, the others right-aligned."""
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        cells = [str(line[0]).ljust(widths[0])] + [str(x).rjust(w) for x, w in zip(line[1:], widths[1:])]
        print("  ".join(cells))


def print_dataset(name: str, result: dict[str, Any]) -> None:
    spec, windows = result["spec"], result["windows"]
    title = (f"{name}: {spec['source']}, {spec['frequency']}, H={spec['horizon']}, L={spec['history']}, "
             f"periods {spec['periods']}; {windows['scored']} of {windows['test']} test windows, "
             f"{windows['series']} series")
    rows = []
    for forecaster, m in result["metrics"].items():
        label = forecaster if forecaster != MODEL or result["blessed"] else f"{MODEL} (not blessed)"
        rows.append([label, _number(m["mae"], ".4g"), _number(m["rmse"], ".4g"), _number(m["smape"], ".2f"),
                     _number(m["mase"], ".3f"), _number(m["skill"], ".3f"), _number(m["fit_seconds"], ".1f")])
    print_table(title, ["forecaster", "MAE", "RMSE", "sMAPE %", "MASE", "skill", "fit s"], rows)
    intervals = result.get("intervals")
    if intervals:
        names = list(intervals["coverage"])
        calibration = intervals.get("calibration") or {}
        rows = [["nominal", *(f"{float(n) / 100:.3f}" for n in names), ""]]
        for key, row_label in (("raw_coverage", "eval, raw"), ("calibrated_coverage", "eval, calibrated")):
            if calibration.get(key):
                rows.append([row_label, *(_number(calibration[key].get(n), ".3f") for n in names), ""])
        rows.append([f"test ({intervals['test_windows']} windows)",
                     *(_number(intervals["coverage"][n], ".3f") for n in names),
                     _number(intervals["quantile_loss"], ".4g")])
        if intervals.get(TRAIN_ONLY_MODEL):
            rows.append([f"test, {TRAIN_ONLY_MODEL}",
                         *(_number(intervals[TRAIN_ONLY_MODEL]["coverage"][n], ".3f") for n in names),
                         _number(intervals[TRAIN_ONLY_MODEL]["quantile_loss"], ".4g")])
        print_table(f"{name}: coverage of the model's central intervals",
                    ["coverage", *(f"{n}%" for n in names), "quantile loss"], rows)
    if spec["note"]:
        print(f"note: {spec['note']}")


def print_summary(results: dict[str, dict[str, Any]], failures: dict[str, str]) -> None:
    rows = []
    for name, r in results.items():
        coverage = (r.get("intervals") or {}).get("coverage", {})
        train_only = ((r.get("intervals") or {}).get(TRAIN_ONLY_MODEL) or {}).get("coverage", {})
        rows.append([name, _number(r["model_mae_over"][MSTL], ".3f"), _number(r["model_mae_over"][AUTOTHETA], ".3f"),
                     _number(r["model_mae_over"].get(POINT_MODEL), ".3f"),
                     _number(r["metrics"][MODEL]["skill"], ".3f"), _number(r["metrics"][MODEL]["mase"], ".3f"),
                     _number(coverage.get("80"), ".3f"), _number(coverage.get("95"), ".3f"),
                     _number(r.get("train_only_mae_over_mstl"), ".3f"),
                     _number(train_only.get("80"), ".3f"), _number(train_only.get("95"), ".3f"),
                     "yes" if r["blessed"] else "no", _number(r["seconds"], ".0f")])
    rows += [[name, "failed", *[""] * 11] for name in failures]
    print_table("summary (model MAE over each baseline's MAE on the same windows; below 1: the model is better; "
                "test coverage of the 80% and 95% intervals; 'train only': the Trainer's model, without the refit)",
                ["data set", "model/MSTL", "model/AutoTheta", "model/point", "model skill", "model MASE", "cov 80",
                 "cov 95", "train only/MSTL", "cov 80", "cov 95", "blessed", "s"], rows)
    means = summary_means(results)
    print(f"mean over {am.sets_phrase(means['sets'])}: model/MSTL {_number(means['model_mae_over_mstl'], '.3f')}; "
          f"|test coverage - nominal| of the 80% and 95% intervals {_number(means['coverage_error'], '.4f')} "
          f"({am.sets_phrase(means['coverage_sets'])})")


def summary_means(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`accuracy_metrics.set_means` of the runs' results: what a default is chosen on."""
    return am.set_means({name: r["model_mae_over"][MSTL] for name, r in results.items()},
                        {name: (r.get("intervals") or {}).get("coverage") for name, r in results.items()})


def _band(band: Optional[dict[str, Any]]) -> str:
    return "too few origins" if band is None else f"{band['estimate']:.3f} [{band['low']:.3f}, {band['high']:.3f}]"


def _verdict(band: Optional[dict[str, Any]], value: float, below: str, above: str) -> str:
    """``below`` / ``above`` when the band lies wholly below / above ``value``, else "cannot tell"."""
    if band is None:
        return "-"
    return below if band["high"] < value else above if band["low"] > value else "cannot tell"


def print_bands(results: dict[str, dict[str, Any]]) -> None:
    """What the test split can tell: each figure with its 90% band (:mod:`benchmarks.accuracy_metrics`)."""
    rows = []
    for name, r in results.items():
        mstl = r["model_mae_over_band"][MSTL]
        coverage = (r.get("intervals") or {}).get("coverage_band") or {}
        row = [name, _band(mstl), _verdict(mstl, 1.0, "beats MSTL", "loses to MSTL")]
        for interval in ("80", "95"):
            band = coverage.get(interval)
            row += [_band(band), _verdict(band, float(interval) / 100, "under-covers", "over-covers")]
        rows.append(row + [str(mstl["origins"] if mstl else "-"), str(mstl["lags"] if mstl else "-")])
    print_table("what the test split can tell: 90% bands (Newey-West over origins; a band that holds 1 or the "
                "nominal coverage cannot tell)",
                ["data set", "model/MSTL", "verdict", "cov 80", "verdict", "cov 95", "verdict", "origins", "lags"],
                rows)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, so the line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(datasets_lib.DATASETS),
                        help=f"comma-separated, of: {', '.join(datasets_lib.DATASETS)} (default: all)")
    parser.add_argument("--max-origins", type=int, default=40,
                        help="test windows scored per series, evenly spread over the test split (default 40)")
    parser.add_argument("--epochs", type=int, default=None, help="override the pipeline's epochs (default: its own)")
    parser.add_argument("--keep", action="store_true", help="keep each data set's CSV, run and log")
    parser.add_argument("--model-flags", default="",
                        help="further lstm-forecast run flags for every data set, to compare a variant "
                             "(with '=' as they start with dashes: --model-flags=\"--no-seasonal-lags --history 168\")")
    parser.add_argument("--backtest-cut", type=float, default=None,
                        help="drop the last fraction of every set's time span before the run: a backtest fold "
                             "whose test split lies before the full series' test split, to choose defaults on "
                             "(e.g. 0.15, 0.3)")
    parser.add_argument("--point-model", action="store_true",
                        help="also run each set with a point model (--quantiles ''), scored on the same windows")
    parser.add_argument("--output-dir", default=None,
                        help="where the runs go, one directory per data set (default: a new temporary directory)")
    args = parser.parse_args(argv)
    model_flags = args.model_flags.split()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in datasets_lib.DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}")
    if args.max_origins < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--max-origins and --epochs must be >= 1")
    if args.backtest_cut is not None and not 0 < args.backtest_cut < 0.5:
        parser.error("--backtest-cut must be above 0 and below 0.5")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    base = os.path.abspath(args.output_dir) if args.output_dir else tempfile.mkdtemp(prefix="accuracy-bench-")
    os.makedirs(base, exist_ok=True)
    log_path = os.path.join(base, "benchmark.log")
    progress(f"library output of this process: {log_path}")
    started = time.perf_counter()
    results, failures = {}, {}
    try:
        with library_output_to(log_path):
            for name in names:
                try:
                    results[name] = benchmark_dataset(datasets_lib.DATASETS[name], os.path.join(base, name),
                                                      args.max_origins, args.epochs, args.point_model,
                                                      args.backtest_cut, model_flags)
                except PipelineFailed as error:
                    progress(f"{name}: FAILED: {error}")
                    failures[name] = str(error)
    finally:
        # Kept: everything with --keep, else the runs that failed (their logs say why).
        kept = names if args.keep else list(failures)
        for name in names:
            if name not in kept:
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        if kept:
            progress(f"kept in {base}: {', '.join(kept)}, and benchmark.log")
        elif not args.output_dir:
            shutil.rmtree(base, ignore_errors=True)
    total = time.perf_counter() - started
    for name, result in results.items():
        print_dataset(name, result)
    print_summary(results, failures)
    print_bands(results)
    print(f"\ntotal {total:.0f} s (load average: {os.getloadavg()[0]:.2f}, CPUs: {os.cpu_count()})")
    line = json.dumps(json_safe({
        "benchmark": "accuracy", "date": datetime.date.today().isoformat(), "max_origins": args.max_origins,
        "backtest_cut": args.backtest_cut, "model_flags": model_flags,
        "epochs": args.epochs, "fit_points": f"max({FIT_PERIODS} x longest period, {FIT_POINTS_MIN})",
        "datasets": results, "means": summary_means(results), "failed": failures, "total_seconds": total}),
        sort_keys=True)
    print(line)
    if args.output_dir:
        with open(os.path.join(base, RESULTS_FILE), "w") as f:
            f.write(line + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
