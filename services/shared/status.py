"""The ONE table mapping domain errors to gRPC status codes, with AIP-193 error details."""

from __future__ import annotations

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.shared.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "cofab.dev"
# Longest message, field name and description a status carries, and how many violations.
# Messages quote input only through errors.excerpt; this cut is the backstop that keeps any
# status far below gRPC's 16 KiB metadata limit (past it, the client sees RESOURCE_EXHAUSTED
# instead of the error): at worst 1000 + 10 x (200 + 300) characters, under 10 KiB on the wire
# with the message sent twice.
MAX_MESSAGE = 1000
MAX_FIELD = 200
MAX_DESCRIPTION = 300
MAX_VIOLATIONS = 10


def _short(text: str, limit: int = MAX_DESCRIPTION) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: DomainError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.UNKNOWN


def _pack(message: object) -> AnyProto:
    packed = AnyProto()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: DomainError) -> grpc.Status:
    """Builds the rich status: code, message, ErrorInfo and, where known, BadRequest,
    PreconditionFailure or the current value after a lost compare-and-set."""
    code = status_code(error)
    metadata: dict[str, str] = {}
    details = []
    if isinstance(error, InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_short(v.field, MAX_FIELD), description=_short(v.description)
                        )
                        for v in error.violations[:MAX_VIOLATIONS]
                    ]
                )
            )
        )
    if isinstance(error, FailedPrecondition) and error.violations:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=v.type,
                            subject=_short(v.subject, MAX_FIELD),
                            description=_short(v.description),
                        )
                        for v in error.violations[:MAX_VIOLATIONS]
                    ]
                )
            )
        )
    if isinstance(error, Conflict) and error.current:
        metadata["current"] = error.current
    if isinstance(error, OutOfRange):
        metadata.update(error.metadata)
    details.insert(
        0,
        _pack(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
        ),
    )
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(
            code=code.value[0], message=_short(error.message, MAX_MESSAGE), details=details
        )
    )
    return status
