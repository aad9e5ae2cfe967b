"""The interval calibration benchmark's cross-fit and variants against hand computations (fast, no pipeline)."""

import json
import math

import numpy as np
import pytest

from benchmarks import calibration
from components import quantiles

LEVELS = (0.1, 0.5, 0.9)  # one central interval, 80%


def test_time_halves_split_by_origin_not_by_row_order():
    earlier, later = calibration.time_halves(np.array([50, 10, 40, 20, 30]))
    np.testing.assert_array_equal(earlier, [1, 3])  # origins 10 and 20
    np.testing.assert_array_equal(later, [0, 2, 4])


def test_cross_fit_calibrates_on_one_time_half_and_measures_the_other():
    # Ten windows of one step, forecast 0, spread 1, rows out of time order. Earlier half (origins
    # 0-4): errors of size 1..5; later (5-9): 3, 4, 6, 7, 8. 80% with n = 5: the ceil(6 * 0.8) = 5th
    # smallest score, the largest. Calibrated on the earlier half: +-5 covers 3 and 4 of the later
    # (0.4); on the later: +-8 covers every earlier one (1.0).
    origins = np.array([7, 0, 9, 3, 5, 1, 8, 2, 6, 4])
    by_origin = np.array([1.0, -2.0, 3.0, -4.0, 5.0, -3.0, 4.0, -6.0, 7.0, -8.0])
    actual = by_origin[origins][:, None]
    forecast, spread = np.zeros((10, 1)), np.ones((10, 1))
    got = calibration.cross_fit_coverage(actual, forecast, spread, origins, LEVELS)
    np.testing.assert_allclose(got, [[0.4], [1.0]])
    assert calibration.coverage_error(got, LEVELS, intervals=(0.8,)) == pytest.approx((0.4 + 0.2) / 2)
    # The spread scales the scores: a later window with twice the spread is covered out to 10.
    spread[origins == 9] = 2.0  # error -8 over spread 2: covered by +-5 x 2
    got = calibration.cross_fit_coverage(actual, forecast, spread, origins, LEVELS)
    assert got[0, 0] == pytest.approx(0.6)


def test_the_exported_variant_is_the_trainers_spread_and_the_baseline_the_last_seasons_mean():
    rng = np.random.default_rng(3)
    context, scale = rng.normal(10, 3, size=(16, 24)), rng.uniform(0.5, 2, size=(16, 1))
    np.testing.assert_allclose(calibration.exported_spread(context, scale, 7, 5),
                               quantiles.interval_spread(context, scale, 7) * scale)
    np.testing.assert_allclose(calibration.last_cycle_max_spread(context, scale, 7, 5),
                               quantiles.interval_spread(context, scale, 7, "max") * scale)
    np.testing.assert_allclose(calibration.last_cycle_spread(context, scale, 7, 5),
                               quantiles.interval_spread(context, scale, 7, "mean") * scale)
    assert calibration.VARIANTS[calibration.EXPORTED].spread is calibration.exported_spread
    assert calibration.VARIANTS[calibration.EXPORTED].adjust is quantiles.pooled_conformal_adjustments
    # Every lag-2 difference 3, 1, 2, 4: whole context mean 2.5; the last season's 2, 4: mean 3, max 4.
    context, one = np.array([[1.0, 2.0, 4.0, 3.0, 2.0, 7.0]]), np.ones((1, 1))
    assert calibration.whole_context_spread(context, one, 2, 1)[0, 0] == pytest.approx(2.5)
    assert calibration.last_cycle_spread(context, one, 2, 1)[0, 0] == pytest.approx(3.0)
    assert calibration.last_cycle_max_spread(context, one, 2, 1)[0, 0] == pytest.approx(4.0)
    assert calibration.VARIANTS["last season rms"].spread(context, one, 2, 1)[0, 0] == pytest.approx(math.sqrt(10))
    assert calibration.VARIANTS["max(last season, whole) mean"].spread(context, one, 2, 1)[0, 0] == pytest.approx(3.0)
    # No period: the window scale.
    assert calibration.whole_context_spread(context, np.full((1, 1), 4.0), 0, 1)[0, 0] == 4.0


def test_weighted_adjustments_are_the_weighted_quantile_with_the_forecasts_weight_on_infinity():
    rng = np.random.default_rng(7)
    actual, spread = rng.normal(size=(30, 3)), rng.uniform(0.5, 2, size=(30, 1))
    raw = np.zeros((30, 3, 3))
    # Weights 1: the unweighted ceil((n + 1)(1 - a))-th smallest.
    np.testing.assert_allclose(calibration.weighted_adjustments(actual, raw, LEVELS, spread, np.ones(30)),
                               quantiles.conformal_adjustments(actual, raw, LEVELS, spread))
    # Scores 9, 8, 1, 2, 3, 4: unweighted, the ceil(7 * 0.8) = 6th smallest, 9. The two oldest weigh
    # 0: the others' cumulative weights over 4 + 1 are 0.2, 0.4, 0.6, 0.8, so 4.
    actual = np.array([[9.0], [-8.0], [1.0], [-2.0], [3.0], [4.0]])
    got = calibration.weighted_adjustments(actual, np.zeros((6, 1, 3)), LEVELS, None, np.array([0, 0, 1, 1, 1, 1.0]))
    np.testing.assert_allclose(got, [[-4.0, 0.0, 4.0]])
    assert quantiles.conformal_adjustments(actual, np.zeros((6, 1, 3)), LEVELS)[0, 2] == 9.0
    # Too little weight below the last score to reach the coverage: the largest.
    got = calibration.weighted_adjustments(actual[2:4], np.zeros((2, 1, 3)), LEVELS, None, np.ones(2))
    assert got[0, 2] == 2.0


def test_recency_weights_count_age_from_the_side_scored():
    ages, span = calibration.ages(np.array([30, 10, 20]), scored_later=True)
    np.testing.assert_array_equal(ages, [0, 20, 10])
    assert span == 20
    ages, span = calibration.ages(np.array([30, 10, 20]), scored_later=False)
    np.testing.assert_array_equal(ages, [20, 0, 10])
    np.testing.assert_allclose(calibration.half_life(0.5)(np.array([0.0, 10.0, 20.0]), 20.0), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(calibration.nearest(0.5)(np.array([0.0, 30.0, 10.0, 20.0, 40.0]), 40.0),
                                  [1, 0, 1, 1, 0])
    assert calibration.ages(np.array([5, 5]), True)[1] == 1.0  # one origin: no span to divide by 0


def test_the_cross_fit_weighs_each_half_by_its_age_from_the_other():
    # Calibrated on the earlier half (origins 0-4) and scored on the later, the latest origin is
    # age 0; the reverse, the earliest. Weights 1 give the unweighted cross-fit.
    origins = np.array([7, 0, 9, 3, 5, 1, 8, 2, 6, 4])
    actual = np.arange(10.0)[:, None]
    seen = []

    def weigh(ages: np.ndarray, span: float) -> np.ndarray:
        seen.append((ages.tolist(), span))
        return np.ones(len(ages))

    forecast, spread = np.zeros((10, 1)), np.ones((10, 1))
    got = calibration.cross_fit_coverage(actual, forecast, spread, origins, LEVELS, weigh=weigh)
    # Rows of the earlier half in row order: origins 0, 3, 1, 2, 4; of the later: 7, 9, 5, 8, 6.
    assert seen == [([4.0, 1.0, 3.0, 2.0, 0.0], 4.0), ([2.0, 4.0, 0.0, 3.0, 1.0], 4.0)]
    np.testing.assert_allclose(got, calibration.cross_fit_coverage(actual, forecast, spread, origins, LEVELS))


def _windows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    context = rng.normal(10, 2, size=(n, 8))
    return {"context": context, "actual": rng.normal(10, 2, size=(n, 2)), "origins": np.arange(n),
            "series_ids": np.array(["s"] * n), "forecast": np.full((n, 2), 10.0),
            "forecast_a": np.full((n, 2), 10.0), "scale": context.std(axis=1, keepdims=True)}


def test_the_script_scores_every_variant_of_each_kept_run_and_names_a_missing_one(tmp_path, capsys):
    rng = np.random.default_rng(4)
    (tmp_path / "runs" / "toy" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "toy" / "run" / "metadata.sqlite").touch()
    toy = {"period": 2, "levels": [0.025, 0.1, 0.5, 0.9, 0.975], "eval": _windows(rng, 40), "test": _windows(rng, 30)}
    cache = tmp_path / "loaded.npz"
    np.savez(cache, data=np.array({"toy": toy}, dtype=object))
    assert calibration.main(["--runs", str(tmp_path / "runs"), "--cache", str(cache)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["summary"]) == set(calibration.VARIANTS)
    spread = calibration.last_cycle_spread(toy["eval"]["context"], toy["eval"]["scale"], 2, 2)
    expected = calibration.cross_fit_coverage(toy["eval"]["actual"], toy["eval"]["forecast"], spread,
                                              toy["eval"]["origins"], toy["levels"])
    np.testing.assert_allclose(result["per_set"]["toy"][calibration.BASELINE]["cross_fit"], expected)
    assert result["summary"][calibration.BASELINE]["cross_fit_error"] == pytest.approx(
        calibration.coverage_error(expected, toy["levels"]))
    # A recency-weighted variant: the test windows' calibration weighs eval's latest windows most.
    weighted = calibration.cross_fit_coverage(toy["eval"]["actual"], toy["eval"]["forecast"], spread,
                                              toy["eval"]["origins"], toy["levels"], weigh=calibration.half_life(0.5))
    np.testing.assert_allclose(result["per_set"]["toy"]["half-life 1/2 span"]["cross_fit"], weighted)
    test_spread = calibration.last_cycle_spread(toy["test"]["context"], toy["test"]["scale"], 2, 2)
    on_test = calibration.calibrated_coverage(
        toy["eval"]["actual"], toy["eval"]["forecast"], spread, toy["test"]["actual"], toy["test"]["forecast"],
        test_spread, toy["levels"], weights=0.5 ** ((39 - np.arange(40)) / (0.5 * 39)))
    np.testing.assert_allclose(result["per_set"]["toy"]["half-life 1/2 span"]["test"], on_test)
    # A data set with no kept run: one line, exit 2.
    assert calibration.main(["--runs", str(tmp_path / "runs"), "--datasets", "toy,other"]) == 2
    assert capsys.readouterr().err.strip().endswith("of other")
