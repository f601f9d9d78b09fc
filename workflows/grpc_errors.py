"""How activities report a failed gRPC call to Temporal: retry it, or fail for good."""

from __future__ import annotations

import grpc
from temporalio.exceptions import ApplicationError

# These will not succeed on retry: the request itself is wrong or not allowed.
PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def permanent_or_retry(call: str, error: grpc.RpcError) -> Exception:
    """A non-retryable ApplicationError typed by the status code for a permanent failure; the
    error itself (retried by the activity's retry policy) otherwise."""
    code = error.code()
    if code in PERMANENT:
        return ApplicationError(
            f"{call}: {code.name}: {error.details()}", type=code.name, non_retryable=True
        )
    return error
