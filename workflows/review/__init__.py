"""The design review workflow: company quorum, SLA reminders and escalation, release on approval."""

from workflows.review.activities import (
    DecisionInput,
    ProgressReport,
    ReleaseRequest,
    ReviewActivities,
)
from workflows.review.workflows import (
    DesignReviewWorkflow,
    ReviewInput,
    ReviewStatus,
    workflow_id,
)

__all__ = [
    "DecisionInput",
    "DesignReviewWorkflow",
    "ProgressReport",
    "ReleaseRequest",
    "ReviewActivities",
    "ReviewInput",
    "ReviewStatus",
    "workflow_id",
]
