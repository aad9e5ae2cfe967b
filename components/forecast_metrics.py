"""Forecast accuracy: MAE, RMSE, MAPE and sMAPE of the model and of two naive forecasts, for TFMA.

The Evaluator computes every metric here from one pass over the eval windows. For each window it
takes the target ``[H]`` (the label), the model's forecast ``[H]`` (the prediction) and the
history ``[L]`` (a feature), from which it builds the naive forecasts itself, so the model and
the baselines are scored on the very same windows:

* persistence: the last history value, repeated over the horizon;
* seasonal naive: the value one season earlier (season length ``m <= L``).

Metrics are named ``mae``, ``rmse``, ``mape`` and ``smape`` for the model, with the forecaster
in front for the baselines (``persistence_mae``, ``seasonal_naive_smape``), and ``/step_h`` after
for horizon step ``h`` (1-based). ``skill`` is the model's MAE over the best naive MAE: below 1
means the model beats both naive forecasts. MAPE leaves out targets equal to zero and sMAPE
points where target and forecast are both zero, so neither divides by zero; both are percentages.

The arithmetic is in pure numpy functions (:class:`ErrorSums`), which the run's report and the
tests use too; the TFMA classes only feed them.
"""

import dataclasses
from typing import Any, Iterable, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from components import features

MODEL = "model"
PERSISTENCE = "persistence"
SEASONAL_NAIVE = "seasonal_naive"
FORECASTERS = (MODEL, PERSISTENCE, SEASONAL_NAIVE)
NAIVE_FORECASTERS = (PERSISTENCE, SEASONAL_NAIVE)
ERRORS = ("mae", "rmse", "mape", "smape")
SKILL = "skill"


def metric_name(error: str, forecaster: str = MODEL, step: Optional[int] = None) -> str:
    """The name TFMA reports a metric under: ``mae``, ``persistence_mae``, ``mae/step_2``."""
    name = error if forecaster == MODEL else f"{forecaster}_{error}"
    return name if step is None else f"{name}/step_{step}"


def persistence_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last history value repeated: ``[..., L] -> [..., H]``."""
    history = np.asarray(history, dtype=np.float64)
    return np.repeat(history[..., -1:], horizon, axis=-1)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    """The value one season before each target: ``[..., L] -> [..., H]``.

    Step ``h`` (1-based) takes ``history[L - m + (h - 1) % m]``: the last full season, repeated
    as often as the horizon needs. For example, with ``L = 6``, ``m = 4`` and ``H = 5``, the
    history ``[a, b, c, d, e, f]`` gives ``[c, d, e, f, c]``.

    Raises:
      ValueError: ``season_length`` not in ``1..L``.
    """
    history = np.asarray(history, dtype=np.float64)
    length = history.shape[-1]
    if not 1 <= season_length <= length:
        raise ValueError(f"season length must be in 1..{length} (the history length), got {season_length}")
    steps = np.arange(horizon)
    return history[..., length - season_length + steps % season_length]


def naive_forecasts(history: np.ndarray, horizon: int, season_length: int) -> dict[str, np.ndarray]:
    """Both naive forecasts of ``history``, by forecaster name."""
    return {PERSISTENCE: persistence_forecast(history, horizon),
            SEASONAL_NAIVE: seasonal_naive_forecast(history, horizon, season_length)}


@dataclasses.dataclass
class ErrorSums:
    """Sums of errors per horizon step, which merge by addition and give every metric at the end.

    Attributes:
      count: Points per step.
      absolute: Sum of ``|y - f|``.
      squared: Sum of ``(y - f)^2``.
      percentage: Sum of ``100 |y - f| / |y|`` over targets ``y != 0``.
      percentage_count: Points with ``y != 0``.
      symmetric: Sum of ``200 |y - f| / (|y| + |f|)`` over points where ``|y| + |f| > 0``.
      symmetric_count: Points with ``|y| + |f| > 0``.
    """

    count: np.ndarray
    absolute: np.ndarray
    squared: np.ndarray
    percentage: np.ndarray
    percentage_count: np.ndarray
    symmetric: np.ndarray
    symmetric_count: np.ndarray

    @classmethod
    def zeros(cls, horizon: int) -> "ErrorSums":
        return cls(*(np.zeros(horizon) for _ in dataclasses.fields(cls)))

    @classmethod
    def of(cls, actual: np.ndarray, forecast: np.ndarray) -> "ErrorSums":
        """The sums over windows ``[N, H]`` (or one window ``[H]``)."""
        actual = np.atleast_2d(np.asarray(actual, dtype=np.float64))
        forecast = np.atleast_2d(np.asarray(forecast, dtype=np.float64))
        if actual.shape != forecast.shape:
            raise ValueError(f"targets {actual.shape} and forecasts {forecast.shape} differ in shape")
        error = np.abs(actual - forecast)
        nonzero = actual != 0
        denominator = np.abs(actual) + np.abs(forecast)
        symmetric = denominator > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            percentage = np.where(nonzero, 100 * error / np.abs(actual), 0.0)
            sym = np.where(symmetric, 200 * error / denominator, 0.0)
        return cls(count=np.full(actual.shape[1], float(actual.shape[0])), absolute=error.sum(0),
                   squared=(error ** 2).sum(0), percentage=percentage.sum(0),
                   percentage_count=nonzero.sum(0).astype(np.float64), symmetric=sym.sum(0),
                   symmetric_count=symmetric.sum(0).astype(np.float64))

    def __add__(self, other: "ErrorSums") -> "ErrorSums":
        return ErrorSums(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    def metrics(self) -> dict[str, float]:
        """MAE, RMSE, MAPE and sMAPE over all steps (NaN where nothing was counted)."""
        return _metrics(*(getattr(self, f.name).sum() for f in dataclasses.fields(self)))

    def metrics_per_step(self) -> list[dict[str, float]]:
        """The same metrics for each horizon step, step 1 first."""
        return [_metrics(*(getattr(self, f.name)[step] for f in dataclasses.fields(self)))
                for step in range(len(self.count))]


def _ratio(total: float, count: float) -> float:
    return float(total / count) if count else float("nan")


def _metrics(count: float, absolute: float, squared: float, percentage: float, percentage_count: float,
             symmetric: float, symmetric_count: float) -> dict[str, float]:
    return {"mae": _ratio(absolute, count), "rmse": float(np.sqrt(_ratio(squared, count))),
            "mape": _ratio(percentage, percentage_count), "smape": _ratio(symmetric, symmetric_count)}


def skill(model_mae: float, naive_maes: Iterable[float]) -> float:
    """The model's MAE over the best naive MAE: below 1 beats naive; NaN when a naive MAE is 0."""
    best = min(naive_maes)
    return float(model_mae / best) if best > 0 else float("nan")


@dataclasses.dataclass
class ForecastErrorSums:
    """The error sums of the model and of each naive forecaster on the same windows."""

    sums: dict[str, ErrorSums]

    @classmethod
    def of(cls, history: np.ndarray, actual: np.ndarray, forecast: np.ndarray,
           season_length: int) -> "ForecastErrorSums":
        """From histories ``[N, L]``, targets ``[N, H]`` and the model's forecasts ``[N, H]``."""
        actual = np.atleast_2d(np.asarray(actual, dtype=np.float64))
        naive = naive_forecasts(np.atleast_2d(history), actual.shape[-1], season_length)
        return cls({MODEL: ErrorSums.of(actual, forecast),
                    **{name: ErrorSums.of(actual, values) for name, values in naive.items()}})

    def __add__(self, other: "ForecastErrorSums") -> "ForecastErrorSums":
        return ForecastErrorSums({name: self.sums[name] + other.sums[name] for name in self.sums})

    def report(self) -> dict[str, Any]:
        """Every metric by forecaster (overall and ``per_step``), and the skill: JSON-safe."""
        result: dict[str, Any] = {}
        for name in FORECASTERS:
            result[name] = {**self.sums[name].metrics(), "per_step": self.sums[name].metrics_per_step()}
        result[SKILL] = skill(result[MODEL]["mae"], (result[name]["mae"] for name in NAIVE_FORECASTERS))
        return result

    def named_metrics(self) -> dict[str, float]:
        """Every metric under its TFMA name (see :func:`metric_name`)."""
        report = self.report()
        named = {SKILL: report[SKILL]}
        for forecaster in FORECASTERS:
            for error in ERRORS:
                named[metric_name(error, forecaster)] = report[forecaster][error]
                for step, values in enumerate(report[forecaster]["per_step"], start=1):
                    named[metric_name(error, forecaster, step)] = values[error]
        return named


# --- TFMA ----------------------------------------------------------------------------------------
# One combiner accumulates ForecastErrorSums per model and slice; each metric class below is a
# derived computation reading it, and TFMA runs the shared combiner once (it de-duplicates
# computations by combiner name and keys).

_SUMS_NAME = "_forecast_error_sums"


class _ForecastErrorSumsCombiner(beam.CombineFn):
    """Sums the errors of the model and the naive forecasts over a slice's windows."""

    def __init__(self, key: metric_types.MetricKey, eval_config: Optional[config_pb2.EvalConfig],
                 season_length: int):
        self._key = key
        self._eval_config = eval_config
        self._season_length = season_length

    def create_accumulator(self) -> Optional[ForecastErrorSums]:
        return None

    def add_input(self, accumulator: Optional[ForecastErrorSums],
                  element: metric_types.StandardMetricInputs) -> ForecastErrorSums:
        history = np.asarray(element.features[features.HISTORY], dtype=np.float64).reshape(-1)
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._key.example_weighted,
                flatten=False, squeeze=False):
            sums = ForecastErrorSums.of(history, np.reshape(label, (1, -1)),
                                        np.reshape(prediction, (1, -1)), self._season_length)
            accumulator = sums if accumulator is None else accumulator + sums
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Optional[ForecastErrorSums]]) -> Optional[ForecastErrorSums]:
        merged = None
        for accumulator in accumulators:
            if accumulator is not None:
                merged = accumulator if merged is None else merged + accumulator
        return merged

    def extract_output(self, accumulator: Optional[ForecastErrorSums]) -> dict:
        return {self._key: accumulator}


def _sums_key(model_name: str, output_name: str, example_weighted: bool,
              season_length: int) -> metric_types.MetricKey:
    return metric_types.MetricKey(name=f"{_SUMS_NAME}_m{season_length}", model_name=model_name,
                                  output_name=output_name, example_weighted=example_weighted)


def _sums_computation(key: metric_types.MetricKey, eval_config: Optional[config_pb2.EvalConfig],
                      season_length: int) -> metric_types.MetricComputation:
    return metric_types.MetricComputation(
        keys=[key],
        preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[features.HISTORY])],
        combiner=_ForecastErrorSumsCombiner(key, eval_config, season_length))


def _derived(names: list[str], eval_config: Optional[config_pb2.EvalConfig], model_name: str,
             output_name: str, example_weighted: bool, season_length: int) -> metric_types.MetricComputations:
    """The computations giving ``names`` (as in :meth:`ForecastErrorSums.named_metrics`)."""
    sums_key = _sums_key(model_name, output_name, example_weighted, season_length)
    keys = {name: metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted) for name in names}

    def result(metrics: dict) -> dict:
        sums = metrics.get(sums_key)
        values = sums.named_metrics() if sums is not None else {}
        return {key: values.get(name, float("nan")) for name, key in keys.items()}

    return [_sums_computation(sums_key, eval_config, season_length),
            metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result)]


class ForecastError(metric_types.Metric):
    """One error of one forecaster, over all horizon steps and per step (``mae``, ``mae/step_1``..).

    Args:
      error: ``mae``, ``rmse``, ``mape`` or ``smape``.
      forecaster: ``model``, ``persistence`` or ``seasonal_naive``.
      horizon: H, for the per-step names.
      season_length: m of the seasonal naive forecast (``1 <= m <= L``).
    """

    def __init__(self, error: str = "mae", forecaster: str = MODEL, horizon: int = 1,
                 season_length: int = 1, name: Optional[str] = None):
        if error not in ERRORS or forecaster not in FORECASTERS:
            raise ValueError(f"unknown forecast error {error!r} of {forecaster!r}")
        super().__init__(metric_util.merge_per_key_computations(self._computations),
                         name=name or metric_name(error, forecaster), error=error,
                         forecaster=forecaster, horizon=horizon, season_length=season_length)

    @staticmethod
    def _computations(name: str, error: str, forecaster: str, horizon: int, season_length: int,
                      eval_config: Optional[config_pb2.EvalConfig] = None, model_name: str = "",
                      output_name: str = "", example_weighted: bool = False) -> metric_types.MetricComputations:
        names = [name] + [metric_name(error, forecaster, step) for step in range(1, horizon + 1)]
        return _derived(names, eval_config, model_name, output_name, example_weighted, season_length)


class ForecastSkill(metric_types.Metric):
    """The model's MAE over the best naive forecast's MAE, on the same windows (below 1 beats naive).

    Args:
      season_length: m of the seasonal naive forecast (``1 <= m <= L``).
    """

    def __init__(self, season_length: int = 1, name: str = SKILL):
        super().__init__(metric_util.merge_per_key_computations(self._computations), name=name,
                         season_length=season_length)

    @staticmethod
    def _computations(name: str, season_length: int, eval_config: Optional[config_pb2.EvalConfig] = None,
                      model_name: str = "", output_name: str = "",
                      example_weighted: bool = False) -> metric_types.MetricComputations:
        return _derived([name], eval_config, model_name, output_name, example_weighted, season_length)


metric_types.register_metric(ForecastError)
metric_types.register_metric(ForecastSkill)
