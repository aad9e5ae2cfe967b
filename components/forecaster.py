"""Forecaster: a pipeline step after the Pusher that forecasts every series with the model just pushed.

With ``--forecast-after-push`` a nightly ``run`` ends with fresh forecasts: this component runs the
batch forecasting job (:mod:`components.batch_forecast`) on the run's data with the pushed version,
on the run's Beam runner, and writes ``forecasts.csv`` and its summary into its artifact and into
the run's published directory (``OUTPUT/forecasts/``), replacing the previous ones whole. When the
Pusher pushed nothing (the model was not blessed) it forecasts nothing and the previous forecasts
stay.
"""

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components import batch_forecast, settings
from components.example_gen import reader
from components.example_gen.options import DataConfig

PUSHED_MODEL_KEY, FORECASTS_KEY, OPTIONS_KEY = "pushed_model", "forecasts", "options"
FORECASTS_FILE = "forecasts.csv"


class Forecasts(types.Artifact):
    """A forecasts file (``forecasts.csv``) and its summary (``forecasts.csv.summary.json``)."""

    TYPE_NAME = "Forecasts"


def forecaster_options(data: DataConfig, publish_dir: str) -> str:
    """The component's options as JSON: the run's data settings and where the forecasts are published."""
    return json.dumps({"data": dataclasses.asdict(data), "publish_dir": publish_dir}, sort_keys=True)


def _publish(source_dir: str, publish_dir: str) -> None:
    """Copies the forecasts and their summary into ``publish_dir``, each written beside and renamed."""
    tf.io.gfile.makedirs(publish_dir)
    for name in (FORECASTS_FILE, FORECASTS_FILE + batch_forecast.SUMMARY_SUFFIX):
        temporary = os.path.join(publish_dir, name + ".tmp")
        tf.io.gfile.copy(os.path.join(source_dir, name), temporary, overwrite=True)
        tf.io.gfile.rename(temporary, os.path.join(publish_dir, name), overwrite=True)


class Executor(base_beam_executor.BaseBeamExecutor):
    """Forecasts every series of the run's data with the pushed version, if there is one."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        forecasts = artifact_utils.get_single_instance(output_dict[FORECASTS_KEY])
        if not pushed.get_int_custom_property("pushed"):
            logging.info("Forecaster: the model was not pushed; no forecasts")
            forecasts.set_int_custom_property("forecast", 0)
            return
        options = json.loads(exec_properties[OPTIONS_KEY])
        data = settings.from_dict(DataConfig, options["data"])
        model_dir = pushed.get_string_custom_property("pushed_destination")
        inputs = batch_forecast.ModelInputs.from_description(batch_forecast.read_description(model_dir))
        output = os.path.join(forecasts.uri, FORECASTS_FILE)
        tf.io.gfile.makedirs(forecasts.uri)
        with self._make_beam_pipeline() as pipeline:
            summary_path = batch_forecast.add_forecast_job(pipeline, reader.match_files(data.path), data, inputs,
                                                           batch_forecast.LocalModel(model_dir), output)
        summary = batch_forecast.read_summary(summary_path)
        for key in ("series", "forecast", "rows"):
            forecasts.set_int_custom_property(key, summary[key])
        forecasts.set_int_custom_property("skipped", len(summary["skipped"]))
        _publish(forecasts.uri, options["publish_dir"])
        logging.info("Forecaster: %d of %d series forecast into %s", summary["forecast"], summary["series"],
                     options["publish_dir"])


class ForecasterSpec(types.ComponentSpec):
    """Parameters, input and output of Forecaster."""

    PARAMETERS = {OPTIONS_KEY: ExecutionParameter(type=str)}
    INPUTS = {PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {FORECASTS_KEY: ChannelParameter(type=Forecasts)}


class Forecaster(base_beam_component.BaseBeamComponent):
    """Forecasts every series of the data with the model the Pusher pushed (nothing when it pushed none)."""

    SPEC_CLASS = ForecasterSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, pushed_model: types.BaseChannel, data: DataConfig, publish_dir: str):
        spec = ForecasterSpec(options=forecaster_options(data, publish_dir), pushed_model=pushed_model,
                              forecasts=types.Channel(type=Forecasts))
        super().__init__(spec=spec)
