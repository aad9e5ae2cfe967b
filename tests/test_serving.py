"""The local TF Serving-compatible server and the gRPC client, on a free loopback port."""

import dataclasses
import json
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from components import windowing
from pipeline import cli, local_data
from serving import client as client_lib
from serving import contract, dataplane, repository
from serving import grpc_server as grpc_lib
from serving import rest as rest_lib
from tests.conftest import in_process_forecast, in_process_outputs, origins


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_server_for(model_base_path, batching=None, **options) -> dataplane.DataPlane:
    """A data plane of model "co2", started as a stock TF Serving is: XLA compilation off."""
    model = repository.ModelRepository("co2", str(model_base_path), run_warmup=dataplane.run_request, **options)
    return dataplane.DataPlane(model, batching=batching)


# The DataPlane behind each port the served fixture opened.
_SERVERS: dict[int, dataplane.DataPlane] = {}


@pytest.fixture()
def served(model_base_path):
    """A running server (batching on) on loopback for version 1 of the pushed model, and a client."""
    model_server = model_server_for(model_base_path, poll_seconds=0.1,
                                    batching=dataplane.BatchingOptions(), load_retry_seconds=0.2)
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    _SERVERS[port] = model_server
    client = client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", timeout_s=10)
    client.wait_until_ready(60)
    yield client, model_base_path, port
    _SERVERS.pop(port)
    client.close()
    grpc_server.stop(grace=None).wait()
    model_server.stop()


@pytest.fixture(scope="module")
def test_windows(pipeline_run):
    return local_data.read_split_windows(pipeline_run[1].examples_uri, windowing.TEST)


def request_for(windows, rows=slice(None), model_name="co2", **options):
    """A Predict request for ``windows[rows]`` with every input the pushed model takes."""
    return client_lib.build_predict_request(model_name, windows.histories[rows], extra_inputs=origins(windows, rows),
                                            **options)


def test_grpc_forecasts_equal_the_saved_model_in_process(served, test_windows, pushed_model):
    client, _, _ = served
    forecasts = client.predict(test_windows.histories, extra_inputs=origins(test_windows))
    assert forecasts.dtype == np.float32
    assert forecasts.shape == test_windows.targets.shape
    np.testing.assert_allclose(forecasts, in_process_forecast(pushed_model, test_windows.histories,
                                                              origins(test_windows)), rtol=1e-5, atol=1e-4)


def test_grpc_quantiles_equal_the_saved_model_in_process(served, test_windows, pushed_model, pipeline_run):
    client, _, _ = served
    levels = pipeline_run[0].model.quantiles
    result = client.predict_quantiles(test_windows.histories, extra_inputs=origins(test_windows))
    expected = in_process_outputs(pushed_model, test_windows.histories, origins(test_windows))
    assert result.quantiles.shape == (*test_windows.targets.shape, len(levels))
    np.testing.assert_allclose(result.quantiles, expected[contract.QUANTILES_OUTPUT_KEY], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(result.levels, np.float32(levels))
    np.testing.assert_array_equal(result.forecast, result.quantiles[..., levels.index(0.5)])
    assert (np.diff(result.quantiles, axis=-1) >= 0).all()
    lower, upper = result.interval(0.8)
    np.testing.assert_array_equal(lower, result.quantiles[..., levels.index(0.1)])
    np.testing.assert_array_equal(upper, result.quantiles[..., levels.index(0.9)])
    assert result.intervals() == [0.5, 0.8, 0.95]


def test_status_and_metadata_describe_the_contract(served, pipeline_run):
    client, _, _ = served
    config, _ = pipeline_run
    assert client.status() == {1: "AVAILABLE"}
    signatures = client.metadata()
    assert signatures[contract.SIGNATURE_NAME] == {
        "inputs": {contract.INPUT_KEY: [-1, config.windows.context], contract.ORIGIN_TIMESTAMP_INPUT_KEY: [-1]},
        "outputs": {contract.OUTPUT_KEY: [-1, config.windows.horizon],
                    contract.QUANTILES_OUTPUT_KEY: [-1, config.windows.horizon, len(config.model.quantiles)],
                    contract.QUANTILE_LEVELS_OUTPUT_KEY: [-1, len(config.model.quantiles)]},
    }
    assert contract.EXAMPLES_SIGNATURE_NAME in signatures


def test_bad_requests_get_their_status_and_the_server_keeps_serving(served, test_windows):
    client, _, port = served
    good = test_windows.histories[:2]
    expected = client.predict(good, extra_inputs=origins(test_windows, slice(2)))
    channel_stub = client._predictions

    def send(request):
        return channel_stub.Predict(request, timeout=5)

    wrong_alias = request_for(test_windows, slice(2))
    wrong_alias.inputs["values"].CopyFrom(wrong_alias.inputs.pop(contract.INPUT_KEY))
    wrong_dtype = request_for(test_windows, slice(2))
    wrong_dtype.inputs[contract.INPUT_KEY].CopyFrom(tf.make_tensor_proto(good.astype(np.float64)))
    float_time = request_for(test_windows, slice(2))
    float_time.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].CopyFrom(tf.make_tensor_proto(
        test_windows.origin_times[:2].astype(np.float64)))
    wrong_shape = request_for(test_windows, slice(2))
    wrong_shape.inputs[contract.INPUT_KEY].CopyFrom(tf.make_tensor_proto(good[:, :-1]))
    no_time = request_for(test_windows, slice(2))
    del no_time.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY]
    cases = {
        "wrong alias": (wrong_alias, "INVALID_ARGUMENT", "not in signature"),
        "wrong dtype": (wrong_dtype, "INVALID_ARGUMENT", "dtype float64"),
        "timestamp as float": (float_time, "INVALID_ARGUMENT", "input 'origin_timestamp' has dtype float64"),
        "wrong shape": (wrong_shape, "INVALID_ARGUMENT", "shape"),
        "no timestamp": (no_time, "INVALID_ARGUMENT", "missing input(s) ['origin_timestamp']"),
        "unknown signature": (request_for(test_windows, slice(2), signature_name="nope"),
                              "INVALID_ARGUMENT", 'Serving signature name: "nope" not found in signature def'),
        "unknown model": (request_for(test_windows, slice(2), model_name="other"), "NOT_FOUND",
                          "Servable not found"),
        "unknown version": (request_for(test_windows, slice(2), version=7), "NOT_FOUND", "Specific(co2, 7)"),
    }
    for name, (request, code, message) in cases.items():
        with pytest.raises(Exception) as error:
            send(request)
        assert error.value.code().name == code, name
        assert message in error.value.details(), name
        # Every bad request is followed by a good one that gets its correct forecast.
        np.testing.assert_array_equal(client.predict(good, extra_inputs=origins(test_windows, slice(2))), expected)


def test_client_maps_status_codes_to_its_exceptions(served, test_windows):
    client, _, port = served
    with pytest.raises(client_lib.InvalidRequestError):
        client.predict(test_windows.histories[:, :-1], extra_inputs=origins(test_windows))
    with pytest.raises(client_lib.InvalidRequestError, match="origin_timestamp"):
        client.predict(test_windows.histories)
    with client_lib.ForecastClient(f"127.0.0.1:{port}", "other") as other:
        with pytest.raises(client_lib.ModelNotFoundError):
            other.predict(test_windows.histories[:1], extra_inputs=origins(test_windows, slice(1)))


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
    response = client._predictions.Predict(request_for(test_windows, slice(1)), timeout=5)
    assert response.model_spec.version.value == 2


def test_wait_until_ready_raises_when_nothing_serves():
    with client_lib.ForecastClient(f"127.0.0.1:{free_port()}", "co2", max_attempts=2) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="not AVAILABLE after 1 s"):
            client.wait_until_ready(1.0)
        assert time.monotonic() - started < 5


def test_predict_command_prints_the_served_forecasts(served, test_windows, tmp_path, capsys):
    client, _, port = served
    windows, times = test_windows.histories[:3], test_windows.origin_times[:3]
    path = tmp_path / "windows.json"
    path.write_text(json.dumps({"history": windows.tolist(), contract.ORIGIN_TIMESTAMP_INPUT_KEY: times.tolist()}))
    code = cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                     "--input", str(path), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    expected = client.predict_quantiles(windows, extra_inputs=origins(test_windows, slice(3)))
    np.testing.assert_allclose(printed["forecast"], expected.forecast, rtol=1e-6)
    np.testing.assert_allclose(printed["quantiles"], expected.quantiles, rtol=1e-6)
    np.testing.assert_allclose(printed["quantile_levels"], expected.levels, rtol=1e-6)
    np.testing.assert_allclose(printed["intervals"]["80"]["upper"], expected.interval(0.8)[1], rtol=1e-6)
    assert list(printed["intervals"]) == ["50", "80", "95"]
    # The table: a line per step with the forecast and each interval's bounds.
    assert cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2", "--input", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "window 0:" and "80% interval" in lines[1]
    lo, hi = expected.interval(0.95)
    assert lines[2].split()[:2] == ["1", f"{expected.forecast[0, 0]:.3f}"]
    assert lines[2].endswith(f"[{lo[0, 0]:>10.3f}, {hi[0, 0]:>10.3f}]")


def test_predict_command_says_what_else_the_model_needs(served, test_windows, tmp_path, capsys):
    _, _, port = served
    path = tmp_path / "windows.json"
    path.write_text(json.dumps({"history": test_windows.histories[:3].tolist()}))
    assert cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2", "--input", str(path)]) == 1
    assert "the model also needs origin_timestamp" in capsys.readouterr().err


def _wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_quantile_calls_read_the_metadata_once_per_served_version(served, test_windows, pipeline_run, monkeypatch):
    client, base, port = served
    plane = _SERVERS[port]
    metadata_versions = []
    answer_metadata = plane.metadata

    def counted(request):
        response = answer_metadata(request)
        metadata_versions.append(response.model_spec.version.value)
        return response

    monkeypatch.setattr(plane, "metadata", counted)
    levels = np.float32(pipeline_run[0].model.quantiles)

    def call():
        return client.predict_quantiles(test_windows.histories[:2], extra_inputs=origins(test_windows, slice(2)))

    first, second = call(), call()
    assert metadata_versions == [1]
    np.testing.assert_array_equal(first.levels, levels)
    np.testing.assert_array_equal(second.quantiles, first.quantiles)
    # Version 2 takes over: its first answer is from a version the client has not seen, so it reads
    # that version's metadata once; the next call asks no more.
    shutil.copytree(base / "1", base.parent / "staging")
    (base.parent / "staging").rename(base / "2")
    _wait_for(lambda: client.status() == {2: "AVAILABLE"})
    third = call()
    assert metadata_versions == [1, 2]
    fourth = call()
    assert metadata_versions == [1, 2]
    np.testing.assert_array_equal(fourth.levels, levels)
    np.testing.assert_array_equal(third.quantiles, first.quantiles)


def test_a_cached_quantile_signature_that_no_longer_fits_is_read_again(monkeypatch):
    # The server moved from a quantile model to a point model: the cached outputs ask for quantiles,
    # which it refuses; the client reads the new outputs and asks again, which says it is a point model.
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    client = client_lib.ForecastClient("127.0.0.1:1", "m")
    served = {"version": 1, "outputs": (contract.OUTPUT_KEY, contract.QUANTILES_OUTPUT_KEY,
                                        contract.QUANTILE_LEVELS_OUTPUT_KEY)}
    calls = []

    def answer(method, request, timeout_s=None):
        calls.append(type(request).__name__)
        if isinstance(request, get_model_metadata_pb2.GetModelMetadataRequest):
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for alias in served["outputs"]:
                signatures.signature_def[contract.SIGNATURE_NAME].outputs[alias].tensor_shape.dim.add(size=-1)
            response.metadata["signature_def"].Pack(signatures)
        else:
            if set(request.output_filter) - set(served["outputs"]):
                raise client_lib.InvalidRequestError("output filter not in signature")
            response = predict_pb2.PredictResponse()
            rows = request.inputs[contract.INPUT_KEY].tensor_shape.dim[0].size
            for alias in served["outputs"]:
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(np.zeros((rows, 1), np.float32)))
        response.model_spec.version.value = served["version"]
        return response

    monkeypatch.setattr(client, "_call", answer)
    client.metadata()  # as the predict command does: the quantile call asks no more
    client.predict_quantiles(np.zeros((1, 4)))
    assert calls == ["GetModelMetadataRequest", "PredictRequest"]
    served.update(version=2, outputs=(contract.OUTPUT_KEY,))
    with pytest.raises(client_lib.ForecastError, match="it is a point model"):
        client.predict_quantiles(np.zeros((1, 4)))
    assert calls[2:] == ["PredictRequest", "GetModelMetadataRequest", "PredictRequest"]


def test_a_version_pushed_during_traffic_fails_no_request_and_takes_over(served, test_windows):
    client, base, port = served
    stub = client._predictions
    stop, versions, errors = threading.Event(), [], []
    per_thread = {i: [] for i in range(4)}

    def traffic(i, rows):
        request = request_for(test_windows, slice(rows))
        while not stop.is_set():
            try:
                version = stub.Predict(request, timeout=10).model_spec.version.value
                versions.append(version)
                per_thread[i].append(version)
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=traffic, args=(i, rows)) for i, rows in enumerate((1, 1, 3, 8))]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(versions) > 20)
    staging = base.parent / "staging"
    shutil.copytree(base / "1", staging)
    staging.rename(base / "2")
    _wait_for(lambda: versions and versions[-1] == 2)
    seen = len(versions)
    _wait_for(lambda: len(versions) > seen + 20)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    # Requests run concurrently, so one answered by version 1 may complete just after another
    # answered by version 2; each client's own sequence goes from 1 to 2 and never back.
    assert versions[0] == 1 and versions[-1] == 2
    for sequence in per_thread.values():
        assert sequence == sorted(sequence) and sequence[-1] == 2


def test_a_corrupt_version_is_reported_retried_and_the_old_one_keeps_serving(served, test_windows):
    client, base, _ = served
    expected = client.predict(test_windows.histories[:2], extra_inputs=origins(test_windows, slice(2)))
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"half a file")
    _wait_for(lambda: client.status().get(2) == "END")
    assert client.status() == {1: "AVAILABLE", 2: "END"}
    np.testing.assert_array_equal(client.predict(test_windows.histories[:2],
                                                 extra_inputs=origins(test_windows, slice(2))), expected)
    # Completed later (TF Serving retries a failed load): version 2 takes over.
    shutil.rmtree(broken)
    shutil.copytree(base / "1", base / "staging")
    (base / "staging").rename(broken)
    _wait_for(lambda: client.status() == {2: "AVAILABLE"})


def test_many_bad_requests_among_good_ones(model_base_path, test_windows):
    model_server = model_server_for(model_base_path, batching=dataplane.BatchingOptions())
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1", max_message_bytes=1 << 16)
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", max_message_bytes=1 << 20) as client:
            client.wait_until_ready(60)
            stub = client._predictions
            good, times = test_windows.histories[:4], origins(test_windows, slice(4))
            time_key = contract.ORIGIN_TIMESTAMP_INPUT_KEY
            expected = client.predict(good, extra_inputs=times)
            with_nan = good.copy()
            with_nan[1, 3] = np.nan
            # 2,400 windows of 40 floats (the context) and a timestamp: over the 64 KiB limit.
            oversize = np.repeat(good, 600, axis=0), {time_key: np.repeat(times[time_key], 600)}
            bad = [
                (client_lib.build_predict_request("co2", good[:, :-2], extra_inputs=times), "INVALID_ARGUMENT"),
                (client_lib.build_predict_request("co2", good.reshape(-1)[None, :],
                                                  extra_inputs={time_key: times[time_key][:1]}), "INVALID_ARGUMENT"),
                (client_lib.build_predict_request("co2", oversize[0], extra_inputs=oversize[1]), "RESOURCE_EXHAUSTED"),
                (client_lib.build_predict_request("co2", good, signature_name="serving_other", extra_inputs=times),
                 "INVALID_ARGUMENT"),
            ]
            for round_ in range(3):
                for request, code in bad:
                    with pytest.raises(grpc.RpcError) as error:
                        stub.Predict(request, timeout=10)
                    assert error.value.code().name == code, (round_, code)
                    np.testing.assert_array_equal(client.predict(good, extra_inputs=times), expected)
            # An empty request (no inputs) is malformed; zero windows is a valid, empty batch.
            empty = client_lib.build_predict_request("co2", good, extra_inputs=times)
            del empty.inputs[contract.INPUT_KEY]
            del empty.inputs[time_key]
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(empty, timeout=10)
            assert error.value.code().name == "INVALID_ARGUMENT" and "missing input" in error.value.details()
            zero = client_lib.build_predict_request("co2", good[:0], extra_inputs={time_key: times[time_key][:0]})
            none = tf.make_ndarray(stub.Predict(zero, timeout=10).outputs[contract.OUTPUT_KEY])
            assert none.shape == (0, expected.shape[1])
            np.testing.assert_array_equal(client.predict(good, extra_inputs=times), expected)
            # NaN is a value, not a malformed request: TF Serving runs it, and so does this server;
            # only the window that holds it gets NaN forecasts.
            forecasts = tf.make_ndarray(stub.Predict(client_lib.build_predict_request("co2", with_nan,
                                                                                      extra_inputs=times),
                                                     timeout=10).outputs[contract.OUTPUT_KEY])
            assert np.isnan(forecasts[1]).all()
            np.testing.assert_allclose(forecasts[[0, 2, 3]], expected[[0, 2, 3]], rtol=1e-5)
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()


def test_the_client_survives_a_server_restart(model_base_path, test_windows):
    port = free_port()
    model_server = model_server_for(model_base_path)
    grpc_server, _ = grpc_lib.start_server(model_server, port, host="127.0.0.1")
    restarted = []
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", timeout_s=30, max_attempts=5) as client:
            client.wait_until_ready(60)
            expected = client.predict(test_windows.histories[:2], extra_inputs=origins(test_windows, slice(2)))
            # Loaded and warmed up before the old server stops, so the gap the client must ride out
            # is the restart alone.
            server = model_server_for(model_base_path)
            server.repository.poll_once()
            grpc_server.stop(grace=None).wait()
            model_server.stop()

            def restart():
                time.sleep(0.5)
                restarted.append((server, grpc_lib.start_server(server, port, host="127.0.0.1")[0]))

            thread = threading.Thread(target=restart)
            thread.start()
            np.testing.assert_array_equal(client.predict(test_windows.histories[:2],
                                                         extra_inputs=origins(test_windows, slice(2))), expected)
            thread.join()
    finally:
        for server, grpc_server in restarted:
            grpc_server.stop(grace=None).wait()
            server.stop()


def test_the_warmup_requests_of_a_version_are_replayed_before_it_is_available(model_base_path):
    replayed = []

    def counting_run(loaded, request):
        replayed.append(request.model_spec.signature_name)
        return dataplane.run_request(loaded, request)

    requests = repository.warmup_requests(str(model_base_path / "1"))
    assert requests, "the export wrote no warmup requests"
    model = repository.ModelRepository("co2", str(model_base_path), run_warmup=counting_run)
    model.poll_once()
    assert model.current is not None
    assert len(replayed) == len(requests)
    model.stop()


def test_request_batches_fit_the_message_limit():
    assert client_lib.request_batches(10, 400, 2000) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert client_lib.request_batches(3, 10, 1 << 20) == [slice(0, 3)]
    assert client_lib.request_batches(0, 10, 100) == []
    assert client_lib.request_batches(600, 10, 1 << 20, max_rows=256) == [slice(0, 256), slice(256, 512),
                                                                         slice(512, 600)]


def _answering_client(monkeypatch, horizon=3):
    """A client whose calls are kept, not sent, and answered with zeros; and the requests it made."""
    from tensorflow_serving.apis import predict_pb2

    client = client_lib.ForecastClient("127.0.0.1:1", "m")
    sent = []

    def answer(method, request, timeout_s=None):
        sent.append(request)
        response = predict_pb2.PredictResponse()
        rows = request.inputs[contract.INPUT_KEY].tensor_shape.dim[0].size
        response.outputs[contract.OUTPUT_KEY].CopyFrom(tf.make_tensor_proto(np.zeros((rows, horizon), np.float32)))
        return response

    monkeypatch.setattr(client, "_call", answer)
    return client, sent


# Odd seconds of 2024: above 2**24, where float32 steps by 128 seconds.
TIMES = np.array([1704088801, 1704092401], np.int64)


def test_a_request_carries_each_input_in_its_contract_dtype():
    request = client_lib.build_predict_request("m", np.zeros((2, 4)), extra_inputs={
        contract.ORIGIN_TIMESTAMP_INPUT_KEY: TIMES, contract.SERIES_ID_INPUT_KEY: ["a", "b"],
        contract.future_input_key("promo"): [[1, 0], [0, 1]]})
    assert tf.make_ndarray(request.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY]).tolist() == TIMES.tolist()
    assert tf.make_ndarray(request.inputs[contract.SERIES_ID_INPUT_KEY]).tolist() == [b"a", b"b"]
    future = tf.make_ndarray(request.inputs[contract.future_input_key("promo")])
    assert future.dtype == np.float32 and future.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="input 'origin_timestamp' has"):
        client_lib.build_predict_request("m", np.zeros((2, 4)), extra_inputs={
            contract.ORIGIN_TIMESTAMP_INPUT_KEY: TIMES[:1]})


def test_the_client_sends_timestamps_and_series_ids_as_they_are(monkeypatch):
    client, sent = _answering_client(monkeypatch)
    client.predict(np.zeros((2, 4)), extra_inputs={contract.ORIGIN_TIMESTAMP_INPUT_KEY: TIMES})
    assert tf.make_ndarray(sent[-1].inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY]).tolist() == TIMES.tolist()
    client.predict(np.zeros((2, 4)), extra_inputs={contract.SERIES_ID_INPUT_KEY: np.array(["a", "b"], object)})
    assert tf.make_ndarray(sent[-1].inputs[contract.SERIES_ID_INPUT_KEY]).tolist() == [b"a", b"b"]


def test_the_client_refuses_nan_in_any_input(monkeypatch):
    client, sent = _answering_client(monkeypatch)
    with pytest.raises(client_lib.InvalidRequestError, match="input 'future_promo': window 1 holds NaN"):
        client.predict(np.zeros((2, 4)), extra_inputs={contract.future_input_key("promo"): [[1, 0], [np.nan, 1]]})
    assert sent == []


def test_a_large_batch_is_split_under_the_message_limit(served, test_windows, pushed_model):
    _, _, port = served
    windows = np.repeat(test_windows.histories, 20, axis=0)
    times = {k: np.repeat(v, 20) for k, v in origins(test_windows).items()}
    limit = windows[:1].nbytes * 50  # about 45 windows a request
    with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", max_message_bytes=limit) as client:
        forecasts = client.predict(windows, extra_inputs=times)
        # A window's quantiles outweigh its request: the client splits by the larger of the two.
        result = client.predict_quantiles(windows, extra_inputs=times)
    expected = in_process_outputs(pushed_model, windows, times)
    np.testing.assert_allclose(forecasts, expected[contract.OUTPUT_KEY], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result.quantiles, expected[contract.QUANTILES_OUTPUT_KEY], rtol=1e-5, atol=1e-4)


def test_the_client_refuses_nan_and_unknown_labels(served, test_windows):
    client, _, port = served
    windows = test_windows.histories[:2].copy()
    windows[1, 0] = np.nan
    with pytest.raises(client_lib.InvalidRequestError, match="window 1 holds NaN"):
        client.predict(windows, extra_inputs=origins(test_windows, slice(2)))
    with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", version_label="canary") as labelled:
        with pytest.raises(client_lib.InvalidRequestError, match="Unrecognized servable version label: canary"):
            labelled.predict(test_windows.histories[:1], extra_inputs=origins(test_windows, slice(1)))


def _self_signed_localhost() -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def test_the_client_speaks_tls(model_base_path, test_windows, pushed_model):
    key, certificate = _self_signed_localhost()
    model_server = model_server_for(model_base_path)
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1",
                                                tls_key_and_certificate=(key, certificate))
    try:
        with client_lib.ForecastClient(f"localhost:{port}", "co2", root_certificates=certificate) as client:
            client.wait_until_ready(60)
            times = origins(test_windows, slice(3))
            np.testing.assert_allclose(client.predict(test_windows.histories[:3], extra_inputs=times),
                                       in_process_forecast(pushed_model, test_windows.histories[:3], times), rtol=1e-5)
        # Plaintext to a TLS port fails as unavailable, not with a forecast.
        with client_lib.ForecastClient(f"localhost:{port}", "co2", max_attempts=2, timeout_s=2) as plain:
            with pytest.raises(client_lib.ServerUnavailableError):
                plain.predict(test_windows.histories[:1], extra_inputs=origins(test_windows, slice(1)))
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()


def test_predict_command_forecasts_from_the_last_points_of_a_series(served, pipeline_run, capsys):
    client, _, port = served
    config, _ = pipeline_run
    code = cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                     "--series", config.data.path, "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    frame = pd.read_csv(config.data.path)
    last = frame["value"].to_numpy(np.float32)[-config.windows.context:]
    origin = int(pd.Timestamp(frame["timestamp"].iloc[-1], tz="UTC").value // 10**9)
    assert printed["origin_timestamp"] == origin
    expected = client.predict(last[None, :], extra_inputs={contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]})
    np.testing.assert_allclose(printed["forecast"], expected[0], rtol=1e-6)
    week = 7 * 86400
    assert printed["target_timestamps"] == [printed["origin_timestamp"] + week * (i + 1)
                                            for i in range(config.windows.horizon)]
    # The table names the origin and each forecast week.
    assert cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                     "--series", config.data.path]) == 0
    table = capsys.readouterr().out
    assert "forecast origin 1971-" in table and "frequency W-SAT" in table


def test_two_newest_versions_stay_addressable_and_the_newest_is_the_default(model_base_path, test_windows):
    model_server = model_server_for(model_base_path, poll_seconds=0.1, num_versions=2)
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2") as client:
            client.wait_until_ready(60)
            for version in (2, 3):
                shutil.copytree(model_base_path / "1", model_base_path / "staging")
                (model_base_path / "staging").rename(model_base_path / str(version))
            _wait_for(lambda: client.status() == {2: "AVAILABLE", 3: "AVAILABLE"})
            stub = client._predictions
            for version, expected in ((None, 3), (2, 2)):
                request = request_for(test_windows, slice(1), version=version)
                assert stub.Predict(request, timeout=10).model_spec.version.value == expected
            with pytest.raises(grpc.RpcError, match="Specific"):
                stub.Predict(request_for(test_windows, slice(1), version=1), timeout=10)
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()


def test_with_batching_a_request_larger_than_a_batch_is_refused_as_tf_serving_does(served, test_windows):
    client, _, _ = served
    rows = np.zeros(dataplane.BatchingOptions().max_batch_size + 1, int)
    request = request_for(test_windows, rows)
    with pytest.raises(grpc.RpcError) as error:
        client._predictions.Predict(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 257 is larger than maximum input batch size 256" in error.value.details()
    # The client splits such a batch itself.
    forecasts = client.predict(test_windows.histories[rows], extra_inputs=origins(test_windows, rows))
    assert forecasts.shape == (257, test_windows.targets.shape[1])


def _rest_call(url, body=None):
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_rest_api_answers_as_tf_serving_does(served, test_windows):
    client, _, _ = served
    rest, port = rest_lib.start_rest_server(client_server(served), 0, host="127.0.0.1")
    base = f"http://127.0.0.1:{port}/v1/models/co2"
    try:
        windows, times = test_windows.histories[:3], origins(test_windows, slice(3))
        expected = client.predict(windows, extra_inputs=times)
        assert _rest_call(base) == (200, {"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
        status, body = _rest_call(base + "/metadata")
        assert status == 200 and contract.SIGNATURE_NAME in body["metadata"]["signature_def"]["signature_def"]
        # A window alone lacks the timestamp the model takes.
        status, body = _rest_call(base + ":predict", {"instances": windows.tolist()})
        assert status == 400 and "missing input(s) ['origin_timestamp']" in body["error"]
        assert _rest_call(base + "/versions/9:predict", {"instances": windows.tolist()})[0] == 404
        assert _rest_call(base + ":predict", {"rows": []})[0] == 400
        np.testing.assert_array_equal(client.predict(windows, extra_inputs=times), expected)  # still serving
    finally:
        rest.shutdown()


def test_the_rest_api_forecasts_with_the_origin_timestamp(served, test_windows):
    client, _, _ = served
    rest, port = rest_lib.start_rest_server(client_server(served), 0, host="127.0.0.1")
    base = f"http://127.0.0.1:{port}/v1/models/co2"
    try:
        windows, times = test_windows.histories[:3], test_windows.origin_times[:3]
        expected = client.predict(windows, extra_inputs=origins(test_windows, slice(3)))
        instances = [{contract.INPUT_KEY: w.tolist(), contract.ORIGIN_TIMESTAMP_INPUT_KEY: int(t)}
                     for w, t in zip(windows, times)]
        status, body = _rest_call(base + ":predict", {"instances": instances})
        assert status == 200, body
        # Several outputs: one object per row, as TF Serving answers (the quantiles and their levels too).
        quantiles = client.predict_quantiles(windows, extra_inputs=origins(test_windows, slice(3)))
        np.testing.assert_allclose([row[contract.OUTPUT_KEY] for row in body["predictions"]], expected, rtol=1e-6)
        np.testing.assert_allclose([row[contract.QUANTILES_OUTPUT_KEY] for row in body["predictions"]],
                                   quantiles.quantiles, rtol=1e-6)
        np.testing.assert_allclose(body["predictions"][0][contract.QUANTILE_LEVELS_OUTPUT_KEY], quantiles.levels)
        status, body = _rest_call(base + "/versions/1:predict", {"inputs": {
            contract.INPUT_KEY: windows.tolist(), contract.ORIGIN_TIMESTAMP_INPUT_KEY: times.tolist()}})
        assert status == 200, body
        np.testing.assert_allclose(body["outputs"][contract.OUTPUT_KEY], expected, rtol=1e-6)
        np.testing.assert_allclose(body["outputs"][contract.QUANTILES_OUTPUT_KEY], quantiles.quantiles, rtol=1e-6)
        wrong_shape = [{**row, contract.INPUT_KEY: row[contract.INPUT_KEY][:-1]} for row in instances]
        assert _rest_call(base + ":predict", {"instances": wrong_shape})[0] == 400
    finally:
        rest.shutdown()


def client_server(served_fixture):
    """The DataPlane behind the ``served`` fixture's port."""
    return _SERVERS[served_fixture[2]]


def test_the_health_service_says_serving_once_a_version_is_loaded(model_base_path, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    empty = tmp_path / "empty"
    empty.mkdir()
    model_server = model_server_for(empty, poll_seconds=0.1)
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def state(service=""):
                return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

            assert state() == health_pb2.HealthCheckResponse.NOT_SERVING
            shutil.copytree(model_base_path / "1", empty / "1")
            _wait_for(lambda: state() == health_pb2.HealthCheckResponse.SERVING)
            assert state("tensorflow.serving.PredictionService") == health_pb2.HealthCheckResponse.SERVING
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()


@pytest.fixture(scope="module")
def xla_model_base_path(pipeline_run, tmp_path_factory):
    """A model base path holding, as version 1, the fast run's model exported with XLA (opt-in).

    Untrained (with the seasonal base it forecasts the seasonal naive forecast): what matters is its graph.
    """
    import glob
    import os

    import tensorflow_transform as tft

    from components import trainer as trainer_lib

    config, _ = pipeline_run
    (transform_dir,) = glob.glob(os.path.join(config.pipeline_root, "Transform", "transform_graph", "*"))
    tft_output = tft.TFTransformOutput(transform_dir)
    model_config = dataclasses.replace(config.model, serving_xla=True)
    model = trainer_lib.build_model(trainer_lib.model_inputs(tft_output), config.windows.history,
                                    config.windows.horizon, model_config)
    base = tmp_path_factory.mktemp("xla_models") / "co2"
    trainer_lib.export_serving_model(model, tft_output, str(base / "1"), model_config)
    return base


def _status_of(model_server: dataplane.DataPlane) -> get_model_status_pb2.ModelVersionStatus:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_server.model_name
    (status,) = model_server.status(request).model_version_status
    return status


def test_a_server_without_xla_serves_the_default_export(model_base_path, test_windows, pushed_model):
    """Stock TF Serving's setting (XLA off) and the default export: loaded, warmed up, forecasting."""
    model_server = model_server_for(model_base_path)
    model_server.repository.poll_once()
    assert _status_of(model_server).state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    response = model_server.predict(request_for(test_windows, slice(3)))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[contract.OUTPUT_KEY]),
                               in_process_forecast(pushed_model, test_windows.histories[:3],
                                                   origins(test_windows, slice(3))), rtol=1e-5)
    model_server.stop()


def test_without_the_xla_flag_an_xla_version_fails_to_load_as_in_tf_serving(xla_model_base_path):
    model = repository.ModelRepository("co2", str(xla_model_base_path), run_warmup=dataplane.run_request)
    model_server = dataplane.DataPlane(model)
    model.poll_once()
    assert model.current is None
    status = _status_of(model_server)
    assert status.state == get_model_status_pb2.ModelVersionStatus.END
    # TF Serving's own spelling, when nothing else is said: the repository stands for TF Serving.
    assert "start the server with --xla_cpu_compilation_enabled=true" in status.status.error_message
    model_server.stop()


def test_serve_without_its_xla_flag_names_it_and_the_client_reports_it(xla_model_base_path, test_windows, tmp_path,
                                                                       capsys):
    """``serve`` names its own flag; the readiness wait, ``predict`` and the client carry the server's error."""
    flags = ["serve", "--model-base-path", str(xla_model_base_path), "--model-name", "co2", "--poll-seconds", "0.1"]
    model_server = cli.serving_plane(cli.build_parser().parse_args(flags))
    model_server.repository.start_polling()
    grpc_server, port = grpc_lib.start_server(model_server, 0, host="127.0.0.1")
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2", timeout_s=10) as client:
            started = time.monotonic()
            with pytest.raises(client_lib.ModelLoadError, match=r"version 1: .*start the server with "
                               r"--xla-cpu-compilation-enabled, or export the model without XLA"):
                client.wait_until_ready(60)
            # At once, not after the 60 s: the version ended with an error and nothing else is loading.
            assert time.monotonic() - started < 30
            with pytest.raises(client_lib.ModelLoadError, match="--xla-cpu-compilation-enabled"):
                client.predict(test_windows.histories[:1], extra_inputs=origins(test_windows, slice(1)))
        windows = tmp_path / "windows.json"
        windows.write_text(json.dumps({"history": test_windows.histories[:1].tolist(),
                                       "origin_timestamp": test_windows.origin_times[:1].tolist()}))
        assert cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                         "--input", str(windows)]) == 1
        error = capsys.readouterr().err
        assert error.startswith("lstm-forecast predict: error: model co2 at 127.0.0.1:")
        assert len(error.splitlines()) == 1
        assert "--xla-cpu-compilation-enabled" in error and "--xla_cpu_compilation_enabled" not in error
    finally:
        grpc_server.stop(grace=None).wait()
        model_server.stop()
    # With the flag, the same version serves.
    model_server = cli.serving_plane(cli.build_parser().parse_args([*flags, "--xla-cpu-compilation-enabled"]))
    model_server.repository.poll_once()
    assert _status_of(model_server).state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    model_server.stop()


def test_serve_listens_on_loopback_unless_told_otherwise():
    parser = cli.build_parser()
    assert parser.parse_args(["serve", "--model-base-path", "m"]).host == "127.0.0.1"
    assert parser.parse_args(["serve", "--model-base-path", "m", "--host", "0.0.0.0"]).host == "0.0.0.0"
