"""gRPC server assembly shared by both services: auth + error mapping, health, reflection, TLS."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import OperationalError

from services.shared.config import Settings, load_settings
from services.shared.errors import DomainError, Unauthenticated, Unavailable
from services.shared.identity import Principal, parse_bearer
from services.shared.process import mark_ready
from services.shared.status import to_status

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("cofab_principal")

# Methods anyone may call without a token: probes and API discovery.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


class Authenticator(Protocol):
    """Token -> principal: `cached` answers from memory or None, `authenticate` may block."""

    def cached(self, token: str) -> Principal | None: ...

    def authenticate(self, token: str) -> Principal: ...


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    try:
        return _principal.get()
    except LookupError:
        raise Unauthenticated("no authenticated caller in this context") from None


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
    if isinstance(error, OperationalError):
        # The database is down or unreachable: nothing was changed, and a retry may succeed.
        log.warning("database unavailable: %s", error)
        error = Unavailable("the database is unavailable; retry later")
    if isinstance(error, DomainError):
        await context.abort_with_status(to_status(error))
    incident = uuid.uuid4().hex[:12]
    log.error("internal error, incident %s", incident, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")


class ApiInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every non-public call from `authorization: Bearer <token>` and maps domain
    errors to rich gRPC statuses. The principal is visible to the handler via current_principal().
    """

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.lstrip("/").startswith(PUBLIC_SERVICES):
            return handler
        return _wrap(handler, self._enter)

    async def _enter(
        self, context: grpc.aio.ServicerContext[Any, Any]
    ) -> contextvars.Token[Principal]:
        metadata = dict(context.invocation_metadata() or ())
        header = metadata.get("authorization")
        token = parse_bearer(header if isinstance(header, str) else None)
        principal = self._authenticator.cached(token)
        if principal is None:
            principal = await asyncio.to_thread(self._authenticator.authenticate, token)
        return _principal.set(principal)


Enter = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[contextvars.Token[Principal]]]


async def _run_unary(enter: Enter, inner: Any, request: Any, context: Any) -> Any:
    try:
        token = await enter(context)
        try:
            return await inner(request, context)
        finally:
            _principal.reset(token)
    except Exception as exc:
        if _is_abort(exc):
            raise
        await _abort(context, exc)


async def _run_stream(enter: Enter, inner: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    try:
        token = await enter(context)
        try:
            async for item in inner(request, context):
                yield item
        finally:
            _principal.reset(token)
    except Exception as exc:
        if _is_abort(exc):
            raise
        await _abort(context, exc)


def _wrap(handler: Handler, enter: Enter) -> Handler:
    """Returns the same handler with authentication and error mapping around its behaviour."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        unary = functools.partial(_run_unary, enter, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.stream_unary:
        unary = functools.partial(_run_unary, enter, handler.stream_unary)
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream:
        stream = functools.partial(_run_stream, enter, handler.unary_stream)
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    stream = functools.partial(_run_stream, enter, handler.stream_stream)
    return grpc.stream_stream_rpc_method_handler(stream, **kwargs)


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this to end the RPC; it must pass through untouched.
    return type(exc).__name__ == "AbortError"


@dataclass
class ServiceRegistration:
    """One gRPC service to serve: how to add it, and its full name for health and reflection."""

    full_name: str
    add: Callable[[grpc.aio.Server], None]


@dataclass
class BuiltServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: list[str]

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def create_server(
    listen: str,
    services: Sequence[ServiceRegistration],
    authenticator: Authenticator,
    tls: tuple[bytes, bytes] | None = None,
    max_message_bytes: int = 8 * 1024 * 1024,
) -> BuiltServer:
    """Builds (does not start) a grpc.aio server with our services, the standard health and
    reflection services, and TLS when a (key, certificate chain) pair is given. Port 0 binds
    a free port; the bound port is returned."""
    server = grpc.aio.server(
        interceptors=[ApiInterceptor(authenticator)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    for registration in services:
        registration.add(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [s.full_name for s in services]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    if tls is not None:
        port = server.add_secure_port(listen, grpc.ssl_server_credentials([tls]))
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}: address in use or not available")
    return BuiltServer(server, port, health, names)


async def mark_serving(built: BuiltServer) -> None:
    for name in ["", *built.service_names]:
        await built.health.set(name, health_pb2.HealthCheckResponse.SERVING)


def read_tls(cert_file: Path | None, key_file: Path | None) -> tuple[bytes, bytes] | None:
    """The (private key, certificate chain) pair for create_server, when TLS is configured."""
    if cert_file is None or key_file is None:
        return None
    return key_file.read_bytes(), cert_file.read_bytes()


async def serve(built: BuiltServer, on_ready: Callable[[], None]) -> None:
    """Starts the server, reports SERVING, and runs until SIGTERM/SIGINT, then stops gracefully."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await built.start()
    await mark_serving(built)
    on_ready()
    log.info("serving on port %d", built.port)
    await stopping.wait()
    log.info("stopping")
    await built.stop(grace=5.0)


def run_service(label: str, build: Callable[[Settings], BuiltServer]) -> None:
    """Entry point of a service process: settings, server, serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {label} %(levelname)s %(message)s")
    settings = load_settings()

    async def _main() -> None:
        # grpc.aio servers belong to the loop they are created in, so build inside it.
        await serve(build(settings), lambda: mark_ready(settings))

    asyncio.run(_main())
