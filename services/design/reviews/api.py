"""gRPC servicer of design reviews: proto -> use case -> proto."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from cofab.design.v1 import review_pb2, review_pb2_grpc
from services.design.reviews.application import Progress, ProgressKind, ReviewApplication
from services.design.reviews.convert import (
    ON_NEW_REVISION_OF,
    OUTCOME_OF,
    POLICY_KIND_OF,
    STATE_OF,
    review_proto,
)
from services.design.reviews.domain import (
    Decision,
    OnNewRevision,
    PolicyKind,
    QuorumPolicy,
)
from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.paging import page
from services.shared.server import current_principal

Context = Any
REVIEW = "projects/{project}/designs/{design}/reviews/{review}"
REVISION = "projects/{project}/designs/{design}/revisions/{revision}"
DEFAULT_REMIND_BEFORE = dt.timedelta(days=1)


def _organization_ids(values: Any, field: str) -> list[str]:
    return [names.parse_one(v, "organizations/{organization}", field) for v in values]


def _review_name(name: str) -> str:
    names.parse(name, REVIEW, "name")
    return name


def _decision(review: str, message: review_pb2.ReviewDecision) -> Decision:
    project, design, _ = names.parse(review, REVIEW, "name")
    p, d, revision = names.parse(message.revision, REVISION, "decision.revision")
    if (p, d) != (project, design):
        raise InvalidArgument.field("decision.revision", "is not a revision of this design")
    if message.outcome not in OUTCOME_OF:
        raise InvalidArgument.field("decision.outcome", "must be set")
    return Decision(
        organization_id=names.parse_one(
            message.organization, "organizations/{organization}", "decision.organization"
        ),
        user=message.user,
        outcome=OUTCOME_OF[message.outcome],
        comment=message.comment,
        revision_id=revision,
        round=message.round,
        decide_time=message.decide_time.ToDatetime(dt.UTC),
    )


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(self, app: ReviewApplication) -> None:
        self._app = app

    async def CreateReview(
        self, request: review_pb2.CreateReviewRequest, context: Context
    ) -> review_pb2.Review:
        project, design = names.parse(
            request.parent, "projects/{project}/designs/{design}", "parent"
        )
        r = request.review
        p, d, revision = names.parse(r.revision, REVISION, "review.revision")
        if (p, d) != (project, design):
            raise InvalidArgument.field("review.revision", "must be a revision of the parent")
        reviewers = _organization_ids(r.reviewers, "review.reviewers")
        kind = POLICY_KIND_OF.get(r.policy.kind, PolicyKind.ALL)
        policy = QuorumPolicy(
            kind,
            r.policy.k,
            tuple(
                _organization_ids(
                    r.policy.required_organizations, "review.policy.required_organizations"
                )
            ),
        )
        if not r.HasField("deadline"):
            raise InvalidArgument.field("review.deadline", "is required")
        remind_before = (
            r.remind_before.ToTimedelta() if r.HasField("remind_before") else DEFAULT_REMIND_BEFORE
        )
        review = await asyncio.to_thread(
            self._app.create_review,
            current_principal(),
            project,
            design,
            revision,
            reviewers,
            policy,
            r.deadline.ToDatetime(dt.UTC),
            remind_before,
            ON_NEW_REVISION_OF.get(r.on_new_revision, OnNewRevision.RESTART),
            r.message,
            request.request_id,
        )
        return review_proto(review)

    async def GetReview(
        self, request: review_pb2.GetReviewRequest, context: Context
    ) -> review_pb2.Review:
        review = await asyncio.to_thread(
            self._app.get_review, current_principal(), _review_name(request.name)
        )
        return review_proto(review)

    async def ListReviews(
        self, request: review_pb2.ListReviewsRequest, context: Context
    ) -> review_pb2.ListReviewsResponse:
        project, design = names.parse(
            request.parent, "projects/{project}/designs/{design}", "parent"
        )
        listed = await asyncio.to_thread(
            self._app.list_reviews,
            current_principal(),
            project,
            design,
            page(request.page_size, request.page_token, f"reviews:{project}/{design}"),
        )
        return review_pb2.ListReviewsResponse(
            reviews=[review_proto(r) for r in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def DecideReview(
        self, request: review_pb2.DecideReviewRequest, context: Context
    ) -> review_pb2.Review:
        if request.outcome not in OUTCOME_OF:
            raise InvalidArgument.field("outcome", "must be approve, request changes or reject")
        review = await asyncio.to_thread(
            self._app.decide,
            current_principal(),
            _review_name(request.name),
            OUTCOME_OF[request.outcome],
            request.comment,
            request.request_id,
        )
        return review_proto(review)

    async def ExtendReview(
        self, request: review_pb2.ExtendReviewRequest, context: Context
    ) -> review_pb2.Review:
        if not request.HasField("deadline"):
            raise InvalidArgument.field("deadline", "is required")
        review = await asyncio.to_thread(
            self._app.extend,
            current_principal(),
            _review_name(request.name),
            request.deadline.ToDatetime(dt.UTC),
            request.request_id,
        )
        return review_proto(review)

    async def CancelReview(
        self, request: review_pb2.CancelReviewRequest, context: Context
    ) -> review_pb2.Review:
        review = await asyncio.to_thread(
            self._app.cancel, current_principal(), _review_name(request.name), request.request_id
        )
        return review_proto(review)

    async def RecordReviewProgress(
        self, request: review_pb2.RecordReviewProgressRequest, context: Context
    ) -> review_pb2.Review:
        name = _review_name(request.name)
        kinds = review_pb2.RecordReviewProgressRequest
        kind = {
            kinds.KIND_DECIDED: ProgressKind.DECIDED,
            kinds.KIND_REMINDED: ProgressKind.REMINDED,
            kinds.KIND_ESCALATED: ProgressKind.ESCALATED,
            kinds.KIND_RESTARTED: ProgressKind.RESTARTED,
            kinds.KIND_CLOSED: ProgressKind.CLOSED,
        }.get(request.kind)
        if kind is None:
            raise InvalidArgument.field("kind", "must be set")
        revision_id = ""
        if request.revision:
            revision_id = names.parse(request.revision, REVISION, "revision")[2]
        progress = Progress(
            kind=kind,
            decision=_decision(name, request.decision) if request.HasField("decision") else None,
            organizations=tuple(_organization_ids(request.organizations, "organizations")),
            revision_id=revision_id,
            round=request.round,
            state=STATE_OF.get(request.state),
        )
        review = await asyncio.to_thread(
            self._app.record_progress, current_principal(), name, progress, request.request_id
        )
        return review_proto(review)
