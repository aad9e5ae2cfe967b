"""Static checks of the production containers: the Dockerfile, .dockerignore, docker-compose.yml
and the TF Serving configuration in serving/config/ (no Docker engine runs here).

Each config file is parsed with protobuf's text format into the proto TF Serving reads it as.
``ModelServerConfig`` comes from tensorflow-serving-api; ``BatchingParameters`` and
``MonitoringConfig`` are not in that package, so they are built here from the field numbers of
the upstream .proto files (see :func:`_serving_protos`).
"""

import fnmatch
import pathlib
import re
import shlex

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from pipeline import config as config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG = REPO / "serving" / "config"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
START_SCRIPT = CONFIG / "start_model_server.sh"
TF_SERVING_VERSION = "2.21.0"


def _serving_protos():
    """Message classes for tensorflow.serving.BatchingParameters and MonitoringConfig.

    Fields as in tensorflow/serving's
    tensorflow_serving/servables/tensorflow/session_bundle_config.proto (BatchingParameters 1-7;
    newer releases add fields after these) and tensorflow_serving/config/monitoring_config.proto.
    """
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="lstm_forecast_test/tf_serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])

    def field(message, name, number, type_, label=f.LABEL_OPTIONAL, type_name=None):
        message.field.add(name=name, number=number, type=type_, label=label, type_name=type_name)

    batching = file.message_type.add(name="BatchingParameters")
    for name, number in [("max_batch_size", 1), ("batch_timeout_micros", 2), ("max_enqueued_batches", 3),
                         ("num_batch_threads", 4)]:
        field(batching, name, number, f.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
    field(batching, "thread_pool_name", 5, f.TYPE_MESSAGE, type_name=".google.protobuf.StringValue")
    field(batching, "allowed_batch_sizes", 6, f.TYPE_INT64, label=f.LABEL_REPEATED)
    field(batching, "pad_variable_length_inputs", 7, f.TYPE_BOOL)

    prometheus = file.message_type.add(name="PrometheusConfig")
    field(prometheus, "enable", 1, f.TYPE_BOOL)
    field(prometheus, "path", 2, f.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    field(monitoring, "prometheus_config", 1, f.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig")

    pool.Add(file)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    return get("tensorflow.serving.BatchingParameters"), get("tensorflow.serving.MonitoringConfig")


BatchingParameters, MonitoringConfig = _serving_protos()


def _parse(path: pathlib.Path, message_class):
    return text_format.Parse(path.read_text(), message_class())


# --- the Dockerfile, read as instructions -------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _global_args() -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args = {}
    for keyword, rest in _instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def _stages() -> dict[str, dict]:
    """Stage name -> {"from": image, "instructions": [(KEYWORD, args), ...]}."""
    stages, current = {}, None
    for keyword, rest in _instructions():
        if keyword == "FROM":
            words = rest.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {rest}"
            current = stages[words[2]] = {"from": words[0], "instructions": []}
        elif current is not None:
            current["instructions"].append((keyword, rest))
    return stages


def _copies():
    """(stage, sources, destination, from_stage) for each COPY/ADD."""
    for stage, spec in _stages().items():
        for keyword, rest in spec["instructions"]:
            if keyword in ("COPY", "ADD"):
                words = shlex.split(rest)
                options = [w for w in words if w.startswith("--")]
                paths = [w for w in words if not w.startswith("--")]
                from_stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
                yield stage, paths[:-1], paths[-1], from_stage


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def _dockerignore_allows(relative: str) -> bool:
    """Docker's .dockerignore rule, enough for our patterns: the last pattern matching the path or
    one of its parent directories decides; '!' re-includes."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(p.split("/")[-1], body[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatchcase(p, body) and p.count("/") == body.count("/") for p in prefixes)
        if hit:
            allowed = negate
    return allowed


# --- the config files parse as their protos ----------------------------------------------------

def test_models_config_parses_and_serves_the_pushed_model():
    config = _parse(CONFIG / "models.config", model_server_config_pb2.ModelServerConfig)
    (model,) = config.model_config_list.config
    assert model.name == config_lib.DEFAULT_MODEL_NAME
    assert model.base_path == f"/models/{config_lib.DEFAULT_MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions >= 1


@pytest.mark.parametrize("name", ["batching_parameters_cpu.txt", "batching_parameters_gpu.txt"])
def test_batching_parameters_parse_and_are_consistent(name):
    params = _parse(CONFIG / name, BatchingParameters)
    for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        assert params.HasField(field), f"{name}: {field} is set explicitly"
    sizes = list(params.allowed_batch_sizes)
    # TF Serving's rules (session_bundle_config.proto): increasing, the last one is max_batch_size.
    assert sizes == sorted(set(sizes)) and sizes[-1] == params.max_batch_size.value
    # The serving signatures pad to power-of-two buckets; the batcher pads to the same shapes.
    assert all(size & (size - 1) == 0 for size in sizes), sizes
    assert params.num_batch_threads.value >= 1 and params.max_enqueued_batches.value >= 1


def test_batching_parameters_reject_unknown_fields():
    """The parser used above is strict, as TF Serving's is: a misspelt field fails."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 8 }", BatchingParameters())


def test_monitoring_config_parses_with_the_prometheus_endpoint():
    config = _parse(CONFIG / "monitoring.config", MonitoringConfig)
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


# --- the Dockerfile ----------------------------------------------------------------------------

def test_dockerfile_has_the_three_targets_on_pinned_images():
    stages, args = _stages(), _global_args()
    assert {"serving-cpu", "serving-gpu", "pipeline"} <= set(stages)
    assert args["TF_SERVING_VERSION"] == TF_SERVING_VERSION
    assert _expand(stages["serving-cpu"]["from"], args) == f"tensorflow/serving:{TF_SERVING_VERSION}"
    assert _expand(stages["serving-gpu"]["from"], args) == f"tensorflow/serving:{TF_SERVING_VERSION}-gpu"
    for stage in ("pipeline", "pipeline-build"):
        image = _expand(stages[stage]["from"], args)
        assert image.startswith("debian:trixie") and not image.endswith(":latest")


def test_tf_serving_version_matches_the_tensorflow_we_train_with():
    """The server is the release built on the training TensorFlow's major.minor."""
    lock = (REPO / "requirements.lock").read_text()
    tensorflow = re.search(r"^tensorflow==(\S+)$", lock, re.M).group(1)
    assert tensorflow.split(".")[:2] == TF_SERVING_VERSION.split(".")[:2]


def test_every_copy_source_exists_or_is_the_model_build_arg():
    args, stages = _global_args(), _stages()
    assert "MODEL_DIR" in args and "build argument" in DOCKERFILE.read_text()
    for stage, sources, _, from_stage in _copies():
        if from_stage is not None:
            assert from_stage in stages, f"{stage}: COPY --from={from_stage} names no stage"
            continue
        for source in sources:
            if "${MODEL_DIR}" in source:
                # Build output (the pushed versions): must be let into the context.
                assert _dockerignore_allows(_expand(source, args) + "/1/saved_model.pb"), source
                continue
            assert (REPO / source).exists(), f"{stage}: COPY source {source} is not in the repository"
            assert _dockerignore_allows(source), f"{stage}: {source} is excluded by .dockerignore"


def test_dockerignore_keeps_run_outputs_other_than_pushed_models_out():
    assert not _dockerignore_allows("runs/demo/pipeline_root/Trainer/model/1/saved_model.pb")
    assert not _dockerignore_allows("runs/demo/metadata.sqlite")
    assert not _dockerignore_allows("tests/test_serving_config.py")
    assert not _dockerignore_allows("serving/__pycache__/dataplane.cpython-313.pyc")
    assert _dockerignore_allows("runs/demo/serving_model/lstm_forecast/1/saved_model.pb")
    assert _dockerignore_allows("serving/config/models.config")


def test_models_are_copied_to_the_base_path_of_models_config():
    config = _parse(CONFIG / "models.config", model_server_config_pb2.ModelServerConfig)
    base_path = config.model_config_list.config[0].base_path
    for stage in ("serving-cpu", "serving-gpu"):
        destinations = [dest for s, sources, dest, _ in _copies()
                        if s == stage and any("${MODEL_DIR}" in src for src in sources)]
        assert [d.rstrip("/") for d in destinations] == [base_path], stage


def test_serving_images_copy_every_config_file_the_flags_name():
    flags = _start_script_flags()
    env_values = {}
    for stage in ("serving-cpu", "serving-gpu"):
        instructions = _stages()[stage]["instructions"]
        copied = set()
        for s, sources, dest, _ in _copies():
            if s == stage:
                copied |= {dest.rstrip("/") + "/" + pathlib.Path(src).name if dest.endswith("/") else dest
                           for src in sources}
        env = dict(kv.split("=", 1) for keyword, rest in instructions if keyword == "ENV" for kv in rest.split())
        env_values[stage] = env["TFS_BATCHING_PARAMETERS_FILE"]
        for name in ("model_config_file", "monitoring_config_file"):
            assert flags[name] in copied, (stage, name)
        assert env["TFS_BATCHING_PARAMETERS_FILE"] in copied, stage
        entrypoint = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
        assert entrypoint == ['["/usr/local/bin/start_model_server.sh"]']
        assert "/usr/local/bin/start_model_server.sh" in copied
        assert "EXPOSE 8500 8501" in {f"{k} {r}" for k, r in instructions}
    assert env_values == {"serving-cpu": "/config/batching_parameters_cpu.txt",
                          "serving-gpu": "/config/batching_parameters_gpu.txt"}


# --- the flags ---------------------------------------------------------------------------------

def _start_script_flags() -> dict[str, str]:
    flags = {}
    for match in re.finditer(r"^\s*--(\w+)=(.*?)\s*\\?$", START_SCRIPT.read_text(), re.M):
        flags[match.group(1)] = match.group(2).strip('"')
    return flags


def test_start_script_sets_the_production_flags():
    flags = _start_script_flags()
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["model_config_file"] == "/config/models.config"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    assert flags["enable_batching"] == "true"
    assert "TFS_BATCHING_PARAMETERS_FILE" in flags["batching_parameters_file"]
    assert flags["monitoring_config_file"] == "/config/monitoring.config"
    assert flags["enable_model_warmup"] == "true"
    # The default export needs no XLA; the flag lets an opt-in XLA export (--serving-xla) run too.
    assert flags["xla_cpu_compilation_enabled"] == "true"
    text = START_SCRIPT.read_text()
    assert text.startswith("#!/bin/sh\n") and 'exec tensorflow_model_server' in text and '"$@"' in text


def test_flags_md_documents_exactly_the_flags_of_the_start_script():
    documented = set(re.findall(r"^\| `--(\w+)` \|", (CONFIG / "flags.md").read_text(), re.M))
    assert documented == set(_start_script_flags())


# --- docker-compose.yml ------------------------------------------------------------------------

def test_compose_runs_the_serving_targets_on_8500_and_8501():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"serving-cpu", "serving-gpu"}
    for name, service in services.items():
        assert service["build"]["target"] == name
        assert service["build"]["context"] == "."
        # The flags are the image's (start_model_server.sh): compose must not replace them.
        assert "entrypoint" not in service and "command" not in service
        assert {"8500:8500", "8501:8501"} <= set(service["ports"])
        model_dir = service["build"]["args"]["MODEL_DIR"]
        assert model_dir == "${MODEL_DIR:-" + _global_args()["MODEL_DIR"] + "}"
        assert len(service["profiles"]) == 1, "one profile each: both use the same host ports"


def test_compose_reserves_a_gpu_for_the_gpu_service_only():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    (device,) = services["serving-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in services["serving-cpu"]
