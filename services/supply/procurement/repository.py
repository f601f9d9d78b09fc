"""SQL storage of RFQs, invitations, quotes and awards, on a connection inside a transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from services.shared.db import organizations
from services.supply.procurement.domain import (
    Allocation,
    Attachment,
    AwardPolicy,
    Quote,
    QuoteState,
    QuoteTerms,
    Rfq,
    RfqState,
    Weights,
)
from services.supply.procurement.tables import quotes, rfq_allocations, rfq_suppliers, rfqs


def _attachments_json(attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    return [
        {"file_name": a.file_name, "sha256": a.sha256, "size": a.size_bytes, "type": a.media_type}
        for a in attachments
    ]


def _quote(row: Any, buyer_id: str) -> Quote:
    return Quote(
        id=row.id,
        rfq_id=row.rfq_id,
        buyer_id=buyer_id,
        supplier_id=row.supplier_id,
        terms=QuoteTerms(
            unit_price=row.unit_price,
            lead_time_days=row.lead_time_days,
            capacity=row.capacity,
            valid_until=row.valid_until,
            notes=row.notes,
            attachments=tuple(
                Attachment(a["file_name"], a["sha256"], a["size"], a["type"])
                for a in row.attachments
            ),
        ),
        state=QuoteState(row.state),
        revision=row.revision,
        create_time=row.create_time,
        update_time=row.update_time,
    )


class ProcurementRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # organizations ---------------------------------------------------------------------

    def existing_organizations(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            found.update(
                self.conn.execute(
                    select(organizations.c.id).where(organizations.c.id.in_(chunk))
                ).scalars()
            )
        return found

    # RFQs ------------------------------------------------------------------------------

    def add_rfq(self, rfq: Rfq) -> None:
        self.conn.execute(insert(rfqs).values(**self._rfq_values(rfq), id=rfq.id))
        if rfq.suppliers:
            self.conn.execute(
                insert(rfq_suppliers),
                [{"rfq_id": rfq.id, "supplier_id": s} for s in rfq.suppliers],
            )

    @staticmethod
    def _rfq_values(rfq: Rfq) -> dict[str, Any]:
        return {
            "buyer_id": rfq.buyer_id,
            "display_name": rfq.display_name,
            "item": rfq.item,
            "quantity": rfq.quantity,
            "due_time": rfq.due_time,
            "design_revision": rfq.design_revision,
            "quote_deadline": rfq.quote_deadline,
            "weight_price": rfq.weights.price,
            "weight_lead_time": rfq.weights.lead_time,
            "weight_supplier_risk": rfq.weights.supplier_risk,
            "weight_capacity_fit": rfq.weights.capacity_fit,
            "currency_code": rfq.currency_code,
            "state": rfq.state.value,
            "version": rfq.version,
            "create_time": rfq.create_time,
            "update_time": rfq.update_time,
            "open_time": rfq.open_time,
            "close_time": rfq.close_time,
            "award_policy": rfq.award_policy.value,
            "proposed_allocations": [
                {"supplier_id": a.supplier_id, "quantity": a.quantity, "quote_id": a.quote_id}
                for a in rfq.proposed
            ]
            or None,
        }

    def save_rfq(self, rfq: Rfq, expected_version: int) -> bool:
        """Compare-and-set on the version: False when another writer changed the RFQ first."""
        result = self.conn.execute(
            update(rfqs)
            .where(rfqs.c.id == rfq.id, rfqs.c.version == expected_version)
            .values(**self._rfq_values(rfq))
        )
        return result.rowcount == 1

    def get_rfq(self, buyer_id: str, rfq_id: str, lock: bool = False) -> Rfq | None:
        query = select(rfqs).where(rfqs.c.id == rfq_id, rfqs.c.buyer_id == buyer_id)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            return None
        return self._load([row])[0][1]

    def is_invited(self, rfq_id: str, supplier_id: str) -> bool:
        row = self.conn.execute(
            select(rfq_suppliers.c.rfq_id).where(
                rfq_suppliers.c.rfq_id == rfq_id, rfq_suppliers.c.supplier_id == supplier_id
            )
        ).first()
        return row is not None

    def list_rfqs_of_buyer(
        self, buyer_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Rfq]]:
        rows = self.conn.execute(
            select(rfqs)
            .where(rfqs.c.buyer_id == buyer_id, rfqs.c.seq > after_seq)
            .order_by(rfqs.c.seq)
            .limit(limit)
        ).all()
        return self._load(rows)

    def list_rfqs_invited(
        self, supplier_id: str, buyer_id: str | None, after_seq: int, limit: int
    ) -> list[tuple[int, Rfq]]:
        """RFQs the supplier was told of (opened at some point), optionally of one buyer."""
        conditions = [
            rfq_suppliers.c.supplier_id == supplier_id,
            rfqs.c.open_time.is_not(None),
            rfqs.c.seq > after_seq,
        ]
        if buyer_id is not None:
            conditions.append(rfqs.c.buyer_id == buyer_id)
        rows = self.conn.execute(
            select(rfqs)
            .join(rfq_suppliers, rfq_suppliers.c.rfq_id == rfqs.c.id)
            .where(and_(*conditions))
            .order_by(rfqs.c.seq)
            .limit(limit)
        ).all()
        return self._load(rows)

    def _load(self, rows: Sequence[Any]) -> list[tuple[int, Rfq]]:
        ids = [row.id for row in rows]
        if not ids:
            return []
        suppliers: dict[str, list[str]] = {i: [] for i in ids}
        for rfq_id, supplier_id in self.conn.execute(
            select(rfq_suppliers.c.rfq_id, rfq_suppliers.c.supplier_id)
            .where(rfq_suppliers.c.rfq_id.in_(ids))
            .order_by(rfq_suppliers.c.supplier_id)
        ):
            suppliers[rfq_id].append(supplier_id)
        allocations: dict[str, list[Allocation]] = {i: [] for i in ids}
        for a in self.conn.execute(
            select(rfq_allocations)
            .where(rfq_allocations.c.rfq_id.in_(ids))
            .order_by(rfq_allocations.c.supplier_id)
        ):
            allocations[a.rfq_id].append(Allocation(a.supplier_id, a.quantity, a.quote_id))
        counts: dict[str, int] = dict(
            self.conn.execute(
                select(quotes.c.rfq_id, func.count())
                .where(quotes.c.rfq_id.in_(ids), quotes.c.state == QuoteState.SUBMITTED.value)
                .group_by(quotes.c.rfq_id)
            ).all()
        )
        return [
            (
                row.seq,
                Rfq(
                    id=row.id,
                    buyer_id=row.buyer_id,
                    display_name=row.display_name,
                    item=row.item,
                    quantity=row.quantity,
                    due_time=row.due_time,
                    design_revision=row.design_revision,
                    quote_deadline=row.quote_deadline,
                    weights=Weights(
                        row.weight_price,
                        row.weight_lead_time,
                        row.weight_supplier_risk,
                        row.weight_capacity_fit,
                    ),
                    currency_code=row.currency_code,
                    state=RfqState(row.state),
                    version=row.version,
                    create_time=row.create_time,
                    update_time=row.update_time,
                    suppliers=tuple(suppliers[row.id]),
                    open_time=row.open_time,
                    close_time=row.close_time,
                    allocations=tuple(allocations[row.id]),
                    quote_count=int(counts.get(row.id, 0)),
                    award_policy=AwardPolicy(row.award_policy),
                    proposed=tuple(
                        Allocation(a["supplier_id"], a["quantity"], a["quote_id"])
                        for a in row.proposed_allocations or ()
                    ),
                ),
            )
            for row in rows
        ]

    def add_allocations(self, rfq_id: str, allocations: Sequence[Allocation]) -> None:
        self.conn.execute(
            insert(rfq_allocations),
            [
                {
                    "rfq_id": rfq_id,
                    "supplier_id": a.supplier_id,
                    "quote_id": a.quote_id,
                    "quantity": a.quantity,
                }
                for a in allocations
            ],
        )

    # quotes ----------------------------------------------------------------------------

    def add_quote(self, quote: Quote) -> None:
        self.conn.execute(insert(quotes).values(id=quote.id, **self._quote_values(quote)))

    @staticmethod
    def _quote_values(quote: Quote) -> dict[str, Any]:
        return {
            "rfq_id": quote.rfq_id,
            "supplier_id": quote.supplier_id,
            "unit_price": quote.terms.unit_price,
            "lead_time_days": quote.terms.lead_time_days,
            "capacity": quote.terms.capacity,
            "valid_until": quote.terms.valid_until,
            "notes": quote.terms.notes,
            "attachments": _attachments_json(quote.terms.attachments),
            "state": quote.state.value,
            "revision": quote.revision,
            "create_time": quote.create_time,
            "update_time": quote.update_time,
        }

    def save_quote(self, quote: Quote, expected_revision: int) -> bool:
        result = self.conn.execute(
            update(quotes)
            .where(quotes.c.id == quote.id, quotes.c.revision == expected_revision)
            .values(**self._quote_values(quote))
        )
        return result.rowcount == 1

    def get_quote(self, rfq: Rfq, quote_id: str) -> Quote | None:
        row = self.conn.execute(
            select(quotes).where(quotes.c.id == quote_id, quotes.c.rfq_id == rfq.id)
        ).first()
        return _quote(row, rfq.buyer_id) if row is not None else None

    def current_quote_of(self, rfq: Rfq, supplier_id: str) -> Quote | None:
        row = self.conn.execute(
            select(quotes).where(
                quotes.c.rfq_id == rfq.id,
                quotes.c.supplier_id == supplier_id,
                quotes.c.state == QuoteState.SUBMITTED.value,
            )
        ).first()
        return _quote(row, rfq.buyer_id) if row is not None else None

    def list_quotes(
        self, rfq: Rfq, supplier_id: str | None, after_seq: int, limit: int | None
    ) -> list[tuple[int, Quote]]:
        """Quotes of an RFQ, all or one supplier's, oldest first."""
        query = select(quotes).where(quotes.c.rfq_id == rfq.id, quotes.c.seq > after_seq)
        if supplier_id is not None:
            query = query.where(quotes.c.supplier_id == supplier_id)
        query = query.order_by(quotes.c.seq)
        if limit is not None:
            query = query.limit(limit)
        return [(row.seq, _quote(row, rfq.buyer_id)) for row in self.conn.execute(query)]
