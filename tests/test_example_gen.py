"""TimeSeriesExampleGen as a user runs it (``lstm-forecast windows``): real TFX component, Beam
DirectRunner and ML Metadata in SQLite, on several files and series with covariates."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components import features, windowing
from components.example_gen import executor, reader
from pipeline import cli, local_data
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib

FLAGS = ["--series-id-column", "store", "--covariate-columns", "temp", "--history", "6", "--horizon", "2",
         "--stride", "2", "--split-fractions", "0.6,0.2", "--target-column", "sales", "--timestamp-column", "time"]


def write_inputs(directory):
    """Three hourly series over two files, one CSV and one Parquet; series 'c' is too short."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    frames = []
    for store, hours in (("a", 60), ("b", 45), ("c", 5)):
        time = pd.date_range("2024-03-01", periods=hours, freq="h", tz="UTC")
        frames.append(pd.DataFrame({"store": store, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "sales": rng.normal(100, 10, hours).round(2),
                                    "temp": rng.normal(15, 5, hours).round(2)}))
    data = pd.concat(frames).sample(frac=1, random_state=1)  # rows in no particular order
    data.iloc[::2].to_csv(directory / "part-0.csv", index=False)
    data.iloc[1::2].to_parquet(directory / "part-1.parquet", index=False)
    return directory


def read_examples(examples_uri, split):
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    return {(f[features.SERIES_ID].bytes_list.value[0].decode(), f[features.ORIGIN_TIMESTAMP].int64_list.value[0]): f
            for f in (tf.train.Example.FromString(r).features.feature for r in records)}


def test_windows_command_writes_the_windows_the_per_series_functions_give(tmp_path, capsys):
    data = write_inputs(tmp_path / "data")
    output = tmp_path / "run"
    assert cli.main(["windows", "--data", str(data), "--output", str(output), *FLAGS]) == 0
    printed = capsys.readouterr().out

    config = config_lib.resolve_from_data(cli.pipeline_config_from_flags(cli.build_parser().parse_args(
        ["windows", "--data", str(data), "--output", str(output), *FLAGS])))
    # Hourly, but no series holds 3 days: no season, the context is the history.
    assert (config.windows.seasonal_periods, config.windows.context) == ((), 6)
    assert "history 6, horizon 2, seasonal periods none (context 6)" in printed
    options = pipeline_lib.windowing_options(config)
    expected = local_data.window_files(reader.match_files(str(data)), options)
    examples_uri = printed.split("windows written in ")[1].split(" to ")[1].splitlines()[0]
    for index, split in enumerate(windowing.SPLITS):
        got = read_examples(examples_uri, split)
        want = {(sid, int(origin)): (windows[index], i) for sid, (windows_list, _) in expected.items()
                for windows in [windows_list] if windows for i, origin in enumerate(windows[index].origin_times)}
        assert got.keys() == want.keys() and len(got) > 0
        for key, feature in got.items():
            windows, i = want[key]
            np.testing.assert_array_equal(feature[features.HISTORY].float_list.value, windows.histories[i])
            np.testing.assert_array_equal(feature[features.TARGET].float_list.value, windows.targets[i])
            np.testing.assert_array_equal(feature[features.TARGET_TIMESTAMPS].int64_list.value, windows.target_times[i])
            np.testing.assert_array_equal(feature[features.covariate_feature("temp")].float_list.value,
                                          windows.covariates["temp"][i])
            np.testing.assert_allclose(feature[features.MASE_SCALE].float_list.value, [windows.mase_scale],
                                       rtol=1e-6)
            # The calendar is Transform's work, from the origin's timestamp.
            assert not [name for name in feature if name.startswith(("hour_", "day_", "calendar"))]

    summary = executor.read_summary(examples_uri)
    assert summary["rows_read"] == 110 and summary["files"] == 2 and summary["series"] == 3
    assert summary["series_skipped"] == [{"series_id": "c", "rows": 5,
                                          "reason": "5 points, needs at least 8 (a context of 6 and a horizon of 2)"}]
    assert summary["frequencies"] == {"h": 3} and summary["frequency_inferred"]
    assert summary["windows"] == {s: sum(len(w[i]) for w, _ in expected.values() if w)
                                  for i, s in enumerate(windowing.SPLITS)}
    assert "series           3 (2 windowed, 1 skipped, holding 5 rows)" in printed
    # Progress as LocalDagRunner goes.
    assert re.search(r"  TimeSeriesExampleGen   complete in \d+\.\d s", printed)
    assert f"windows          train {summary['windows']['train']}, eval {summary['windows']['eval']}" in printed


def test_bad_data_fails_the_run_with_its_location_and_publishes_no_examples(tmp_path, capsys):
    data = write_inputs(tmp_path / "data")
    with open(data / "part-0.csv", "a") as f:
        f.write("a,2024-03-09T00:00:00Z,12..5,3\n")
    line = sum(1 for _ in open(data / "part-0.csv"))
    output = tmp_path / "run"
    assert cli.main(["windows", "--data", str(data), "--output", str(output), *FLAGS]) == 1
    error = capsys.readouterr().err
    assert f"{data / 'part-0.csv'}:{line}: column 'sales': not a number: '12..5'" in error

    # The failed execution published nothing a later component could pick up, and left no data.
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(output / "metadata.sqlite")))
    examples = store.get_artifacts_by_type("Examples")
    assert all(a.state != metadata_store_pb2.Artifact.LIVE for a in examples)
    written = [f for a in examples for f in tf.io.gfile.glob(os.path.join(a.uri, "Split-*", "data_tfrecord-*"))]
    assert written == []


def test_no_training_windows_is_an_error_that_shows_the_summary(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("timestamp,value\n" + "".join(f"2024-01-{d + 1:02d},{d}\n" for d in range(6)))
    assert cli.main(["windows", "--data", str(path), "--output", str(tmp_path / "run"), "--history", "4",
                     "--horizon", "1"]) == 1
    error = capsys.readouterr().err
    # Six daily points, L=4, H=1: two windows, with targets on the 5th and 6th day, after the cuts.
    assert f"{path}: no train windows" in error
    assert "windows          train 0, eval 1, test 1" in error


@pytest.mark.parametrize("flags, message", [
    (["--gap-policy", "fill"], "argument --gap-policy: invalid choice: 'fill'"),
    (["--split-times", "2024-02-01"], "error: --split-times must be two increasing timestamps, got 2024-02-01"),
    (["--frequency", "fortnightly"], "error: --frequency unknown frequency 'fortnightly'"),
], ids=["argparse-choice", "split-times", "frequency"])
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, flags, message):
    output = tmp_path / "run"
    try:
        code = cli.main(["windows", "--data", "x.csv", "--output", str(output), *flags])
    except SystemExit as exit_:  # argparse refuses a bad choice itself
        code = exit_.code
    assert code != 0
    assert message in capsys.readouterr().err
    assert not os.path.exists(output)


def test_config_round_trips_through_json():
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path="d", series_id_column="id", covariate_columns=("t",), frequency="h"),
        output_dir="o", windows=config_lib.WindowConfig(split_times=("2024-01-01", "2024-02-01"), split_gap=2))
    assert config_lib.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["data"]["covariate_columns"] == ["t"]
    resolved = config_lib.resolve(config, "h", 24 * 30)
    assert config_lib.from_json(resolved.to_json()) == resolved


def _example_gen_states(output):
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(output / "metadata.sqlite")))
    executions = store.get_executions_by_type("components.example_gen.component.TimeSeriesExampleGen")
    return [metadata_store_pb2.Execution.State.Name(e.last_known_state)
            for e in sorted(executions, key=lambda e: e.id)]


def test_a_rerun_is_cached_until_the_data_changes(tmp_path, capsys):
    data = tmp_path / "s.csv"
    data.write_text("timestamp,value\n" + "".join(f"2024-01-{d + 1:02d},{d}\n" for d in range(20)))
    output = tmp_path / "run"
    flags = ["windows", "--data", str(data), "--output", str(output), "--history", "3", "--horizon", "1"]
    assert cli.main(flags) == 0
    assert cli.main(flags) == 0
    assert _example_gen_states(output) == ["COMPLETE", "CACHED"]
    with open(data, "a") as f:
        f.write("2024-01-21,20\n")
    os.utime(data, (1, 1))  # the same second as nothing before: the size alone tells the change
    assert cli.main(flags) == 0
    assert cli.main(flags + ["--no-cache"]) == 0
    assert _example_gen_states(output) == ["COMPLETE", "CACHED", "COMPLETE", "COMPLETE"]
