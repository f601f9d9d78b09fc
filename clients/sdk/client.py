"""Channels and stubs with the caller's bearer token on every call."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from cofab.design.v1 import comment_pb2_grpc, design_pb2_grpc, review_pb2_grpc
    from cofab.events.v1 import feed_pb2_grpc
    from cofab.identity.v1 import identity_pb2_grpc
    from cofab.procurement.v1 import procurement_pb2_grpc
    from cofab.supply.v1 import supply_pb2_grpc


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call. Works on plaintext loopback channels
    too, where gRPC refuses call credentials."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or []) + [self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


# gRPC's own retries: a call that failed with UNAVAILABLE (service restarting, database down)
# is sent again as is, with the same request_id, so a mutation that did commit is not repeated.
RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
CHANNEL_OPTIONS = [("grpc.enable_retries", 1), ("grpc.service_config", RETRY_SERVICE_CONFIG)]


def open_channel(address: str, token: str | None, ca_file: Path | None = None) -> grpc.Channel:
    """A channel to one service; TLS when a CA file is given, plaintext otherwise (loopback)."""
    if ca_file is not None:
        credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
        channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if token:
        channel = grpc.intercept_channel(channel, TokenInterceptor(token))
    return channel


@dataclass
class Cofab:
    """Stubs for every cofab API, over one channel per service. Each stub (and its generated
    module) is loaded on first use, so a command that calls one service starts fast."""

    design_channel: grpc.Channel
    supply_channel: grpc.Channel

    @cached_property
    def identity(self) -> identity_pb2_grpc.IdentityServiceStub:
        from cofab.identity.v1 import identity_pb2_grpc

        return identity_pb2_grpc.IdentityServiceStub(self.design_channel)

    @cached_property
    def projects(self) -> identity_pb2_grpc.ProjectServiceStub:
        from cofab.identity.v1 import identity_pb2_grpc

        return identity_pb2_grpc.ProjectServiceStub(self.design_channel)

    @cached_property
    def designs(self) -> design_pb2_grpc.DesignServiceStub:
        from cofab.design.v1 import design_pb2_grpc

        return design_pb2_grpc.DesignServiceStub(self.design_channel)

    @cached_property
    def reviews(self) -> review_pb2_grpc.ReviewServiceStub:
        from cofab.design.v1 import review_pb2_grpc

        return review_pb2_grpc.ReviewServiceStub(self.design_channel)

    @cached_property
    def comments(self) -> comment_pb2_grpc.CommentServiceStub:
        from cofab.design.v1 import comment_pb2_grpc

        return comment_pb2_grpc.CommentServiceStub(self.design_channel)

    @cached_property
    def events(self) -> feed_pb2_grpc.EventFeedServiceStub:
        """The partner event feed (served by both services; read here from design's)."""
        from cofab.events.v1 import feed_pb2_grpc

        return feed_pb2_grpc.EventFeedServiceStub(self.design_channel)

    @cached_property
    def supply(self) -> supply_pb2_grpc.SupplyServiceStub:
        from cofab.supply.v1 import supply_pb2_grpc

        return supply_pb2_grpc.SupplyServiceStub(self.supply_channel)

    @cached_property
    def procurement(self) -> procurement_pb2_grpc.ProcurementServiceStub:
        from cofab.procurement.v1 import procurement_pb2_grpc

        return procurement_pb2_grpc.ProcurementServiceStub(self.supply_channel)

    def close(self) -> None:
        self.design_channel.close()
        self.supply_channel.close()

    def __enter__(self) -> Cofab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    token: str | None,
    design_address: str = "127.0.0.1:50051",
    supply_address: str = "127.0.0.1:50052",
    ca_file: Path | None = None,
) -> Cofab:
    return Cofab(
        open_channel(design_address, token, ca_file), open_channel(supply_address, token, ca_file)
    )
