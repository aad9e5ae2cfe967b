"""The forecasting pipeline: ``create_pipeline(config) -> tfx.dsl.Pipeline``, pure and runner-free.

Components, in order: TimeSeriesExampleGen, StatisticsGen, SchemaGen, ExampleValidator,
Transform, Tuner (only with ``ModelConfig.tune``), Trainer, RefitTrainer (only with
``ModelConfig.refit``), the latest blessed model's resolver, Evaluator (eval split: the blessing),
TestEvaluator (test split: reported only), Pusher, and with ``forecast_after_push`` the Forecaster
(every series forecast with the pushed model).

The Trainer's model (A) trains on the train split, early-stops and calibrates its intervals on
eval; the Evaluator blesses it on eval (which it never trained on), against the latest blessed
A-type model. With ``refit``, the RefitTrainer trains the same model afresh on train+eval for A's
epochs with A's calibration baked in (B, with A as its ``base_model`` in ML Metadata); the
TestEvaluator scores B on test and the Pusher pushes B under A's blessing. Only Evaluator
blessings exist, and they name A models, so the gate's baseline is never a model that saw eval.
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx import v1 as tfx

import components
from components import features, forecast_metrics, windowing
from components.example_gen.component import TimeSeriesExampleGen
from components.example_gen.options import WindowingOptions
from components.forecaster import Forecaster
from components.pusher import KEEP_VERSIONS_KEY, AtomicPusher
from components.trainer_options import REFIT_KEY
from components.transform import transform_config
from pipeline.config import PipelineConfig
from serving import contract

_COMPONENTS_DIR = os.path.dirname(components.__file__)
TRANSFORM_MODULE = os.path.join(_COMPONENTS_DIR, "transform.py")
TRAINER_MODULE = os.path.join(_COMPONENTS_DIR, "trainer.py")


CANDIDATE, BASELINE = "candidate", "baseline"
LATEST_BLESSED_RESOLVER = "LatestBlessedModelResolver"
TEST_EVALUATOR = "TestEvaluator"
REFIT_TRAINER = "RefitTrainer"


def eval_config(config: PipelineConfig, gate: bool = True) -> tfma.EvalConfig:
    """The forecasting EvalConfig: the model and the naive forecasts, overall, per step, per series.

    Every metric of :mod:`components.forecast_metrics` (MAE, RMSE, MAPE, sMAPE and MASE of the
    model, of persistence and of the seasonal naive forecast of every seasonal period, each overall
    and per horizon step, and the skill; with quantiles, the model's quantile loss and the coverage
    and width of each interval), on the whole split and sliced by series id.

    Args:
      config: The run's settings (horizon, seasonal periods, the bounds), resolved.
      gate: With the blessing thresholds, which hold on the whole split only: skill strictly below
        ``max_skill``, and MAE at most ``regression_tolerance`` above the latest blessed model's
        (TFX drops this change threshold when there is no blessed model yet); with a
        ``coverage_tolerance``, each interval's coverage within it of nominal. Without: metrics only.
    """
    evaluation = config.evaluation
    periods = list(config.windows.seasonal_periods)
    overall = tfma.SlicingSpec()

    def on_whole_split(threshold: tfma.MetricThreshold) -> list:
        return [tfma_config.PerSliceMetricThreshold(slicing_specs=[overall], threshold=threshold)]

    levels = list(config.model.quantiles)
    metrics = [tfma.MetricConfig(class_name="ExampleCount")]
    for forecaster in forecast_metrics.forecasters(periods):
        quantile_metrics = forecast_metrics.quantile_metric_names(levels) if forecaster == forecast_metrics.MODEL \
            else ()
        for error in forecast_metrics.ERRORS + quantile_metrics:
            metric = tfma.MetricConfig(
                class_name=forecast_metrics.ForecastError.__name__, module=forecast_metrics.__name__,
                config=forecast_metrics.metric_config_json(error=error, forecaster=forecaster, levels=levels,
                                                           horizon=config.windows.horizon, periods=periods))
            if gate and forecaster == forecast_metrics.MODEL and error == "mae":
                metric.per_slice_thresholds.extend(on_whole_split(tfma.MetricThreshold(
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.LOWER_IS_BETTER,
                        relative={"value": evaluation.regression_tolerance}))))
            metrics.append(metric)
    if gate and evaluation.coverage_tolerance > 0:
        for coverage in config.model.intervals:
            name = forecast_metrics.coverage_name(coverage)
            metric = next(m for m in metrics if json.loads(m.config or "{}").get("error") == name)
            metric.per_slice_thresholds.extend(on_whole_split(tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(
                    lower_bound={"value": coverage - evaluation.coverage_tolerance},
                    upper_bound={"value": coverage + evaluation.coverage_tolerance}))))
    skill = tfma.MetricConfig(class_name=forecast_metrics.ForecastSkill.__name__, module=forecast_metrics.__name__,
                              config=forecast_metrics.metric_config_json(periods=periods, levels=levels))
    if gate:
        # TFMA's bounds are inclusive; the next float below makes "strictly below" exact.
        skill.per_slice_thresholds.extend(on_whole_split(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                upper_bound={"value": float(np.nextafter(evaluation.max_skill, -np.inf))}))))
    metrics.append(skill)

    def model_spec(name: str, is_baseline: bool = False) -> tfma.ModelSpec:
        return tfma.ModelSpec(name=name, signature_name=contract.EXAMPLES_SIGNATURE_NAME, label_key=features.TARGET,
                              prediction_key=contract.OUTPUT_KEY, is_baseline=is_baseline)

    return tfma.EvalConfig(
        model_specs=[model_spec(CANDIDATE)] + ([model_spec(BASELINE, is_baseline=True)] if gate else []),
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[features.SERIES_ID])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def windowing_options(config: PipelineConfig) -> WindowingOptions:
    """What the example generator does to the data; ``config`` must be resolved (:func:`config.resolve_from_data`)."""
    return WindowingOptions(config.data, config.windows)


def example_gen(config: PipelineConfig) -> TimeSeriesExampleGen:
    """The example generator of ``config``: validated, windowed, time-split examples."""
    return TimeSeriesExampleGen(windowing_options(config))


def _runtime(config: PipelineConfig, metadata: Optional[metadata_store_pb2.ConnectionConfig]) -> dict:
    return {"enable_cache": config.enable_cache, "metadata_connection_config": metadata,
            "beam_pipeline_args": config.beam_pipeline_args()}


def create_windows_pipeline(config: PipelineConfig,
                            metadata: Optional[metadata_store_pb2.ConnectionConfig] = None) -> tfx.dsl.Pipeline:
    """A pipeline of the example generator alone: checks the data and writes the windows."""
    return tfx.dsl.Pipeline(pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
                            components=[example_gen(config)], **_runtime(config, metadata))


def create_pipeline(config: PipelineConfig,
                    metadata: Optional[metadata_store_pb2.ConnectionConfig] = None) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline for ``config``; runs nothing.

    Args:
      config: All settings of the run.
      metadata: ML Metadata connection, from the runner (Kubeflow and Vertex AI bring their own).

    Returns:
      The logical pipeline, for any TFX runner.
    """
    examples = example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=examples.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    calendar_index = windowing.calendar_index_applies(config.model.calendar_index, config.windows.primary_period,
                                                      config.windows.step_seconds)
    transform = tfx.components.Transform(
        examples=examples.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=TRANSFORM_MODULE,
        custom_config=transform_config(dataclasses.asdict(config.windows), config.model.scaling,
                                       series_embedding=config.model.series_embedding_dim > 0,
                                       smoothing_bases=config.model.smoothing_bases,
                                       calendar_index=calendar_index),
        # Scaling statistics come from the training split alone.
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]))
    # The Tuner and both Trainers read the same transformed splits with the same settings.
    module = dict(module_file=TRAINER_MODULE, examples=transform.outputs["transformed_examples"],
                  transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
                  eval_args=tfx.proto.EvalArgs(splits=["eval"]))
    tuner = None
    if config.model.tune:
        # KerasTuner searches on the same transformed splits; its best hyperparameters feed the Trainer.
        tuner = tfx.components.Tuner(**module, train_args=tfx.proto.TrainArgs(splits=["train"]),
                                     custom_config=config.trainer_config())
    hyperparameters = tuner.outputs["best_hyperparameters"] if tuner is not None else None
    trainer = tfx.components.Trainer(**module, hyperparameters=hyperparameters,
                                     train_args=tfx.proto.TrainArgs(splits=["train"]),
                                     custom_config=config.trainer_config())
    refit = None
    if config.model.refit:
        # B: A's settings and seed, trained afresh on train+eval for A's best epoch count; it reads
        # both from A (base_model), and its eval files only give the warmup requests.
        refit = tfx.components.Trainer(
            **module, hyperparameters=hyperparameters, base_model=trainer.outputs["model"],
            train_args=tfx.proto.TrainArgs(splits=["train", "eval"]),
            custom_config={**config.trainer_config(), REFIT_KEY: True}).with_id(REFIT_TRAINER)
    # The model the test split scores and the Pusher pushes.
    served = (refit if refit is not None else trainer).outputs["model"]
    # The model to beat besides the naive forecasts: the newest one the Evaluator blessed.
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(LATEST_BLESSED_RESOLVER)
    evaluator = tfx.components.Evaluator(
        examples=examples.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"],
        eval_config=eval_config(config),
        example_splits=["eval"])
    # The same metrics on the test split, for the report; no thresholds, so it blesses nothing.
    test_evaluator = tfx.components.Evaluator(
        examples=examples.outputs["examples"],
        model=served,
        eval_config=eval_config(config, gate=False),
        example_splits=["test"]).with_id(TEST_EVALUATOR)
    pusher = AtomicPusher(
        model=served,
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)),
        custom_config={KEEP_VERSIONS_KEY: config.keep_versions})
    forecaster = Forecaster(pushed_model=pusher.outputs["pushed_model"], data=config.data,
                            publish_dir=config.forecasts_dir) if config.forecast_after_push else None
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[examples, statistics_gen, schema_gen, example_validator, transform,
                    *([tuner] if tuner is not None else []), trainer, *([refit] if refit is not None else []),
                    latest_blessed, evaluator,
                    test_evaluator, pusher, *([forecaster] if forecaster is not None else [])],
        **_runtime(config, metadata))
