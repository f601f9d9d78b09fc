"""Procurement rules as plain Python: RFQ and quote lifecycles, validation, scoring, awards.

No I/O here: the application layer loads the values, asks these functions what is allowed and
stores the result.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from services.shared.errors import (
    Conflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)

MAX_INVITED_SUPPLIERS = 5000
MAX_ATTACHMENTS = 20
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9.+-]+/[a-zA-Z0-9.+-]+$")
SECONDS_PER_DAY = 86400.0


class RfqState(enum.StrEnum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    AWARDED = "AWARDED"
    CANCELLED = "CANCELLED"


class AwardPolicy(enum.StrEnum):
    """Who awards a closed RFQ: the buyer, or the procurement workflow on the buyer's behalf."""

    BUYER = "BUYER"
    AUTOMATIC = "AUTOMATIC"
    AUTOMATIC_AFTER_APPROVAL = "AUTOMATIC_AFTER_APPROVAL"


class QuoteState(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    WITHDRAWN = "WITHDRAWN"
    INVALIDATED = "INVALIDATED"


# Which states each RFQ action may start from; everything else is FAILED_PRECONDITION.
TRANSITIONS: Mapping[str, tuple[frozenset[RfqState], RfqState]] = {
    "open": (frozenset({RfqState.DRAFT}), RfqState.OPEN),
    "close": (frozenset({RfqState.OPEN}), RfqState.CLOSED),
    "cancel": (
        frozenset({RfqState.DRAFT, RfqState.OPEN, RfqState.CLOSED}),
        RfqState.CANCELLED,
    ),
    "award": (frozenset({RfqState.CLOSED}), RfqState.AWARDED),
}


@dataclass(frozen=True)
class Weights:
    """The buyer's relative importance of each criterion; only the ratios matter."""

    price: float = 0.0
    lead_time: float = 0.0
    supplier_risk: float = 0.0
    capacity_fit: float = 0.0

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.price, self.lead_time, self.supplier_risk, self.capacity_fit)

    def normalized(self) -> Weights:
        """Weights summing to 1; all zero means every criterion counts the same."""
        total = sum(self.as_tuple())
        if total == 0:
            return Weights(0.25, 0.25, 0.25, 0.25)
        p, lt, r, c = (w / total for w in self.as_tuple())
        return Weights(p, lt, r, c)


def check_weights(weights: Weights, field_name: str) -> None:
    names = ("price", "lead_time", "supplier_risk", "capacity_fit")
    problems = [
        FieldViolation(f"{field_name}.{n}", "must be a finite number >= 0")
        for n, w in zip(names, weights.as_tuple(), strict=True)
        if not (math.isfinite(w) and w >= 0)
    ]
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), problems)


@dataclass(frozen=True)
class Attachment:
    """A reference to a blob of the platform's blob store (not the bytes)."""

    file_name: str
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class Allocation:
    supplier_id: str
    quantity: int
    quote_id: str = ""


@dataclass(frozen=True)
class Rfq:
    id: str
    buyer_id: str
    display_name: str
    item: str
    quantity: int
    due_time: dt.datetime
    design_revision: str
    quote_deadline: dt.datetime
    weights: Weights
    currency_code: str
    state: RfqState
    version: int
    create_time: dt.datetime
    update_time: dt.datetime
    suppliers: tuple[str, ...] = ()
    open_time: dt.datetime | None = None
    close_time: dt.datetime | None = None
    allocations: tuple[Allocation, ...] = ()
    quote_count: int = 0
    award_policy: AwardPolicy = AwardPolicy.BUYER
    proposed: tuple[Allocation, ...] = ()

    @property
    def name(self) -> str:
        return f"organizations/{self.buyer_id}/rfqs/{self.id}"

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def was_opened(self) -> bool:
        return self.open_time is not None


@dataclass(frozen=True)
class QuoteTerms:
    """What a supplier offers; the part of a quote it may revise."""

    unit_price: float
    lead_time_days: int
    capacity: int
    valid_until: dt.datetime
    notes: str = ""
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Quote:
    id: str
    rfq_id: str
    buyer_id: str
    supplier_id: str
    terms: QuoteTerms
    state: QuoteState
    revision: int
    create_time: dt.datetime
    update_time: dt.datetime

    @property
    def name(self) -> str:
        return f"organizations/{self.buyer_id}/rfqs/{self.rfq_id}/quotes/{self.id}"

    @property
    def etag(self) -> str:
        return str(self.revision)

    @property
    def current(self) -> bool:
        return self.state is QuoteState.SUBMITTED


def _raise(problems: list[FieldViolation]) -> None:
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), problems)


def check_new_rfq(
    display_name: str,
    quantity: int,
    due_time: dt.datetime | None,
    quote_deadline: dt.datetime | None,
    currency_code: str,
    weights: Weights,
    now: dt.datetime,
) -> None:
    """Reports every invalid field of a new RFQ at once (AIP-193 BadRequest)."""
    problems: list[FieldViolation] = []
    if len(display_name) > 200:
        problems.append(FieldViolation("rfq.display_name", "at most 200 characters"))
    if quantity <= 0:
        problems.append(FieldViolation("rfq.quantity", "must be a positive number of units"))
    if due_time is None:
        problems.append(FieldViolation("rfq.due_time", "is required"))
    elif due_time <= now:
        problems.append(FieldViolation("rfq.due_time", "must be in the future"))
    if quote_deadline is None:
        problems.append(FieldViolation("rfq.quote_deadline", "is required"))
    elif quote_deadline <= now:
        problems.append(FieldViolation("rfq.quote_deadline", "must be in the future"))
    elif due_time is not None and quote_deadline >= due_time:
        problems.append(FieldViolation("rfq.quote_deadline", "must be before rfq.due_time"))
    if not _CURRENCY_RE.match(currency_code):
        problems.append(
            FieldViolation("rfq.currency_code", "must be an ISO 4217 code like EUR or USD")
        )
    _raise(problems)
    check_weights(weights, "rfq.weights")


def check_invited(buyer_id: str, suppliers: Sequence[str]) -> None:
    if not suppliers:
        raise InvalidArgument.field(
            "rfq.invited_suppliers",
            "name at least one supplier, or a supplier_search that finds one",
        )
    if buyer_id in suppliers:
        raise InvalidArgument.field(
            "rfq.invited_suppliers", f"organizations/{buyer_id} cannot quote on its own RFQ"
        )
    if len(suppliers) > MAX_INVITED_SUPPLIERS:
        raise InvalidArgument.field(
            "rfq.invited_suppliers", f"at most {MAX_INVITED_SUPPLIERS} suppliers per RFQ"
        )


def check_etag(given: str, current: str, what: str) -> None:
    """AIP-154: a set etag must match, or the caller's view is stale."""
    if given and given != current:
        raise Conflict(f"{what} changed since etag {given}; its etag is now {current}", current)


def transition(rfq: Rfq, action: str, now: dt.datetime) -> Rfq:
    """The RFQ after `action`, or FailedPrecondition naming the state it is in."""
    allowed, target = TRANSITIONS[action]
    if rfq.state not in allowed:
        states = ", ".join(sorted(s.value.lower() for s in allowed))
        raise FailedPrecondition(
            f"cannot {action} {rfq.name}: it is {rfq.state.value.lower()}, "
            f"and only {states} RFQs can be {_past(action)}",
            [PreconditionViolation("STATE", rfq.name, f"RFQ is {rfq.state.value}")],
        )
    if action == "open" and rfq.quote_deadline <= now:
        raise FailedPrecondition(
            f"cannot open {rfq.name}: its quote deadline has passed",
            [PreconditionViolation("DEADLINE", rfq.name, "quote_deadline is in the past")],
        )
    changed = replace(rfq, state=target, version=rfq.version + 1, update_time=now)
    if action == "open":
        changed = replace(changed, open_time=now)
    if action == "close":
        changed = replace(changed, close_time=now)
    return changed


def _past(action: str) -> str:
    return {"open": "opened", "close": "closed", "cancel": "cancelled", "award": "awarded"}[action]


def revised(rfq: Rfq, new_revision: str, now: dt.datetime) -> Rfq:
    """The open RFQ re-pinned to a newer revision of the same design."""
    if rfq.state is not RfqState.OPEN:
        raise FailedPrecondition(
            f"{rfq.name} is {rfq.state.value.lower()}: only an open RFQ moves to a new revision",
            [PreconditionViolation("STATE", rfq.name, f"RFQ is {rfq.state.value}")],
        )
    if not rfq.design_revision:
        raise FailedPrecondition(
            f"{rfq.name} is for a part without a design revision",
            [PreconditionViolation("REVISION", rfq.name, "RFQ has no design revision")],
        )
    design = rfq.design_revision.split("/revisions/")[0]
    if not new_revision.startswith(design + "/revisions/"):
        raise InvalidArgument.field("design_revision", f"must be a revision of {design}")
    if new_revision == rfq.design_revision:
        raise InvalidArgument.field("design_revision", "is the revision the RFQ is pinned to")
    return replace(rfq, design_revision=new_revision, version=rfq.version + 1, update_time=now)


def check_quote_terms(terms: QuoteTerms, now: dt.datetime) -> None:
    """Reports every invalid field of a quote at once."""
    problems: list[FieldViolation] = []
    if not (math.isfinite(terms.unit_price) and terms.unit_price > 0):
        problems.append(FieldViolation("quote.unit_price", "must be a positive finite price"))
    if terms.lead_time_days < 0:
        problems.append(FieldViolation("quote.lead_time_days", "must not be negative"))
    if terms.capacity <= 0:
        problems.append(FieldViolation("quote.capacity", "must be a positive number of units"))
    if terms.valid_until <= now:
        problems.append(FieldViolation("quote.valid_until", "must be in the future"))
    if len(terms.notes) > 10000:
        problems.append(FieldViolation("quote.notes", "at most 10000 characters"))
    if len(terms.attachments) > MAX_ATTACHMENTS:
        problems.append(FieldViolation("quote.attachments", f"at most {MAX_ATTACHMENTS}"))
    for i, a in enumerate(terms.attachments):
        where = f"quote.attachments[{i}]"
        if not a.file_name.strip() or len(a.file_name) > 255 or "/" in a.file_name:
            problems.append(FieldViolation(f"{where}.file_name", "1-255 characters, no '/'"))
        if not _SHA256_RE.match(a.sha256):
            problems.append(FieldViolation(f"{where}.sha256", "must be 64 lower-case hex digits"))
        if a.size_bytes < 0:
            problems.append(FieldViolation(f"{where}.size_bytes", "must not be negative"))
        if not _MEDIA_TYPE_RE.match(a.media_type):
            problems.append(FieldViolation(f"{where}.media_type", "must be a type/subtype"))
    _raise(problems)


def require_quotable(rfq: Rfq, now: dt.datetime) -> None:
    """Quotes are accepted, revised and withdrawn only while the RFQ is open and in time."""
    if rfq.state is not RfqState.OPEN:
        raise FailedPrecondition(
            f"{rfq.name} is {rfq.state.value.lower()}: quotes are accepted only while it is open",
            [PreconditionViolation("STATE", rfq.name, f"RFQ is {rfq.state.value}")],
        )
    if now >= rfq.quote_deadline:
        raise FailedPrecondition(
            f"the quote deadline of {rfq.name} has passed",
            [PreconditionViolation("DEADLINE", rfq.name, "quote_deadline has passed")],
        )


def require_unsealed(rfq: Rfq) -> None:
    """The buyer reads quotes only once the RFQ is closed (quotes are sealed until then)."""
    if rfq.state in (RfqState.DRAFT, RfqState.OPEN) or (
        rfq.state is RfqState.CANCELLED and rfq.close_time is None
    ):
        raise FailedPrecondition(
            f"the quotes of {rfq.name} are sealed until it is closed",
            [PreconditionViolation("SEALED", rfq.name, f"RFQ is {rfq.state.value}")],
        )


@dataclass(frozen=True)
class Score:
    """One quote's per-criterion scores in [0, 1] and their weighted mean."""

    quote_id: str
    supplier_id: str
    price: float
    lead_time: float
    supplier_risk: float
    capacity_fit: float
    total: float
    rank: int = 0


def score_quotes(
    quotes: Iterable[Quote],
    quantity: int,
    due_time: dt.datetime,
    now: dt.datetime,
    weights: Weights,
    risks: Mapping[str, float],
) -> list[Score]:
    """Ranks current quotes, best first.

    - price: cheapest unit price / this unit price (the cheapest scores 1);
    - lead time: days left until the due time / lead time days, capped at 1 (a quote that
      delivers in time scores 1, one needing twice the time left scores 0.5; none left: 0);
    - supplier risk: 1 - the supplier's risk (risk in [0, 1], clamped);
    - capacity fit: capacity / quantity, capped at 1.
    Ties rank by lower price, then quote id, so the order is deterministic.
    """
    current = [q for q in quotes if q.current]
    if not current:
        return []
    w = weights.normalized()
    cheapest = min(q.terms.unit_price for q in current)
    days_left = max(0.0, (due_time - now).total_seconds() / SECONDS_PER_DAY)
    scored: list[Score] = []
    for q in current:
        price = cheapest / q.terms.unit_price
        lead = q.terms.lead_time_days
        lead_time = 1.0 if lead == 0 else min(1.0, days_left / lead)
        risk = min(1.0, max(0.0, risks.get(q.supplier_id, 0.0)))
        supplier_risk = 1.0 - risk
        capacity_fit = min(1.0, q.terms.capacity / quantity)
        total = (
            w.price * price
            + w.lead_time * lead_time
            + w.supplier_risk * supplier_risk
            + w.capacity_fit * capacity_fit
        )
        scored.append(
            Score(q.id, q.supplier_id, price, lead_time, supplier_risk, capacity_fit, total)
        )
    prices = {q.id: q.terms.unit_price for q in current}
    scored.sort(key=lambda s: (-s.total, prices[s.quote_id], s.quote_id))
    return [replace(s, rank=i + 1) for i, s in enumerate(scored)]


def check_allocations(
    rfq: Rfq, allocations: Sequence[Allocation], quotes: Iterable[Quote], now: dt.datetime
) -> list[Allocation]:
    """Validates a (split) award against the current quotes; returns it with each quote id.

    Each supplier at most once, with a current, still valid quote, a positive quantity within
    that quote's capacity; the quantities sum to the RFQ's quantity."""
    if not allocations:
        raise InvalidArgument.field("allocations", "name at least one supplier and quantity")
    by_supplier = {q.supplier_id: q for q in quotes if q.current}
    problems: list[FieldViolation] = []
    seen: set[str] = set()
    result: list[Allocation] = []
    for i, a in enumerate(allocations):
        where = f"allocations[{i}]"
        if a.supplier_id in seen:
            problems.append(FieldViolation(f"{where}.supplier", "names a supplier twice"))
            continue
        seen.add(a.supplier_id)
        quote = by_supplier.get(a.supplier_id)
        if quote is None:
            problems.append(
                FieldViolation(
                    f"{where}.supplier",
                    f"organizations/{a.supplier_id} has no current quote on {rfq.name}",
                )
            )
            continue
        if a.quantity <= 0:
            problems.append(FieldViolation(f"{where}.quantity", "must be positive"))
        elif a.quantity > quote.terms.capacity:
            problems.append(
                FieldViolation(
                    f"{where}.quantity",
                    f"{a.quantity} exceeds the quoted capacity of {quote.terms.capacity}",
                )
            )
        result.append(Allocation(a.supplier_id, a.quantity, quote.id))
    total = sum(a.quantity for a in allocations)
    if not problems and total != rfq.quantity:
        problems.append(
            FieldViolation(
                "allocations", f"quantities sum to {total}, the RFQ asks for {rfq.quantity}"
            )
        )
    _raise(problems)
    awarded = [by_supplier[a.supplier_id] for a in result]
    expired = [q for q in awarded if q.terms.valid_until <= now]
    if expired:
        raise FailedPrecondition(
            "the quote of "
            + ", ".join(f"organizations/{q.supplier_id}" for q in expired)
            + " is no longer valid",
            [PreconditionViolation("EXPIRED", q.name, "valid_until has passed") for q in expired],
        )
    return result


def automatic_allocations(
    ranked: Sequence[tuple[str, int]], quantity: int
) -> list[Allocation] | None:
    """The award of an AUTOMATIC RFQ: (supplier id, quoted capacity) best rank first; each takes
    what it can of what is left until the quantity is covered. None when all of them together
    cannot cover it (the buyer then decides)."""
    left = quantity
    result: list[Allocation] = []
    for supplier_id, capacity in ranked:
        if left == 0:
            break
        take = min(capacity, left)
        if take > 0:
            result.append(Allocation(supplier_id, take))
            left -= take
    return result if left == 0 else None
