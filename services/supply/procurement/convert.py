"""Conversions between procurement values and their protobuf messages (API and events)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from cofab.procurement.v1 import events_pb2
from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.errors import InvalidArgument
from services.supply.procurement.domain import (
    Allocation,
    Attachment,
    AwardPolicy,
    Quote,
    QuoteState,
    QuoteTerms,
    Rfq,
    RfqState,
    Score,
    Weights,
)

RFQ_STATES = {
    RfqState.DRAFT: pb.Rfq.STATE_DRAFT,
    RfqState.OPEN: pb.Rfq.STATE_OPEN,
    RfqState.CLOSED: pb.Rfq.STATE_CLOSED,
    RfqState.AWARDED: pb.Rfq.STATE_AWARDED,
    RfqState.CANCELLED: pb.Rfq.STATE_CANCELLED,
}
AWARD_POLICIES = {
    AwardPolicy.BUYER: pb.Rfq.AWARD_POLICY_BUYER,
    AwardPolicy.AUTOMATIC: pb.Rfq.AWARD_POLICY_AUTOMATIC,
    AwardPolicy.AUTOMATIC_AFTER_APPROVAL: pb.Rfq.AWARD_POLICY_AUTOMATIC_AFTER_APPROVAL,
}
QUOTE_STATES = {
    QuoteState.SUBMITTED: pb.Quote.STATE_SUBMITTED,
    QuoteState.WITHDRAWN: pb.Quote.STATE_WITHDRAWN,
    QuoteState.INVALIDATED: pb.Quote.STATE_INVALIDATED,
}


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: Timestamp, present: bool) -> dt.datetime | None:
    """The UTC datetime of a Timestamp field, None when the field is unset."""
    if not present:
        return None
    return ts.ToDatetime(tzinfo=dt.UTC)


def weights_from(message: pb.EvaluationWeights) -> Weights:
    return Weights(message.price, message.lead_time, message.supplier_risk, message.capacity_fit)


def weights_proto(weights: Weights) -> pb.EvaluationWeights:
    return pb.EvaluationWeights(
        price=weights.price,
        lead_time=weights.lead_time,
        supplier_risk=weights.supplier_risk,
        capacity_fit=weights.capacity_fit,
    )


def rfq_proto(rfq: Rfq, viewer_id: str | None = None) -> pb.Rfq:
    """The RFQ as `viewer_id` may see it: a supplier sees itself among the invited, its own
    allocation and no quote count; the buyer (viewer None or the buyer) sees everything."""
    supplier_view = viewer_id is not None and viewer_id != rfq.buyer_id
    suppliers = [s for s in rfq.suppliers if not supplier_view or s == viewer_id]
    allocations = [a for a in rfq.allocations if not supplier_view or a.supplier_id == viewer_id]
    return pb.Rfq(
        name=rfq.name,
        display_name=rfq.display_name,
        item=rfq.item,
        quantity=rfq.quantity,
        due_time=timestamp(rfq.due_time),
        design_revision=rfq.design_revision,
        invited_suppliers=[f"organizations/{s}" for s in suppliers],
        quote_deadline=timestamp(rfq.quote_deadline),
        weights=weights_proto(rfq.weights),
        currency_code=rfq.currency_code,
        state=RFQ_STATES[rfq.state],
        buyer=f"organizations/{rfq.buyer_id}",
        quote_count=0 if supplier_view else rfq.quote_count,
        allocations=[allocation_proto(rfq, a) for a in allocations],
        etag=rfq.etag,
        create_time=timestamp(rfq.create_time),
        update_time=timestamp(rfq.update_time),
        open_time=timestamp(rfq.open_time),
        close_time=timestamp(rfq.close_time),
        award_policy=AWARD_POLICIES[rfq.award_policy],
        proposed_allocations=[allocation_proto(rfq, a) for a in rfq.proposed if not supplier_view],
    )


def supplier_views(rfq: Rfq) -> Iterator[tuple[str, pb.Rfq]]:
    """(supplier id, rfq_proto(rfq, supplier)) for every invited supplier, built from one shared
    base: a fan-out to a thousand suppliers costs one full conversion, not a thousand."""
    base = rfq_proto(rfq, viewer_id="")
    allocations: dict[str, list[pb.Allocation]] = {}
    for a in rfq.allocations:
        allocations.setdefault(a.supplier_id, []).append(allocation_proto(rfq, a))
    for supplier in rfq.suppliers:
        view = pb.Rfq()
        view.CopyFrom(base)
        view.invited_suppliers.append(f"organizations/{supplier}")
        view.allocations.extend(allocations.get(supplier, ()))
        yield supplier, view


def rfq_audience(rfq: Rfq) -> list[str]:
    """Organization ids that hear of the RFQ's changes: its buyer and, once it was opened, every
    invited supplier. What each may see is rfq_proto's (and the event views') business."""
    return [rfq.buyer_id, *(rfq.suppliers if rfq.was_opened else ())]


def rfq_closed_view(rfq: Rfq, viewer_id: str | None) -> events_pb2.RfqClosed:
    """`procurement.rfq.closed` as `viewer_id` may see it, the rule of rfq_proto: the buyer
    (and the platform, None) learns how many quoted; a supplier only that bidding is over."""
    supplier_view = viewer_id is not None and viewer_id != rfq.buyer_id
    return events_pb2.RfqClosed(rfq=rfq.name, quote_count=0 if supplier_view else rfq.quote_count)


def award_policy_from(value: pb.Rfq.AwardPolicy.ValueType) -> AwardPolicy:
    """The award policy of a request; unset means the buyer awards, as before policies existed."""
    if value == pb.Rfq.AWARD_POLICY_UNSPECIFIED:
        return AwardPolicy.BUYER
    for policy, number in AWARD_POLICIES.items():
        if number == value:
            return policy
    raise InvalidArgument.field("rfq.award_policy", f"unknown award policy {value}")


def allocation_proto(rfq: Rfq, allocation: Allocation) -> pb.Allocation:
    return pb.Allocation(
        supplier=f"organizations/{allocation.supplier_id}",
        quantity=allocation.quantity,
        quote=f"{rfq.name}/quotes/{allocation.quote_id}" if allocation.quote_id else "",
    )


def quote_proto(quote: Quote) -> pb.Quote:
    terms = quote.terms
    return pb.Quote(
        name=quote.name,
        supplier=f"organizations/{quote.supplier_id}",
        unit_price=terms.unit_price,
        lead_time_days=terms.lead_time_days,
        capacity=terms.capacity,
        valid_until=timestamp(terms.valid_until),
        notes=terms.notes,
        attachments=[
            pb.Attachment(
                file_name=a.file_name,
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                media_type=a.media_type,
            )
            for a in terms.attachments
        ],
        state=QUOTE_STATES[quote.state],
        revision=quote.revision,
        etag=quote.etag,
        create_time=timestamp(quote.create_time),
        update_time=timestamp(quote.update_time),
    )


def quote_terms(message: pb.Quote) -> QuoteTerms:
    """The offer in a request; a missing valid_until is reported as the field it is."""
    valid_until = from_timestamp(message.valid_until, message.HasField("valid_until"))
    if valid_until is None:
        raise InvalidArgument.field("quote.valid_until", "is required")
    return QuoteTerms(
        unit_price=message.unit_price,
        lead_time_days=message.lead_time_days,
        capacity=message.capacity,
        valid_until=valid_until,
        notes=message.notes,
        attachments=tuple(
            Attachment(a.file_name, a.sha256, a.size_bytes, a.media_type)
            for a in message.attachments
        ),
    )


def score_proto(rfq_name: str, score: Score) -> pb.QuoteScore:
    return pb.QuoteScore(
        quote=f"{rfq_name}/quotes/{score.quote_id}",
        supplier=f"organizations/{score.supplier_id}",
        price=score.price,
        lead_time=score.lead_time,
        supplier_risk=score.supplier_risk,
        capacity_fit=score.capacity_fit,
        total=score.total,
        rank=score.rank,
    )
