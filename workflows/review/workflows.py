"""DesignReviewWorkflow: organizations approve a revision under a quorum policy, with an SLA.

Decisions arrive as updates (the bridge turns `design.review.decision_submitted` events into
them); their validator refuses a decision from an organization that is not a reviewer, a second
one from the same organization in a round, one about a superseded revision, and any after the
review ended, before anything enters the history. Reminders go out `remind_before` the deadline to
the organizations that have not decided; at the deadline the requester is told (escalation) and
the review stays open until it is decided, extended or cancelled. A newer revision on the branch
restarts the review on it (decisions reset, earlier ones kept by the service) or cancels it.
Approval releases the revision. Every effect is an activity with a request id derived from the
workflow, so retries after a crash change nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from services.design.reviews.domain import (
        Outcome,
        PolicyKind,
        QuorumPolicy,
        ReviewState,
        verdict,
    )
    from workflows.review.activities import (
        DecisionInput,
        ProgressReport,
        ReleaseRequest,
        ReviewActivities,
    )

OPEN = ReviewState.OPEN.value
TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@dataclass
class ReviewInput:
    # projects/{project}/designs/{design}/reviews/{review}
    review: str
    # projects/{project}/designs/{design}/revisions/{revision}
    revision: str
    requester: str  # organization id
    reviewers: list[str]  # organization ids
    policy_kind: str  # ALL or K_OF_N
    k: int
    required: list[str]
    deadline_unix: float
    remind_before_seconds: float
    on_new_revision: str  # RESTART or CANCEL


@dataclass
class ReviewStatus:
    review: str
    state: str  # OPEN, APPROVED, CHANGES_REQUESTED, REJECTED or CANCELLED
    revision: str
    round: int
    decisions: dict[str, str] = field(default_factory=dict)  # this round: organization -> outcome
    escalated: bool = False
    deadline_unix: float = 0.0


def workflow_id(review_name: str) -> str:
    """One workflow per review: a redelivered request starts nothing new."""
    return f"review-{review_name.rsplit('/', 1)[-1]}"


@workflow.defn
class DesignReviewWorkflow:
    @workflow.init
    def __init__(self, review: ReviewInput) -> None:
        self._input = review
        self._id = review.review.rsplit("/", 1)[-1]
        self._policy = QuorumPolicy(
            PolicyKind(review.policy_kind), review.k, tuple(review.required)
        )
        self._state = OPEN
        self._revision = review.revision
        self._round = 1
        self._deadline = review.deadline_unix
        self._decisions: dict[str, str] = {}
        self._unreported: list[DecisionInput] = []
        self._reminded = False
        self._reminders = 0
        self._escalated = False
        self._escalations = 0
        self._cancel = False
        self._newer: str | None = None
        self._changed = False

    @workflow.run
    async def run(self, review: ReviewInput) -> ReviewStatus:
        while self._state == OPEN:
            await self._report_decisions()
            if self._cancel:
                self._state = ReviewState.CANCELLED.value
                break
            if self._newer is not None:
                if self._input.on_new_revision != "RESTART":
                    self._state = ReviewState.CANCELLED.value
                    break
                await self._restart(self._newer)
                continue
            outcome = verdict(
                self._policy,
                self._input.reviewers,
                {org: Outcome(value) for org, value in self._decisions.items()},
            )
            if outcome is not None:
                self._state = outcome.value
                break
            await self._keep_sla()
            self._changed = False
            wake = self._next_deadline()
            try:
                await workflow.wait_condition(
                    lambda: self._changed,
                    timeout=None if wake is None else timedelta(seconds=wake),
                )
            except TimeoutError:
                pass
        if self._state == ReviewState.APPROVED.value:
            await workflow.execute_activity_method(
                ReviewActivities.release_revision,
                ReleaseRequest(self._revision, f"{self._id}:release"),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
        await self._report("CLOSED", f"{self._id}:closed", state=self._state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _report_decisions(self) -> None:
        while self._unreported:
            decision = self._unreported.pop(0)
            await self._report(
                "DECIDED",
                f"{self._id}:decided:{self._round}:{decision.organization}",
                decision=decision,
            )

    async def _restart(self, revision: str) -> None:
        self._newer = None
        self._round += 1
        self._revision = revision
        self._decisions = {}
        self._unreported = []
        self._reminded = False
        await self._report("RESTARTED", f"{self._id}:restarted:{self._round}", revision=revision)

    async def _keep_sla(self) -> None:
        now = workflow.now().timestamp()
        remind_at = self._deadline - self._input.remind_before_seconds
        if not self._reminded and self._input.remind_before_seconds > 0 and remind_at <= now:
            self._reminded = True
            undecided = [o for o in self._input.reviewers if o not in self._decisions]
            if undecided and now < self._deadline:
                self._reminders += 1
                await self._report(
                    "REMINDED",
                    f"{self._id}:reminded:{self._round}:{self._reminders}",
                    organizations=undecided,
                )
        if not self._escalated and now >= self._deadline:
            self._escalated = True
            self._escalations += 1
            await self._report("ESCALATED", f"{self._id}:escalated:{self._escalations}")

    def _next_deadline(self) -> float | None:
        """Seconds until the next reminder or escalation is due, None when none is pending."""
        now = workflow.now().timestamp()
        due: list[float] = []
        if not self._reminded and self._input.remind_before_seconds > 0:
            due.append(self._deadline - self._input.remind_before_seconds)
        if not self._escalated:
            due.append(self._deadline)
        pending = [t - now for t in due if t > now]
        return min(pending) if pending else None

    async def _report(
        self,
        kind: str,
        request_id: str,
        decision: DecisionInput | None = None,
        organizations: list[str] | None = None,
        revision: str = "",
        state: str = "",
    ) -> None:
        await workflow.execute_activity_method(
            ReviewActivities.record_review_progress,
            ProgressReport(
                review=self._input.review,
                kind=kind,
                request_id=request_id,
                decision=decision,
                round=self._round,
                organizations=organizations or [],
                revision=revision,
                state=state,
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )

    @workflow.update
    async def decide(self, decision: DecisionInput) -> ReviewStatus:
        """Counts one organization's decision; returns the status with it."""
        self._decisions[decision.organization] = decision.outcome
        self._unreported.append(decision)
        self._changed = True
        return self.status()

    @decide.validator
    def _validate_decision(self, decision: DecisionInput) -> None:
        review = self._input.review
        if self._state != OPEN:
            raise ValueError(f"{review} has ended ({self._state}); decisions are closed")
        if decision.organization not in self._input.reviewers:
            raise ValueError(f"organizations/{decision.organization} is not a reviewer of {review}")
        if decision.outcome not in {o.value for o in Outcome}:
            raise ValueError(f"{decision.outcome!r} is not a decision")
        if decision.revision != self._revision:
            raise ValueError(
                f"the decision is about {decision.revision}, but round {self._round} of "
                f"{review} reviews {self._revision}"
            )
        if decision.organization in self._decisions:
            raise ValueError(
                f"organizations/{decision.organization} already decided round {self._round}"
            )

    @workflow.signal
    def extend(self, deadline_unix: float) -> None:
        """The requester moved the deadline later: reminders and escalation are due again."""
        if deadline_unix > self._deadline:
            self._deadline = deadline_unix
            self._reminded = False
            self._escalated = False
            self._changed = True

    @workflow.signal
    def cancel(self) -> None:
        self._cancel = True
        self._changed = True

    @workflow.signal
    def new_revision(self, revision: str) -> None:
        """A newer revision was validated on the reviewed branch."""
        if revision != self._revision:
            self._newer = revision
            self._changed = True

    @workflow.query
    def status(self) -> ReviewStatus:
        return ReviewStatus(
            review=self._input.review,
            state=self._state,
            revision=self._revision,
            round=self._round,
            decisions=dict(self._decisions),
            escalated=self._escalated,
            deadline_unix=self._deadline,
        )
