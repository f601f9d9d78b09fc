"""ProcurementWorkflow: one RFQ from its opening to its award.

The bridge starts it on `procurement.rfq.published` (one per opened RFQ, on the RFQ's key); the
disruption workflow starts it as a child for the RFQs it opens. It collects quotes until the quote
deadline (a durable timer) or until every invited supplier has a current quote, learning the count
from the buyer-side `procurement.quote.received` events the bridge turns into signals (a revised
RFQ invalidates its quotes and the count drops to 0). Then it closes the RFQ and, when the buyer
chose AUTOMATIC awards, ranks the quotes and awards the best ones up to the quantity (with
AUTOMATIC_AFTER_APPROVAL it proposes that award, which the buyer approves with ApproveAward);
otherwise (or when the quotes cannot cover the quantity) it waits for the buyer's award. A
cancelled RFQ ends it without closing or awarding. Every effect is an activity with a request
id derived from the workflow, so retries after a crash change nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.supply.procurement.domain import automatic_allocations
    from workflows.procurement.activities import (
        AwardRequest,
        AwardShare,
        ProcurementActivities,
        RfqSnapshot,
        RfqStep,
    )

P = TypeVar("P")
R = TypeVar("R")
TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@dataclass
class ProcurementInput:
    rfq: str  # organizations/{buyer}/rfqs/{rfq}


@dataclass
class ProcurementStatus:
    rfq: str
    # COLLECTING (open, quotes arriving), AWAITING_AWARD (closed, the buyer awards),
    # AWAITING_APPROVAL (closed, the buyer approves the proposed award), AWARDED or CANCELLED
    state: str
    invited: int = 0
    answered: int = 0  # current quotes
    quote_deadline_unix: float = 0.0
    award_policy: str = ""  # BUYER, AUTOMATIC or AUTOMATIC_AFTER_APPROVAL
    closed_early: bool = False  # every invited supplier answered before the deadline
    awarded: list[str] = field(default_factory=list)  # supplier organization ids


def workflow_id(rfq_name: str) -> str:
    """One workflow per RFQ: a redelivered `published` event starts nothing new."""
    return f"rfq-{rfq_name.rsplit('/', 1)[-1]}"


@workflow.defn
class ProcurementWorkflow:
    @workflow.init
    def __init__(self, input: ProcurementInput) -> None:
        self._rfq = input.rfq
        self._id = workflow_id(input.rfq)
        self._status = ProcurementStatus(rfq=input.rfq, state="COLLECTING")
        self._answered: int | None = None  # from signals; None until the first one
        self._cancelled = False
        self._awarded: list[str] | None = None
        self._proposed = False

    @workflow.run
    async def run(self, input: ProcurementInput) -> ProcurementStatus:
        rfq = await self._call(ProcurementActivities.get_rfq, self._rfq)
        status = self._status
        status.invited = rfq.invited
        status.quote_deadline_unix = rfq.quote_deadline_unix
        status.award_policy = rfq.award_policy
        if self._answered is None:
            self._answered = rfq.quote_count
        if rfq.state == "DRAFT":
            raise ApplicationError(
                f"{self._rfq} is a draft: open it before starting its workflow", non_retryable=True
            )
        if rfq.state == "OPEN":
            rfq = await self._collect_then_close()
        if rfq.state == "CLOSED" and rfq.award_policy != "BUYER" and not self._cancelled:
            rfq = await self._award_automatically(rfq)
        if rfq.state == "CLOSED":
            status.state = "AWAITING_APPROVAL" if self._proposed else "AWAITING_AWARD"
            await workflow.wait_condition(lambda: self._cancelled or self._awarded is not None)
            status.state = "CANCELLED" if self._awarded is None else "AWARDED"
            status.awarded = list(self._awarded or [])
        else:
            status.state = rfq.state
            status.awarded = rfq.awarded
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _collect_then_close(self) -> RfqSnapshot:
        status = self._status
        left = status.quote_deadline_unix - workflow.now().timestamp()
        if left > 0:
            try:
                await workflow.wait_condition(
                    lambda: self._cancelled or self._all_answered(),
                    timeout=timedelta(seconds=left),
                )
                status.closed_early = not self._cancelled
            except TimeoutError:
                pass
        if self._cancelled:
            return await self._call(ProcurementActivities.get_rfq, self._rfq)
        return await self._call(ProcurementActivities.close_rfq, RfqStep(self._rfq, self._id))

    def _all_answered(self) -> bool:
        return self._answered is not None and self._answered >= self._status.invited

    async def _award_automatically(self, rfq: RfqSnapshot) -> RfqSnapshot:
        """The best-ranked quotes up to the quantity, awarded or proposed to the buyer; the
        buyer decides when they fall short."""
        ranked = await self._call(ProcurementActivities.rank_quotes, self._rfq)
        shares = automatic_allocations([(q.supplier, q.capacity) for q in ranked], rfq.quantity)
        if shares is None or self._cancelled:
            return rfq
        award = [AwardShare(a.supplier_id, a.quantity) for a in shares]
        if rfq.award_policy == "AUTOMATIC_AFTER_APPROVAL":
            proposed = await self._call(
                ProcurementActivities.propose_award,
                AwardRequest(self._rfq, award, f"{self._id}:propose"),
            )
            self._proposed = proposed.state == "CLOSED"
            return proposed
        return await self._call(
            ProcurementActivities.award_rfq, AwardRequest(self._rfq, award, f"{self._id}:award")
        )

    async def _call(self, activity: Callable[[ProcurementActivities, P], R], arg: P) -> R:
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )

    @workflow.signal
    def quotes_changed(self, quote_count: int) -> None:
        """The RFQ's current quote count after a quote arrived, changed or was invalidated."""
        self._answered = quote_count
        self._status.answered = quote_count

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.signal
    def awarded(self, suppliers: list[str]) -> None:
        """The buyer awarded the RFQ (supplier organization ids)."""
        self._awarded = suppliers

    @workflow.query
    def status(self) -> ProcurementStatus:
        s = self._status
        return ProcurementStatus(
            rfq=s.rfq,
            state=s.state,
            invited=s.invited,
            answered=self._answered or 0,
            quote_deadline_unix=s.quote_deadline_unix,
            award_policy=s.award_policy,
            closed_early=s.closed_early,
            awarded=list(s.awarded),
        )
