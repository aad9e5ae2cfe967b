"""Forecast accuracy: MAE, RMSE, MAPE, sMAPE and MASE of the model and of the naive forecasts, for TFMA.

The Evaluator computes every metric here from one pass over the eval windows. For each window it
takes the target ``[H]`` (the label), the model's forecast ``[H]`` (the prediction), the history
``[C]`` and the series' MASE scale (features), and builds the naive forecasts itself, so the model
and the baselines are scored on the very same windows:

* persistence: the last history value, repeated over the horizon;
* seasonal naive of period m, for every seasonal period: the value one season before each target
  step (:func:`components.windowing.seasonal_lag_offsets`); the history holds C >= m points, so
  each reads as far back as its period needs;
* ``seasonal_naive``: whichever seasonal naive forecast has the lowest MAE on the slice.

Metrics are named ``mae``, ``rmse``, ``mape``, ``smape`` and ``mase`` for the model, with the
forecaster in front for the baselines (``persistence_mae``, ``seasonal_naive_48_smape``), and
``/step_h`` after for horizon step ``h`` (1-based). ``skill`` is the model's MAE over the best naive
MAE: below 1 means the model beats persistence and every seasonal naive forecast. MAPE leaves out
targets equal to zero and sMAPE points where target and forecast are both zero, so neither divides
by zero; both are percentages. MASE is the mean of ``|error| / scale``, the scale being the series'
in-sample MAE of the seasonal naive forecast at the primary period on its training part (written by
the example generator); windows of a series without a scale are left out of it.

A quantile model (``ModelConfig.quantiles``) also returns its quantiles
(``contract.QUANTILES_OUTPUT_KEY``), which are scored as well (:class:`QuantileSums`):
``quantile_loss``, the pinball loss in original units averaged over levels, steps and windows (at
the median alone it would be half the MAE); ``scaled_quantile_loss``, that over the best naive MAE
of the same windows; and for each central interval (``80`` for the 10%-90% one) ``coverage_80``,
the fraction of targets inside it (bounds included), and ``width_80``, its mean width in original
units. A point model, or a baseline model without quantiles, has them as NaN.

The arithmetic is in pure numpy functions (:class:`ErrorSums`, :class:`QuantileSums`), which the
run's report and the tests use too; the TFMA classes only feed them.
"""

import dataclasses
import json
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from components import features, quantiles, windowing
from components.trainer_options import central_intervals, interval_name
from serving import contract

MODEL = "model"
PERSISTENCE = "persistence"
SEASONAL_NAIVE = "seasonal_naive"
ERRORS = ("mae", "rmse", "mape", "smape", "mase")
SKILL = "skill"
QUANTILE_LOSS = "quantile_loss"
SCALED_QUANTILE_LOSS = "scaled_quantile_loss"


def coverage_name(coverage: float) -> str:
    """The metric name of an interval's coverage: ``coverage_80`` for the 80% interval."""
    return f"coverage_{interval_name(coverage)}"


def width_name(coverage: float) -> str:
    """The metric name of an interval's mean width: ``width_80``."""
    return f"width_{interval_name(coverage)}"


def quantile_metric_names(levels: Sequence[float]) -> tuple[str, ...]:
    """The quantile metrics of a model with quantile ``levels`` (none for a point model)."""
    if not levels:
        return ()
    intervals = central_intervals(tuple(levels))
    return (QUANTILE_LOSS, SCALED_QUANTILE_LOSS, *(coverage_name(c) for c in intervals),
            *(width_name(c) for c in intervals))


def seasonal_naive(period: int) -> str:
    """The forecaster name of the seasonal naive forecast of ``period``: ``seasonal_naive_48``."""
    return f"{SEASONAL_NAIVE}_{period}"


def naive_forecasters(periods: Sequence[int]) -> tuple[str, ...]:
    """The naive forecasters scored for ``periods``: persistence, each seasonal naive, and the best of those."""
    return (PERSISTENCE, *(seasonal_naive(m) for m in periods), *((SEASONAL_NAIVE,) if periods else ()))


def forecasters(periods: Sequence[int]) -> tuple[str, ...]:
    """Every forecaster scored for ``periods``, the model first."""
    return (MODEL, *naive_forecasters(periods))


def metric_name(error: str, forecaster: str = MODEL, step: Optional[int] = None) -> str:
    """The name TFMA reports a metric under: ``mae``, ``persistence_mae``, ``mae/step_2``."""
    name = error if forecaster == MODEL else f"{forecaster}_{error}"
    return name if step is None else f"{name}/step_{step}"


def persistence_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last history value repeated: ``[..., C] -> [..., H]``."""
    history = np.asarray(history, dtype=np.float64)
    return np.repeat(history[..., -1:], horizon, axis=-1)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    """The value one season before each target: ``[..., C] -> [..., H]``.

    Step ``h`` (1-based) takes ``history[C - 1 + h - m * ceil(h / m)]``: the last full season,
    repeated as often as the horizon needs. For example, with ``C = 6``, ``m = 4`` and ``H = 5``,
    the history ``[a, b, c, d, e, f]`` gives ``[c, d, e, f, c]``.

    Raises:
      ValueError: ``season_length`` not in ``1..C``.
    """
    history = np.asarray(history, dtype=np.float64)
    length = history.shape[-1]
    if not 1 <= season_length <= length:
        raise ValueError(f"season length must be in 1..{length} (the history length), got {season_length}")
    return history[..., length - 1 + windowing.seasonal_lag_offsets(horizon, season_length)]


def naive_forecasts(history: np.ndarray, horizon: int, periods: Sequence[int]) -> dict[str, np.ndarray]:
    """Persistence and the seasonal naive forecast of each period, by forecaster name."""
    return {PERSISTENCE: persistence_forecast(history, horizon),
            **{seasonal_naive(m): seasonal_naive_forecast(history, horizon, m) for m in periods}}


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
      scaled: Sum of ``|y - f| / scale`` over windows with a finite, positive MASE scale.
      scaled_count: Points of those windows.
    """

    count: np.ndarray
    absolute: np.ndarray
    squared: np.ndarray
    percentage: np.ndarray
    percentage_count: np.ndarray
    symmetric: np.ndarray
    symmetric_count: np.ndarray
    scaled: np.ndarray
    scaled_count: np.ndarray

    @classmethod
    def zeros(cls, horizon: int) -> "ErrorSums":
        return cls(*(np.zeros(horizon) for _ in dataclasses.fields(cls)))

    @classmethod
    def of(cls, actual: np.ndarray, forecast: np.ndarray, scale: Any = np.nan) -> "ErrorSums":
        """The sums over windows ``[N, H]`` (or one window ``[H]``), with each window's MASE scale ``[N]``."""
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
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1, 1), actual.shape)
        scaled = np.isfinite(scale) & (scale > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled_error = np.where(scaled, error / scale, 0.0)
        return cls(count=np.full(actual.shape[1], float(actual.shape[0])), absolute=error.sum(0),
                   squared=(error ** 2).sum(0), percentage=percentage.sum(0),
                   percentage_count=nonzero.sum(0).astype(np.float64), symmetric=sym.sum(0),
                   symmetric_count=symmetric.sum(0).astype(np.float64), scaled=scaled_error.sum(0),
                   scaled_count=scaled.sum(0).astype(np.float64))

    def __add__(self, other: "ErrorSums") -> "ErrorSums":
        return ErrorSums(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    def metrics(self) -> dict[str, float]:
        """MAE, RMSE, MAPE, sMAPE and MASE over all steps (NaN where nothing was counted)."""
        return _metrics(*(getattr(self, f.name).sum() for f in dataclasses.fields(self)))

    def metrics_per_step(self) -> list[dict[str, float]]:
        """The same metrics for each horizon step, step 1 first."""
        return [_metrics(*(getattr(self, f.name)[step] for f in dataclasses.fields(self)))
                for step in range(len(self.count))]


def _ratio(total: float, count: float) -> float:
    return float(total / count) if count else float("nan")


def _metrics(count: float, absolute: float, squared: float, percentage: float, percentage_count: float,
             symmetric: float, symmetric_count: float, scaled: float, scaled_count: float) -> dict[str, float]:
    return {"mae": _ratio(absolute, count), "rmse": float(np.sqrt(_ratio(squared, count))),
            "mape": _ratio(percentage, percentage_count), "smape": _ratio(symmetric, symmetric_count),
            "mase": _ratio(scaled, scaled_count)}


def skill(model_mae: float, naive_maes: Iterable[float]) -> float:
    """The model's MAE over the best naive MAE: below 1 beats naive; NaN when a naive MAE is 0 or NaN."""
    best = min(naive_maes)
    return float(model_mae / best) if best > 0 else float("nan")


@dataclasses.dataclass
class QuantileSums:
    """Sums over the windows of a quantile forecast, per horizon step; they merge by addition.

    Attributes:
      levels: The quantile levels ``[Q]``, increasing.
      count: Points per step ``[H]``.
      pinball: Sum of the pinball loss per step and level ``[H, Q]``.
      covered: Targets inside each central interval, per step ``[H, intervals]`` (narrowest first).
      width: Sum of each interval's width, per step ``[H, intervals]``.
    """

    levels: tuple[float, ...]
    count: np.ndarray
    pinball: np.ndarray
    covered: np.ndarray
    width: np.ndarray

    @classmethod
    def of(cls, actual: np.ndarray, forecast_quantiles: np.ndarray, levels: Sequence[float]) -> "QuantileSums":
        """The sums over targets ``[N, H]`` and quantiles ``[N, H, Q]`` (or one window, ``[H]`` and ``[H, Q]``)."""
        actual = np.atleast_2d(np.asarray(actual, dtype=np.float64))
        forecast_quantiles = np.asarray(forecast_quantiles, dtype=np.float64).reshape(*actual.shape, len(levels))
        return cls(levels=tuple(float(p) for p in levels), count=np.full(actual.shape[1], float(actual.shape[0])),
                   pinball=quantiles.pinball(actual, forecast_quantiles, levels).sum(0),
                   covered=quantiles.covered(actual, forecast_quantiles, levels).sum(0).astype(np.float64),
                   width=quantiles.widths(forecast_quantiles, levels).sum(0))

    def __add__(self, other: "QuantileSums") -> "QuantileSums":
        return QuantileSums(self.levels, self.count + other.count, self.pinball + other.pinball,
                            self.covered + other.covered, self.width + other.width)

    def metrics(self, naive_mae: float = float("nan")) -> dict[str, float]:
        """Quantile loss (and over ``naive_mae``), coverage and mean width of each interval, over all steps."""
        return _quantile_metrics(self.levels, self.count.sum(), self.pinball.sum(0), self.covered.sum(0),
                                 self.width.sum(0), naive_mae)

    def metrics_per_step(self, naive_mae: Sequence[float]) -> list[dict[str, float]]:
        """The same metrics for each horizon step, with each step's best naive MAE."""
        return [_quantile_metrics(self.levels, self.count[h], self.pinball[h], self.covered[h], self.width[h],
                                  naive_mae[h]) for h in range(len(self.count))]


def _quantile_metrics(levels: tuple[float, ...], count: float, pinball: np.ndarray, covered: np.ndarray,
                      width: np.ndarray, naive_mae: float) -> dict[str, float]:
    loss = _ratio(pinball.sum(), count * len(levels))
    result = {QUANTILE_LOSS: loss, SCALED_QUANTILE_LOSS: float(loss / naive_mae) if naive_mae > 0 else float("nan")}
    for i, coverage in enumerate(central_intervals(levels)):
        result[coverage_name(coverage)] = _ratio(covered[i], count)
        result[width_name(coverage)] = _ratio(width[i], count)
    return result


@dataclasses.dataclass
class ForecastErrorSums:
    """The error sums of the model and of each naive forecaster on the same windows, and the model's quantile sums."""

    sums: dict[str, ErrorSums]
    quantile_sums: Optional[QuantileSums] = None

    @classmethod
    def of(cls, history: np.ndarray, actual: np.ndarray, forecast: np.ndarray, periods: Sequence[int],
           scale: Any = np.nan, forecast_quantiles: Optional[np.ndarray] = None,
           levels: Sequence[float] = ()) -> "ForecastErrorSums":
        """From histories ``[N, C]``, targets ``[N, H]``, the model's forecasts ``[N, H]`` and MASE scales ``[N]``.

        With ``forecast_quantiles`` ``[N, H, Q]`` at ``levels``, the quantile sums too.
        """
        actual = np.atleast_2d(np.asarray(actual, dtype=np.float64))
        naive = naive_forecasts(np.atleast_2d(history), actual.shape[-1], periods)
        quantile_sums = None if forecast_quantiles is None else QuantileSums.of(actual, forecast_quantiles, levels)
        return cls({MODEL: ErrorSums.of(actual, forecast, scale),
                    **{name: ErrorSums.of(actual, values, scale) for name, values in naive.items()}}, quantile_sums)

    def __add__(self, other: "ForecastErrorSums") -> "ForecastErrorSums":
        # A window without quantiles (a point model) leaves none for the whole.
        quantile_sums = self.quantile_sums + other.quantile_sums \
            if self.quantile_sums is not None and other.quantile_sums is not None else None
        return ForecastErrorSums({name: self.sums[name] + other.sums[name] for name in self.sums}, quantile_sums)

    @property
    def periods(self) -> list[int]:
        prefix = SEASONAL_NAIVE + "_"
        return sorted(int(name[len(prefix):]) for name in self.sums if name.startswith(prefix))

    def report(self) -> dict[str, Any]:
        """Every metric by forecaster (overall and ``per_step``), the best seasonal naive, and the skill."""
        result: dict[str, Any] = {}
        for name, sums in self.sums.items():
            result[name] = {**sums.metrics(), "per_step": sums.metrics_per_step()}
        seasonal = [seasonal_naive(m) for m in self.periods]
        if seasonal:
            # NaN MAEs (nothing counted) sort last.
            best = min(seasonal, key=lambda n: (np.isnan(result[n]["mae"]), result[n]["mae"]))
            result[SEASONAL_NAIVE] = {**result[best], "period": int(best[len(SEASONAL_NAIVE) + 1:])}
        naive = [name for name in self.sums if name != MODEL]
        result[SKILL] = skill(result[MODEL]["mae"], (result[name]["mae"] for name in naive))
        if self.quantile_sums is not None:
            best = min(result[name]["mae"] for name in naive) if naive else float("nan")
            best_per_step = [min(result[name]["per_step"][h]["mae"] for name in naive) if naive else float("nan")
                             for h in range(len(self.quantile_sums.count))]
            result[MODEL].update(self.quantile_sums.metrics(best))
            for values, extra in zip(result[MODEL]["per_step"], self.quantile_sums.metrics_per_step(best_per_step)):
                values.update(extra)
        return result

    def named_metrics(self, levels: Sequence[float] = ()) -> dict[str, float]:
        """Every metric under its TFMA name (see :func:`metric_name`), the quantile metrics of ``levels`` too."""
        report = self.report()
        named = {SKILL: report[SKILL]}
        for forecaster in forecasters(self.periods):
            for error in ERRORS:
                named[metric_name(error, forecaster)] = report[forecaster][error]
                for step, values in enumerate(report[forecaster]["per_step"], start=1):
                    named[metric_name(error, forecaster, step)] = values[error]
        for name in quantile_metric_names(levels):
            named[name] = report[MODEL].get(name, float("nan"))
            for step, values in enumerate(report[MODEL]["per_step"], start=1):
                named[metric_name(name, MODEL, step)] = values.get(name, float("nan"))
        return named


# --- TFMA ----------------------------------------------------------------------------------------
# One combiner accumulates ForecastErrorSums per model and slice; each metric class below is a
# derived computation reading it, and TFMA runs the shared combiner once (it de-duplicates
# computations by combiner name and keys).

_SUMS_NAME = "_forecast_error_sums"


class _ForecastErrorSumsCombiner(beam.CombineFn):
    """Sums the errors of the model and the naive forecasts over a slice's windows."""

    def __init__(self, key: metric_types.MetricKey, eval_config: Optional[config_pb2.EvalConfig],
                 periods: Sequence[int], levels: Sequence[float] = ()):
        self._key = key
        self._eval_config = eval_config
        self._periods = tuple(periods)
        self._levels = tuple(levels)

    def _quantiles(self, element: metric_types.StandardMetricInputs) -> Optional[np.ndarray]:
        """The model's quantiles ``[H, Q]`` of the window, or None (no quantile levels asked, or none served)."""
        predictions = element.predictions
        if not self._levels or not isinstance(predictions, dict):
            return None
        # Several models: predictions by model name, then by output name.
        if self._key.model_name in predictions:
            predictions = predictions[self._key.model_name]
        if not isinstance(predictions, dict) or contract.QUANTILES_OUTPUT_KEY not in predictions:
            return None
        values = np.asarray(predictions[contract.QUANTILES_OUTPUT_KEY], dtype=np.float64)
        return values.reshape(-1, len(self._levels)) if values.size % len(self._levels) == 0 else None

    def create_accumulator(self) -> Optional[ForecastErrorSums]:
        return None

    def add_input(self, accumulator: Optional[ForecastErrorSums],
                  element: metric_types.StandardMetricInputs) -> ForecastErrorSums:
        history = np.asarray(element.features[features.HISTORY], dtype=np.float64).reshape(-1)
        scale = np.asarray(element.features.get(features.MASE_SCALE, np.nan), dtype=np.float64).reshape(-1)[:1]
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._key.example_weighted,
                flatten=False, squeeze=False):
            window_quantiles = self._quantiles(element)
            sums = ForecastErrorSums.of(history, np.reshape(label, (1, -1)),
                                        np.reshape(prediction, (1, -1)), self._periods, scale,
                                        None if window_quantiles is None else window_quantiles[None],
                                        self._levels)
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


def _sums_key(model_name: str, output_name: str, example_weighted: bool, periods: Sequence[int],
              levels: Sequence[float] = ()) -> metric_types.MetricKey:
    name = f"{_SUMS_NAME}_m{'_'.join(map(str, periods))}" + (f"_q{'_'.join(map(str, levels))}" if levels else "")
    return metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                  example_weighted=example_weighted)


def _sums_computation(key: metric_types.MetricKey, eval_config: Optional[config_pb2.EvalConfig],
                      periods: Sequence[int], levels: Sequence[float] = ()) -> metric_types.MetricComputation:
    return metric_types.MetricComputation(
        keys=[key],
        preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[features.HISTORY, features.MASE_SCALE])],
        combiner=_ForecastErrorSumsCombiner(key, eval_config, periods, levels))


def _derived(names: list[str], eval_config: Optional[config_pb2.EvalConfig], model_name: str,
             output_name: str, example_weighted: bool, periods: Sequence[int],
             levels: Sequence[float] = ()) -> metric_types.MetricComputations:
    """The computations giving ``names`` (as in :meth:`ForecastErrorSums.named_metrics`).

    Every metric of one model with the same ``periods`` and ``levels`` shares one combiner.
    """
    sums_key = _sums_key(model_name, output_name, example_weighted, periods, levels)
    keys = {name: metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted) for name in names}

    def result(metrics: dict) -> dict:
        sums = metrics.get(sums_key)
        values = sums.named_metrics(levels) if sums is not None else {}
        return {key: values.get(name, float("nan")) for name, key in keys.items()}

    return [_sums_computation(sums_key, eval_config, periods, levels),
            metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result)]


class ForecastError(metric_types.Metric):
    """One error of one forecaster, over all horizon steps and per step (``mae``, ``mae/step_1``..).

    Args:
      error: One of :data:`ERRORS`, or for the model one of :func:`quantile_metric_names` of ``levels``.
      forecaster: One of :func:`forecasters` of ``periods``.
      horizon: H, for the per-step names.
      periods: The seasonal periods (each at most the history length C).
      levels: The model's quantile levels (empty for a point model).
    """

    def __init__(self, error: str = "mae", forecaster: str = MODEL, horizon: int = 1,
                 periods: Sequence[int] = (), levels: Sequence[float] = (), name: Optional[str] = None):
        periods = tuple(int(m) for m in periods)
        levels = tuple(float(p) for p in levels)
        known = ERRORS + (quantile_metric_names(levels) if forecaster == MODEL else ())
        if error not in known or forecaster not in forecasters(periods):
            raise ValueError(f"unknown forecast error {error!r} of {forecaster!r}")
        super().__init__(metric_util.merge_per_key_computations(self._computations),
                         name=name or metric_name(error, forecaster), error=error,
                         forecaster=forecaster, horizon=horizon, periods=periods, levels=levels)

    @staticmethod
    def _computations(name: str, error: str, forecaster: str, horizon: int, periods: Sequence[int],
                      levels: Sequence[float] = (), eval_config: Optional[config_pb2.EvalConfig] = None,
                      model_name: str = "", output_name: str = "",
                      example_weighted: bool = False) -> metric_types.MetricComputations:
        names = [name] + [metric_name(error, forecaster, step) for step in range(1, horizon + 1)]
        return _derived(names, eval_config, model_name, output_name, example_weighted, periods, levels)


class ForecastSkill(metric_types.Metric):
    """The model's MAE over the best naive forecast's MAE, on the same windows (below 1 beats naive).

    Args:
      periods: The seasonal periods.
      levels: The model's quantile levels (empty for a point model): shares the combiner of the
        :class:`ForecastError` metrics of the same levels.
    """

    def __init__(self, periods: Sequence[int] = (), levels: Sequence[float] = (), name: str = SKILL):
        super().__init__(metric_util.merge_per_key_computations(self._computations), name=name,
                         periods=tuple(int(m) for m in periods), levels=tuple(float(p) for p in levels))

    @staticmethod
    def _computations(name: str, periods: Sequence[int], levels: Sequence[float] = (),
                      eval_config: Optional[config_pb2.EvalConfig] = None, model_name: str = "",
                      output_name: str = "", example_weighted: bool = False) -> metric_types.MetricComputations:
        return _derived([name], eval_config, model_name, output_name, example_weighted, periods, levels)


def metric_config_json(**values: Any) -> str:
    """The ``config`` JSON of a :class:`ForecastError` or :class:`ForecastSkill` metric config."""
    return json.dumps(values, sort_keys=True)


metric_types.register_metric(ForecastError)
metric_types.register_metric(ForecastSkill)
