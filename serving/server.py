"""A local gRPC server that speaks TensorFlow Serving's API, for local runs and tests.

Production serving is the TensorFlow Serving container; this server exists so the whole loop
runs where no Docker engine does. It implements ``PredictionService.Predict`` and
``GetModelMetadata``, ``ModelService.GetModelStatus`` and the standard gRPC health service
(``grpc.health.v1.Health``, SERVING once a version is loaded) over a model base path of numbered
version directories, and behaves as TF Serving does where a client can tell:

* versions load through the SavedModel loader TF Serving uses (a TF1 session, signature tensors by
  name), with the warmup requests of ``assets.extra`` replayed before a version is AVAILABLE;
* the latest version is served; a newer one is picked up by polling and swapped in without
  failing a request in flight; one that fails to load is reported (END, with its error), retried
  a few times as TF Serving retries, and the old version keeps serving;
* concurrent requests can be batched (``BatchingOptions``, TF Serving's ``--enable_batching``);
* bad requests get TF Serving's status codes and messages, and the server keeps serving;
* optionally, TF Serving's REST API (``/v1/models/NAME[:predict]``) on a second port.
"""

import concurrent.futures
import contextlib
import dataclasses
import http.server
import json
import logging
import os
import queue
import threading
import time
from typing import Iterator, Optional

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from serving import contract

_log = logging.getLogger(__name__)

# ModelVersionStatus.State values, named as TF Serving names them.
_State = get_model_status_pb2.ModelVersionStatus.State
# Where TF Serving looks for the requests it replays while loading a version.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Names the health service answers for: the whole server ("") and the prediction service.
HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService")


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code TF Serving would give."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class LoadedVersion:
    """One version of the model, loaded into its own graph and session.

    Requests run inside :meth:`use`; a version replaced by a newer one is closed only when the last
    request still running on it has finished, so a swap never fails a request in flight.
    """

    def __init__(self, version: int, path: str, session: tf.compat.v1.Session,
                 signatures: dict[str, meta_graph_pb2.SignatureDef]):
        self.version = version
        self.path = path
        self.session = session
        self.signatures = signatures
        self._lock = threading.Lock()
        self._in_flight = 0
        self._retired = False

    @contextlib.contextmanager
    def use(self) -> Iterator["LoadedVersion"]:
        with self._lock:
            self._in_flight += 1
        try:
            yield self
        finally:
            with self._lock:
                self._in_flight -= 1
                close = self._retired and self._in_flight == 0
            if close:
                self.session.close()

    def retire(self) -> None:
        """Closes the session now, or when the last request running on it ends."""
        with self._lock:
            self._retired = True
            close = self._in_flight == 0
        if close:
            self.session.close()

    def run(self, signature: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray],
            aliases: list[str]) -> dict[str, np.ndarray]:
        """Runs a signature by tensor names, as TF Serving does."""
        with self.use():
            try:
                return self.session.run({alias: signature.outputs[alias].name for alias in aliases},
                                        feed_dict={signature.inputs[a].name: v for a, v in inputs.items()})
            except tf.errors.InvalidArgumentError as error:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, error.message) from error


def xla_functions(meta_graph: meta_graph_pb2.MetaGraphDef) -> list[str]:
    """Functions of a graph that must be compiled with XLA (``jit_compile=True`` when traced)."""
    return [f.signature.name for f in meta_graph.graph_def.library.function
            if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


def load_version(path: str, version: int, xla_cpu_compilation_enabled: bool = True) -> LoadedVersion:
    """Loads a SavedModel the way TF Serving does: the ``serve`` MetaGraph into a TF1 session.

    Args:
      path: The version's directory.
      version: Its number.
      xla_cpu_compilation_enabled: TF Serving's ``--xla_cpu_compilation_enabled`` (false by default
        in TF Serving and in :class:`ModelServer`). Without it TF Serving cannot run an
        XLA-compiled signature and the warmup replay fails the load; this loader refuses such a
        graph at once, with a message that names the flag.
    """
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(session, [contract.SERVING_TAG], path)
    compiled = xla_functions(meta_graph)
    if compiled and not xla_cpu_compilation_enabled:
        session.close()
        raise RuntimeError(f"{path}: {len(compiled)} function(s) must be compiled with XLA (jit_compile), and XLA "
                           f"CPU compilation is disabled; start the server with --xla_cpu_compilation_enabled=true "
                           f"(or export the model without XLA)")
    return LoadedVersion(version=version, path=path, session=session,
                         signatures=dict(meta_graph.signature_def))


def warmup_requests(path: str) -> list[predict_pb2.PredictRequest]:
    """The Predict requests of a SavedModel's warmup file (``assets.extra/tf_serving_warmup_requests``)."""
    warmup_file = os.path.join(path, WARMUP_FILE)
    if not tf.io.gfile.exists(warmup_file):
        return []
    requests = []
    for record in tf.data.TFRecordDataset([warmup_file]).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            requests.append(log.predict_log.request)
    return requests


def list_versions(model_base_path: str) -> list[int]:
    """Numbered version directories under the base path, ascending; other entries are ignored."""
    if not tf.io.gfile.isdir(model_base_path):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_base_path)
                  if name.rstrip("/").isdigit())


def _check_inputs(signature: meta_graph_pb2.SignatureDef,
                  inputs: dict[str, np.ndarray], signature_name: str) -> None:
    expected = set(signature.inputs)
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input alias(es) {unknown} not in signature '{signature_name}', which takes {sorted(expected)}")
    missing = sorted(expected - set(inputs))
    if missing:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"missing input(s) {missing} of signature '{signature_name}'")
    for alias, value in inputs.items():
        info = signature.inputs[alias]
        want = tf.dtypes.as_dtype(info.dtype)
        if value.dtype != want.as_numpy_dtype and not (want == tf.string and value.dtype == object):
            got = tf.dtypes.as_dtype(value.dtype).name
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{alias}' has dtype {got}, expected {want.name}")
        if not info.tensor_shape.unknown_rank:
            dims = [d.size for d in info.tensor_shape.dim]
            if value.ndim != len(dims) or any(d >= 0 and d != v for d, v in zip(dims, value.shape)):
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input '{alias}' has shape {list(value.shape)}, expected {dims} (-1: any)")


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Batching of concurrent Predict requests, as TF Serving's ``--enable_batching`` does it.

    Attributes:
      max_batch_size: Most windows run together; a larger request is refused, as TF Serving does.
      batch_timeout_s: How long the first request of a batch waits for others. 0: run whatever
        is queued at once, which costs a lone request nothing.
      num_batch_threads: Batches run at the same time.
    """

    max_batch_size: int = 256
    batch_timeout_s: float = 0.0
    num_batch_threads: int = 2


@dataclasses.dataclass
class _Pending:
    loaded: LoadedVersion
    signature: meta_graph_pb2.SignatureDef
    inputs: dict[str, np.ndarray]
    aliases: list[str]
    rows: int
    result: concurrent.futures.Future

    def key(self) -> tuple:
        shapes = tuple((a, v.dtype.str, v.shape[1:]) for a, v in sorted(self.inputs.items()))
        return id(self.loaded), id(self.signature), tuple(self.aliases), shapes


class _Batcher:
    """Queues requests and runs compatible ones (same version, signature, input shapes) together."""

    def __init__(self, options: BatchingOptions):
        self._options = options
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def run(self, loaded: LoadedVersion, signature: meta_graph_pb2.SignatureDef,
            inputs: dict[str, np.ndarray], aliases: list[str]) -> dict[str, np.ndarray]:
        rows = {len(v) if v.ndim else 0 for v in inputs.values()}
        if len(rows) != 1 or not all(v.ndim >= 1 for v in inputs.values()):
            return loaded.run(signature, inputs, aliases)
        if next(iter(rows)) > self._options.max_batch_size:
            # TF Serving's batching refuses a request larger than a batch (no splitting).
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Task size {next(iter(rows))} is larger than maximum input batch size "
                               f"{self._options.max_batch_size}")
        pending = _Pending(loaded, signature, inputs, aliases, rows.pop(), concurrent.futures.Future())
        # The version stays open while the request waits in the queue.
        with loaded.use():
            self._queue.put(pending)
            return pending.result.result()

    def _loop(self) -> None:
        held: list[_Pending] = []
        while True:
            first = held.pop(0) if held else self._queue.get()
            if first is None:
                return
            batch, rows = [first], first.rows
            deadline = time.monotonic() + self._options.batch_timeout_s
            while rows < self._options.max_batch_size:
                try:
                    timeout = deadline - time.monotonic()
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # for this thread's next turn
                    break
                if item.key() == first.key() and rows + item.rows <= self._options.max_batch_size:
                    batch.append(item)
                    rows += item.rows
                else:
                    held.append(item)
            self._run(batch)

    @staticmethod
    def _run(batch: list[_Pending]) -> None:
        first = batch[0]
        try:
            inputs = {a: np.concatenate([p.inputs[a] for p in batch]) for a in first.inputs}
            outputs = first.loaded.run(first.signature, inputs, first.aliases)
        except Exception as error:  # pylint: disable=broad-except
            for pending in batch:
                pending.result.set_exception(error)
            return
        start = 0
        for pending in batch:
            pending.result.set_result({a: v[start:start + pending.rows] for a, v in outputs.items()})
            start += pending.rows


class ModelServer:
    """Serves the latest version found under one model base path, and reloads when a newer appears.

    Args:
      model_name: Name clients put in ``model_spec.name``.
      model_base_path: Directory holding numbered version directories.
      poll_seconds: How often to look for new versions (TF Serving's file system poll).
      batching: Batch concurrent requests, or None to run each alone.
      max_load_retries: Further tries of a version that failed to load (TF Serving: 5).
      load_retry_seconds: Time between those tries (TF Serving: 60 s).
      num_versions: How many of the newest versions stay loaded, each addressable by number;
        requests without a version go to the newest (TF Serving's ``latest`` policy).
      xla_cpu_compilation_enabled: Run XLA-compiled signatures (TF Serving's flag of that name,
        false by default there and here); without it a version that uses XLA fails to load.
    """

    def __init__(self, model_name: str, model_base_path: str, poll_seconds: float = 1.0,
                 batching: Optional[BatchingOptions] = None, max_load_retries: int = 5,
                 load_retry_seconds: float = 60.0, num_versions: int = 1,
                 xla_cpu_compilation_enabled: bool = False):
        self.model_name = model_name
        self.model_base_path = model_base_path
        self._poll_seconds = poll_seconds
        self._max_load_retries = max_load_retries
        self._load_retry_seconds = load_retry_seconds
        self._num_versions = num_versions
        self._xla = xla_cpu_compilation_enabled
        # Loaded versions, newest last; replaced as a whole so that readers need no lock.
        self._loaded: tuple[LoadedVersion, ...] = ()
        # version -> (last error, tries, time of the last try)
        self._failed: dict[int, tuple[str, int, float]] = {}
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._batcher = _Batcher(batching) if batching else None
        # The standard gRPC health service: SERVING once a version is loaded.
        self.health = health.HealthServicer()
        self._report_health()

    @property
    def current(self) -> Optional[LoadedVersion]:
        """The newest loaded version."""
        loaded = self._loaded
        return loaded[-1] if loaded else None

    def start_polling(self) -> None:
        """Loads versions in the background, as TF Serving does: the server answers meanwhile."""
        self._poller = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if self._batcher is not None:
            self._batcher.stop()
        self.health.enter_graceful_shutdown()
        for loaded in self._loaded:
            loaded.retire()

    def _may_try(self, version: int) -> bool:
        if version not in self._failed:
            return True
        _, tries, last = self._failed[version]
        return tries <= self._max_load_retries and time.monotonic() - last >= self._load_retry_seconds

    def poll_once(self) -> None:
        """Loads the newest ``num_versions`` versions on disk that are not loaded yet, newest first.

        A new version is loaded and warmed up before it replaces an old one, so that requests
        always find a version (TF Serving's availability-preserving policy).
        """
        wanted = list_versions(self.model_base_path)[-self._num_versions:]
        for version in reversed(wanted):
            loaded_versions = [v.version for v in self._loaded]
            if version in loaded_versions or not self._may_try(version):
                continue
            if len(loaded_versions) >= self._num_versions and version < min(loaded_versions):
                continue
            self._load(version)

    def _load(self, version: int) -> None:
        path = os.path.join(self.model_base_path, str(version))
        try:
            loaded = load_version(path, version, self._xla)
            self._warm_up(loaded)
        except Exception as error:  # pylint: disable=broad-except
            # A version that fails to load is reported; the one being served keeps serving.
            tries = self._failed.get(version, ("", 0, 0.0))[1] + 1
            self._failed[version] = (str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
                                     tries, time.monotonic())
            _log.error("version %d of model %s failed to load from %s (try %d): %s",
                       version, self.model_name, path, tries, error)
            return
        self._failed.pop(version, None)
        kept = tuple(sorted((*self._loaded, loaded), key=lambda v: v.version))[-self._num_versions:]
        unloaded = [v for v in self._loaded if v not in kept]
        self._loaded = kept
        self._report_health()
        _log.info("serving version %d of model %s from %s", version, self.model_name, path)
        for old in unloaded:
            old.retire()

    def _report_health(self) -> None:
        state = health_pb2.HealthCheckResponse.SERVING if self._loaded else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in HEALTH_SERVICES:
            self.health.set(service, state)

    def _warm_up(self, loaded: LoadedVersion) -> None:
        # Replayed before the version is AVAILABLE, so that no client pays for the first runs
        # (graph optimisation, XLA compilation); a warmup request that fails fails the load.
        for request in warmup_requests(loaded.path):
            self._run(loaded, request)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._poll_seconds)

    def resolve(self, model_spec) -> LoadedVersion:
        """The loaded version a request's ``model_spec`` names, or a NOT_FOUND error."""
        if model_spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({model_spec.name})")
        loaded = self._loaded
        if not loaded:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"no version of model {self.model_name} is loaded yet")
        if model_spec.version_label:
            # Labels need TF Serving's model config file (version_labels); none are configured here.
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {model_spec.version_label}")
        if not model_spec.HasField("version"):
            return loaded[-1]
        for version in loaded:
            if version.version == model_spec.version.value:
                return version
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Specific({model_spec.name}, {model_spec.version.value})")

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Runs one Predict request; raises :class:`RequestError` for a bad one."""
        loaded = self.resolve(request.model_spec)
        signature_name, values = self._run(loaded, request, batcher=self._batcher)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for alias, value in values.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    @staticmethod
    def _run(loaded: LoadedVersion, request: predict_pb2.PredictRequest,
             batcher: Optional[_Batcher] = None) -> tuple[str, dict[str, np.ndarray]]:
        signature_name = request.model_spec.signature_name or contract.SIGNATURE_NAME
        signature = loaded.signatures.get(signature_name)
        if signature is None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f'Serving signature name: "{signature_name}" not found in signature def')
        try:
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode input tensor: {error}") from error
        _check_inputs(signature, inputs, signature_name)
        aliases = list(request.output_filter) or list(signature.outputs)
        unknown = sorted(set(aliases) - set(signature.outputs))
        if unknown:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output filter {unknown} not in signature '{signature_name}'")
        if batcher is not None:
            return signature_name, batcher.run(loaded, signature, inputs, aliases)
        return signature_name, loaded.run(signature, inputs, aliases)

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        loaded = self.resolve(request.model_spec)
        if list(request.metadata_field) != ["signature_def"]:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"metadata_field must be ['signature_def'], got {list(request.metadata_field)}")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in loaded.signatures.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest
               ) -> get_model_status_pb2.GetModelStatusResponse:
        if request.model_spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {request.model_spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        loaded = self._loaded
        for version, (error, _, _) in sorted(self._failed.items()):
            status = response.model_version_status.add(version=version, state=_State.END)
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = error
        for version in loaded:
            # TF Serving sets the status (OK) of an available version too.
            response.model_version_status.add(version=version.version, state=_State.AVAILABLE).status.SetInParent()
        if not loaded:
            pending = [v for v in list_versions(self.model_base_path) if v not in self._failed]
            if not pending and not self._failed:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {self.model_name}")
            for version in pending[-1:]:
                response.model_version_status.add(version=version, state=_State.LOADING)
        return response


def _answer(method):
    """Turns a ModelServer method into a gRPC handler that maps RequestError to its status."""

    def handler(self, request, context):
        try:
            return method(self._server, request)
        except RequestError as error:
            context.abort(error.code, str(error))

    return handler


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: ModelServer):
        self._server = server

    Predict = _answer(ModelServer.predict)
    GetModelMetadata = _answer(ModelServer.metadata)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: ModelServer):
        self._server = server

    GetModelStatus = _answer(ModelServer.status)


def start_server(model_server: ModelServer, port: int, host: str = "0.0.0.0",
                 max_workers: int = 8, max_message_bytes: int = 64 << 20,
                 tls_key_and_certificate: Optional[tuple[bytes, bytes]] = None) -> tuple[grpc.Server, int]:
    """Starts the gRPC services for ``model_server`` and its version polling.

    Args:
      model_server: The model to serve.
      port: Port to listen on; 0 picks a free one.
      host: Address to bind.
      max_workers: Threads answering requests.
      max_message_bytes: Largest request and response.
      tls_key_and_certificate: PEM private key and certificate chain to serve TLS; None: plaintext.

    Returns:
      The started server and the port it listens on.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(model_server), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(model_server), server)
    health_pb2_grpc.add_HealthServicer_to_server(model_server.health, server)
    if tls_key_and_certificate is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        credentials = grpc.ssl_server_credentials([tls_key_and_certificate])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    model_server.start_polling()
    return server, bound


_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.FAILED_PRECONDITION: 400}


def _rest_model_spec(path: str, model_spec) -> str:
    """Fills ``model_spec`` from ``/v1/models/NAME[/versions/N|/labels/L][:verb]``; returns the verb."""
    route, _, verb = path.partition(":")
    parts = route.strip("/").split("/")
    if len(parts) < 3 or parts[:2] != ["v1", "models"]:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {path}")
    model_spec.name = parts[2]
    rest = parts[3:]
    if rest[:1] == ["versions"] and len(rest) >= 2:
        model_spec.version.value = int(rest[1])
        rest = rest[2:]
    elif rest[:1] == ["labels"] and len(rest) >= 2:
        model_spec.version_label = rest[1]
        rest = rest[2:]
    if rest == ["metadata"]:
        return "metadata"
    if rest:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {path}")
    return verb


def rest_predict_request(path: str, body: dict) -> predict_pb2.PredictRequest:
    """A Predict request from TF Serving's REST body: ``instances`` (rows) or ``inputs`` (columns)."""
    request = predict_pb2.PredictRequest()
    _rest_model_spec(path, request.model_spec)
    request.model_spec.signature_name = body.get("signature_name", "")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           'JSON body must have exactly one of "instances" (row format) or "inputs" (columnar)')
    if "instances" in body:
        rows = body["instances"]
        if rows and isinstance(rows[0], dict):
            columns = {key: [row[key] for row in rows] for key in rows[0]}
        else:
            columns = {contract.INPUT_KEY: rows}
    else:
        columns = body["inputs"] if isinstance(body["inputs"], dict) else {contract.INPUT_KEY: body["inputs"]}
    for alias, values in columns.items():
        try:
            array = np.asarray(values, dtype=contract.INPUT_DTYPE if alias != contract.EXAMPLES_INPUT_KEY else object)
        except (TypeError, ValueError) as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': {error}") from error
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    return request


def _to_json(message) -> dict:
    # TF Serving's REST answers use the proto field names and print default values ("OK", "").
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST API (``/v1/models/...``) over the same ModelServer."""

    model_server: ModelServer

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        _log.debug("rest: " + format, *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, work) -> None:
        try:
            self._reply(200, work())
        except RequestError as error:
            self._reply(_HTTP_STATUS.get(error.code, 500), {"error": str(error)})
        except (ValueError, KeyError) as error:
            self._reply(400, {"error": f"Malformed request: {error}"})

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        def work() -> dict:
            spec = get_model_status_pb2.GetModelStatusRequest().model_spec
            verb = _rest_model_spec(self.path, spec)
            if verb == "metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                request.model_spec.CopyFrom(spec)
                response = self.model_server.metadata(request)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return {"model_spec": _to_json(response.model_spec),
                        "metadata": {"signature_def": _to_json(signature_map)}}
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.CopyFrom(spec)
            return _to_json(self.model_server.status(request))
        self._answer(work)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        def work() -> dict:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            request = rest_predict_request(self.path, body)
            if not self.path.endswith(":predict"):
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {self.path}")
            response = self.model_server.predict(request)
            outputs = {alias: tf.make_ndarray(proto).tolist() for alias, proto in response.outputs.items()}
            if "instances" in body:
                return {"predictions": next(iter(outputs.values())) if len(outputs) == 1 else
                        [dict(zip(outputs, row)) for row in zip(*outputs.values())]}
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        self._answer(work)


def start_rest_server(model_server: ModelServer, port: int, host: str = "0.0.0.0"
                      ) -> tuple[http.server.ThreadingHTTPServer, int]:
    """Serves TF Serving's REST API for ``model_server`` in a background thread.

    Returns:
      The server (``shutdown()`` stops it) and the port it listens on.
    """
    handler = type("RestHandler", (_RestHandler,), {"model_server": model_server})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server, server.server_address[1]
