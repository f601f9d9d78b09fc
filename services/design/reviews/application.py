"""Use cases of design reviews. Each runs in one transaction with its audit entry, outbox event
and request-id record, like every use case of the design service.

The review's workflow owns the outcome: this service records requests and decisions, tells the
workflow about them through events (`design.review.*`, keyed by review id so they arrive in
order), and mirrors what the workflow reports back through `record_progress`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine

from cofab.design.v1 import review_events_pb2
from services.design.reviews.convert import decision_proto, organization_name, review_proto
from services.design.reviews.domain import (
    MAX_COMMENT,
    Decision,
    OnNewRevision,
    Outcome,
    QuorumPolicy,
    Review,
    ReviewState,
    check_request,
)
from services.design.reviews.repository import ReviewRepository
from services.shared import audit, authz, idempotency, outbox
from services.shared.db import utcnow
from services.shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.shared.events import make_envelope
from services.shared.identity import Principal, Role
from services.shared.paging import Listed, Page, page_of

SOURCE = "//cofab/design"
SUCCEEDED = "SUCCEEDED"
Clock = Callable[[], dt.datetime]


class ProgressKind(Enum):
    DECIDED = "DECIDED"
    REMINDED = "REMINDED"
    ESCALATED = "ESCALATED"
    RESTARTED = "RESTARTED"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Progress:
    """What the review workflow reports."""

    kind: ProgressKind
    decision: Decision | None = None
    organizations: tuple[str, ...] = ()
    revision_id: str = ""
    round: int = 0
    state: ReviewState | None = None


def _enqueue(
    conn: Connection,
    review: Review,
    event_type: str,
    data: Message,
    audience: Sequence[str],
    organization: str,
) -> None:
    envelope = make_envelope(
        source=SOURCE,
        event_type=event_type,
        subject=review.name,
        organization=organization_name(organization),
        data=data,
        audience=[organization_name(o) for o in audience],
    )
    outbox.enqueue(conn, envelope, key=review.id)


class ReviewApplication:
    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def create_review(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        revision_id: str,
        reviewers: Sequence[str],
        policy: QuorumPolicy,
        deadline: dt.datetime,
        remind_before: dt.timedelta,
        on_new_revision: OnNewRevision,
        message: str,
        request_id: str,
    ) -> Review:
        now = self._clock()
        check_request(reviewers, policy, deadline, remind_before, now)
        if len(message) > MAX_COMMENT:
            raise InvalidArgument.field("review.message", f"at most {MAX_COMMENT} characters")
        with self._engine.begin() as conn:
            repo = ReviewRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.EDITOR)
            earlier = idempotency.replayed(conn, principal, "CreateReview", request_id)
            if earlier is not None:
                return self._review(repo, principal, earlier, Role.VIEWER)
            revision = repo.revision(design_id, revision_id)
            revision_name = f"projects/{project_id}/designs/{design_id}/revisions/{revision_id}"
            if revision is None:
                raise NotFound(f"{revision_name} not found")
            state, branch = revision
            if state != SUCCEEDED:
                raise FailedPrecondition(
                    f"{revision_name} is {state}; only a SUCCEEDED revision can be reviewed",
                    [PreconditionViolation("STATE", revision_name, f"revision is {state}")],
                )
            weak = [
                r
                for r in reviewers
                if (role := repo.organization_role(project_id, r)) is None or role < Role.REVIEWER
            ]
            if weak:
                raise InvalidArgument.field(
                    "review.reviewers",
                    f"{', '.join(weak)} must be active members of projects/{project_id} "
                    "with at least the reviewer role",
                )
            review = Review(
                id=uuid.uuid4().hex,
                project_id=project_id,
                design_id=design_id,
                revision_id=revision_id,
                branch=branch,
                requester_id=principal.organization_id,
                requester_user=principal.user_name,
                reviewers=tuple(reviewers),
                policy=policy,
                deadline=deadline,
                remind_before=remind_before,
                on_new_revision=on_new_revision,
                state=ReviewState.OPEN,
                escalated=False,
                round=1,
                message=message,
                create_time=now,
                close_time=None,
            )
            repo.add(review)
            _enqueue(
                conn,
                review,
                "design.review.requested",
                review_events_pb2.ReviewRequested(review=review_proto(review)),
                review.participants,
                principal.organization_id,
            )
            audit.record(conn, principal, "review.create", review.name)
            idempotency.remember(conn, principal, "CreateReview", request_id, review.name)
        return review

    def get_review(self, principal: Principal, name: str) -> Review:
        with self._engine.begin() as conn:
            review = self._review(ReviewRepository(conn), principal, name, Role.VIEWER)
            audit.record(conn, principal, "review.read", review.name)
        return review

    def list_reviews(
        self, principal: Principal, project_id: str, design_id: str, page: Page
    ) -> Listed[Review]:
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            repo = ReviewRepository(conn)
            if not repo.design_exists(project_id, design_id):
                raise NotFound(f"projects/{project_id}/designs/{design_id} not found")
            rows = repo.list_for_design(design_id, page.after_seq, page.limit + 1)
            rows = [(seq, r) for seq, r in rows if r.project_id == project_id]
            audit.record(
                conn, principal, "review.list", f"projects/{project_id}/designs/{design_id}"
            )
        return page_of(page, rows)

    def decide(
        self, principal: Principal, name: str, outcome: Outcome, comment: str, request_id: str
    ) -> Review:
        if len(comment) > MAX_COMMENT:
            raise InvalidArgument.field("comment", f"at most {MAX_COMMENT} characters")
        with self._engine.begin() as conn:
            repo = ReviewRepository(conn)
            review = self._review(repo, principal, name, Role.REVIEWER)
            if idempotency.replayed(conn, principal, "DecideReview", request_id) is not None:
                return review
            if principal.organization_id not in review.reviewers:
                raise PermissionDenied(
                    f"{principal.organization_name} is not a reviewer of {review.name}"
                )
            self._require_open(review)
            if repo.submitted_decision(review.id, review.round, principal.organization_id):
                raise FailedPrecondition(
                    f"{principal.organization_name} already decided round {review.round} "
                    f"of {review.name}",
                    [PreconditionViolation("DECIDED", review.name, "one decision per round")],
                )
            decision = Decision(
                organization_id=principal.organization_id,
                user=principal.user_name,
                outcome=outcome,
                comment=comment,
                revision_id=review.revision_id,
                round=review.round,
                decide_time=self._clock(),
            )
            repo.add_decision(review.id, decision, accepted=False)
            _enqueue(
                conn,
                review,
                "design.review.decision_submitted",
                review_events_pb2.ReviewDecisionSubmitted(
                    review=review.name, decision=decision_proto(review, decision)
                ),
                [review.requester_id],
                principal.organization_id,
            )
            audit.record(conn, principal, "review.decide", review.name, {"outcome": outcome.value})
            idempotency.remember(conn, principal, "DecideReview", request_id, review.name)
        return review

    def extend(
        self, principal: Principal, name: str, deadline: dt.datetime, request_id: str
    ) -> Review:
        with self._engine.begin() as conn:
            repo = ReviewRepository(conn)
            review = self._requested_by_caller(repo, principal, name)
            if idempotency.replayed(conn, principal, "ExtendReview", request_id) is not None:
                return review
            self._require_open(review)
            if not review.deadline < deadline <= review.create_time + dt.timedelta(days=365):
                raise InvalidArgument.field(
                    "deadline", "must be later than the current deadline, within 365 days"
                )
            repo.update(review.id, deadline=deadline, escalated=False)
            review = replace(review, deadline=deadline, escalated=False)
            ts = review_proto(review).deadline
            _enqueue(
                conn,
                review,
                "design.review.extended",
                review_events_pb2.ReviewExtended(review=review.name, deadline=ts),
                review.participants,
                principal.organization_id,
            )
            audit.record(conn, principal, "review.extend", review.name)
            idempotency.remember(conn, principal, "ExtendReview", request_id, review.name)
        return review

    def cancel(self, principal: Principal, name: str, request_id: str) -> Review:
        with self._engine.begin() as conn:
            repo = ReviewRepository(conn)
            review = self._requested_by_caller(repo, principal, name)
            if idempotency.replayed(conn, principal, "CancelReview", request_id) is not None:
                return review
            self._require_open(review)
            _enqueue(
                conn,
                review,
                "design.review.cancel_requested",
                review_events_pb2.ReviewCancelRequested(review=review.name),
                [review.requester_id],
                principal.organization_id,
            )
            audit.record(conn, principal, "review.cancel", review.name)
            idempotency.remember(conn, principal, "CancelReview", request_id, review.name)
        return review

    def record_progress(
        self, principal: Principal, name: str, progress: Progress, request_id: str
    ) -> Review:
        """The workflow's report; idempotent by request_id (activities retry)."""
        authz.require_service_account(principal, "RecordReviewProgress")
        if not request_id:
            raise InvalidArgument.field("request_id", "is required for progress reports")
        with self._engine.begin() as conn:
            repo = ReviewRepository(conn)
            review = self._review_any(repo, name)
            if idempotency.replayed(conn, principal, "RecordReviewProgress", request_id):
                return review
            review = self._apply(conn, repo, review, progress)
            audit.record(
                conn, principal, "review.progress", review.name, {"kind": progress.kind.value}
            )
            idempotency.remember(conn, principal, "RecordReviewProgress", request_id, review.name)
        return review

    def _apply(
        self, conn: Connection, repo: ReviewRepository, review: Review, progress: Progress
    ) -> Review:
        kind = progress.kind
        if kind is ProgressKind.DECIDED:
            if progress.decision is None:
                raise InvalidArgument.field("decision", "is required for DECIDED")
            repo.accept_decision(review.id, progress.decision)
            return self._reload(repo, review)
        if kind is ProgressKind.REMINDED:
            reminded = [o for o in progress.organizations if o in review.reviewers]
            _enqueue(
                conn,
                review,
                "design.review.reminder",
                review_events_pb2.ReviewProgressed(
                    review=review_proto(review),
                    organizations=[organization_name(o) for o in reminded],
                ),
                reminded,
                review.requester_id,
            )
            return review
        if kind is ProgressKind.ESCALATED:
            repo.update(review.id, escalated=True)
            review = self._reload(repo, review)
            _enqueue(
                conn,
                review,
                "design.review.escalated",
                review_events_pb2.ReviewProgressed(review=review_proto(review)),
                [review.requester_id],
                review.requester_id,
            )
            return review
        if kind is ProgressKind.RESTARTED:
            if not progress.revision_id or progress.round <= review.round:
                raise InvalidArgument.field("revision", "a restart names a revision and round")
            repo.update(review.id, revision_id=progress.revision_id, round=progress.round)
            event_type = "design.review.restarted"
        else:
            if progress.state is None or progress.state is ReviewState.OPEN:
                raise InvalidArgument.field("state", "a closed review ends in a final state")
            repo.update(review.id, state=progress.state.value, close_time=self._clock())
            event_type = "design.review.closed"
        review = self._reload(repo, review)
        _enqueue(
            conn,
            review,
            event_type,
            review_events_pb2.ReviewProgressed(review=review_proto(review)),
            review.participants,
            review.requester_id,
        )
        return review

    @staticmethod
    def supersede_open_reviews(
        conn: Connection, project_id: str, design_id: str, branch: str, revision_id: str
    ) -> int:
        """Tells the workflows of open reviews on `branch` that `revision_id` superseded their
        revision (called in the transaction that marks it SUCCEEDED). Returns how many."""
        repo = ReviewRepository(conn)
        revision = f"projects/{project_id}/designs/{design_id}/revisions/{revision_id}"
        count = 0
        for review in repo.open_on_branch(design_id, branch):
            if review.revision_id == revision_id:
                continue
            _enqueue(
                conn,
                review,
                "design.review.superseded",
                review_events_pb2.ReviewSuperseded(review=review.name, revision=revision),
                [review.requester_id],
                review.requester_id,
            )
            count += 1
        return count

    def _review(
        self, repo: ReviewRepository, principal: Principal, name: str, minimum: Role
    ) -> Review:
        _, project_id, _, design_id, _, review_id = name.split("/")
        authz.require_project_role(repo.conn, principal, project_id, minimum)
        review = repo.get(project_id, design_id, review_id)
        if review is None:
            raise NotFound(f"{name} not found")
        return review

    def _review_any(self, repo: ReviewRepository, name: str) -> Review:
        _, project_id, _, design_id, _, review_id = name.split("/")
        review = repo.get(project_id, design_id, review_id)
        if review is None:
            raise NotFound(f"{name} not found")
        return review

    def _requested_by_caller(
        self, repo: ReviewRepository, principal: Principal, name: str
    ) -> Review:
        review = self._review(repo, principal, name, Role.EDITOR)
        if review.requester_id != principal.organization_id:
            raise PermissionDenied(
                f"only organizations/{review.requester_id}, which requested {review.name}, "
                "can change it"
            )
        return review

    @staticmethod
    def _reload(repo: ReviewRepository, review: Review) -> Review:
        fresh = repo.get(review.project_id, review.design_id, review.id)
        assert fresh is not None
        return fresh

    @staticmethod
    def _require_open(review: Review) -> None:
        if review.state is not ReviewState.OPEN:
            raise FailedPrecondition(
                f"{review.name} is {review.state.value}; it no longer takes changes",
                [PreconditionViolation("STATE", review.name, f"review is {review.state.value}")],
            )
