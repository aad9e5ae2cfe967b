"""Settings of a forecasting pipeline: one frozen dataclass, built once at the entry point.

``create_pipeline`` and the components read only this object; the CLI builds it from flags.
"""

import dataclasses
import json
import os
from typing import Any, Optional

DEFAULT_MODEL_NAME = "lstm_forecast"


class ConfigError(ValueError):
    """Settings that cannot work together; the message says which and why."""


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
class DataConfig:
    """Where the series are, which columns hold what, and how to treat flawed data.

    Attributes:
      path: A CSV or Parquet file, a directory of them, or a glob.
      timestamp_column: ISO 8601 timestamps (with or without zone) or epoch seconds.
      target_column: The value to forecast.
      series_id_column: Names the series of each row (many series, one model); None: one series.
      covariate_columns: Numeric columns whose histories go with each window.
      frequency: A pandas offset alias (``30min``, ``1h``, ``1D``, ``W-SAT``, ``MS``); None: inferred
        per series and reported.
      duplicates: ``error`` on a repeated timestamp within a series, or merge the rows by
        ``first``, ``last``, ``mean``, ``sum``, ``min`` or ``max``.
      gap_policy: ``error`` on a missing point, ``interpolate`` runs of up to ``max_gap`` missing
        points linearly, or ``skip`` (no window crosses a missing point).
      max_gap: The longest run of missing points that ``interpolate`` fills.
    """

    path: str
    timestamp_column: str = "timestamp"
    target_column: str = "value"
    series_id_column: Optional[str] = None
    covariate_columns: tuple[str, ...] = ()
    frequency: Optional[str] = None
    duplicates: str = "error"
    gap_policy: str = "skip"
    max_gap: int = 3


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """How series become examples: window lengths and the split of time.

    Attributes:
      history: History length L, points fed to the model.
      horizon: Forecast horizon H, points predicted (direct multi-step).
      stride: Step between window starts.
      split_fractions: Fractions of each series' span for train and eval; test takes the rest.
      split_times: The first timestamps of eval and of test (ISO 8601), in place of the fractions.
      split_gap: Grid points left out after each cut, so that train and eval targets are apart.
      calendar_features: Add sin/cos calendar features of each forecast origin.
    """

    history: int = 52
    horizon: int = 4
    stride: int = 1
    split_fractions: tuple[float, float] = (0.7, 0.15)
    split_times: Optional[tuple[str, str]] = None
    split_gap: int = 0
    calendar_features: bool = True


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The stacked LSTM, its input scaling, its training and its export.

    Attributes:
      scaling: ``global``, ``per_series``, ``last_value`` or ``window_mean`` (see
        :mod:`components.transform`).
      lstm_units: Units of each stacked LSTM layer.
      dropout: Dropout rate after each LSTM layer.
      recurrent_dropout: Dropout on the LSTMs' recurrent state (0: none; > 0 rules out cuDNN).
      learning_rate: Adam's learning rate.
      loss: ``mse`` or ``huber``.
      batch_size: Windows per training step.
      epochs: Most epochs; early stopping may end training sooner.
      early_stopping_patience: Epochs without a lower eval loss before training stops (the best
        weights are restored); 0 turns early stopping off.
      seed: Seed of weights, dropout and shuffling: the same seed and data give the same model.
      serving_xla: Compile the model inside the serving signatures with XLA (needs TF Serving's
        ``--xla_cpu_compilation_enabled=true``; see :mod:`serving.contract`). On by default:
        measured (benchmarks/predict.py, 2 cores) one window p50 0.20 ms with XLA against 1.19 ms
        without, batch 1024 30k against 19k windows/s.
      tune: Search units, layers, dropout and learning rate with the TFX Tuner first.
      tuner_trials: Trials of the search when ``tune`` is on.
    """

    scaling: str = "last_value"
    lstm_units: tuple[int, ...] = (64, 64)
    dropout: float = 0.2
    recurrent_dropout: float = 0.0
    learning_rate: float = 1e-3
    loss: str = "mse"
    batch_size: int = 64
    epochs: int = 20
    early_stopping_patience: int = 5
    seed: int = 42
    serving_xla: bool = True
    tune: bool = False
    tuner_trials: int = 8


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """How a model earns its blessing, and what the run's report shows.

    The Evaluator scores the model and two naive forecasts (persistence and seasonal naive) on
    the eval windows (see :mod:`components.forecast_metrics`); the test windows are scored the
    same way for the report only.

    Attributes:
      season_length: Points per season of the seasonal naive forecast, at most the history
        length. The default fits weekly data with a yearly cycle (the bundled CO2 series).
      max_skill: The model is blessed only if its eval MAE over the best naive MAE is strictly
        below this (1.0: it must beat both naive forecasts).
      regression_tolerance: The model is blessed only if its eval MAE is at most this fraction
        above the latest blessed model's MAE on the same windows (0.05: up to 5% worse). The
        first run has no blessed model to compare with, so only ``max_skill`` applies.
      report_series: Series drawn in the report's forecast plots.
    """

    season_length: int = 52
    max_skill: float = 1.0
    regression_tolerance: float = 0.05
    report_series: int = 3


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline run needs.

    Attributes:
      data: The input series.
      output_dir: Root of the run: pipeline artifacts, ML Metadata and the pushed models.
      windows: Windowing and splits.
      model: Model and training settings.
      pipeline_name: Name of the TFX pipeline (and of its ML Metadata context).
      model_name: Name under which the model is served.
      evaluation: The blessing gate and the report.
      keep_versions: Newest pushed versions kept under the model base path; older ones are deleted.
      beam_direct_running_mode: ``in_memory`` or ``multi_processing`` for Beam's DirectRunner.
      beam_num_workers: Workers of the DirectRunner (0: one per CPU).
      beam_preset: ``direct`` (here), ``dataflow``, ``flink`` or ``spark`` (see :data:`BEAM_PRESETS`).
      beam_options: Further Beam options as ``KEY=VALUE`` (``project=...``, ``flink_master=...``).
      enable_cache: Reuse component outputs whose inputs and settings are unchanged.
    """

    data: DataConfig
    output_dir: str
    windows: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    pipeline_name: str = "lstm-forecast"
    model_name: str = DEFAULT_MODEL_NAME
    evaluation: EvaluationConfig = EvaluationConfig()
    keep_versions: int = 5
    beam_direct_running_mode: str = "in_memory"
    beam_num_workers: int = 1
    beam_preset: str = "direct"
    beam_options: tuple[str, ...] = ()
    enable_cache: bool = True

    def __post_init__(self) -> None:
        season, history = self.evaluation.season_length, self.windows.history
        if not 1 <= season <= history:
            raise ConfigError(f"season length {season} must be between 1 and the history length {history} "
                              "(the seasonal naive forecast looks one season back within the history)")
        if self.evaluation.regression_tolerance < 0:
            raise ConfigError(f"regression tolerance must be >= 0, got {self.evaluation.regression_tolerance}")

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
            raise ConfigError(f"beam options must be KEY=VALUE, got {malformed}")
        options = dict(option.split("=", 1) for option in self.beam_options)
        if self.beam_preset not in BEAM_PRESETS:
            raise ConfigError(f"beam preset must be one of {sorted(BEAM_PRESETS)}, got '{self.beam_preset}'")
        required, fixed = BEAM_PRESETS[self.beam_preset]
        missing = [key for key in required if key not in options]
        if missing:
            raise ConfigError(f"beam preset '{self.beam_preset}' needs --beam-option "
                             + " ".join(f"{key}=..." for key in missing))
        args = list(fixed)
        if self.beam_preset == "direct":
            args.append(f"--direct_running_mode={self.beam_direct_running_mode}")
            if self.beam_num_workers:
                args.append(f"--direct_num_workers={self.beam_num_workers}")
        return args + [f"--{key}={value}" for key, value in options.items()]

    def trainer_config(self) -> dict[str, Any]:
        """The settings the Trainer module reads from ``fn_args.custom_config`` (JSON-safe)."""
        return {"windows": dataclasses.asdict(self.windows), "model": dataclasses.asdict(self.model)}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def from_json(text: str) -> PipelineConfig:
    """The :class:`PipelineConfig` that :meth:`PipelineConfig.to_json` wrote."""
    values = json.loads(text)
    nested = {"data": DataConfig, "windows": WindowConfig, "model": ModelConfig, "evaluation": EvaluationConfig}
    return _from_json(PipelineConfig, {k: _from_json(nested[k], v) if k in nested else v for k, v in values.items()})


def _from_json(cls: type, values: dict[str, Any]) -> Any:
    # JSON has no tuples: the tuple fields of the frozen dataclasses come back as lists.
    return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})


def model_config_from_custom_config(custom_config: Optional[dict[str, Any]]) -> ModelConfig:
    """Rebuilds the :class:`ModelConfig` the Trainer was given by :meth:`PipelineConfig.trainer_config`."""
    return _from_json(ModelConfig, (custom_config or {}).get("model", {}))


def data_config_from_custom_config(custom_config: Optional[dict[str, Any]]) -> DataConfig:
    """The :class:`DataConfig` under ``"data"`` of a JSON settings dictionary."""
    return _from_json(DataConfig, (custom_config or {}).get("data", {"path": ""}))


def window_config_from_custom_config(custom_config: Optional[dict[str, Any]]) -> WindowConfig:
    """Rebuilds the :class:`WindowConfig` the Trainer was given by :meth:`PipelineConfig.trainer_config`."""
    return _from_json(WindowConfig, (custom_config or {}).get("windows", {}))
