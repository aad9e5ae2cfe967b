"""The run's report: the summary ``lstm-forecast run`` ends with, and ``OUTPUT/report/``.

:func:`make` is the entry point (``lstm-forecast run``, the demo, the benchmark and the tests call
it). It collects the numbers from ML Metadata and the run's artifacts (:mod:`.collect`; the
reasons for the blessing come from :mod:`.verdict`), then writes them (:mod:`.render` draws them).

``OUTPUT/report/`` holds ``summary.json`` (see :meth:`Report.to_json`), ``index.html`` and its
PNG plots; it is replaced as a whole, so a reader never sees half of one run and half of another.
"""

import json
import os
import shutil
import tempfile

from pipeline import local_runner
from pipeline.config import PipelineConfig
from pipeline.report import collect, render
from pipeline.report.collect import Report, ReportError
from pipeline.report.render import HTML_FILE, SUMMARY_FILE, TRAINING_PLOT, format_report

__all__ = ["HTML_FILE", "SUMMARY_FILE", "TRAINING_PLOT", "Report", "ReportError", "format_report", "make", "write"]


def write(config: PipelineConfig, result: local_runner.RunResult, report: Report) -> str:
    """Writes ``summary.json``, ``index.html`` and the plots to ``config.report_dir``; returns it.

    The new report is written beside the old one and swapped in by renames.
    """
    staging = tempfile.mkdtemp(prefix=".report-", dir=config.output_dir)
    try:
        with open(os.path.join(staging, SUMMARY_FILE), "w") as f:
            json.dump(report.to_json(), f, indent=2)
        plots = render.forecast_plots(collect.forecast_curves(config, result), staging)
        training_plot = render.training_plot(report.training, staging)
        calibration_plot = render.calibration_plot(report, staging)
        with open(os.path.join(staging, HTML_FILE), "w") as f:
            f.write(render.html(report, plots, training_plot, calibration_plot))
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
    report = collect.collect(config, result)
    return report, write(config, result, report)
