"""Settings of the Transform and Trainer modules: scaling, the stacked LSTM, training and export.

TensorFlow-free, so the pipeline, the CLI and the report can read them without loading Keras.
Every value is checked when a :class:`ModelConfig` is built (:mod:`components.settings`).
"""

import dataclasses
from typing import Any, Optional

from components import settings
from components.settings import setting

SCALINGS = ("global", "per_series", "last_value", "window_mean", "window_std")
LOSSES = ("mse", "huber", "mae")
# Loss and eval loss per epoch (Keras' CSVLogger), in the Trainer's model_run directory.
TRAINING_LOG_FILE = "training_log.csv"


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
    seasonal_base: bool = setting(
        True, help="forecast a correction to the seasonal naive forecast of the primary period (the head "
                    "starts at zero, so an untrained model is the seasonal naive forecast)")
    series_embedding_dim: int = setting(
        0, minimum=0, help="width of a learnt embedding of each series id, beside the LSTM's state (0: none); "
                           "ids come from the training split, others get a zero vector")
    loss: str = setting("mae", choices=LOSSES, help="training loss on scaled values")
    batch_size: int = setting(64, minimum=1, help="windows per training step")
    epochs: int = setting(100, minimum=1, help="most epochs; early stopping usually ends training sooner")
    early_stopping_patience: int = setting(
        5, minimum=0, help="epochs without a lower eval loss before training stops and the best weights return "
                           "(0: off)")
    seed: int = setting(42, help="seed of weights, dropout and shuffling: the same seed and data give the same model")
    serving_xla: bool = setting(False, help="compile the model in the serving signatures with XLA: faster, but TF "
                                            "Serving then needs --xla_cpu_compilation_enabled=true and "
                                            "`lstm-forecast serve` --xla-cpu-compilation-enabled")
    tune: bool = setting(False, help="search layers, units, dropout and learning rate with the TFX Tuner first")
    tuner_trials: int = setting(8, minimum=1, help="trials of the --tune search")

    def __post_init__(self) -> None:
        settings.check_fields(self)
        if not self.lstm_units:
            raise settings.fail(ModelConfig, "lstm_units", "needs at least one layer")

    @property
    def takes_series_id(self) -> bool:
        """Whether the served model takes each window's series id (per-series scaling or the embedding)."""
        return self.scaling == "per_series" or self.series_embedding_dim > 0


def model_config_from_dict(values: Optional[dict[str, Any]]) -> ModelConfig:
    """A :class:`ModelConfig` from :func:`dataclasses.asdict` output that went through JSON."""
    return settings.from_dict(ModelConfig, values or {})
