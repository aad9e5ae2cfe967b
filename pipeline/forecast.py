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
import json
import os
from typing import Any, Optional, Sequence

from components import batch_forecast
from components.example_gen import reader
from components.example_gen.columns import DataError
from components.example_gen.options import DataConfig
from pipeline.config import BEAM_PRESETS, ConfigError, PipelineConfig
from serving import contract
from serving import versions as versions_lib

EXIT_ALL, EXIT_SOME_SKIPPED = 0, 3
# The data settings that the model's description carries and flags may override.
DATA_FIELDS = ("timestamp_column", "target_column", "series_id_column", "frequency", "duplicates", "gap_policy",
               "max_gap", "covariate_columns", "future_covariate_columns")
SUMMARY_SUFFIX = ".summary.json"
FORECASTS_DIR = "forecasts"


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


def read_description(model_dir: str) -> dict[str, Any]:
    """The model description the export wrote into ``model_dir`` (:data:`contract.MODEL_DESCRIPTION_FILE`).

    Raises:
      FileNotFoundError: The model has none (exported before descriptions were written).
    """
    import tensorflow as tf
    path = os.path.join(model_dir, contract.MODEL_DESCRIPTION_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: the model carries no description of its data; re-run the pipeline "
                                "to export one, or ask a server (--server) and give the data's columns")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def data_config(path: str, description: Optional[dict[str, Any]], overrides: dict[str, Any]) -> DataConfig:
    """The data settings: the model's description, then the flags that were given (not None).

    Raises:
      ConfigError: A setting out of its choices or range, naming its flag.
    """
    values = {k: v for k, v in ((description or {}).get("data") or {}).items() if k in DATA_FIELDS}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values.update({k: v for k, v in overrides.items() if k in DATA_FIELDS and v is not None})
    return DataConfig(path=path, **values)


def beam_args(preset: str, options: Sequence[str], direct_mode: str = "in_memory", workers: int = 1) -> list[str]:
    """The Beam options of a preset (as ``run`` builds them; see :data:`pipeline.config.BEAM_PRESETS`)."""
    if preset not in BEAM_PRESETS:
        raise ConfigError(f"--beam-preset must be one of {', '.join(sorted(BEAM_PRESETS))}; got '{preset}'")
    config = PipelineConfig(data=DataConfig(path=""), output_dir="", beam_preset=preset,
                            beam_options=tuple(options), beam_direct_running_mode=direct_mode,
                            beam_num_workers=workers)
    return config.beam_pipeline_args()


def run_forecast(data_path: str, output: str, model_base_path: Optional[str] = None, version: Optional[int] = None,
                 server: Optional[str] = None, model_name: str = "lstm_forecast",
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
    from apache_beam.options.pipeline_options import PipelineOptions

    batch_forecast.output_format(output)
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
    _check_covariates(data, inputs)
    files = reader.match_files(data_path)
    future_files = []
    if inputs.future_covariates:
        if not future_covariates:
            raise ConfigError(f"the model needs the future values of {', '.join(inputs.future_covariates)} for "
                              "the forecast steps: give --future-covariates FILE")
        future_files = reader.match_files(future_covariates)
    summary_path = output + SUMMARY_SUFFIX
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        outputs = pipeline | "ForecastFiles" >> batch_forecast.ForecastFiles(
            files, data, inputs, model, future_files, progress=progress, max_batch=max_batch)
        _ = outputs | "WriteForecasts" >> batch_forecast.WriteForecasts(output, data.series_id_column, summary_path)
    import tensorflow as tf
    with tf.io.gfile.GFile(summary_path) as f:
        summary = json.load(f)
    return ForecastResult(output=output, summary_path=summary_path, summary=summary, model=where)


def _check_covariates(data: DataConfig, inputs: batch_forecast.ModelInputs) -> None:
    """The data's covariate columns must be the model's (their order does not matter)."""
    if sorted(data.columns.covariates) != sorted(inputs.covariates) or \
            sorted(data.future_covariate_columns) != sorted(inputs.future_covariates):
        raise ConfigError(f"the model takes covariates {', '.join(inputs.covariates) or 'none'} (future: "
                          f"{', '.join(inputs.future_covariates) or 'none'}); the settings give "
                          f"{', '.join(data.columns.covariates) or 'none'} (future: "
                          f"{', '.join(data.future_covariate_columns) or 'none'}): give --covariate-columns "
                          "and --future-covariate-columns as in training")


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


def forecast_after_push(config: PipelineConfig, pushed_model: str, progress: bool = False) -> ForecastResult:
    """Forecasts the run's data with the model it just pushed, into ``OUTPUT/forecasts/forecasts.csv``."""
    out_dir = os.path.join(config.output_dir, FORECASTS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    base, version = os.path.split(pushed_model.rstrip("/"))
    return run_forecast(config.data.path, os.path.join(out_dir, "forecasts.csv"), model_base_path=base,
                        version=int(version), pipeline_args=config.beam_pipeline_args(), progress=progress)


__all__ = ["DataError", "EXIT_ALL", "EXIT_SOME_SKIPPED", "ForecastResult", "beam_args", "data_config",
           "format_summary", "forecast_after_push", "model_version_dir", "read_description", "run_forecast"]
