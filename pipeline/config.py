"""Settings of a forecasting pipeline: one frozen dataclass, built once at the entry point.

It composes the settings each component owns (:mod:`components.example_gen.options`,
:mod:`components.trainer_options`) with the run's own (evaluation, pushing, Beam). Every value is
checked when the object is built, so a bad flag fails before any work (:mod:`components.settings`);
the CLI builds its flags from the same declarations. ``create_pipeline`` reads only this object.
"""

import dataclasses
import json
import math
import os
import re
from typing import Any, Optional

import numpy as np

from components import settings
from components import windowing as windows_lib
from components.example_gen import options
from components.example_gen.options import DataConfig, WindowConfig
from components.settings import ConfigError, setting
from components.trainer_options import ModelConfig

__all__ = ["BEAM_PRESETS", "ConfigError", "DataConfig", "EvaluationConfig", "ModelConfig", "PipelineConfig",
           "WindowConfig", "from_json", "resolve", "resolve_from_data"]

DEFAULT_MODEL_NAME = "lstm_forecast"
BEAM_DIRECT_MODES = ("in_memory", "multi_processing")


# Beam presets: the options each needs from --beam-option KEY=VALUE, and the ones it sets. The
# runner is always named, so that Beam does not first try PrismRunner (which downloads a binary).
BEAM_PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "direct": ((), ("--runner=DirectRunner",)),
    # Dataflow: the workers need this package; build them from the Dockerfile's pipeline image
    # (sdk_container_image=...) or ship it with setup_file=./setup.py.
    "dataflow": (("project", "region", "temp_location"), ("--runner=DataflowRunner",)),
    # Flink and Spark run the Python workers beside the task managers (environment_type=PROCESS or
    # DOCKER with the pipeline image); LOOPBACK runs them in this process, for a local cluster.
    "flink": (("flink_master",), ("--runner=FlinkRunner",)),
    "spark": (("spark_master_url",), ("--runner=SparkRunner",)),
}


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """How a model earns its blessing, and what the run's report shows.

    The Evaluator scores the model, persistence and the seasonal naive forecast of every seasonal
    period on the eval windows (see :mod:`components.forecast_metrics`); the test windows are
    scored the same way for the report only.
    """

    max_skill: float = setting(
        1.0, above=0.0, help="bless the model only if its eval MAE over the best naive forecast's MAE is strictly "
                             "below this (1: it must beat every naive forecast)")
    regression_tolerance: float = setting(
        0.05, minimum=0.0, help="bless the model only if its eval MAE is at most this fraction above the latest "
                                "blessed model's (the first run has none to compare with)")
    coverage_tolerance: float = setting(
        0.0, minimum=0.0, maximum=1.0,
        help="bless the model only if the eval coverage of each central interval is within this of its nominal "
             "coverage, e.g. 0.05 (0: off; models with --quantiles only)")
    report_series: int = setting(3, minimum=0, help="series drawn in the report's forecast plots")

    def __post_init__(self) -> None:
        settings.check_fields(self)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline run needs: the components' settings and the run's own."""

    data: DataConfig
    output_dir: str = setting(help="run directory: artifacts, ML Metadata, the report and the pushed models",
                              flag="--output")
    windows: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    pipeline_name: str = "lstm-forecast"
    model_name: str = setting(DEFAULT_MODEL_NAME, help="name under which the model is served")
    evaluation: EvaluationConfig = EvaluationConfig()
    keep_versions: int = setting(5, minimum=1, help="newest pushed versions kept under the serving directory")
    beam_direct_running_mode: str = setting("in_memory", choices=BEAM_DIRECT_MODES, flag="--beam-mode",
                                            help="Beam DirectRunner running mode")
    beam_num_workers: int = setting(1, minimum=0, flag="--beam-workers",
                                    help="DirectRunner workers (0: one per CPU)")
    beam_preset: str = setting("direct", choices=tuple(sorted(BEAM_PRESETS)),
                               help="where Beam runs: here (direct), Dataflow, Flink or Spark")
    beam_options: tuple[str, ...] = setting((), flag="--beam-option",
                                            help="a Beam option KEY=VALUE, repeatable: project=, region=, "
                                                 "temp_location=, flink_master=, ...")
    enable_cache: bool = setting(True, flag="--cache",
                                 help="reuse component outputs whose inputs and settings are unchanged")
    forecast_after_push: bool = setting(
        False, help="after a push, forecast every series of the data with the pushed model into OUTPUT/forecasts/")

    def __post_init__(self) -> None:
        settings.check_fields(self)
        self.beam_pipeline_args()  # refuses a preset without the options it needs, before any work
        if self.forecast_after_push and self.data.future_covariate_columns:
            raise settings.fail(PipelineConfig, "forecast_after_push",
                                "cannot forecast a model with future covariates: the run's data holds no future "
                                "values (use the forecast command with --future-covariates)")

    @property
    def report_dir(self) -> str:
        """Where the run's report goes: ``summary.json``, ``index.html`` and its plots."""
        return os.path.join(self.output_dir, "report")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def forecasts_dir(self) -> str:
        """Where ``forecast_after_push`` publishes the newest forecasts and their summary."""
        return os.path.join(self.output_dir, "forecasts")

    @property
    def serving_model_dir(self) -> str:
        """The model base path a server watches: numbered versions appear below it."""
        return os.path.join(self.output_dir, "serving_model", self.model_name)

    def beam_pipeline_args(self) -> list[str]:
        """The Beam options of every Beam-based component, from :attr:`beam_preset`.

        Raises:
          ConfigError: An unknown preset, or a preset without the options it needs.
        """
        malformed = [option for option in self.beam_options if "=" not in option]
        if malformed:
            raise settings.fail(PipelineConfig, "beam_options", f"must be KEY=VALUE, got {', '.join(malformed)}")
        values = dict(option.split("=", 1) for option in self.beam_options)
        required, fixed = BEAM_PRESETS[self.beam_preset]
        missing = [key for key in required if key not in values]
        if missing:
            raise ConfigError(f"--beam-preset {self.beam_preset} needs --beam-option "
                              + " ".join(f"{key}=..." for key in missing))
        args = list(fixed)
        if self.beam_preset == "direct":
            args.append(f"--direct_running_mode={self.beam_direct_running_mode}")
            if self.beam_num_workers:
                args.append(f"--direct_num_workers={self.beam_num_workers}")
        return args + [f"--{key}={value}" for key, value in values.items()]

    def trainer_config(self) -> dict[str, Any]:
        """The settings the Trainer module reads from ``fn_args.custom_config`` (JSON-safe).

        ``data`` (the columns and policies) goes only into the exported model's description
        (:data:`serving.contract.MODEL_DESCRIPTION_FILE`).
        """
        return {"windows": dataclasses.asdict(self.windows), "model": dataclasses.asdict(self.model),
                "data": dataclasses.asdict(self.data)}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def from_json(text: str) -> PipelineConfig:
    """The :class:`PipelineConfig` that :meth:`PipelineConfig.to_json` wrote."""
    values = json.loads(text)
    nested = {"data": DataConfig, "windows": WindowConfig, "model": ModelConfig, "evaluation": EvaluationConfig}
    return settings.from_dict(PipelineConfig, {
        k: settings.from_dict(nested[k], v) if k in nested else v for k, v in values.items()})


def resolve(config: PipelineConfig, frequency: str, points: int,
            missing: Optional[np.ndarray] = None) -> PipelineConfig:
    """``config`` with the window settings it leaves to the data filled in (:func:`options.resolve`).

    Raises:
      ConfigError: ``--calendar-index on`` where the primary season is no calendar cycle.
    """
    windows = options.resolve(config.windows, frequency, points, config.data.business, missing)
    period = windows.primary_period
    # Without a season (too short a series) there are no seasonal bases, the index's among them, as
    # with --smoothing-bases. The index places each context point by its time at a whole number of
    # mean steps from the origin, which a grid that strays from them by a quarter of a step
    # (business days) defeats.
    if config.model.calendar_index == "on" and period and (
            windows.business_hours or options.step_drift(frequency) > 0.25
            or windows_lib.index_cycle(period, windows.step_seconds) is None):
        raise settings.fail(ModelConfig, "calendar_index",
                            f"needs a primary season that is a day, a week or a year; {period} steps of "
                            f"{frequency} are none")
    return dataclasses.replace(config, windows=windows)


def resolve_from_data(config: PipelineConfig) -> PipelineConfig:
    """``config`` with what it leaves to the data filled in from the first series of the data.

    Reads one chunk of the data for its frequency and length, unless ``--frequency``,
    ``--history`` and ``--season-length`` are all given (then nothing is read: a pipeline can be
    compiled for data this machine cannot reach).

    Raises:
      DataError: The data cannot be read or its frequency not inferred (the message names the file).
    """
    windows, data = config.windows, config.data
    if windows.resolved:
        return config
    if data.frequency and windows.history and windows.seasonal_periods:
        # No series length to go by: every given period kept, and the context's cycles as given.
        points = max(max(windows.seasonal_periods) * options.MIN_CYCLES,
                     math.ceil(windows.seasonal_cycles * min(windows.seasonal_periods) / options.MAX_CONTEXT_SHARE))
        return resolve(config, data.frequency, points=points)
    # Reading the data needs TensorFlow's file systems; settings alone do not, so --help stays fast.
    from components.example_gen import grid
    from components.example_gen.columns import DataError

    try:
        frequency, points, missing = grid.probe(data)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 (any file system's error: gs:// without credentials, ...)
        raise DataError(f"{data.path}: cannot read it to learn the frequency and the series' length "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); give "
                        "--frequency, --history and --season-length to run or compile without reading it") from error
    return resolve(config, data.frequency or frequency, points, missing)


def check_local_output(output_dir: str) -> None:
    """Refuses a remote output (``gs://...``) for a command that runs the pipeline on this machine.

    Raises:
      ConfigError: ``output_dir`` has a URL scheme.
    """
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", output_dir):
        flag = settings.flag_of(PipelineConfig, "output_dir")
        raise ConfigError(
            f"{flag} {output_dir}: a local run writes to a local directory; to run in the cloud, compile the "
            "pipeline with 'lstm-forecast compile-kubeflow' and submit it to Kubeflow Pipelines or Vertex AI")
