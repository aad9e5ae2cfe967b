"""gRPC client for a forecasting model served by TF Serving (or the local server, same API).

:class:`ForecastClient` owns its channel, puts a deadline on every call, retries only on
UNAVAILABLE (through gRPC's service config, with exponential backoff) and maps gRPC status codes
to the few exceptions below. Building requests and reading responses are pure functions.
"""

import dataclasses
import json
import time
from typing import Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import contract


class ForecastError(Exception):
    """A forecast call failed; ``code`` is the gRPC status code."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.code = code


class ModelNotFoundError(ForecastError):
    """The server has no such model or version (NOT_FOUND)."""


class InvalidRequestError(ForecastError):
    """The server refused the request as malformed (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE)."""


class ServerUnavailableError(ForecastError):
    """The server could not be reached in time (UNAVAILABLE after retries, or DEADLINE_EXCEEDED)."""


class ModelLoadError(ForecastError):
    """The server failed to load the model: no version is AVAILABLE or LOADING, and one ended with an error.

    The message is the server's own (GetModelStatus' ``status.error_message``), which names what to change.
    """


_ERRORS = {
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServerUnavailableError,
}


def _service_config(max_attempts: int) -> str:
    return json.dumps({"methodConfig": [{
        "name": [{"service": "tensorflow.serving.PredictionService"},
                 {"service": "tensorflow.serving.ModelService"}],
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]})


def build_predict_request(model_name: str, windows: np.ndarray,
                          signature_name: str = contract.SIGNATURE_NAME,
                          version: Optional[int] = None, version_label: Optional[str] = None,
                          extra_inputs: Optional[dict[str, np.ndarray]] = None) -> predict_pb2.PredictRequest:
    """Builds the Predict request for a batch of raw windows.

    Args:
      model_name: Served model name.
      windows: History windows ``[N, L]`` in original units.
      signature_name: Signature to run.
      version: A specific version, or None for the latest.
      version_label: A version label (``stable``, ``canary``) in place of a number.
      extra_inputs: Further inputs of the signature by alias: covariate histories ``[N, L]``, future
        covariates ``[N, H]``, the origin timestamps ``[N]`` (see :mod:`serving.contract`).

    Returns:
      The request, with ``windows`` as float32 under :data:`contract.INPUT_KEY`.
    """
    windows = np.asarray(windows, dtype=contract.INPUT_DTYPE)
    if windows.ndim != 2:
        raise ValueError(f"windows must be [N, L], got shape {list(windows.shape)}")
    if version is not None and version_label is not None:
        raise ValueError("give a version or a version label, not both")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    if version_label is not None:
        request.model_spec.version_label = version_label
    request.inputs[contract.INPUT_KEY].CopyFrom(tf.make_tensor_proto(windows))
    for alias, values in (extra_inputs or {}).items():
        values = np.asarray(values, dtype=contract.input_dtype(alias))
        if values.shape[:1] != windows.shape[:1]:
            raise ValueError(f"input '{alias}' has {values.shape[:1]} rows, the windows {windows.shape[:1]}")
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(values))
    return request


def request_batches(rows: int, bytes_per_row: int, max_message_bytes: int,
                    max_rows: Optional[int] = None) -> list[slice]:
    """Slices of at most as many rows as fit in one message (with room for the request's framing)
    and at most ``max_rows``.

    Example: 10 rows of 400 bytes under a 2,000-byte limit (1,800 usable) give 4, 4 and 2 rows.
    """
    per_request = max(1, int(max_message_bytes * 0.9) // max(bytes_per_row, 1))
    if max_rows:
        per_request = min(per_request, max_rows)
    return [slice(start, min(start + per_request, rows)) for start in range(0, rows, per_request)]


def parse_predict_response(response: predict_pb2.PredictResponse) -> np.ndarray:
    """The forecasts ``[N, H]`` of a Predict response."""
    if contract.OUTPUT_KEY not in response.outputs:
        raise ForecastError(f"response has no output '{contract.OUTPUT_KEY}' (has {sorted(response.outputs)})")
    return tf.make_ndarray(response.outputs[contract.OUTPUT_KEY])


@dataclasses.dataclass(frozen=True, eq=False)
class QuantileForecast:
    """Forecasts with their quantiles (see :mod:`serving.contract`).

    Attributes:
      forecast: The point forecasts ``[N, H]`` (the median).
      quantiles: ``[N, H, Q]``, increasing along the last axis.
      levels: The quantile levels ``[Q]``, increasing.
    """

    forecast: np.ndarray
    quantiles: np.ndarray
    levels: np.ndarray

    def interval(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        """The bounds ``([N, H], [N, H])`` of the central interval of nominal ``coverage`` (0.8: levels 0.1, 0.9).

        Raises:
          ValueError: The model has no such interval.
        """
        lower = np.flatnonzero(np.isclose(self.levels, (1 - coverage) / 2))
        upper = np.flatnonzero(np.isclose(self.levels, (1 + coverage) / 2))
        if not len(lower) or not len(upper):
            raise ValueError(f"no {coverage:.0%} interval in the levels {self.levels.tolist()}")
        return self.quantiles[..., lower[0]], self.quantiles[..., upper[0]]

    def intervals(self) -> list[float]:
        """The nominal coverage of each central interval of :attr:`levels`, narrowest first."""
        return list(contract.central_intervals(self.levels))


def parse_quantile_response(response: predict_pb2.PredictResponse) -> QuantileForecast:
    """The forecasts, quantiles and levels of a Predict response of a quantile model.

    Raises:
      ForecastError: The response lacks them (a point model).
    """
    forecast = parse_predict_response(response)
    missing = [k for k in (contract.QUANTILES_OUTPUT_KEY, contract.QUANTILE_LEVELS_OUTPUT_KEY)
               if k not in response.outputs]
    if missing:
        raise ForecastError(f"the model returns no quantiles (no output {', '.join(missing)}; it is a point model)")
    levels = tf.make_ndarray(response.outputs[contract.QUANTILE_LEVELS_OUTPUT_KEY])
    return QuantileForecast(forecast, tf.make_ndarray(response.outputs[contract.QUANTILES_OUTPUT_KEY]),
                            levels[0] if len(levels) else np.zeros(0, np.float32))


class ForecastClient:
    """Talks to one served model over gRPC.

    Args:
      target: Server address, ``host:port``.
      model_name: Served model name.
      version: A specific version, or None for the latest.
      version_label: A version label instead of a number (TF Serving's ``version_labels``).
      signature_name: Signature that ``predict`` runs.
      timeout_s: Deadline of each call, retries included.
      max_attempts: Tries of a call that fails with UNAVAILABLE.
      max_message_bytes: Largest request and response; ``predict`` splits larger batches.
      max_windows_per_request: Most windows in one request; ``predict`` splits larger batches.
        TF Serving with batching refuses a request larger than its ``max_batch_size``
        (serving/config/batching_parameters_*.txt: 256 on CPU).
      tls: Use TLS (with ``root_certificates``, or the system's roots).
      root_certificates: PEM bytes of the CA that signs the server's certificate.
    """

    def __init__(self, target: str, model_name: str, version: Optional[int] = None,
                 version_label: Optional[str] = None, signature_name: str = contract.SIGNATURE_NAME,
                 timeout_s: float = 10.0, max_attempts: int = 5, max_message_bytes: int = 64 << 20,
                 max_windows_per_request: int = 256, tls: bool = False,
                 root_certificates: Optional[bytes] = None):
        if version is not None and version_label is not None:
            raise ValueError("give a version or a version label, not both")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.signature_name = signature_name
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self.max_windows_per_request = max_windows_per_request
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _service_config(max_attempts)),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        # The outputs of signature_name by (model name, version), from GetModelMetadata; and the version
        # that last answered, whose entry predict_quantiles reads instead of asking again.
        self._outputs: dict[tuple[str, int], dict[str, list[int]]] = {}
        self._answered: Optional[int] = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ForecastClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method, request, timeout_s: Optional[float] = None):
        try:
            return method(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as error:
            code = error.code()
            not_serving = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)
            if not_serving and method is not self._models.GetModelStatus:
                # "Not loaded" or "not found" while the model failed to load: say why it failed.
                load_error = self._load_error()
                if load_error:
                    raise ModelLoadError(load_error, code) from error
            raise _ERRORS.get(code, ForecastError)(f"{self.target}: {code.name}: {error.details()}", code) from error

    def _status_response(self, timeout_s: Optional[float] = None) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        return self._call(self._models.GetModelStatus, request, timeout_s)

    def _load_error(self) -> Optional[str]:
        """Why the model cannot serve, when no version is AVAILABLE or LOADING and one ended with an error."""
        try:
            return load_error(self.target, self.model_name, self._status_response(timeout_s=min(self.timeout_s, 2.0)))
        except ForecastError:
            return None

    def _model_spec(self, spec) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if self.version_label is not None:
            spec.version_label = self.version_label

    def predict(self, windows: np.ndarray, extra_inputs: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
        """Forecasts for raw windows ``[N, L]``; returns ``[N, H]`` in original units.

        A batch larger than one message goes in several requests, each with its own deadline.

        Args:
          windows: History windows in original units.
          extra_inputs: Further inputs by alias, if the model has them: covariate histories ``[N, C]``,
            future covariates ``[N, H]``, origin timestamps ``[N]`` (epoch seconds), series ids ``[N]``.

        Raises:
          InvalidRequestError: A window holds NaN or infinity (checked here: the model would
            silently forecast NaN), or the server refused the request.
        """
        # Only the forecast comes back (output_filter): the quantiles of a quantile model stay on the server.
        return np.concatenate([parse_predict_response(r) for r in self._predict(windows, extra_inputs,
                                                                                 [contract.OUTPUT_KEY])])

    def predict_quantiles(self, windows: np.ndarray,
                          extra_inputs: Optional[dict[str, np.ndarray]] = None) -> QuantileForecast:
        """Forecasts with their quantiles and levels, as :meth:`predict` takes its inputs.

        The signature's outputs (whether it has quantiles, and the answer's size) come from
        GetModelMetadata once per served version (:meth:`metadata` fills the same cache): a call
        answered by a version not seen before (the server moved on) reads that version's.

        Raises:
          ForecastError: The model returns no quantiles (a point model), and as :meth:`predict`.
        """
        cached = (self.model_name, self._answered) in self._outputs
        outputs = self._signature_outputs()
        try:
            responses = self._quantile_responses(windows, extra_inputs, outputs)
        except InvalidRequestError:
            # The server may have moved to a version with other outputs (a point model refuses the
            # quantiles' output filter): ask once more with its outputs, if they differ.
            if not cached:
                raise
            fresh = self._signature_outputs(refresh=True)
            if fresh == outputs:
                raise
            responses = self._quantile_responses(windows, extra_inputs, fresh)
        answered = [r.model_spec.version.value for r in responses if r.model_spec.HasField("version")]
        if answered:
            self._answered = answered[-1]
            if any((self.model_name, v) not in self._outputs for v in answered):
                # A version the cache has not seen answered (the server moved on): read its outputs.
                self._signature_outputs(refresh=True)
        parts = [parse_quantile_response(r) for r in responses]
        return QuantileForecast(np.concatenate([p.forecast for p in parts]),
                                np.concatenate([p.quantiles for p in parts]),
                                next((p.levels for p in parts if len(p.levels)), parts[0].levels))

    def _signature_outputs(self, refresh: bool = False) -> dict[str, list[int]]:
        """The outputs of :attr:`signature_name` (alias: shape) of the version that last answered, from the
        cache, or from GetModelMetadata (with ``refresh``, or none cached)."""
        if refresh or (self.model_name, self._answered) not in self._outputs:
            self.metadata()
        return self._outputs[(self.model_name, self._answered)]

    def _quantile_responses(self, windows: np.ndarray, extra_inputs: Optional[dict[str, np.ndarray]],
                            outputs: dict[str, list[int]]) -> list[predict_pb2.PredictResponse]:
        """The Predict responses of :meth:`predict_quantiles`, asked of a signature with ``outputs``."""
        # Each window's answer (H values, H x Q quantiles, Q levels) may outweigh its request.
        response_bytes = 4 * sum(int(np.prod(shape[1:])) for shape in outputs.values())
        wanted = [contract.OUTPUT_KEY, contract.QUANTILES_OUTPUT_KEY, contract.QUANTILE_LEVELS_OUTPUT_KEY]
        # Without quantile outputs, ask for every output: the answer then says it is a point model.
        return self._predict(windows, extra_inputs, wanted if outputs.keys() >= set(wanted[1:]) else [],
                             response_bytes)

    def _predict(self, windows: np.ndarray, extra_inputs: Optional[dict[str, np.ndarray]],
                 output_filter: list[str], response_bytes_per_row: int = 0) -> list[predict_pb2.PredictResponse]:
        """The responses of the requests that carry ``windows``, each within the message limit both ways."""
        windows = np.asarray(windows, dtype=contract.INPUT_DTYPE)
        extra_inputs = {k: np.asarray(v, dtype=contract.input_dtype(k)) for k, v in (extra_inputs or {}).items()}
        for alias, values in {contract.INPUT_KEY: windows, **extra_inputs}.items():
            if values.dtype.kind != "f":
                continue
            bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1) if values.size else np.zeros(0, bool)
            if bad.any():
                raise InvalidRequestError(f"input '{alias}': window {int(np.argmax(bad))} holds NaN or infinity")
        # A series id is a Python object in numpy; its bytes are its text's.
        bytes_per_row = sum(v[:1].nbytes if v.dtype != object else len(str(v[0])) + 8 if len(v) else 0
                            for v in (windows, *extra_inputs.values()))
        responses = []
        batches = request_batches(len(windows), max(bytes_per_row, response_bytes_per_row), self.max_message_bytes,
                                  self.max_windows_per_request)
        for rows in batches or [slice(0, 0)]:
            request = build_predict_request(self.model_name, windows[rows], self.signature_name,
                                            extra_inputs={k: v[rows] for k, v in extra_inputs.items()})
            request.output_filter.extend(output_filter)
            self._model_spec(request.model_spec)
            responses.append(self._call(self._predictions.Predict, request))
        return responses

    def metadata(self) -> dict[str, dict[str, dict[str, list[int]]]]:
        """The served signatures: ``{name: {"inputs": {alias: shape}, "outputs": {alias: shape}}}``.

        :attr:`signature_name`'s outputs are cached under the version that answered, for :meth:`predict_quantiles`.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._predictions.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        def shapes(tensors) -> dict[str, list[int]]:
            return {alias: [d.size for d in info.tensor_shape.dim] for alias, info in tensors.items()}

        signatures = {name: {"inputs": shapes(sig.inputs), "outputs": shapes(sig.outputs)}
                      for name, sig in signature_map.signature_def.items()}
        # Cached for predict_quantiles, which then asks no more while this version answers.
        self._answered = response.model_spec.version.value
        self._outputs[(self.model_name, self._answered)] = signatures.get(self.signature_name, {}).get("outputs", {})
        return signatures

    def status(self, timeout_s: Optional[float] = None) -> dict[int, str]:
        """State of each version the server knows: ``{version: "AVAILABLE" | "LOADING" | ...}``."""
        response = self._status_response(timeout_s)
        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return {s.version: names(s.state) for s in response.model_version_status}

    def wait_until_ready(self, timeout_s: float, poll_s: float = 0.2) -> int:
        """Waits until a version (the one asked for, if any) is AVAILABLE and returns it.

        Raises:
          ModelLoadError: The model failed to load (no version AVAILABLE or LOADING, one ended with
            an error): at once, with the server's error, instead of waiting out ``timeout_s``.
          TimeoutError: No version became available in ``timeout_s``; says what was last seen.
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"model {self.model_name} at {self.target} not AVAILABLE after "
                                   f"{timeout_s:.0f} s; last seen: {last}")
            try:
                response = self._status_response(timeout_s=min(remaining, 2.0))
                names = get_model_status_pb2.ModelVersionStatus.State.Name
                states = {s.version: names(s.state) for s in response.model_version_status}
                ready = [v for v, s in states.items() if s == "AVAILABLE" and self.version in (None, v)]
                if ready:
                    return max(ready)
                failed = load_error(self.target, self.model_name, response)
                if failed:
                    raise ModelLoadError(failed)
                last = f"versions {states}"
            except (ServerUnavailableError, ModelNotFoundError) as error:
                last = str(error)
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0)))


def load_error(target: str, model_name: str, response: get_model_status_pb2.GetModelStatusResponse) -> Optional[str]:
    """The load errors of a GetModelStatus response, when no version is AVAILABLE or LOADING; else None.

    Example: version 1 END with "... start the server with --xla-cpu-compilation-enabled ..." and
    nothing else gives "model co2 at host:8500 failed to load: version 1: ... --xla-cpu-compilation-enabled ...".
    """
    states = get_model_status_pb2.ModelVersionStatus
    statuses = list(response.model_version_status)
    if any(s.state in (states.AVAILABLE, states.LOADING, states.START) for s in statuses):
        return None
    errors = [f"version {s.version}: {s.status.error_message}" for s in statuses
              if s.state == states.END and s.status.error_code != 0]
    if not errors:
        return None
    return f"model {model_name} at {target} failed to load: " + "; ".join(errors)

