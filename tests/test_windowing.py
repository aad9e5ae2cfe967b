"""Window and split arithmetic: exact windows, and the no-leakage property under random settings."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import windowing
from components.example_gen import frequency as frequency_lib
from components.example_gen import grid, reader
from components.example_gen import windows as windows_lib
from components.example_gen.options import WindowingOptions


def test_windows_of_the_docstring_example():
    values = np.arange(7.0)
    starts = windowing.window_starts(len(values), history=3, horizon=2, stride=2)
    histories, targets = windowing.spans(values, starts, 3), windowing.spans(values, starts + 3, 2)
    np.testing.assert_array_equal(starts, [0, 2])
    np.testing.assert_array_equal(histories, [[0, 1, 2], [2, 3, 4]])
    np.testing.assert_array_equal(targets, [[3, 4], [5, 6]])


def test_windows_are_copies_not_views():
    values = np.arange(6.0)
    histories = windowing.spans(values, windowing.window_starts(len(values), 2, 1), 2)
    values[0] = 99
    assert histories[0, 0] == 0


def test_seasonal_lag_offsets_of_the_docstring_example():
    np.testing.assert_array_equal(windowing.seasonal_lag_offsets(6, 4), [-3, -2, -1, 0, -3, -2])


@given(st.integers(1, 60), st.integers(1, 400))
def test_seasonal_lags_are_whole_seasons_back_and_observed(horizon, period):
    offsets = windowing.seasonal_lag_offsets(horizon, period)
    steps = np.arange(1, horizon + 1)
    assert ((steps - offsets) % period == 0).all() and (steps - offsets > 0).all()
    assert (offsets <= 0).all() and (offsets > -period).all()


@pytest.mark.parametrize("n, expected", [(4, []), (5, [0]), (9, [0, 1, 2, 3, 4])])
def test_window_starts_need_room_for_history_and_horizon(n, expected):
    np.testing.assert_array_equal(windowing.window_starts(n, history=3, horizon=2), expected)


@pytest.mark.parametrize("args", [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_window_lengths_must_be_positive(args):
    with pytest.raises(ValueError):
        windowing.window_starts(10, *args)


def test_complete_spans_find_every_span_that_touches_a_missing_point():
    missing = np.zeros(8, bool)
    missing[3] = True
    np.testing.assert_array_equal(windowing.complete_spans(missing, np.arange(6), 3),
                                  [True, False, False, False, True, True])


def test_cut_times_from_fractions():
    np.testing.assert_allclose(windowing.split_cut_times(100, 200, (0.7, 0.2)), [170, 190])


@pytest.mark.parametrize("fractions", [(0.7,), (0.7, 0.3), (0.0, 0.5), (0.8, 0.3)])
def test_bad_split_fractions_are_rejected(fractions):
    with pytest.raises(ValueError):
        windowing.split_cut_times(0, 1, fractions)


def test_cut_indices_are_the_first_points_at_or_after_each_cut():
    times = np.array([0, 10, 20, 30, 40])
    np.testing.assert_array_equal(windowing.cut_indices(times, np.array([15, 30])), [2, 3])


def test_split_of_a_window_is_the_split_of_all_its_targets():
    # Cuts at indices 4 and 7; targets [first, last].
    first = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    last = first + 1
    np.testing.assert_array_equal(
        windowing.assign_splits(first, last, np.array([4, 7])),
        [0, 0, windowing.DROPPED_STRADDLING, 1, 1, windowing.DROPPED_STRADDLING, 2, 2])


def test_a_split_gap_drops_the_first_windows_after_each_cut():
    first = np.arange(0, 10)
    split = windowing.assign_splits(first, first, np.array([4, 7]), gap=2)
    np.testing.assert_array_equal(split, [0, 0, 0, 0, -2, -2, 1, -2, -2, 2])


FREQUENCIES = ["30min", "h", "D", "W-SAT", "MS"]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 120), history=st.integers(1, 8), horizon=st.integers(1, 5), stride=st.integers(1, 4),
       train=st.floats(0.1, 0.7), evaluation=st.floats(0.05, 0.25), gap=st.integers(0, 3),
       frequency=st.sampled_from(FREQUENCIES), missing=st.lists(st.integers(0, 119), max_size=10),
       seed=st.integers(0, 2**16), periods=st.sampled_from([(), (2,), (5,), (4, 12)]),
       scope=st.sampled_from(["global", "per_series"]), before=st.integers(0, 50), after=st.integers(0, 50))
def test_no_target_leaks_across_splits_and_targets_follow_their_history(
        n, history, horizon, stride, train, evaluation, gap, frequency, missing, seed, periods, scope, before, after):
    start = pd.Timestamp("2021-01-02", tz="UTC")  # a Saturday, and on the MS grid after a step
    start = frequency_lib.check_frequency(frequency).rollforward(start)
    times = frequency_lib.grid(start.value // 10**9, (start + 200 * frequency_lib.check_frequency(frequency)).value
                               // 10**9, frequency)[:n]
    values = np.random.default_rng(seed).normal(size=n)
    values[[m for m in missing if m < n]] = np.nan
    options = WindowingOptions.of(frequency=frequency, points=n, history=history, horizon=horizon, stride=stride,
                                  seasonal_periods=periods, split_fractions=(train, evaluation), split_gap=gap,
                                  split_scope=scope)
    context = options.windows.context  # () takes the frequency's natural periods the series holds
    series = grid.Series("s", frequency, times, values, np.zeros((n, 0)), ("f.csv",), np.zeros(n, np.int32),
                         np.arange(n))
    # The span of all series may reach before and after this one's.
    step = int(np.diff(times).min()) if n > 1 else 1
    span = (int(times[0]) - before * step, int(times[-1]) + after * step)
    splits, _ = windows_lib.cut_windows(series, options, span)
    by_name = {w.split: w for w in splits}
    offset = frequency_lib.check_frequency(frequency)
    stored = values.astype(np.float32)
    for w in splits:
        assert w.histories.shape == (len(w), context) and w.targets.shape == (len(w), horizon)
        # The context ends at the origin: its last point is the point before the first target.
        position = np.searchsorted(times, w.origin_times)
        np.testing.assert_array_equal(times[position], w.origin_times)
        np.testing.assert_array_equal(w.histories, stored[position[:, None] + np.arange(1 - context, 1)])
        np.testing.assert_array_equal(w.targets, stored[position[:, None] + np.arange(1, horizon + 1)])
        # Each target step is exactly one step of the frequency after the previous point.
        previous = np.concatenate([w.origin_times[:, None], w.target_times[:, :-1]], axis=1)
        expected = (pd.to_datetime(previous.ravel(), unit="s", utc=True) + offset).asi8 // 10**9
        np.testing.assert_array_equal(w.target_times.ravel(), expected)
        assert not np.isnan(w.targets).any() and not np.isnan(w.histories).any()
    for earlier, later in (("train", "eval"), ("train", "test"), ("eval", "test")):
        if len(by_name[earlier]) and len(by_name[later]):
            assert by_name[earlier].target_times.max() < by_name[later].target_times[:, 0].min()
            if gap:
                # More than `gap` grid points lie between the splits' targets.
                last = np.searchsorted(times, by_name[earlier].target_times.max())
                first = np.searchsorted(times, by_name[later].target_times[:, 0].min())
                assert first - last > gap


def test_reader_columns_reject_a_covariate_that_cannot_name_a_feature():
    with pytest.raises(reader.DataError, match="letters, digits"):
        reader.Columns(covariates=("air temp",))


def _fold_letters(train: np.ndarray, held_out: np.ndarray) -> str:
    return "".join("t" if t else "h" if h else "." for t, h in zip(train, held_out))


def test_held_out_folds_of_the_docstring_example():
    folds = windowing.held_out_folds(np.zeros(10), np.arange(10), width=3, folds=2, horizon=2)
    assert [_fold_letters(*fold) for fold in folds] == ["ttttt..hhh", "tt..hhh..."]


def test_held_out_folds_keep_every_training_target_before_the_stretch_in_each_series():
    # Two series on one grid, stride 2, horizon 3; series b ends early and has a gap.
    a = np.arange(0, 40, 2)
    b = np.array([0, 2, 4, 10, 12, 14, 16, 18, 20])
    series = np.array(["a"] * len(a) + ["b"] * len(b))
    origins = np.concatenate([a, b])
    horizon, stride = 3, 2
    for j, (train, held_out) in enumerate(windowing.held_out_folds(series, origins, 8, 2, horizon, stride), 1):
        cut = 38 - 8 * j
        np.testing.assert_array_equal(held_out, (origins > cut) & (origins <= cut + 8))
        assert not (train & held_out).any()
        # Every training target (origin + 1 .. origin + H) at or before the cut ...
        assert (origins[train] + horizon <= cut).all()
        # ... and each series' windows before the cut are kept but for the last ceil(H / S) = 2.
        for s in ("a", "b"):
            before = np.sort(origins[(series == s) & (origins <= cut)])
            np.testing.assert_array_equal(np.sort(origins[train & (series == s)]), before[:-2])
    # A stretch that reaches before every window: nothing to train on.
    train, held_out = windowing.held_out_folds(np.zeros(4), np.arange(4), width=3, folds=1, horizon=1)[0]
    assert _fold_letters(train, held_out) == ".hhh"


def test_held_out_folds_need_a_stretch_longer_than_zero():
    with pytest.raises(ValueError, match="longer than 0"):
        windowing.held_out_folds(np.zeros(3), np.arange(3), width=0, folds=1, horizon=1)
    assert windowing.held_out_folds(np.zeros(0), np.zeros(0), width=0, folds=2, horizon=1)[1][0].shape == (0,)


def test_fold_left_out_of_the_docstring_example():
    month = windowing.LATER_FOLD_SPAN_SECONDS / 12
    origins = np.arange(60) * month
    held_out = (origins >= 40 * month)  # 20 windows
    long, short = origins < 30 * month, origins < 10 * month
    assert windowing.fold_left_out(1, long, held_out, origins, 19) == ""
    assert windowing.fold_left_out(2, long, held_out, origins, 19) == ""
    assert windowing.fold_left_out(1, short, held_out, origins, 19) == ""
    assert windowing.fold_left_out(2, short, held_out, origins, 19) == (
        "its training windows span 0.75 years; a fold after the first needs a year")
    # Exactly a year of origins (13 monthly windows) is enough.
    assert windowing.fold_left_out(2, origins < 13 * month, held_out, origins, 19) == ""
    assert windowing.fold_left_out(2, origins < 12 * month, held_out, origins, 19) != ""


def test_fold_left_out_needs_windows_on_both_sides():
    origins = np.arange(40, dtype=float)
    none = np.zeros(40, bool)
    assert windowing.fold_left_out(1, none, origins >= 20, origins, 19) == "no window to train on"
    assert windowing.fold_left_out(1, origins < 10, origins >= 22, origins, 19) == (
        "holds out 18 windows; it needs 19")
    assert windowing.fold_left_out(1, origins < 10, origins >= 21, origins, 19) == ""
