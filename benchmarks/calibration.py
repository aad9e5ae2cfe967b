"""Interval calibration variants chosen honestly: a cross-fit on the eval windows, then test coverage.

The intervals are calibrated on the eval split, so eval coverage after calibration is nominal by
construction and cannot tell calibration variants apart. This script splits each kept run's eval
windows in two by time (origin), calibrates each variant on one half and measures its coverage on
the other (both ways): the cross-fit error, mean ``|coverage - nominal|`` over data sets, the 80%
and 95% intervals and both directions, is what a variant is chosen on. Only then, for information,
each variant is calibrated on every eval window of the first (train-only) model A and scored on
the test windows with the refit model B (the RefitTrainer's, which is pushed), as the pipeline does
with ``--calibration-folds 0`` (a kept run does not keep the folds' models, whose errors the
pipeline's default pools with eval's).
Runs of the point model's conformal intervals only (``--interval-method conformal``, the default).

The variants differ in the spread each window's scores are normalised by (what summary of which
seasonal differences of its context), in how the scores' quantile is taken (per horizon step, or
pooled over steps), and in how the calibration windows are weighed: all alike, by recency
(weights halving every ``h`` of the calibration windows' time span as they get further from the
windows scored, the weighted quantile of Barber et al. 2023 with the scored point's weight on
``+inf``), or only the nearest fraction of them. "Nearest" is measured from the side the scored
windows lie on: on the cross-fit's reverse direction (calibrated on the later half, scored on the
earlier) the earliest calibration windows weigh most, so both directions test the same idea; the
test figures weigh eval's latest windows most, as a deployed model would.

Pure numpy past the loading: a point model's intervals are its forecast plus and minus a
calibrated multiple of each window's spread, so the variants need only the windows' raw contexts,
targets, scales and the two models' forecasts (read once from the kept runs' SavedModels).

Usage:
  tools/in-env python -m benchmarks.calibration --runs DIR [--datasets hyndsight,usmelec] [--cache FILE]
"""

import contextlib
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Optional

import numpy as np

import benchmarks
from benchmarks.accuracy import print_table
from benchmarks.accuracy_metrics import SCORED_INTERVALS
from components import quantiles

# A spread function: (raw contexts [N, C], scales [N, 1], period m, horizon H) -> spreads [N, 1],
# original units.
Spread = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]
# An adjustment function: components.quantiles.conformal_adjustments' signature.
Adjust = Callable[..., np.ndarray]


def exported_spread(context: np.ndarray, scale: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """The trainer's spread (:func:`components.quantiles.interval_spread`, its default statistic) in original units."""
    return quantiles.interval_spread(context, scale, period) * np.asarray(scale, dtype=np.float64).reshape(-1, 1)


def _mean(differences: np.ndarray) -> np.ndarray:
    return differences.mean(axis=1, keepdims=True)


def _max(differences: np.ndarray) -> np.ndarray:
    return differences.max(axis=1, keepdims=True)


def _rms(differences: np.ndarray) -> np.ndarray:
    return np.sqrt((differences ** 2).mean(axis=1, keepdims=True))


def recent_spread(points: Optional[Callable[[int, int], int]],
                  summary: Callable[[np.ndarray], np.ndarray] = _mean) -> Spread:
    """A summary (default: the mean, the seasonal naive's in-window MAE) of the absolute seasonal differences
    over the context's last ``points(m, H)`` of them (None: all).

    Same floor (:data:`components.quantiles.SPREAD_FLOOR` of the whole context's mean magnitude)
    and fallback (the window scale, without a period or where the spread is 0) as the exported one.
    """

    def spread(context: np.ndarray, scale: np.ndarray, period: int, horizon: int) -> np.ndarray:
        scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
        if period == 0:
            return scale
        context = np.asarray(context, dtype=np.float64)
        differences = np.abs(context[:, period:] - context[:, :-period])
        if points is not None:
            differences = differences[:, -points(period, horizon):]
        spread = np.maximum(summary(differences), quantiles.SPREAD_FLOOR * np.abs(context).mean(axis=1, keepdims=True))
        return np.where(spread > 0, spread, scale)

    return spread


# The last season's seasonal differences: the last m of them.
LAST_SEASON = lambda m, h: m  # noqa: E731
# Before this script chose: every seasonal difference of the context.
whole_context_spread = recent_spread(None)
# Exported before the drift cross-fit: the last season's mean.
last_cycle_spread = recent_spread(LAST_SEASON)
# Exported since: the last season's largest.
last_cycle_max_spread = recent_spread(LAST_SEASON, _max)


def larger_spread(first: Spread, second: Spread) -> Spread:
    """The larger of two spreads."""
    return lambda context, scale, period, horizon: np.maximum(first(context, scale, period, horizon),
                                                              second(context, scale, period, horizon))


def blended_spread(first: Spread, second: Spread) -> Spread:
    """The geometric mean of two spreads."""
    return lambda context, scale, period, horizon: np.sqrt(first(context, scale, period, horizon)
                                                           * second(context, scale, period, horizon))


def weighted_adjustments(actual: np.ndarray, quantiles_: np.ndarray, levels, spread: Optional[np.ndarray],
                         weights: np.ndarray) -> np.ndarray:
    """Like :func:`components.quantiles.conformal_adjustments`, each window's scores weighted.

    The weighted split-conformal quantile of Barber et al. (2023), "Conformal prediction beyond
    exchangeability": with weights ``w_i`` of the ``n`` calibration windows and 1 for the point
    forecast (its score at ``+inf``), each step's adjustment is the smallest score ``s`` whose
    weights up to it, ``sum(w_i : s_i <= s) / (sum(w) + 1)``, reach the coverage (the largest
    score where none does, as the unweighted one). Equal weights 1 give the unweighted
    ``ceil((n + 1)(1 - a))``-th smallest.
    """
    n, horizon = np.shape(actual)
    adjustments = np.zeros((horizon, len(levels)))
    if n == 0:
        return adjustments
    weights = np.asarray(weights, dtype=np.float64).reshape(n)
    for lo, hi, coverage, scores in quantiles.conformal_scores(actual, quantiles_, levels, spread):
        order = np.argsort(scores, axis=0, kind="stable")
        reached = np.cumsum(weights[order], axis=0) / (weights.sum() + 1.0) >= coverage - 1e-9
        rank = np.where(reached.any(axis=0), reached.argmax(axis=0), n - 1)
        chosen = np.take_along_axis(scores, order, axis=0)[rank, np.arange(horizon)]
        adjustments[:, lo] = -chosen
        adjustments[:, hi] = chosen
    return adjustments


# A weighing of calibration windows: (ages [n], span) -> weights [n]; an age is a window's distance
# in time (origin units) from the side the scored windows lie on, the span that of the calibration
# windows' origins.
Weigh = Callable[[np.ndarray, float], np.ndarray]


def half_life(fraction: float) -> Weigh:
    """Weights halving every ``fraction`` of the span of age."""
    return lambda ages, span: 0.5 ** (np.asarray(ages, dtype=np.float64) / (fraction * span))


def nearest(fraction: float) -> Weigh:
    """Weight 1 for the ``fraction`` of windows nearest the scored ones (by age), 0 for the rest."""
    def weigh(ages: np.ndarray, span: float) -> np.ndarray:
        ages = np.asarray(ages, dtype=np.float64)
        return (ages <= np.quantile(ages, fraction)).astype(np.float64)

    return weigh


def ages(origins: np.ndarray, scored_later: bool) -> tuple[np.ndarray, float]:
    """Each calibration window's age from the scored side, and the origins' span (1 where they all coincide).

    Args:
      origins: The calibration windows' origins ``[n]``.
      scored_later: Whether the scored windows come after them (the age counts back from the
        latest origin) or before (from the earliest).
    """
    origins = np.asarray(origins).astype(np.int64).astype(np.float64)
    span = float(origins.max() - origins.min()) if len(origins) else 0.0
    return (origins.max() - origins if scored_later else origins - origins.min()), (span or 1.0)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to calibrate: the spread, the adjustments, and (None: all alike) the weighing of windows.

    With ``weigh`` the adjustments are :func:`weighted_adjustments` (per step), ``adjust`` unused.
    """
    spread: Spread
    adjust: Adjust = quantiles.conformal_adjustments
    weigh: Optional[Weigh] = None


# Name -> variant. BASELINE is what the trainer exported before the drift cross-fit and EXPORTED
# what it exports; the others are measured against the baseline.
BASELINE = "last season mean (before)"
EXPORTED = "pooled steps, last season max (exported)"
VARIANTS: dict[str, Variant] = {
    BASELINE: Variant(last_cycle_spread),
    EXPORTED: Variant(exported_spread, quantiles.pooled_conformal_adjustments),
    "last season max": Variant(exported_spread),
    "whole context mean": Variant(whole_context_spread),
    # Spreads that react to recent level and volatility.
    "last max(H, m/2) mean": Variant(recent_spread(lambda m, h: max(h, m // 2))),
    "last H mean": Variant(recent_spread(lambda m, h: h)),
    "max(last season, whole) mean": Variant(larger_spread(last_cycle_spread, whole_context_spread)),
    "blend whole/last season mean": Variant(blended_spread(whole_context_spread, last_cycle_spread)),
    "last season rms": Variant(recent_spread(LAST_SEASON, _rms)),
    "last half season max": Variant(recent_spread(lambda m, h: max(1, m // 2), _max)),
    "last two seasons max": Variant(recent_spread(lambda m, h: 2 * m, _max)),
    # Recency: weighted quantiles, or the nearest windows only.
    "half-life 1/4 span": Variant(last_cycle_spread, weigh=half_life(0.25)),
    "half-life 1/2 span": Variant(last_cycle_spread, weigh=half_life(0.5)),
    "half-life 1 span": Variant(last_cycle_spread, weigh=half_life(1.0)),
    "nearest 1/2": Variant(last_cycle_spread, weigh=nearest(0.5)),
    "nearest 3/4": Variant(last_cycle_spread, weigh=nearest(0.75)),
    "last season max, half-life 1/2": Variant(exported_spread, weigh=half_life(0.5)),
    # One quantile over every step's scores.
    "pooled steps, whole context": Variant(whole_context_spread, quantiles.pooled_conformal_adjustments),
    "pooled steps, last season mean": Variant(last_cycle_spread, quantiles.pooled_conformal_adjustments),
}


def time_halves(origins: np.ndarray, series_ids: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the earlier and the later half of windows by origin (ties by series), ``n // 2`` earlier."""
    origins = np.asarray(origins)
    keys = (origins,) if series_ids is None else (np.asarray(series_ids), origins)
    order = np.lexsort(keys)
    return np.sort(order[:len(order) // 2]), np.sort(order[len(order) // 2:])


def coverage(actual: np.ndarray, quantiles_: np.ndarray, levels) -> np.ndarray:
    """Observed coverage of each central interval (narrowest first) over every window and step."""
    hits = quantiles.covered(actual, quantiles_, levels)
    return hits.reshape(-1, hits.shape[-1]).mean(axis=0)


def calibrated_coverage(actual_cal: np.ndarray, forecast_cal: np.ndarray, spread_cal: np.ndarray,
                        actual: np.ndarray, forecast: np.ndarray, spread: np.ndarray, levels,
                        adjust: Adjust = quantiles.conformal_adjustments,
                        weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Coverage of point forecasts' intervals calibrated on one set of windows, measured on another.

    Args:
      actual_cal, forecast_cal, spread_cal: Targets ``[n, H]``, point forecasts ``[n, H]`` and
        spreads ``[n, 1]`` of the windows calibrated on.
      actual, forecast, spread: The same of the windows measured on.
      levels: The quantile levels.
      adjust: How the adjustments are computed (:func:`components.quantiles.conformal_adjustments`).
      weights: Weights ``[n]`` of the windows calibrated on (:func:`weighted_adjustments`, ``adjust``
        unused); None: ``adjust``.
    """
    repeat = lambda f: np.repeat(np.asarray(f, dtype=np.float64)[..., None], len(levels), -1)  # noqa: E731
    adjustments = adjust(actual_cal, repeat(forecast_cal), levels, spread_cal) if weights is None else \
        weighted_adjustments(actual_cal, repeat(forecast_cal), levels, spread_cal, weights)
    return coverage(actual, quantiles.calibrate(repeat(forecast), adjustments, spread), levels)


def cross_fit_coverage(actual: np.ndarray, forecast: np.ndarray, spread: np.ndarray, origins: np.ndarray, levels,
                       adjust: Adjust = quantiles.conformal_adjustments,
                       series_ids: Optional[np.ndarray] = None, weigh: Optional[Weigh] = None) -> np.ndarray:
    """Coverage ``[2, intervals]``: calibrated on the earlier half, measured on the later, and the reverse.

    With ``weigh``, the calibration windows are weighed by their :func:`ages` from the half scored.
    """
    first, second = time_halves(origins, series_ids)
    origins = np.asarray(origins)
    return np.stack([calibrated_coverage(actual[a], forecast[a], spread[a], actual[b], forecast[b], spread[b],
                                         levels, adjust,
                                         None if weigh is None else weigh(*ages(origins[a], scored_later)))
                     for a, b, scored_later in ((first, second, True), (second, first, False))])


def coverage_error(observed: np.ndarray, levels, intervals=SCORED_INTERVALS) -> float:
    """Mean ``|coverage - nominal|`` over ``intervals`` (and every leading axis of ``observed [..., intervals]``)."""
    nominal = [c for _, _, c in quantiles.interval_pairs(levels)]
    columns = [nominal.index(c) for c in intervals]
    return float(np.mean(np.abs(np.asarray(observed)[..., columns] - np.asarray(intervals))))


def load_run(run_dir: str) -> dict[str, Any]:
    """What the variants need of a kept run: eval windows with A's forecasts, test windows with B's."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from benchmarks import kept_run
    from benchmarks.accuracy import load_model_outputs, read_test_windows
    from benchmarks.refit import trainer_inputs
    from components import features, trainer_options
    from pipeline import local_runner
    custom_config, graph, _, raw = trainer_inputs(run_dir)
    model_config = trainer_options.model_config_from_dict(custom_config["model"])
    if not model_config.quantiles or model_config.quantile_head:
        raise ValueError(f"{run_dir}: not a run of conformal intervals around a point model")
    store, name = kept_run(run_dir)
    model = lambda node: os.path.join(  # noqa: E731
        local_runner.output_artifact(store, name, node, "model", 0).uri, "Format-Serving")
    tft_output = tft.TFTransformOutput(graph)
    raw_spec = tft_output.raw_feature_spec()
    context = int(raw_spec[features.HISTORY].shape[0])
    layer = tft_output.transform_features_layer()
    out: dict[str, Any] = {
        "period": quantiles.spread_period(context, custom_config["windows"].get("seasonal_periods", ())),
        "levels": list(model_config.quantiles)}
    for split, node in (("eval", "Trainer"), ("test", "RefitTrainer")):
        windows = read_test_windows(raw, split)
        predict = load_model_outputs(model(node))
        predict_a = load_model_outputs(model("Trainer")) if split == "test" else predict
        forecasts, forecasts_a, scales = [], [], []
        for start in range(0, len(windows.records), 512):
            records = windows.records[start:start + 512]
            forecasts.append(predict(records)[0])
            forecasts_a.append(predict_a(records)[0])
            parsed = tf.io.parse_example(tf.constant(records), raw_spec)
            scales.append(layer(parsed)[features.SCALE].numpy().astype(np.float64).reshape(-1, 1))
        out[split] = {"context": windows.histories.astype(np.float64), "actual": windows.targets.astype(np.float64),
                      "origins": windows.origins, "series_ids": windows.series_ids,
                      "forecast": np.concatenate(forecasts), "forecast_a": np.concatenate(forecasts_a),
                      "scale": np.concatenate(scales)}
    return out


def score_variants(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variant's cross-fit eval coverage and its test coverage (calibrated on all eval with A, B on test)."""
    levels = data["levels"]
    evaluation, test = data["eval"], data["test"]
    horizon = evaluation["actual"].shape[1]
    results = {}
    for name, variant in VARIANTS.items():
        spread = {s: variant.spread(d["context"], d["scale"], data["period"], horizon)
                  for s, d in (("eval", evaluation), ("test", test))}
        cross = cross_fit_coverage(evaluation["actual"], evaluation["forecast"], spread["eval"],
                                   evaluation["origins"], levels, variant.adjust, evaluation["series_ids"],
                                   variant.weigh)
        weights = None if variant.weigh is None else variant.weigh(*ages(evaluation["origins"], True))
        on_test = calibrated_coverage(evaluation["actual"], evaluation["forecast"], spread["eval"],
                                      test["actual"], test["forecast"], spread["test"], levels, variant.adjust,
                                      weights)
        results[name] = {"cross_fit": cross.tolist(), "cross_fit_error": coverage_error(cross, levels),
                         "test": on_test.tolist(), "test_error": coverage_error(on_test, levels)}
    return results


def _load_all(runs: str, names: list[str], cache: Optional[str]) -> dict[str, dict[str, Any]]:
    if cache and os.path.exists(cache):
        with np.load(cache, allow_pickle=True) as f:
            loaded = f["data"].item()
        if all(n in loaded for n in names):
            return {n: loaded[n] for n in names}
    with contextlib.redirect_stdout(sys.stderr):
        loaded = {n: load_run(os.path.join(runs, n, "run")) for n in names}
    if cache:
        np.savez(cache, data=np.array(loaded, dtype=object))
    return loaded


def main(argv: Optional[list[str]] = None) -> int:
    parser = benchmarks.kept_runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--cache", default="", help="an .npz to keep the loaded windows and forecasts in (reused)")
    args, names = benchmarks.parse_kept_runs(parser, argv)
    if names is None:
        return 2
    try:
        data = _load_all(args.runs, names, args.cache or None)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    results = {n: score_variants(d) for n, d in data.items()}
    nominal = [c for _, _, c in quantiles.interval_pairs(next(iter(data.values()))["levels"])]
    columns = [nominal.index(c) for c in SCORED_INTERVALS]
    fmt = lambda values: "/".join(f"{values[c]:.2f}" for c in columns)  # noqa: E731
    summary = {}
    for variant in VARIANTS:
        summary[variant] = {key: float(np.mean([results[n][variant][key] for n in names]))
                            for key in ("cross_fit_error", "test_error")}
    # Per set, whether the variant's cross-fit error is lower (higher) than the baseline's by 0.005.
    better = {v: sum(results[n][v]["cross_fit_error"] < results[n][BASELINE]["cross_fit_error"] - 0.005
                     for n in names) for v in VARIANTS}
    worse = {v: sum(results[n][v]["cross_fit_error"] > results[n][BASELINE]["cross_fit_error"] + 0.005
                    for n in names) for v in VARIANTS}
    header = ["variant", "cross-fit error", f"sets better/worse than {BASELINE}", "test error"] + names
    rows = [[v, f"{summary[v]['cross_fit_error']:.4f}", f"{better[v]}/{worse[v]}", f"{summary[v]['test_error']:.4f}"]
            + [f"{fmt(results[n][v]['cross_fit'][0])}; {fmt(results[n][v]['cross_fit'][1])}" for n in names]
            for v in VARIANTS]
    print_table("cross-fit eval coverage error (choose on this) and test error (A calibrated on eval, B on test)",
                header[:4], [r[:4] for r in rows])
    print_table("test coverage 80/95 (B on test, calibrated on all of A's eval windows)",
                ["variant"] + names, [[v] + [fmt(results[n][v]["test"]) for n in names] for v in VARIANTS])
    print_table("cross-fit eval coverage 80/95 per set (early->late; late->early)",
                ["variant"] + names, [[r[0]] + r[4:] for r in rows])
    windows = {n: {"eval": len(d["eval"]["actual"]), "test": len(d["test"]["actual"]), "period": d["period"]}
               for n, d in data.items()}
    print(json.dumps({"summary": summary, "per_set": results, "windows": windows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
