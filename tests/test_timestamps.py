"""Messages about timestamps and file layouts that name the real problem: mixed UTC offsets, dates
mixed with times of day, a file separated by ';' or tabs, and a multi-series file without a series
named for ``predict --series``."""

import numpy as np
import pandas as pd
import pytest

from components.example_gen import grid, reader
from components.example_gen.options import DataConfig
from pipeline import local_data


def write(tmp_path, lines, name="s.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def assemble(path, **data):
    chunks = [c for _, c in reader.read_chunks(path, DataConfig(path=path, **data).columns)]
    return grid.assemble(reader.DEFAULT_SERIES_ID, chunks, DataConfig(path=path, **data))


def test_mixed_utc_offsets_are_named_instead_of_an_odd_grid(tmp_path):
    days = pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d")
    path = write(tmp_path, ["timestamp,value"] + [f"{d}T00:00:00{'+05:00' if i % 2 else '+00:00'},{i}"
                                                 for i, d in enumerate(days)])
    with pytest.raises(reader.DataError) as error:
        assemble(path)
    assert str(error.value) == (
        f"{path}:3: column 'timestamp': '2024-01-02T00:00:00+05:00' has UTC offset +05:00 but {path}:2 has "
        f"+00:00: the timestamps of series 'series' mix UTC offsets, so in UTC they fit no regular grid; write "
        f"them all with one offset, or all without one (read as UTC)")


def test_mixed_offsets_that_fit_a_grid_in_utc_are_fine(tmp_path):
    # Hourly local times across the spring change of daylight saving time: in UTC a gap-free hourly grid.
    stamps = pd.date_range("2024-03-31T00:00", periods=6, freq="h", tz="UTC").tz_convert("Europe/Berlin")
    path = write(tmp_path, ["timestamp,value"] + [f"{t.isoformat()},{i}" for i, t in enumerate(stamps)])
    series, counts = assemble(path)
    assert series.frequency == "h" and counts["missing_points"] == 0
    np.testing.assert_array_equal(np.diff(series.times), [3600] * 5)


def test_dates_mixed_with_times_of_day_are_named_instead_of_an_odd_grid(tmp_path):
    days = pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d")
    path = write(tmp_path, ["timestamp,value"] + [f"{d}{' 12:00' if i % 2 else ''},{i}" for i, d in enumerate(days)])
    with pytest.raises(reader.DataError) as error:
        assemble(path)
    assert str(error.value) == (
        f"{path}:3: column 'timestamp': '2024-01-02 12:00' has a time of day but {path}:2 ('2024-01-01') is a "
        f"date alone, read as midnight: series 'series' mixes the two, so its times fit no regular grid; write "
        f"them all one way")


def test_dates_beside_midnight_and_other_hours_of_hourly_data_are_fine(tmp_path):
    # Some tools write midnight as a bare date: on an hourly grid that is no problem.
    stamps = pd.date_range("2024-01-01", periods=30, freq="h")
    text = [t.strftime("%Y-%m-%d") if t.hour == 0 else t.strftime("%Y-%m-%d %H:%M") for t in stamps]
    path = write(tmp_path, ["timestamp,value"] + [f"{t},{i}" for i, t in enumerate(text)])
    series, counts = assemble(path)
    assert series.frequency == "h" and len(series.times) == 30 and counts["missing_points"] == 0


@pytest.mark.parametrize("separator, shown", [(";", "';'"), ("\t", "a tab")])
def test_a_file_separated_by_semicolons_or_tabs_is_named_as_such(tmp_path, separator, shown):
    path = write(tmp_path, [f"timestamp{separator}value", f"2024-01-01{separator}1", f"2024-01-02{separator}2"])
    with pytest.raises(reader.DataError) as error:
        list(reader.read_chunks(path, reader.Columns()))
    assert str(error.value) == (
        f"{path}:1: the header is one column, 'timestamp{separator}value': the file looks separated by "
        f"{shown}, but columns are read separated by commas: write it with commas")


def test_predict_series_without_series_id_on_many_series_asks_for_one(tmp_path):
    rows = [f"2024-01-{d:02d},{s},{d}" for s in ("north", "south", "east", "west") for d in range(1, 11)]
    path = write(tmp_path, ["timestamp,store,value"] + rows)
    data = DataConfig(path=path, series_id_column="store")
    with pytest.raises(reader.DataError) as error:
        local_data.latest_window([path], data, history=3)
    assert str(error.value) == (f"{path}: the data holds 4 series (column 'store'); name one with --series-id, "
                                f"e.g. --series-id east (series: east, north, south, west)")
    with pytest.raises(reader.DataError) as error:
        local_data.latest_window([path], data, history=3, series_id="middle")
    assert str(error.value) == (f"{path}: no series 'middle' in column 'store' (4 series: east, north, south, "
                                f"west)")
    _, values = local_data.latest_window([path], data, history=3, series_id="south")
    np.testing.assert_array_equal(values, [8, 9, 10])
