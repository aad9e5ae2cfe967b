"""The MSTL gap diagnosis's error profile and profile base against hand computations (fast, no pipeline)."""

import numpy as np
import pytest

from benchmarks import mstl_gap
from components import transform


def test_error_profile_splits_the_ratio_by_step_and_by_time():
    # Four windows of two steps, in order of origin; the reference is off by 1 everywhere.
    actual = np.zeros((4, 2))
    reference = np.ones((4, 2))
    forecast = np.array([[1.0, 3.0], [-1.0, 3.0], [2.0, 2.0], [-2.0, 2.0]])
    got = mstl_gap.error_profile(actual, forecast, reference, end_steps=1, parts=2)
    assert got["mae"] == pytest.approx(2.0)
    assert got["bias"] == pytest.approx((1 + 3 - 1 + 3 + 2 + 2 - 2 + 2) / 8)
    assert got["over"] == pytest.approx(2.0)
    assert got["first"] == pytest.approx(1.5)  # step 1: |1|, |-1|, |2|, |-2| over 1
    assert got["last"] == pytest.approx(2.5)   # step 2: 3, 3, 2, 2
    assert got["by_step"] == pytest.approx([1.5, 2.5])
    assert got["by_part"] == pytest.approx([2.0, 2.0])


def test_profile_base_is_the_transform_graphs_profile_from_the_last_cycles():
    rng = np.random.default_rng(5)
    values = rng.normal(10, 2, size=60)
    period, horizon, cycles = 7, 10, 3
    origins = np.array([30, 59, 15])  # 15: 16 points, fewer than 3 cycles
    got = mstl_gap.profile_base(values, origins, horizon, period, cycles)
    for row, origin in enumerate(origins[:2]):
        context = values[origin + 1 - cycles * period:origin + 1][None, :]
        expected = transform.seasonal_bases(context.astype(np.float32), horizon, period)["profile"].numpy()[0]
        np.testing.assert_allclose(got[row], expected, rtol=1e-5)
    assert np.isnan(got[2]).all()


def test_the_script_names_the_default_sets_it_finds_no_kept_run_of(tmp_path, capsys):
    (tmp_path / "gasoline" / "run").mkdir(parents=True)
    (tmp_path / "gasoline" / "run" / "metadata.sqlite").touch()
    assert mstl_gap.main(["--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path}: no kept run (<set>/run/metadata.sqlite) of hyndsight"
