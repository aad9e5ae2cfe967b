"""The interval calibration benchmark's cross-fit and variants against hand computations (fast, no pipeline)."""

import json

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


def test_the_last_cycle_variant_is_the_exported_spread_and_the_whole_context_one_the_old():
    rng = np.random.default_rng(3)
    context, scale = rng.normal(10, 3, size=(16, 24)), rng.uniform(0.5, 2, size=(16, 1))
    np.testing.assert_allclose(calibration.last_cycle_spread(context, scale, 7, 5),
                               quantiles.interval_spread(context, scale, 7) * scale)
    np.testing.assert_allclose(calibration.exported_spread(context, scale, 7, 5),
                               quantiles.interval_spread(context, scale, 7) * scale)
    # Whole context: every lag-2 difference 3, 1, 2, 4: mean 2.5 (last cycle's 2, 4: 3).
    context = np.array([[1.0, 2.0, 4.0, 3.0, 2.0, 7.0]])
    assert calibration.whole_context_spread(context, np.ones((1, 1)), 2, 1)[0, 0] == pytest.approx(2.5)
    assert calibration.last_cycle_spread(context, np.ones((1, 1)), 2, 1)[0, 0] == pytest.approx(3.0)
    # No period: the window scale.
    assert calibration.whole_context_spread(context, np.full((1, 1), 4.0), 0, 1)[0, 0] == 4.0


def test_pooled_adjustments_take_one_quantile_of_the_steps_scores_over_their_scales():
    # Two steps; step 2's errors twice step 1's, mean sizes 2 and 4. The ten pooled scores over
    # them: 0.5, 1, 1, 1.5, 1 twice; the ceil(11 * 0.8) = 9th smallest is 1.5: +-3 and +-6.
    step = np.array([1.0, -2.0, 2.0, -3.0, 2.0])
    actual = np.stack([step, 2 * step], axis=1)
    got = calibration.pooled_adjustments(actual, np.zeros((5, 2, 3)), LEVELS)
    np.testing.assert_allclose(got, [[-3.0, 0.0, 3.0], [-6.0, 0.0, 6.0]])
    # Per step instead (n = 5: the largest score): 3 and 6 as well here, but not with a spread.
    np.testing.assert_allclose(quantiles.conformal_adjustments(actual, np.zeros((5, 2, 3)), LEVELS), got)
    spread = np.array([[1.0], [1.0], [1.0], [3.0], [1.0]])  # the 3-error window: score 1
    np.testing.assert_allclose(calibration.pooled_adjustments(actual, np.zeros((5, 2, 3)), LEVELS, spread)[:, 2],
                               [2.0, 4.0])  # scores 1, 2, 2, 1, 2 over mean 1.6: ninth 1.25 x 1.6


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
    spread = calibration.whole_context_spread(toy["eval"]["context"], toy["eval"]["scale"], 2, 2)
    expected = calibration.cross_fit_coverage(toy["eval"]["actual"], toy["eval"]["forecast"], spread,
                                              toy["eval"]["origins"], toy["levels"])
    np.testing.assert_allclose(result["per_set"]["toy"]["whole context"]["cross_fit"], expected)
    assert result["summary"]["whole context"]["cross_fit_error"] == pytest.approx(
        calibration.coverage_error(expected, toy["levels"]))
    # A data set with no kept run: one line, exit 2.
    assert calibration.main(["--runs", str(tmp_path / "runs"), "--datasets", "toy,other"]) == 2
    assert capsys.readouterr().err.strip().endswith("of other")
