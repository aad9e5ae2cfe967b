"""Renders a collected report: the text summary ``lstm-forecast run`` prints, the PNG plots and ``index.html``.

Its input is what :mod:`pipeline.report.collect` gathered (a :class:`~pipeline.report.collect.Report`
and the test split's :class:`~pipeline.report.collect.ForecastCurve`); nothing here reads ML
Metadata or runs the model. The plots are drawn on their own Agg canvases, without pyplot, so
drawing them changes no process-wide matplotlib state. ``index.html`` comes from
``templates/index.html`` with autoescaping on: a series id or a reason shows as text, never as markup.
"""

import math
import os
from typing import Any, Optional

import jinja2
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from components import forecast_metrics, quantiles, windowing
from components.trainer_options import interval_name
from pipeline.report.collect import SPLITS, ForecastCurve, Report
from pipeline.report.verdict import label

# The files of OUTPUT/report/, which index.html links together.
SUMMARY_FILE = "summary.json"
HTML_FILE = "index.html"
TRAINING_PLOT = "training.png"
CALIBRATION_PLOT = "calibration.png"
_ERROR_LABELS = {"mae": "MAE", "rmse": "RMSE", "mape": "MAPE%", "smape": "sMAPE%", "mase": "MASE"}
_PLOT_DPI = 90


def _cell(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("pipeline.report"), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True)
_TEMPLATES.filters["cell"] = _cell


def _losing_lines(report: Report) -> list[str]:
    """One line per split on the series that lose to their best naive forecast, with many series only."""
    lines = []
    for split in SPLITS:
        losing = report.losing_series.get(split)
        if losing and losing["series"] > 1:
            worst = ", ".join(f"{sid} {_cell(skill, 3)}" for sid, skill in losing["worst"])
            lines.append(f"losing series   {split}: {losing['count']} of {losing['series']} lose to their best "
                         f"naive forecast" + (f" (worst: {worst})" if worst else ""))
    return lines


def coverage_rows(report: Report) -> list[tuple[str, list[float]]]:
    """The coverage table: ``(row label, [coverage of each interval])``, nominal first.

    Rows, one per distinct figure: nominal; the raw eval coverage the Trainer measured (a quantile
    head's own quantiles; a point model's raw interval is a point, so it has none); the calibrated
    model's eval and test coverage as the Evaluators measured them, each labelled with the Trainer
    whose model it is when the run recorded it (with the refit: eval the Trainer's, test the
    RefitTrainer's). The Trainer's own calibrated eval coverage is the eval row's figure (the same
    model on the same windows), so it is shown only where the Evaluator has none. Empty for a
    point model.
    """
    if not report.intervals:
        return []
    names = [interval_name(c) for c in report.intervals]
    rows = [("nominal", list(report.intervals))]
    if report.calibration.get("raw_coverage"):
        rows.append(("eval, raw quantiles (Trainer)",
                     [report.calibration["raw_coverage"].get(n, float("nan")) for n in names]))
    calibrated = report.calibration.get("calibrated_coverage") or {}
    for split in SPLITS:
        coverage = report.metrics[split][forecast_metrics.MODEL].get("coverage", {})
        values = [coverage.get(n, float("nan")) for n in names]
        component = report.models.get(split, {}).get("component")
        if split == windowing.EVAL:
            values = [v if math.isfinite(v) else calibrated.get(n, v) for v, n in zip(values, names)]
            rows.append((f"eval, calibrated ({component} model)" if component else "eval, calibrated", values))
        else:
            rows.append((f"{split}, {component} model" if component else f"{split}, served model", values))
    return rows


def _coverage_lines(report: Report) -> list[str]:
    rows = coverage_rows(report)
    if not rows:
        return []
    model = {split: report.metrics[split][forecast_metrics.MODEL] for split in SPLITS}
    width = max(26, *(len(label_) + 2 for label_, _ in rows))
    lines = ["", f"{'interval':<{width}}" + "".join(f"{interval_name(c) + '%':>8}" for c in report.intervals)]
    lines += [f"{label_:<{width}}" + "".join(f"{_cell(v, 3):>8}" for v in values) for label_, values in rows]
    lines.append("quantile loss    " + ", ".join(
        f"{split} {_cell(model[split].get(forecast_metrics.QUANTILE_LOSS))} "
        f"({_cell(model[split].get(forecast_metrics.SCALED_QUANTILE_LOSS), 3)} of the best naive MAE)"
        for split in SPLITS))
    scores = calibration_scores(report)
    return lines + ([scores] if scores else [])


def calibration_scores(report: Report) -> str:
    """Which errors the intervals were calibrated on; "" where the Trainer recorded no window counts.

    Example: "calibrated on 42 eval windows and 42 windows of 1 fold in train (--calibration-folds)".
    """
    windows, folds = report.calibration.get("windows"), report.calibration.get("fold_windows")
    if windows is None:
        return ""
    if not folds:
        return f"calibrated on {windows} eval windows"
    return (f"calibrated on {windows} eval windows and {sum(folds)} windows of {len(folds)} "
            f"fold{'s' if len(folds) > 1 else ''} in train (--calibration-folds)")


def mix_start(model: dict[str, Any], chooser: Optional[str] = None) -> str:
    """How the mix of a model (a ``Report.models`` entry) started, and why; "" when it has no mix or no record.

    Examples: "mix start fit (eval loss 0.0812 against 0.084 for none)" (``--base-mix-fit auto``
    trained both), "mix start none (one training: the fit keeps equal weights)" (auto trained once),
    "mix start fit (the Trainer's choice)" (a refit, ``chooser`` the component that chose),
    "mix start fit (--base-mix-fit fit)".
    """
    chosen, setting = model.get("base_mix_fit_chosen"), model.get("base_mix_fit")
    if not chosen or not setting:
        return ""
    losses = model.get("base_mix_fit_eval_losses") or {}
    others = [f"{_cell(loss, 3)} for {variant}" for variant, loss in losses.items() if variant != chosen]
    if setting != "auto":
        why = f"--base-mix-fit {setting}"
    elif others and chosen in losses:
        why = f"eval loss {_cell(losses[chosen], 3)} against {', '.join(others)}"
    elif chooser:
        why = f"the {chooser}'s choice"
    else:
        why = "one training: the fit keeps equal weights"
    return f"mix start {chosen} ({why})"


def model_lines(report: Report) -> list[str]:
    """Which model each split's figures are from, e.g. "test (pushed): trained on train+eval (1397
    windows) for 12 epochs (RefitTrainer), mix start fit (the Trainer's choice)"; empty when the run
    recorded none."""
    lines = []
    gate = report.models.get(windowing.EVAL, {}).get("component")
    for split in SPLITS:
        model = report.models.get(split)
        if not model:
            continue
        trained = f"trained on {'+'.join(model['splits'])} ({model.get('windows')} windows) for {model['epochs']} " \
            "epochs " if model.get("splits") and model.get("epochs") else ""
        role = "gate" if split == windowing.EVAL else "pushed"
        # A refit (another component than the gate's) trains the variant the gate's Trainer chose.
        start = mix_start(model, gate if gate and model["component"] != gate else None)
        lines.append(f"{split} ({role}): {trained}({model['component']})" + (f", {start}" if start else ""))
    return lines


def format_report(report: Report) -> str:
    """The summary a person reads at a glance at the end of a run (after the windows summary, which
    gives the windows of each split)."""
    errors = forecast_metrics.ERRORS
    block = 8 * len(errors)
    lines = [f"{'':<16}" + "".join(f"  {(' ' + split + ' split '):-^{block}}" for split in SPLITS),
             f"{'':<16}" + "".join("  " + "".join(f"{_ERROR_LABELS[e]:>8}" for e in errors)
                                  for _ in SPLITS)]
    width = max(16, *(len(label(f)) + 1 for f in report.forecasters))
    lines = [line if not line.startswith(" " * 16) else " " * width + line[16:] for line in lines]
    for forecaster in report.forecasters:
        lines.append(f"{label(forecaster):<{width}}" + "".join(
            "  " + "".join(f"{_cell(report.metrics[s][forecaster][e]):>8}" for e in errors) for s in SPLITS))
    lines += ["", f"skill            eval {_cell(report.skill[windowing.EVAL], 3)}, "
                  f"test {_cell(report.skill[windowing.TEST], 3)}  (model MAE / best naive MAE; below 1 beats naive)",
              *_losing_lines(report), *_coverage_lines(report),
              *(f"{'model' if i == 0 else '':<17}{line}" for i, line in enumerate(model_lines(report))),
              f"blessed          {'yes' if report.blessed else 'no'}"]
    lines += [f"  - {reason}" for reason in report.reasons]
    lines.append(f"pushed           {report.pushed_model or 'nothing (the model was not blessed)'}")
    return "\n".join(lines)


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def forecast_plots(curves: list[ForecastCurve], directory: str) -> list[tuple[str, str]]:
    """Draws forecast against actual, one PNG per series, into ``directory``.

    Returns:
      ``[(file name, series id)]``, in the order of ``curves``.
    """
    plots = []
    for index, curve in enumerate(curves):
        last = curve.actual.shape[1] - 1
        figure, axes = _figure(9, 3.6)
        if curve.quantiles is not None:
            # The 1-step-ahead intervals, widest first so the narrower ones show on top.
            for (lo, hi, coverage), alpha in zip(reversed(quantiles.interval_pairs(curve.levels)), (0.15, 0.25, 0.35)):
                axes.fill_between(curve.times[:, 0], curve.quantiles[:, 0, lo], curve.quantiles[:, 0, hi],
                                  color="tab:blue", alpha=alpha, linewidth=0, label=f"{coverage:.0%} interval")
        axes.plot(curve.times[:, 0], curve.actual[:, 0], color="black", linewidth=1.4, label="actual")
        axes.plot(curve.times[:, 0], curve.model[:, 0], label="model, 1 step ahead")
        if last:
            axes.plot(curve.times[:, last], curve.model[:, last], label=f"model, {last + 1} steps ahead")
        axes.plot(curve.times[:, 0], curve.persistence[:, 0], linestyle="--", linewidth=1,
                  label="persistence, 1 step ahead")
        axes.set_title(f"test split, series {curve.series_id}")
        axes.legend(loc="best", fontsize="small")
        figure.tight_layout()
        name = f"forecast_{index}.png"
        figure.savefig(os.path.join(directory, name), dpi=_PLOT_DPI)
        plots.append((name, curve.series_id))
    return plots


def training_plot(training: dict[str, list[float]], directory: str) -> Optional[str]:
    """Draws the training (and eval) loss per epoch into ``directory``.

    Returns:
      The file name, or None when the run logged no training loss.
    """
    if not training.get("loss"):
        return None
    figure, axes = _figure(6, 3.4)
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
    figure.savefig(os.path.join(directory, TRAINING_PLOT), dpi=_PLOT_DPI)
    return TRAINING_PLOT


def calibration_plot(report: Report, directory: str) -> Optional[str]:
    """Draws observed against nominal coverage of each interval (the coverage table's rows) into ``directory``.

    Returns:
      The file name, or None for a point model.
    """
    rows = coverage_rows(report)
    if not rows:
        return None
    figure, axes = _figure(4.6, 4.2)
    nominal = np.asarray(rows[0][1])
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="nominal")
    for row_label, values in rows[1:]:
        axes.plot(nominal, values, marker="o", label=row_label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("nominal coverage")
    axes.set_ylabel("observed coverage")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, CALIBRATION_PLOT), dpi=_PLOT_DPI)
    return CALIBRATION_PLOT


def html(report: Report, plots: list[tuple[str, str]], training_plot_file: Optional[str],
         calibration_plot_file: Optional[str] = None) -> str:
    """``index.html``: the verdict, the metric tables, and the plots already drawn beside it.

    Args:
      report: The collected report.
      plots: ``[(file name, series id)]`` of the forecast plots, as :func:`forecast_plots` returns.
      training_plot_file: The training plot's file name, or None for no training section.
      calibration_plot_file: The calibration plot's file name, or None (a point model).
    """
    return _TEMPLATES.get_template(HTML_FILE).render(
        coverage_rows=coverage_rows(report), interval_names=[interval_name(c) for c in report.intervals],
        calibration_plot=calibration_plot_file, quantile_loss=forecast_metrics.QUANTILE_LOSS,
        scaled_quantile_loss=forecast_metrics.SCALED_QUANTILE_LOSS,
        report=report, plots=plots, training_plot=training_plot_file, summary_file=SUMMARY_FILE,
        splits=SPLITS, eval_split=windowing.EVAL, test_split=windowing.TEST,
        errors=forecast_metrics.ERRORS, error_labels=_ERROR_LABELS, forecasters=report.forecasters,
        forecaster_labels={f: label(f) for f in report.forecasters}, model=forecast_metrics.MODEL,
        losing_lines=_losing_lines(report), model_lines=model_lines(report),
        calibration_scores=calibration_scores(report))
