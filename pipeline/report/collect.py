"""Collects the numbers of a run's report, from ML Metadata and the run's artifacts; draws nothing.

Everything comes from what the run recorded: the windows per split (the example generator's
summary), the metrics of the model and of the naive forecasts on the eval and test splits (the
two Evaluators' TFMA output), the blessing and its reasons (the TFMA validation result, put into
words by :mod:`pipeline.report.verdict`), the pushed version (the Pusher), the training curves
(the Trainer's ``training_log.csv``) and the model's forecasts on the test split (the Trainer's
SavedModel). A cached re-run reports the same numbers, from the same artifacts.
:mod:`pipeline.report.render` turns them into text, plots and HTML.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
from typing import Any, Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx
from tfx.utils import path_utils

from components import forecast_metrics, windowing
from components.example_gen import executor as example_gen_executor
from components.example_gen import windows as windows_lib
from components.trainer_options import CALIBRATION_FILE, TRAINING_LOG_FILE, interval_name, read_training_record
from pipeline import local_data, local_runner
from pipeline import pipeline as pipeline_lib
from pipeline.config import PipelineConfig
from pipeline.report import verdict
from serving import contract

# The splits the two Evaluators score, in the order the report shows them.
SPLITS = (windowing.EVAL, windowing.TEST)
# Node ids in the pipeline: TFX names a component by its class unless given an id.
_EVALUATOR = tfx.components.Evaluator.__name__
_TRAINER = tfx.components.Trainer.__name__


class ReportError(RuntimeError):
    """The run lacks what the report needs (the message names what)."""


@dataclasses.dataclass(frozen=True)
class Report:
    """What a run did and how good its model is.

    Attributes:
      blessed: Whether the Evaluator blessed the model.
      reasons: Why it was blessed or not, one sentence per check.
      pushed_model: The version directory pushed by this run, or None.
      windows: Windows per split.
      metrics: ``{split: {forecaster: {error: value}}}`` on the whole split.
      per_step: ``{split: {forecaster: [{error: value} per horizon step]}}``.
      per_series: ``{split: {series id: {forecaster: {error: value}, "skill": s, "windows": n}}}``.
      skill: ``{split: model MAE / best naive MAE}``.
      baseline_mae: Eval MAE of the latest blessed model on the same windows, if there was one.
      training: ``{"epoch": [...], "loss": [...], "val_loss": [...]}``.
      seasonal_periods: The seasonal periods of the run, one seasonal naive forecast each.
      forecasters: The forecasters in ``metrics``, the model first (see
        :func:`components.forecast_metrics.forecasters`).
      losing_series: ``{split: {"count": n, "series": total, "worst": [[series id, skill], ...]}}``:
        the series whose model MAE is not below their best naive forecast's, the worst first.
      intervals: Nominal coverage of the model's central intervals (empty for a point model);
        ``metrics``, ``per_step`` and ``per_series`` then hold the model's ``quantile_loss``,
        ``scaled_quantile_loss``, ``coverage`` and ``width`` (these two by interval name, ``"80"``).
      calibration: The Trainer's calibration on the eval split (:func:`components.trainer.calibrate`):
        ``raw_coverage`` and ``calibrated_coverage`` by interval name, ``windows`` and ``fold_windows``
        (each calibration fold's); empty without.
      models: Which model each split's figures are from: ``{split: {"component": node id,
        "splits": [trained on], "windows": n, "epochs": n, "base_mix_fit": the run's setting (None without a mix),
        "base_mix_fit_chosen": how its mix started, "base_mix_fit_eval_losses": {variant: eval loss} or
        None}}``; with the refit, eval is the Trainer's model (the one blessed) and test the
        RefitTrainer's (the one pushed, which trains the variant the Trainer chose). Only
        ``component`` where a record is missing.
    """

    blessed: bool
    reasons: tuple[str, ...]
    pushed_model: Optional[str]
    windows: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float]]]
    per_step: dict[str, dict[str, list[dict[str, float]]]]
    per_series: dict[str, dict[str, dict[str, Any]]]
    skill: dict[str, float]
    baseline_mae: Optional[float]
    training: dict[str, list[float]]
    seasonal_periods: tuple[int, ...] = ()
    forecasters: tuple[str, ...] = (forecast_metrics.MODEL, forecast_metrics.PERSISTENCE)
    losing_series: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    intervals: tuple[float, ...] = ()
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``summary.json``: ``blessed``, ``pushed_model``, ``windows``, ``metrics``, ``skill``, ...

        ``skill`` is the eval skill, the one the blessing used; ``test_skill`` the test split's.
        ``metrics.{eval,test}`` has ``model``, ``persistence``, ``seasonal_naive_<m>`` for each
        period in ``seasonal_periods`` and ``seasonal_naive`` (the best of those). A quantile
        model's ``metrics.{eval,test}.model`` also has ``quantile_loss``, ``scaled_quantile_loss``,
        ``coverage`` and ``width`` (``{"50": x, "80": y, "95": z}``), and ``calibration`` its raw
        and calibrated eval coverage. ``models`` says which model each split's figures are
        from (see the attribute). NaN (no value) is written as null.
        """
        return _json_safe({
            "blessed": self.blessed, "reasons": list(self.reasons), "pushed_model": self.pushed_model,
            "windows": self.windows, "metrics": self.metrics, "skill": self.skill[windowing.EVAL],
            "test_skill": self.skill[windowing.TEST], "baseline_mae": self.baseline_mae,
            "per_step": self.per_step, "per_series": self.per_series, "training": self.training,
            "seasonal_periods": list(self.seasonal_periods), "losing_series": self.losing_series,
            "intervals": [interval_name(c) for c in self.intervals], "calibration": self.calibration,
            "models": self.models})


# eq=False: numpy arrays have no single truth value to compare by.
@dataclasses.dataclass(frozen=True, eq=False)
class ForecastCurve:
    """The forecasts of one series' test windows, beside the actual values.

    Attributes:
      series_id: The series.
      times: Target timestamps, ``[windows, H]`` datetime64[s].
      actual: Target values, ``[windows, H]``.
      model: The model's forecasts, ``[windows, H]``.
      persistence: The persistence forecasts, ``[windows, H]``.
      quantiles: The model's quantiles ``[windows, H, Q]``, or None for a point model.
      levels: Their levels ``[Q]``.
    """

    series_id: str
    times: np.ndarray
    actual: np.ndarray
    model: np.ndarray
    persistence: np.ndarray
    quantiles: Optional[np.ndarray] = None
    levels: tuple[float, ...] = ()


@contextlib.contextmanager
def _quiet_tensorflow() -> Iterator[None]:
    # TFMA's readers log a deprecation notice per file, which would break up the printed summary.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _slice_metrics(evaluation_uri: str) -> dict[tuple, dict[str, dict[str, float]]]:
    """``{slice: {"candidate" | "baseline" | "diff": {metric name: value}}}`` of a TFMA output."""
    result: dict[tuple, dict[str, dict[str, float]]] = {}
    with _quiet_tensorflow():
        loaded = list(tfma.load_metrics(evaluation_uri))
    for metrics in loaded:
        key = tuple((c.column, c.bytes_value.decode() if c.HasField("bytes_value") else str(c.int64_value))
                    for c in metrics.slice_key.single_slice_keys)
        by_model = result.setdefault(key, {})
        for item in metrics.metric_keys_and_values:
            model = "diff" if item.key.is_diff else (
                "baseline" if item.key.model_name == pipeline_lib.BASELINE else "candidate")
            by_model.setdefault(model, {})[item.key.name] = item.value.double_value.value
    return result


def _quantile_values(named: dict[str, float], intervals: tuple[float, ...], step: Optional[int]) -> dict[str, Any]:
    """The model's quantile metrics from TFMA's names: loss, scaled loss, coverage and width by interval name."""
    if not intervals:
        return {}

    def get(name: str) -> float:
        return named.get(forecast_metrics.metric_name(name, forecast_metrics.MODEL, step), float("nan"))

    return {forecast_metrics.QUANTILE_LOSS: get(forecast_metrics.QUANTILE_LOSS),
            forecast_metrics.SCALED_QUANTILE_LOSS: get(forecast_metrics.SCALED_QUANTILE_LOSS),
            "coverage": {interval_name(c): get(forecast_metrics.coverage_name(c)) for c in intervals},
            "width": {interval_name(c): get(forecast_metrics.width_name(c)) for c in intervals}}


def _by_forecaster(named: dict[str, float], horizon: int, forecasters: tuple[str, ...],
                   intervals: tuple[float, ...] = ()) -> tuple[dict, dict]:
    """Overall and per-step metrics by forecaster, from TFMA's metric names (the model's quantile ones too)."""
    overall, per_step = {}, {}
    for forecaster in forecasters:
        quantile = intervals if forecaster == forecast_metrics.MODEL else ()
        overall[forecaster] = {**{e: named.get(forecast_metrics.metric_name(e, forecaster), float("nan"))
                                  for e in forecast_metrics.ERRORS}, **_quantile_values(named, quantile, None)}
        per_step[forecaster] = [
            {**{e: named.get(forecast_metrics.metric_name(e, forecaster, step), float("nan"))
                for e in forecast_metrics.ERRORS}, **_quantile_values(named, quantile, step)}
            for step in range(1, horizon + 1)]
    return overall, per_step


def losing_series(per_series: dict[str, dict[str, Any]], worst: int = 5) -> dict[str, Any]:
    """The series whose skill is not below 1 (or unknown), the worst ``worst`` of them by skill."""
    losing = sorted(((sid, v["skill"]) for sid, v in per_series.items() if not v["skill"] < 1),
                    key=lambda item: (-item[1] if math.isfinite(item[1]) else -math.inf, item[0]))
    return {"count": len(losing), "series": len(per_series), "worst": [[sid, s] for sid, s in losing[:worst]]}


def _gate_outcome(blessed: bool, eval_named: dict[str, float], baseline_mae: Optional[float],
                  failures: list, periods: tuple[int, ...], intervals: tuple[float, ...] = ()) -> verdict.GateOutcome:
    """What the gate saw, from the eval split's metrics and the failures of TFMA's validation."""
    return verdict.GateOutcome(
        blessed=blessed, failed=frozenset(f.metric_key.name for f in failures),
        mae=eval_named.get(forecast_metrics.metric_name("mae"), float("nan")),
        skill=eval_named.get(forecast_metrics.SKILL, float("nan")),
        naive_mae={name: eval_named.get(forecast_metrics.metric_name("mae", name), float("nan"))
                   for name in forecast_metrics.naive_forecasters(periods) if name != forecast_metrics.SEASONAL_NAIVE},
        baseline_mae=baseline_mae,
        coverage={c: eval_named.get(forecast_metrics.coverage_name(c), float("nan")) for c in intervals})


def _calibration(model_run_uri: str) -> dict[str, Any]:
    path = os.path.join(model_run_uri, CALIBRATION_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        values = json.load(f)
    return {k: values[k] for k in ("windows", "fold_windows", "raw_coverage", "calibrated_coverage") if k in values}


def _training_log(model_run_uri: str) -> dict[str, list[float]]:
    path = os.path.join(model_run_uri, TRAINING_LOG_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    return {name: [float(row[name]) for row in rows] for name in (rows[0].keys() if rows else ())}


def tested_model_node(config: PipelineConfig) -> str:
    """The node whose model the TestEvaluator scores and the Pusher pushes: the refit, or the Trainer."""
    return pipeline_lib.REFIT_TRAINER if config.model.refit else _TRAINER


# What the report takes from a Trainer's training record: how it trained, and how its mix started
# (with --base-mix-fit auto, the variant chosen and each variant's eval loss; None where it trained once).
_MODEL_RECORD_KEYS = ("splits", "windows", "epochs", "base_mix_fit_chosen", "base_mix_fit_eval_losses")


def _model_record(model_uri: str, node: str, base_mix_fit: Optional[str]) -> dict[str, Any]:
    """What its training record (:func:`read_training_record`) says of a Trainer's model:
    ``component``, ``splits``, ``windows``, ``epochs``, ``base_mix_fit_chosen`` and
    ``base_mix_fit_eval_losses``, with the run's ``base_mix_fit`` setting (``auto``: chosen per data set;
    None: the model has no mix)."""
    record = read_training_record(path_utils.serving_model_path(model_uri))
    if record is None:
        return {"component": node}
    return {"component": node, **{k: record.get(k) for k in _MODEL_RECORD_KEYS}, "base_mix_fit": base_mix_fit}


def _store(config: PipelineConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))


def collect(config: PipelineConfig, result: local_runner.RunResult) -> Report:
    """The report of the run ``result`` of ``config``, from ML Metadata and the run's artifacts.

    Raises:
      ReportError: A component whose output the report needs did not run.
    """
    config = result.config or config
    store = _store(config)
    periods = tuple(config.windows.seasonal_periods)
    forecasters = forecast_metrics.forecasters(periods)
    intervals = config.model.intervals

    def artifact(node: str, key: str):
        found = local_runner.output_artifact(store, config.pipeline_name, node, key, result.since_ms)
        if found is None:
            raise ReportError(f"the run has no '{key}' output of {node} in {config.metadata_path}")
        return found

    horizon = config.windows.horizon
    summary = example_gen_executor.read_summary(result.examples_uri)
    metrics, per_step, per_series, skill, overall = {}, {}, {}, {}, {}
    uris = {windowing.EVAL: artifact(_EVALUATOR, "evaluation").uri,
            windowing.TEST: artifact(pipeline_lib.TEST_EVALUATOR, "evaluation").uri}
    for split, uri in uris.items():
        slices = _slice_metrics(uri)
        overall[split] = slices.get((), {})
        candidate = overall[split].get("candidate", {})
        metrics[split], per_step[split] = _by_forecaster(candidate, horizon, forecasters, intervals)
        skill[split] = candidate.get(forecast_metrics.SKILL, float("nan"))
        per_series[split] = {}
        for key, by_model in slices.items():
            if len(key) == 1 and key[0][0] == "series_id":
                named = by_model.get("candidate", {})
                per_series[split][key[0][1]] = {**_by_forecaster(named, horizon, forecasters, intervals)[0],
                                                "skill": named.get(forecast_metrics.SKILL, float("nan")),
                                                "windows": int(named.get("example_count", 0))}
    eval_named = overall[windowing.EVAL].get("candidate", {})
    baseline_mae = overall[windowing.EVAL].get("baseline", {}).get("mae")
    blessing = artifact(_EVALUATOR, "blessing")
    properties = blessing.custom_properties
    blessed = bool(properties["blessed"].int_value) if "blessed" in properties else False
    with _quiet_tensorflow():
        validation = tfma.load_validation_result(uris[windowing.EVAL])
    failures = [f for per_slice in validation.metric_validations_per_slice for f in per_slice.failures]
    outcome = _gate_outcome(blessed, eval_named, baseline_mae, failures, periods, intervals)
    model_run = artifact(_TRAINER, "model_run").uri
    nodes = {windowing.EVAL: _TRAINER, windowing.TEST: tested_model_node(config)}
    # Without a mix in the model, the record's "none" says nothing of a choice.
    base_mix_fit = config.model.base_mix_fit if config.model.seasonal_base and config.model.seasonal_base_mix \
        else None
    models = {split: _model_record(artifact(node, "model").uri, node, base_mix_fit) for split, node in nodes.items()}
    return Report(
        blessed=blessed, reasons=verdict.reasons(outcome, config.evaluation),
        pushed_model=result.pushed_model,
        windows={split: summary["windows"].get(split, 0) for split in windowing.SPLITS},
        metrics=metrics, per_step=per_step, per_series=per_series, skill=skill, baseline_mae=baseline_mae,
        training=_training_log(model_run), seasonal_periods=periods,
        forecasters=forecasters, losing_series={split: losing_series(per_series[split]) for split in SPLITS},
        intervals=intervals, calibration=_calibration(model_run) if intervals else {}, models=models)


def forecast_curves(config: PipelineConfig, result: local_runner.RunResult) -> list[ForecastCurve]:
    """The tested model's forecasts of the test windows (the refit's, with it), for the report's forecast plots.

    Covers the first ``config.evaluation.report_series`` series that have test windows, in the
    example generator's order. Empty when the run trained no model.
    """
    config = result.config or config
    model = local_runner.output_artifact(_store(config), config.pipeline_name, tested_model_node(config), "model",
                                         result.since_ms)
    if model is None:
        return []
    summary = example_gen_executor.read_summary(result.examples_uri)
    with_test = [r["series_id"] for r in summary["per_series"] if r["windows"].get(windowing.TEST)]
    signature = tf.saved_model.load(path_utils.serving_model_path(model.uri)).signatures[
        contract.EXAMPLES_SIGNATURE_NAME]
    curves = []
    for series_id in with_test[:config.evaluation.report_series]:
        windows = local_data.read_split_windows(result.examples_uri, windowing.TEST, series_id)
        outputs = signature(**{contract.EXAMPLES_INPUT_KEY: tf.constant(windows_lib.encode_examples(windows))})
        quantiles = outputs.get(contract.QUANTILES_OUTPUT_KEY)
        levels = outputs.get(contract.QUANTILE_LEVELS_OUTPUT_KEY)
        curves.append(ForecastCurve(
            series_id=series_id, times=windows.target_times.astype("datetime64[s]"), actual=windows.targets,
            model=outputs[contract.OUTPUT_KEY].numpy(),
            persistence=forecast_metrics.persistence_forecast(windows.histories, windows.targets.shape[1]),
            quantiles=None if quantiles is None else quantiles.numpy(),
            levels=() if levels is None or not len(levels) else tuple(float(p) for p in levels.numpy()[0])))
    return curves
