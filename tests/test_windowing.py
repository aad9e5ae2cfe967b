"""Window and split arithmetic against hand-written expectations."""

import numpy as np
import pytest

from components import windowing


def test_windows_match_the_docstring_example():
    values = np.arange(7, dtype=np.float32) * 10  # 0, 10, ..., 60
    histories, targets, starts = windowing.make_windows(values, history=3, horizon=2, stride=2)
    np.testing.assert_array_equal(starts, [0, 2])
    np.testing.assert_array_equal(histories, [[0, 10, 20], [20, 30, 40]])
    np.testing.assert_array_equal(targets, [[30, 40], [50, 60]])


def test_stride_one_uses_every_start_and_the_last_point():
    histories, targets, starts = windowing.make_windows(np.arange(6.0), history=2, horizon=2)
    np.testing.assert_array_equal(starts, [0, 1, 2])
    np.testing.assert_array_equal(histories, [[0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(targets, [[2, 3], [3, 4], [4, 5]])


def test_windows_are_copies():
    values = np.arange(5.0)
    histories, _, _ = windowing.make_windows(values, 2, 1)
    histories[0, 0] = 99
    assert values[0] == 0


@pytest.mark.parametrize("n", [0, 3, 4])
def test_too_short_series_gives_no_windows(n):
    histories, targets, starts = windowing.make_windows(np.arange(float(n)), history=3, horizon=2)
    assert histories.shape == (0, 3) and targets.shape == (0, 2) and len(starts) == 0


def test_exactly_one_window():
    np.testing.assert_array_equal(windowing.window_starts(5, history=3, horizon=2), [0])


@pytest.mark.parametrize("args", [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_lengths_must_be_positive(args):
    with pytest.raises(ValueError):
        windowing.window_starts(10, *args)


def test_cut_times_are_fractions_of_the_span():
    np.testing.assert_allclose(windowing.split_cut_times(100, 200, (0.7, 0.2)), [170, 190])


@pytest.mark.parametrize("fractions", [(0.5,), (0.7, 0.3), (0.0, 0.5), (0.9, 0.2)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError):
        windowing.split_cut_times(0, 1, fractions)


def test_windows_go_to_the_split_that_holds_all_their_targets():
    cuts = np.array([10, 20])
    first = np.array([7, 8, 9, 10, 18, 19, 20, 25])
    last = first + 1  # horizon 2, step 1
    # 9..10 and 19..20 straddle a cut point: dropped.
    np.testing.assert_array_equal(
        windowing.assign_splits(first, last, cuts),
        [0, 0, windowing.DROPPED, 1, 1, windowing.DROPPED, 2, 2])
