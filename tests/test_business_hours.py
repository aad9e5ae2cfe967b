"""A grid of business hours (``--business-hours 07:00-21:00``, ``--business-days Mon-Fri``): nights
and closed days are no points of the grid, a gap inside the hours still is a gap, the natural
seasons are a business day and a business week, and the calendar of every step, the forecast times
of ``predict --series`` and a pipeline run follow the business steps.

The data is call-centre-like: hourly calls from 07:00 to 20:00 (the hour starting at 20:00 is the
last) on weekdays, with a daily profile and a weekly one.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import features, transform, windowing
from components import forecast_metrics as fm
from components.example_gen import executor, grid, reader, summary
from components.example_gen import frequency as frequency_lib
from components.example_gen import options as options_lib
from components.example_gen.options import DataConfig, WindowConfig, WindowingOptions
from components.settings import ConfigError
from pipeline import cli, local_data, local_runner
from pipeline import config as config_lib
from pipeline import report as report_lib

HOURS = frequency_lib.BusinessHours.parse("07:00-21:00", "Mon-Fri")
MON = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday


def call_centre(weeks: int = 12, seed: int = 0) -> pd.DataFrame:
    """Hourly calls 07:00-20:00 on weekdays: a midday peak, busier Mondays, noise."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(MON, periods=weeks * 7, freq="D")
    days = days[days.dayofweek < 5]
    times = pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in days for h in range(7, 21)])
    profile = 40 + 30 * np.sin(np.pi * (times.hour - 7) / 14) + 10 * (times.dayofweek == 0)
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%dT%H:%M:%S"),
                         "calls": np.round(profile + rng.normal(0, 2, len(times)), 2)})


def write(tmp_path, frame, name="calls.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def assemble(path, **data):
    config = DataConfig(path=path, target_column="calls", **data)
    chunks = [c for _, c in reader.read_chunks(path, config.columns)]
    return grid.assemble(reader.DEFAULT_SERIES_ID, chunks, config)


def test_the_grid_holds_only_the_business_hours(tmp_path):
    path = write(tmp_path, call_centre(weeks=2))
    series, counts = assemble(path, business_hours="07:00-21:00")
    assert len(series.times) == 10 * 14 and counts["missing_points"] == 0
    stamps = pd.to_datetime(series.times, unit="s")
    assert set(stamps.hour) == set(range(7, 21)) and set(stamps.dayofweek) == set(range(5))
    # Without the option every closed hour from Monday 07:00 to the second Friday 20:00 is missing.
    _, plain = assemble(path)
    assert plain["missing_points"] == (11 * 24 + 13 + 1) - 10 * 14


def test_a_gap_inside_the_hours_is_a_gap_and_no_window_spans_a_night_as_one(tmp_path):
    frame = call_centre(weeks=3)
    gap = frame.index[frame["timestamp"] == "2024-01-10T11:00:00"][0]
    path = write(tmp_path, frame.drop(index=gap))
    options = WindowingOptions(DataConfig(path=path, target_column="calls", business_hours="07:00-21:00"),
                               options_lib.resolve(WindowConfig(history=6, horizon=2, seasonal_periods=(14,)), "h",
                                                   15 * 14, HOURS))
    (splits, report), = local_data.window_files([path], options).values()
    points = 15 * 14
    # The context holds 3 business days (--seasonal-cycles, as many as a quarter of 15 days holds).
    context, horizon = options.windows.context, 2
    assert context == 3 * 14
    # Every window but those whose context or targets hold the missing point: 44 of them.
    assert report["points"] == points and report["missing_points"] == 1
    assert report["dropped_windows"]["incomplete"] == context + horizon
    windowed = sum(len(w) for w in splits) + sum(report["dropped_windows"].values())
    assert windowed == points - context - horizon + 1
    # Consecutive target times are an hour apart, or a night (20:00 to 07:00) or a weekend apart.
    steps = np.unique(np.diff(np.concatenate([w.target_times for w in splits]), axis=1))
    assert set(steps) == {3600, 11 * 3600, (2 * 24 + 11) * 3600}


def test_a_row_outside_the_hours_is_named(tmp_path):
    frame = pd.concat([call_centre(weeks=1), pd.DataFrame({"timestamp": ["2024-01-06T10:00:00"], "calls": [3.0]})])
    path = write(tmp_path, frame)
    with pytest.raises(reader.DataError) as error:
        assemble(path, business_hours="07:00-21:00")
    assert str(error.value) == (
        f"{path}:72: column 'timestamp': timestamp 2024-01-06T10:00:00+00:00 (a Saturday) of series 'series' is "
        f"outside its business hours, Mon-Fri 07:00-21:00 (--business-hours, --business-days)")


def test_data_kept_to_business_hours_without_the_option_gets_a_hint(tmp_path):
    path = write(tmp_path, call_centre(weeks=3))
    options = WindowingOptions.of(points=15 * 14, path=path, target_column="calls", frequency="h", history=4,
                                  horizon=2)
    (_, report), = local_data.window_files([path], options).values()
    assert report["hint"] == ("series 'series': its rows keep to Mon-Fri 07:00-21:00, and its h grid has 236 "
                              "missing points in the closed hours: --business-hours 07:00-21:00 --business-days "
                              "Mon-Fri makes a grid of the open hours only")
    assert report["hint"] in summary.format_summary(summary.summarize([], [report], options))
    with_hours = WindowingOptions.of(points=15 * 14, path=path, target_column="calls", business_hours="07:00-21:00",
                                     history=4, horizon=2)
    (_, report), = local_data.window_files([path], with_hours).values()
    assert report["hint"] is None
    assert ("frequency        h (1 series) (inferred), business hours Mon-Fri 07:00-21:00\nmissing points   0 "
            in summary.format_summary(summary.summarize([], [report], with_hours)))


@pytest.mark.parametrize("frequency, hours, days, expected", [
    ("h", "07:00-21:00", "Mon-Fri", (14, 70)),
    ("30min", "07:00-21:00", "Mon-Fri", (28, 140)),
    ("h", "09:00-17:00", "Mon-Sat", (8, 48)),
    ("h", "00:00-24:00", "Mon-Fri", (24, 120)),
    ("4h", "08:00-16:00", "Mon,Wed,Fri", (2, 6)),
])
def test_the_natural_seasons_are_a_business_day_and_week(frequency, hours, days, expected):
    business = frequency_lib.BusinessHours.parse(hours, days)
    assert options_lib.natural_periods(frequency, business) == expected
    resolved = options_lib.resolve(WindowConfig(horizon=4), frequency, 10**6, business)
    assert resolved.seasonal_periods == expected
    assert resolved.history == options_lib.default_history(expected, 4)


@pytest.mark.parametrize("hours, days, message", [
    ("7-21", "Mon-Fri", "--business-hours must be HH:MM-HH:MM"),
    ("21:00-07:00", "Mon-Fri", "--business-hours must close after it opens"),
    ("07:00-21:00", "Mon-Xyz", "--business-days must be weekdays"),
])
def test_bad_business_hours_are_refused_naming_the_flag(hours, days, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(path="", business_hours=hours, business_days=days)


def test_a_step_that_does_not_divide_the_hours_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--business-hours 07:00-21:00 needs a step that divides its 14 hours"):
        DataConfig(path="", business_hours="07:00-21:00", frequency="4h")
    with pytest.raises(ConfigError, match="needs a step that divides"):
        DataConfig(path="", business_hours="07:00-21:00", frequency="D")


def test_following_continues_the_business_grid():
    friday_19 = int(pd.Timestamp("2024-01-05T19:00", tz="UTC").timestamp())
    after = frequency_lib.following(friday_19, "h", 4, HOURS)
    assert list(pd.to_datetime(after, unit="s").strftime("%a %H:%M")) == ["Fri 20:00", "Mon 07:00", "Mon 08:00",
                                                                         "Mon 09:00"]


def test_step_times_agree_with_the_grid_backwards_and_forwards():
    start = int(MON.timestamp()) + 7 * 3600
    points = frequency_lib.grid(start, start + 21 * 86_400, "h", HOURS)
    origin = 100
    offsets = np.arange(-origin, len(points) - origin)
    np.testing.assert_array_equal(frequency_lib.business_step_times(points[origin], offsets, 3600, HOURS), points)


def test_the_calendar_of_every_step_is_that_of_its_business_time():
    start = int(MON.timestamp()) + 7 * 3600
    points = frequency_lib.grid(start, start + 21 * 86_400, "h", HOURS)
    history, horizon = 20, 6
    origins = np.array([[points[30]], [points[69]], [points[125]]], np.int64)
    config = transform.transform_config(
        {"history": history, "horizon": horizon, "seasonal_lags": False, "seasonal_periods": [],
         "calendar_features": True, "step_seconds": 3600.0, "business_hours": list(HOURS.to_tuple())}, "window_std")
    result = transform.calendar_features(tf.constant(origins), history, horizon, config["step_seconds"],
                                         config["business_hours"])
    cycles = transform.calendar_cycles(3600.0)
    for row, i in enumerate((30, 69, 125)):
        past, future = points[i - history + 1:i + 1], points[i + 1:i + 1 + horizon]
        expected_past = transform.calendar_phases(tf.constant(past[None, :]), cycles).numpy().reshape(-1)
        expected_future = transform.calendar_phases(tf.constant(future[None, :]), cycles).numpy().reshape(-1)
        np.testing.assert_allclose(result[features.CALENDAR_HISTORY].numpy()[row], expected_past, atol=1e-6)
        np.testing.assert_allclose(result[features.CALENDAR_FUTURE].numpy()[row], expected_future, atol=1e-6)


def test_the_flags_set_the_business_hours():
    flags = ["run", "--data", "calls.csv", "--output", "out", "--business-hours", "07:00-21:00",
             "--business-days", "Mon-Sat"]
    config = cli.pipeline_config_from_flags(cli.build_parser().parse_args(flags))
    assert config.data.business == frequency_lib.BusinessHours.parse("07:00-21:00", "Mon-Sat")


@pytest.mark.slow  # a whole pipeline run: about 55 s on a busy 2-core machine
def test_a_pipeline_run_on_business_hours_evaluates_a_daily_seasonal_naive(tmp_path):
    path = write(tmp_path, call_centre(weeks=12))
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=path, target_column="calls", business_hours="07:00-21:00"),
        output_dir=str(tmp_path / "run"), windows=config_lib.WindowConfig(horizon=4),
        model=config_lib.ModelConfig(lstm_units=(16,), epochs=2), evaluation=config_lib.EvaluationConfig(max_skill=1e6))
    result = local_runner.run(config)
    config = result.config
    assert config.windows.seasonal_periods == (14, 70) and config.windows.history == 28
    assert executor.read_summary(result.examples_uri)["missing_points"] == 0
    report_lib.make(config, result)
    with open(os.path.join(config.report_dir, report_lib.SUMMARY_FILE)) as f:
        metrics = json.load(f)["metrics"][windowing.EVAL]
    windows = local_data.read_split_windows(result.examples_uri, windowing.EVAL)
    # The context: the default 12 business days (--seasonal-cycles), within a quarter of the 840 points.
    context = config.windows.context
    assert windows.histories.shape[1] == context == 12 * 14
    # The daily seasonal naive: the value 14 business hours before each target, a business day earlier.
    naive = windows.histories[:, context - 14:context - 14 + 4].astype(np.float64)
    assert metrics[fm.seasonal_naive(14)]["mae"] == pytest.approx(np.mean(np.abs(windows.targets - naive)), rel=1e-4)
    # A daily profile: a business day ago is a far better guess than the last hour (Mondays, busier,
    # make it worse than the business week ago).
    assert metrics[fm.seasonal_naive(14)]["mae"] < 0.75 * metrics["persistence"]["mae"]
    assert result.pushed_model is not None


def test_business_days_without_business_hours_are_refused():
    with pytest.raises(ConfigError, match=r"--business-days Mon-Sat needs --business-hours"):
        DataConfig(path="x.csv", business_days="Mon-Sat")
