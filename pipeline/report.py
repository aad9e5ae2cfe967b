"""The run's report: the summary ``lstm-forecast run`` ends with, and ``OUTPUT/report/``.

Everything in it comes from what the run recorded in ML Metadata and its artifacts: the windows
per split (the example generator's summary), the metrics of the model and of the naive forecasts
on the eval and test splits (the two Evaluators' TFMA output), the blessing and its reasons (the
TFMA validation result), the pushed version (the Pusher), and the training curves (the Trainer's
``training_log.csv``). A cached re-run reports the same numbers, from the same artifacts.

``OUTPUT/report/`` holds ``summary.json`` (see :meth:`Report.to_json`), ``index.html`` and its
PNG plots; it is replaced as a whole, so a reader never sees half of one run and half of another.
"""

import contextlib
import csv
import dataclasses
import html
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx
from tfx.utils import path_utils

from components import forecast_metrics, trainer, windowing
from components.example_gen import executor as example_gen_executor
from components.example_gen import series as series_lib
from pipeline import local_runner
from pipeline import pipeline as pipeline_lib
from pipeline.config import PipelineConfig
from serving import contract

SUMMARY_FILE = "summary.json"
HTML_FILE = "index.html"
TRAINING_PLOT = "training.png"
SPLITS = (windowing.EVAL, windowing.TEST)
# Node ids in the pipeline: TFX names a component by its class unless given an id.
_EVALUATOR = tfx.components.Evaluator.__name__
_TRAINER = tfx.components.Trainer.__name__
_ERROR_LABELS = {"mae": "MAE", "rmse": "RMSE", "mape": "MAPE%", "smape": "sMAPE%"}
_FORECASTER_LABELS = {forecast_metrics.MODEL: "model", forecast_metrics.PERSISTENCE: "persistence",
                      forecast_metrics.SEASONAL_NAIVE: "seasonal naive"}


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

    def to_json(self) -> dict[str, Any]:
        """``summary.json``: ``blessed``, ``pushed_model``, ``windows``, ``metrics``, ``skill``, ...

        ``skill`` is the eval skill, the one the blessing used; ``test_skill`` the test split's.
        NaN (no value) is written as null.
        """
        return _json_safe({
            "blessed": self.blessed, "reasons": list(self.reasons), "pushed_model": self.pushed_model,
            "windows": self.windows, "metrics": self.metrics, "skill": self.skill[windowing.EVAL],
            "test_skill": self.skill[windowing.TEST], "baseline_mae": self.baseline_mae,
            "per_step": self.per_step, "per_series": self.per_series, "training": self.training})


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


def _by_forecaster(named: dict[str, float], horizon: int) -> tuple[dict, dict]:
    """Overall and per-step metrics by forecaster, from TFMA's metric names."""
    overall, per_step = {}, {}
    for forecaster in forecast_metrics.FORECASTERS:
        overall[forecaster] = {e: named.get(forecast_metrics.metric_name(e, forecaster), float("nan"))
                               for e in forecast_metrics.ERRORS}
        per_step[forecaster] = [
            {e: named.get(forecast_metrics.metric_name(e, forecaster, step), float("nan"))
             for e in forecast_metrics.ERRORS} for step in range(1, horizon + 1)]
    return overall, per_step


def _reasons(config: PipelineConfig, blessed: bool, eval_named: dict[str, float],
             baseline_mae: Optional[float], failures: list) -> tuple[str, ...]:
    """One sentence per check of the gate, saying how it went."""
    evaluation = config.evaluation
    skill = eval_named.get(forecast_metrics.SKILL, float("nan"))
    naive = {name: eval_named.get(forecast_metrics.metric_name("mae", name), float("nan"))
             for name in forecast_metrics.NAIVE_FORECASTERS}
    best = min(naive, key=lambda name: naive[name])
    mae = eval_named.get("mae", float("nan"))
    failed = {f.metric_key.name for f in failures}
    reasons = []
    verdict = "is not below" if forecast_metrics.SKILL in failed else "is below"
    reasons.append(f"skill {skill:.3f} {verdict} {evaluation.max_skill:g}: eval MAE {mae:.4g} against "
                   f"{_FORECASTER_LABELS[best]}'s {naive[best]:.4g}, the better naive forecast")
    if baseline_mae is None:
        reasons.append("no earlier blessed model to compare with (first blessing: the skill bound alone applies)")
    else:
        change = (mae - baseline_mae) / baseline_mae if baseline_mae else float("nan")
        verdict = "more than" if "mae" in failed else "within"
        reasons.append(f"eval MAE {mae:.4g} against the latest blessed model's {baseline_mae:.4g} "
                       f"({change:+.1%}): {verdict} the {evaluation.regression_tolerance:.0%} tolerance")
    if not blessed and not failed:
        reasons.append("the Evaluator did not bless the model (see its validation result)")
    return tuple(reasons)


def _training_log(model_run_uri: str) -> dict[str, list[float]]:
    path = os.path.join(model_run_uri, trainer.TRAINING_LOG_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    return {name: [float(row[name]) for row in rows] for name in (rows[0].keys() if rows else ())}


def _store(config: PipelineConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))


def collect(config: PipelineConfig, result: local_runner.RunResult) -> Report:
    """The report of the run ``result`` of ``config``, from ML Metadata and the run's artifacts.

    Raises:
      ReportError: A component whose output the report needs did not run.
    """
    store = _store(config)

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
        metrics[split], per_step[split] = _by_forecaster(candidate, horizon)
        skill[split] = candidate.get(forecast_metrics.SKILL, float("nan"))
        per_series[split] = {}
        for key, by_model in slices.items():
            if len(key) == 1 and key[0][0] == "series_id":
                named = by_model.get("candidate", {})
                per_series[split][key[0][1]] = {**_by_forecaster(named, horizon)[0],
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
    return Report(
        blessed=blessed, reasons=_reasons(config, blessed, eval_named, baseline_mae, failures),
        pushed_model=result.pushed_model,
        windows={split: summary["windows"].get(split, 0) for split in windowing.SPLITS},
        metrics=metrics, per_step=per_step, per_series=per_series, skill=skill, baseline_mae=baseline_mae,
        training=_training_log(artifact(_TRAINER, "model_run").uri))


def _cell(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def format_report(report: Report) -> str:
    """The summary a person reads at a glance at the end of a run."""
    w = report.windows
    errors = forecast_metrics.ERRORS
    block = 9 * len(errors)
    lines = [f"windows          train {w.get('train', 0)}, eval {w.get('eval', 0)}, test {w.get('test', 0)}", "",
             f"{'':<16}" + "".join(f"  {(' ' + split + ' split '):-^{block}}" for split in SPLITS),
             f"{'':<16}" + "".join("  " + "".join(f"{_ERROR_LABELS[e]:>9}" for e in errors)
                                  for _ in SPLITS)]
    for forecaster in forecast_metrics.FORECASTERS:
        lines.append(f"{_FORECASTER_LABELS[forecaster]:<16}" + "".join(
            "  " + "".join(f"{_cell(report.metrics[s][forecaster][e]):>9}" for e in errors) for s in SPLITS))
    lines += ["", f"skill            eval {_cell(report.skill[windowing.EVAL], 3)}, "
                  f"test {_cell(report.skill[windowing.TEST], 3)}  (model MAE / best naive MAE; below 1 beats naive)",
              f"blessed          {'yes' if report.blessed else 'no'}"]
    lines += [f"  - {reason}" for reason in report.reasons]
    lines.append(f"pushed           {report.pushed_model or 'nothing (the model was not blessed)'}")
    return "\n".join(lines)


def _forecast_plots(config: PipelineConfig, result: local_runner.RunResult, model_dir: str,
                    directory: str) -> list[tuple[str, str]]:
    """PNGs of forecast against actual on the test split, one per series: ``[(file, series id)]``."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

    summary = example_gen_executor.read_summary(result.examples_uri)
    with_test = [r["series_id"] for r in summary["per_series"] if r["windows"].get(windowing.TEST)]
    signature = tf.saved_model.load(model_dir).signatures[contract.EXAMPLES_SIGNATURE_NAME]
    plots = []
    for index, series_id in enumerate(with_test[:config.evaluation.report_series]):
        windows = series_lib.read_split_windows(result.examples_uri, windowing.TEST, series_id)
        forecast = signature(**{contract.EXAMPLES_INPUT_KEY: tf.constant(series_lib.encode_examples(windows))}
                             )[contract.OUTPUT_KEY].numpy()
        naive = forecast_metrics.persistence_forecast(windows.histories, windows.targets.shape[1])
        times = windows.target_times.astype("datetime64[s]")
        last = windows.targets.shape[1] - 1
        figure, axes = pyplot.subplots(figsize=(9, 3.6))
        axes.plot(times[:, 0], windows.targets[:, 0], color="black", linewidth=1.4, label="actual")
        axes.plot(times[:, 0], forecast[:, 0], label="model, 1 step ahead")
        if last:
            axes.plot(times[:, last], forecast[:, last], label=f"model, {last + 1} steps ahead")
        axes.plot(times[:, 0], naive[:, 0], linestyle="--", linewidth=1, label="persistence, 1 step ahead")
        axes.set_title(f"test split, series {series_id}")
        axes.legend(loc="best", fontsize="small")
        figure.tight_layout()
        name = f"forecast_{index}.png"
        figure.savefig(os.path.join(directory, name), dpi=90)
        pyplot.close(figure)
        plots.append((name, series_id))
    return plots


def _training_plot(training: dict[str, list[float]], directory: str) -> Optional[str]:
    if not training.get("loss"):
        return None
    from matplotlib import pyplot, ticker  # pylint: disable=g-import-not-at-top
    figure, axes = pyplot.subplots(figsize=(6, 3.4))
    epochs = np.arange(1, len(training["loss"]) + 1)
    axes.plot(epochs, training["loss"], marker="o", label="train loss")
    if training.get("val_loss"):
        axes.plot(epochs, training["val_loss"], marker="o", label="eval loss")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (scaled units)")
    axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(directory, TRAINING_PLOT), dpi=90)
    pyplot.close(figure)
    return TRAINING_PLOT


def _html(report: Report, plots: list[tuple[str, str]], training_plot: Optional[str]) -> str:
    def table(split: str) -> str:
        head = "".join(f"<th>{_ERROR_LABELS[e]}</th>" for e in forecast_metrics.ERRORS)
        rows = "".join(
            f"<tr><td>{_FORECASTER_LABELS[f]}</td>"
            + "".join(f"<td>{_cell(report.metrics[split][f][e])}</td>" for e in forecast_metrics.ERRORS) + "</tr>"
            for f in forecast_metrics.FORECASTERS)
        return f"<h3>{split}</h3><table><tr><th></th>{head}</tr>{rows}</table>"

    def steps(split: str) -> str:
        horizon = len(report.per_step[split][forecast_metrics.MODEL])
        head = "".join(f"<th>step {h}</th>" for h in range(1, horizon + 1))
        rows = "".join(
            f"<tr><td>{_FORECASTER_LABELS[f]}</td>"
            + "".join(f"<td>{_cell(step['mae'])}</td>" for step in report.per_step[split][f]) + "</tr>"
            for f in forecast_metrics.FORECASTERS)
        return f"<h3>MAE per horizon step, {split}</h3><table><tr><th></th>{head}</tr>{rows}</table>"

    series_rows = "".join(
        f"<tr><td>{html.escape(sid)}</td><td>{values['windows']}</td>"
        + "".join(f"<td>{_cell(values[f]['mae'])}</td>" for f in forecast_metrics.FORECASTERS)
        + f"<td>{_cell(values['skill'], 3)}</td></tr>"
        for sid, values in sorted(report.per_series[windowing.EVAL].items()))
    status = "blessed" if report.blessed else "not blessed"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lstm-forecast run report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "td:first-child{text-align:left}.ok{color:#1a7f37}.no{color:#b42318}</style></head><body>",
        "<h1>lstm-forecast run report</h1>",
        f"<p class='{'ok' if report.blessed else 'no'}'><b>{status}</b>; eval skill "
        f"{_cell(report.skill[windowing.EVAL], 3)}, test skill {_cell(report.skill[windowing.TEST], 3)} "
        "(model MAE over the best naive MAE; below 1 beats naive)</p><ul>",
        *(f"<li>{html.escape(reason)}</li>" for reason in report.reasons),
        f"</ul><p>pushed: <code>{html.escape(report.pushed_model or 'nothing')}</code></p>",
        "<p>windows: " + ", ".join(f"{k} {v}" for k, v in report.windows.items()) + "</p>",
        "<h2>Metrics (original units; MAPE and sMAPE in %)</h2>", table(windowing.EVAL), table(windowing.TEST),
        steps(windowing.EVAL), steps(windowing.TEST),
        "<h3>eval MAE per series</h3><table><tr><th>series</th><th>windows</th>"
        + "".join(f"<th>{_FORECASTER_LABELS[f]}</th>" for f in forecast_metrics.FORECASTERS)
        + f"<th>skill</th></tr>{series_rows}</table>",
        "<h2>Forecast against actual, test split</h2>",
        *(f"<img src='{name}' alt='forecast of series {html.escape(sid)}'>" for name, sid in plots),
    ]
    if training_plot:
        parts.append(f"<h2>Training</h2><img src='{training_plot}' alt='training curves'>")
    parts.append(f"<p>All numbers: <a href='{SUMMARY_FILE}'>{SUMMARY_FILE}</a></p></body></html>")
    return "\n".join(parts)


def write(config: PipelineConfig, result: local_runner.RunResult, report: Report) -> str:
    """Writes ``summary.json``, ``index.html`` and the plots to ``config.report_dir``; returns it.

    The new report is written beside the old one and swapped in by renames.
    """
    model = local_runner.output_artifact(_store(config), config.pipeline_name, _TRAINER, "model", result.since_ms)
    staging = tempfile.mkdtemp(prefix=".report-", dir=config.output_dir)
    try:
        with open(os.path.join(staging, SUMMARY_FILE), "w") as f:
            json.dump(report.to_json(), f, indent=2)
        plots = _forecast_plots(config, result, path_utils.serving_model_path(model.uri), staging) if model else []
        training_plot = _training_plot(report.training, staging)
        with open(os.path.join(staging, HTML_FILE), "w") as f:
            f.write(_html(report, plots, training_plot))
        old = None
        if os.path.exists(config.report_dir):
            old = f"{staging}.old"
            os.rename(config.report_dir, old)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a report is for reading
        os.rename(staging, config.report_dir)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return config.report_dir


def make(config: PipelineConfig, result: local_runner.RunResult) -> tuple[Report, str]:
    """Collects the report of a run and writes it: what ``run`` and the demo do after the pipeline."""
    report = collect(config, result)
    return report, write(config, result, report)
