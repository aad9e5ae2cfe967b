"""Reading CSV and Parquet files in chunks: file matching, timestamp formats, and errors that name
the file, line and column."""

import bz2
import gzip
import lzma

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from components.example_gen import reader

COLUMNS = reader.Columns("timestamp", "value")


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def read_all(path, columns=COLUMNS, chunk_rows=reader.CHUNK_ROWS):
    return list(reader.read_chunks(path, columns, chunk_rows))


def test_iso_timestamps_with_and_without_zone_and_epoch_seconds_agree(tmp_path):
    iso = write(tmp_path, "timestamp,value\n2024-01-01T01:00:00+01:00,1\n2024-01-01T01:00:00,2\n", "iso.csv")
    epoch = write(tmp_path, "timestamp,value\n1704067200,1\n1704070800,2\n", "epoch.csv")
    (_, a), = read_all(iso)
    (_, b), = read_all(epoch)
    np.testing.assert_array_equal(a.times, [1704067200, 1704070800])
    np.testing.assert_array_equal(b.times, a.times)


def test_empty_and_nan_values_are_missing_not_errors(tmp_path):
    (_, chunk), = read_all(write(tmp_path, "timestamp,value\n2024-01-01,\n2024-01-02,NaN\n2024-01-03, 3 \n"))
    np.testing.assert_array_equal(np.isnan(chunk.target), [True, True, False])
    assert chunk.target[2] == 3


def test_rows_are_split_by_series_across_chunks_with_their_row_numbers(tmp_path):
    text = "id,timestamp,value,temp\n" + "".join(f"{'ab'[i % 2]},2024-01-{i // 2 + 1:02d},{i},{10 * i}\n"
                                                 for i in range(7))
    columns = reader.Columns("timestamp", "value", series_id="id", covariates=("temp",))
    chunks = read_all(write(tmp_path, text), columns, chunk_rows=3)
    assert [sid for sid, _ in chunks] == ["a", "b", "b", "a", "a"]  # rows 0-2, 3-5, 6
    rows_a = np.concatenate([c.rows for sid, c in chunks if sid == "a"])
    np.testing.assert_array_equal(rows_a, [0, 2, 4, 6])
    covariates_b = np.concatenate([c.covariates[:, 0] for sid, c in chunks if sid == "b"])
    np.testing.assert_array_equal(covariates_b, [10, 30, 50])


def test_parquet_and_gzipped_csv_read_like_csv(tmp_path):
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="D"), "value": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "s.parquet")
    with gzip.open(tmp_path / "s.csv.gz", "wt") as f:
        frame.to_csv(f, index=False)
    (_, parquet), = read_all(str(tmp_path / "s.parquet"))
    (_, csv), = read_all(str(tmp_path / "s.csv.gz"))
    np.testing.assert_array_equal(parquet.times, csv.times)
    np.testing.assert_array_equal(parquet.target, [1, 2, 3])


@pytest.mark.parametrize("text, message", [
    ("timestamp,value\n2024-01-01,1\nyesterday,2\n", ":3: column 'timestamp': cannot parse timestamp 'yesterday'"),
    ("timestamp,value\n1704067200,1\n17040x,2\n", ":3: column 'timestamp': cannot parse epoch seconds '17040x'"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,abc\n", ":3: column 'value': not a number: 'abc'"),
    ("timestamp,value\n2024-01-01,1\n2024-01-02,inf\n", ":3: column 'value': value inf is beyond"),
    ("time,value\n2024-01-01,1\n", ": no column 'timestamp' (columns: time, value)"),
])
def test_bad_cells_name_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(reader.DataError) as error:
        read_all(path)
    assert str(error.value) == path + message or str(error.value).startswith(path + message)


def test_an_empty_series_id_is_an_error(tmp_path):
    path = write(tmp_path, "id,timestamp,value\na,2024-01-01,1\n,2024-01-02,2\n")
    with pytest.raises(reader.DataError, match=r"s.csv:3: column 'id': empty series id"):
        read_all(path, reader.Columns("timestamp", "value", series_id="id"))


def test_a_bad_parquet_row_is_named_by_row_number(tmp_path):
    pd.DataFrame({"timestamp": ["2024-01-01", "soon"], "value": [1.0, 2.0]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(reader.DataError, match=r"s.parquet: row 2: column 'timestamp'"):
        read_all(str(tmp_path / "s.parquet"))


def test_files_match_by_file_directory_or_glob(tmp_path):
    for name in ("b.csv", "a.parquet", "notes.md"):
        (tmp_path / name).write_text("x")
    assert reader.match_files(str(tmp_path)) == [str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")]
    assert reader.match_files(str(tmp_path / "*.csv")) == [str(tmp_path / "b.csv")]
    assert reader.match_files(str(tmp_path / "b.csv")) == [str(tmp_path / "b.csv")]
    for missing, message in ((tmp_path / "none.csv", "no such file"), (tmp_path / "*.tsv", "no file matches"),
                             (tmp_path / "notes.md", "not a CSV")):
        with pytest.raises(reader.DataError, match=message):
            reader.match_files(str(missing))


def test_a_chunk_survives_its_shuffle_encoding():
    chunk = reader.Chunk("f.csv", np.array([3, 7, 8]), np.array([1704067200, 1704070800, 1704063600]),
                         np.array([1.5, np.nan, -2.25]), np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]]))
    back = reader.Chunk.from_bytes(chunk.to_bytes())
    assert back.file == chunk.file
    for name in ("rows", "times", "target", "covariates"):
        np.testing.assert_array_equal(getattr(back, name), getattr(chunk, name))


# Compressed files: a cut or damaged file stops the read, naming the file, instead of yielding the
# rows before the damage as if they were all.

COMPRESSORS = {".csv.gz": gzip.compress, ".csv.bz2": bz2.compress, ".csv.xz": lzma.compress}


def daily_csv(rows: int) -> bytes:
    return ("timestamp,value\n" + "".join(f"{np.datetime64('2024-01-01') + i},{i}\n" for i in range(rows))).encode()


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_csv_reads_like_the_plain_one(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    path.write_bytes(COMPRESSORS[suffix](daily_csv(400)))
    chunks = read_all(str(path), chunk_rows=150)
    np.testing.assert_array_equal(np.concatenate([c.target for _, c in chunks]), np.arange(400))


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("cut", [0.1, 0.3, 0.5, 0.9, 0.99])
def test_a_truncated_compressed_csv_is_an_error_naming_the_file(tmp_path, suffix, cut):
    whole = COMPRESSORS[suffix](daily_csv(400))
    path = tmp_path / f"s{suffix}"
    path.write_bytes(whole[:int(len(whole) * cut)])
    with pytest.raises(reader.DataError, match=rf"^{path}: the compressed file is truncated or corrupt"):
        read_all(str(path), chunk_rows=50)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_corrupt_compressed_csv_is_an_error_naming_the_file(tmp_path, suffix):
    data = bytearray(COMPRESSORS[suffix](daily_csv(400)))
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path = tmp_path / f"s{suffix}"
    path.write_bytes(bytes(data))
    with pytest.raises(reader.DataError, match=rf"^{path}: the compressed file is truncated or corrupt"):
        read_all(str(path), chunk_rows=50)


@pytest.mark.parametrize("text, message", [
    ("", ": empty file: a CSV needs a header line naming its columns"),
    ("timestamp,value\n", ": no data rows, only the header line"),
], ids=["empty", "header-only"])
def test_an_empty_or_header_only_csv_is_an_error_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(reader.DataError) as error:
        read_all(path)
    assert str(error.value).startswith(path + message)


def test_a_parquet_file_without_rows_is_an_error_naming_the_file(tmp_path):
    pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"), "value": pd.Series([], dtype=float)}).to_parquet(
        tmp_path / "s.parquet")
    with pytest.raises(reader.DataError, match=r"s.parquet: no data rows"):
        read_all(str(tmp_path / "s.parquet"))


# Values: a gap is an empty cell or NaN; anything else must be a number the model can hold.

def test_plain_numbers_reads_numbers_and_missing_cells_and_leaves_anything_else_to_the_texts():
    cells = pa.chunked_array([["1.5", "-2e3", "+.5", "7."], ["0.04592946281371643", "00012"]])
    np.testing.assert_array_equal(reader.plain_numbers(cells), [1.5, -2000, 0.5, 7, 0.04592946281371643, 12])
    missing = reader.plain_numbers(pa.chunked_array([["1", "", "NaN", " na ", "NULL", "nan"]]))
    np.testing.assert_array_equal(np.isnan(missing), [False, True, True, True, True, True])
    for cells in (["1", " 1"], ["inf"], ["-Infinity"], ["1e400"], ["2e15"], ["abc", ""], ["-nan"], ["1,5"]):
        assert reader.plain_numbers(pa.chunked_array([cells])) is None, cells


def test_csv_and_parquet_of_the_same_frame_read_the_same_values(tmp_path):
    # Values written as the shortest texts that read back the same float64: the CSV's numbers are
    # correctly rounded, as Parquet's (pandas' to_numeric is one unit off on some of them).
    rng = np.random.default_rng(0)
    values = rng.normal(350, 40, 2000)
    values[::7] = np.nan
    frame = pd.DataFrame({"timestamp": pd.date_range("2020-01-01", periods=2000, freq="h").strftime("%Y-%m-%dT%H:%M"),
                          "value": values, "temp": rng.normal(0, 1e-3, 2000)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet", index=False)
    columns = reader.Columns("timestamp", "value", covariates=("temp",))
    (_, csv), = read_all(str(tmp_path / "s.csv"), columns)
    (_, parquet), = read_all(str(tmp_path / "s.parquet"), columns)
    np.testing.assert_array_equal(csv.target, values)
    np.testing.assert_array_equal(csv.covariates, parquet.covariates)
    np.testing.assert_array_equal(csv.times, parquet.times)


@pytest.mark.parametrize("cell", ["1e300", "-1e16", "1e400", "inf", "-Infinity"])
def test_a_value_beyond_the_bound_is_refused_with_file_line_column_and_value(tmp_path, cell):
    path = write(tmp_path, f"timestamp,value\n2024-01-01,1\n2024-01-02,{cell}\n")
    with pytest.raises(reader.DataError) as error:
        read_all(path)
    assert str(error.value).startswith(f"{path}:3: column 'value': value {cell} is beyond ±1e+15")


def test_a_value_at_the_bound_is_kept_and_covariates_are_checked_too(tmp_path):
    (_, chunk), = read_all(write(tmp_path, f"timestamp,value\n2024-01-01,{reader.MAX_ABS_VALUE:g}\n"))
    assert chunk.target[0] == reader.MAX_ABS_VALUE
    path = write(tmp_path, "timestamp,value,temp\n2024-01-01,1,2e15\n", "c.csv")
    with pytest.raises(reader.DataError, match=r"c.csv:2: column 'temp': value 2e15 is beyond"):
        read_all(path, reader.Columns("timestamp", "value", covariates=("temp",)))


def test_parquet_values_follow_the_same_policy(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=3, freq="D")
    pd.DataFrame({"timestamp": stamps, "value": [1.0, np.nan, 2.0]}).to_parquet(tmp_path / "gap.parquet")
    (_, chunk), = read_all(str(tmp_path / "gap.parquet"))
    np.testing.assert_array_equal(np.isnan(chunk.target), [False, True, False])
    pd.DataFrame({"timestamp": stamps, "value": [1.0, np.inf, 2.0]}).to_parquet(tmp_path / "inf.parquet")
    with pytest.raises(reader.DataError, match=r"inf.parquet: row 2: column 'value': value inf is beyond"):
        read_all(str(tmp_path / "inf.parquet"))


def test_a_truncated_parquet_file_is_an_error_naming_the_file(tmp_path):
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=400, freq="D"), "value": np.arange(400.0)})
    frame.to_parquet(tmp_path / "whole.parquet")
    whole = (tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "s.parquet"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(reader.DataError, match=rf"^{path}: not a readable Parquet file \(it may be truncated or "
                                               r"corrupt: "):
        read_all(str(path))


def test_a_row_with_more_or_fewer_cells_than_the_header_is_named_by_its_line(tmp_path):
    for text, cells in [("timestamp,value\n2024-01-01,1\n2024-01-02,2,3\n", 3),
                        ("timestamp,value\n2024-01-01,1\n2024-01-02\n", 1)]:
        path = write(tmp_path, text)
        with pytest.raises(reader.DataError) as error:
            read_all(path)
        assert str(error.value) == f"{path}:3: {cells} cells, but the header names 2 columns"


def test_csv_blocks_are_cut_into_chunks_of_the_rows_asked_whatever_their_bytes(tmp_path, monkeypatch):
    # Blocks of 64 bytes hold 3 or 4 rows each: chunks of 5 rows take rows from two or three blocks.
    monkeypatch.setattr(reader, "CSV_BLOCK_BYTES", 64)
    text = "id,timestamp,value\n" + "".join(f"s{i // 6},2024-01-{i % 6 + 1:02d},{i}\n" for i in range(23))
    columns = reader.Columns("timestamp", "value", series_id="id")
    blocks = list(reader.read_blocks(write(tmp_path, text), columns, chunk_rows=5))
    assert [len(chunk) for _, chunk in blocks] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([chunk.rows for _, chunk in blocks]), np.arange(23))
    np.testing.assert_array_equal(np.concatenate([chunk.target for _, chunk in blocks]), np.arange(23))
    assert list(np.concatenate([ids for ids, _ in blocks])) == [f"s{i // 6}" for i in range(23)]
    np.testing.assert_array_equal(blocks[1][1].times, pd.to_datetime(
        ["2024-01-06", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]).astype("int64") // 10**9)


def test_timestamp_forms_number_the_forms_by_first_appearance_over_repeated_texts():
    text = np.array(["2024-01-01", "2024-01-01T00:00:00Z", "2024-01-01", "2024-01-02T00:00:00+01:00",
                     "2024-01-03T00:00:00+0100", "2024-01-02", "2024-01-01T00:00:00Z"], dtype=object)
    codes, forms = reader.timestamp_forms(text)
    # A code per distinct (last characters, length): several codes may share one form.
    np.testing.assert_array_equal(codes, [0, 1, 0, 2, 3, 4, 1])
    assert forms == [("", False), ("+00:00", True), ("+01:00", True), ("+01:00", True), ("", False)]
