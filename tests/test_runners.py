"""The same pipeline for other orchestrators and Beam runners: Kubeflow/Vertex compile, Beam presets."""

import json
import os
import tempfile

import pytest
import tensorflow as tf
from apache_beam.options import pipeline_options

from components import features, windowing
from pipeline import cli, local_runner
from pipeline import config as config_lib
from tests.conftest import DATA

IMAGE = "europe-docker.pkg.dev/project/repo/lstm-forecast-pipeline:1"


def test_compile_kubeflow_writes_the_component_graph(tmp_path, capsys):
    spec_path = tmp_path / "pipeline.json"
    # The data and output are local here: compiling reads the first series of the data (to resolve
    # the windows) and uploads the Transform and Trainer modules (as a wheel) into the pipeline root,
    # which needs credentials for gs:// paths and none is reachable.
    output = tmp_path / "runs" / "co2"
    code = cli.main(["compile-kubeflow", "--data", DATA, "--output", str(output),
                     "--image", IMAGE, "--pipeline-json", str(spec_path), "--beam-preset", "dataflow",
                     "--beam-option", "project=p", "--beam-option", "region=europe-west4",
                     "--beam-option", "temp_location=gs://bucket/tmp"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "12 components" in printed
    assert "history 52, horizon 4, seasonal periods 52 (context 52)" in printed
    spec = json.loads(spec_path.read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    depends = {name: sorted(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert depends == {
        "TimeSeriesExampleGen": [],
        "StatisticsGen": ["TimeSeriesExampleGen"],
        "SchemaGen": ["StatisticsGen"],
        "ExampleValidator": ["SchemaGen", "StatisticsGen"],
        "Transform": ["SchemaGen", "TimeSeriesExampleGen"],
        "Trainer": ["SchemaGen", "Transform"],
        "RefitTrainer": ["SchemaGen", "Trainer", "Transform"],
        # KubeflowV2DagRunner compiles the LatestBlessedModelStrategy resolver into two tasks.
        "LatestBlessedModelResolver-model-blessing-resolver": [],
        "LatestBlessedModelResolver-model-resolver": [],
        "Evaluator": ["LatestBlessedModelResolver-model-resolver", "TimeSeriesExampleGen", "Trainer"],
        "TestEvaluator": ["RefitTrainer", "TimeSeriesExampleGen"],
        "AtomicPusher": ["Evaluator", "RefitTrainer"],
    }
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]
    assert baseline["producerTask"] == "LatestBlessedModelResolver-model-resolver"
    queries = spec["pipelineSpec"]["deploymentSpec"]["executors"][
        "LatestBlessedModelResolver-model-blessing-resolver_executor"]["resolver"]["outputArtifactQueries"]
    assert "metadata.blessed.number_value=1" in queries["model_blessing"]["filter"]
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == str(output / "pipeline_root")
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    example_gen = executors["TimeSeriesExampleGen_executor"]["container"]
    assert example_gen["image"] == IMAGE
    assert "--runner=DataflowRunner" in example_gen["args"] and "--project=p" in example_gen["args"]
    assert all(e["container"]["image"] == IMAGE for e in executors.values() if "container" in e)


@pytest.mark.parametrize("preset, options, runner, check", [
    ("direct", (), "DirectRunner", lambda o: o.view_as(pipeline_options.DirectOptions).direct_running_mode
     == "in_memory"),
    ("dataflow", ("project=p", "region=europe-west4", "temp_location=gs://b/tmp"), "DataflowRunner",
     lambda o: o.view_as(pipeline_options.GoogleCloudOptions).region == "europe-west4"),
    ("flink", ("flink_master=localhost:8081", "environment_type=LOOPBACK"), "FlinkRunner",
     lambda o: o.view_as(pipeline_options.FlinkRunnerOptions).flink_master == "localhost:8081"),
    ("spark", ("spark_master_url=spark://host:7077",), "SparkRunner",
     lambda o: o.view_as(pipeline_options.SparkRunnerOptions).spark_master_url == "spark://host:7077"),
])
def test_beam_presets_parse_as_beam_options(preset, options, runner, check):
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path="x"), output_dir="o",
                                       beam_preset=preset, beam_options=options)
    parsed = pipeline_options.PipelineOptions(config.beam_pipeline_args())
    assert parsed.view_as(pipeline_options.StandardOptions).runner == runner
    assert check(parsed)


def test_a_preset_without_its_options_is_refused_with_what_it_needs(tmp_path, capsys):
    code = cli.main(["run", "--data", "x.csv", "--output", str(tmp_path), "--beam-preset", "dataflow",
                     "--beam-option", "project=p"])
    assert code == 1
    assert "error: --beam-preset dataflow needs --beam-option region=... temp_location=..." in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _examples_by_split(examples_uri: str) -> dict[str, list[tf.train.Example]]:
    """Each split's examples by origin (the bytes may differ: proto maps serialize in any order)."""
    def origin(example: tf.train.Example) -> int:
        return example.features.feature[features.ORIGIN_TIMESTAMP].int64_list.value[0]

    return {split: sorted((tf.train.Example.FromString(record) for record in tf.data.TFRecordDataset(
        tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*"), compression_type="GZIP").as_numpy_iterator()),
        key=origin) for split in windowing.SPLITS}


def test_multi_processing_direct_runner_writes_the_same_examples_as_in_memory(tmp_path):
    """``--beam-mode multi_processing`` (worker processes) against the default in-memory runner."""
    written = {}
    for mode in ("in_memory", "multi_processing"):
        config = config_lib.PipelineConfig(data=config_lib.DataConfig(path=DATA), output_dir=str(tmp_path / mode),
                                           beam_direct_running_mode=mode, beam_num_workers=2)
        assert f"--direct_running_mode={mode}" in config.beam_pipeline_args()
        written[mode] = _examples_by_split(local_runner.run(config, windows_only=True).examples_uri)
    # The data's missing weeks keep the context to one year (options.gap_tolerant_cycles).
    assert [len(written["in_memory"][s]) for s in windowing.SPLITS] == [1058, 339, 340]
    assert written["multi_processing"] == written["in_memory"]


def test_tfx_module_wheels_leave_nothing_in_the_temporary_directory(tmp_path, monkeypatch):
    """TFX builds a module's wheel in mkdtemp() directories it never removes: a run keeps them in its scratch."""
    from tfx.components.util import udf_utils

    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    with local_runner.scratch_tempdir() as scratch:
        assert tempfile.gettempdir() == scratch and os.environ["TMPDIR"] == scratch
        wheel, _ = udf_utils.package_user_module_file("transform", os.path.abspath("components/transform.py"),
                                                      str(tmp_path / "root"))
        assert os.listdir(scratch)  # where TFX built it
    assert os.path.exists(wheel) and wheel.startswith(str(tmp_path / "root"))
    assert os.listdir(shared_tmp) == []
    assert tempfile.gettempdir() == str(shared_tmp)
