"""Reading, validating, windowing and encoding one CSV series."""

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.example_gen import series as series_lib

DAY = 86400


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_series_is_sorted_and_put_on_its_grid(tmp_path):
    path = write(tmp_path, "timestamp,value\n2024-01-03,3\n2024-01-01,1\n2024-01-02,\n2024-01-05,5\n")
    s = series_lib.read_series(path, "timestamp", "value")
    assert s.step == DAY
    np.testing.assert_array_equal(s.times - s.times[0], np.arange(5) * DAY)
    # 01-02 is empty and 01-04 absent: both missing.
    np.testing.assert_array_equal(np.isnan(s.values), [False, True, False, True, False])
    np.testing.assert_array_equal(s.values[[0, 2, 4]], [1, 3, 5])


@pytest.mark.parametrize("text, message", [
    ("timestamp,value\n2024-01-01,1\nyesterday,2\n", ":3: column 'timestamp': cannot parse timestamp 'yesterday'"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,abc\n", ":3: column 'value': not a number: 'abc'"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,inf\n", ":3: column 'value': value is not finite"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,2\n2024-01-01,3\n", "repeats line 2"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,2\n2024-01-03,2\n2024-01-03T12:00,3\n", "off the 86400 s grid"),
    ("time,value\n2024-01-01,1\n", "no column 'timestamp'"),
])
def test_bad_input_names_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(series_lib.DataError) as error:
        series_lib.read_series(path, "timestamp", "value")
    assert str(error.value).startswith(path)
    assert message in str(error.value)


def test_windows_with_a_missing_value_are_skipped_and_splits_follow_time(tmp_path):
    values = [str(v) for v in range(20)]
    values[5] = ""
    rows = "".join(f"2024-01-{d + 1:02d},{v}\n" for d, v in enumerate(values))
    s = series_lib.read_series(write(tmp_path, "timestamp,value\n" + rows), "timestamp", "value")
    train, evaluation, test = series_lib.split_windows(s, history=3, horizon=2, stride=1, split_fractions=(0.5, 0.25))
    # Span 19 days: cuts at day 9.5 and 14.25. Starts 0..15 have targets on days s+3 and s+4;
    # windows touching day 5 (starts 1..5) are skipped. Train: s+4 < 9.5, so only 0 (start 6 has
    # targets on days 9 and 10, across the cut: dropped). Eval: s+3 >= 9.5 and s+4 < 14.25, 7..10.
    # Test: s+3 >= 14.25, 12..15 (start 11 straddles).
    np.testing.assert_array_equal(train.histories[:, 0], [0])
    np.testing.assert_array_equal(evaluation.histories[:, 0], [7, 8, 9, 10])
    np.testing.assert_array_equal(test.histories[:, 0], [12, 13, 14, 15])
    np.testing.assert_array_equal(test.targets[-1], [18, 19])
    # The origin is the last history point.
    assert test.origin_times[-1] == s.times[17]


def test_examples_round_trip(tmp_path):
    windows = series_lib.SplitWindows("train", np.array([[1.0, 2.0]]), np.array([[3.0]]), np.array([1700000000]))
    (record,) = list(series_lib.encode_examples("a", windows))
    feature = tf.train.Example.FromString(record).features.feature
    assert list(feature[features.HISTORY].float_list.value) == [1.0, 2.0]
    assert list(feature[features.TARGET].float_list.value) == [3.0]
    assert feature[features.SERIES_ID].bytes_list.value == [b"a"]
    assert feature[features.ORIGIN_TIMESTAMP].int64_list.value == [1700000000]
