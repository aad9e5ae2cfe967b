"""``predict --input``: the windows file is read and checked before any call, and each mistake is one
line naming the file, the window (JSON) or line (CSV), and the input."""

import json

import numpy as np
import pytest

from pipeline import cli, predict_input
from pipeline.errors import InputError


def write(tmp_path, content, name="w.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("content", [
    [[1, 2, 3], [4, 5, 6]],
    {"history": [[1, 2, 3], [4, 5, 6]], "origin_timestamp": [10, 20]},
    {"instances": [[1, 2, 3], [4, 5, 6]]},
    {"instances": [{"history": [1, 2, 3], "origin_timestamp": 10}, {"history": [4, 5, 6], "origin_timestamp": 20}]},
    {"signature_name": "serving_default", "inputs": {"history": [[1, 2, 3], [4, 5, 6]], "origin_timestamp": [10, 20]}},
    {"inputs": [[1, 2, 3], [4, 5, 6]]},
], ids=["list", "columns", "instances-rows", "instances-named", "tf-serving-columns", "inputs-list"])
def test_json_windows_in_every_accepted_shape_read_the_same(tmp_path, content):
    inputs = predict_input.read_inputs(write(tmp_path, content))
    np.testing.assert_array_equal(inputs["history"], np.array([[1, 2, 3], [4, 5, 6]], np.float32))
    assert inputs["history"].dtype == np.float32
    if "origin_timestamp" in inputs:
        np.testing.assert_array_equal(inputs["origin_timestamp"], [10, 20])
        assert inputs["origin_timestamp"].dtype == np.int64


def test_one_window_as_a_flat_list_and_csv_windows(tmp_path):
    np.testing.assert_array_equal(predict_input.read_inputs(write(tmp_path, [1, 2.5]))["history"], [[1, 2.5]])
    csv = write(tmp_path, "1,2,3\n\n4, 5 ,6\n", "w.csv")
    np.testing.assert_array_equal(predict_input.read_inputs(csv)["history"], [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("content, message", [
    ('{"history": [[1, 2]', ":1:20: not valid JSON: Expecting ',' delimiter"),
    ([], ": history: no windows (give a list of windows, each a list of numbers)"),
    ([[]], ": history: window 1 has no values"),
    ([[1, 2], [3, "x"]], ": history: window 2, value 2: not a number: \"x\""),
    ([[1, 2], [3, True]], ": history: window 2, value 2: not a number: true"),
    ([[1, 2], [3, 4, 5]], ": history: window 2 has 3 values, window 1 has 2; all windows must be as long"),
    ([[1, 2], [3, 1e300]], ": history: window 2, value 2: 1e+300 is beyond ±1e+15, more than the model can hold"),
    ('[[1, NaN]]', ": history: window 1, value 2: nan is not a value (a window cannot have gaps)"),
    ("\"abc\"", ": history: no windows (give a list of windows, each a list of numbers); got \"abc\""),
    ({"origin_timestamp": [1]}, ": no \"history\" (keys: origin_timestamp)"),
    ({"history": [[1, 2]], "origin": [1]}, ": unknown input 'origin' (inputs: history, origin_timestamp, series_id, "
                                           "covariate_<column>, future_<column>)"),
    ({"history": [[1, 2], [3, 4]], "origin_timestamp": [1]},
     ": origin_timestamp: 1 value for 2 windows"),
    ({"history": [[1, 2]], "origin_timestamp": ["2024-01-01"]},
     ": origin_timestamp: window 1: not epoch seconds: \"2024-01-01\""),
    ({"instances": [{"history": [1, 2]}, {"history": [3, 4], "origin_timestamp": 5}]},
     ": instances: instance 2 has inputs history, origin_timestamp; instance 1 has history"),
    ({"instances": []}, ": instances: no instances"),
    ({"signature_name": "other", "instances": [[1, 2]]}, ": signature_name 'other': the model serves only "
                                                         "'serving_default'"),
], ids=["json-syntax", "empty", "empty-window", "string", "bool", "ragged", "huge", "nan", "string-top",
        "no-history", "unknown-key", "short-origin", "origin-string", "instances-keys", "no-instances", "signature"])
def test_a_bad_json_file_is_one_line_naming_file_window_and_input(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(InputError) as error:
        predict_input.read_inputs(path)
    assert str(error.value) == path + message


@pytest.mark.parametrize("content, message", [
    ("1,2\n3,x\n", ":2: value 2: not a number: 'x'"),
    ("1,2\n\n3,4,5\n", ":3: 3 values, line 1 has 2; all windows must be as long"),
    ("\n\n", ": no windows (one window a line, its values separated by commas)"),
    ("1;2;3\n", ":1: value 1: not a number: '1;2;3' (values are separated by commas)"),
], ids=["string", "ragged", "empty", "semicolons"])
def test_a_bad_csv_file_is_one_line_naming_file_line_and_value(tmp_path, content, message):
    path = write(tmp_path, content, "w.csv")
    with pytest.raises(InputError) as error:
        predict_input.read_inputs(path)
    assert str(error.value) == path + message


def test_the_command_refuses_a_bad_file_before_it_calls_the_server(tmp_path, capsys):
    path = write(tmp_path, [[1, 2], [3]])
    # Nothing listens on port 9 of loopback: a call would fail differently, and later.
    assert cli.main(["predict", "--server", "127.0.0.1:9", "--input", path]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"lstm-forecast predict: error: {path}: history: window 2 has 1 values, window 1 has 2; "
                            "all windows must be as long\n")
    assert captured.out == ""


def test_a_missing_input_file_is_one_line(tmp_path, capsys):
    assert cli.main(["predict", "--server", "127.0.0.1:9", "--input", str(tmp_path / "none.json")]) == 1
    assert capsys.readouterr().err == f"lstm-forecast predict: error: {tmp_path / 'none.json'}: no such file\n"
