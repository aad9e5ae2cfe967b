"""The local TF Serving-compatible server and the gRPC client, on a free loopback port."""

import json
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from components import windowing
from components.example_gen import series as series_lib
from pipeline import cli
from pipeline.demo import free_port
from serving import client as client_lib
from serving import contract
from serving import server as server_lib
from tests.conftest import in_process_forecast


@pytest.fixture()
def served(model_base_path):
    """A running server on loopback for version 1 of the pushed model, and a client to it."""
    model_server = server_lib.ModelServer("co2", str(model_base_path), poll_seconds=0.1)
    grpc_server, port = server_lib.start_server(model_server, 0, host="127.0.0.1")
    client = client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", timeout_s=10)
    client.wait_until_ready(60)
    yield client, model_base_path, port
    client.close()
    grpc_server.stop(grace=None).wait()
    model_server.stop()


@pytest.fixture(scope="module")
def test_windows(pipeline_run):
    return series_lib.read_split_windows(pipeline_run[1].examples_uri, windowing.TEST)


def test_grpc_forecasts_equal_the_saved_model_in_process(served, test_windows, pushed_model):
    client, _, _ = served
    forecasts = client.predict(test_windows.histories)
    assert forecasts.dtype == np.float32
    assert forecasts.shape == test_windows.targets.shape
    np.testing.assert_allclose(forecasts, in_process_forecast(pushed_model, test_windows.histories),
                               rtol=1e-5, atol=1e-4)


def test_status_and_metadata_describe_the_contract(served, pipeline_run):
    client, _, _ = served
    config, _ = pipeline_run
    assert client.status() == {1: "AVAILABLE"}
    signatures = client.metadata()
    assert signatures[contract.SIGNATURE_NAME] == {
        "inputs": {contract.INPUT_KEY: [-1, config.windows.history]},
        "outputs": {contract.OUTPUT_KEY: [-1, config.windows.horizon]},
    }
    assert contract.EXAMPLES_SIGNATURE_NAME in signatures


def test_bad_requests_get_their_status_and_the_server_keeps_serving(served, test_windows):
    client, _, port = served
    good = test_windows.histories[:2]
    expected = client.predict(good)
    channel_stub = client._predictions  # pylint: disable=protected-access

    def send(request):
        return channel_stub.Predict(request, timeout=5)

    wrong_alias = client_lib.build_predict_request("co2", good)
    wrong_alias.inputs["values"].CopyFrom(wrong_alias.inputs.pop(contract.INPUT_KEY))
    wrong_dtype = client_lib.build_predict_request("co2", good)
    wrong_dtype.inputs[contract.INPUT_KEY].CopyFrom(tf.make_tensor_proto(good.astype(np.float64)))
    cases = {
        "wrong alias": (wrong_alias, "INVALID_ARGUMENT", "not in signature"),
        "wrong dtype": (wrong_dtype, "INVALID_ARGUMENT", "dtype float64"),
        "wrong shape": (client_lib.build_predict_request("co2", good[:, :-1]), "INVALID_ARGUMENT", "shape"),
        "unknown signature": (client_lib.build_predict_request("co2", good, signature_name="nope"),
                              "INVALID_ARGUMENT", 'Serving signature name: "nope" not found in signature def'),
        "unknown model": (client_lib.build_predict_request("other", good), "NOT_FOUND", "Servable not found"),
        "unknown version": (client_lib.build_predict_request("co2", good, version=7), "NOT_FOUND", "Specific(co2, 7)"),
    }
    for name, (request, code, message) in cases.items():
        with pytest.raises(Exception) as error:
            send(request)
        assert error.value.code().name == code, name
        assert message in error.value.details(), name
        # Every bad request is followed by a good one that gets its correct forecast.
        np.testing.assert_array_equal(client.predict(good), expected)


def test_client_maps_status_codes_to_its_exceptions(served, test_windows):
    client, _, port = served
    with pytest.raises(client_lib.InvalidRequestError):
        client.predict(test_windows.histories[:, :-1])
    with client_lib.ForecastClient(f"127.0.0.1:{port}", "other") as other:
        with pytest.raises(client_lib.ModelNotFoundError):
            other.predict(test_windows.histories[:1])


def test_a_newer_version_replaces_the_served_one(served, test_windows):
    client, base, _ = served
    # Written beside the base path, then renamed into it: the server never sees it half-written.
    staging = base.parent / "staging"
    shutil.copytree(base / "1", staging)
    staging.rename(base / "2")
    deadline = time.monotonic() + 30
    while client.status() != {2: "AVAILABLE"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.status() == {2: "AVAILABLE"}
    request = client_lib.build_predict_request("co2", test_windows.histories[:1])
    response = client._predictions.Predict(request, timeout=5)  # pylint: disable=protected-access
    assert response.model_spec.version.value == 2


def test_wait_until_ready_raises_when_nothing_serves():
    with client_lib.ForecastClient(f"127.0.0.1:{free_port()}", "co2", max_attempts=2) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="not AVAILABLE after 1 s"):
            client.wait_until_ready(1.0)
        assert time.monotonic() - started < 5


def test_predict_command_prints_the_served_forecasts(served, test_windows, tmp_path, capsys):
    client, _, port = served
    windows = test_windows.histories[:3]
    path = tmp_path / "windows.json"
    path.write_text(json.dumps({"history": windows.tolist()}))
    code = cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                     "--input", str(path), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(printed["forecast"], client.predict(windows), rtol=1e-6)
