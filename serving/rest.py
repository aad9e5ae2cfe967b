"""The local server's REST API: TF Serving's ``/v1/models/...`` routes over the data plane.

``GET /v1/models/NAME[/versions/N|/labels/L]`` (status), ``.../metadata``, and
``POST .../NAME[...]:predict`` with ``instances`` (rows) or ``inputs`` (columns). Each request
becomes the gRPC API's request message and goes to :class:`~serving.dataplane.DataPlane`; a refused
one gets the HTTP status of :mod:`serving.status_codes`, the same table the gRPC API uses.
"""

import http.server
import json
import logging
import threading
from typing import Callable

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from serving import contract, dataplane, status_codes

_log = logging.getLogger(__name__)


def _model_spec(path: str, model_spec: model_pb2.ModelSpec) -> str:
    """Fills ``model_spec`` from ``/v1/models/NAME[/versions/N|/labels/L][:verb]``; returns the verb."""
    route, _, verb = path.partition(":")
    parts = route.strip("/").split("/")
    if len(parts) < 3 or parts[:2] != ["v1", "models"]:
        raise dataplane.NotFoundError(f"Malformed request: {path}")
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
        raise dataplane.NotFoundError(f"Malformed request: {path}")
    return verb


def rest_predict_request(path: str, body: dict) -> predict_pb2.PredictRequest:
    """A Predict request from TF Serving's REST body: ``instances`` (rows) or ``inputs`` (columns)."""
    request = predict_pb2.PredictRequest()
    _model_spec(path, request.model_spec)
    request.model_spec.signature_name = body.get("signature_name", "")
    if ("instances" in body) == ("inputs" in body):
        raise dataplane.InvalidArgumentError(
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
            dtype = object if alias == contract.EXAMPLES_INPUT_KEY else contract.input_dtype(alias)
            array = np.asarray(values, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise dataplane.InvalidArgumentError(f"input '{alias}': {error}") from error
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    return request


def _to_json(message) -> dict:
    # TF Serving's REST answers use the proto field names and print default values ("OK", "").
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST API (``/v1/models/...``) over one DataPlane."""

    plane: dataplane.DataPlane

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        _log.debug("rest: " + format, *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply_error(self, error: dataplane.RequestError) -> None:
        self._reply(status_codes.status_of(error)[1], {"error": str(error)})

    def _respond(self, work: Callable[[], dict]) -> None:
        try:
            self._reply(200, work())
        except dataplane.RequestError as error:
            self._reply_error(error)
        except (ValueError, KeyError) as error:
            # What a body, a path or a version number that does not parse raises.
            self._reply_error(dataplane.InvalidArgumentError(f"Malformed request: {error}"))

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        def work() -> dict:
            spec = model_pb2.ModelSpec()
            verb = _model_spec(self.path, spec)
            if verb == "metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                request.model_spec.CopyFrom(spec)
                response = self.plane.metadata(request)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return {"model_spec": _to_json(response.model_spec),
                        "metadata": {"signature_def": _to_json(signature_map)}}
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.CopyFrom(spec)
            return _to_json(self.plane.status(request))
        self._respond(work)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        def work() -> dict:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            request = rest_predict_request(self.path, body)
            if not self.path.endswith(":predict"):
                raise dataplane.NotFoundError(f"Malformed request: POST {self.path}")
            response = self.plane.predict(request)
            outputs = {alias: tf.make_ndarray(proto).tolist() for alias, proto in response.outputs.items()}
            if "instances" in body:
                return {"predictions": next(iter(outputs.values())) if len(outputs) == 1 else
                        [dict(zip(outputs, row)) for row in zip(*outputs.values())]}
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        self._respond(work)


def start_rest_server(plane: dataplane.DataPlane, port: int, host: str = "0.0.0.0"
                      ) -> tuple[http.server.ThreadingHTTPServer, int]:
    """Serves TF Serving's REST API for ``plane`` in a background thread.

    Returns:
      The server (``shutdown()`` stops it) and the port it listens on.
    """
    handler = type("RestHandler", (_RestHandler,), {"plane": plane})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server, server.server_address[1]
