"""The ``forecast`` command's library: every series of the data, H points past its end, as a Beam job.

The model says what it was trained on (:data:`serving.contract.MODEL_DESCRIPTION_FILE`): its
columns, frequency, history, horizon and covariates; settings given here override it. The job
itself is :mod:`components.batch_forecast`; this module finds the model, builds its settings, runs
the job on the chosen Beam runner and reads back its summary.

Exit codes of ``lstm-forecast forecast`` (:data:`EXIT_ALL`, ...): 0 every series was forecast;
3 some series were skipped (each is listed with its reason; the others are written); 1 nothing
could be done (bad settings or data, no model, no server: one line on stderr).
"""

import dataclasses
import os
from typing import Any, Optional, Sequence

from components import batch_forecast
from components.example_gen import reader
from components.example_gen.columns import DataError
from components.example_gen.options import DataConfig
from pipeline.config import DEFAULT_MODEL_NAME, ConfigError, PipelineConfig
from serving import contract
from serving import versions as versions_lib

EXIT_ALL, EXIT_SOME_SKIPPED = 0, 3
DATA_FIELDS, SUMMARY_SUFFIX = batch_forecast.DATA_FIELDS, batch_forecast.SUMMARY_SUFFIX
read_description, data_config = batch_forecast.read_description, batch_forecast.data_config


@dataclasses.dataclass(frozen=True)
class ForecastResult:
    """What a forecast job did.

    Attributes:
      output: The forecasts file.
      summary_path: Its summary JSON.
      summary: ``series``, ``forecast``, ``skipped`` (``[{series_id, reason}]``) and ``rows``.
      model: The model version directory, or the server asked.
    """

    output: str
    summary_path: str
    summary: dict[str, Any]
    model: str

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_SKIPPED if self.summary["skipped"] else EXIT_ALL


def model_version_dir(model_base_path: str, version: Optional[int] = None) -> str:
    """The newest numbered version under ``model_base_path``, or version ``version``.

    Raises:
      FileNotFoundError: No such version, or no version at all.
    """
    versions = versions_lib.list_versions(model_base_path)
    if version is None and versions:
        return versions_lib.version_path(model_base_path, versions[-1])
    if version is not None and version in versions:
        return versions_lib.version_path(model_base_path, version)
    wanted = f"version {version}" if version is not None else "a numbered version"
    raise FileNotFoundError(f"{model_base_path}: no {wanted} (versions: {', '.join(map(str, versions)) or 'none'})")


def beam_args(preset: str, options: Sequence[str], direct_mode: str = "in_memory", workers: int = 1) -> list[str]:
    """The Beam options of a preset (as ``run`` builds them; see :data:`pipeline.config.BEAM_PRESETS`).

    Raises:
      ConfigError: An unknown preset (PipelineConfig checks it, naming ``--beam-preset``).
    """
    config = PipelineConfig(data=DataConfig(path=""), output_dir="", beam_preset=preset,
                            beam_options=tuple(options), beam_direct_running_mode=direct_mode,
                            beam_num_workers=workers)
    return config.beam_pipeline_args()


def run_forecast(data_path: str, output: str, model_base_path: Optional[str] = None, version: Optional[int] = None,
                 server: Optional[str] = None, model_name: str = DEFAULT_MODEL_NAME,
                 future_covariates: Optional[str] = None, overrides: Optional[dict[str, Any]] = None,
                 pipeline_args: Sequence[str] = ("--runner=DirectRunner",), progress: bool = False,
                 max_batch: int = batch_forecast.MAX_BATCH) -> ForecastResult:
    """Forecasts every series of ``data_path`` with a model on disk or on a server; writes ``output``.

    Args:
      data_path: The series (a file, a directory or a glob), read as in training.
      output: The forecasts file (``.csv`` or ``.parquet``); its summary goes beside it.
      model_base_path: The directory of numbered versions (the newest, or ``version``, is used);
        with ``server`` it is read only for its description.
      version: A version number.
      server: ``HOST:PORT`` of a running server to ask instead of loading the model here.
      model_name: The served model's name (with ``server``).
      future_covariates: The future covariates' file(s), when the model takes them.
      overrides: Data settings given as flags (fields of :data:`DATA_FIELDS`; None: from the model).
      pipeline_args: Beam options (:func:`beam_args`).
      progress: Print ``series done / total`` now and then.
      max_batch: Most series per model call.

    Raises:
      DataError, ConfigError, FileNotFoundError, ForecastError: Bad data or settings, no model, no server.
    """
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions

    batch_forecast.output_format(output)  # before any work
    description, model_dir = None, None
    if model_base_path:
        model_dir = model_version_dir(model_base_path, version)
        description = read_description(model_dir)
    if server:
        from serving import client as client_lib
        with client_lib.ForecastClient(server, model_name, version=version) as client:
            signature = client.metadata()[contract.SIGNATURE_NAME]
        inputs = batch_forecast.ModelInputs.from_signature(signature["inputs"], signature["outputs"])
        if description is not None:
            known = description.get("known_series")
            inputs = dataclasses.replace(inputs, known_series=frozenset(known) if known is not None else None)
        model = batch_forecast.ServedModel(server, model_name, version)
        where = f"{model_name} on {server}"
    elif model_dir:
        inputs = batch_forecast.ModelInputs.from_description(description)
        model = batch_forecast.LocalModel(model_dir)
        where = model_dir
    else:
        raise ConfigError("give --model-base-path (a model on disk) or --server (a running server)")
    if description is None:
        # A served model without its files: its covariates are read off its inputs.
        past = tuple(c for c in inputs.covariates if c not in inputs.future_covariates)
        description = {"data": {"covariate_columns": past, "future_covariate_columns": inputs.future_covariates}}
    data = data_config(data_path, description, overrides or {})
    batch_forecast.check_covariates(data, inputs)
    files = reader.match_files(data_path)
    future_files = []
    if inputs.future_covariates:
        if not future_covariates:
            raise ConfigError(f"the model needs the future values of {', '.join(inputs.future_covariates)} for "
                              "the forecast steps: give --future-covariates FILE")
        future_files = reader.match_files(future_covariates)
    parts_dir = batch_forecast.parts_dir_of(output)
    try:
        with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
            summary_path = batch_forecast.add_forecast_job(pipeline, files, data, inputs, model, output, future_files,
                                                           progress=progress, max_batch=max_batch,
                                                           parts_dir=parts_dir)
    finally:
        # A job that failed leaves no part files beside the output (one that ran removed them).
        if tf.io.gfile.exists(parts_dir):
            tf.io.gfile.rmtree(parts_dir)
    return ForecastResult(output=output, summary_path=summary_path, summary=batch_forecast.read_summary(summary_path),
                          model=where)


def format_summary(result: ForecastResult) -> str:
    """The job's summary as the command prints it: counts, then each skipped series with its reason."""
    s = result.summary
    lines = [f"forecast {s['forecast']} of {s['series']} series with {result.model}: {s['rows']} rows in "
             f"{result.output}"]
    if s["skipped"]:
        lines.append(f"skipped {len(s['skipped'])} series:")
        lines += [f"  {entry['series_id']}: {entry['reason']}" for entry in s["skipped"]]
    lines.append(f"summary JSON: {result.summary_path}")
    return "\n".join(lines)


def published_forecasts(config: PipelineConfig, pushed_model: str) -> ForecastResult:
    """The forecasts that the run's Forecaster (``--forecast-after-push``) published in ``OUTPUT/forecasts/``."""
    from components import forecaster
    output = os.path.join(config.forecasts_dir, forecaster.FORECASTS_FILE)
    summary_path = output + SUMMARY_SUFFIX
    return ForecastResult(output=output, summary_path=summary_path, summary=batch_forecast.read_summary(summary_path),
                          model=pushed_model)


__all__ = ["DataError", "EXIT_ALL", "EXIT_SOME_SKIPPED", "ForecastResult", "beam_args", "data_config",
           "format_summary", "published_forecasts", "model_version_dir", "read_description", "run_forecast"]
