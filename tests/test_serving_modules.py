"""The local server's modules on their own, without a trained model: the status table, the adapters
that read it, the repository's version states, and which module may import which."""

import ast
import json
import logging
import pathlib
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, prediction_service_pb2_grpc

from serving import client as client_lib
from serving import dataplane, repository, status_codes
from serving import grpc_server as grpc_lib
from serving import rest as rest_lib

REPO = pathlib.Path(__file__).resolve().parent.parent

# Each refusal of the data plane, the gRPC code and the HTTP status it must get.
EXPECTED = [
    (dataplane.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (dataplane.NotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (dataplane.UnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (dataplane.RequestError, grpc.StatusCode.UNKNOWN, 500),
]


@pytest.mark.parametrize("error_class, code, http_status", EXPECTED)
def test_each_refusal_has_one_grpc_code_and_one_http_status(error_class, code, http_status):
    assert status_codes.status_of(error_class("refused")) == (code, http_status)


def test_every_refusal_of_the_data_plane_is_in_the_table():
    refusals = {cls for cls in vars(dataplane).values()
                if isinstance(cls, type) and issubclass(cls, dataplane.RequestError)}
    assert refusals == set(status_codes.STATUS) == {row[0] for row in EXPECTED}


def test_a_refusal_not_in_the_table_gets_its_base_class_status():
    class LabelError(dataplane.InvalidArgumentError):
        pass

    assert status_codes.status_of(LabelError("x")) == (grpc.StatusCode.INVALID_ARGUMENT, 400)


class _Refusing(dataplane.DataPlane):
    """A data plane whose Predict raises the error set on it."""

    error: Exception = dataplane.RequestError("unset")

    def predict(self, request):
        raise self.error


@pytest.fixture()
def refusing(tmp_path):
    """A refusing data plane behind both adapters: (plane, gRPC stub, REST predict URL)."""
    plane = _Refusing(repository.ModelRepository("m", str(tmp_path), run_warmup=dataplane.run_request,
                                                 poll_seconds=0.1))
    server, port = grpc_lib.start_server(plane, 0, host="127.0.0.1")
    rest, rest_port = rest_lib.start_rest_server(plane, 0, host="127.0.0.1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield plane, prediction_service_pb2_grpc.PredictionServiceStub(channel), \
        f"http://127.0.0.1:{rest_port}/v1/models/m:predict"
    channel.close()
    rest.shutdown()
    server.stop(grace=None).wait()
    plane.stop()


@pytest.mark.parametrize("error_class, code, http_status", EXPECTED)
def test_grpc_and_rest_answer_a_refusal_from_the_same_table(refusing, error_class, code, http_status):
    plane, stub, url = refusing
    plane.error = error_class(f"refused with {error_class.__name__}")
    with pytest.raises(grpc.RpcError) as grpc_error:
        stub.Predict(client_lib.build_predict_request("m", np.zeros((1, 3), np.float32)), timeout=10)
    assert grpc_error.value.code() == code
    assert grpc_error.value.details() == str(plane.error)
    body = json.dumps({"instances": [[0.0, 0.0, 0.0]]}).encode()
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10)
    assert http_error.value.code == http_status
    assert json.loads(http_error.value.read()) == {"error": str(plane.error)}


def test_a_malformed_rest_request_is_invalid_argument(refusing):
    _, _, url = refusing
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{not json"), timeout=10)
    assert error.value.code == 400
    assert json.loads(error.value.read())["error"].startswith("Malformed request: ")


def _status(plane: dataplane.DataPlane):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = plane.model_name
    return [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state), s.status.error_message)
            for s in plane.status(request).model_version_status]


def test_a_version_that_fails_to_load_goes_from_loading_to_end_and_is_retried(tmp_path, caplog):
    model = repository.ModelRepository("m", str(tmp_path), run_warmup=dataplane.run_request,
                                       max_load_retries=1, load_retry_seconds=0.0)
    plane = dataplane.DataPlane(model)
    seen = []
    model.add_listener(seen.append)
    with pytest.raises(dataplane.NotFoundError, match="Could not find any versions of model m"):
        _status(plane)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"half a file")
    (tmp_path / ".staging-4-1").mkdir()  # not a version
    assert _status(plane) == [(3, "LOADING", "")]
    with caplog.at_level(logging.ERROR, logger=repository.__name__):
        for _ in range(3):  # the first try, the one retry allowed, and no more
            model.poll_once()
    assert [r.getMessage().split("(")[-1].split(")")[0] for r in caplog.records] == ["try 1", "try 2"]
    [(version, state, error)] = _status(plane)
    assert (version, state) == (3, "END") and error
    assert model.version_states() == [repository.VersionState(3, repository.State.END, error)]
    assert model.current is None
    with pytest.raises(dataplane.UnavailableError, match="no version of model m is loaded yet"):
        plane.resolve(model_pb2.ModelSpec(name="m"))
    plane.stop()
    assert seen == [False, False]  # at once, and on stop; never available


def _imports(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_imports_point_one_way():
    for path in (REPO / "serving").glob("*.py"):
        assert not {n for n in _imports(path) if n.split(".")[0] in ("pipeline", "components")}, path.name
    # The pusher needs the version layout only, not the server and its gRPC stack.
    assert {n for n in _imports(REPO / "components" / "pusher.py") if n.startswith("serving.")} == {"serving.versions"}
    assert not {n for n in _imports(REPO / "serving" / "versions.py", top_level_only=True)
                if n.split(".")[0] in ("grpc", "tensorflow", "serving")}
    # The repository and the data plane know no protocol; the repository knows no request path.
    for name in ("repository.py", "dataplane.py"):
        assert not {n for n in _imports(REPO / "serving" / name) if n.split(".")[0] in ("grpc", "grpc_health")}, name
    assert not {n for n in _imports(REPO / "serving" / "repository.py")
                if n.startswith(("serving.dataplane", "serving.grpc_server", "serving.rest"))}
