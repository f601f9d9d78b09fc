"""What runs inside an ingest worker process: the geometry engine on one revision.

Kept apart from the service's modules so a spawned worker imports only the engine. The outcome
is a plain value: an IngestError does not survive pickling between processes as itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.design.geometry.types import IngestError, IngestRequest, IngestResult


@dataclass(frozen=True)
class IngestOutcome:
    """Either the result, or the failure kind (a Failure value) and the reason."""

    result: IngestResult | None = None
    failure: str = ""
    reason: str = ""


def run_ingest(request: IngestRequest) -> IngestOutcome:
    """Converts and validates one revision (in a worker process)."""
    from services.design import geometry  # CadQuery is slow to import: only in workers

    try:
        return IngestOutcome(result=geometry.ingest(request))
    except IngestError as exc:
        return IngestOutcome(failure=exc.failure.value, reason=exc.reason)
