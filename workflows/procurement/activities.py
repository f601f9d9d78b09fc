"""Activities of the procurement workflow: calls to the procurement service (supply) as the
platform's service account. Mutating calls carry a request id the workflow derived, so a retry
after a crash has no second effect (one close, one award, one purchase order per supplier)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from temporalio import activity

from cofab.procurement.v1 import procurement_pb2 as pb
from cofab.procurement.v1 import procurement_pb2_grpc
from workflows.grpc_errors import permanent_or_retry

_STATES = {
    pb.Rfq.STATE_DRAFT: "DRAFT",
    pb.Rfq.STATE_OPEN: "OPEN",
    pb.Rfq.STATE_CLOSED: "CLOSED",
    pb.Rfq.STATE_AWARDED: "AWARDED",
    pb.Rfq.STATE_CANCELLED: "CANCELLED",
}
_POLICIES = {
    pb.Rfq.AWARD_POLICY_AUTOMATIC: "AUTOMATIC",
    pb.Rfq.AWARD_POLICY_AUTOMATIC_AFTER_APPROVAL: "AUTOMATIC_AFTER_APPROVAL",
}
TIMEOUT = 20.0


@dataclass
class RfqSnapshot:
    """What the workflow needs to know of its RFQ."""

    rfq: str
    state: str  # DRAFT, OPEN, CLOSED, AWARDED or CANCELLED
    invited: int
    quote_count: int
    quote_deadline_unix: float
    award_policy: str  # BUYER, AUTOMATIC or AUTOMATIC_AFTER_APPROVAL
    quantity: int
    awarded: list[str] = field(default_factory=list)  # supplier organization ids


@dataclass
class RfqStep:
    rfq: str
    request_id: str


@dataclass
class RankedQuote:
    supplier: str  # organization id
    quote: str
    rank: int
    total: float
    capacity: int


@dataclass
class AwardShare:
    supplier: str  # organization id
    quantity: int


@dataclass
class AwardRequest:
    rfq: str
    shares: list[AwardShare]
    request_id: str


def snapshot(rfq: pb.Rfq) -> RfqSnapshot:
    return RfqSnapshot(
        rfq=rfq.name,
        state=_STATES.get(rfq.state, "UNSPECIFIED"),
        invited=len(rfq.invited_suppliers),
        quote_count=rfq.quote_count,
        quote_deadline_unix=rfq.quote_deadline.ToNanoseconds() / 1e9,
        award_policy=_POLICIES.get(rfq.award_policy, "BUYER"),
        quantity=rfq.quantity,
        awarded=[a.supplier.removeprefix("organizations/") for a in rfq.allocations],
    )


class ProcurementActivities:
    def __init__(self, procurement: procurement_pb2_grpc.ProcurementServiceStub) -> None:
        self._procurement = procurement

    @activity.defn
    def get_rfq(self, rfq: str) -> RfqSnapshot:
        try:
            found = self._procurement.GetRfq(pb.GetRfqRequest(name=rfq), timeout=TIMEOUT)
        except grpc.RpcError as error:
            raise permanent_or_retry(f"GetRfq {rfq}", error) from None
        return snapshot(found)

    @activity.defn
    def close_rfq(self, step: RfqStep) -> RfqSnapshot:
        """Closes the open RFQ; when it is no longer open (the buyer closed or cancelled it
        meanwhile), returns it as it is so the workflow goes on from there."""
        try:
            closed = self._procurement.CloseRfq(
                pb.CloseRfqRequest(name=step.rfq, request_id=step.request_id), timeout=TIMEOUT
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return self.get_rfq(step.rfq)
            raise permanent_or_retry(f"CloseRfq {step.rfq}", error) from None
        return snapshot(closed)

    @activity.defn
    def rank_quotes(self, rfq: str) -> list[RankedQuote]:
        """The current quotes scored with the RFQ's weights, best first, with each capacity."""
        try:
            scores = self._procurement.EvaluateRfq(
                pb.EvaluateRfqRequest(name=rfq), timeout=TIMEOUT
            ).scores
            capacities: dict[str, int] = {}
            token = ""
            while True:
                page = self._procurement.ListQuotes(
                    pb.ListQuotesRequest(parent=rfq, page_size=1000, page_token=token),
                    timeout=TIMEOUT,
                )
                capacities.update((q.name, q.capacity) for q in page.quotes)
                token = page.next_page_token
                if not token:
                    break
        except grpc.RpcError as error:
            raise permanent_or_retry(f"EvaluateRfq {rfq}", error) from None
        return [
            RankedQuote(
                supplier=s.supplier.removeprefix("organizations/"),
                quote=s.quote,
                rank=s.rank,
                total=s.total,
                capacity=capacities.get(s.quote, 0),
            )
            for s in scores
        ]

    @activity.defn
    def propose_award(self, request: AwardRequest) -> RfqSnapshot:
        """Records the proposed award for the buyer to approve (the buyer is told once: the
        request id)."""
        return self._while_closed(
            "ProposeAward",
            request.rfq,
            lambda: self._procurement.ProposeAward(
                pb.ProposeAwardRequest(
                    name=request.rfq,
                    allocations=_allocations(request.shares),
                    request_id=request.request_id,
                ),
                timeout=TIMEOUT,
            ),
        )

    @activity.defn
    def award_rfq(self, request: AwardRequest) -> RfqSnapshot:
        """Awards the closed RFQ (one purchase order event per supplier, once: the request
        id)."""
        return self._while_closed(
            "AwardRfq",
            request.rfq,
            lambda: self._procurement.AwardRfq(
                pb.AwardRfqRequest(
                    name=request.rfq,
                    allocations=_allocations(request.shares),
                    request_id=request.request_id,
                ),
                timeout=TIMEOUT,
            ),
        )

    def _while_closed(self, call: str, rfq: str, effect: Callable[[], pb.Rfq]) -> RfqSnapshot:
        """Runs `effect` on the closed RFQ; when the RFQ is no longer closed (cancelled or
        awarded by the buyer meanwhile), returns it as it is instead."""
        try:
            return snapshot(effect())
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                current = self.get_rfq(rfq)
                if current.state != "CLOSED":
                    return current
            raise permanent_or_retry(f"{call} {rfq}", error) from None


def _allocations(shares: list[AwardShare]) -> list[pb.Allocation]:
    return [
        pb.Allocation(supplier=f"organizations/{s.supplier}", quantity=s.quantity) for s in shares
    ]
