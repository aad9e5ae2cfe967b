"""One full TFX pipeline run (real components, Beam, ML Metadata in SQLite) and what it pushed."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx import v1 as tfx
from tfx.utils import path_utils

from components import forecast_metrics, pusher, windowing
from components import trainer as trainer_lib
from components.example_gen import executor as example_gen_executor
from components.example_gen import windows as windows_lib
from pipeline import config as config_lib
from pipeline import local_data, local_runner
from pipeline import pipeline as pipeline_lib
from pipeline.pipeline import windowing_options
from pipeline.report import collect as report_collect
from pipeline.report import render as report_render
from serving import contract, repository
from tests.conftest import DATA, FAST_WINDOWS, in_process_forecast, in_process_outputs, origins


def test_the_run_resolves_its_windows_against_the_data(pipeline_run):
    config, _ = pipeline_run
    # Weekly data: the history and the season were given; the step comes from the frequency, the
    # context from --seasonal-cycles (5 seasons of 8 fit a quarter of the 700 weeks), cut to 3 by
    # the slice's gaps (options.gap_tolerant_cycles).
    assert (config.windows.history, config.windows.seasonal_periods, config.windows.context) == (16, (8,), 24)
    assert config.windows.step_seconds == 7 * 86400
    assert config.windows == dataclasses.replace(FAST_WINDOWS, step_seconds=7 * 86400, seasonal_cycles=3)


def test_splits_hold_exactly_the_windows_the_arithmetic_gives(pipeline_run):
    config, result = pipeline_run
    (expected, report), = local_data.window_files([config.data.path], windowing_options(config)).values()
    for want in expected:
        got = local_data.read_split_windows(result.examples_uri, want.split)
        assert len(got.histories) > 0
        np.testing.assert_array_equal(got.origin_times, want.origin_times)
        np.testing.assert_array_equal(got.histories, want.histories)
        np.testing.assert_array_equal(got.targets, want.targets)
        np.testing.assert_array_equal(got.target_times, want.target_times)
        assert got.mase_scale == pytest.approx(want.mase_scale) and want.mase_scale > 0
    assert report["frequency"] == "W-SAT"


def _trained_model(config, result, node: str) -> tuple[str, str]:
    """The SavedModel of Trainer ``node`` in the run, and its model_run directory."""
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path))
    model, run = (local_runner.output_artifact(store, config.pipeline_name, node, key, result.since_ms)
                  for key in ("model", "model_run"))
    return path_utils.serving_model_path(model.uri), run.uri


def test_the_refit_trains_on_the_train_and_eval_windows_for_the_trainers_best_epochs(pipeline_run):
    config, result = pipeline_run
    windows = example_gen_executor.read_summary(result.examples_uri)["windows"]
    trained, _ = _trained_model(config, result, "Trainer")
    refit, _ = _trained_model(config, result, pipeline_lib.REFIT_TRAINER)
    a, b = trainer_lib.read_training_record(trained), trainer_lib.read_training_record(refit)
    # Counted from what each fit read: the gate's model never saw an eval window, the refit saw them all.
    assert (a["splits"], a["windows"]) == (["train"], windows["train"])
    assert (b["splits"], b["windows"]) == (["train", "eval"], windows["train"] + windows["eval"])
    assert windows["eval"] > 0
    assert 1 <= a["epochs"] <= a["epochs_run"] <= config.model.epochs
    assert b["epochs"] == b["epochs_run"] == a["epochs"]  # no early stopping: it has no eval split left
    assert b["refit_of"] == trained and a["refit_of"] is None


def test_the_pushed_model_is_the_refit_and_carries_the_trainers_calibration(pipeline_run, pushed_model):
    config, result = pipeline_run
    trained, trained_run = _trained_model(config, result, "Trainer")
    refit, _ = _trained_model(config, result, pipeline_lib.REFIT_TRAINER)
    assert pusher.same_saved_model(pushed_model, refit) and not pusher.same_saved_model(pushed_model, trained)
    with open(os.path.join(trained_run, trainer_lib.CALIBRATION_FILE)) as f:
        record = json.load(f)
    calibration = record["adjustments"]
    assert trainer_lib.read_training_record(pushed_model)["adjustments"] == calibration
    # The run's --calibration-folds 1: a fold inside train added its held-out windows' errors.
    assert len(record["fold_windows"]) == 1 and record["fold_windows"][0] > 0
    # In the graphs: each quantile's offset from the median is the calibration times the window's
    # spread, which the window alone gives, so both models give the same offsets and other medians.
    test = local_data.read_split_windows(result.examples_uri, windowing.TEST)
    a, b = (in_process_outputs(path, test.histories, origins(test)) for path in (trained, pushed_model))
    offsets = [o[contract.QUANTILES_OUTPUT_KEY] - o[contract.OUTPUT_KEY][..., None] for o in (a, b)]
    assert np.abs(offsets[0]).max() > 0.1
    np.testing.assert_allclose(offsets[1], offsets[0], rtol=1e-4, atol=1e-3)
    assert np.abs(a[contract.OUTPUT_KEY] - b[contract.OUTPUT_KEY]).mean() > 1e-3


def test_pushed_model_is_a_numbered_version_under_the_base_path(pipeline_run, pushed_model):
    config, _ = pipeline_run
    assert os.path.dirname(pushed_model) == config.serving_model_dir
    assert os.path.basename(pushed_model).isdigit()
    assert os.path.isfile(os.path.join(pushed_model, "saved_model.pb"))


def test_tf_serving_loader_gives_the_in_process_forecasts_in_original_units(pipeline_run, pushed_model):
    _, result = pipeline_run
    test = local_data.read_split_windows(result.examples_uri, windowing.TEST)
    loaded = repository.load_version(pushed_model, 1)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    through_session = loaded.session.run(
        signature.outputs[contract.OUTPUT_KEY].name,
        {signature.inputs[contract.INPUT_KEY].name: test.histories,
         signature.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].name: test.origin_times})
    in_process = in_process_forecast(pushed_model, test.histories, origins(test))
    assert through_session.shape == test.targets.shape
    np.testing.assert_allclose(through_session, in_process, rtol=1e-5, atol=1e-4)
    # Original units: CO2 in ppm, about 315-335 in this slice; scaled outputs would sit near 0.
    assert np.all(np.abs(through_session - test.histories[:, -1:]) < 15)


def test_examples_signature_agrees_with_the_raw_window_signature(pipeline_run, pushed_model):
    _, result = pipeline_run
    test = local_data.read_split_windows(result.examples_uri, windowing.TEST)
    serialized = windows_lib.encode_examples(test)
    model = tf.saved_model.load(pushed_model)
    from_examples = model.signatures[contract.EXAMPLES_SIGNATURE_NAME](
        **{contract.EXAMPLES_INPUT_KEY: tf.constant(serialized)})[contract.OUTPUT_KEY].numpy()
    np.testing.assert_allclose(from_examples, in_process_forecast(pushed_model, test.histories, origins(test)),
                               rtol=1e-5, atol=1e-4)
    # The calendar counts: other origins give other forecasts.
    moved = {contract.ORIGIN_TIMESTAMP_INPUT_KEY: test.origin_times + 26 * 7 * 86400}
    assert not np.allclose(in_process_forecast(pushed_model, test.histories, moved), from_examples)


@pytest.mark.slow
def test_the_whole_pipeline_runs_on_the_whole_bundled_data(tmp_path):
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path=DATA), output_dir=str(tmp_path),
                                       model=config_lib.ModelConfig(epochs=2))
    result = local_runner.run(config)
    summary = example_gen_executor.read_summary(result.examples_uri)
    # 2,284 weeks with 59 empty values, L=52, H=4, cuts at 70 % and 85 % of the span.
    assert summary["windows"] == {"train": 1058, "eval": 339, "test": 340}
    assert summary["frequencies"] == {"W-SAT": 1} and summary["missing_points"] == 59
    # Resolved from the data: the year of weeks is the season and the history.
    assert (result.config.windows.seasonal_periods, result.config.windows.history) == ((52,), 52)
    assert result.pushed_model is not None


def test_the_run_reports_each_component_state_and_time(pipeline_run):
    _, result = pipeline_run
    names = [c.name for c in result.components]
    assert sorted(names) == sorted([
        "LatestBlessedModelResolver", "TimeSeriesExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
        "Transform", "Trainer", "RefitTrainer", "Evaluator", "TestEvaluator", "AtomicPusher"])
    # In an order the data flow allows: the refit after the model it refits, before what uses it.
    assert names.index("Transform") < names.index("Trainer") < names.index("RefitTrainer") \
        < min(names.index("TestEvaluator"), names.index("AtomicPusher"))
    assert names.index("Evaluator") < names.index("AtomicPusher")
    assert {c.state for c in result.components} == {"COMPLETE"}
    assert 0 < sum(c.seconds for c in result.components) <= result.seconds
    assert "Trainer" in local_runner.format_component_runs(result.components)


def test_the_gate_holds_on_the_whole_eval_split_and_the_test_split_has_none():
    config = config_lib.resolve(config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=DATA), output_dir="out",
        evaluation=config_lib.EvaluationConfig(max_skill=0.9, regression_tolerance=0.1)), "W-SAT", 2284)
    gate = pipeline_lib.eval_config(config)
    assert [(m.name, m.is_baseline) for m in gate.model_specs] == [("candidate", False), ("baseline", True)]
    # Every error of the model and of each naive forecaster of the resolved season (52 weeks).
    errors = [json.loads(m.config) for m in gate.metrics_specs[0].metrics if m.class_name == "ForecastError"]
    forecasters = ("model", "persistence", "seasonal_naive_52", "seasonal_naive")
    # And the model's quantile metrics: the quantile loss, each interval's coverage and width.
    quantile_metrics = {"quantile_loss", "scaled_quantile_loss", "coverage_50", "coverage_80", "coverage_95",
                        "width_50", "width_80", "width_95"}
    assert {(e["forecaster"], e["error"]) for e in errors} == {
        (f, e) for f in forecasters for e in forecast_metrics.ERRORS} | {("model", q) for q in quantile_metrics}
    assert all(e["periods"] == [52] and e["horizon"] == 4 for e in errors)
    assert all(e["levels"] == list(config.model.quantiles) for e in errors)
    thresholds = {json.loads(m.config).get("error", m.class_name): m.per_slice_thresholds
                  for m in gate.metrics_specs[0].metrics if m.per_slice_thresholds}
    assert set(thresholds) == {"mae", "ForecastSkill"}
    for per_slice in thresholds.values():
        (threshold,) = per_slice
        assert list(threshold.slicing_specs) == [tfma_config.SlicingSpec()]  # not per series
    skill_bound = thresholds["ForecastSkill"][0].threshold.value_threshold.upper_bound.value
    assert skill_bound < 0.9 and skill_bound == pytest.approx(0.9, abs=1e-12)  # strictly below
    change = thresholds["mae"][0].threshold.change_threshold
    assert change.relative.value == pytest.approx(0.1)
    assert change.direction == tfma_config.MetricDirection.LOWER_IS_BETTER
    report_only = pipeline_lib.eval_config(config, gate=False)
    assert len(report_only.model_specs) == 1
    assert not any(m.per_slice_thresholds or m.HasField("threshold") for m in report_only.metrics_specs[0].metrics)
    assert [list(s.feature_keys) for s in report_only.slicing_specs] == [[], ["series_id"]]


def test_the_coverage_gate_bounds_each_interval_on_the_whole_eval_split_only_when_asked():
    config = config_lib.resolve(config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=DATA), output_dir="out",
        evaluation=config_lib.EvaluationConfig(coverage_tolerance=0.05)), "W-SAT", 2284)
    thresholds = {json.loads(m.config).get("error"): m.per_slice_thresholds
                  for m in pipeline_lib.eval_config(config).metrics_specs[0].metrics if m.per_slice_thresholds}
    assert set(thresholds) == {"mae", None, "coverage_50", "coverage_80", "coverage_95"}  # None: the skill
    for name, nominal in (("coverage_50", 0.5), ("coverage_80", 0.8), ("coverage_95", 0.95)):
        (threshold,) = thresholds[name]
        assert list(threshold.slicing_specs) == [tfma_config.SlicingSpec()]
        bounds = threshold.threshold.value_threshold
        assert (bounds.lower_bound.value, bounds.upper_bound.value) == pytest.approx((nominal - 0.05, nominal + 0.05))
    assert not [m for m in pipeline_lib.eval_config(config, gate=False).metrics_specs[0].metrics
                if m.per_slice_thresholds]
    # A point model has no quantile metric, so nothing to bound.
    point = dataclasses.replace(config, model=config_lib.ModelConfig(quantiles=()))
    errors = [json.loads(m.config) for m in pipeline_lib.eval_config(point).metrics_specs[0].metrics
              if m.class_name == "ForecastError"]
    assert {e["error"] for e in errors} == set(forecast_metrics.ERRORS)


def test_the_report_says_how_each_models_mix_started(pipeline_run):
    config, result = pipeline_run
    report = report_collect.collect(config, result)
    gate, pushed = report.models[windowing.EVAL], report.models[windowing.TEST]
    assert gate["base_mix_fit"] == pushed["base_mix_fit"] == config.model.base_mix_fit == "auto"
    # The refit trains the variant the Trainer chose, with no eval split to choose on.
    assert pushed["base_mix_fit_chosen"] == gate["base_mix_fit_chosen"] in trainer_lib.AUTO_BASE_MIX_FITS
    assert pushed["base_mix_fit_eval_losses"] is None
    # Five cycles in the context: the fit moves the weights off equal, so auto trains both starts.
    losses = gate["base_mix_fit_eval_losses"]
    assert set(losses) == set(trainer_lib.AUTO_BASE_MIX_FITS)
    chosen = gate["base_mix_fit_chosen"]
    assert chosen == min(losses, key=losses.get)
    other = next(v for v in losses if v != chosen)
    lines = report_render.model_lines(report)
    assert lines[0].endswith(f"(Trainer), mix start {chosen} (eval loss {losses[chosen]:.3g} against "
                             f"{losses[other]:.3g} for {other})")
    assert lines[1].endswith(f"(RefitTrainer), mix start {chosen} (the Trainer's choice)")


def test_the_report_says_what_the_intervals_were_calibrated_on(pipeline_run):
    config, result = pipeline_run
    report = report_collect.collect(config, result)
    _, trained_run = _trained_model(config, result, "Trainer")
    with open(os.path.join(trained_run, trainer_lib.CALIBRATION_FILE)) as f:
        recorded = json.load(f)
    # The run's one calibration fold reaches the summary, its text and summary.json.
    [fold] = recorded["fold_windows"]
    assert report.calibration["windows"] == recorded["windows"] and report.calibration["fold_windows"] == [fold]
    line = f"calibrated on {recorded['windows']} eval windows and {fold} windows of 1 fold in train"
    assert line in report_render.format_report(report)
    assert json.loads(json.dumps(report.to_json()))["calibration"]["fold_windows"] == [fold]


def test_a_failed_report_rewrite_leaves_the_previous_report_whole(pipeline_run, monkeypatch):
    from pipeline import report as report_lib

    config, result = pipeline_run
    report = report_collect.collect(config, result)
    assert report.blessed and len(report.per_step["eval"]["model"]) == config.windows.horizon
    report_lib.write(config, result, report)
    summary_path = os.path.join(config.report_dir, report_lib.SUMMARY_FILE)
    with open(summary_path) as f:
        before = f.read()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(report_render, "html", broken)
    with pytest.raises(OSError, match="disk full"):
        report_lib.write(config, result, dataclasses.replace(report, blessed=False))
    with open(summary_path) as f:
        assert f.read() == before
    assert sorted(os.listdir(config.report_dir)) == sorted(
        ["forecast_0.png", report_lib.HTML_FILE, report_lib.SUMMARY_FILE, report_lib.TRAINING_PLOT,
         report_render.CALIBRATION_PLOT])
    assert not [name for name in os.listdir(config.output_dir) if name.startswith(".report-")]


@pytest.mark.parametrize("refit, tune", [(True, True), (False, False)])
def test_the_refit_is_scored_on_test_and_pushed_and_the_gate_sees_the_trainers_model(refit, tune):
    config = config_lib.resolve(config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=DATA), output_dir="out",
        model=config_lib.ModelConfig(refit=refit, tune=tune)), "W-SAT", 2284)
    nodes = {c.id: c for c in pipeline_lib.create_pipeline(config).components}
    producers = {node: {k: getattr(v, "producer_component_id", None) for k, v in nodes[node].inputs.items()}
                 for node in nodes}
    tested = pipeline_lib.REFIT_TRAINER if refit else "Trainer"
    assert (pipeline_lib.REFIT_TRAINER in nodes) == refit
    assert producers["Evaluator"]["model"] == "Trainer"
    assert producers["Evaluator"]["baseline_model"] == pipeline_lib.LATEST_BLESSED_RESOLVER
    assert producers[pipeline_lib.TEST_EVALUATOR]["model"] == tested
    assert producers["AtomicPusher"] == {"model": tested, "model_blessing": "Evaluator"}
    if refit:
        refit_trainer = nodes[pipeline_lib.REFIT_TRAINER]
        assert producers[pipeline_lib.REFIT_TRAINER]["base_model"] == "Trainer"
        assert producers[pipeline_lib.REFIT_TRAINER]["hyperparameters"] == "Tuner"  # the same tuned model
        assert json.loads(refit_trainer.exec_properties["train_args"])["splits"] == ["train", "eval"]
