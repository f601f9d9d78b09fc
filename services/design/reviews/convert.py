"""Conversions between reviews and their protobuf messages (API and events)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.duration_pb2 import Duration

from cofab.design.v1 import review_pb2
from services.design.convert import timestamp
from services.design.reviews.domain import (
    Decision,
    OnNewRevision,
    Outcome,
    PolicyKind,
    Review,
    ReviewState,
)

STATES = {
    ReviewState.OPEN: review_pb2.Review.STATE_OPEN,
    ReviewState.APPROVED: review_pb2.Review.STATE_APPROVED,
    ReviewState.CHANGES_REQUESTED: review_pb2.Review.STATE_CHANGES_REQUESTED,
    ReviewState.REJECTED: review_pb2.Review.STATE_REJECTED,
    ReviewState.CANCELLED: review_pb2.Review.STATE_CANCELLED,
}
STATE_OF = {value: key for key, value in STATES.items()}
OUTCOMES = {
    Outcome.APPROVE: review_pb2.REVIEW_OUTCOME_APPROVE,
    Outcome.REQUEST_CHANGES: review_pb2.REVIEW_OUTCOME_REQUEST_CHANGES,
    Outcome.REJECT: review_pb2.REVIEW_OUTCOME_REJECT,
}
OUTCOME_OF = {value: key for key, value in OUTCOMES.items()}
POLICY_KINDS = {
    PolicyKind.ALL: review_pb2.QuorumPolicy.KIND_ALL,
    PolicyKind.K_OF_N: review_pb2.QuorumPolicy.KIND_K_OF_N,
}
POLICY_KIND_OF = {value: key for key, value in POLICY_KINDS.items()}
ON_NEW_REVISION = {
    OnNewRevision.RESTART: review_pb2.Review.ON_NEW_REVISION_RESTART,
    OnNewRevision.CANCEL: review_pb2.Review.ON_NEW_REVISION_CANCEL,
}
ON_NEW_REVISION_OF = {value: key for key, value in ON_NEW_REVISION.items()}


def organization_name(organization_id: str) -> str:
    return f"organizations/{organization_id}"


def decision_proto(review: Review, decision: Decision) -> review_pb2.ReviewDecision:
    return review_pb2.ReviewDecision(
        organization=organization_name(decision.organization_id),
        user=decision.user,
        outcome=OUTCOMES[decision.outcome],
        comment=decision.comment,
        revision=(
            f"projects/{review.project_id}/designs/{review.design_id}"
            f"/revisions/{decision.revision_id}"
        ),
        round=decision.round,
        decide_time=timestamp(decision.decide_time),
    )


def duration(value: dt.timedelta) -> Duration:
    result = Duration()
    result.FromTimedelta(value)
    return result


def review_proto(review: Review) -> review_pb2.Review:
    return review_pb2.Review(
        name=review.name,
        revision=review.revision_name,
        requester=organization_name(review.requester_id),
        requester_user=review.requester_user,
        reviewers=[organization_name(r) for r in review.reviewers],
        policy=review_pb2.QuorumPolicy(
            kind=POLICY_KINDS[review.policy.kind],
            k=review.policy.k,
            required_organizations=[organization_name(r) for r in review.policy.required],
        ),
        deadline=timestamp(review.deadline),
        remind_before=duration(review.remind_before),
        on_new_revision=ON_NEW_REVISION[review.on_new_revision],
        state=STATES[review.state],
        escalated=review.escalated,
        decisions=[decision_proto(review, d) for d in review.decisions],
        round=review.round,
        message=review.message,
        create_time=timestamp(review.create_time),
        close_time=timestamp(review.close_time),
    )
