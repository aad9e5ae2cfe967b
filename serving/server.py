"""A local gRPC server that speaks TensorFlow Serving's API, for local runs and tests.

Production serving is the TensorFlow Serving container; this server exists so the whole loop
runs where no Docker engine does. It implements ``PredictionService.Predict`` and
``GetModelMetadata`` and ``ModelService.GetModelStatus`` over a model base path of numbered
version directories, loads versions through the SavedModel loader TF Serving uses (a TF1 session,
signature tensors by name), serves the latest, and picks up newer versions as they appear.
Bad requests get TF Serving's status codes and the server keeps serving.
"""

import concurrent.futures
import dataclasses
import logging
import os
import threading
from typing import Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import contract

_log = logging.getLogger(__name__)

# ModelVersionStatus.State values, named as TF Serving names them.
_State = get_model_status_pb2.ModelVersionStatus.State


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code TF Serving would give."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
    """One version of the model, loaded into its own graph and session."""

    version: int
    path: str
    session: tf.compat.v1.Session
    signatures: dict[str, meta_graph_pb2.SignatureDef]

    def close(self) -> None:
        self.session.close()


def load_version(path: str, version: int) -> LoadedVersion:
    """Loads a SavedModel the way TF Serving does: the ``serve`` MetaGraph into a TF1 session."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(session, [contract.SERVING_TAG], path)
    return LoadedVersion(version=version, path=path, session=session,
                         signatures=dict(meta_graph.signature_def))


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


class ModelServer:
    """Serves the latest version found under one model base path, and reloads when a newer appears.

    Args:
      model_name: Name clients put in ``model_spec.name``.
      model_base_path: Directory holding numbered version directories.
      poll_seconds: How often to look for new versions.
    """

    def __init__(self, model_name: str, model_base_path: str, poll_seconds: float = 1.0):
        self.model_name = model_name
        self.model_base_path = model_base_path
        self._poll_seconds = poll_seconds
        self._current: Optional[LoadedVersion] = None
        self._failed: dict[int, str] = {}
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None

    @property
    def current(self) -> Optional[LoadedVersion]:
        return self._current

    def start_polling(self) -> None:
        """Loads versions in the background, as TF Serving does: the server answers meanwhile."""
        self._poller = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if self._current is not None:
            self._current.close()

    def poll_once(self) -> None:
        """Loads the newest version if it is newer than the one being served."""
        versions = [v for v in list_versions(self.model_base_path) if v not in self._failed]
        if not versions or (self._current is not None and versions[-1] <= self._current.version):
            return
        version = versions[-1]
        path = os.path.join(self.model_base_path, str(version))
        try:
            loaded = load_version(path, version)
        except Exception as error:  # pylint: disable=broad-except
            # A version that fails to load is reported; the one being served keeps serving.
            self._failed[version] = str(error)
            _log.error("version %d of model %s failed to load from %s: %s", version, self.model_name, path, error)
            return
        previous, self._current = self._current, loaded
        _log.info("serving version %d of model %s from %s", version, self.model_name, path)
        if previous is not None:
            previous.close()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._poll_seconds)

    def resolve(self, model_spec) -> LoadedVersion:
        """The loaded version a request's ``model_spec`` names, or a NOT_FOUND error."""
        if model_spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({model_spec.name})")
        current = self._current
        if current is None:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"no version of model {self.model_name} is loaded yet")
        if model_spec.HasField("version") and model_spec.version.value != current.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({model_spec.name}, {model_spec.version.value})")
        return current

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Runs one Predict request; raises :class:`RequestError` for a bad one."""
        loaded = self.resolve(request.model_spec)
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
        try:
            values = loaded.session.run(
                {alias: signature.outputs[alias].name for alias in aliases},
                feed_dict={signature.inputs[alias].name: value for alias, value in inputs.items()})
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, error.message) from error
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for alias, value in values.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

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
        current = self._current
        for version, error in sorted(self._failed.items()):
            status = response.model_version_status.add(version=version, state=_State.END)
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = error
        if current is not None:
            response.model_version_status.add(version=current.version, state=_State.AVAILABLE)
        else:
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
                 max_workers: int = 8, max_message_bytes: int = 64 << 20) -> tuple[grpc.Server, int]:
    """Starts the gRPC services for ``model_server`` and its version polling.

    Args:
      model_server: The model to serve.
      port: Port to listen on; 0 picks a free one.
      host: Address to bind.
      max_workers: Threads answering requests.
      max_message_bytes: Largest request and response.

    Returns:
      The started server and the port it listens on.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(model_server), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(model_server), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    model_server.start_polling()
    return server, bound
