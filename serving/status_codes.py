"""The one table from the data plane's errors to the status each protocol answers with.

The gRPC adapter (:mod:`serving.grpc_server`) aborts with the gRPC code, the REST adapter
(:mod:`serving.rest`) replies with the HTTP status; both read them here, so a refused request
gets the same answer over either. Each pair is the HTTP mapping that ``google/rpc/code.proto``
gives the canonical code.
"""

from http import HTTPStatus
from typing import Final, Mapping

import grpc

from serving import dataplane

STATUS: Final[Mapping[type[dataplane.RequestError], tuple[grpc.StatusCode, HTTPStatus]]] = {
    dataplane.InvalidArgumentError: (grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
    dataplane.NotFoundError: (grpc.StatusCode.NOT_FOUND, HTTPStatus.NOT_FOUND),
    dataplane.UnavailableError: (grpc.StatusCode.UNAVAILABLE, HTTPStatus.SERVICE_UNAVAILABLE),
    dataplane.RequestError: (grpc.StatusCode.UNKNOWN, HTTPStatus.INTERNAL_SERVER_ERROR),
}


def status_of(error: dataplane.RequestError) -> tuple[grpc.StatusCode, HTTPStatus]:
    """The gRPC code and HTTP status of ``error``: its class's, or its nearest mapped base class's."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    raise TypeError(f"{type(error).__name__} is not a RequestError")
