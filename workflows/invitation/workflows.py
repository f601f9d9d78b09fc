"""ProjectInvitationWorkflow: an invitation into a shared project, open until the invited
organization answers or the invitation's time runs out (then the workflow expires it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.invitation.activities import ExpireInvitation, InvitationActivities

ACTIVE = "ACTIVE"
DECLINED = "DECLINED"
EXPIRED = "EXPIRED"
ANSWERS = (ACTIVE, DECLINED)


@dataclass
class InvitationInput:
    # projects/{project}/memberships/{organization}
    membership: str
    invitation_id: str
    # When the invitation expires, as Unix seconds (from the invitation event).
    expire_unix: float


@dataclass
class InvitationOutcome:
    membership: str
    # The membership's final state: ACTIVE (accepted), DECLINED or EXPIRED.
    state: str


def workflow_id(invitation_id: str) -> str:
    """One workflow per invitation: a redelivered event cannot start a second one."""
    return f"invitation-{invitation_id}"


@workflow.defn
class ProjectInvitationWorkflow:
    def __init__(self) -> None:
        self._answer: str | None = None

    @workflow.run
    async def run(self, invitation: InvitationInput) -> InvitationOutcome:
        remaining = invitation.expire_unix - workflow.now().timestamp()
        if remaining > 0:
            try:
                await workflow.wait_condition(
                    lambda: self._answer is not None, timeout=timedelta(seconds=remaining)
                )
            except TimeoutError:
                pass
        if self._answer is not None:
            return InvitationOutcome(invitation.membership, self._answer)
        state = await workflow.execute_activity_method(
            InvitationActivities.expire_invitation,
            ExpireInvitation(invitation.membership, invitation.invitation_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
        return InvitationOutcome(invitation.membership, state)

    @workflow.signal
    def answered(self, state: str) -> None:
        """The invited organization answered: ACTIVE (accepted) or DECLINED."""
        if state in ANSWERS and self._answer is None:
            self._answer = state

    @workflow.query
    def status(self) -> str:
        return self._answer or "INVITED"


__all__ = [
    "ProjectInvitationWorkflow",
    "InvitationInput",
    "InvitationOutcome",
    "workflow_id",
]
