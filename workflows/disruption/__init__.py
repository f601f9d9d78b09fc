"""The disruption response workflow: impact, notification of the affected organizations,
re-sourcing RFQs for single-sourced items, summary."""

from workflows.disruption.activities import (
    Assessment,
    DisruptionActivities,
    DisruptionInput,
    Need,
    Notification,
    RfqOrder,
    Summary,
)
from workflows.disruption.workflows import DisruptionStatus, DisruptionWorkflow, workflow_id

__all__ = [
    "Assessment",
    "DisruptionActivities",
    "DisruptionInput",
    "DisruptionStatus",
    "DisruptionWorkflow",
    "Need",
    "Notification",
    "RfqOrder",
    "Summary",
    "workflow_id",
]
