"""Quantile forecasts: the numpy arithmetic, the metrics the Evaluator computes, the settings, and the model head."""

import json
import math

import keras
import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_specs, metric_types
from tensorflow_model_analysis.proto import config_pb2

from components import features, quantiles
from components import forecast_metrics as fm
from components import trainer as trainer_lib
from components.settings import ConfigError
from pipeline import config as config_lib
from serving import contract

LEVELS = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)


def _sorted_quantiles(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.sort(rng.normal(size=(*shape, len(LEVELS))), axis=-1)


def test_pinball_loss_against_a_hand_computation():
    # Target 10; quantiles 8 (p 0.1), 10 (p 0.5), 13 (p 0.9): 0.1 * 2, 0, (1 - 0.9) * 3.
    got = quantiles.pinball(np.array([10.0]), np.array([[8.0, 10.0, 13.0]]), (0.1, 0.5, 0.9))
    np.testing.assert_allclose(got, [[0.2, 0.0, 0.3]])
    # At the median alone the loss is half the absolute error.
    assert quantiles.pinball(np.array([4.0]), np.array([[1.0]]), (0.5,))[0, 0] == 1.5


def test_the_interval_pairs_are_the_central_intervals_narrowest_first():
    assert quantiles.interval_pairs(LEVELS) == [(2, 4, 0.5), (1, 5, 0.8), (0, 6, 0.95)]
    assert config_lib.ModelConfig().intervals == (0.5, 0.8, 0.95)


def test_quantile_metrics_against_numpy():
    rng = np.random.default_rng(0)
    actual = rng.normal(size=(40, 3))
    q = _sorted_quantiles(rng, (40, 3))
    history = rng.normal(size=(40, 6))
    sums = fm.ForecastErrorSums.of(history, actual, q[..., 3], [2], forecast_quantiles=q, levels=LEVELS)
    named = sums.named_metrics(LEVELS)
    p = np.array(LEVELS)
    error = actual[..., None] - q
    loss = np.maximum(p * error, (p - 1) * error)
    assert named["quantile_loss"] == pytest.approx(loss.mean())
    np.testing.assert_allclose([named[f"quantile_loss/step_{h}"] for h in (1, 2, 3)], loss.mean(axis=(0, 2)))
    naive_mae = min(np.abs(actual - history[:, [5]]).mean(), np.abs(actual - history[:, [4, 5, 4]]).mean())
    assert named["scaled_quantile_loss"] == pytest.approx(loss.mean() / naive_mae)
    for lo, hi, name in ((2, 4, "50"), (1, 5, "80"), (0, 6, "95")):
        inside = (q[..., lo] <= actual) & (actual <= q[..., hi])
        assert named[f"coverage_{name}"] == pytest.approx(inside.mean())
        assert named[f"coverage_{name}/step_2"] == pytest.approx(inside[:, 1].mean())
        assert named[f"width_{name}"] == pytest.approx((q[..., hi] - q[..., lo]).mean())
    # Sums of parts are the sum of the whole.
    parts = fm.ForecastErrorSums.of(history[:25], actual[:25], q[:25, :, 3], [2], forecast_quantiles=q[:25],
                                    levels=LEVELS) + \
        fm.ForecastErrorSums.of(history[25:], actual[25:], q[25:, :, 3], [2], forecast_quantiles=q[25:], levels=LEVELS)
    for name, value in named.items():
        assert parts.named_metrics(LEVELS)[name] == pytest.approx(value, nan_ok=True), name


@pytest.mark.parametrize("levels, fewest", [
    ((0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975), 19), ((0.1, 0.5, 0.9), 4), ((0.05, 0.5, 0.95), 9), ((0.5,), 0)])
def test_the_fewest_conformal_windows_are_those_whose_rank_of_the_widest_interval_is_a_score(levels, fewest):
    assert quantiles.fewest_conformal_windows(levels) == fewest
    if fewest:
        widest = max(c for _, _, c in quantiles.interval_pairs(levels))
        # By the rank's definition, not its clipped value: ceil((n + 1) c) <= n holds from n = fewest on.
        assert math.ceil((fewest + 1) * widest - 1e-9) <= fewest
        assert math.ceil(fewest * widest - 1e-9) > fewest - 1


def test_conformal_adjustments_give_the_promised_coverage_on_the_calibration_windows():
    rng = np.random.default_rng(1)
    n = 199
    actual = rng.normal(size=(n, 2)) * np.array([1.0, 3.0])  # step 2 is three times as noisy
    raw = np.tile(np.array(LEVELS) - 0.5, (n, 2, 1))  # far too narrow: -0.475 .. 0.475
    adjustments = quantiles.conformal_adjustments(actual, raw, LEVELS)
    assert adjustments.shape == (2, len(LEVELS))
    np.testing.assert_array_equal(adjustments[:, 3], 0)  # the median stays
    np.testing.assert_allclose(adjustments[:, :3], -adjustments[:, 4:][:, ::-1])
    calibrated = quantiles.calibrate(raw, adjustments)
    coverage = quantiles.covered(actual, calibrated, LEVELS).mean(axis=0)  # [H, intervals]
    for i, nominal in enumerate((0.5, 0.8, 0.95)):
        # Rank ceil((n + 1) (1 - a)) of n scores: at least that fraction, at most one point more.
        expected = math.ceil((n + 1) * nominal) / n
        np.testing.assert_allclose(coverage[:, i], expected, atol=1e-12)
    # By hand, step 1 of the 80% interval: the 160th smallest of max(-0.4 - y, y - 0.4).
    scores = np.sort(np.maximum(-0.4 - actual[:, 0], actual[:, 0] - 0.4))
    assert adjustments[0, 5] == pytest.approx(scores[159])


def test_calibrated_quantiles_never_cross_even_where_an_interval_narrows_past_the_median():
    rng = np.random.default_rng(2)
    raw = _sorted_quantiles(rng, (50, 4)) * 5  # far too wide: the adjustments are negative
    actual = rng.normal(size=(50, 4)) * 0.1
    adjustments = quantiles.conformal_adjustments(actual, raw, LEVELS)
    assert (adjustments[:, 4:] < 0).any()
    assert ((raw + adjustments)[..., 1:] < (raw + adjustments)[..., :-1]).any()  # they would cross
    calibrated = quantiles.calibrate(raw, adjustments)
    assert (np.diff(calibrated, axis=-1) >= 0).all()


def test_too_few_windows_take_the_largest_score():
    actual = np.array([[0.0], [1.0], [2.0]])
    raw = np.zeros((3, 1, 3))
    adjustments = quantiles.conformal_adjustments(actual, raw, (0.1, 0.5, 0.9))
    assert adjustments[0, 2] == 2.0  # ceil(4 * 0.8) = 4 > 3 windows: the largest
    assert not quantiles.conformal_adjustments(np.zeros((0, 2)), np.zeros((0, 2, 3)), (0.1, 0.5, 0.9)).any()


def test_the_spread_is_the_largest_or_mean_seasonal_difference_of_the_last_season_over_the_scale():
    context = np.array([[1.0, 2.0, 4.0, 3.0, 2.0, 7.0],  # lag-2 differences 3, 1, then the last season's 2, 4
                        [9.0, 0.0, 5.0, 5.0, 5.0, 5.0],  # calm last season: the floor, 1% of the mean 29/6
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # nothing to scale by: 1
    scale = np.array([[0.5], [2.0], [1.0]])
    floor = 0.29 / 6 / 2
    np.testing.assert_allclose(quantiles.interval_spread(context, scale, 2), [[4.0 / 0.5], [floor], [1.0]])
    np.testing.assert_allclose(quantiles.interval_spread(context, scale, 2, "mean"), [[3.0 / 0.5], [floor], [1.0]])
    np.testing.assert_array_equal(quantiles.interval_spread(context, scale, 0), np.ones((3, 1)))
    with pytest.raises(ValueError, match="not one of max, mean"):
        quantiles.interval_spread(context, scale, 2, "median")
    with pytest.raises(ValueError, match="not one of max, mean"):
        trainer_lib.interval_spread(context, scale, 2, "median")
    rng = np.random.default_rng(5)
    context, scale = rng.normal(10, 3, size=(32, 24)), rng.uniform(0.5, 2, size=(32, 1))
    for statistic in quantiles.SPREAD_STATISTICS:  # the graph's twin gives the same
        graph = trainer_lib.interval_spread(context.astype(np.float32), scale.astype(np.float32), 7, statistic)
        np.testing.assert_allclose(graph.numpy(), quantiles.interval_spread(context, scale, 7, statistic), rtol=1e-5)
    assert quantiles.SPREAD_STATISTIC == "max"


def test_pooled_adjustments_take_one_quantile_of_every_steps_scores_over_the_steps_mean():
    # Four windows, three steps. Per step, 80% of n = 4 needs the ceil(5 * 0.8) = 5th smallest of
    # four: the largest, 10, 4 and 8. Pooled: each step's errors over its mean (4, 2.5, 5) give
    # 0.25 0.5 0.75 2.5 | 0.4 0.8 1.2 1.6 | 0.4 0.8 1.2 1.6, whose ceil(13 * 0.8) = 11th smallest is
    # 1.6: 6.4, 4 and 8.
    actual = np.array([[1.0, 1.0, 2.0], [-2.0, 2.0, -4.0], [3.0, -3.0, 6.0], [-10.0, 4.0, 8.0]])
    raw, levels = np.zeros((4, 3, 3)), (0.1, 0.5, 0.9)
    np.testing.assert_allclose(quantiles.conformal_adjustments(actual, raw, levels)[:, 2], [10.0, 4.0, 8.0])
    got = quantiles.pooled_conformal_adjustments(actual, raw, levels)
    np.testing.assert_allclose(got, [[-6.4, 0.0, 6.4], [-4.0, 0.0, 4.0], [-8.0, 0.0, 8.0]])
    # A spread divides each window's scores first: the 10-error window with spread 5 scores 2.
    spread = np.array([[1.0], [1.0], [1.0], [5.0]])
    # Step 1: 1, 2, 3, 2 over mean 2; steps 2 and 3 as before but the last window's over 5:
    # 1 2 3 0.8 (mean 1.7) and 2 4 6 1.6 (mean 3.4). Pooled and sorted, the 11th of 12 is 3 / 1.7.
    got = quantiles.pooled_conformal_adjustments(actual, raw, levels, spread)[:, 2]
    np.testing.assert_allclose(got, np.array([2.0, 1.7, 3.4]) * 3 / 1.7)
    assert not quantiles.pooled_conformal_adjustments(np.zeros((0, 2)), np.zeros((0, 2, 3)), levels).any()


def test_a_refit_takes_the_spread_statistic_its_base_models_adjustments_were_computed_with():
    adjustments = np.array([[-2.0, 0.0, 2.0]])
    record = trainer_lib.training_record(["train"], trainer_lib.Training(None, 3, 5, 100), adjustments, 12)
    got, period, statistic = trainer_lib.base_calibration(json.loads(json.dumps(record)))
    np.testing.assert_array_equal(got, adjustments)
    assert (period, statistic) == (12, "max")
    del record["spread_statistic"]  # a record written before the statistic was: the mean
    assert trainer_lib.base_calibration(record)[2] == quantiles.LEGACY_SPREAD_STATISTIC == "mean"
    record = trainer_lib.training_record(["train"], trainer_lib.Training(None, 3, 5, 100), adjustments, 12,
                                         spread_statistic="mean")
    assert trainer_lib.base_calibration(record)[2] == "mean"


@pytest.mark.parametrize("context, periods, expected", [
    (168, (24, 168), 24),  # hourly with daily and weekly seasons: the primary one
    (168, (168, 24), 24),  # given in any order: the shortest, as the seasonal bases take it
    (8, (4,), 4),  # exactly two seasons
    (52, (52,), 0),  # one season only: no seasonal difference in the window
    (28, (), 0),
])
def test_the_spread_differences_over_the_primary_season_where_the_context_holds_two(context, periods, expected):
    assert quantiles.spread_period(context, periods) == expected


def test_normalised_scores_cover_calm_and_volatile_windows_alike():
    """Errors proportional to each window's spread: one interval width for all under-covers the volatile windows."""
    rng = np.random.default_rng(6)

    def windows(n: int) -> tuple[np.ndarray, np.ndarray]:
        spread = np.where(np.arange(n) % 4 == 0, 4.0, 1.0)[:, None]  # a quarter of the windows 4x as volatile
        return rng.normal(size=(n, 2)) * spread, spread

    actual, spread = windows(999)
    raw = np.zeros((999, 2, len(LEVELS)))
    normalised = quantiles.conformal_adjustments(actual, raw, LEVELS, spread)
    plain = quantiles.conformal_adjustments(actual, raw, LEVELS)
    # On the calibration windows the normalised scores hold the rank's promise exactly, as the plain ones.
    for adjustments, s in ((normalised, spread), (plain, None)):
        hit = quantiles.covered(actual, quantiles.calibrate(raw, adjustments, s), LEVELS).mean(axis=0)
        np.testing.assert_allclose(hit, np.tile([math.ceil(1000 * c) / 999 for c in (0.5, 0.8, 0.95)], (2, 1)))
    new, new_spread = windows(20000)
    volatile = new_spread[:, 0] > 1
    calibrated = quantiles.covered(new, quantiles.calibrate(np.zeros((20000, 2, len(LEVELS))), normalised,
                                                             new_spread), LEVELS)
    one_width = quantiles.covered(new, quantiles.calibrate(np.zeros((20000, 2, len(LEVELS))), plain), LEVELS)
    for i, nominal in enumerate((0.5, 0.8, 0.95)):
        for group in (volatile, ~volatile):
            assert abs(calibrated[group][..., i].mean() - nominal) < 0.025
        assert one_width[volatile][..., i].mean() < nominal - 0.1  # what the spread fixes


@pytest.mark.parametrize("levels, message", [
    ((0.1, 0.9), "must include the median"),
    ((0.5, 0.1, 0.9), "increasing"),
    ((0.1, 0.5, 0.8), "pair each level"),
    ((0.0, 0.5, 1.0), "above 0"),
    ((0.25, 0.5, 1.5), "at most 1"),
])
def test_bad_quantile_levels_are_refused_naming_the_flag(levels, message):
    with pytest.raises(ConfigError, match=f"--quantiles .*{message}"):
        config_lib.ModelConfig(quantiles=levels)


def test_no_levels_give_a_point_model():
    assert config_lib.ModelConfig(quantiles=()).intervals == ()
    model = trainer_lib.build_model({features.HISTORY_SCALED: 4}, 4, 2, config_lib.ModelConfig(
        quantiles=(), lstm_units=(3,)))
    assert model.output.shape[1:] == (2,)


def test_the_head_never_crosses_and_the_loss_is_the_numpy_pinball_loss():
    config = config_lib.ModelConfig(lstm_units=(3,), quantiles=LEVELS, interval_method="quantile_head")
    model = trainer_lib.build_model({features.HISTORY_SCALED: 4}, 4, 2, config)
    rng = np.random.default_rng(3)
    # Random weights, large inputs: the gaps are softplus values, never negative whatever the head
    # computes (a very negative gap underflows to 0 in float32: equal, not crossed).
    model.set_weights([rng.normal(scale=3, size=w.shape) for w in model.get_weights()])
    x = {features.HISTORY_SCALED: rng.normal(scale=10, size=(64, 4)).astype(np.float32)}
    q = model(x, training=False).numpy()
    assert q.shape == (64, 2, len(LEVELS)) and (np.diff(q, axis=-1) >= 0).all()
    y = rng.normal(size=(64, 2)).astype(np.float32)
    loss = float(trainer_lib.PinballLoss(LEVELS)(y, q))
    assert loss == pytest.approx(quantiles.pinball(y, q, LEVELS).mean(), rel=1e-5)


def test_the_quantile_outputs_follow_the_contract():
    scaled = np.array([[[-1.0, 0.0, 1.0]], [[-2.0, 0.0, 0.5]]], np.float32)  # [2, H=1, Q=3]
    adjustments = np.array([[0.5, 0.0, -0.5]])  # the first window's interval narrows to nothing
    scale, loc = np.array([[2.0], [1.0]], np.float32), np.array([[10.0], [0.0]], np.float32)
    outputs = {k: v.numpy() for k, v in trainer_lib.quantile_outputs(
        keras.ops.convert_to_tensor(scaled), scale, loc, (0.1, 0.5, 0.9), adjustments).items()}
    expected = np.sort(quantiles.calibrate(scaled, adjustments) * scale[..., None] + loc[..., None], axis=-1)
    np.testing.assert_allclose(outputs[contract.QUANTILES_OUTPUT_KEY], expected)
    np.testing.assert_allclose(outputs[contract.QUANTILES_OUTPUT_KEY][0, 0], [9.0, 10.0, 11.0])
    np.testing.assert_allclose(outputs[contract.OUTPUT_KEY], expected[..., 1])
    np.testing.assert_array_equal(outputs[contract.QUANTILE_LEVELS_OUTPUT_KEY],
                                  np.float32([[0.1, 0.5, 0.9], [0.1, 0.5, 0.9]]))
    # Each window's spread multiplies the adjustments, in scaled units, before the sort.
    spread = np.array([[2.0], [0.5]], np.float32)
    widened = trainer_lib.quantile_outputs(keras.ops.convert_to_tensor(scaled), scale, loc, (0.1, 0.5, 0.9),
                                           -adjustments, spread)[contract.QUANTILES_OUTPUT_KEY].numpy()
    expected = quantiles.calibrate(scaled, -adjustments, spread) * scale[..., None] + loc[..., None]
    np.testing.assert_allclose(widened, expected, rtol=1e-6)
    np.testing.assert_allclose(widened[0, 0], [6.0, 10.0, 14.0])  # 10 -/+ (1 + 2 * 0.5) * 2


def test_the_tfma_quantile_metrics_give_the_numpy_values_per_model():
    """The combiner reads each model's quantiles from its outputs; a model without them gets NaN."""
    rng = np.random.default_rng(4)
    history, actual = rng.normal(size=(6, 5)), rng.normal(size=(6, 2))
    q = _sorted_quantiles(rng, (6, 2))
    predictions = {"candidate": {contract.OUTPUT_KEY: q[..., 3], contract.QUANTILES_OUTPUT_KEY: q},
                   "baseline": {contract.OUTPUT_KEY: q[..., 3] + 1}}
    eval_config = config_pb2.EvalConfig(model_specs=[
        config_pb2.ModelSpec(name=name, prediction_key=contract.OUTPUT_KEY, is_baseline=name == "baseline")
        for name in predictions])
    configs = [config_pb2.MetricConfig(class_name="ForecastError", module=fm.__name__, config=fm.metric_config_json(
        error=error, forecaster=fm.MODEL, horizon=2, periods=[2], levels=list(LEVELS)))
        for error in ("mae", "coverage_80", "quantile_loss")]
    computations = []
    for config in configs:
        computations += metric_specs.metric_instance(config).computations(
            eval_config=eval_config, model_names=list(predictions))
    combiners = [c for c in computations if isinstance(c, metric_types.MetricComputation)]
    assert len({c.keys[0] for c in combiners}) == 2  # one shared combiner per model
    results = {}
    for computation in {c.keys[0]: c for c in combiners}.values():
        accumulator = computation.combiner.create_accumulator()
        for i in range(len(actual)):
            element = metric_types.StandardMetricInputs(
                labels=actual[i], example_weights=None,
                predictions={name: {k: v[i] for k, v in p.items()} for name, p in predictions.items()},
                features={features.HISTORY: history[i], features.MASE_SCALE: np.array([1.0], np.float32)})
            accumulator = computation.combiner.add_input(accumulator, element)
        results.update(computation.combiner.extract_output(accumulator))
    for computation in computations:
        if isinstance(computation, metric_types.DerivedMetricComputation):
            results.update(computation.result(results))
    candidate = {k.name: v for k, v in results.items() if k.model_name == "candidate"}
    inside = (q[..., 1] <= actual) & (actual <= q[..., 5])
    assert candidate["coverage_80"] == pytest.approx(inside.mean())
    assert candidate["quantile_loss/step_2"] == pytest.approx(quantiles.pinball(actual, q, LEVELS)[:, 1].mean())
    assert candidate["mae"] == pytest.approx(np.abs(actual - q[..., 3]).mean())
    baseline = {k.name: v for k, v in results.items() if k.model_name == "baseline"}
    assert math.isnan(baseline["coverage_80"])
    assert baseline["mae"] == pytest.approx(np.abs(actual - q[..., 3] - 1).mean())


def test_only_the_median_level_moves_the_median():
    """The outer levels train their gaps; the median's own pinball loss alone trains the median."""
    import tensorflow as tf

    layer = trainer_lib.NonCrossingQuantiles(horizon=2, median_index=1)
    median = tf.Variable(np.zeros((1, 2), np.float32))
    gaps = tf.Variable(np.zeros((1, 4), np.float32))
    with tf.GradientTape(persistent=True) as tape:
        q = layer(median, gaps)
        outer = tf.reduce_sum(q[..., 0] + q[..., 2])
        inner = tf.reduce_sum(q[..., 1])
    assert tape.gradient(outer, median) is None or not tape.gradient(outer, median).numpy().any()
    np.testing.assert_array_equal(tape.gradient(inner, median).numpy(), [[1.0, 1.0]])
    assert tape.gradient(outer, gaps).numpy().all()
