"""Procurement use cases, each in one transaction with its audit entry, events and request id.

Access: the buyer organization sees its RFQs in every state; an invited supplier sees an RFQ
once it has been opened, and only its own quotes; the platform's service accounts may read and
close any RFQ (the RFQ workflow closes at the deadline), evaluate and award those whose buyer
chose the AUTOMATIC award policy, and record partners' inbound quotes (the event bridge).
Everyone else gets NotFound with the same message whether the RFQ exists or not.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine

from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.procurement.v1 import events_pb2
from services.shared import audit, authz, idempotency, names, outbox
from services.shared.db import read_only, utcnow
from services.shared.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.shared.events import make_envelope
from services.shared.identity import Principal
from services.shared.paging import Listed, Page, page_of
from services.supply.procurement import domain
from services.supply.procurement.convert import (
    allocation_proto,
    quote_proto,
    rfq_audience,
    rfq_closed_view,
    rfq_proto,
    supplier_views,
)
from services.supply.procurement.domain import (
    Allocation,
    AwardPolicy,
    Quote,
    QuoteState,
    QuoteTerms,
    Rfq,
    RfqState,
    Score,
    Weights,
)
from services.supply.procurement.ports import CapabilityQuery, DesignRevisions, SupplierDirectory
from services.supply.procurement.repository import ProcurementRepository

SOURCE = "//cofab/supply"
Clock = Callable[[], dt.datetime]
ITEM_PATTERN = "organizations/{organization}/items/{item}"
REVISION_PATTERN = "projects/{project}/designs/{design}/revisions/{revision}"
DEFAULT_SEARCH_LIMIT = 100
MAX_SEARCH_LIMIT = 1000


@dataclass(frozen=True)
class RfqDraft:
    """What a buyer asks for in CreateRfq."""

    display_name: str
    item: str
    quantity: int
    due_time: dt.datetime | None
    design_revision: str
    invited_suppliers: Sequence[str]
    quote_deadline: dt.datetime | None
    weights: Weights
    currency_code: str
    award_policy: AwardPolicy = AwardPolicy.BUYER


class ProcurementApplication:
    def __init__(
        self,
        engine: Engine,
        revisions: DesignRevisions,
        directory: SupplierDirectory,
        clock: Clock = utcnow,
    ) -> None:
        self._engine = engine
        self._revisions = revisions
        self._directory = directory
        self._clock = clock

    # RFQs ------------------------------------------------------------------------------

    def create_rfq(
        self,
        principal: Principal,
        authorization: str,
        buyer_id: str,
        draft: RfqDraft,
        search: CapabilityQuery | None,
        request_id: str,
    ) -> Rfq:
        """A draft RFQ; a designed part's revision must be released (asked of the design
        service with the caller's token, outside any database transaction)."""
        _require_buyer_or_platform(principal, buyer_id)
        earlier = self._replayed(principal, "CreateRfq", request_id)
        if earlier is not None:
            return self._rfq_by_name(principal, earlier)
        now = self._clock()
        domain.check_new_rfq(
            draft.display_name,
            draft.quantity,
            draft.due_time,
            draft.quote_deadline,
            draft.currency_code,
            draft.weights,
            now,
        )
        assert draft.due_time is not None and draft.quote_deadline is not None
        revision = self._pinned_revision(principal, authorization, draft)
        suppliers = self._invited(principal, buyer_id, draft.invited_suppliers, search)
        rfq = Rfq(
            id=uuid.uuid4().hex,
            buyer_id=buyer_id,
            display_name=draft.display_name.strip(),
            item=draft.item,
            quantity=draft.quantity,
            due_time=draft.due_time,
            design_revision=revision,
            quote_deadline=draft.quote_deadline,
            weights=draft.weights,
            currency_code=draft.currency_code,
            state=RfqState.DRAFT,
            version=1,
            create_time=now,
            update_time=now,
            suppliers=tuple(suppliers),
            award_policy=draft.award_policy,
        )
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            unknown = sorted(set(suppliers) - repo.existing_organizations(suppliers))
            if unknown:
                raise InvalidArgument.field(
                    "rfq.invited_suppliers",
                    "no such organization: " + ", ".join(f"organizations/{u}" for u in unknown),
                )
            earlier = idempotency.replayed(conn, principal, "CreateRfq", request_id)
            if earlier is not None:
                return self._load_rfq(repo, earlier)
            repo.add_rfq(rfq)
            self._emit(
                conn,
                principal,
                "procurement.rfq.created",
                rfq.name,
                events_pb2.RfqCreated(rfq=rfq_proto(rfq)),
                key=rfq.id,
            )
            audit.record(
                conn,
                principal,
                "rfq.create",
                rfq.name,
                {"item": rfq.item, "suppliers": len(suppliers), "revision": revision},
            )
            idempotency.remember(conn, principal, "CreateRfq", request_id, rfq.name)
        return rfq

    def _pinned_revision(self, principal: Principal, authorization: str, draft: RfqDraft) -> str:
        names.parse(draft.item, ITEM_PATTERN, "rfq.item")
        item = self._directory.item(principal, draft.item)
        revision = draft.design_revision or item.revision
        if not revision:
            if item.design:
                raise InvalidArgument.field(
                    "rfq.design_revision",
                    f"is required: {draft.item} is a designed part ({item.design}) "
                    "and has no pinned revision",
                )
            return ""
        names.parse(revision, REVISION_PATTERN, "rfq.design_revision")
        if item.design and not revision.startswith(item.design + "/revisions/"):
            raise InvalidArgument.field(
                "rfq.design_revision", f"{revision} is not a revision of {item.design}"
            )
        if not self._revisions.is_released(authorization, revision):
            raise FailedPrecondition(
                f"{revision} is not released: RFQs are pinned to released revisions only",
                [PreconditionViolation("RELEASE", revision, "revision is not released")],
            )
        return revision

    def _invited(
        self,
        principal: Principal,
        buyer_id: str,
        explicit: Sequence[str],
        search: CapabilityQuery | None,
    ) -> list[str]:
        suppliers: list[str] = []
        for i, name in enumerate(explicit):
            supplier = names.parse_one(
                name, "organizations/{organization}", f"rfq.invited_suppliers[{i}]"
            )
            if supplier not in suppliers:
                suppliers.append(supplier)
        if search is not None:
            if not 0 <= search.limit <= MAX_SEARCH_LIMIT:
                raise InvalidArgument.field(
                    "supplier_search.limit", f"must be 0-{MAX_SEARCH_LIMIT}"
                )
            if search.min_capacity < 0:
                raise InvalidArgument.field("supplier_search.min_capacity", "must not be negative")
            query = replace(search, limit=search.limit or DEFAULT_SEARCH_LIMIT)
            for supplier in self._directory.capable_suppliers(principal, query):
                # The buyer's own facilities may match; it does not quote to itself.
                if supplier != buyer_id and supplier not in suppliers:
                    suppliers.append(supplier)
        domain.check_invited(buyer_id, suppliers)
        return suppliers

    def get_rfq(self, principal: Principal, buyer_id: str, rfq_id: str) -> Rfq:
        with read_only(self._engine) as conn:
            return self._visible(ProcurementRepository(conn), principal, buyer_id, rfq_id)

    def list_rfqs(self, principal: Principal, parent_id: str, page: Page) -> Listed[Rfq]:
        """parent_id: the caller's own organization (its RFQs as buyer), "-" (every RFQ it is
        invited to) or another buyer (the RFQs that buyer invited it to)."""
        with read_only(self._engine) as conn:
            repo = ProcurementRepository(conn)
            if parent_id == principal.organization_id:
                rows = repo.list_rfqs_of_buyer(parent_id, page.after_seq, page.limit + 1)
            else:
                buyer = None if parent_id == "-" else parent_id
                rows = repo.list_rfqs_invited(
                    principal.organization_id, buyer, page.after_seq, page.limit + 1
                )
        return page_of(page, rows)

    def open_rfq(
        self, principal: Principal, buyer_id: str, rfq_id: str, etag: str, request_id: str
    ) -> Rfq:
        """Draft -> open; each invited supplier gets its own event, keyed by its organization id
        so that supplier's stream stays in order. One more event on the RFQ's own key starts its
        procurement workflow before any of its quote events (same key, same partition)."""

        def effects(conn: Connection, rfq: Rfq) -> None:
            self._emit(
                conn,
                principal,
                "procurement.rfq.published",
                rfq.name,
                events_pb2.RfqPublished(rfq=rfq_proto(rfq)),
                key=rfq.id,
            )
            # Each supplier's copy is its GetRfq view (rfq_proto decides both).
            events = []
            for supplier, view in supplier_views(rfq):
                name = f"organizations/{supplier}"
                payload = events_pb2.RfqOpened(rfq=view, supplier=name)
                events.append(
                    (
                        self._envelope(
                            principal, "procurement.rfq.opened", rfq.name, payload, [name]
                        ),
                        supplier,
                    )
                )
            outbox.enqueue_many(conn, events)

        # The platform's service account opens the re-sourcing RFQs it created for a buyer.
        return self._transition(
            principal,
            buyer_id,
            rfq_id,
            "open",
            "OpenRfq",
            etag,
            request_id,
            effects,
            service_may=True,
        )

    def close_rfq(
        self, principal: Principal, buyer_id: str, rfq_id: str, etag: str, request_id: str
    ) -> Rfq:
        """Open -> closed, by the buyer or a platform service account (deadline workflow)."""

        def effects(conn: Connection, rfq: Rfq) -> None:
            # One view per organization: suppliers hear neither who else was invited nor how
            # many quoted (issue 12); the buyer's, on the RFQ's key, carries the count.
            outbox.enqueue_many(
                conn,
                [
                    (
                        self._envelope(
                            principal,
                            "procurement.rfq.closed",
                            rfq.name,
                            rfq_closed_view(rfq, org),
                            [f"organizations/{org}"],
                        ),
                        rfq.id if org == rfq.buyer_id else org,
                    )
                    for org in rfq_audience(rfq)
                ],
            )

        return self._transition(
            principal,
            buyer_id,
            rfq_id,
            "close",
            "CloseRfq",
            etag,
            request_id,
            effects,
            service_may=True,
        )

    def cancel_rfq(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        etag: str,
        reason: str,
        request_id: str,
    ) -> Rfq:
        """Draft, open or closed -> cancelled; every supplier that was told of the RFQ is told
        of its end (one event each, on its own key)."""
        if len(reason) > 1000:
            raise InvalidArgument.field("reason", "at most 1000 characters")

        def effects(conn: Connection, rfq: Rfq) -> None:
            told = rfq.suppliers if rfq.was_opened else ()
            outbox.enqueue_many(
                conn,
                [
                    (
                        self._envelope(
                            principal,
                            "procurement.rfq.cancelled",
                            rfq.name,
                            events_pb2.RfqCancelled(
                                rfq=rfq.name, supplier=f"organizations/{s}", reason=reason
                            ),
                            [f"organizations/{s}"],
                        ),
                        s,
                    )
                    for s in told
                ],
            )
            if not told:
                self._emit(
                    conn,
                    principal,
                    "procurement.rfq.cancelled",
                    rfq.name,
                    events_pb2.RfqCancelled(rfq=rfq.name, reason=reason),
                    key=rfq.id,
                )

        return self._transition(
            principal, buyer_id, rfq_id, "cancel", "CancelRfq", etag, request_id, effects
        )

    def evaluate_rfq(
        self, principal: Principal, buyer_id: str, rfq_id: str, weights: Weights | None
    ) -> tuple[list[Score], Weights]:
        """Scores of the current quotes of a closed (or awarded) RFQ, best first: for its buyer,
        or for the procurement workflow (a service account) when the RFQ awards automatically."""
        if weights is not None:
            domain.check_weights(weights, "weights")
        with read_only(self._engine) as conn:
            repo = ProcurementRepository(conn)
            if principal.service_account:
                rfq = self._visible(repo, principal, buyer_id, rfq_id)
                _require_automatic(rfq, "evaluate")
            else:
                rfq = self._as_buyer(repo, principal, buyer_id, rfq_id, "evaluate")
            if rfq.state not in (RfqState.CLOSED, RfqState.AWARDED):
                raise FailedPrecondition(
                    f"{rfq.name} is {rfq.state.value.lower()}: quotes are evaluated once it is "
                    "closed",
                    [PreconditionViolation("STATE", rfq.name, f"RFQ is {rfq.state.value}")],
                )
            quotes = [q for _, q in repo.list_quotes(rfq, None, 0, None)]
        used = weights if weights is not None else rfq.weights
        risks = {q.supplier_id: self._directory.supplier_risk(q.supplier_id) for q in quotes}
        scores = domain.score_quotes(quotes, rfq.quantity, rfq.due_time, self._clock(), used, risks)
        return scores, used.normalized()

    def award_rfq(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        allocations: Sequence[Allocation],
        etag: str,
        request_id: str,
        method: str = "AwardRfq",
    ) -> Rfq:
        """Closed -> awarded with one or more allocations; one purchase order per supplier. The
        buyer awards; the procurement workflow (a service account) only an AUTOMATIC RFQ."""

        def effects(conn: Connection, rfq: Rfq) -> None:
            repo = ProcurementRepository(conn)
            quotes = {q.id: q for _, q in repo.list_quotes(rfq, None, 0, None)}
            for a in rfq.allocations:
                quote = quotes[a.quote_id]
                self._emit(
                    conn,
                    principal,
                    "procurement.purchase_order.issued",
                    rfq.name,
                    events_pb2.PurchaseOrderIssued(
                        rfq=rfq.name,
                        buyer=f"organizations/{rfq.buyer_id}",
                        item=rfq.item,
                        design_revision=rfq.design_revision,
                        allocation=allocation_proto(rfq, a),
                        unit_price=quote.terms.unit_price,
                        currency_code=rfq.currency_code,
                        lead_time_days=quote.terms.lead_time_days,
                    ),
                    key=a.supplier_id,
                    audience=[f"organizations/{a.supplier_id}"],
                )
            self._emit(
                conn,
                principal,
                "procurement.rfq.awarded",
                rfq.name,
                events_pb2.RfqAwarded(rfq=rfq_proto(rfq)),
                key=rfq.id,
            )

        def prepare(repo: ProcurementRepository, rfq: Rfq, now: dt.datetime) -> Rfq:
            quotes = [q for _, q in repo.list_quotes(rfq, None, 0, None)]
            checked = domain.check_allocations(rfq, allocations, quotes, now)
            repo.add_allocations(rfq.id, checked)
            return replace(
                rfq, allocations=tuple(sorted(checked, key=lambda a: a.supplier_id)), proposed=()
            )

        return self._transition(
            principal,
            buyer_id,
            rfq_id,
            "award",
            method,
            etag,
            request_id,
            effects,
            service_may=True,
            service_check=lambda rfq: _require_automatic(rfq, "award"),
            prepare=prepare,
        )

    def propose_award(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        allocations: Sequence[Allocation],
        request_id: str,
    ) -> Rfq:
        """The procurement workflow's proposed award of a closed RFQ whose buyer approves
        awards (AUTOMATIC_AFTER_APPROVAL); checked as an award is, and the buyer is told."""
        if not principal.service_account:
            raise PermissionDenied("only the platform's procurement workflow proposes awards")
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            earlier = idempotency.replayed(conn, principal, "ProposeAward", request_id)
            if earlier is not None:
                return self._load_rfq(repo, earlier)
            rfq = self._visible(repo, principal, buyer_id, rfq_id, lock=True)
            if rfq.award_policy is not AwardPolicy.AUTOMATIC_AFTER_APPROVAL:
                raise PermissionDenied(
                    f"{rfq.name} has award policy {rfq.award_policy.value}: no proposals"
                )
            if rfq.state is not RfqState.CLOSED:
                raise FailedPrecondition(
                    f"{rfq.name} is {rfq.state.value.lower()}: only a closed RFQ gets a proposal",
                    [PreconditionViolation("STATE", rfq.name, f"RFQ is {rfq.state.value}")],
                )
            now = self._clock()
            quotes = [q for _, q in repo.list_quotes(rfq, None, 0, None)]
            checked = domain.check_allocations(rfq, allocations, quotes, now)
            changed = replace(
                rfq, proposed=tuple(checked), version=rfq.version + 1, update_time=now
            )
            if not repo.save_rfq(changed, rfq.version):
                raise Conflict(f"{rfq.name} changed concurrently; read it again", rfq.name)
            self._emit(
                conn,
                principal,
                "procurement.award.proposed",
                changed.name,
                events_pb2.AwardProposed(rfq=rfq_proto(changed)),
                key=changed.id,
                audience=[f"organizations/{changed.buyer_id}"],
            )
            audit.record(conn, principal, "rfq.propose_award", changed.name)
            idempotency.remember(conn, principal, "ProposeAward", request_id, changed.name)
        return changed

    def approve_award(
        self, principal: Principal, buyer_id: str, rfq_id: str, etag: str, request_id: str
    ) -> Rfq:
        """The buyer approves the workflow's proposal: the RFQ is awarded with it (one purchase
        order per supplier); the etag pins the proposal the buyer saw."""
        with read_only(self._engine) as conn:
            rfq = self._as_buyer(
                ProcurementRepository(conn), principal, buyer_id, rfq_id, "approve the award of"
            )
        earlier = self._replayed(principal, "ApproveAward", request_id)
        if earlier is None and not rfq.proposed:
            raise FailedPrecondition(
                f"{rfq.name} has no proposed award to approve",
                [PreconditionViolation("PROPOSAL", rfq.name, "no proposed award")],
            )
        return self.award_rfq(
            principal, buyer_id, rfq_id, rfq.proposed, etag, request_id, method="ApproveAward"
        )

    def revise_rfq(
        self,
        principal: Principal,
        authorization: str,
        buyer_id: str,
        rfq_id: str,
        new_revision: str,
        reason: str,
        etag: str,
        request_id: str,
    ) -> Rfq:
        """Moves an open RFQ to a newer released revision of its design: current quotes are
        invalidated and every invited supplier is told (one event each, on its own key)."""
        if len(reason) > 1000:
            raise InvalidArgument.field("reason", "at most 1000 characters")
        names.parse(new_revision, REVISION_PATTERN, "design_revision")
        earlier = self._replayed(principal, "ReviseRfq", request_id)
        if earlier is not None:
            return self._rfq_by_name(principal, earlier)
        with read_only(self._engine) as conn:
            self._as_buyer(ProcurementRepository(conn), principal, buyer_id, rfq_id, "revise")
        # Asked outside any transaction: the design service may share this database.
        if not self._revisions.is_released(authorization, new_revision):
            raise FailedPrecondition(
                f"{new_revision} is not released: RFQs are pinned to released revisions only",
                [PreconditionViolation("RELEASE", new_revision, "revision is not released")],
            )
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            earlier = idempotency.replayed(conn, principal, "ReviseRfq", request_id)
            if earlier is not None:
                return self._load_rfq(repo, earlier)
            rfq = self._as_buyer(repo, principal, buyer_id, rfq_id, "revise", lock=True)
            domain.check_etag(etag, rfq.etag, rfq.name)
            now = self._clock()
            changed = domain.revised(rfq, new_revision, now)
            invalidated: dict[str, list[str]] = {}
            for _, quote in repo.list_quotes(rfq, None, 0, None):
                if quote.current:
                    stale = replace(
                        quote,
                        state=QuoteState.INVALIDATED,
                        revision=quote.revision + 1,
                        update_time=now,
                    )
                    repo.save_quote(stale, quote.revision)
                    invalidated.setdefault(quote.supplier_id, []).append(quote.name)
            changed = replace(changed, quote_count=0)
            if not repo.save_rfq(changed, rfq.version):
                raise Conflict(f"{rfq.name} changed concurrently; read it again", rfq.name)
            # The buyer's side (and its procurement workflow): no quote counts any more.
            self._emit(
                conn,
                principal,
                "procurement.quote.received",
                changed.name,
                events_pb2.QuoteReceived(
                    rfq=changed.name, quote_count=0, invited_count=len(changed.suppliers)
                ),
                key=changed.id,
                audience=[f"organizations/{changed.buyer_id}"],
            )
            events = []
            for supplier, view in supplier_views(changed):
                name = f"organizations/{supplier}"
                payload = events_pb2.RfqRevised(
                    rfq=view,
                    supplier=name,
                    previous_revision=rfq.design_revision,
                    invalidated_quotes=invalidated.get(supplier, []),
                    reason=reason,
                )
                events.append(
                    (
                        self._envelope(
                            principal, "procurement.rfq.revised", rfq.name, payload, [name]
                        ),
                        supplier,
                    )
                )
            outbox.enqueue_many(conn, events)
            audit.record(
                conn,
                principal,
                "rfq.revise",
                changed.name,
                {
                    "from": rfq.design_revision,
                    "to": new_revision,
                    "invalidated": sum(len(q) for q in invalidated.values()),
                },
            )
            idempotency.remember(conn, principal, "ReviseRfq", request_id, changed.name)
        return changed

    def _transition(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        action: str,
        method: str,
        etag: str,
        request_id: str,
        effects: Callable[[Connection, Rfq], None],
        service_may: bool = False,
        service_check: Callable[[Rfq], None] | None = None,
        prepare: Callable[[ProcurementRepository, Rfq, dt.datetime], Rfq] | None = None,
    ) -> Rfq:
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._load_rfq(repo, earlier)
            if service_may and principal.service_account:
                rfq = self._visible(repo, principal, buyer_id, rfq_id, lock=True)
                if service_check is not None:
                    service_check(rfq)  # raises when the platform may not act on this RFQ
            else:
                rfq = self._as_buyer(repo, principal, buyer_id, rfq_id, action, lock=True)
            domain.check_etag(etag, rfq.etag, rfq.name)
            now = self._clock()
            changed = domain.transition(rfq, action, now)
            if prepare is not None:
                changed = prepare(repo, changed, now)
            if not repo.save_rfq(changed, rfq.version):
                raise Conflict(f"{rfq.name} changed concurrently; read it again", rfq.name)
            effects(conn, changed)
            audit.record(conn, principal, f"rfq.{action}", changed.name)
            idempotency.remember(conn, principal, method, request_id, changed.name)
        return changed

    # quotes ----------------------------------------------------------------------------

    def submit_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        terms: QuoteTerms,
        request_id: str,
    ) -> Quote:
        """An invited supplier's quote on an open RFQ; one current quote per supplier."""
        return self._add_quote(
            principal, buyer_id, rfq_id, principal.organization_id, terms, "SubmitQuote", request_id
        )

    def record_inbound_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        supplier_id: str,
        terms: QuoteTerms,
        request_id: str,
    ) -> Quote:
        """A quote a partner sent over Kafka, recorded by the event bridge (a service account)
        for the supplier the record came from, with the same checks as SubmitQuote."""
        if not principal.service_account:
            raise PermissionDenied(
                "only the platform's event bridge records inbound quotes; suppliers call "
                "SubmitQuote"
            )
        return self._add_quote(
            principal, buyer_id, rfq_id, supplier_id, terms, "RecordInboundQuote", request_id
        )

    def _add_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        supplier_id: str,
        terms: QuoteTerms,
        method: str,
        request_id: str,
    ) -> Quote:
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._recorded_quote(repo, principal, earlier)
            if principal.service_account:
                rfq = self._visible(repo, principal, buyer_id, rfq_id, lock=True)
                if supplier_id not in rfq.suppliers:
                    raise PermissionDenied(
                        f"organizations/{supplier_id} is not invited to quote on {rfq.name}"
                    )
            else:
                rfq = self._as_supplier(repo, principal, buyer_id, rfq_id, lock=True)
            now = self._clock()
            domain.require_quotable(rfq, now)
            domain.check_quote_terms(terms, now)
            existing = repo.current_quote_of(rfq, supplier_id)
            if existing is not None:
                raise FailedPrecondition(
                    f"{existing.name} is your current quote on {rfq.name}: revise it with "
                    "UpdateQuote (cofab quote update) or withdraw it first",
                    [PreconditionViolation("QUOTE", existing.name, "a current quote exists")],
                )
            quote = Quote(
                id=uuid.uuid4().hex,
                rfq_id=rfq.id,
                buyer_id=rfq.buyer_id,
                supplier_id=supplier_id,
                terms=terms,
                state=QuoteState.SUBMITTED,
                revision=1,
                create_time=now,
                update_time=now,
            )
            repo.add_quote(quote)
            self._quote_events(conn, principal, rfq, quote, "submitted", rfq.quote_count + 1)
            audit.record(conn, principal, "quote.submit", quote.name)
            idempotency.remember(conn, principal, method, request_id, quote.name)
        return quote

    def _recorded_quote(
        self, repo: ProcurementRepository, principal: Principal, name: str
    ) -> Quote:
        """The quote an earlier call with the same request id recorded."""
        if not principal.service_account:
            return self._quote_by_name(repo, principal, name)
        buyer_id, rfq_id, quote_id = names.parse(
            name, "organizations/{organization}/rfqs/{rfq}/quotes/{quote}", "name"
        )
        rfq = self._visible(repo, principal, buyer_id, rfq_id)
        quote = repo.get_quote(rfq, quote_id)
        if quote is None:
            raise NotFound(f"{name} not found")
        return quote

    def update_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        quote_id: str,
        terms: QuoteTerms,
        etag: str,
        request_id: str,
    ) -> Quote:
        """Revises the supplier's current quote while the RFQ is open (etag compare-and-set)."""

        def change(quote: Quote, now: dt.datetime) -> Quote:
            domain.check_quote_terms(terms, now)
            return replace(quote, terms=terms, revision=quote.revision + 1, update_time=now)

        return self._change_quote(
            principal, buyer_id, rfq_id, quote_id, etag, request_id, "UpdateQuote", change
        )

    def withdraw_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        quote_id: str,
        etag: str,
        request_id: str,
    ) -> Quote:
        def change(quote: Quote, now: dt.datetime) -> Quote:
            return replace(
                quote, state=QuoteState.WITHDRAWN, revision=quote.revision + 1, update_time=now
            )

        return self._change_quote(
            principal, buyer_id, rfq_id, quote_id, etag, request_id, "WithdrawQuote", change
        )

    def _change_quote(
        self,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        quote_id: str,
        etag: str,
        request_id: str,
        method: str,
        change: Callable[[Quote, dt.datetime], Quote],
    ) -> Quote:
        with self._engine.begin() as conn:
            repo = ProcurementRepository(conn)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._quote_by_name(repo, principal, earlier)
            rfq = self._as_supplier(repo, principal, buyer_id, rfq_id, lock=True)
            quote = self._own_quote(repo, principal, rfq, quote_id)
            now = self._clock()
            domain.require_quotable(rfq, now)
            if not quote.current:
                raise FailedPrecondition(
                    f"{quote.name} is {quote.state.value.lower()}; submit a new quote instead",
                    [PreconditionViolation("STATE", quote.name, f"quote is {quote.state.value}")],
                )
            domain.check_etag(etag, quote.etag, quote.name)
            changed = change(quote, now)
            if not repo.save_quote(changed, quote.revision):
                raise Conflict(f"{quote.name} changed concurrently; read it again", quote.name)
            count = rfq.quote_count - (0 if changed.current else 1)
            verb = "updated" if changed.current else "withdrawn"
            self._quote_events(conn, principal, rfq, changed, verb, count)
            audit.record(conn, principal, f"quote.{verb}", changed.name)
            idempotency.remember(conn, principal, method, request_id, changed.name)
        return changed

    def _quote_events(
        self,
        conn: Connection,
        principal: Principal,
        rfq: Rfq,
        quote: Quote,
        verb: str,
        quote_count: int,
    ) -> None:
        # The content goes to the supplier alone; the buyer hears only that quotes changed.
        supplier = f"organizations/{quote.supplier_id}"
        self._emit(
            conn,
            principal,
            QUOTE_EVENTS[verb],
            quote.name,
            events_pb2.QuoteChanged(quote=quote_proto(quote), rfq=rfq.name),
            key=quote.supplier_id,
            audience=[supplier],
        )
        # The buyer's notice that quotes changed is the buyer's alone: the quoting supplier
        # must not hear how many others quoted, and the buyer not who quoted while bids are
        # sealed, so its originating organization is the RFQ's buyer.
        outbox.enqueue(
            conn,
            make_envelope(
                source=SOURCE,
                event_type="procurement.quote.received",
                subject=rfq.name,
                organization=f"organizations/{rfq.buyer_id}",
                data=events_pb2.QuoteReceived(
                    rfq=rfq.name, quote_count=quote_count, invited_count=len(rfq.suppliers)
                ),
                audience=[f"organizations/{rfq.buyer_id}"],
            ),
            rfq.id,
        )

    def get_quote(self, principal: Principal, buyer_id: str, rfq_id: str, quote_id: str) -> Quote:
        with read_only(self._engine) as conn:
            repo = ProcurementRepository(conn)
            return self._quote_by_name(
                repo, principal, f"organizations/{buyer_id}/rfqs/{rfq_id}/quotes/{quote_id}"
            )

    def list_quotes(
        self, principal: Principal, buyer_id: str, rfq_id: str, page: Page
    ) -> Listed[Quote]:
        """A supplier lists its own quotes; the buyer all of them once the RFQ is closed."""
        with read_only(self._engine) as conn:
            repo = ProcurementRepository(conn)
            rfq = self._visible(repo, principal, buyer_id, rfq_id)
            if principal.organization_id == rfq.buyer_id or principal.service_account:
                domain.require_unsealed(rfq)
                supplier: str | None = None
            else:
                supplier = principal.organization_id
            rows = repo.list_quotes(rfq, supplier, page.after_seq, page.limit + 1)
        return page_of(page, rows)

    # access ----------------------------------------------------------------------------

    def _visible(
        self,
        repo: ProcurementRepository,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        lock: bool = False,
    ) -> Rfq:
        name = f"organizations/{buyer_id}/rfqs/{rfq_id}"
        rfq = repo.get_rfq(buyer_id, rfq_id, lock=lock)
        if rfq is not None and (
            principal.organization_id == buyer_id
            or principal.service_account
            or (rfq.was_opened and principal.organization_id in rfq.suppliers)
        ):
            return rfq
        raise NotFound(f"{name} not found")

    def _as_buyer(
        self,
        repo: ProcurementRepository,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        action: str,
        lock: bool = False,
    ) -> Rfq:
        rfq = self._visible(repo, principal, buyer_id, rfq_id, lock=lock)
        if principal.organization_id != rfq.buyer_id:
            raise PermissionDenied(f"only organizations/{rfq.buyer_id} can {action} {rfq.name}")
        return rfq

    def _as_supplier(
        self,
        repo: ProcurementRepository,
        principal: Principal,
        buyer_id: str,
        rfq_id: str,
        lock: bool = False,
    ) -> Rfq:
        rfq = self._visible(repo, principal, buyer_id, rfq_id, lock=lock)
        if principal.organization_id not in rfq.suppliers:
            raise PermissionDenied(
                f"only invited suppliers quote on {rfq.name}, not {principal.organization_name}"
            )
        return rfq

    def _own_quote(
        self, repo: ProcurementRepository, principal: Principal, rfq: Rfq, quote_id: str
    ) -> Quote:
        quote = repo.get_quote(rfq, quote_id)
        if quote is None or quote.supplier_id != principal.organization_id:
            raise NotFound(f"{rfq.name}/quotes/{quote_id} not found")
        return quote

    def _quote_by_name(self, repo: ProcurementRepository, principal: Principal, name: str) -> Quote:
        buyer_id, rfq_id, quote_id = names.parse(
            name, "organizations/{organization}/rfqs/{rfq}/quotes/{quote}", "name"
        )
        rfq = self._visible(repo, principal, buyer_id, rfq_id)
        if principal.organization_id == rfq.buyer_id:
            domain.require_unsealed(rfq)
            quote = repo.get_quote(rfq, quote_id)
            if quote is None:
                raise NotFound(f"{name} not found")
            return quote
        return self._own_quote(repo, principal, rfq, quote_id)

    def _rfq_by_name(self, principal: Principal, name: str) -> Rfq:
        with read_only(self._engine) as conn:
            return self._load_rfq(ProcurementRepository(conn), name)

    def _load_rfq(self, repo: ProcurementRepository, name: str) -> Rfq:
        buyer_id, rfq_id = names.parse(name, "organizations/{organization}/rfqs/{rfq}", "name")
        rfq = repo.get_rfq(buyer_id, rfq_id)
        if rfq is None:
            raise NotFound(f"{name} not found")
        return rfq

    def _replayed(self, principal: Principal, method: str, request_id: str) -> str | None:
        with read_only(self._engine) as conn:
            return idempotency.replayed(conn, principal, method, request_id)

    def _envelope(
        self,
        principal: Principal,
        event_type: str,
        subject: str,
        data: Message,
        audience: Sequence[str] = (),
    ) -> EventEnvelope:
        return make_envelope(
            source=SOURCE,
            event_type=event_type,
            subject=subject,
            organization=principal.organization_name,
            data=data,
            audience=audience,
        )

    def _emit(
        self,
        conn: Connection,
        principal: Principal,
        event_type: str,
        subject: str,
        data: Message,
        key: str,
        audience: Sequence[str] = (),
    ) -> None:
        outbox.enqueue(conn, self._envelope(principal, event_type, subject, data, audience), key)


# Spelled out, so that every event type stands in the code as it is emitted.
QUOTE_EVENTS = {
    "submitted": "procurement.quote.submitted",
    "updated": "procurement.quote.updated",
    "withdrawn": "procurement.quote.withdrawn",
}


def _require_buyer_or_platform(principal: Principal, buyer_id: str) -> None:
    """A buyer creates its own RFQs; the platform's service account also creates them on a
    buyer's behalf (the disruption workflow re-sources the buyer's single-sourced items)."""
    if not principal.service_account:
        authz.require_own_organization(principal, buyer_id, f"organizations/{buyer_id}")


def _require_automatic(rfq: Rfq, action: str) -> None:
    """The platform acts for the buyer only where the buyer chose so by the award policy."""
    allowed = {AwardPolicy.AUTOMATIC}
    if action == "evaluate":  # ranking, to propose an award the buyer approves
        allowed.add(AwardPolicy.AUTOMATIC_AFTER_APPROVAL)
    if rfq.award_policy not in allowed:
        raise PermissionDenied(
            f"only organizations/{rfq.buyer_id} can {action} {rfq.name}: its award policy is "
            f"{rfq.award_policy.value}"
        )
