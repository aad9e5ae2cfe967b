"""The forecasting pipeline: ``create_pipeline(config) -> tfx.dsl.Pipeline``, pure and runner-free.

Components, in order: TimeSeriesExampleGen, StatisticsGen, SchemaGen, ExampleValidator,
Transform, Tuner (only with ``ModelConfig.tune``), Trainer, Evaluator, Pusher.
"""

import os
from typing import Optional

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import components
from components import features
from components.example_gen.component import TimeSeriesExampleGen
from components.example_gen.series import WindowingOptions
from components.pusher import KEEP_VERSIONS_KEY, AtomicPusher
from pipeline.config import PipelineConfig
from serving import contract

_COMPONENTS_DIR = os.path.dirname(components.__file__)
TRANSFORM_MODULE = os.path.join(_COMPONENTS_DIR, "transform.py")
TRAINER_MODULE = os.path.join(_COMPONENTS_DIR, "trainer.py")


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """MAE and RMSE of the forecasts in original units on the eval split, with the blessing bound."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=contract.EXAMPLES_SIGNATURE_NAME,
            label_key=features.TARGET,
            prediction_key=contract.OUTPUT_KEY)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="MeanAbsoluteError",
                threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                    upper_bound={"value": config.max_eval_mae}))),
            tfma.MetricConfig(class_name="MeanSquaredError"),
        ])])


def windowing_options(config: PipelineConfig) -> WindowingOptions:
    """What the example generator does to the data (checked here, before anything runs)."""
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
    transform = tfx.components.Transform(
        examples=examples.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=TRANSFORM_MODULE,
        custom_config={"scaling": config.model.scaling},
        # Scaling statistics come from the training split alone.
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]))
    tuner = None
    if config.model.tune:
        # KerasTuner searches on the same transformed splits; its best hyperparameters feed the Trainer.
        tuner = tfx.components.Tuner(
            module_file=TRAINER_MODULE,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=config.trainer_config())
    trainer = tfx.components.Trainer(
        module_file=TRAINER_MODULE,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner is not None else None,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.trainer_config())
    evaluator = tfx.components.Evaluator(
        examples=examples.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=eval_config(config),
        example_splits=["eval"])
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir)),
        custom_config={KEEP_VERSIONS_KEY: config.keep_versions})
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[examples, statistics_gen, schema_gen, example_validator, transform,
                    *([tuner] if tuner is not None else []), trainer, evaluator, pusher],
        **_runtime(config, metadata))
