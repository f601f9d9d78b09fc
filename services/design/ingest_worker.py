"""What runs inside a geometry worker process: the engine's ingest of one revision, and its
diff of two revisions or merge of three, each in the sandbox (services.design.geometry.isolated):
the worker process itself never parses a user's bytes.

Kept apart from the service's modules so a spawned worker imports only the engine's boundary.
The outcome is a plain value: an IngestError does not survive pickling between processes as
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.design.geometry.types import (
    DiffInput,
    DiffResult,
    IngestError,
    IngestRequest,
    IngestResult,
    MergeResult,
)


@dataclass(frozen=True)
class IngestOutcome:
    """Either the result, or the failure kind (a Failure value) and the reason."""

    result: IngestResult | None = None
    failure: str = ""
    reason: str = ""


def run_ingest(request: IngestRequest) -> IngestOutcome:
    """Converts and validates one revision (in a worker process)."""
    from services.design.geometry import isolated

    try:
        return IngestOutcome(result=isolated.ingest(request))
    except IngestError as exc:
        return IngestOutcome(failure=exc.failure.value, reason=exc.reason)


@dataclass(frozen=True)
class DiffJob:
    """A diff of two revisions, their files written by the service into `work_dir`."""

    a: DiffInput
    b: DiffInput
    work_dir: Path


@dataclass(frozen=True)
class DiffOutcome:
    result: DiffResult | None = None
    failure: str = ""
    reason: str = ""


@dataclass(frozen=True)
class MergeJob:
    base: DiffInput
    ours: DiffInput
    theirs: DiffInput
    work_dir: Path


@dataclass(frozen=True)
class MergeOutcome:
    result: MergeResult | None = None
    failure: str = ""
    reason: str = ""


def run_diff(job: DiffJob) -> DiffOutcome:
    """Compares two revisions (in a worker process)."""
    from services.design.geometry import isolated

    try:
        return DiffOutcome(result=isolated.diff(job.a, job.b, job.work_dir))
    except IngestError as exc:
        return DiffOutcome(failure=exc.failure.value, reason=exc.reason)


def run_merge(job: MergeJob) -> MergeOutcome:
    """Merges two edits of one base (in a worker process)."""
    from services.design.geometry import isolated

    try:
        return MergeOutcome(result=isolated.merge(job.base, job.ours, job.theirs, job.work_dir))
    except IngestError as exc:
        return MergeOutcome(failure=exc.failure.value, reason=exc.reason)
