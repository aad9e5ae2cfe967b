"""Per-series example generation: grid, duplicates, gap policies, exact windows and splits for
every option, calendar features, and the encoded tf.Examples."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import features
from components.example_gen import frequency as frequency_lib
from components.example_gen import reader
from components.example_gen import series as series_lib

DAY = 86400
JAN1 = 1704067200  # 2024-01-01T00:00:00Z, a Monday


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


def run(paths, **options):
    options.setdefault("calendar_features", False)
    return series_lib.window_files(paths if isinstance(paths, list) else [paths],
                                   series_lib.WindowingOptions.of(**options))


def splits_of(result, series_id=reader.DEFAULT_SERIES_ID):
    splits, report = result[series_id]
    return {w.split: w for w in splits}, report


# Grid, frequency and duplicates.

def test_rows_in_any_order_and_from_several_files_form_one_grid(tmp_path):
    a = write(tmp_path, "timestamp,value\n2024-01-03,3\n2024-01-01,1\n", "a.csv")
    b = write(tmp_path, "timestamp,value\n2024-01-05,5\n2024-01-02,\n", "b.csv")
    chunks = [c for path in (a, b) for _, c in reader.read_chunks(path, reader.Columns())]
    s, counts = series_lib.assemble("series", chunks, series_lib.WindowingOptions.of())
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
    s, counts = series_lib.assemble("series", chunks, series_lib.WindowingOptions.of(duplicates=policy))
    np.testing.assert_array_equal(s.target, [expected, 5, 6])
    assert counts["duplicates_merged"] == 1


def test_a_frequency_far_finer_than_the_data_is_refused(tmp_path):
    path = daily_csv(tmp_path, [1, 2, 3])
    with pytest.raises(reader.DataError, match="is the frequency right"):
        run(path, frequency="1min", history=1, horizon=1)


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
    filled, count = series_lib.interpolate_gaps(np.array([1, np.nan, 3, np.nan, np.nan, np.nan, 7.0]), 2)
    np.testing.assert_array_equal(filled, [1, 2, 3, np.nan, np.nan, np.nan, 7])
    assert count == 1
    filled, count = series_lib.interpolate_gaps(np.array([np.nan, 1.0, np.nan]), 5)
    assert count == 0 and np.isnan(filled[[0, 2]]).all()  # no known point on one side


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


def test_several_series_in_one_file_each_get_their_own_grid_and_cuts(tmp_path):
    rows = [f"a,2024-01-{d + 1:02d},{d}" for d in range(10)] + \
           [f"b,2024-02-{d + 1:02d}T12:00,{100 + d}" for d in range(0, 20, 2)]
    path = write(tmp_path, "id,timestamp,value\n" + "\n".join(reversed(rows)) + "\n")
    result = run(path, history=2, horizon=1, split_fractions=(0.6, 0.2),
                 series_id_column="id")
    (a, report_a), (b, report_b) = result["a"], result["b"]
    assert report_a["frequency"] == "D" and report_b["frequency"] == "2D"
    # a: 10 daily points, cuts at points 6 and 8; b: 10 points every 2 days, the same in points.
    assert [len(w) for w in a] == [4, 2, 2] and [len(w) for w in b] == [4, 2, 2]
    np.testing.assert_array_equal(b[0].histories[0], [100, 102])
    assert all(w.series_id == "b" for w in b)


def test_a_series_shorter_than_history_plus_horizon_is_skipped_and_listed(tmp_path):
    rows = [f"long,2024-01-{d + 1:02d},{d}" for d in range(10)] + ["short,2024-01-01,1", "short,2024-01-02,2"]
    options = series_lib.WindowingOptions.of(series_id_column="id", history=3, horizon=1, calendar_features=False)
    result = series_lib.window_files([write(tmp_path, "id,timestamp,value\n" + "\n".join(rows) + "\n")], options)
    assert result["short"] == ([], {**result["short"][1], "skipped": "2 points, needs at least history + horizon = 4"})
    summary = series_lib.summarize([{"file": "x", "rows": 12}], [r for _, r in result.values()], options)
    assert summary["series_skipped"] == [{"series_id": "short", "rows": 2,
                                          "reason": "2 points, needs at least history + horizon = 4"}]
    assert summary["rows_in_skipped_series"] == 2
    assert summary["windows"] == {k: len(w) for k, w in zip(("train", "eval", "test"), result["long"][0])}
    assert "skipped          series 'short' (2 rows)" in series_lib.format_summary(summary)


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


# Calendar features.

def test_calendar_features_follow_the_frequency():
    hourly = frequency_lib.calendar_features(np.array([JAN1 + 6 * 3600]), 3600)
    assert sorted(hourly) == sorted(features.CALENDAR_FEATURES)
    np.testing.assert_allclose(hourly["hour_of_day_sin"], [1.0], atol=1e-6)  # 06:00 is a quarter day
    np.testing.assert_allclose(hourly["day_of_week_cos"], [np.cos(2 * np.pi * 0.25 / 7)], atol=1e-6)
    weekly = frequency_lib.calendar_features(np.array([JAN1]), 7 * DAY)
    assert sorted(weekly) == ["day_of_year_cos", "day_of_year_sin"]
    np.testing.assert_allclose(weekly["day_of_year_cos"], [1.0])
    # 2024 is a leap year: 2 July 00:00 is exactly half way (183 of 366 days).
    july = frequency_lib.calendar_features(np.array([JAN1 + 183 * DAY]), DAY)
    np.testing.assert_allclose(july["day_of_year_cos"], [-1.0], atol=1e-6)


# Encoding.

def test_encoded_examples_hold_every_feature(tmp_path):
    path = daily_csv(tmp_path, list(range(10)), extra=[10 * i for i in range(10)])
    splits, _ = splits_of(run(path, history=3, horizon=2, split_fractions=(0.5, 0.25), calendar_features=True,
                              covariate_columns=("temp",)))
    w = splits["train"]
    records = series_lib.encode_examples(w)
    assert len(records) == len(w)
    feature = tf.train.Example.FromString(records[0]).features.feature
    assert list(feature[features.HISTORY].float_list.value) == [0, 1, 2]
    assert list(feature[features.TARGET].float_list.value) == [3, 4]
    assert feature[features.SERIES_ID].bytes_list.value == [b"series"]
    assert feature[features.ORIGIN_TIMESTAMP].int64_list.value == [JAN1 + 2 * DAY]
    assert list(feature[features.TARGET_TIMESTAMPS].int64_list.value) == [JAN1 + 3 * DAY, JAN1 + 4 * DAY]
    assert list(feature[features.covariate_feature("temp")].float_list.value) == [0, 10, 20]
    # Daily data: day of week and day of year, no hour of day. 2024-01-03 is a Wednesday (2).
    assert "hour_of_day_sin" not in feature
    np.testing.assert_allclose(feature["day_of_week_sin"].float_list.value, [np.sin(2 * np.pi * 2 / 7)], rtol=1e-6)


def test_options_are_checked_and_survive_json():
    options = series_lib.WindowingOptions.of(series_id_column="id", covariate_columns=("a", "b"), frequency="W-SAT",
                                             split_times=("2020-01-01", "2021-01-01"), split_gap=2)
    assert series_lib.WindowingOptions.from_json(options.to_json()) == options
    for bad in ({"gap_policy": "fill"}, {"duplicates": "median"}, {"history": 0}, {"frequency": "fortnightly"},
                {"split_fractions": (0.9, 0.2)}, {"split_times": ("2021-01-01", "2020-01-01")}, {"max_gap": 0}):
        with pytest.raises(series_lib.OptionsError):
            series_lib.WindowingOptions.of(**bad)
