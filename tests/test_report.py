"""The run's report from hand-made inputs: the blessing's reasons, the text summary and index.html.

No pipeline runs here; tests/test_pipeline.py and tests/test_blessing.py check the report of real runs.
"""

import dataclasses
import html.parser
import json
import math

import numpy as np
import pytest

from components import forecast_metrics
from pipeline.config import EvaluationConfig
from pipeline.report import collect, render, verdict

GATE = EvaluationConfig(max_skill=1.0, regression_tolerance=0.05)
NAN = float("nan")
# Quarterly data: persistence, the seasonal naive of period 4, and the best seasonal naive (the same one).
PERIODS = (4,)
FORECASTERS = forecast_metrics.forecasters(PERIODS)
SEASONAL_4 = forecast_metrics.seasonal_naive(4)


def outcome(**changes) -> verdict.GateOutcome:
    """A blessed first model: MAE 0.5 against persistence's 1.0 and seasonal naive's 2.0."""
    fields = dict(blessed=True, failed=frozenset(), mae=0.5, skill=0.5,
                  naive_mae={forecast_metrics.PERSISTENCE: 1.0, SEASONAL_4: 2.0},
                  baseline_mae=None)
    return verdict.GateOutcome(**{**fields, **changes})


def test_a_first_blessing_names_the_better_naive_forecast_and_the_missing_baseline():
    assert verdict.reasons(outcome(), GATE) == (
        "skill 0.500 is below 1: eval MAE 0.5 against persistence's 1, the best naive forecast",
        "no earlier blessed model to compare with (first blessing: the skill bound alone applies)")


def test_the_best_naive_forecast_is_the_one_with_the_lowest_mae():
    reason = verdict.skill_reason(outcome(naive_mae={
        forecast_metrics.PERSISTENCE: 3.0, SEASONAL_4: 0.75, forecast_metrics.seasonal_naive(12): 0.9}), 1.0)
    assert "against seasonal naive 4's 0.75, the best naive forecast" in reason


def test_a_failed_skill_bound_reads_as_not_below():
    got = verdict.reasons(outcome(blessed=False, failed=frozenset({"skill"}), mae=1.2, skill=1.2), GATE)
    assert got[0] == "skill 1.200 is not below 1: eval MAE 1.2 against persistence's 1, the best naive forecast"
    assert len(got) == 2  # a failed check explains the refusal by itself


def test_the_comparison_with_the_latest_blessed_model_gives_the_change_and_the_tolerance():
    assert verdict.baseline_reason(outcome(mae=0.51, baseline_mae=0.5), 0.05) == (
        "eval MAE 0.51 against the latest blessed model's 0.5 (+2.0%): within the 5% tolerance")
    assert verdict.baseline_reason(outcome(mae=0.6, baseline_mae=0.5, failed=frozenset({"mae"})), 0.05) == (
        "eval MAE 0.6 against the latest blessed model's 0.5 (+20.0%): more than the 5% tolerance")


def test_a_zero_baseline_mae_gives_no_relative_change():
    assert "(+nan%)" in verdict.baseline_reason(outcome(baseline_mae=0.0), 0.05)


def test_the_coverage_gate_reads_each_interval_only_when_it_is_on():
    coverage = {0.5: 0.52, 0.8: 0.7, 0.95: 0.94}
    failed = outcome(blessed=False, failed=frozenset({"coverage_80"}), coverage=coverage)
    got = verdict.reasons(failed, EvaluationConfig(coverage_tolerance=0.05))
    assert got[-1] == "eval coverage 50% interval 52.0%, 80% interval 70.0%, 95% interval 94.0%: not all within " \
                      "5% of nominal"
    assert verdict.reasons(outcome(coverage=coverage), EvaluationConfig(coverage_tolerance=0.05))[-1].endswith(
        ": all within 5% of nominal")
    assert len(verdict.reasons(outcome(coverage=coverage), GATE)) == 2  # off by default


def test_a_refusal_without_a_failed_check_says_so():
    got = verdict.reasons(outcome(blessed=False), GATE)
    assert got[-1] == "the Evaluator did not bless the model (see its validation result)" and len(got) == 3


def metrics(base: float) -> dict[str, dict[str, float]]:
    return {f: {e: base + i + j / 10 for j, e in enumerate(forecast_metrics.ERRORS)}
            for i, f in enumerate(FORECASTERS)}


def hand_made_report(**changes) -> collect.Report:
    """Two series, one of them named like markup; the test split's model metrics missing (NaN)."""
    steps = {f: [{e: 0.1 * h for e in forecast_metrics.ERRORS} for h in (1, 2, 3)]
             for f in FORECASTERS}
    series = {"<b>x</b>": {**metrics(2.0), "skill": 0.7, "windows": 4},
              "a": {**metrics(3.0), "skill": math.inf, "windows": 1}}
    fields = dict(
        blessed=False, reasons=("skill & <more>", "second"), pushed_model=None,
        windows={"train": 5, "eval": 3, "test": 2},
        metrics={"eval": metrics(0.5), "test": {**metrics(1.5), "model": dict.fromkeys(forecast_metrics.ERRORS, NAN)}},
        per_step={"eval": steps, "test": steps}, per_series={"eval": series, "test": series},
        skill={"eval": 0.81234, "test": NAN}, baseline_mae=0.4, training={"loss": [1.0, 0.5]},
        seasonal_periods=PERIODS, forecasters=FORECASTERS,
        losing_series={split: collect.losing_series(series) for split in ("eval", "test")})
    return collect.Report(**{**fields, **changes})


class _Html(html.parser.HTMLParser):
    """The tables (rows of cell texts), the image sources and alt texts, and the text of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.tables, self.images, self.text, self._cell = [], [], [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        self.text.append(data)


def test_the_page_holds_the_metric_step_and_series_tables():
    page = _Html(render.html(hand_made_report(), [("forecast_0.png", "a")], render.TRAINING_PLOT))
    metric_eval, metric_test, step_eval, step_test, by_series = page.tables
    assert metric_eval == [["", "MAE", "RMSE", "MAPE%", "sMAPE%", "MASE"], ["model", "0.5", "0.6", "0.7", "0.8", "0.9"],
                           ["persistence", "1.5", "1.6", "1.7", "1.8", "1.9"],
                           ["seasonal naive 4", "2.5", "2.6", "2.7", "2.8", "2.9"],
                           ["best seasonal naive", "3.5", "3.6", "3.7", "3.8", "3.9"]]
    assert metric_test[1] == ["model", "-", "-", "-", "-", "-"]  # NaN shows as a dash
    assert step_eval[0] == ["", "step 1", "step 2", "step 3"] and step_eval[1] == ["model", "0.1", "0.2", "0.3"]
    assert step_test == step_eval
    assert by_series == [["series", "windows", "model", "persistence", "seasonal naive 4", "best seasonal naive",
                          "skill"], ["<b>x</b>", "4", "2", "3", "4", "5", "0.7"], ["a", "1", "3", "4", "5", "6", "-"]]
    assert page.images == [{"src": "forecast_0.png", "alt": "forecast of series a"},
                           {"src": render.TRAINING_PLOT, "alt": "training curves"}]
    text = " ".join(" ".join(page.text).split())
    assert "not blessed ; eval skill 0.812, test skill -" in text
    assert "skill & <more>" in text and "windows: train 5, eval 3, test 2" in text
    assert "seasonal periods: 4" in text
    assert "eval: 1 of 2 lose to their best naive forecast (worst: a -)" in text


def test_the_page_escapes_series_ids_and_reasons():
    source = render.html(hand_made_report(), [("forecast_0.png", "<b>x</b>")], None)
    assert "<b>x</b>" not in source and "<more>" not in source
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in source and 'alt="forecast of series &lt;b&gt;x&lt;/b&gt;"' in source
    assert "Training" not in source  # no training plot, no section


def test_the_page_links_the_summary_and_names_the_pushed_version():
    page = render.html(hand_made_report(blessed=True, pushed_model="/models/m/7"), [], None)
    assert '<p class="ok"><b>blessed</b>' in page and "<code>/models/m/7</code>" in page
    assert f'<a href="{render.SUMMARY_FILE}">' in page


def test_the_text_summary_lines_up_the_splits_and_lists_the_reasons():
    assert render.format_report(hand_made_report()).splitlines() == [
        "                      -------------- eval split --------------  -------------- test split --------------",
        "                           MAE    RMSE   MAPE%  sMAPE%    MASE       MAE    RMSE   MAPE%  sMAPE%    MASE",
        "model                      0.5     0.6     0.7     0.8     0.9         -       -       -       -       -",
        "persistence                1.5     1.6     1.7     1.8     1.9       2.5     2.6     2.7     2.8     2.9",
        "seasonal naive 4           2.5     2.6     2.7     2.8     2.9       3.5     3.6     3.7     3.8     3.9",
        "best seasonal naive        3.5     3.6     3.7     3.8     3.9       4.5     4.6     4.7     4.8     4.9",
        "",
        "skill            eval 0.812, test -  (model MAE / best naive MAE; below 1 beats naive)",
        "losing series   eval: 1 of 2 lose to their best naive forecast (worst: a -)",
        "losing series   test: 1 of 2 lose to their best naive forecast (worst: a -)",
        "blessed          no",
        "  - skill & <more>",
        "  - second",
        "pushed           nothing (the model was not blessed)"]


def test_summary_json_writes_nan_as_null_and_splits_the_skills():
    got = json.loads(json.dumps(hand_made_report().to_json()))
    assert got["skill"] == 0.81234 and got["test_skill"] is None
    assert got["per_series"]["eval"]["a"]["skill"] is None and got["metrics"]["test"]["model"]["mae"] is None
    assert list(got) == ["blessed", "reasons", "pushed_model", "windows", "metrics", "skill", "test_skill",
                         "baseline_mae", "per_step", "per_series", "training", "seasonal_periods", "losing_series",
                         "intervals", "calibration", "models"]
    assert got["seasonal_periods"] == [4] and set(got["metrics"]["eval"]) == set(FORECASTERS)
    assert got["losing_series"]["eval"] == {"count": 1, "series": 2, "worst": [["a", None]]}


@pytest.mark.parametrize("training", [{}, {"loss": []}])
def test_no_training_loss_draws_no_training_plot(tmp_path, training):
    assert render.training_plot(training, str(tmp_path)) is None and not list(tmp_path.iterdir())


def test_the_plots_are_pngs_named_in_order(tmp_path):
    times = np.arange("2024-01-01", "2024-01-07", dtype="datetime64[D]").astype("datetime64[s]").reshape(3, 2)
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    curve = collect.ForecastCurve(series_id="<b>x</b>", times=times, actual=values, model=values + 1,
                                  persistence=values - 1)
    assert render.forecast_plots([curve, dataclasses.replace(curve, series_id="a")], str(tmp_path)) == [
        ("forecast_0.png", "<b>x</b>"), ("forecast_1.png", "a")]
    assert render.training_plot({"loss": [1.0, 0.5], "val_loss": [1.2, 0.7]}, str(tmp_path)) == render.TRAINING_PLOT
    for name in ("forecast_0.png", "forecast_1.png", render.TRAINING_PLOT):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


INTERVALS = (0.5, 0.8, 0.95)


def quantile_report() -> collect.Report:
    """The hand-made report of a quantile model: coverage and quantile loss on both splits, a calibration."""
    report = hand_made_report()
    values = {"eval": (0.5, 0.79, 0.951), "test": (0.47, 0.77, 0.93)}
    for split, coverage in values.items():
        report.metrics[split]["model"].update({
            "quantile_loss": 0.25, "scaled_quantile_loss": 0.4,
            "coverage": dict(zip(("50", "80", "95"), coverage)), "width": {"50": 1.0, "80": 2.0, "95": 3.0}})
    return dataclasses.replace(report, intervals=INTERVALS, calibration={
        "windows": 3, "raw_coverage": {"50": 0.3, "80": 0.6, "95": 0.8},
        "calibrated_coverage": {"50": 0.5, "80": 0.8, "95": 0.95}})


def test_summary_json_has_the_coverage_and_quantile_loss_of_each_split():
    got = json.loads(json.dumps(quantile_report().to_json()))
    assert got["metrics"]["eval"]["model"]["coverage"] == {"50": 0.5, "80": 0.79, "95": 0.951}
    assert got["metrics"]["test"]["model"]["coverage"] == {"50": 0.47, "80": 0.77, "95": 0.93}
    assert got["metrics"]["test"]["model"]["quantile_loss"] == 0.25
    assert got["intervals"] == ["50", "80", "95"]
    assert got["calibration"]["raw_coverage"]["80"] == 0.6


def test_the_coverage_table_text_page_and_calibration_plot(tmp_path):
    report = quantile_report()
    rows = render.coverage_rows(report)
    # One row per figure: the Trainer's calibrated eval coverage is the Evaluator's eval figure (same
    # model, same windows), so the eval row is the Evaluator's, with the raw quantiles' row before it.
    assert [r[0] for r in rows] == ["nominal", "eval, raw quantiles (Trainer)", "eval, calibrated",
                                    "test, served model"]
    assert rows[1][1] == [0.3, 0.6, 0.8] and rows[2][1] == [0.5, 0.79, 0.951]
    assert rows[-1][1] == [0.47, 0.77, 0.93] and rows[0][1] == list(INTERVALS)
    text = render.format_report(report)
    assert "test, served model                 0.47    0.77    0.93" in text
    # The columns line up under the longest label.
    table = text[text.index("\ninterval"):text.index("\nquantile loss")].strip("\n").split("\n")
    assert {len(line) for line in table} == {len("eval, raw quantiles (Trainer)") + 2 + 3 * 8}
    page = _Html(render.html(report, [], None, render.CALIBRATION_PLOT))
    coverage_table = next(t for t in page.tables if t[0][0] == "interval")
    assert coverage_table[0] == ["interval", "50%", "80%", "95%"]
    assert coverage_table[-1] == ["test, served model", "0.47", "0.77", "0.93"]
    assert {"src": render.CALIBRATION_PLOT, "alt": "observed against nominal coverage"} in page.images
    assert render.calibration_plot(report, str(tmp_path)) == render.CALIBRATION_PLOT
    assert (tmp_path / render.CALIBRATION_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Which errors calibrated the intervals, where the Trainer recorded it.
    assert render.calibration_scores(report) == "calibrated on 3 eval windows"
    assert render.calibration_scores(dataclasses.replace(report, calibration={})) == ""
    folds = dataclasses.replace(report, calibration={**report.calibration, "windows": 42, "fold_windows": [40]})
    assert render.calibration_scores(folds) == "calibrated on 42 eval windows and 40 windows of 1 fold in train " \
                                               "(--calibration-folds)"
    assert render.format_report(folds).count(render.calibration_scores(folds)) == 1
    page_text = " ".join(" ".join(_Html(render.html(folds, [], None)).text).split())
    assert "The Trainer's intervals were calibrated on 42 eval windows and 40 windows of 1 fold in train" in page_text
    # A point model has no intervals: no table, no plot.
    assert render.coverage_rows(hand_made_report()) == []
    assert render.calibration_plot(hand_made_report(), str(tmp_path / "none")) is None


def test_forecast_plots_draw_the_interval_bands(tmp_path):
    times = np.arange("2024-01-01", "2024-01-07", dtype="datetime64[D]").astype("datetime64[s]").reshape(3, 2)
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    levels = (0.1, 0.5, 0.9)
    bands = np.stack([values - 1, values, values + 1], axis=-1)
    curve = collect.ForecastCurve(series_id="a", times=times, actual=values, model=values, persistence=values,
                                  quantiles=bands, levels=levels)
    plain = dataclasses.replace(curve, series_id="b", quantiles=None, levels=())
    render.forecast_plots([curve, plain], str(tmp_path))
    # The band changes the picture.
    assert (tmp_path / "forecast_0.png").read_bytes() != (tmp_path / "forecast_1.png").read_bytes()


def test_the_report_says_which_model_each_split_is_scored_with():
    models = {"eval": {"component": "Trainer", "splits": ["train"], "windows": 70, "epochs": 12},
              "test": {"component": "RefitTrainer", "splits": ["train", "eval"], "windows": 85, "epochs": 12}}
    report = dataclasses.replace(quantile_report(), models=models)
    assert render.model_lines(report) == [
        "eval (gate): trained on train (70 windows) for 12 epochs (Trainer)",
        "test (pushed): trained on train+eval (85 windows) for 12 epochs (RefitTrainer)"]
    text = render.format_report(report)
    assert "model            eval (gate): trained on train (70 windows)" in text
    assert "                 test (pushed): trained on train+eval (85 windows)" in text
    assert [r[0] for r in render.coverage_rows(report)][-3:] == [
        "eval, raw quantiles (Trainer)", "eval, calibrated (Trainer model)", "test, RefitTrainer model"]
    assert json.loads(json.dumps(report.to_json()))["models"] == models
    assert "model scored on test (pushed): trained on train+eval" in render.html(report, [], None)
    # A run without records (a report made before them) keeps the old labels and no model lines.
    assert render.model_lines(quantile_report()) == []


def test_the_model_lines_say_how_the_mix_started_and_why():
    trainer = {"component": "Trainer", "splits": ["train"], "windows": 70, "epochs": 21, "base_mix_fit": "auto",
               "base_mix_fit_chosen": "fit", "base_mix_fit_eval_losses": {"none": 0.08404, "fit": 0.08121}}
    refit = {"component": "RefitTrainer", "splits": ["train", "eval"], "windows": 85, "epochs": 21,
             "base_mix_fit": "auto", "base_mix_fit_chosen": "fit", "base_mix_fit_eval_losses": None}
    report = dataclasses.replace(quantile_report(), models={"eval": trainer, "test": refit})
    assert render.model_lines(report) == [
        "eval (gate): trained on train (70 windows) for 21 epochs (Trainer), "
        "mix start fit (eval loss 0.0812 against 0.084 for none)",
        "test (pushed): trained on train+eval (85 windows) for 21 epochs (RefitTrainer), "
        "mix start fit (the Trainer's choice)"]
    assert "mix start fit (eval loss 0.0812 against 0.084 for none)" in render.format_report(report)
    assert "mix start fit (eval loss 0.0812 against 0.084 for none)" in render.html(report, [], None)
    assert json.loads(json.dumps(report.to_json()))["models"]["eval"]["base_mix_fit_eval_losses"] == {
        "none": 0.08404, "fit": 0.08121}
    # auto trained once (the fit kept equal weights), a flag set by hand, no mix, a record without the fields.
    once = {**trainer, "base_mix_fit_chosen": "none", "base_mix_fit_eval_losses": None}
    assert render.mix_start(once) == "mix start none (one training: the fit keeps equal weights)"
    assert render.mix_start({**once, "base_mix_fit": "frozen", "base_mix_fit_chosen": "frozen"}) == \
        "mix start frozen (--base-mix-fit frozen)"
    assert render.mix_start({**once, "base_mix_fit": None}) == ""
    assert render.mix_start({"component": "Trainer", "splits": ["train"], "epochs": 3}) == ""


def test_a_point_models_coverage_table_has_one_eval_row():
    # A conformal point model: the Trainer records no raw coverage (its raw interval is a point).
    report = quantile_report()
    report = dataclasses.replace(report, calibration={"windows": 3, "calibrated_coverage": {"50": 0.5, "80": 0.8,
                                                                                            "95": 0.95}})
    assert render.coverage_rows(report) == [("nominal", [0.5, 0.8, 0.95]), ("eval, calibrated", [0.5, 0.79, 0.951]),
                                            ("test, served model", [0.47, 0.77, 0.93])]
    # Where the Evaluator has no figure for an interval, the eval row shows the Trainer's.
    del report.metrics["eval"]["model"]["coverage"]["95"]
    assert render.coverage_rows(report)[1] == ("eval, calibrated", [0.5, 0.79, 0.95])
    # summary.json keeps the Trainer's figures under calibration.
    assert report.to_json()["calibration"]["calibrated_coverage"] == {"50": 0.5, "80": 0.8, "95": 0.95}
