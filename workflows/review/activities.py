"""Activities of the design review workflow: calls to the design service as the platform's
service account. Every call carries a request id the workflow derived, so a retry after a crash
has no second effect (one release, one reminder per organization and round)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import activity

from cofab.design.v1 import design_pb2, design_pb2_grpc, review_pb2, review_pb2_grpc
from workflows.grpc_errors import permanent_or_retry

_KINDS = {
    "DECIDED": review_pb2.RecordReviewProgressRequest.KIND_DECIDED,
    "REMINDED": review_pb2.RecordReviewProgressRequest.KIND_REMINDED,
    "ESCALATED": review_pb2.RecordReviewProgressRequest.KIND_ESCALATED,
    "RESTARTED": review_pb2.RecordReviewProgressRequest.KIND_RESTARTED,
    "CLOSED": review_pb2.RecordReviewProgressRequest.KIND_CLOSED,
}
_STATES = {
    "APPROVED": review_pb2.Review.STATE_APPROVED,
    "CHANGES_REQUESTED": review_pb2.Review.STATE_CHANGES_REQUESTED,
    "REJECTED": review_pb2.Review.STATE_REJECTED,
    "CANCELLED": review_pb2.Review.STATE_CANCELLED,
}
_OUTCOMES = {
    "APPROVE": review_pb2.REVIEW_OUTCOME_APPROVE,
    "REQUEST_CHANGES": review_pb2.REVIEW_OUTCOME_REQUEST_CHANGES,
    "REJECT": review_pb2.REVIEW_OUTCOME_REJECT,
}


@dataclass
class DecisionInput:
    """One organization's decision, as the bridge hands it to the workflow's update."""

    organization: str  # organization id
    user: str  # organizations/{o}/users/{u}
    outcome: str  # APPROVE, REQUEST_CHANGES or REJECT
    comment: str
    revision: str  # full revision name
    decide_unix: float


@dataclass
class ProgressReport:
    review: str
    kind: str  # a key of _KINDS
    request_id: str
    decision: DecisionInput | None = None
    round: int = 0
    organizations: list[str] = field(default_factory=list)  # organization ids
    revision: str = ""
    state: str = ""  # a key of _STATES, for CLOSED


@dataclass
class ReleaseRequest:
    revision: str
    request_id: str


class ReviewActivities:
    def __init__(
        self,
        reviews: review_pb2_grpc.ReviewServiceStub,
        designs: design_pb2_grpc.DesignServiceStub,
    ) -> None:
        self._reviews = reviews
        self._designs = designs

    @activity.defn
    def record_review_progress(self, report: ProgressReport) -> None:
        """Reports the workflow's progress; the service mirrors it and tells the organizations."""
        request = review_pb2.RecordReviewProgressRequest(
            name=report.review,
            kind=_KINDS[report.kind],
            request_id=report.request_id,
            organizations=[f"organizations/{o}" for o in report.organizations],
            revision=report.revision,
            round=report.round,
            state=_STATES.get(report.state, review_pb2.Review.STATE_UNSPECIFIED),
        )
        if report.decision is not None:
            d = report.decision
            decided = Timestamp()
            decided.FromNanoseconds(int(d.decide_unix * 1e9))
            request.decision.CopyFrom(
                review_pb2.ReviewDecision(
                    organization=f"organizations/{d.organization}",
                    user=d.user,
                    outcome=_OUTCOMES[d.outcome],
                    comment=d.comment,
                    revision=d.revision,
                    round=report.round,
                    decide_time=decided,
                )
            )
        try:
            self._reviews.RecordReviewProgress(request, timeout=20)
        except grpc.RpcError as error:
            raise permanent_or_retry(f"RecordReviewProgress {report.review}", error) from None

    @activity.defn
    def release_revision(self, request: ReleaseRequest) -> None:
        """Releases the approved revision (emits design.revision.released)."""
        try:
            self._designs.ReleaseRevision(
                design_pb2.ReleaseRevisionRequest(
                    name=request.revision, request_id=request.request_id
                ),
                timeout=20,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(f"ReleaseRevision {request.revision}", error) from None
