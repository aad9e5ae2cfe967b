"""The local server's gRPC API: TF Serving's services over the data plane, and nothing more.

``PredictionService.Predict`` and ``GetModelMetadata``, ``ModelService.GetModelStatus`` and the
standard health service (``grpc.health.v1.Health``: SERVING once a version is loaded). Each call
is handed to :class:`~serving.dataplane.DataPlane`; a request it refuses is aborted with the gRPC
code of :mod:`serving.status_codes`.
"""

import concurrent.futures
from typing import Callable, Optional

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import dataplane, status_codes

# Names the health service answers for: the whole server ("") and the prediction service.
HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService")


def _handler(method: Callable) -> Callable:
    """A gRPC method that runs a DataPlane method and aborts with the status of a refused request."""

    def handler(self, request, context: grpc.ServicerContext):
        try:
            # Looked up on the instance, so that a DataPlane subclass's override answers.
            return getattr(self._plane, method.__name__)(request)
        except dataplane.RequestError as error:
            context.abort(status_codes.status_of(error)[0], str(error))

    return handler


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, plane: dataplane.DataPlane):
        self._plane = plane

    Predict = _handler(dataplane.DataPlane.predict)
    GetModelMetadata = _handler(dataplane.DataPlane.metadata)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, plane: dataplane.DataPlane):
        self._plane = plane

    GetModelStatus = _handler(dataplane.DataPlane.status)


def _health_service(plane: dataplane.DataPlane) -> health.HealthServicer:
    servicer = health.HealthServicer()

    def report(available: bool) -> None:
        state = health_pb2.HealthCheckResponse.SERVING if available else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in HEALTH_SERVICES:
            servicer.set(service, state)

    plane.repository.add_listener(report)
    return servicer


def start_server(plane: dataplane.DataPlane, port: int, host: str = "0.0.0.0",
                 max_workers: int = 8, max_message_bytes: int = 64 << 20,
                 tls_key_and_certificate: Optional[tuple[bytes, bytes]] = None) -> tuple[grpc.Server, int]:
    """Starts the gRPC services for ``plane``, and the polling of its repository for versions.

    Args:
      plane: The model to serve.
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
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(plane), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(plane), server)
    health_pb2_grpc.add_HealthServicer_to_server(_health_service(plane), server)
    if tls_key_and_certificate is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        credentials = grpc.ssl_server_credentials([tls_key_and_certificate])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    plane.repository.start_polling()
    return server, bound
