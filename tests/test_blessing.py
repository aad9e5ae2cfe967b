"""The gate, for real: three pipeline runs on the bundled data into one output directory.

1. A crippled model (one epoch at 500 times the learning rate: skill about 3.9), run as the
   ``lstm-forecast run`` command, on the first run: no blessed
   model exists yet, so only the skill bound applies, and it fails: nothing is pushed.
2. The default model: it beats the naive forecasts and there is still no blessed model, so it is
   blessed and pushed as the first version.
3. A weaker model (two epochs): it still beats naive, but its eval MAE is far above the blessed
   model's on the same windows, so it is not blessed and the served version stays the same.
4. The default model again: blessed against itself, and already served, so no new version.

The runs share the data and windowing settings, so the second and third reuse the cached
examples, statistics, schema and transform graph of the first: only training and evaluation run.
The report's numbers are checked against numpy on the windows the examples hold.
"""

import contextlib
import io
import json
import os

import numpy as np
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.utils import path_utils

from components import forecast_metrics as fm
from components import quantiles as quantiles_lib
from components import windowing
from pipeline import cli, local_data, local_runner
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from pipeline import report as report_lib
from serving import contract
from serving import versions as versions_lib
from tests.conftest import DATA, in_process_forecast, in_process_outputs, origins

CRIPPLED = config_lib.ModelConfig(epochs=1, learning_rate=0.5, early_stopping_patience=0)
GOOD = config_lib.ModelConfig()
WEAKER = config_lib.ModelConfig(epochs=2)


def _run(output_dir: str, model: config_lib.ModelConfig):
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path=DATA), output_dir=output_dir, model=model)
    result = local_runner.run(config)
    config = result.config
    report_lib.make(config, result)
    with open(os.path.join(config.report_dir, report_lib.SUMMARY_FILE)) as f:
        summary = json.load(f)
    return config, result, summary, versions_lib.list_versions(config.serving_model_dir)


def _run_command(output_dir: str, model: config_lib.ModelConfig):
    """``lstm-forecast run`` as a user types it: (exit code, what it printed, summary.json, versions)."""
    flags = ["run", "--data", DATA, "--output", output_dir, "--epochs", str(model.epochs),
             "--learning-rate", str(model.learning_rate),
             "--early-stopping-patience", str(model.early_stopping_patience)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(flags)
    config = cli.pipeline_config_from_flags(cli.build_parser().parse_args(flags))
    with open(os.path.join(config.report_dir, report_lib.SUMMARY_FILE)) as f:
        summary = json.load(f)
    return code, printed.getvalue(), summary, versions_lib.list_versions(config.serving_model_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("gate") / "run")
    return {"crippled": _run_command(output, CRIPPLED), "good": _run(output, GOOD), "weaker": _run(output, WEAKER),
            "good again": _run(output, GOOD)}


def test_a_crippled_model_is_not_blessed_and_nothing_is_pushed(runs):
    code, printed, summary, versions = runs["crippled"]
    assert code == 2
    assert summary["blessed"] is False and summary["pushed_model"] is None
    assert summary["skill"] >= 1.0
    assert versions == []
    assert any("is not below 1" in reason for reason in summary["reasons"]), summary["reasons"]
    # What the command printed: the metrics table, the verdict and its reasons, where the report is.
    assert "blessed          no" in printed and f"skill {summary['skill']:.3f} is not below 1" in printed
    model_row = next(line for line in printed.splitlines() if line.startswith("model "))
    assert f"{summary['metrics']['eval']['model']['mae']:.4g}" in model_row
    assert "pushed           nothing" in printed and "report/index.html" in printed


def test_a_good_model_is_blessed_and_pushed_as_the_first_version(runs):
    config, result, summary, versions = runs["good"]
    assert summary["blessed"] is True and summary["skill"] < 1.0
    assert summary["pushed_model"] == result.pushed_model
    assert versions == [int(os.path.basename(result.pushed_model))]
    assert any("no earlier blessed model" in reason for reason in summary["reasons"])
    # The cached components of the first run were reused.
    states = {c.name: c.state for c in result.components}
    assert states["Transform"] == "CACHED" and states["Trainer"] == "COMPLETE"
    html = open(os.path.join(config.report_dir, report_lib.HTML_FILE)).read()
    assert "forecast_0.png" in html and os.path.getsize(os.path.join(config.report_dir, "forecast_0.png")) > 1000
    assert os.path.exists(os.path.join(config.report_dir, report_lib.TRAINING_PLOT))


def test_a_weaker_second_model_does_not_replace_the_blessed_one(runs):
    _, _, good, good_versions = runs["good"]
    _, result, summary, versions = runs["weaker"]
    assert summary["skill"] < 1.0, "the weaker model should still beat naive, so that the regression check decides"
    assert summary["blessed"] is False and result.pushed_model is None
    assert summary["baseline_mae"] == pytest.approx(good["metrics"]["eval"]["model"]["mae"])
    assert summary["metrics"]["eval"]["model"]["mae"] > summary["baseline_mae"] * 1.05
    assert any("more than the 5% tolerance" in reason for reason in summary["reasons"]), summary["reasons"]
    assert versions == good_versions


def test_re_running_the_good_model_serves_it_without_a_new_version(runs):
    _, good, _, good_versions = runs["good"]
    _, result, summary, versions = runs["good again"]
    states = {c.name: c.state for c in result.components}
    assert states["Trainer"] == "CACHED"
    # The Evaluator runs again: its baseline input is now the good model itself (change 0).
    assert states["Evaluator"] == "COMPLETE" and summary["blessed"] is True
    assert summary["baseline_mae"] == pytest.approx(summary["metrics"]["eval"]["model"]["mae"])
    assert versions == good_versions and result.pushed_model == good.pushed_model


def _store(config):
    return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path))


def _model_uri(config, result, node: str) -> str:
    return local_runner.output_artifact(_store(config), config.pipeline_name, node, "model", result.since_ms).uri


def _evaluator_model_inputs(config, result) -> dict[str, set[str]]:
    """The URIs of the model inputs of the run's own Evaluator execution, by input key.

    The fixture's later runs come after ``result.since_ms`` too, so this run's execution is the
    first one. ML Metadata keeps one input event per artifact, so when the candidate is also the
    baseline (a re-run) the artifact may be recorded under either key.
    """
    store = _store(config)
    evaluator = next(e for node, e in local_runner.node_executions(store, config.pipeline_name, result.since_ms)
                     if node == "Evaluator")
    inputs: dict[str, set[str]] = {}
    for event in store.get_events_by_execution_ids([evaluator.id]):
        key = event.path.steps[0].key
        if event.type == metadata_store_pb2.Event.INPUT and key in ("model", "baseline_model"):
            inputs.setdefault(key, set()).add(store.get_artifacts_by_id([event.artifact_id])[0].uri)
    return inputs


def test_the_gate_compares_with_the_blessed_train_only_model_never_the_refit(runs):
    good_config, good, good_summary, _ = runs["good"]
    trained, refit = (_model_uri(good_config, good, node) for node in ("Trainer", pipeline_lib.REFIT_TRAINER))
    assert trained != refit
    weaker_config, weaker, _, _ = runs["weaker"]
    weaker_inputs = _evaluator_model_inputs(weaker_config, weaker)
    assert weaker_inputs["baseline_model"] == {trained}
    (candidate,) = weaker_inputs["model"]
    assert candidate not in (trained, refit) and "/Trainer/" in candidate
    # The re-run's candidate is the cached train-only model and so is its baseline: the refit is neither.
    again_config, again, _, _ = runs["good again"]
    assert set().union(*_evaluator_model_inputs(again_config, again).values()) == {trained}
    # The summary says which model each split's figures are from.
    # The default start, fit, once (on the bundled CO2 data's one cycle of context it keeps equal
    # weights), and the refit starts the same way.
    windows = good_summary["windows"]
    mix = {"base_mix_fit": "fit", "base_mix_fit_chosen": "fit", "base_mix_fit_eval_losses": None}
    assert good_summary["models"] == {
        windowing.EVAL: {"component": "Trainer", "splits": ["train"], "windows": windows["train"],
                         "epochs": good_summary["models"]["eval"]["epochs"], **mix},
        windowing.TEST: {"component": pipeline_lib.REFIT_TRAINER, "splits": ["train", "eval"],
                         "windows": windows["train"] + windows["eval"],
                         "epochs": good_summary["models"]["eval"]["epochs"], **mix}}
    assert len(good_summary["training"]["val_loss"]) >= good_summary["models"]["eval"]["epochs"] > 1


@pytest.mark.parametrize("split", [windowing.EVAL, windowing.TEST])
def test_report_metrics_equal_numpy_on_the_same_windows(runs, split):
    config, result, summary, _ = runs["good"]
    windows = local_data.read_split_windows(result.examples_uri, split)
    assert summary["windows"][split] == len(windows)
    # Eval: the gate's model, trained on train alone; test: the pushed one, refitted on train+eval.
    model = path_utils.serving_model_path(_model_uri(config, result, "Trainer")) if split == windowing.EVAL \
        else result.pushed_model
    forecast = in_process_forecast(model, windows.histories, origins(windows)).astype(np.float64)
    actual = windows.targets.astype(np.float64)
    history = windows.histories.astype(np.float64)
    # Resolved from the weekly data: a season of 52 weeks; the context holds --seasonal-cycles of them.
    context = config.windows.context
    assert config.windows.seasonal_periods == (52,) and history.shape[1] == context and context % 52 == 0
    horizon = actual.shape[1]
    naive = {"model": forecast,
             "persistence": np.repeat(history[:, -1:], horizon, axis=1),
             # The value a season (52 weeks) before each target: the first H points of the last 52.
             fm.seasonal_naive(52): history[:, context - 52:context - 52 + horizon]}
    naive[fm.SEASONAL_NAIVE] = naive[fm.seasonal_naive(52)]  # the best of one
    metrics = summary["metrics"][split]
    for name, prediction in naive.items():
        error = actual - prediction
        expected = {"mae": np.mean(np.abs(error)), "rmse": np.sqrt(np.mean(error ** 2)),
                    "mape": 100 * np.mean(np.abs(error / actual)),
                    "smape": 100 * np.mean(2 * np.abs(error) / (np.abs(actual) + np.abs(prediction))),
                    "mase": np.mean(np.abs(error) / windows.mase_scale)}
        for metric, value in expected.items():
            # The model's forecasts here come from TF2 in this process, TFMA's from its own session.
            assert metrics[name][metric] == pytest.approx(value, rel=1e-4), (split, name, metric)
        step_mae = np.mean(np.abs(error), axis=0)
        assert [s["mae"] for s in summary["per_step"][split][name]] == pytest.approx(step_mae, rel=1e-4)
    best_naive = min(metrics["persistence"]["mae"], metrics[fm.SEASONAL_NAIVE]["mae"])
    skill = summary["skill"] if split == windowing.EVAL else summary["test_skill"]
    assert skill == pytest.approx(metrics["model"]["mae"] / best_naive, rel=1e-6)
    (series_id, per_series), = summary["per_series"][split].items()
    assert series_id == windows.series_id and per_series["windows"] == len(windows)
    assert per_series["model"]["mae"] == pytest.approx(metrics["model"]["mae"], rel=1e-6)
    # The quantiles (the default model has them): pinball loss, coverage and width by numpy.
    levels = np.array(config.model.quantiles)
    quantiles = in_process_outputs(model, windows.histories, origins(windows))[
        contract.QUANTILES_OUTPUT_KEY].astype(np.float64)
    error = actual[..., None] - quantiles
    loss = np.mean(np.maximum(levels * error, (levels - 1) * error))
    assert metrics["model"]["quantile_loss"] == pytest.approx(loss, rel=1e-4)
    assert metrics["model"]["scaled_quantile_loss"] == pytest.approx(loss / best_naive, rel=1e-4)
    assert list(metrics["model"]["coverage"]) == ["50", "80", "95"]
    for name, lower in (("50", 0.25), ("80", 0.1), ("95", 0.025)):
        lo, hi = list(levels).index(lower), list(levels).index(1 - lower)
        inside = (quantiles[..., lo] <= actual) & (actual <= quantiles[..., hi])
        # A target on a bound may fall either side between TF2 here and TFMA's session: one point.
        assert metrics["model"]["coverage"][name] == pytest.approx(inside.mean(), abs=1.01 / actual.size)
        assert metrics["model"]["width"][name] == pytest.approx(np.mean(quantiles[..., hi] - quantiles[..., lo]),
                                                                rel=1e-4)
        assert per_series["model"]["coverage"][name] == pytest.approx(metrics["model"]["coverage"][name])
    # Conformal intervals (the default) around the point model: no raw coverage to report.
    assert not config.model.quantile_head
    # And the defaults calibrate on eval and one fold in train (--calibration-folds 1), which holds out
    # enough windows for a 95% conformal quantile.
    assert set(summary["calibration"]) == {"windows", "fold_windows", "calibrated_coverage"}
    [fold] = summary["calibration"]["fold_windows"]
    assert fold >= quantiles_lib.fewest_conformal_windows(config.model.quantiles) == 19
