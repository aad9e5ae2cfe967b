"""Settings of the Transform and Trainer modules: scaling, the stacked LSTM, training and export.

TensorFlow-free, so the pipeline, the CLI and the report can read them without loading Keras.
Every value is checked when a :class:`ModelConfig` is built (:mod:`components.settings`).
"""

import dataclasses
import json
import os
from typing import Any, Optional

from components import settings
from components.settings import setting
from serving.contract import central_intervals  # noqa: F401 (its users import it from here too)

SCALINGS = ("global", "per_series", "last_value", "window_mean", "window_std")
LOSSES = ("mse", "huber", "mae")
# How the seasonal base mix's weights start (ModelConfig.base_mix_fit) and their shape (base_mix_weights).
BASE_MIX_FITS = ("none", "fit", "frozen", "auto")
BASE_MIX_WEIGHTS = ("shared", "per_step")
# Where the calendar index bases join the mix (ModelConfig.calendar_index; components.windowing.calendar_index_applies).
CALENDAR_INDEX_MODES = ("off", "auto", "on")
# How intervals are made (ModelConfig.interval_method).
INTERVAL_METHODS = ("conformal", "quantile_head")
# The median and the 50%, 80% and 95% central intervals.
DEFAULT_QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
MEDIAN = 0.5
# Loss and eval loss per epoch (Keras' CSVLogger), in the Trainer's model_run directory.
TRAINING_LOG_FILE = "training_log.csv"
# The calibration of a quantile model (components.trainer.calibrate), in the same directory.
CALIBRATION_FILE = "calibration.json"
# How an exported model was trained (splits, epochs, the calibration it carries, the model it refits),
# inside its SavedModel: the refit reads its base model's, the Pusher checks it against the blessing.
TRAINING_RECORD_FILE = "assets.extra/training_record.json"
# In the refit Trainer's custom config: train on train+eval from its base model's record (components.trainer.run_fn).
REFIT_KEY = "refit"


def read_training_record(export_dir: str) -> Optional[dict[str, Any]]:
    """The training record of the SavedModel ``export_dir`` (:data:`TRAINING_RECORD_FILE`, written by
    :func:`components.trainer.write_training_record`), or None for a model exported before it existed."""
    # Imported here: the settings above are read where TensorFlow need not be loaded.
    import tensorflow as tf
    path = os.path.join(export_dir, TRAINING_RECORD_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The stacked LSTM, its input scaling, its training and its export.

    ``scaling`` is described in :mod:`components.transform`; ``serving_xla`` in :mod:`serving.contract`.
    """

    scaling: str = setting("window_std", choices=SCALINGS, help="input scaling (see components/transform.py)")
    lstm_units: tuple[int, ...] = setting((64, 64), minimum=1, help="units of each stacked LSTM layer, e.g. 64,64")
    dropout: float = setting(0.2, minimum=0.0, maximum=0.9, help="dropout after each LSTM layer")
    recurrent_dropout: float = setting(0.0, minimum=0.0, maximum=0.9,
                                       help="dropout on the LSTMs' recurrent state (> 0 rules out cuDNN)")
    learning_rate: float = setting(1e-3, above=0.0, help="Adam's learning rate")
    weight_decay: float = setting(0.0, minimum=0.0, help="Adam's decoupled weight decay (AdamW): each step "
                                                         "shrinks the weights by learning rate x this (0: none)")
    seasonal_base: bool = setting(
        True, help="forecast a correction to the seasonal naive forecast of the primary period (the head "
                    "starts at zero, so an untrained model is the seasonal naive forecast)")
    seasonal_base_mix: bool = setting(
        True, help="with --seasonal-base: the base is a learnt weighted mean of the seasonal naive forecast and "
                   "smoothed ones (the mean seasonal profile of the context's cycles at the latest level, with "
                   "the trend of the cycle means, and of the last two cycles; see components/transform.py)")
    base_mix_fit: str = setting(
        "fit", choices=BASE_MIX_FITS,
        help="with --seasonal-base-mix: none: the mix's weights start equal and train with the network; fit: "
             "they start at the convex weights of the candidates closest to the training targets (least absolute "
             "deviations; least squares with --loss mse), fitted on the Trainer's own training data, then "
             "train on; frozen: those weights, kept fixed while the network trains; auto: train with none and "
             "with fit (same seed, each early-stopped; once where the fit keeps equal weights) and keep the one with "
             "the lower eval loss (the refit takes that choice; see the README for why fit is the default)")
    base_mix_weights: str = setting(
        "shared", choices=BASE_MIX_WEIGHTS,
        help="with --seasonal-base-mix: shared: one weight per candidate for every target step; per_step: one "
             "per candidate and target step (H x candidates)")
    smoothing_bases: bool = setting(
        False, help="with --seasonal-base-mix: more candidates of the mix, exponential smoothing (alpha 0.1, "
                    "0.3, 0.6), Theta (the same alphas) and Holt's damped trend on the seasonally adjusted "
                    "context, re-seasonalised (one matrix product in the served graph; see "
                    "components/transform.py)")
    calendar_index: str = setting(
        "off", choices=CALENDAR_INDEX_MODES,
        help="with --seasonal-base-mix: three more candidates of the mix, exponential smoothing (alpha 0.1, 0.3, "
             "0.6) of the context less a seasonal index by calendar phase (day of the year, of the week, hour of "
             "the day) that Transform fits on the training split, re-seasonalised. on: wherever the primary season "
             "is a day, a week or a year (refused where it is none); auto: only where it is no whole number of "
             "steps (weeks in a year); off: never (see the README for the measurements)")
    series_embedding_dim: int = setting(
        0, minimum=0, help="width of a learnt embedding of each series id, beside the LSTM's state (0: none); "
                           "ids come from the training split, others get a zero vector")
    loss: str = setting("mae", choices=LOSSES,
                        help="training loss on scaled values of the point model (all but --interval-method "
                             "quantile_head)")
    quantiles: tuple[float, ...] = setting(
        DEFAULT_QUANTILES, above=0.0, maximum=1.0,
        help="quantile levels of the forecast, calibrated on the eval split: 0.5 and pairs symmetric about it, "
             "one central interval each ('': a point model, no intervals)")
    interval_method: str = setting(
        "conformal", choices=INTERVAL_METHODS,
        help="conformal: the point model, with intervals from its scaled eval errors per step (the median is the "
             "point forecast); quantile_head: a head of quantiles trained with the pinball loss, then calibrated")
    calibration_folds: int = setting(
        1, minimum=0, help="cross-validation folds inside the train split whose errors join the eval split's in the "
                           "conformal calibration: fold j trains the model (the chosen epochs and start, no early "
                           "stopping) on the windows before the j-th stretch as long as eval counted back from the "
                           "end of train, and scores that stretch; a fold holding out fewer windows than the widest "
                           "interval's conformal quantile needs (19 for a 95 percent interval) is left out, and so "
                           "is a fold after the first whose training windows span less than a year. Each fold costs "
                           "about one more training (0: eval's errors alone, faster; the README measures both)")
    ensemble_size: int = setting(
        1, minimum=1, help="networks in the model, each from its own initial weights and trained on its own loss; "
                           "the forecast is their mean (one SavedModel; training and serving cost K times as much)")
    batch_size: int = setting(64, minimum=1, help="windows per training step")
    epochs: int = setting(100, minimum=1, help="most epochs; early stopping usually ends training sooner")
    early_stopping_patience: int = setting(
        5, minimum=0, help="epochs without a lower eval loss before training stops and the best weights return "
                           "(0: off)")
    seed: int = setting(42, help="seed of weights, dropout and shuffling: the same seed and data give the same model")
    refit: bool = setting(
        True, help="after the gate's model (trained on the train split, early-stopped and calibrated on eval), "
                   "train the same model afresh on train+eval for the epochs early stopping chose, with the "
                   "first one's calibration, and push that one under the first one's blessing")
    serving_xla: bool = setting(False, help="compile the model in the serving signatures with XLA: faster, but TF "
                                            "Serving then needs --xla_cpu_compilation_enabled=true and "
                                            "`lstm-forecast serve` --xla-cpu-compilation-enabled")
    tune: bool = setting(False, help="search layers, units, dropout and learning rate with the TFX Tuner first")
    tuner_trials: int = setting(8, minimum=1, help="trials of the --tune search")

    def __post_init__(self) -> None:
        settings.check_fields(self)
        if not self.lstm_units:
            raise settings.fail(ModelConfig, "lstm_units", "needs at least one layer")
        problem = quantile_levels_problem(self.quantiles)
        if problem:
            raise settings.fail(ModelConfig, "quantiles", problem)

    @property
    def takes_series_id(self) -> bool:
        """Whether the served model takes each window's series id (per-series scaling or the embedding)."""
        return self.scaling == "per_series" or self.series_embedding_dim > 0

    @property
    def quantile_head(self) -> bool:
        """Whether the network itself outputs quantiles (else: a point forecast, intervals from calibration)."""
        return bool(self.quantiles) and self.interval_method == "quantile_head"

    @property
    def intervals(self) -> tuple[float, ...]:
        """The nominal coverage of each central interval of :attr:`quantiles`, narrowest first (0.5, 0.8, 0.95)."""
        return central_intervals(self.quantiles)


def quantile_levels_problem(levels: tuple[float, ...]) -> str:
    """What is wrong with quantile ``levels``, or ``""``: they must be in (0, 1), increasing, hold
    0.5 and be symmetric about it (each lower level ``p`` with its upper ``1 - p``), or be empty."""
    if not levels:
        return ""
    if any(not 0 < p < 1 for p in levels):
        return f"must be between 0 and 1 (exclusive); got {','.join(map(str, levels))}"
    if any(b <= a for a, b in zip(levels, levels[1:])):
        return f"must be increasing, each once; got {','.join(map(str, levels))}"
    if MEDIAN not in levels:
        return f"must include the median 0.5; got {','.join(map(str, levels))}"
    lower = [p for p in levels if p < MEDIAN]
    upper = [p for p in levels if p > MEDIAN]
    if len(lower) != len(upper) or any(abs(lo + hi - 1) > 1e-9 for lo, hi in zip(lower, reversed(upper))):
        return f"must pair each level p below 0.5 with 1 - p above it; got {','.join(map(str, levels))}"
    return ""


def interval_name(coverage: float) -> str:
    """How summary.json and the metric names call an interval: ``"80"`` for 0.8, ``"97.5"`` for 0.975."""
    return f"{100 * coverage:.10g}"


def model_config_from_dict(values: Optional[dict[str, Any]]) -> ModelConfig:
    """A :class:`ModelConfig` from :func:`dataclasses.asdict` output that went through JSON."""
    return settings.from_dict(ModelConfig, values or {})
