"""The procurement workflow: an RFQ collects quotes until its deadline or until every invited
supplier answered, then is closed, ranked and awarded per its award policy."""

from workflows.procurement.activities import (
    AwardRequest,
    AwardShare,
    ProcurementActivities,
    RankedQuote,
    RfqSnapshot,
    RfqStep,
)
from workflows.procurement.workflows import (
    ProcurementInput,
    ProcurementStatus,
    ProcurementWorkflow,
    workflow_id,
)

__all__ = [
    "AwardRequest",
    "AwardShare",
    "ProcurementActivities",
    "ProcurementInput",
    "ProcurementStatus",
    "ProcurementWorkflow",
    "RankedQuote",
    "RfqSnapshot",
    "RfqStep",
    "workflow_id",
]
