"""Revisions and branches of a design: values and the rules of pushing. Plain Python."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.design.geometry.types import FORMATS, UNITS_MM, Failure, ParameterValue
from services.shared.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    PreconditionViolation,
    ResourceExhausted,
)

DEFAULT_BRANCH = "main"
DEFAULT_RULE_SET = "cnc-milling"
MAX_MESSAGE = 10_000
_BRANCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# The original content and the artifacts the geometry engine writes, with their media types.
MEDIA_TYPES = {
    "step": "model/step",
    "stl": "model/stl",
    "obj": "model/obj",
    "3mf": "model/3mf",
    "gltf": "model/gltf+json",
    "glb": "model/gltf-binary",
    "ply": "model/x-ply",
    "off": "model/x-off",
    "cadquery": "text/x-python",
}
ARTIFACT_MEDIA_TYPES = {
    "mesh.glb": "model/gltf-binary",
    "thumbnail.png": "image/png",
    "report.json": "application/json",
    "model.step": "model/step",
}


class RevisionState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (RevisionState.SUCCEEDED, RevisionState.FAILED)


@dataclass(frozen=True)
class ArtifactRef:
    name: str
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class ProcessingError:
    """Why processing failed: a google.rpc.Code number and a message for the user."""

    code: int
    message: str


@dataclass(frozen=True)
class Revision:
    id: str
    project_id: str
    design_id: str
    parents: tuple[str, ...]  # revision ids
    branch: str
    author: str
    message: str
    format: str
    units: str
    sha256: str
    size_bytes: int
    parameters: Mapping[str, ParameterValue]
    rule_set: str
    material: str | None
    rule_overrides: Mapping[str, float]
    state: RevisionState
    create_time: dt.datetime
    update_time: dt.datetime
    error: ProcessingError | None = None
    # JSON-shaped results of processing (see services.design.processing).
    properties: Mapping[str, Any] | None = None
    findings: tuple[Mapping[str, Any], ...] = ()
    artifacts: tuple[ArtifactRef, ...] = ()
    released: bool = False
    release_time: dt.datetime | None = None
    attempts: int = 0

    @property
    def design_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}"

    @property
    def name(self) -> str:
        return f"{self.design_name}/revisions/{self.id}"

    def parent_names(self) -> list[str]:
        return [f"{self.design_name}/revisions/{p}" for p in self.parents]

    def artifact(self, name: str) -> ArtifactRef | None:
        return next((a for a in self.artifacts if a.name == name), None)


@dataclass(frozen=True)
class Branch:
    project_id: str
    design_id: str
    name: str
    head: str  # revision id
    update_time: dt.datetime

    @property
    def resource_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}/branches/{self.name}"

    @property
    def head_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}/revisions/{self.head}"


@dataclass(frozen=True)
class PushHeader:
    """A checked push header (see check_header)."""

    project_id: str
    design_id: str
    branch: str
    base_revision: str | None  # revision id
    message: str
    format: str
    units: str
    sha256: str
    size_bytes: int
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    request_id: str = ""


def check_branch(value: str, field_name: str = "branch") -> str:
    value = value or DEFAULT_BRANCH
    if not _BRANCH_RE.match(value):
        raise InvalidArgument.field(
            field_name, f"{value!r} must be 1-63 lowercase letters, digits or '-'"
        )
    return value


def check_format(value: str) -> str:
    if value not in FORMATS:
        shown = value or "(empty)"
        raise InvalidArgument.field("format", f"{shown!r} is not one of {', '.join(FORMATS)}")
    return value


def check_units(value: str) -> str:
    """The units a revision names; "" leaves the unit to the file (mm when it has none)."""
    if value and value not in UNITS_MM:
        raise InvalidArgument.field("units", f"{value!r} is not one of {', '.join(UNITS_MM)}")
    return value


def check_sha256(value: str) -> str:
    if not _SHA256_RE.match(value):
        raise InvalidArgument.field("sha256", "must be the 64 lowercase hex digits of a sha256")
    return value


def check_size(declared: int, limit: int) -> int:
    if declared <= 0:
        raise InvalidArgument.field("size_bytes", "must be positive: an empty file is no design")
    if declared > limit:
        raise ResourceExhausted(
            f"size_bytes: {declared} bytes is over the upload limit of {limit} bytes"
        )
    return declared


def check_message(value: str) -> str:
    if len(value) > MAX_MESSAGE:
        raise InvalidArgument.field("message", f"must be at most {MAX_MESSAGE} characters")
    return value


def check_parameters(
    format: str, given: Mapping[str, ParameterValue], declared: Mapping[str, Any] | None
) -> dict[str, ParameterValue]:
    """Parameters belong to scripts only, and must be among those the script declares, with
    a value of the declared default's type (an int is accepted where a float is declared)."""
    if format != "cadquery":
        if given:
            raise InvalidArgument.field("parameters", "only cadquery scripts take parameters")
        return {}
    declared = declared or {}
    checked: dict[str, ParameterValue] = {}
    for name, value in given.items():
        field_name = f"parameters[{name}]"
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidArgument.field(
                field_name, f"the script declares no parameter {name!r} (it declares: {known})"
            )
        expected = _declared_type(declared[name])
        if expected is not None and not _fits(value, expected):
            raise InvalidArgument.field(
                field_name, f"must be a {expected.__name__}, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument.field(field_name, "must be a finite number")
        checked[name] = value
    return checked


def _declared_type(spec: Any) -> type | None:
    kind = getattr(spec, "type", None) or getattr(spec, "kind", None)
    if isinstance(kind, type):
        return kind
    names = {"float": float, "int": int, "str": str, "bool": bool, "number": float}
    if isinstance(kind, str) and kind in names:
        return names[kind]
    default = getattr(spec, "default", None)
    return type(default) if isinstance(default, float | int | str | bool) else None


def _fits(value: ParameterValue, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def ingest_failure(failure: Failure, reason: str) -> DomainError:
    """The API error of an input the geometry engine refused."""
    if failure is Failure.INVALID:
        return InvalidArgument(reason)
    if failure is Failure.TOO_LARGE:
        return ResourceExhausted(reason)
    return FailedPrecondition(reason, [PreconditionViolation("GEOMETRY", "content", reason)])


# google.rpc.Code numbers stored with a failed revision.
CODE_INVALID_ARGUMENT = 3
CODE_FAILED_PRECONDITION = 9
CODE_RESOURCE_EXHAUSTED = 8
CODE_INTERNAL = 13
_FAILURE_CODES = {
    Failure.INVALID: CODE_INVALID_ARGUMENT,
    Failure.PRECONDITION: CODE_FAILED_PRECONDITION,
    Failure.TOO_LARGE: CODE_RESOURCE_EXHAUSTED,
}


def processing_error(failure: Failure, reason: str) -> ProcessingError:
    return ProcessingError(_FAILURE_CODES[failure], reason)


def require_succeeded_base(base: Revision) -> None:
    if base.state is not RevisionState.SUCCEEDED:
        raise FailedPrecondition(
            f"base_revision {base.name} is {base.state.value}; push on a SUCCEEDED revision",
            [PreconditionViolation("REVISION_STATE", base.name, f"revision is {base.state.value}")],
        )


def findings_summary(findings: tuple[Mapping[str, Any], ...]) -> dict[str, int]:
    counts = {"info": 0, "warning": 0, "error": 0}
    for finding in findings:
        severity = str(finding.get("severity", ""))
        if severity in counts:
            counts[severity] += 1
    return counts
