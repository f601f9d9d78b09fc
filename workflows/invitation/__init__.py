"""The project invitation workflow and its activities."""

from workflows.invitation.activities import ExpireInvitation, InvitationActivities
from workflows.invitation.workflows import (
    InvitationInput,
    InvitationOutcome,
    ProjectInvitationWorkflow,
    workflow_id,
)

__all__ = [
    "ExpireInvitation",
    "InvitationActivities",
    "InvitationInput",
    "InvitationOutcome",
    "ProjectInvitationWorkflow",
    "workflow_id",
]
