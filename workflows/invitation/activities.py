"""Activities of the invitation workflow: calls to the design service as the platform's
service account."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from temporalio import activity

from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from workflows.grpc_errors import permanent_or_retry

_STATES = {
    identity_pb2.Membership.STATE_INVITED: "INVITED",
    identity_pb2.Membership.STATE_ACTIVE: "ACTIVE",
    identity_pb2.Membership.STATE_DECLINED: "DECLINED",
    identity_pb2.Membership.STATE_EXPIRED: "EXPIRED",
}


@dataclass
class ExpireInvitation:
    membership: str
    invitation_id: str


class InvitationActivities:
    def __init__(self, projects: identity_pb2_grpc.ProjectServiceStub) -> None:
        self._projects = projects

    @activity.defn
    def expire_invitation(self, request: ExpireInvitation) -> str:
        """Expires the invitation; returns the membership's state afterwards."""
        try:
            membership = self._projects.ExpireMembership(
                identity_pb2.ExpireMembershipRequest(
                    name=request.membership,
                    # The same request id on every retry: a retried call has no second effect.
                    request_id=f"expire-{request.invitation_id}",
                ),
                timeout=20,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(f"ExpireMembership {request.membership}", error) from None
        return _STATES.get(membership.state, "UNKNOWN")
