"""Design reviews as plain Python: quorum policies, decisions and when a review is decided.

The review workflow and the review service share these rules: the service checks a request
with them, the workflow decides the outcome with them (they are deterministic, as workflow code
must be)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from services.shared.errors import FieldViolation, InvalidArgument


class Outcome(Enum):
    APPROVE = "APPROVE"
    REQUEST_CHANGES = "REQUEST_CHANGES"
    REJECT = "REJECT"


class ReviewState(Enum):
    OPEN = "OPEN"
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class PolicyKind(Enum):
    ALL = "ALL"
    K_OF_N = "K_OF_N"


class OnNewRevision(Enum):
    RESTART = "RESTART"
    CANCEL = "CANCEL"


MAX_REVIEWERS = 50
MAX_DEADLINE = dt.timedelta(days=365)
MAX_COMMENT = 10_000


@dataclass(frozen=True)
class QuorumPolicy:
    kind: PolicyKind
    k: int
    required: tuple[str, ...]  # organization ids that must approve

    def approvals_needed(self, reviewers: Sequence[str]) -> int:
        return len(reviewers) if self.kind is PolicyKind.ALL else self.k


@dataclass(frozen=True)
class Decision:
    organization_id: str
    user: str  # organizations/{o}/users/{u}
    outcome: Outcome
    comment: str
    revision_id: str
    round: int
    decide_time: dt.datetime


@dataclass(frozen=True)
class Review:
    id: str
    project_id: str
    design_id: str
    revision_id: str
    branch: str
    requester_id: str
    requester_user: str
    reviewers: tuple[str, ...]
    policy: QuorumPolicy
    deadline: dt.datetime
    remind_before: dt.timedelta
    on_new_revision: OnNewRevision
    state: ReviewState
    escalated: bool
    round: int
    message: str
    create_time: dt.datetime
    close_time: dt.datetime | None
    decisions: tuple[Decision, ...] = ()  # accepted by the workflow, all rounds

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}/reviews/{self.id}"

    @property
    def revision_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}/revisions/{self.revision_id}"

    @property
    def participants(self) -> list[str]:
        """Organization ids told about the review's progress: requester first, then reviewers."""
        return [self.requester_id, *(r for r in self.reviewers if r != self.requester_id)]


def check_request(
    reviewers: Sequence[str],
    policy: QuorumPolicy,
    deadline: dt.datetime,
    remind_before: dt.timedelta,
    now: dt.datetime,
) -> None:
    """Reports every problem of a review request at once (AIP-193 BadRequest)."""
    problems: list[FieldViolation] = []
    if not reviewers:
        problems.append(FieldViolation("review.reviewers", "name at least one organization"))
    if len(reviewers) > MAX_REVIEWERS:
        problems.append(FieldViolation("review.reviewers", f"at most {MAX_REVIEWERS}"))
    if len(set(reviewers)) != len(reviewers):
        problems.append(FieldViolation("review.reviewers", "names an organization twice"))
    if policy.kind is PolicyKind.K_OF_N and not 1 <= policy.k <= len(reviewers):
        problems.append(
            FieldViolation("review.policy.k", f"must be between 1 and {len(reviewers)} reviewers")
        )
    stray = [r for r in policy.required if r not in reviewers]
    if stray:
        problems.append(
            FieldViolation(
                "review.policy.required_organizations",
                f"{', '.join(stray)} must also be reviewers",
            )
        )
    if not now < deadline <= now + MAX_DEADLINE:
        problems.append(
            FieldViolation("review.deadline", "must be in the future, at most 365 days ahead")
        )
    if remind_before < dt.timedelta(0):
        problems.append(FieldViolation("review.remind_before", "must not be negative"))
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), problems)


def verdict(
    policy: QuorumPolicy, reviewers: Sequence[str], latest: Mapping[str, Outcome]
) -> ReviewState | None:
    """The review's outcome from each organization's decision this round, or None while open.

    Approved once the policy's approvals (including every required organization) are in.
    Decided against once that can no longer happen: a required organization did not approve,
    or too few organizations are left undecided. Then a rejection from anyone makes it
    REJECTED, otherwise CHANGES_REQUESTED. Each organization decides once per round."""
    approvals = {org for org, outcome in latest.items() if outcome is Outcome.APPROVE}
    needed = policy.approvals_needed(reviewers)
    if len(approvals) >= needed and all(org in approvals for org in policy.required):
        return ReviewState.APPROVED
    undecided = [org for org in reviewers if org not in latest]
    required_lost = any(org in latest and org not in approvals for org in policy.required)
    if required_lost or len(approvals) + len(undecided) < needed:
        if any(outcome is Outcome.REJECT for outcome in latest.values()):
            return ReviewState.REJECTED
        return ReviewState.CHANGES_REQUESTED
    return None
