"""Domain errors. Plain Python: the gRPC layer maps each class to one status code (status.py)."""

from __future__ import annotations

from dataclasses import dataclass

# How much of a caller's input an error message may quote: enough to recognise it, never so much
# that the status outgrows gRPC's 16 KiB metadata limit.
EXCERPT_CHARS = 40


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` quoted for an error message, cut to its first `limit` characters."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class DomainError(Exception):
    """Base of every error a caller is meant to see. `reason` is a stable machine-readable code."""

    reason = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it exists."""

    reason = "NOT_FOUND"


class PermissionDenied(DomainError):
    """The caller can see the resource but its role does not allow the action."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """No valid credential: missing, malformed, unknown, expired or revoked token."""

    reason = "UNAUTHENTICATED"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


@dataclass
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """The request is malformed; `violations` name each offending field."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(f"{name}: {description}", [FieldViolation(name, description)])


@dataclass
class PreconditionViolation:
    type: str
    subject: str
    description: str


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the action (e.g. an invitation already accepted)."""

    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, violations: list[PreconditionViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []


class Conflict(DomainError):
    """A compare-and-set lost: the resource changed since the caller read it. `current` names
    what it is now (e.g. the current head revision), so the caller can rebase."""

    reason = "ABORTED"

    def __init__(self, message: str, current: str = "") -> None:
        super().__init__(message)
        self.current = current


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"


class OutOfRange(DomainError):
    """A position (e.g. a feed cursor) is outside what the service still holds. `metadata` tells
    the caller where it can resume; `reason` is specific, e.g. CURSOR_EXPIRED."""

    def __init__(self, message: str, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = metadata or {}


class Unavailable(DomainError):
    """A dependency is down; the caller may retry."""

    reason = "UNAVAILABLE"
