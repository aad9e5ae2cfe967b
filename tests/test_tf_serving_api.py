"""The client's checks against any server of TF Serving's API: always the local server, and a real
TensorFlow Serving when ``TF_SERVING_GRPC`` gives its address.

No TF Serving runs on our machines (no Docker engine), so the ``tf_serving`` cases are skipped
here. To run them against a container:

    docker run -d -p 8500:8500 lstm-forecast-serving:cpu      # built from the Dockerfile
    TF_SERVING_GRPC=localhost:8500 TF_SERVING_MODEL_DIR=runs/demo/serving_model/lstm_forecast/<v> \\
        make test PYTEST_ARGS="tests/test_tf_serving_api.py"

``TF_SERVING_MODEL`` names the model (default ``lstm_forecast``); ``TF_SERVING_MODEL_DIR`` is the
SavedModel the server serves, for comparing forecasts with the in-process call.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from serving import client as client_lib
from serving import contract, dataplane, repository
from serving import grpc_server as grpc_lib
from tests.conftest import in_process_forecast


@pytest.fixture(params=["local", "tf_serving"], scope="module")
def target(request, pushed_model):
    """(address, model name, SavedModel directory or None) of a server to check."""
    if request.param == "tf_serving":
        address = os.environ.get("TF_SERVING_GRPC")
        if not address:
            pytest.skip("TF_SERVING_GRPC is not set: no real TF Serving to check against")
        yield address, os.environ.get("TF_SERVING_MODEL", "lstm_forecast"), os.environ.get("TF_SERVING_MODEL_DIR")
        return
    base = os.path.dirname(pushed_model)
    model = repository.ModelRepository("co2", base, run_warmup=dataplane.run_request, xla_cpu_compilation_enabled=True)
    model_server = dataplane.DataPlane(model, batching=dataplane.BatchingOptions())
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    try:
        yield f"127.0.0.1:{port}", "co2", pushed_model
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()


@pytest.fixture()
def client(target):
    address, model_name, _ = target
    with client_lib.ForecastClient(address, model_name, timeout_s=30) as forecast_client:
        forecast_client.wait_until_ready(120)
        yield forecast_client


def _inputs(client, rows=5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Made-up windows of the served context length, and the timestamps of their origins if it takes them."""
    inputs = client.metadata()[contract.SIGNATURE_NAME]["inputs"]
    others = sorted(set(inputs) - {contract.INPUT_KEY, contract.ORIGIN_TIMESTAMP_INPUT_KEY})
    if others:
        pytest.skip(f"the served model also takes {others}; these checks send windows and timestamps only")
    context = inputs[contract.INPUT_KEY][-1]
    base = np.linspace(330, 340, context, dtype=np.float32)
    windows = base + np.random.default_rng(0).normal(0, 0.5, (rows, context)).astype(np.float32)
    extra = {}
    if contract.ORIGIN_TIMESTAMP_INPUT_KEY in inputs:
        # Saturdays of 2024, a week apart (the bundled data is weekly, W-SAT).
        extra[contract.ORIGIN_TIMESTAMP_INPUT_KEY] = 1704499200 + 7 * 86400 * np.arange(rows, dtype=np.int64)
    return windows, extra


def test_signatures_follow_the_contract(client):
    signatures = client.metadata()
    default = signatures[contract.SIGNATURE_NAME]
    assert contract.INPUT_KEY in default["inputs"] and default["inputs"][contract.INPUT_KEY][0] == -1
    # Any other input is one the contract names: the timestamp and the series id [batch], covariates.
    for key, shape in default["inputs"].items():
        if key in (contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY):
            assert shape == [-1], key
        else:
            assert key == contract.INPUT_KEY or key.startswith(
                (contract.COVARIATE_INPUT_PREFIX, contract.FUTURE_INPUT_PREFIX)), key
            assert len(shape) == 2 and shape[0] == -1, key
    # A point model returns the forecast; a quantile model (the default) its quantiles and levels too.
    assert set(default["outputs"]) in ({contract.OUTPUT_KEY}, {contract.OUTPUT_KEY, contract.QUANTILES_OUTPUT_KEY,
                                                               contract.QUANTILE_LEVELS_OUTPUT_KEY})
    assert contract.EXAMPLES_SIGNATURE_NAME in signatures
    assert "AVAILABLE" in client.status().values()


def test_forecasts_equal_the_in_process_signature(client, target):
    windows, extra = _inputs(client)
    forecasts = client.predict(windows, extra_inputs=extra)
    assert forecasts.dtype == np.float32 and forecasts.shape[0] == len(windows)
    if target[2]:
        np.testing.assert_allclose(forecasts, in_process_forecast(target[2], windows, extra), rtol=1e-4, atol=1e-3)


def test_errors_map_to_the_same_exceptions(client, target):
    address, model_name, _ = target
    windows, extra = _inputs(client, rows=2)

    def request(values=windows, **options):
        return client_lib.build_predict_request(model_name, values, extra_inputs=extra, **options)

    stub = client._predictions
    wrong_alias = request()
    wrong_alias.inputs["values"].CopyFrom(wrong_alias.inputs.pop(contract.INPUT_KEY))
    wrong_dtype = request()
    wrong_dtype.inputs[contract.INPUT_KEY].CopyFrom(tf.make_tensor_proto(windows.astype(np.float64)))
    for bad in (wrong_alias, wrong_dtype, request(windows[:, :-1])):
        with pytest.raises(client_lib.InvalidRequestError):
            client._call(stub.Predict, bad)
    with pytest.raises(client_lib.InvalidRequestError, match="not found in signature def"):
        client._call(stub.Predict, request(signature_name="no_such_signature"))
    with client_lib.ForecastClient(address, "no_such_model") as other:
        with pytest.raises(client_lib.ModelNotFoundError):
            other.predict(windows, extra_inputs=extra)
    with client_lib.ForecastClient(address, model_name, version=987654321) as other:
        with pytest.raises(client_lib.ModelNotFoundError):
            other.predict(windows, extra_inputs=extra)
    np.testing.assert_array_equal(client.predict(windows, extra_inputs=extra),
                                  client.predict(windows, extra_inputs=extra))
