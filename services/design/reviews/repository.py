"""SQL access to reviews, their decisions, and the project facts a review request is checked
against (memberships, revisions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.design.adapters.revision_tables import revisions
from services.design.adapters.tables import designs
from services.design.reviews.domain import (
    Decision,
    OnNewRevision,
    Outcome,
    PolicyKind,
    QuorumPolicy,
    Review,
    ReviewState,
)
from services.design.reviews.tables import review_decisions, reviews
from services.shared.db import memberships
from services.shared.identity import Role

ACTIVE = "ACTIVE"


class ReviewRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, review: Review) -> None:
        self.conn.execute(
            insert(reviews).values(
                id=review.id,
                project_id=review.project_id,
                design_id=review.design_id,
                revision_id=review.revision_id,
                branch=review.branch,
                requester_id=review.requester_id,
                requester_user=review.requester_user,
                reviewers=list(review.reviewers),
                policy_kind=review.policy.kind.value,
                policy_k=review.policy.k,
                policy_required=list(review.policy.required),
                deadline=review.deadline,
                remind_before_seconds=review.remind_before.total_seconds(),
                on_new_revision=review.on_new_revision.value,
                state=review.state.value,
                escalated=review.escalated,
                round=review.round,
                message=review.message,
                create_time=review.create_time,
                close_time=review.close_time,
            )
        )

    def get(self, project_id: str, design_id: str, review_id: str) -> Review | None:
        row = self.conn.execute(
            select(reviews).where(
                reviews.c.id == review_id,
                reviews.c.project_id == project_id,
                reviews.c.design_id == design_id,
            )
        ).first()
        return self._review(row) if row is not None else None

    def list_for_design(
        self, design_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Review]]:
        """Newest first; `after_seq` is the seq of the last review of the previous page."""
        query = select(reviews).where(reviews.c.design_id == design_id)
        if after_seq:
            query = query.where(reviews.c.seq < after_seq)
        rows = self.conn.execute(query.order_by(reviews.c.seq.desc()).limit(limit)).all()
        return [(row.seq, self._review(row)) for row in rows]

    def open_on_branch(self, design_id: str, branch: str) -> list[Review]:
        rows = self.conn.execute(
            select(reviews).where(
                reviews.c.design_id == design_id,
                reviews.c.branch == branch,
                reviews.c.state == ReviewState.OPEN.value,
            )
        ).all()
        return [self._review(row) for row in rows]

    def update(self, review_id: str, **values: Any) -> None:
        self.conn.execute(update(reviews).where(reviews.c.id == review_id).values(**values))

    def submitted_decision(self, review_id: str, round_: int, organization_id: str) -> bool:
        row = self.conn.execute(
            select(review_decisions.c.seq).where(
                review_decisions.c.review_id == review_id,
                review_decisions.c.round == round_,
                review_decisions.c.organization_id == organization_id,
            )
        ).first()
        return row is not None

    def add_decision(self, review_id: str, decision: Decision, accepted: bool) -> None:
        self.conn.execute(
            insert(review_decisions).values(
                review_id=review_id,
                round=decision.round,
                organization_id=decision.organization_id,
                user=decision.user,
                outcome=decision.outcome.value,
                comment=decision.comment,
                revision_id=decision.revision_id,
                decide_time=decision.decide_time,
                accepted=accepted,
            )
        )

    def accept_decision(self, review_id: str, decision: Decision) -> None:
        """Marks a submitted decision counted; inserts it if it never went through this service."""
        if self.submitted_decision(review_id, decision.round, decision.organization_id):
            self.conn.execute(
                update(review_decisions)
                .where(
                    review_decisions.c.review_id == review_id,
                    review_decisions.c.round == decision.round,
                    review_decisions.c.organization_id == decision.organization_id,
                )
                .values(accepted=True)
            )
        else:
            self.add_decision(review_id, decision, accepted=True)

    def organization_role(self, project_id: str, organization_id: str) -> Role | None:
        row = self.conn.execute(
            select(memberships.c.role).where(
                memberships.c.project_id == project_id,
                memberships.c.organization_id == organization_id,
                memberships.c.state == ACTIVE,
            )
        ).first()
        return Role(row.role) if row is not None else None

    def design_exists(self, project_id: str, design_id: str) -> bool:
        row = self.conn.execute(
            select(designs.c.id).where(
                designs.c.id == design_id, designs.c.project_id == project_id
            )
        ).first()
        return row is not None

    def revision(self, design_id: str, revision_id: str) -> tuple[str, str] | None:
        """(state, branch) of a revision of this design."""
        row = self.conn.execute(
            select(revisions.c.state, revisions.c.branch).where(
                revisions.c.id == revision_id, revisions.c.design_id == design_id
            )
        ).first()
        return (row.state, row.branch) if row is not None else None

    def _decisions(self, review_id: str) -> tuple[Decision, ...]:
        rows = self.conn.execute(
            select(review_decisions)
            .where(review_decisions.c.review_id == review_id, review_decisions.c.accepted)
            .order_by(review_decisions.c.round, review_decisions.c.seq)
        ).all()
        return tuple(
            Decision(
                organization_id=row.organization_id,
                user=row.user,
                outcome=Outcome(row.outcome),
                comment=row.comment,
                revision_id=row.revision_id,
                round=row.round,
                decide_time=row.decide_time,
            )
            for row in rows
        )

    def _review(self, row: Any) -> Review:
        return Review(
            id=row.id,
            project_id=row.project_id,
            design_id=row.design_id,
            revision_id=row.revision_id,
            branch=row.branch,
            requester_id=row.requester_id,
            requester_user=row.requester_user,
            reviewers=tuple(row.reviewers),
            policy=QuorumPolicy(
                PolicyKind(row.policy_kind), row.policy_k, tuple(row.policy_required)
            ),
            deadline=row.deadline,
            remind_before=dt.timedelta(seconds=row.remind_before_seconds),
            on_new_revision=OnNewRevision(row.on_new_revision),
            state=ReviewState(row.state),
            escalated=row.escalated,
            round=row.round,
            message=row.message,
            create_time=row.create_time,
            close_time=row.close_time,
            decisions=self._decisions(row.id),
        )
