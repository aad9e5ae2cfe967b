"""The data plane of the local server: what a request does, whichever protocol carried it.

Predict, GetModelMetadata and GetModelStatus over a :class:`~serving.repository.ModelRepository`,
answered as TF Serving answers them: the version a ``model_spec`` names, inputs checked against
the signature (aliases, dtypes, shapes), concurrent requests optionally batched
(:class:`BatchingOptions`, TF Serving's ``--enable_batching``).

A request the server refuses raises a :class:`RequestError` subclass with TF Serving's message;
the adapters (:mod:`serving.grpc_server`, :mod:`serving.rest`) turn it into a status through one
table, :mod:`serving.status_codes`. This module imports no protocol.
"""

import concurrent.futures
import dataclasses
import queue
import threading
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from serving import contract
from serving.repository import LoadedVersion, ModelRepository, State


class RequestError(Exception):
    """A request the server refuses; the subclass names the canonical status (INVALID_ARGUMENT, ...)."""


class InvalidArgumentError(RequestError):
    """A malformed request: unknown signature or alias, wrong dtype or shape, a batch too large."""


class NotFoundError(RequestError):
    """An unknown model or version."""


class UnavailableError(RequestError):
    """The model has no version loaded yet."""


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


class Batcher:
    """Queues requests and runs compatible ones (same version, signature, input shapes) together."""

    def __init__(self, options: BatchingOptions):
        self._options = options
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ends the batch threads once the batches queued before this call have run."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def run(self, loaded: LoadedVersion, signature: meta_graph_pb2.SignatureDef,
            inputs: dict[str, np.ndarray], aliases: list[str]) -> dict[str, np.ndarray]:
        """Runs one request's inputs, within a batch where they fit one; waits for its outputs."""
        rows = {len(v) if v.ndim else 0 for v in inputs.values()}
        if len(rows) != 1 or not all(v.ndim >= 1 for v in inputs.values()):
            return loaded.run(signature, inputs, aliases)
        if next(iter(rows)) > self._options.max_batch_size:
            # TF Serving's batching refuses a request larger than a batch (no splitting).
            raise InvalidArgumentError(f"Task size {next(iter(rows))} is larger than maximum input batch size "
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
        except Exception as error:
            # Every request of the batch gets the error, in its own thread; the batch thread lives on.
            for pending in batch:
                pending.result.set_exception(error)
            return
        start = 0
        for pending in batch:
            pending.result.set_result({a: v[start:start + pending.rows] for a, v in outputs.items()})
            start += pending.rows


def _check_inputs(signature: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray],
                 signature_name: str) -> None:
    """Refuses inputs that do not match the signature's aliases, dtypes and shapes.

    Raises:
      InvalidArgumentError: An unknown or missing alias, a wrong dtype, or a shape the signature
        does not take (its -1 dimensions take any size).
    """
    expected = set(signature.inputs)
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InvalidArgumentError(
            f"input alias(es) {unknown} not in signature '{signature_name}', which takes {sorted(expected)}")
    missing = sorted(expected - set(inputs))
    if missing:
        raise InvalidArgumentError(f"missing input(s) {missing} of signature '{signature_name}'")
    for alias, value in inputs.items():
        info = signature.inputs[alias]
        want = tf.dtypes.as_dtype(info.dtype)
        if value.dtype != want.as_numpy_dtype and not (want == tf.string and value.dtype == object):
            got = tf.dtypes.as_dtype(value.dtype).name
            raise InvalidArgumentError(f"input '{alias}' has dtype {got}, expected {want.name}")
        if not info.tensor_shape.unknown_rank:
            dims = [d.size for d in info.tensor_shape.dim]
            if value.ndim != len(dims) or any(d >= 0 and d != v for d, v in zip(dims, value.shape)):
                raise InvalidArgumentError(f"input '{alias}' has shape {list(value.shape)}, expected {dims} (-1: any)")


def run_request(loaded: LoadedVersion, request: predict_pb2.PredictRequest,
                batcher: Optional[Batcher] = None) -> tuple[str, dict[str, np.ndarray]]:
    """Runs a Predict request on one loaded version: the path of clients' requests and of warmup.

    Args:
      loaded: The version to run.
      request: The request; its ``model_spec`` chooses the signature only.
      batcher: Batches it with others; None runs it alone.

    Returns:
      The name of the signature run, and its outputs by alias (``output_filter``, or all).

    Raises:
      InvalidArgumentError: The request does not fit the signature, or TensorFlow refused its values.
    """
    signature_name = request.model_spec.signature_name or contract.SIGNATURE_NAME
    signature = loaded.signatures.get(signature_name)
    if signature is None:
        raise InvalidArgumentError(f'Serving signature name: "{signature_name}" not found in signature def')
    try:
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"cannot decode input tensor: {error}") from error
    _check_inputs(signature, inputs, signature_name)
    aliases = list(request.output_filter) or list(signature.outputs)
    unknown = sorted(set(aliases) - set(signature.outputs))
    if unknown:
        raise InvalidArgumentError(f"output filter {unknown} not in signature '{signature_name}'")
    try:
        if batcher is not None:
            return signature_name, batcher.run(loaded, signature, inputs, aliases)
        return signature_name, loaded.run(signature, inputs, aliases)
    except tf.errors.InvalidArgumentError as error:
        raise InvalidArgumentError(error.message) from error


class DataPlane:
    """Answers Predict, GetModelMetadata and GetModelStatus for the model of one repository.

    Args:
      repository: The model's versions.
      batching: Batch concurrent Predict requests, or None to run each alone.
    """

    def __init__(self, repository: ModelRepository, batching: Optional[BatchingOptions] = None):
        self.repository = repository
        self._batcher = Batcher(batching) if batching else None

    @property
    def model_name(self) -> str:
        """The name clients put in ``model_spec.name``."""
        return self.repository.model_name

    def stop(self) -> None:
        """Stops batching and the repository; the versions close once their requests end."""
        if self._batcher is not None:
            self._batcher.stop()
        self.repository.stop()

    def resolve(self, model_spec: model_pb2.ModelSpec) -> LoadedVersion:
        """The loaded version a request's ``model_spec`` names.

        Raises:
          NotFoundError: Another model, or a version that is not loaded.
          UnavailableError: No version is loaded yet.
          InvalidArgumentError: A version label (none are configured here).
        """
        if model_spec.name != self.model_name:
            raise NotFoundError(f"Servable not found for request: Latest({model_spec.name})")
        loaded = self.repository.loaded
        if not loaded:
            raise UnavailableError(f"no version of model {self.model_name} is loaded yet")
        if model_spec.version_label:
            # Labels need TF Serving's model config file (version_labels); none are configured here.
            raise InvalidArgumentError(f"Unrecognized servable version label: {model_spec.version_label}")
        if not model_spec.HasField("version"):
            return loaded[-1]
        for version in loaded:
            if version.version == model_spec.version.value:
                return version
        raise NotFoundError(f"Servable not found for request: Specific({model_spec.name}, {model_spec.version.value})")

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Runs one Predict request; raises a :class:`RequestError` for a bad one."""
        loaded = self.resolve(request.model_spec)
        signature_name, values = run_request(loaded, request, batcher=self._batcher)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for alias, value in values.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The signatures of the version the request names (``metadata_field``: ``signature_def``)."""
        loaded = self.resolve(request.model_spec)
        if list(request.metadata_field) != ["signature_def"]:
            raise InvalidArgumentError(f"metadata_field must be ['signature_def'], got {list(request.metadata_field)}")
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
        """The state of each version, as TF Serving reports it; NOT_FOUND when there is none."""
        if request.model_spec.name != self.model_name:
            raise NotFoundError(f"Could not find any versions of model {request.model_spec.name}")
        states = self.repository.version_states()
        if not states:
            raise NotFoundError(f"Could not find any versions of model {self.model_name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in states:
            status = response.model_version_status.add(
                version=state.version, state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state.value))
            if state.state is State.END:
                status.status.error_code = error_codes_pb2.UNKNOWN
                status.status.error_message = state.error
            elif state.state is State.AVAILABLE:
                # TF Serving sets the status (OK) of an available version too.
                status.status.SetInParent()
        return response
