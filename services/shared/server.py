"""gRPC server assembly shared by both services: auth + error mapping, health, reflection, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import OperationalError

from services.shared.bounds import check_request
from services.shared.config import Settings, load_settings
from services.shared.errors import DomainError, Unauthenticated, Unavailable
from services.shared.idempotency import set_fingerprint
from services.shared.identity import Principal, parse_bearer
from services.shared.keys import ServerKeys, set_keys
from services.shared.process import mark_ready
from services.shared.status import status_code, to_status

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("cofab_principal")

# Reads whose use cases write no audit row of their own: the server writes one per call (the
# other reads of tenant data, e.g. GetDesign or GetRevision, are audited by their use case).
AUDITED_READS = frozenset(
    f"/{service}/{method}"
    for service, methods in {
        "cofab.identity.v1.ProjectService": ("GetProject", "ListProjects", "ListMemberships"),
        "cofab.procurement.v1.ProcurementService": (
            "GetRfq",
            "ListRfqs",
            "GetQuote",
            "ListQuotes",
            "EvaluateRfq",
        ),
        "cofab.supply.v1.SupplyService": (
            "ExportNetwork",
            "TraceSupplyChain",
            "SearchCapableSuppliers",
            "AnalyzeRisk",
            "ComputeDisruptionImpact",
            "PlanAlternativeSourcing",
        ),
        "cofab.events.v1.EventFeedService": ("StreamEvents",),
    }.items()
    for method in methods
)

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


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Runs the block as `principal`, as an RPC of it would (for code outside a server)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


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

    def __init__(
        self, authenticator: Authenticator, keys: ServerKeys, auditor: CallAuditor | None
    ) -> None:
        self._authenticator = authenticator
        self._keys = keys
        self._auditor = auditor

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.lstrip("/").startswith(PUBLIC_SERVICES):
            return handler
        return _wrap(handler, _Call(method, self._enter, self._auditor))

    async def _enter(
        self, context: grpc.aio.ServicerContext[Any, Any]
    ) -> contextvars.Token[Principal]:
        metadata = dict(context.invocation_metadata() or ())
        header = metadata.get("authorization")
        token = parse_bearer(header if isinstance(header, str) else None)
        principal = self._authenticator.cached(token)
        if principal is None:
            principal = await asyncio.to_thread(self._authenticator.authenticate, token)
        # Each call runs in its own task (and context): the keys need no reset.
        set_keys(self._keys)
        return _principal.set(principal)


Enter = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[contextvars.Token[Principal]]]


class CallAuditor(Protocol):
    """Writes the one audit row of a call its use case does not audit itself."""

    def audit_call(
        self, principal: Principal, method: str, resource: str, outcome: str
    ) -> None: ...


@dataclass(frozen=True)
class _Call:
    """What the wrappers know of the call: its method, and whom to tell."""

    method: str
    enter: Enter
    auditor: CallAuditor | None

    @property
    def audited_read(self) -> bool:
        return self.auditor is not None and self.method in AUDITED_READS


async def _bounded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose every message is checked against the size limits."""
    async for message in requests:
        check_request(message)
        yield message


def _checked(request: Any) -> Any:
    if isinstance(request, Message):
        check_request(request)
        if getattr(request, "request_id", ""):
            set_fingerprint(request)
        return request
    return _bounded(request)


def _resource_of(request: Any) -> str:
    for field in ("name", "parent", "design", "start"):
        value = getattr(request, field, "")
        if isinstance(value, str) and value:
            return value[:300]
    return ""


async def _audit(call: _Call, principal: Principal, request: Any, outcome: str) -> None:
    if call.auditor is None:
        return
    try:
        await asyncio.to_thread(
            call.auditor.audit_call, principal, call.method, _resource_of(request), outcome
        )
    except Exception:
        # The call's own answer matters more than its audit row; the failure is logged.
        log.exception("could not audit %s by %s", call.method, principal.user_name)


async def _refused(call: _Call, principal: Principal | None, request: Any, exc: Exception) -> None:
    """Audits a refusal of an authenticated caller (unauthenticated ones only reach the service
    log: writing a row for each would let anyone without a token grow the audit log)."""
    if principal is not None and isinstance(exc, DomainError):
        await _audit(call, principal, request, status_code(exc).name)


async def _run_unary(call: _Call, inner: Any, request: Any, context: Any) -> Any:
    principal: Principal | None = None
    try:
        token = await call.enter(context)
        principal = _principal.get()
        try:
            response = await inner(_checked(request), context)
        finally:
            _principal.reset(token)
        if call.audited_read:
            await _audit(call, principal, request, "OK")
        return response
    except Exception as exc:
        if _is_abort(exc):
            raise
        await _refused(call, principal, request, exc)
        await _abort(context, exc)


async def _run_stream(call: _Call, inner: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    principal: Principal | None = None
    try:
        token = await call.enter(context)
        principal = _principal.get()
        audited = not call.audited_read
        try:
            async for item in inner(_checked(request), context):
                if not audited:
                    # Once the read delivers something: a follow stream may run for hours.
                    await _audit(call, principal, request, "OK")
                    audited = True
                yield item
        finally:
            _principal.reset(token)
        if not audited:
            await _audit(call, principal, request, "OK")
    except Exception as exc:
        if _is_abort(exc):
            raise
        await _refused(call, principal, request, exc)
        await _abort(context, exc)


def _wrap(handler: Handler, call: _Call) -> Handler:
    """Returns the same handler with authentication and error mapping around its behaviour."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        unary = functools.partial(_run_unary, call, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.stream_unary:
        unary = functools.partial(_run_unary, call, handler.stream_unary)
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream:
        stream = functools.partial(_run_stream, call, handler.unary_stream)
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    stream = functools.partial(_run_stream, call, handler.stream_stream)
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
    keys: ServerKeys,
    tls: tuple[bytes, bytes] | None = None,
    max_message_bytes: int = 8 * 1024 * 1024,
    auditor: CallAuditor | None = None,
) -> BuiltServer:
    """Builds (does not start) a grpc.aio server with our services, the standard health and
    reflection services, and TLS when a (key, certificate chain) pair is given. Port 0 binds
    a free port; the bound port is returned. With an `auditor`, refused calls and the reads
    in AUDITED_READS each get one audit row."""
    server = grpc.aio.server(
        interceptors=[ApiInterceptor(authenticator, keys, auditor)],
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
