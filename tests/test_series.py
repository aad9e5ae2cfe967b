"""Per-series example generation: grid, duplicates, gap policies, exact windows and splits for
every option (seasonal context, covariates, split scope), the MASE scale, and the encoded tf.Examples."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import features, windowing
from components import forecast_metrics as fm
from components.example_gen import frequency as frequency_lib
from components.example_gen import grid, reader, summary
from components.example_gen import options as options_lib
from components.example_gen import windows as windows_lib
from components.example_gen.options import DataConfig, WindowConfig, WindowingOptions
from pipeline import local_data

DAY = 86400
JAN1 = 1704067200  # 2024-01-01T00:00:00Z, a Monday
_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def daily_csv(tmp_path, values, name="s.csv", start="2024-01-01", extra=None):
    days = pd.date_range(start, periods=len(values), freq="D").strftime("%Y-%m-%d")
    header = "timestamp,value" + (",temp" if extra is not None else "")
    rows = [f"{d},{'' if v is None else v}" + (f",{extra[i]}" if extra is not None else "")
            for i, (d, v) in enumerate(zip(days, values))]
    return write(tmp_path, header + "\n" + "\n".join(rows) + "\n", name)


def make_options(points: int = 0, **values) -> WindowingOptions:
    """Options from flat settings (fields of DataConfig and WindowConfig), resolved against the
    given frequency (daily if none) and a series of ``points`` points: by default too short for any
    natural season, so the context is the history unless a season is given."""
    data = DataConfig(path="", **{k: v for k, v in values.items() if k in _DATA_FIELDS})
    windows = WindowConfig(**{k: v for k, v in values.items() if k not in _DATA_FIELDS})
    return WindowingOptions(data, options_lib.resolve(windows, data.frequency or "D", points))


def run(paths, **values):
    return local_data.window_files(paths if isinstance(paths, list) else [paths], make_options(**values))


def splits_of(result, series_id=reader.DEFAULT_SERIES_ID):
    splits, report = result[series_id]
    return {w.split: w for w in splits}, report


def daily_series(values, covariates=None) -> grid.Series:
    n = len(values)
    covariates = np.zeros((n, 0)) if covariates is None else np.asarray(covariates, float)
    return grid.Series("s", "D", JAN1 + np.arange(n) * DAY, np.asarray(values, float), covariates, ("f.csv",),
                       np.zeros(n, np.int32), np.arange(n))


# Grid, frequency and duplicates.

def test_rows_in_any_order_and_from_several_files_form_one_grid(tmp_path):
    a = write(tmp_path, "timestamp,value\n2024-01-03,3\n2024-01-01,1\n", "a.csv")
    b = write(tmp_path, "timestamp,value\n2024-01-05,5\n2024-01-02,\n", "b.csv")
    chunks = [c for path in (a, b) for _, c in reader.read_chunks(path, reader.Columns())]
    s, counts = grid.assemble("series", chunks, DataConfig(path=""))
    assert s.frequency == "D"
    np.testing.assert_array_equal(s.times, JAN1 + np.arange(5) * DAY)
    # 01-02 is empty and 01-04 has no row: both missing.
    np.testing.assert_array_equal(s.target, [1, np.nan, 3, np.nan, 5])
    assert counts == {"rows": 4, "duplicates_merged": 0, "missing_points": 2}
    assert s.where(4) == f"{b}:2" and s.where(3) is None


@pytest.mark.parametrize("stamps, expected", [
    (pd.date_range("2024-01-06", periods=6, freq="W-SAT"), "W-SAT"),
    (pd.date_range("2024-01-01", periods=6, freq="MS"), "MS"),
    (pd.date_range("2024-01-31", periods=6, freq="ME"), "ME"),
    (pd.date_range("2024-01-01", periods=6, freq="30min"), "30min"),
    (pd.date_range("2024-01-01", periods=6, freq="h"), "h"),
    (pd.date_range("2024-01-01", periods=6, freq="D").delete(2), "D"),
])
def test_frequency_is_inferred_from_the_most_common_step(stamps, expected):
    assert frequency_lib.infer_frequency(stamps.asi8 // 10**9) == expected


def test_a_monthly_step_off_month_boundaries_asks_for_the_frequency():
    stamps = pd.DatetimeIndex(["2024-01-15", "2024-02-15", "2024-03-15"], tz="UTC")
    with pytest.raises(frequency_lib.FrequencyError, match="give the frequency"):
        frequency_lib.infer_frequency(stamps.asi8 // 10**9)


def test_a_given_frequency_is_used_and_rows_off_it_are_named(tmp_path):
    path = write(tmp_path, "timestamp,value\n2024-01-01T00:00,1\n2024-01-01T01:00,2\n2024-01-01T01:30,3\n")
    with pytest.raises(reader.DataError) as error:
        run(path, frequency="1h", history=1, horizon=1)
    assert str(error.value) == (f"{path}:4: column 'timestamp': timestamp 2024-01-01T01:30:00+00:00 of series "
                                f"'series' is off its 1h grid that starts at 2024-01-01T00:00:00+00:00")


def test_a_repeated_timestamp_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path, "timestamp,value\n2024-01-01,1\n2024-01-02,2\n2024-01-01,3\n")
    with pytest.raises(reader.DataError, match=r"s.csv:4: column 'timestamp': timestamp 2024-01-01T00:00:00\+00:00 "
                                               r"of series 'series' repeats .*s.csv:2"):
        run(path, history=1, horizon=1)


@pytest.mark.parametrize("policy, expected", [("first", 1), ("last", 3), ("mean", 2), ("sum", 4), ("max", 3)])
def test_repeated_timestamps_merge_by_the_chosen_aggregation(tmp_path, policy, expected):
    path = write(tmp_path, "timestamp,value\n2024-01-01,1\n2024-01-02,5\n2024-01-01,3\n2024-01-03,6\n")
    chunks = [c for _, c in reader.read_chunks(path, reader.Columns())]
    s, counts = grid.assemble("series", chunks, DataConfig(path="", duplicates=policy))
    np.testing.assert_array_equal(s.target, [expected, 5, 6])
    assert counts["duplicates_merged"] == 1


def test_a_frequency_far_finer_than_the_data_is_refused(tmp_path):
    path = daily_csv(tmp_path, [1, 2, 3])
    with pytest.raises(reader.DataError, match="is the frequency right"):
        run(path, frequency="1min", history=1, horizon=1)


def test_probe_gives_the_frequency_and_length_of_the_first_series(tmp_path):
    path = daily_csv(tmp_path, [1, 2, None, 4, 5])
    frequency, points, missing = grid.probe(DataConfig(path=path))
    assert (frequency, points, missing.tolist()) == ("D", 5, [False, False, True, False, False])
    # After the gap policy's interpolation.
    assert not grid.probe(DataConfig(path=path, gap_policy="interpolate"))[2].any()


# Gap policies.

def test_gap_policy_error_names_the_empty_cell(tmp_path):
    path = daily_csv(tmp_path, [1, 2, None, 4, 5, 6])
    with pytest.raises(reader.DataError, match=r"s.csv:4: column 'value': missing value \(gap policy 'error'\)"):
        run(path, gap_policy="error", history=2, horizon=1)


def test_gap_policy_error_names_the_rows_around_a_missing_timestamp(tmp_path):
    path = write(tmp_path, "timestamp,value\n2024-01-01,1\n2024-01-02,2\n2024-01-04,4\n2024-01-05,5\n")
    with pytest.raises(reader.DataError) as error:
        run(path, gap_policy="error", history=2, horizon=1)
    assert str(error.value) == (f"series 'series': no row for 2024-01-03T00:00:00+00:00 on its D grid, between "
                                f"{path}:3 and {path}:4 (gap policy 'error')")


def test_interpolate_fills_short_runs_linearly_and_leaves_long_ones(tmp_path):
    values = [0, None, 2, 3, None, None, None, 7, 8, 9, 10, 11]
    result = run(daily_csv(tmp_path, values), gap_policy="interpolate", max_gap=2, history=2, horizon=1,
                 split_fractions=(0.5, 0.25))
    splits, report = splits_of(result)
    assert report["interpolated_points"] == 1 and report["missing_points"] == 4
    # Point 1 became 1.0; windows touching points 4..6 are dropped.
    np.testing.assert_array_equal(splits["train"].histories, [[0, 1], [1, 2]])
    assert report["dropped_windows"]["incomplete"] == 5  # starts 2..6


def test_interpolate_gaps_example():
    filled, count = grid.interpolate_gaps(np.array([1, np.nan, 3, np.nan, np.nan, np.nan, 7.0]), 2)
    np.testing.assert_array_equal(filled, [1, 2, 3, np.nan, np.nan, np.nan, 7])
    assert count == 1
    filled, count = grid.interpolate_gaps(np.array([np.nan, 1.0, np.nan]), 5)
    assert count == 0 and np.isnan(filled[[0, 2]]).all()  # no known point on one side


def test_interpolate_fills_covariates_too():
    series = daily_series([1, np.nan, 3, 4], covariates=[[10, 0], [np.nan, 1], [30, np.nan], [40, 3]])
    data = DataConfig(path="", gap_policy="interpolate", covariate_columns=("a",), future_covariate_columns=("b",))
    filled, count = grid.apply_gap_policy(series, data)
    np.testing.assert_array_equal(filled.target, [1, 2, 3, 4])
    np.testing.assert_array_equal(filled.covariates, [[10, 0], [20, 1], [30, 2], [40, 3]])
    assert count == 3


def test_skip_drops_exactly_the_windows_that_touch_a_missing_point(tmp_path):
    values = list(range(20))
    values[5] = None
    splits, report = splits_of(run(daily_csv(tmp_path, values), history=3, horizon=2,
                                   split_fractions=(0.5, 0.25)))
    # Span 19 days: cuts at day 9.5 and 14.25, i.e. at points 10 and 15. Starts 0..15 have targets
    # at s+3 and s+4; windows touching point 5 (starts 1..5) are skipped. Train: s+4 < 10, so 0
    # (start 6 has targets 9 and 10, across the cut: dropped). Eval: 10 <= s+3, s+4 < 15: 7..10.
    # Test: s+3 >= 15: 12..15 (start 11 straddles).
    np.testing.assert_array_equal(splits["train"].histories[:, 0], [0])
    np.testing.assert_array_equal(splits["eval"].histories[:, 0], [7, 8, 9, 10])
    np.testing.assert_array_equal(splits["test"].histories[:, 0], [12, 13, 14, 15])
    np.testing.assert_array_equal(splits["test"].targets[-1], [18, 19])
    assert splits["test"].origin_times[-1] == JAN1 + 17 * DAY
    np.testing.assert_array_equal(splits["test"].target_times[-1], JAN1 + np.array([18, 19]) * DAY)
    assert report["dropped_windows"] == {"incomplete": 5, "straddling": 2, "split_gap": 0}


# Exact windows for L, H, S and the split cuts.

@pytest.mark.parametrize("history, horizon, stride, train, evaluation, test", [
    # 12 points, cuts at fractions (0.5, 0.25) of 11 days: 5.5 and 8.25, i.e. points 6 and 9.
    (2, 1, 1, [0, 1, 2, 3], [4, 5, 6], [7, 8, 9]),
    (3, 2, 1, [0, 1], [3, 4], [6, 7]),
    (2, 1, 2, [0, 2], [4, 6], [8]),
    (4, 1, 3, [0], [3], [6]),
])
def test_windows_and_splits_for_each_history_horizon_and_stride(tmp_path, history, horizon, stride, train,
                                                                evaluation, test):
    splits, _ = splits_of(run(daily_csv(tmp_path, list(range(12))), history=history, horizon=horizon,
                              stride=stride, split_fractions=(0.5, 0.25)))
    for name, starts in (("train", train), ("eval", evaluation), ("test", test)):
        w = splits[name]
        np.testing.assert_array_equal(w.histories, [np.arange(s, s + history) for s in starts])
        np.testing.assert_array_equal(w.targets, [np.arange(s + history, s + history + horizon) for s in starts])


def test_a_season_longer_than_the_history_gives_windows_of_its_context():
    # v[i] = 10 (i mod 5) + i, with one bump at point 12: a season of 5 on a trend.
    values = np.array([10 * (i % 5) + i + (i == 12) for i in range(30)], float)
    temp, promo = 100.0 + np.arange(30), np.arange(30) % 3
    options = make_options(history=3, horizon=2, seasonal_periods=(5,), split_fractions=(0.5, 0.25),
                           covariate_columns=("temp",), future_covariate_columns=("promo",))
    assert options.windows.context == 5
    splits, dropped = windows_lib.cut_windows(daily_series(values, np.column_stack([temp, promo])), options)
    by_name = {w.split: w for w in splits}
    # Starts s = 0..23: context v[s..s+4], origin s+4, targets s+5 and s+6. Cuts at 14.5 and 21.75
    # days: points 15 and 22. Train s+6 < 15: 0..8; eval 15 <= s+5, s+6 < 22: 10..15; test s+5 >= 22:
    # 17..23; starts 9 and 16 straddle a cut.
    for name, starts in (("train", range(0, 9)), ("eval", range(10, 16)), ("test", range(17, 24))):
        w, starts = by_name[name], np.array(list(starts))
        np.testing.assert_array_equal(w.histories, [values[s:s + 5] for s in starts])
        np.testing.assert_array_equal(w.targets, [values[s + 5:s + 7] for s in starts])
        np.testing.assert_array_equal(w.origin_times, JAN1 + (starts + 4) * DAY)
        np.testing.assert_array_equal(w.target_times, JAN1 + (starts[:, None] + [5, 6]) * DAY)
        # Every covariate over the context, aligned with the history; a future one also at the target steps.
        np.testing.assert_array_equal(w.covariates["temp"], [temp[s:s + 5] for s in starts])
        np.testing.assert_array_equal(w.covariates["promo"], [promo[s:s + 5] for s in starts])
        np.testing.assert_array_equal(w.future_covariates["promo"], [promo[s + 5:s + 7] for s in starts])
        assert set(w.future_covariates) == {"promo"}
        assert w.future_covariates["promo"].shape == (len(starts), 2)
        # The value one season before each target step is in the context, and is the seasonal naive forecast.
        lags = w.histories[:, 4 + windowing.seasonal_lag_offsets(2, 5)]
        np.testing.assert_array_equal(lags, [values[s:s + 2] for s in starts])
        np.testing.assert_array_equal(lags, fm.seasonal_naive_forecast(w.histories, 2, 5))
        # On the trend, the target is its lag plus 5, except where the bump is.
        np.testing.assert_array_equal(w.targets - lags, [values[s + 5:s + 7] - values[s:s + 2] for s in starts])
        # MASE scale: the training part (points 0..14) minus itself a season earlier: ten differences
        # of 5, but 33 - 27 = 6 at point 12: 5.1.
        assert w.mase_scale == pytest.approx(5.1)
    assert dropped == {"incomplete": 0, "straddling": 2, "split_gap": 0}


def test_the_mase_scale_falls_back_to_persistence_and_is_nan_without_one():
    assert windows_lib.mase_scale(np.array([1.0, 2.0, 4.0, np.nan, 8.0]), 10) == pytest.approx(1.5)
    assert windows_lib.mase_scale(np.array([1.0, 2.0, 4.0, 7.0, 8.0]), 2) == pytest.approx((3 + 5 + 4) / 3)
    assert np.isnan(windows_lib.mase_scale(np.full(6, 3.0), 2))
    assert np.isnan(windows_lib.mase_scale(np.array([3.0]), 1))


def test_a_missing_future_covariate_drops_the_windows_whose_context_or_targets_hold_it():
    promo = np.arange(12.0)
    promo[7] = np.nan
    options = make_options(history=2, horizon=2, split_fractions=(0.5, 0.25), future_covariate_columns=("promo",))
    _, dropped = windows_lib.cut_windows(daily_series(np.arange(12.0), promo[:, None]), options)
    # Points s..s+3 hold point 7 for starts 4..7.
    assert dropped["incomplete"] == 4


def test_cut_points_given_as_timestamps(tmp_path):
    splits, _ = splits_of(run(daily_csv(tmp_path, list(range(12))), history=2, horizon=1,
                              split_times=("2024-01-07", "2024-01-10T00:00:00Z")))
    # Eval starts at point 6 (01-07), test at point 9 (01-10).
    np.testing.assert_array_equal(splits["train"].targets[:, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(splits["eval"].targets[:, 0], [6, 7, 8])
    np.testing.assert_array_equal(splits["test"].targets[:, 0], [9, 10, 11])


def test_a_split_gap_leaves_points_out_after_each_cut(tmp_path):
    splits, report = splits_of(run(daily_csv(tmp_path, list(range(12))), history=2, horizon=1,
                                   split_times=("2024-01-07", "2024-01-10"), split_gap=1))
    np.testing.assert_array_equal(splits["eval"].targets[:, 0], [7, 8])
    np.testing.assert_array_equal(splits["test"].targets[:, 0], [10, 11])
    assert report["dropped_windows"]["split_gap"] == 2


def _two_spans(tmp_path) -> str:
    """Series a: 20 days from 01-01 (values 0..19); series b: 20 days from 01-11 (values 100..119)."""
    rows = [f"a,2024-01-{d + 1:02d},{d}" for d in range(20)] + [f"b,2024-01-{d + 11:02d},{100 + d}" for d in range(20)]
    return write(tmp_path, "id,timestamp,value\n" + "\n".join(reversed(rows)) + "\n")


def _targets(result, series_id):
    return {w.split: w.targets[:, 0].tolist() for w in result[series_id][0]}


def test_global_scope_cuts_every_series_at_the_same_times(tmp_path):
    result = run(_two_spans(tmp_path), history=2, horizon=1, split_fractions=(0.5, 0.25), series_id_column="id")
    # The span of both: 01-01 to 01-30, 29 days; cuts at 14.5 and 21.75 days: 01-15T12:00, 01-22T18:00.
    # a (to 01-20) has no test window; b (from 01-11) few train ones.
    assert _targets(result, "a") == {"train": list(range(2, 15)), "eval": list(range(15, 20)), "test": []}
    assert _targets(result, "b") == {"train": [102, 103, 104], "eval": list(range(105, 112)),
                                     "test": list(range(112, 120))}
    eval_start, test_start = JAN1 + 14.5 * DAY, JAN1 + 21.75 * DAY
    for series_id in ("a", "b"):
        by_name = {w.split: w for w in result[series_id][0]}
        assert by_name["train"].target_times.max() < eval_start <= by_name["eval"].target_times.min()
        if len(by_name["test"]):
            assert by_name["eval"].target_times.max() < test_start <= by_name["test"].target_times.min()
    times = JAN1 + np.arange(20) * DAY
    options = make_options(history=2, horizon=1, split_fractions=(0.5, 0.25))
    np.testing.assert_array_equal(windows_lib.cut_times(times, options, (JAN1, JAN1 + 29 * DAY)),
                                  [eval_start, test_start])


def test_per_series_scope_cuts_each_series_in_its_own_span(tmp_path):
    result = run(_two_spans(tmp_path), history=2, horizon=1, split_fractions=(0.5, 0.25), series_id_column="id",
                 split_scope="per_series")
    # Each spans 19 days: cuts at its own points 10 and 15 (9.5 and 14.25 days).
    assert _targets(result, "a") == {"train": list(range(2, 10)), "eval": list(range(10, 15)),
                                     "test": list(range(15, 20))}
    assert _targets(result, "b") == {"train": list(range(102, 110)), "eval": list(range(110, 115)),
                                     "test": list(range(115, 120))}
    times = JAN1 + np.arange(20) * DAY
    options = make_options(history=2, horizon=1, split_fractions=(0.5, 0.25), split_scope="per_series")
    np.testing.assert_array_equal(windows_lib.cut_times(times, options, (JAN1, JAN1 + 29 * DAY)),
                                  JAN1 + np.array([9.5, 14.25]) * DAY)


def test_several_series_in_one_file_each_get_their_own_grid(tmp_path):
    rows = [f"a,2024-01-{d + 1:02d},{d}" for d in range(10)] + \
           [f"b,2024-02-{d + 1:02d}T12:00,{100 + d}" for d in range(0, 20, 2)]
    path = write(tmp_path, "id,timestamp,value\n" + "\n".join(reversed(rows)) + "\n")
    result = run(path, history=2, horizon=1, split_fractions=(0.6, 0.2), series_id_column="id",
                 split_scope="per_series")
    (a, report_a), (b, report_b) = result["a"], result["b"]
    assert report_a["frequency"] == "D" and report_b["frequency"] == "2D"
    # a: 10 daily points, cuts at points 6 and 8; b: 10 points every 2 days, the same in points.
    assert [len(w) for w in a] == [4, 2, 2] and [len(w) for w in b] == [4, 2, 2]
    np.testing.assert_array_equal(b[0].histories[0], [100, 102])
    assert all(w.series_id == "b" for w in b)


def test_a_series_shorter_than_its_context_plus_horizon_is_skipped_and_listed(tmp_path):
    rows = [f"long,2024-01-{d + 1:02d},{d}" for d in range(10)] + ["short,2024-01-01,1", "short,2024-01-02,2"]
    options = make_options(series_id_column="id", history=3, horizon=1)
    result = local_data.window_files([write(tmp_path, "id,timestamp,value\n" + "\n".join(rows) + "\n")], options)
    reason = "2 points, needs at least 4 (a context of 3 and a horizon of 1)"
    assert result["short"] == ([], {**result["short"][1], "skipped": reason})
    totals = summary.summarize([{"file": "x", "rows": 12}], [r for _, r in result.values()], options)
    assert totals["series_skipped"] == [{"series_id": "short", "rows": 2, "reason": reason}]
    assert totals["rows_in_skipped_series"] == 2
    assert totals["windows"] == {k: len(w) for k, w in zip(("train", "eval", "test"), result["long"][0])}
    assert "skipped          series 'short' (2 rows)" in summary.format_summary(totals)
    # The context, not the history, decides: a season of 9 needs 10 points.
    seasonal = make_options(history=3, horizon=1, seasonal_periods=(9,))
    _, report = local_data.window_files([daily_csv(tmp_path, list(range(9)), "nine.csv")], seasonal)["series"]
    assert report["skipped"] == "9 points, needs at least 10 (a context of 9 and a horizon of 1)"


def test_covariate_histories_are_aligned_with_the_target_history(tmp_path):
    path = daily_csv(tmp_path, list(range(10)), extra=[10 * i for i in range(10)])
    splits, _ = splits_of(run(path, history=3, horizon=1, split_fractions=(0.5, 0.25),
                              covariate_columns=("temp",)))
    w = splits["train"]
    np.testing.assert_array_equal(w.covariates["temp"], w.histories * 10)


def test_a_missing_covariate_drops_windows_whose_history_holds_it(tmp_path):
    temp = [10 * i for i in range(10)]
    temp[6] = ""
    path = daily_csv(tmp_path, list(range(10)), extra=temp)
    result = run(path, history=2, horizon=1, split_fractions=(0.5, 0.25),
                 covariate_columns=("temp",))
    _, report = splits_of(result)
    # Histories [5, 6] and [6, 7] hold point 6; its target may be missing at the forecast time.
    assert report["dropped_windows"]["incomplete"] == 2


# Encoding.

def test_encoded_examples_hold_every_feature_and_no_calendar(tmp_path):
    path = daily_csv(tmp_path, list(range(10)), extra=[10 * i for i in range(10)])
    splits, _ = splits_of(run(path, history=3, horizon=2, split_fractions=(0.5, 0.25), covariate_columns=("temp",)))
    w = splits["train"]
    records = windows_lib.encode_examples(w)
    assert len(records) == len(w)
    feature = tf.train.Example.FromString(records[0]).features.feature
    assert list(feature[features.HISTORY].float_list.value) == [0, 1, 2]
    assert list(feature[features.TARGET].float_list.value) == [3, 4]
    assert feature[features.SERIES_ID].bytes_list.value == [b"series"]
    assert feature[features.ORIGIN_TIMESTAMP].int64_list.value == [JAN1 + 2 * DAY]
    assert list(feature[features.TARGET_TIMESTAMPS].int64_list.value) == [JAN1 + 3 * DAY, JAN1 + 4 * DAY]
    assert list(feature[features.covariate_feature("temp")].float_list.value) == [0, 10, 20]
    # Persistence (no season) over the training part, points 0..4: every step is 1.
    assert list(feature[features.MASE_SCALE].float_list.value) == [1.0]
    # Calendar features are computed by Transform from the origin's timestamp, not stored.
    assert set(feature) == {features.HISTORY, features.TARGET, features.SERIES_ID, features.ORIGIN_TIMESTAMP,
                            features.TARGET_TIMESTAMPS, features.MASE_SCALE, features.covariate_feature("temp")}


def test_future_covariates_are_encoded_at_the_target_steps():
    options = make_options(history=2, horizon=2, split_fractions=(0.5, 0.25), future_covariate_columns=("promo",))
    splits, _ = windows_lib.cut_windows(daily_series(np.arange(12.0), 100 + np.arange(12.0)[:, None]), options)
    feature = tf.train.Example.FromString(windows_lib.encode_examples(splits[0])[1]).features.feature
    assert list(feature[features.future_feature("promo")].float_list.value) == [103, 104]
    # Its values up to the origin go with the history, as a past covariate's do.
    assert list(feature[features.covariate_feature("promo")].float_list.value) == [101, 102]


def test_batches_cover_the_windows_in_order():
    options = make_options(history=2, horizon=1, split_fractions=(0.8, 0.1))
    (train, _, _), _ = windows_lib.cut_windows(daily_series(np.arange(20.0)), options)
    parts = windows_lib.batches(train, size=4)
    assert [len(p) for p in parts] == [4, 4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([p.histories for p in parts]), train.histories)


def test_options_are_checked_and_survive_json():
    options = WindowingOptions.of(series_id_column="id", covariate_columns=("a", "b"), future_covariate_columns=("c",),
                                  split_times=("2020-01-01", "2021-01-01"), split_gap=2, frequency="W-SAT",
                                  points=520)
    assert (options.windows.seasonal_periods, options.windows.history) == ((52,), 52)
    assert options.data.path == "" and options.data.covariate_columns == ("a", "b")
    assert WindowingOptions.from_json(options.to_json()) == options
    for bad in ({"gap_policy": "fill"}, {"duplicates": "median"}, {"history": 0}, {"seasonal_periods": (1,)},
                {"split_fractions": (0.9, 0.2)}, {"split_times": ("2021-01-01", "2020-01-01")}, {"max_gap": 0},
                {"covariate_columns": ("air temp",)},
                {"covariate_columns": ("a",), "future_covariate_columns": ("a",)}):
        with pytest.raises(options_lib.ConfigError):
            WindowingOptions.of(**bad)
