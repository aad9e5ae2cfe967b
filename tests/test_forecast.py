"""Batch forecasting: per-series inputs and timestamps, the Beam job, the command, and a served model."""

import json
import os
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import batch_forecast
from components.example_gen import grid, reader
from components.example_gen.options import DataConfig
from pipeline import cli
from pipeline import forecast as forecast_lib
from serving import client as client_lib
from serving import contract
from serving import grpc_server as grpc_lib
from tests import conftest
from tests.conftest import in_process_forecast

H, C = 3, 4


def chunks_of(frame: pd.DataFrame, columns) -> dict[str, list[reader.Chunk]]:
    """The rows of ``frame`` as the reader gives them, per series (through a CSV, as a user's file)."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "rows.csv")
        frame.to_csv(path, index=False)
        chunks = {}
        for series_id, chunk in reader.read_chunks(path, columns):
            chunks.setdefault(series_id, []).append(chunk)
        return chunks


def one_series(times: list[str], values=None) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": times, "value": values if values is not None else np.arange(len(times)) + 1.0})


@pytest.mark.parametrize("frequency,times,expected", [
    ("h", pd.date_range("2024-03-30 20:00", periods=5, freq="h"),
     ["2024-03-31T01:00:00Z", "2024-03-31T02:00:00Z", "2024-03-31T03:00:00Z"]),
    ("D", pd.date_range("2024-02-24", periods=5, freq="D"),
     ["2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"]),
    ("W-WED", pd.date_range("2023-12-06", periods=5, freq="W-WED"),
     ["2024-01-10T00:00:00Z", "2024-01-17T00:00:00Z", "2024-01-24T00:00:00Z"]),
    ("MS", pd.date_range("2023-08-01", periods=5, freq="MS"),
     ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"]),
    ("ME", pd.date_range("2023-09-30", periods=5, freq="ME"),
     ["2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z"]),
])
def test_forecast_timestamps_continue_each_series_grid(frequency, times, expected):
    """The frequency is inferred from the rows, as in training; month ends stay month ends."""
    frame = one_series([t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times])
    data = DataConfig(path="")
    model = batch_forecast.ModelInputs(context=C, horizon=H, origin_timestamp=True)
    result = batch_forecast.series_inputs("series", chunks_of(frame, data.columns)["series"], data, model)
    assert isinstance(result, batch_forecast.SeriesInputs)
    stamps = pd.to_datetime(result.times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    assert stamps == expected
    np.testing.assert_array_equal(result.inputs[contract.INPUT_KEY], [2.0, 3.0, 4.0, 5.0])
    assert result.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY] == int(times[-1].timestamp())


@pytest.mark.parametrize("start,freq", [("2024-03-30 20:30", "h"), ("2024-02-24", "D"), ("2023-12-06", "W-WED"),
                                        ("2024-01-01", "15min"), ("2024-01-02", "2W-TUE")])
def test_a_series_already_on_its_grid_is_assembled_as_the_example_generator_does(start, freq):
    times = pd.date_range(start, periods=9, freq=freq).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = DataConfig(path="", covariate_columns=("temp",))
    frame = pd.DataFrame({"timestamp": times, "value": np.arange(9.0), "temp": np.arange(9.0) * 2})
    chunks = chunks_of(frame, data.columns)["series"]
    fast = batch_forecast.regular_series("series", chunks, data)
    slow, _ = grid.assemble("series", chunks, data)
    assert fast is not None and fast.frequency == slow.frequency
    for field in ("times", "target", "covariates", "file_index", "rows"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))
    assert fast.where(8) == slow.where(8)
    # Rows out of order, or a frequency given that is not the step, take the example generator's way.
    assert batch_forecast.regular_series("series", chunks_of(frame.iloc[::-1], data.columns)["series"], data) is None
    assert batch_forecast.regular_series("series", chunks, DataConfig(path="", covariate_columns=("temp",),
                                                                      frequency="30s")) is None


def test_series_that_cannot_be_forecast_get_their_reasons():
    hours = pd.date_range("2024-01-01", periods=8, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    frame = pd.concat([
        pd.DataFrame({"store": "short", "timestamp": hours[:3], "value": 1.0}),
        # The point at 05:00 is missing: it is among the last 4.
        pd.DataFrame({"store": "gap", "timestamp": hours[[0, 1, 2, 3, 4, 6, 7]], "value": 1.0}),
        pd.DataFrame({"store": "whole", "timestamp": hours, "value": np.arange(8.0)}),
        pd.DataFrame({"store": "stranger", "timestamp": hours, "value": 1.0}),
    ])
    data = DataConfig(path="", series_id_column="store")
    chunks = chunks_of(frame, data.columns)
    model = batch_forecast.ModelInputs(context=C, horizon=H, series_id=True,
                                       known_series=frozenset({"short", "gap", "whole"}))
    results = {s: batch_forecast.series_inputs(s, chunks[s], data, model) for s in chunks}
    assert results["short"] == batch_forecast.Skipped("short", "has 3 points on its h grid; the model needs the last 4")
    assert results["gap"] == batch_forecast.Skipped(
        "gap", "missing values (value) among its last 4 points at 2024-01-01T05:00:00+00:00")
    assert results["stranger"].reason.startswith("unknown to the model")
    np.testing.assert_array_equal(results["whole"].inputs[contract.INPUT_KEY], [4, 5, 6, 7])
    assert results["whole"].inputs[contract.SERIES_ID_INPUT_KEY] == "whole"
    # Interpolation, as the training's gap policy, fills the gap of one point.
    interpolate = DataConfig(path="", series_id_column="store", gap_policy="interpolate")
    filled = batch_forecast.series_inputs("gap", chunks["gap"], interpolate, model)
    np.testing.assert_array_equal(filled.inputs[contract.INPUT_KEY], [1, 1, 1, 1])


def test_future_covariates_are_taken_at_the_forecast_steps_and_missing_ones_named():
    hours = pd.date_range("2024-01-01", periods=6, freq="h")
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    frame = pd.DataFrame({"timestamp": hours.map(stamp), "value": np.arange(6.0), "promo": [0, 1, 0, 1, 0, 1.0]})
    data = DataConfig(path="", future_covariate_columns=("promo",))
    model = batch_forecast.ModelInputs(context=C, horizon=H, covariates=("promo",), future_covariates=("promo",))
    future_hours = pd.date_range("2024-01-01 06:00", periods=H, freq="h")
    future = pd.DataFrame({"timestamp": future_hours.map(stamp), "promo": [1.0, 0.0, 1.0]})
    future_chunks = chunks_of(future, batch_forecast.future_columns(data))["series"]
    result = batch_forecast.series_inputs("series", chunks_of(frame, data.columns)["series"], data, model,
                                          future_chunks)
    np.testing.assert_array_equal(result.inputs[contract.covariate_input_key("promo")], [0, 1, 0, 1])
    np.testing.assert_array_equal(result.inputs[contract.future_input_key("promo")], [1, 0, 1])
    short = chunks_of(future.iloc[:1], batch_forecast.future_columns(data))["series"]
    skipped = batch_forecast.series_inputs("series", chunks_of(frame, data.columns)["series"], data, model, short)
    assert skipped == batch_forecast.Skipped(
        "series", "no future values of promo for 2024-01-01T07:00:00+00:00, 2024-01-01T08:00:00+00:00")


def blocks_of(frames: list[pd.DataFrame], columns) -> list[batch_forecast.SeriesRows]:
    """The rows of ``frames``, one CSV file each, as the job reads them: chunks of many series."""
    with tempfile.TemporaryDirectory() as directory:
        parts = []
        for i, frame in enumerate(frames):
            path = os.path.join(directory, f"rows{i}.csv")
            frame.to_csv(path, index=False)
            parts += [batch_forecast.SeriesRows.of(ids, chunk) for ids, chunk in reader.read_blocks(path, columns)]
        return parts


def _assert_same_as_per_series(parts, data, model, future_parts=()):
    """``prepare_series`` on all series at once gives, for each, what ``series_inputs`` gives it."""
    block, skipped = batch_forecast.prepare_series(parts, data, model, future_parts)
    # Each series' rows as the per-series job had them: one Chunk per file chunk, with its forms.
    chunks, future_chunks, expected = {}, {}, {}
    for rows, into in [(p, chunks) for p in parts] + [(p, future_chunks) for p in future_parts]:
        for code, series_id in enumerate(rows.names):
            into.setdefault(series_id, []).append(rows.take(np.flatnonzero(rows.codes == code)).chunk)
    for series_id in chunks:
        expected[series_id] = batch_forecast.series_inputs(series_id, chunks[series_id], data, model,
                                                           future_chunks.get(series_id, ()))
    assert {s.series_id: s for s in skipped} == {k: v for k, v in expected.items()
                                                  if isinstance(v, batch_forecast.Skipped)}
    ready = {k: v for k, v in expected.items() if isinstance(v, batch_forecast.SeriesInputs)}
    assert sorted(block.series_ids if block is not None else []) == sorted(ready)
    for i, series_id in enumerate(block.series_ids if block is not None else []):
        np.testing.assert_array_equal(block.times[i], ready[series_id].times)
        assert set(block.inputs) == set(ready[series_id].inputs)
        for name, value in ready[series_id].inputs.items():
            assert block.inputs[name].dtype == np.asarray(value).dtype, name
            np.testing.assert_array_equal(block.inputs[name][i], value)
    return block, skipped


@pytest.mark.parametrize("gap_policy", ["skip", "interpolate"])
def test_series_prepared_in_bulk_are_what_each_series_gives_alone(gap_policy):
    """Series on their grids (the numpy way) and every other kind (series_inputs' way), in one call."""
    hours = pd.date_range("2024-01-01", periods=8, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    months = pd.date_range("2023-01-31", periods=6, freq="ME").strftime("%Y-%m-%d")
    rng = np.random.default_rng(3)
    frame = lambda store, times: pd.DataFrame({  # noqa: E731
        "store": store, "timestamp": times, "value": rng.normal(size=len(times)).round(3),
        "temp": rng.normal(size=len(times)).round(3)})
    first = pd.concat([
        frame("whole", hours), frame("whole2", hours[2:]), frame("short", hours[:3]),
        frame("gap", hours[[0, 1, 2, 3, 4, 6, 7]]), frame("old_gap", hours[[0, 2, 3, 4, 5, 6, 7]]),
        frame("months", months), frame("stranger", hours), frame("dupes", hours[[0, 1, 2, 3, 3, 4, 5]]),
        frame("reversed", hours[::-1]), frame("split", hours[:4]),
    ])
    first.loc[(first["store"] == "whole2") & (first["timestamp"] == hours[7]), "temp"] = np.nan
    # "split" goes on in a second file: one series in two files.
    second = frame("split", hours[4:])
    data = DataConfig(path="", series_id_column="store", covariate_columns=("temp",), gap_policy=gap_policy)
    model = batch_forecast.ModelInputs(context=C, horizon=H, covariates=("temp",), origin_timestamp=True,
                                       series_id=True, known_series=frozenset(set(first["store"]) - {"stranger"}))
    block, skipped = _assert_same_as_per_series(blocks_of([first, second], data.columns), data, model)
    reasons = {s.series_id: s.reason for s in skipped}
    assert set(reasons) == {"short", "stranger", "dupes", "whole2"} | ({"gap"} if gap_policy == "skip" else set())
    assert {"whole", "old_gap", "months", "reversed", "split"} <= set(block.series_ids)


def test_series_with_future_covariates_prepared_in_bulk_are_what_each_series_gives_alone():
    hours = pd.date_range("2024-01-01", periods=10, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    frame = pd.concat([pd.DataFrame({"store": s, "timestamp": hours[:6], "value": np.arange(6.0) + i,
                                     "promo": [0, 1, 0, 1, 0, 1.0]}) for i, s in enumerate("abc")])
    # Store b lacks its last future value; store c has none; store z is not in the data.
    # Store a's row with a missing value does not count, nor its first row at 08:00, repeated.
    future = pd.concat([pd.DataFrame({"store": "a", "timestamp": hours[[6, 7, 8, 8, 6]],
                                      "promo": [1.0, 0.0, 0.0, 1.0, np.nan]}),
                        pd.DataFrame({"store": "b", "timestamp": hours[6:8], "promo": [0.0, 1.0]}),
                        pd.DataFrame({"store": "z", "timestamp": hours[6:9], "promo": [1.0, 1.0, 1.0]})])
    data = DataConfig(path="", series_id_column="store", future_covariate_columns=("promo",))
    model = batch_forecast.ModelInputs(context=C, horizon=H, covariates=("promo",), future_covariates=("promo",))
    block, skipped = _assert_same_as_per_series(blocks_of([frame], data.columns), data, model,
                                                blocks_of([future], batch_forecast.future_columns(data)))
    assert list(block.series_ids) == ["a"]
    np.testing.assert_array_equal(block.inputs[contract.future_input_key("promo")], [[1, 0, 1]])
    assert sorted(s.series_id for s in skipped) == ["b", "c"]


def test_timestamps_mixing_utc_offsets_are_explained_as_the_example_generator_does():
    """The forms of each series' timestamps travel with the bulk rows: the message names both rows."""
    days = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00+01:00", "2024-01-04T00:00:00Z",
            "2024-01-05T00:00:00Z"]
    frame = pd.concat([pd.DataFrame({"store": "mixed", "timestamp": days, "value": 1.0}),
                       pd.DataFrame({"store": "plain", "timestamp": [d[:10] for d in days], "value": 1.0})])
    data = DataConfig(path="", series_id_column="store")
    model = batch_forecast.ModelInputs(context=C, horizon=H)
    _, skipped = _assert_same_as_per_series(blocks_of([frame], data.columns), data, model)
    assert [s.series_id for s in skipped] == ["mixed"] and "mix UTC offsets" in skipped[0].reason


def test_a_series_keeps_its_shard_and_shards_forecast_what_one_does():
    ids = np.array([f"s{i}" for i in range(50)], dtype=object)
    shards = batch_forecast.shard_of(ids, 4)
    np.testing.assert_array_equal(batch_forecast.shard_of(ids[::-1], 4), shards[::-1])
    assert set(shards.tolist()) == {0, 1, 2, 3}
    assert (batch_forecast.shard_of(ids, 1) == 0).all()


def test_many_shards_write_the_forecasts_of_one(quantile_model, tmp_path, monkeypatch):
    data = tmp_path / "stores.csv"
    _stores_csv(data)
    one = forecast_lib.run_forecast(str(data), str(tmp_path / "one.csv"), model_base_path=str(quantile_model))
    monkeypatch.setattr(batch_forecast, "SHARD_BYTES", os.path.getsize(data) // 3 + 1)
    assert batch_forecast.shard_count([str(data)]) == 3
    # The three series are in more than one shard.
    assert len(set(batch_forecast.shard_of(np.array(["a", "b", "tiny"], dtype=object), 3).tolist())) > 1
    many = forecast_lib.run_forecast(str(data), str(tmp_path / "many.csv"), model_base_path=str(quantile_model))
    assert many.summary == one.summary
    assert (tmp_path / "many.csv").read_text() == (tmp_path / "one.csv").read_text()
    # Plain CSV: text quoted only where it must be.
    assert (tmp_path / "one.csv").read_text().splitlines()[1].startswith("b,20")


def _stores(count: int, seed: int = 0) -> pd.DataFrame:
    """``count`` daily stores of 5 to 9 days, each store's rows together, and a store too short to forecast."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", periods=9, freq="D").strftime("%Y-%m-%d")
    frames = [pd.DataFrame({"store": f"s{i}", "ts": days[:n], "sales": rng.normal(100, 10, n).round(2)})
              for i, n in enumerate(rng.integers(5, 10, count))]
    frames.insert(2, pd.DataFrame({"store": "tiny", "ts": days[:2], "sales": [1.0, 2.0]}))
    return pd.concat(frames, ignore_index=True)


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    """The quantile model's forecasts of ``frame``'s stores, by numpy: the mean of the last 4 days, plus the step."""
    rows = []
    for store, series in frame.groupby("store"):
        if len(series) >= C:
            last = pd.Timestamp(series["ts"].max())
            mean = series.sort_values("ts")["sales"].to_numpy()[-C:].astype(np.float32).mean()
            rows += [(store, (last + pd.Timedelta(days=s)).strftime("%Y-%m-%dT%H:%M:%SZ"), s, mean + s - 1)
                     for s in range(1, H + 1)]
    return pd.DataFrame(rows, columns=["store", "timestamp", "step", "forecast"])


def _job(files, output, model_base, monkeypatch, stream=None, chunk_rows=7, max_batch=4):
    """The job on ``files`` with the quantile model, read ``chunk_rows`` rows at a time; its summary and
    whether each part it wrote was streamed."""
    import apache_beam as beam
    read_blocks, write_part, was_streamed = reader.read_blocks, batch_forecast.write_part, []
    monkeypatch.setattr(reader, "read_blocks", lambda path, columns: read_blocks(path, columns, chunk_rows))

    def spy(batches, parts_dir, streamed):
        was_streamed.append(streamed)
        return write_part(batches, parts_dir, streamed)

    monkeypatch.setattr(batch_forecast, "write_part", spy)
    model_dir = forecast_lib.model_version_dir(str(model_base))
    description = forecast_lib.read_description(model_dir)
    data = forecast_lib.data_config(files[0], description, {})
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        summary_path = batch_forecast.add_forecast_job(
            pipeline, [str(f) for f in files], data, batch_forecast.ModelInputs.from_description(description),
            batch_forecast.LocalModel(model_dir), str(output), max_batch=max_batch, stream=stream)
    monkeypatch.undo()
    assert not [p for p in os.listdir(os.path.dirname(output)) if ".parts-" in p]
    return batch_forecast.read_summary(summary_path), was_streamed


def _by_store(path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(["store", "step"]).reset_index(drop=True)


def _assert_forecasts(path, frame: pd.DataFrame) -> None:
    written, expected = _by_store(path), _expected(frame)
    assert written[["store", "timestamp", "step"]].equals(expected[["store", "timestamp", "step"]])
    np.testing.assert_allclose(written["forecast"], expected["forecast"], rtol=1e-6)


def test_a_file_forecast_as_it_is_read_gives_what_the_shuffle_gives(quantile_model, tmp_path, monkeypatch):
    """Each store's rows together: forecast as read (series across chunks, blocks across chunks), no shuffle."""
    data = tmp_path / "stores.csv"
    frame = _stores(11)
    frame.to_csv(data, index=False)
    streamed, streamed_parts = _job([data], tmp_path / "streamed.csv", quantile_model, monkeypatch)
    shuffled, shuffled_parts = _job([data], tmp_path / "shuffled.csv", quantile_model, monkeypatch, stream=False)
    assert set(streamed_parts) == {True} and len(streamed_parts) > 1 and set(shuffled_parts) == {False}
    assert (tmp_path / "streamed.csv").read_text() == (tmp_path / "shuffled.csv").read_text()
    assert streamed == shuffled
    assert streamed["skipped"] == [{"series_id": "tiny", "reason": "has 2 points on its D grid; the model needs "
                                                                   "the last 4"}]
    assert (streamed["series"], streamed["forecast"], streamed["rows"]) == (12, 11, 11 * H)
    _assert_forecasts(tmp_path / "streamed.csv", frame)
    # In the data's order: the stores as they first appear.
    assert pd.read_csv(tmp_path / "streamed.csv")["store"].unique().tolist() == [f"s{i}" for i in range(11)]


def test_a_file_mixing_its_stores_rows_is_shuffled(quantile_model, tmp_path, monkeypatch):
    data = tmp_path / "mixed.csv"
    frame = _stores(11).sample(frac=1, random_state=1)
    frame.to_csv(data, index=False)
    summary, parts = _job([data], tmp_path / "mixed_out.csv", quantile_model, monkeypatch)
    assert set(parts) == {False}
    assert [s["series_id"] for s in summary["skipped"]] == ["tiny"] and summary["forecast"] == 11
    _assert_forecasts(tmp_path / "mixed_out.csv", frame)


def test_stores_found_again_after_being_forecast_are_forecast_from_all_their_rows(quantile_model, tmp_path,
                                                                                   monkeypatch):
    """Rows together at first, then a store's last row at the end: its streamed forecast is withdrawn."""
    frame = _stores(11)
    # s0's last day and "late"'s last three days come at the end: streamed, s0 is forecast from too
    # little history, and "late" is skipped as too short; both are then forecast from all their rows.
    days = pd.date_range("2024-01-01", periods=6, freq="D").strftime("%Y-%m-%d")
    late = pd.DataFrame({"store": "late", "ts": days, "sales": [5.0, 6, 7, 8, 9, 10]})
    s0, rest = frame.index[frame["store"] == "s0"], frame.drop(frame.index[frame["store"] == "s0"][-1])
    cut = int(np.flatnonzero(rest["store"] == "s3")[0])
    moved = pd.concat([rest.iloc[:cut], late.iloc[:3], rest.iloc[cut:], frame.loc[[s0[-1]]], late.iloc[3:]],
                      ignore_index=True)
    data = tmp_path / "moved.csv"
    moved.to_csv(data, index=False)
    summary, parts = _job([data], tmp_path / "moved_out.csv", quantile_model, monkeypatch)
    assert set(parts) == {True, False}
    assert [s["series_id"] for s in summary["skipped"]] == ["tiny"]
    assert (summary["series"], summary["forecast"]) == (13, 12)
    _assert_forecasts(tmp_path / "moved_out.csv", moved)
    assert (_by_store(tmp_path / "moved_out.csv")["store"] == "late").sum() == H


def test_a_store_split_over_two_files_is_forecast_from_both(quantile_model, tmp_path, monkeypatch):
    frame = _stores(11)
    # s3's first three days in one file, the others in the next.
    later = (frame["store"] == "s3") & (frame.index > frame.index[frame["store"] == "s3"][2])
    first, second = frame[~later], frame[later]
    first.to_csv(tmp_path / "a.csv", index=False)
    second.to_csv(tmp_path / "b.csv", index=False)
    summary, parts = _job([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "two.csv", quantile_model,
                          monkeypatch)
    assert set(parts) == {False} and summary["forecast"] == 11
    _assert_forecasts(tmp_path / "two.csv", frame)


def test_contiguous_series_are_told_complete_chunk_by_chunk():
    def rows(ids: str) -> batch_forecast.SeriesRows:
        n = len(ids)
        chunk = reader.Chunk("f.csv", np.arange(n), np.arange(n), np.zeros(n), np.zeros((n, 0)))
        return batch_forecast.SeriesRows.of(np.array(list(ids), dtype=object), chunk)

    def names(parts) -> list[str]:
        return [str(n) for p in parts for n in p.names[np.unique(p.codes)]]

    series = batch_forecast.ContiguousSeries()
    complete, shuffle = series.add(rows("aabbc"))
    assert names(complete) == ["a", "b"] and not shuffle
    complete, shuffle = series.add(rows("cc"))  # c goes on
    assert not complete and not shuffle
    complete, shuffle = series.add(rows("cddd"))
    assert names(complete) == ["c", "c", "c"] and not shuffle  # c's rows from three chunks
    complete, shuffle = series.add(rows("ebe"))  # b again, and e apart: broken
    assert not complete and names(shuffle) == ["d", "e", "b"] and not series.contiguous
    assert series.broken_at == 3 and series.withdrawn == {"b"}
    complete, shuffle = series.add(rows("af"))
    assert not complete and names(shuffle) == ["a", "f"] and series.withdrawn == {"a", "b"}
    assert series.finish() == []


def test_seen_ids_are_told_by_their_hashes_merged_chunk_by_chunk():
    seen = batch_forecast.SeenIds()
    assert seen.seen(["a"]) == []
    seen.add(["s3", "s1"])
    seen.add(["s2", "s1"])
    assert len(seen) == 3 and seen.seen(["s0", "s2", "s4", "s1", "s9"]) == ["s2", "s1"]
    np.testing.assert_array_equal(seen.hashes(["s1"]), pd.util.hash_array(np.array(["s1"], dtype=object)))


def test_a_hash_shared_by_two_ids_costs_a_shuffle_never_a_wrong_series(monkeypatch):
    # Every id one hash: the second chunk's new series look already given.
    monkeypatch.setattr(batch_forecast.SeenIds, "hashes", staticmethod(lambda ids: np.zeros(len(ids), np.uint64)))
    series = batch_forecast.ContiguousSeries()
    chunk = lambda n: reader.Chunk("f.csv", np.arange(n), np.arange(n), np.zeros(n), np.zeros((n, 0)))
    complete, _ = series.add(batch_forecast.SeriesRows.of(np.array(list("aab"), dtype=object), chunk(3)))
    assert [str(n) for p in complete for n in p.names] == ["a"]
    complete, shuffle = series.add(batch_forecast.SeriesRows.of(np.array(list("bcc"), dtype=object), chunk(3)))
    # c is taken for a: the file is shuffled from here, b with all its rows; c, never given, has no
    # forecast to replace and no rows to read again; b, taken for a too, must not be read twice.
    assert not complete and not series.contiguous and series.withdrawn == {"c"}
    assert sorted(str(n) for p in shuffle for n in p.names) == ["b", "b", "c"]
    series.add(batch_forecast.SeriesRows.of(np.array(list("bd"), dtype=object), chunk(2)))
    assert series.withdrawn == {"c", "d"}


class _IdModel(tf.Module):
    """A model taking every kind of input the signature may have: the history's mean, plus the origin, plus
    the length of the series id."""

    @tf.function(input_signature=[tf.TensorSpec([None, C], tf.float32, name=contract.INPUT_KEY),
                                  tf.TensorSpec([None], tf.int64, name=contract.ORIGIN_TIMESTAMP_INPUT_KEY),
                                  tf.TensorSpec([None], tf.string, name=contract.SERIES_ID_INPUT_KEY)])
    def serve(self, history, origin_timestamp, series_id):
        extra = tf.cast(origin_timestamp, tf.float32) + tf.cast(tf.strings.length(series_id), tf.float32)
        return {contract.OUTPUT_KEY: tf.tile(tf.reduce_mean(history, axis=1, keepdims=True) + extra[:, None], [1, H])}


def test_a_model_warmed_up_as_it_is_opened_forecasts_as_one_opened_cold(tmp_path):
    """The warm-up call (zeros of each input's dtype and shape, a text input included) leaves the forecasts alone."""
    module = _IdModel()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={contract.SIGNATURE_NAME: module.serve})
    inputs = {contract.INPUT_KEY: np.arange(2 * C, dtype=np.float32).reshape(2, C),
              contract.ORIGIN_TIMESTAMP_INPUT_KEY: np.array([10, 20]),
              contract.SERIES_ID_INPUT_KEY: np.array(["a", "bcd"], dtype=object)}
    cold = batch_forecast.LocalModel(str(tmp_path / "1")).open()(inputs)
    warm = batch_forecast.LocalModel(str(tmp_path / "1")).open(warmup_rows=batch_forecast._WARMUP_ROWS)(inputs)
    np.testing.assert_array_equal(cold[contract.OUTPUT_KEY], [[12.5] * H, [28.5] * H])
    np.testing.assert_array_equal(warm[contract.OUTPUT_KEY], cold[contract.OUTPUT_KEY])


@pytest.mark.parametrize("level,column", [(0.1, "p10"), (0.025, "p2.5"), (0.5, "p50"), (0.975, "p97.5")])
def test_quantile_columns_are_named_by_percent(level, column):
    assert batch_forecast.quantile_column(level) == column


LEVELS = (0.1, 0.5, 0.9)


class _QuantileModel(tf.Module):
    """A hand-built forecaster with quantiles: the mean of the last 4 points, spread by +-1 per level step."""

    @tf.function(input_signature=[tf.TensorSpec([None, C], tf.float32, name=contract.INPUT_KEY)])
    def serve(self, history):
        mean = tf.reduce_mean(history, axis=1, keepdims=True)
        forecast = tf.tile(mean, [1, H]) + tf.range(H, dtype=tf.float32)
        offsets = tf.constant([-1.0, 0.0, 1.0])
        quantiles = forecast[:, :, None] + offsets
        levels = tf.tile(tf.constant([LEVELS], tf.float32), [tf.shape(history)[0], 1])
        return {contract.OUTPUT_KEY: forecast, contract.QUANTILES_OUTPUT_KEY: quantiles,
                contract.QUANTILE_LEVELS_OUTPUT_KEY: levels}


@pytest.fixture(scope="module")
def quantile_model(tmp_path_factory):
    """A model base path holding the hand-built quantile model as version 7, with its description."""
    base = tmp_path_factory.mktemp("quantile_model") / "models"
    version = base / "7"
    module = _QuantileModel()
    tf.saved_model.save(module, str(version), signatures={contract.SIGNATURE_NAME: module.serve})
    description = {"format": 1, "scaling": "global", "quantile_levels": list(LEVELS),
                   "data": {"timestamp_column": "ts", "target_column": "sales", "series_id_column": "store"},
                   "windows": {"history": C, "context": C, "horizon": H, "calendar_features": False}}
    (version / "assets.extra").mkdir()
    (version / contract.MODEL_DESCRIPTION_FILE).write_text(json.dumps(description))
    return base


def _stores_csv(path) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=6, freq="D").strftime("%Y-%m-%d")
    frame = pd.concat([pd.DataFrame({"store": "b", "ts": days, "sales": np.arange(6.0)}),
                       pd.DataFrame({"store": "a", "ts": days, "sales": 10 * np.arange(6.0)}),
                       pd.DataFrame({"store": "tiny", "ts": days[:2], "sales": [1.0, 2.0]})])
    frame.to_csv(path, index=False)
    return frame


def test_quantile_columns_come_from_a_model_that_has_them(quantile_model, tmp_path, capsys):
    data = tmp_path / "stores.csv"
    _stores_csv(data)
    output = tmp_path / "out" / "forecasts.csv"
    output.parent.mkdir()
    code = cli.main(["forecast", "--model-base-path", str(quantile_model), "--data", str(data),
                     "--output", str(output)])
    printed = capsys.readouterr()
    assert code == forecast_lib.EXIT_SOME_SKIPPED
    assert "forecast 2 of 3 series" in printed.out
    # Progress: series done of those that can be forecast.
    assert "forecast: 2 of 2 series" in printed.out
    assert "tiny: has 2 points on its D grid; the model needs the last 4" in printed.out
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["store", "timestamp", "step", "forecast", "p10", "p50", "p90"]
    # In the data's order. Series b: the mean of 2..5 is 3.5; a: the mean of 20, 30, 40, 50 is 35;
    # steps add 0, 1, 2.
    assert frame["store"].tolist() == ["b"] * 3 + ["a"] * 3
    np.testing.assert_allclose(frame["forecast"], [3.5, 4.5, 5.5, 35, 36, 37])
    np.testing.assert_allclose(frame["p10"], frame["forecast"] - 1)
    np.testing.assert_allclose(frame["p90"], frame["forecast"] + 1)
    assert frame["timestamp"].tolist() == ["2024-01-07T00:00:00Z", "2024-01-08T00:00:00Z", "2024-01-09T00:00:00Z"] * 2
    summary = json.loads((tmp_path / "out" / ("forecasts.csv" + forecast_lib.SUMMARY_SUFFIX)).read_text())
    assert summary["skipped"] == [{"series_id": "tiny", "reason": "has 2 points on its D grid; the model needs "
                                                                  "the last 4"}]
    assert (summary["series"], summary["forecast"], summary["rows"]) == (3, 2, 6)


def test_parquet_output_and_exit_code_zero_when_every_series_is_forecast(quantile_model, tmp_path):
    data = tmp_path / "stores.csv"
    _stores_csv(data).query("store != 'tiny'").to_csv(data, index=False)
    output = tmp_path / "forecasts.parquet"
    assert cli.main(["forecast", "--model-base-path", str(quantile_model), "--data", str(data),
                     "--output", str(output), "--quiet"]) == 0
    frame = pd.read_parquet(output)
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-07", tz="UTC")
    np.testing.assert_allclose(frame["p50"], [3.5, 4.5, 5.5, 35, 36, 37])


def test_a_users_mistake_is_one_line_and_exit_code_1(quantile_model, tmp_path, capsys):
    data = tmp_path / "stores.csv"
    _stores_csv(data)
    code = cli.main(["forecast", "--model-base-path", str(quantile_model), "--data", str(data),
                     "--output", str(tmp_path / "forecasts.txt")])
    assert code == 1
    assert capsys.readouterr().err.strip() == (f"lstm-forecast forecast: error: {tmp_path / 'forecasts.txt'}: the "
                                               "output must end in .csv or .parquet")
    assert cli.main(["forecast", "--model-base-path", str(quantile_model), "--version", "3", "--data", str(data),
                     "--output", str(tmp_path / "f.csv")]) == 1
    assert "no version 3 (versions: 7)" in capsys.readouterr().err


class _FutureModel(tf.Module):
    """A hand-built forecaster with a known-future covariate: the last value plus the future promotion."""

    @tf.function(input_signature=[tf.TensorSpec([None, C], tf.float32, name=contract.INPUT_KEY),
                                  tf.TensorSpec([None, C], tf.float32, name=contract.covariate_input_key("promo")),
                                  tf.TensorSpec([None, H], tf.float32, name=contract.future_input_key("promo"))])
    def serve(self, history, covariate_promo, future_promo):
        return {contract.OUTPUT_KEY: history[:, -1:] + 10 * future_promo + 0 * covariate_promo[:, :1]}


def test_future_covariates_come_from_their_file_and_a_series_without_them_is_named(tmp_path, capsys):
    base = tmp_path / "models"
    module = _FutureModel()
    tf.saved_model.save(module, str(base / "1"), signatures={contract.SIGNATURE_NAME: module.serve})
    (base / "1" / "assets.extra").mkdir()
    (base / "1" / contract.MODEL_DESCRIPTION_FILE).write_text(json.dumps({
        "format": 1, "scaling": "window_std",
        "data": {"series_id_column": "store", "future_covariate_columns": ["promo"]},
        "windows": {"history": C, "context": C, "horizon": H, "calendar_features": False}}))
    days = pd.date_range("2024-01-01", periods=5, freq="D").strftime("%Y-%m-%d")
    data = tmp_path / "sales.csv"
    pd.concat([pd.DataFrame({"store": s, "timestamp": days, "value": v + np.arange(5.0), "promo": 0.0})
               for s, v in (("a", 0.0), ("b", 100.0))]).to_csv(data, index=False)
    future_days = pd.date_range("2024-01-06", periods=H, freq="D").strftime("%Y-%m-%d")
    future = tmp_path / "future.csv"
    # Store b's last future day is missing.
    pd.concat([pd.DataFrame({"store": "a", "timestamp": future_days, "promo": [1.0, 0.0, 1.0]}),
               pd.DataFrame({"store": "b", "timestamp": future_days[:2], "promo": [0.0, 1.0]})]).to_csv(future,
                                                                                                   index=False)
    output = tmp_path / "forecasts.csv"
    argv = ["forecast", "--model-base-path", str(base), "--data", str(data), "--output", str(output), "--quiet"]
    assert cli.main(argv) == 1
    assert "give --future-covariates FILE" in capsys.readouterr().err
    assert cli.main(argv + ["--future-covariates", str(future)]) == forecast_lib.EXIT_SOME_SKIPPED
    assert "b: no future values of promo for 2024-01-08T00:00:00+00:00" in capsys.readouterr().out
    frame = pd.read_csv(output)
    assert frame["store"].tolist() == ["a"] * 3
    np.testing.assert_allclose(frame["forecast"], [14.0, 4.0, 14.0])


@pytest.fixture(scope="module")
def trained_forecasts(pipeline_run, tmp_path_factory):
    """The fast pipeline run's pushed model and its forecasts of the run's data, through the command."""
    config, result = pipeline_run
    base = tmp_path_factory.mktemp("trained_forecast") / "models"
    shutil.copytree(result.pushed_model, base / "1")
    output = base.parent / "forecasts.csv"
    assert cli.main(["forecast", "--model-base-path", str(base), "--data", config.data.path,
                     "--output", str(output)]) == 0
    return config, base, pd.read_csv(output)


def test_the_export_describes_the_data_the_model_was_trained_on(trained_forecasts):
    config, base, _ = trained_forecasts
    description = forecast_lib.read_description(str(base / "1"))
    assert description["windows"] == {
        "history": 16, "context": 24, "horizon": 3, "seasonal_periods": [8], "calendar_features": True,
        "step_seconds": config.windows.step_seconds}
    assert description["data"]["timestamp_column"] == "timestamp"
    assert description["data"]["target_column"] == "value"
    assert description["scaling"] == "last_value"
    assert description["quantile_levels"] == list(config.model.quantiles)


def test_forecasts_equal_the_in_process_model_on_the_same_window(trained_forecasts):
    config, base, frame = trained_forecasts
    data = pd.read_csv(config.data.path)
    context = config.windows.context
    last = data["value"].to_numpy(np.float32)[-context:][None, :]
    origin = int(pd.Timestamp(data["timestamp"].iloc[-1], tz="UTC").timestamp())
    expected = in_process_forecast(str(base / "1"), last, {contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]})[0]
    # One series, no series id column in the data: none in the output; a p column per quantile level.
    levels = config.model.quantiles
    columns = [batch_forecast.quantile_column(p) for p in levels]
    assert list(frame.columns) == ["timestamp", "step", "forecast", *columns]
    np.testing.assert_allclose(frame["forecast"], expected, rtol=1e-6)
    quantiles = conftest.in_process_outputs(str(base / "1"), last, {contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]})[
        contract.QUANTILES_OUTPUT_KEY][0]
    np.testing.assert_allclose(frame[columns].to_numpy(), quantiles, rtol=1e-6)
    week = pd.Timedelta(weeks=1)
    origin_stamp = pd.Timestamp(origin, unit="s", tz="UTC")
    assert frame["timestamp"].tolist() == [(origin_stamp + week * i).strftime("%Y-%m-%dT%H:%M:%SZ")
                                           for i in (1, 2, 3)]
    assert frame["step"].tolist() == [1, 2, 3]


def test_a_running_server_gives_the_same_numbers_as_the_files(trained_forecasts, tmp_path):
    from tests.test_serving import model_server_for
    config, base, from_files = trained_forecasts
    model_server = model_server_for(base)
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", timeout_s=10) as client:
            client.wait_until_ready(60)
        output = tmp_path / "served.csv"
        # No --model-base-path: the model's inputs come from the server's metadata.
        assert cli.main(["forecast", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                         "--data", config.data.path, "--output", str(output), "--quiet"]) == 0
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()
    served = pd.read_csv(output)
    pd.testing.assert_frame_equal(served, from_files, rtol=1e-6)


@pytest.mark.slow
def test_a_run_with_forecast_after_push_ends_with_fresh_forecasts(pipeline_run, tmp_path, capsys):
    """The fast run again, with the Forecaster after the Pusher: the run's forecasts land in OUTPUT/forecasts/.

    Slow: the Transform and everything after it run again (about a minute).
    """
    config, _ = pipeline_run
    output = tmp_path / "run"
    # A copy of the run's metadata and artifacts: the components upstream of the Pusher are cached.
    shutil.copytree(config.output_dir, output)
    w, m = config.windows, config.model
    code = cli.main(["run", "--data", config.data.path, "--output", str(output), "--history", str(w.history),
                     "--horizon", str(w.horizon), "--season-length", "8", "--split-fractions", "0.6,0.2",
                     "--scaling", m.scaling, "--lstm-units", "16,16", "--epochs", str(m.epochs),
                     "--batch-size", str(m.batch_size), "--max-skill", "1e6", "--forecast-after-push"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Forecaster" in printed and "forecast 1 of 1 series" in printed
    published = pd.read_csv(output / "forecasts" / "forecasts.csv")
    pushed = forecast_lib.model_version_dir(str(output / "serving_model" / config.model_name))
    data = pd.read_csv(config.data.path)
    last = data["value"].to_numpy(np.float32)[-w.context:][None, :]
    origin = int(pd.Timestamp(data["timestamp"].iloc[-1], tz="UTC").timestamp())
    expected = in_process_forecast(pushed, last, {contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]})[0]
    np.testing.assert_allclose(published["forecast"], expected, rtol=1e-6)


def _pushed_model_artifact(destination: str, pushed: bool):
    from tfx.types import standard_artifacts
    artifact = standard_artifacts.PushedModel()
    artifact.set_int_custom_property("pushed", int(pushed))
    artifact.set_string_custom_property("pushed_destination", destination)
    return artifact


def test_the_forecaster_component_publishes_the_pushed_models_forecasts(trained_forecasts, tmp_path):
    """The pipeline step, run as TFX runs its executor: the same rows as the command, in the published dir."""
    from components import forecaster
    config, base, from_command = trained_forecasts
    forecasts = forecaster.Forecasts()
    forecasts.uri = str(tmp_path / "artifact")
    publish = tmp_path / "published"
    options = forecaster.forecaster_options(config.data, str(publish))
    executor = forecaster.Executor()
    executor.Do({forecaster.PUSHED_MODEL_KEY: [_pushed_model_artifact(str(base / "1"), True)]},
                {forecaster.FORECASTS_KEY: [forecasts]}, {forecaster.OPTIONS_KEY: options})
    pd.testing.assert_frame_equal(pd.read_csv(publish / forecaster.FORECASTS_FILE), from_command)
    assert forecasts.get_int_custom_property("forecast") == 1 and forecasts.get_int_custom_property("skipped") == 0
    # A model that was not pushed forecasts nothing: the published forecasts stay.
    stale = forecaster.Forecasts()
    stale.uri = str(tmp_path / "not_pushed")
    executor.Do({forecaster.PUSHED_MODEL_KEY: [_pushed_model_artifact("", False)]},
                {forecaster.FORECASTS_KEY: [stale]}, {forecaster.OPTIONS_KEY: options})
    assert stale.get_int_custom_property("forecast") == 0
    pd.testing.assert_frame_equal(pd.read_csv(publish / forecaster.FORECASTS_FILE), from_command)


def test_forecast_after_push_puts_the_forecaster_after_the_pusher(pipeline_run):
    import dataclasses

    from pipeline import config as config_lib
    from pipeline import pipeline as pipeline_lib
    config, _ = pipeline_run
    ids = [c.id for c in pipeline_lib.create_pipeline(config).components]
    assert "Forecaster" not in ids
    components = pipeline_lib.create_pipeline(dataclasses.replace(config, forecast_after_push=True)).components
    # Last in the run's order, and fed by the Pusher (which other components may come right before).
    assert components[-1].id == "Forecaster"
    assert [c.id for c in components[-1].upstream_nodes] == ["AtomicPusher"]
    with pytest.raises(config_lib.ConfigError, match="--forecast-after-push cannot forecast a model with future"):
        dataclasses.replace(config, forecast_after_push=True,
                            data=dataclasses.replace(config.data, future_covariate_columns=("promo",)))


def test_the_description_of_a_per_series_model_lists_the_training_series(covariate_transform):
    import tensorflow_transform as tft

    from components import trainer as trainer_lib
    from components.trainer_options import ModelConfig
    from tests import conftest
    out, _ = covariate_transform
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    known = trainer_lib.training_series_ids(conftest.transformed_files(out, "train"), conftest.data_accessor(out),
                                            tft_output)
    assert known == ["high", "low"]
    custom_config = {"windows": {"history": 8, "horizon": 2, "seasonal_periods": [10], "step_seconds": 3600.0,
                                 "calendar_features": True},
                     "data": {"path": "/data/x.csv", "timestamp_column": "t", "target_column": "y",
                              "series_id_column": "id", "future_covariate_columns": ["price"]}}
    description = trainer_lib.model_description(custom_config, ModelConfig(scaling="per_series"), known)
    assert description["known_series"] == ["high", "low"] and description["windows"]["context"] == 10
    assert "path" not in description["data"]
    inputs = batch_forecast.ModelInputs.from_description(description)
    assert inputs == batch_forecast.ModelInputs(
        context=10, horizon=2, covariates=("price",), future_covariates=("price",), origin_timestamp=True,
        series_id=True, known_series=frozenset({"high", "low"}))


def test_a_business_hours_series_is_forecast_on_its_open_hours():
    """Friday 19:00 and 20:00 close the week: the next steps are Monday's first open hours."""
    times = pd.date_range("2024-01-05 17:00", periods=4, freq="h")  # Fri 17:00-20:00
    frame = one_series([t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times])
    data = DataConfig(path="", business_hours="07:00-21:00")
    model = batch_forecast.ModelInputs(context=C, horizon=3, origin_timestamp=True)
    result = batch_forecast.series_inputs("series", chunks_of(frame, data.columns)["series"], data, model)
    assert isinstance(result, batch_forecast.SeriesInputs)
    stamps = pd.to_datetime(result.times, unit="s", utc=True).strftime("%a %H:%M").tolist()
    assert stamps == ["Mon 07:00", "Mon 08:00", "Mon 09:00"]


def test_the_description_carries_the_business_hours():
    description = {"data": {"business_hours": "07:00-21:00", "business_days": "Mon-Sat", "target_column": "calls"}}
    data = batch_forecast.data_config("x.csv", description, {"business_hours": None, "business_days": None})
    assert (data.business_hours, data.business_days, data.target_column) == ("07:00-21:00", "Mon-Sat", "calls")


def test_the_csv_quotes_text_only_where_a_cell_needs_it(tmp_path):
    def batch(ids: list[str]) -> dict[str, np.ndarray]:
        return {"series_id": np.array(ids, dtype=object), batch_forecast.TIMESTAMP_COLUMN: np.array([0, 0]),
                batch_forecast.STEP_COLUMN: np.array([1, 1]), batch_forecast.FORECAST_COLUMN: np.array([0.5, 1.25])}

    plain, special = tmp_path / "plain.csv", tmp_path / "special.csv"
    batch_forecast.write_forecasts([batch(["a", "b"])], str(plain), "store")
    batch_forecast.write_forecasts([batch(['x,1', 'say "hi"'])], str(special), "store")
    assert plain.read_text().splitlines() == ["store,timestamp,step,forecast", "a,1970-01-01T00:00:00Z,1,0.5",
                                              "b,1970-01-01T00:00:00Z,1,1.25"]
    assert pd.read_csv(special)["store"].tolist() == ['say "hi"', "x,1"]
