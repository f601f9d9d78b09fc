"""SQL storage of the supplier network, on a connection inside a transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from services.shared.db import organizations
from services.supply.adapters.tables import (
    bom_lines,
    capabilities,
    disruptions,
    facilities,
    items,
    supply_edge_proposals,
    supply_edges,
    supply_network_version,
)
from services.supply.domain import (
    ACTIVE,
    PROPOSED,
    RESOLVED,
    Capability,
    Disruption,
    Facility,
    Item,
    SupplyEdge,
    capability_record,
    edge_record,
    item_record,
)
from services.supply.domain.records import (
    BomLine,
    CapabilityRecord,
    FacilityRecord,
    ItemRecord,
    SupplyEdgeRecord,
)
from services.supply.domain.views import Viewer


def _facility(row: Any) -> Facility:
    return Facility(
        id=row.id,
        organization_id=row.organization_id,
        display_name=row.display_name,
        region=row.region,
        country_code=row.country_code,
        latitude=row.latitude,
        longitude=row.longitude,
        create_time=row.create_time,
    )


class SqlRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_facility(self, facility: Facility) -> None:
        self.conn.execute(
            insert(facilities).values(
                id=facility.id,
                organization_id=facility.organization_id,
                display_name=facility.display_name,
                region=facility.region,
                country_code=facility.country_code,
                latitude=facility.latitude,
                longitude=facility.longitude,
                create_time=facility.create_time,
            )
        )

    def get_facility(self, organization_id: str, facility_id: str) -> Facility | None:
        row = self.conn.execute(
            select(facilities).where(
                facilities.c.organization_id == organization_id, facilities.c.id == facility_id
            )
        ).first()
        return _facility(row) if row is not None else None

    def list_facilities(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Facility]]:
        rows = self.conn.execute(
            select(facilities)
            .where(facilities.c.organization_id == organization_id, facilities.c.seq > after_seq)
            .order_by(facilities.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _facility(row)) for row in rows]


def _capability(row: Any) -> Capability:
    return Capability(
        id=row.id,
        organization_id=row.organization_id,
        facility_id=row.facility_id,
        process=row.process,
        materials=tuple(row.materials),
        monthly_capacity=row.monthly_capacity,
        certifications=tuple(row.certifications),
    )


def _item(row: Any, components: tuple[tuple[str, float, str], ...] = ()) -> Item:
    return Item(
        id=row.id,
        organization_id=row.organization_id,
        display_name=row.display_name,
        part_number=row.part_number,
        end_item=row.end_item,
        unit_revenue=row.unit_revenue,
        weekly_demand=row.weekly_demand,
        inventory_weeks=row.inventory_weeks,
        design=row.design,
        revision=row.revision,
        process=row.process,
        material=row.material,
        components=components,
    )


def _edge(row: Any) -> SupplyEdge:
    return SupplyEdge(
        id=row.id,
        owner_id=row.owner_id,
        facility_id=row.facility_id,
        supplier_id=row.supplier_id,
        item_id=row.item_id,
        item_organization_id=row.item_organization_id,
        customer_id=row.customer_id,
        lead_time_days=row.lead_time_days,
        unit_price=row.unit_price,
        share=row.share,
        monthly_volume=row.monthly_volume,
    )


def _proposal(row: Any) -> SupplyEdge:
    return replace(_edge(row), state=row.state)


def _disruption(row: Any) -> Disruption:
    return Disruption(
        id=row.id,
        organization_id=row.organization_id,
        facility_id=row.facility_id,
        kind=row.kind,
        capacity_factor=row.capacity_factor,
        expected_duration_days=row.expected_duration_days,
        description=row.description,
        state=row.state,
        create_time=row.create_time,
        resolve_time=row.resolve_time,
        affected_customers=tuple(row.affected_customers),
    )


def _chunks(ids: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    # Bounded IN lists: PostgreSQL and SQLite both cap bound parameters per statement.
    batch: list[str] = []
    for value in ids:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _capability_values(capability: Capability) -> dict[str, Any]:
    return dict(
        organization_id=capability.organization_id,
        facility_id=capability.facility_id,
        process=capability.process,
        materials=list(capability.materials),
        monthly_capacity=capability.monthly_capacity,
        certifications=list(capability.certifications),
    )


def _item_values(item: Item) -> dict[str, Any]:
    return dict(
        organization_id=item.organization_id,
        display_name=item.display_name,
        part_number=item.part_number,
        end_item=item.end_item,
        unit_revenue=item.unit_revenue,
        weekly_demand=item.weekly_demand,
        inventory_weeks=item.inventory_weeks,
        design=item.design,
        revision=item.revision,
        process=item.process,
        material=item.material,
    )


def _edge_values(edge: SupplyEdge) -> dict[str, Any]:
    return dict(
        owner_id=edge.owner_id,
        facility_id=edge.facility_id,
        supplier_id=edge.supplier_id,
        item_id=edge.item_id,
        item_organization_id=edge.item_organization_id,
        customer_id=edge.customer_id,
        lead_time_days=edge.lead_time_days,
        unit_price=edge.unit_price,
        share=edge.share,
        monthly_volume=edge.monthly_volume,
    )


class NetworkRepository(SqlRepository):
    """Capabilities, items, bills of materials, supply edges and disruptions."""

    # --- version counter -------------------------------------------------------------------

    def bump_version(self) -> int:
        """Marks the network changed in this transaction; returns the new version. The update
        locks the row, so network writers serialize on it (PostgreSQL) as they do on SQLite."""
        self.conn.execute(
            update(supply_network_version)
            .where(supply_network_version.c.id == 1)
            .values(version=supply_network_version.c.version + 1)
        )
        return self.version()

    def lock_version(self) -> None:
        """Serializes this transaction with every other network writer from here on (row lock
        on PostgreSQL; SQLite write transactions are serialized already)."""
        self.conn.execute(
            select(supply_network_version.c.version)
            .where(supply_network_version.c.id == 1)
            .with_for_update()
        )

    def version(self) -> int:
        return int(
            self.conn.execute(
                select(supply_network_version.c.version).where(supply_network_version.c.id == 1)
            ).scalar_one()
        )

    # --- lookups by id ---------------------------------------------------------------------

    def organizations_among(self, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in _chunks(ids):
            found.update(
                self.conn.execute(
                    select(organizations.c.id).where(organizations.c.id.in_(batch))
                ).scalars()
            )
        return found

    def facilities_by_id(self, ids: Iterable[str]) -> dict[str, Facility]:
        found: dict[str, Facility] = {}
        for batch in _chunks(ids):
            for row in self.conn.execute(select(facilities).where(facilities.c.id.in_(batch))):
                found[row.id] = _facility(row)
        return found

    def capabilities_by_id(self, ids: Iterable[str]) -> dict[str, Capability]:
        found: dict[str, Capability] = {}
        for batch in _chunks(ids):
            for row in self.conn.execute(select(capabilities).where(capabilities.c.id.in_(batch))):
                found[row.id] = _capability(row)
        return found

    def items_by_id(self, ids: Iterable[str]) -> dict[str, Item]:
        found: dict[str, Item] = {}
        for batch in _chunks(ids):
            rows = self.conn.execute(select(items).where(items.c.id.in_(batch))).all()
            lines = self._components([row.id for row in rows])
            for row in rows:
                found[row.id] = _item(row, lines.get(row.id, ()))
        return found

    def edges_by_id(self, ids: Iterable[str]) -> dict[str, SupplyEdge]:
        found: dict[str, SupplyEdge] = {}
        for batch in _chunks(ids):
            for row in self.conn.execute(select(supply_edges).where(supply_edges.c.id.in_(batch))):
                found[row.id] = _edge(row)
        return found

    def _components(self, parent_ids: list[str]) -> dict[str, tuple[tuple[str, float, str], ...]]:
        lines: dict[str, list[tuple[str, float, str]]] = {}
        for batch in _chunks(parent_ids):
            for row in self.conn.execute(
                select(bom_lines, items.c.organization_id)
                .join(items, items.c.id == bom_lines.c.component_item_id)
                .where(bom_lines.c.parent_item_id.in_(batch))
            ):
                lines.setdefault(row.parent_item_id, []).append(
                    (row.component_item_id, row.quantity, row.organization_id)
                )
        return {parent: tuple(sorted(found)) for parent, found in lines.items()}

    def all_bom(self) -> dict[str, dict[str, float]]:
        """Every bill of materials line: parent -> {component: quantity}."""
        bom: dict[str, dict[str, float]] = {}
        for row in self.conn.execute(select(bom_lines)):
            bom.setdefault(row.parent_item_id, {})[row.component_item_id] = row.quantity
        return bom

    def bought_items(self, organization_id: str) -> set[str]:
        """Items on supply edges where the organization is the customer."""
        return set(
            self.conn.execute(
                select(supply_edges.c.item_id)
                .where(supply_edges.c.customer_id == organization_id)
                .distinct()
            ).scalars()
        )

    def viewer(self, organization_id: str) -> Viewer:
        """What the organization knows first-hand: its own facilities and items, and the
        facilities and items of the edges where it is the customer."""
        own_facilities = self.conn.execute(
            select(facilities.c.id).where(facilities.c.organization_id == organization_id)
        ).scalars()
        own_items = self.conn.execute(
            select(items.c.id).where(items.c.organization_id == organization_id)
        ).scalars()
        bought = self.conn.execute(
            select(supply_edges.c.facility_id, supply_edges.c.item_id).where(
                supply_edges.c.customer_id == organization_id
            )
        ).all()
        return Viewer(
            organization_id,
            frozenset(own_facilities),
            frozenset(row.facility_id for row in bought),
            frozenset(own_items),
            frozenset(row.item_id for row in bought),
        )

    # --- facilities (import updates them) ----------------------------------------------------

    def update_facility(self, facility: Facility) -> None:
        self.conn.execute(
            update(facilities)
            .where(facilities.c.id == facility.id)
            .values(
                display_name=facility.display_name,
                region=facility.region,
                country_code=facility.country_code,
                latitude=facility.latitude,
                longitude=facility.longitude,
            )
        )

    def all_facilities(self, organization_id: str) -> list[Facility]:
        rows = self.conn.execute(
            select(facilities)
            .where(facilities.c.organization_id == organization_id)
            .order_by(facilities.c.seq)
        )
        return [_facility(row) for row in rows]

    # --- capabilities -------------------------------------------------------------------------

    def put_capability(self, capability: Capability, new: bool, now: dt.datetime) -> None:
        values = _capability_values(capability)
        if new:
            self.conn.execute(
                insert(capabilities).values(id=capability.id, create_time=now, **values)
            )
        else:
            self.conn.execute(
                update(capabilities).where(capabilities.c.id == capability.id).values(**values)
            )

    def get_capability(
        self, organization_id: str, facility_id: str, capability_id: str
    ) -> Capability | None:
        row = self.conn.execute(
            select(capabilities).where(
                capabilities.c.organization_id == organization_id,
                capabilities.c.facility_id == facility_id,
                capabilities.c.id == capability_id,
            )
        ).first()
        return _capability(row) if row is not None else None

    def list_capabilities(
        self, facility_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Capability]]:
        rows = self.conn.execute(
            select(capabilities)
            .where(capabilities.c.facility_id == facility_id, capabilities.c.seq > after_seq)
            .order_by(capabilities.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _capability(row)) for row in rows]

    def all_capabilities(self, organization_id: str) -> list[Capability]:
        rows = self.conn.execute(
            select(capabilities)
            .where(capabilities.c.organization_id == organization_id)
            .order_by(capabilities.c.seq)
        )
        return [_capability(row) for row in rows]

    def delete_capability(self, capability_id: str) -> None:
        self.conn.execute(delete(capabilities).where(capabilities.c.id == capability_id))

    # --- items and bills of materials ----------------------------------------------------------

    def put_item(self, item: Item, new: bool, now: dt.datetime) -> None:
        values = _item_values(item)
        if new:
            self.conn.execute(insert(items).values(id=item.id, create_time=now, **values))
        else:
            self.conn.execute(update(items).where(items.c.id == item.id).values(**values))

    def put_bom_line(self, parent: str, component: str, quantity: float, new: bool) -> None:
        if new:
            self.conn.execute(
                insert(bom_lines).values(
                    parent_item_id=parent, component_item_id=component, quantity=quantity
                )
            )
        else:
            self.conn.execute(
                update(bom_lines)
                .where(
                    bom_lines.c.parent_item_id == parent,
                    bom_lines.c.component_item_id == component,
                )
                .values(quantity=quantity)
            )

    def replace_bom(self, parent: str, lines: list[tuple[str, float]]) -> None:
        """Replaces the item's whole bill of materials."""
        self.conn.execute(delete(bom_lines).where(bom_lines.c.parent_item_id == parent))
        if lines:
            self.conn.execute(
                insert(bom_lines),
                [dict(parent_item_id=parent, component_item_id=c, quantity=q) for c, q in lines],
            )

    def get_item(self, organization_id: str, item_id: str) -> Item | None:
        row = self.conn.execute(
            select(items).where(items.c.organization_id == organization_id, items.c.id == item_id)
        ).first()
        if row is None:
            return None
        return _item(row, self._components([row.id]).get(row.id, ()))

    def list_items(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Item]]:
        rows = self.conn.execute(
            select(items)
            .where(items.c.organization_id == organization_id, items.c.seq > after_seq)
            .order_by(items.c.seq)
            .limit(limit)
        ).all()
        lines = self._components([row.id for row in rows])
        return [(row.seq, _item(row, lines.get(row.id, ()))) for row in rows]

    def all_items(self, organization_id: str) -> list[Item]:
        return [item for _, item in self.list_items(organization_id, 0, 10**12)]

    # --- supply edges --------------------------------------------------------------------------

    def put_edge(self, edge: SupplyEdge, new: bool, now: dt.datetime) -> None:
        values = _edge_values(edge)
        if new:
            self.conn.execute(insert(supply_edges).values(id=edge.id, create_time=now, **values))
        else:
            self.conn.execute(
                update(supply_edges).where(supply_edges.c.id == edge.id).values(**values)
            )

    def get_edge(self, edge_id: str) -> SupplyEdge | None:
        row = self.conn.execute(select(supply_edges).where(supply_edges.c.id == edge_id)).first()
        return _edge(row) if row is not None else None

    def list_visible_edges(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, SupplyEdge]]:
        rows = self.conn.execute(
            select(supply_edges)
            .where(
                or_(
                    supply_edges.c.supplier_id == organization_id,
                    supply_edges.c.customer_id == organization_id,
                ),
                supply_edges.c.seq > after_seq,
            )
            .order_by(supply_edges.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _edge(row)) for row in rows]

    def owned_edges(self, organization_id: str) -> list[SupplyEdge]:
        rows = self.conn.execute(
            select(supply_edges)
            .where(supply_edges.c.owner_id == organization_id)
            .order_by(supply_edges.c.seq)
        )
        return [_edge(row) for row in rows]

    def delete_edge(self, edge_id: str) -> None:
        self.conn.execute(delete(supply_edges).where(supply_edges.c.id == edge_id))

    # --- proposals of edges between two organizations ----------------------------------------

    def add_proposals(self, proposals: list[SupplyEdge], now: dt.datetime) -> None:
        if proposals:
            self.conn.execute(
                insert(supply_edge_proposals),
                [
                    dict(
                        id=p.id, state=p.state, create_time=now, update_time=now, **_edge_values(p)
                    )
                    for p in proposals
                ],
            )

    def update_proposal(self, proposal: SupplyEdge, now: dt.datetime) -> None:
        """Stores the proposal's terms and state."""
        self.conn.execute(
            update(supply_edge_proposals)
            .where(supply_edge_proposals.c.id == proposal.id)
            .values(state=proposal.state, update_time=now, **_edge_values(proposal))
        )

    def delete_proposal(self, edge_id: str) -> None:
        self.conn.execute(
            delete(supply_edge_proposals).where(supply_edge_proposals.c.id == edge_id)
        )

    def get_proposal(self, edge_id: str) -> SupplyEdge | None:
        row = self.conn.execute(
            select(supply_edge_proposals).where(supply_edge_proposals.c.id == edge_id)
        ).first()
        return _proposal(row) if row is not None else None

    def proposals_by_id(self, ids: Iterable[str]) -> dict[str, SupplyEdge]:
        found: dict[str, SupplyEdge] = {}
        for batch in _chunks(ids):
            for row in self.conn.execute(
                select(supply_edge_proposals).where(supply_edge_proposals.c.id.in_(batch))
            ):
                found[row.id] = _proposal(row)
        return found

    def list_visible_proposals(
        self, organization_id: str, state: str, after_seq: int, limit: int
    ) -> list[tuple[int, SupplyEdge]]:
        """Proposals in `state` that the organization made or that were made to it."""
        table = supply_edge_proposals
        rows = self.conn.execute(
            select(table)
            .where(
                or_(table.c.supplier_id == organization_id, table.c.customer_id == organization_id),
                table.c.state == state,
                table.c.seq > after_seq,
            )
            .order_by(table.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _proposal(row)) for row in rows]

    def owned_proposals(self, organization_id: str) -> list[SupplyEdge]:
        """The organization's pending proposals (an export carries them, so it re-imports)."""
        table = supply_edge_proposals
        rows = self.conn.execute(
            select(table)
            .where(table.c.owner_id == organization_id, table.c.state == PROPOSED)
            .order_by(table.c.seq)
        )
        return [_proposal(row) for row in rows]

    # --- bulk inserts (import) ---------------------------------------------------------------

    def insert_many(
        self,
        new_facilities: list[Facility],
        new_capabilities: list[Capability],
        new_items: list[Item],
        new_bom_lines: list[tuple[str, str, float]],
        new_edges: list[SupplyEdge],
        now: dt.datetime,
    ) -> None:
        """Inserts new rows with one executemany per table, parents before children."""
        if new_facilities:
            self.conn.execute(
                insert(facilities),
                [
                    dict(
                        id=f.id,
                        organization_id=f.organization_id,
                        display_name=f.display_name,
                        region=f.region,
                        country_code=f.country_code,
                        latitude=f.latitude,
                        longitude=f.longitude,
                        create_time=f.create_time,
                    )
                    for f in new_facilities
                ],
            )
        if new_items:
            self.conn.execute(
                insert(items),
                [dict(id=i.id, create_time=now, **_item_values(i)) for i in new_items],
            )
        if new_capabilities:
            self.conn.execute(
                insert(capabilities),
                [dict(id=c.id, create_time=now, **_capability_values(c)) for c in new_capabilities],
            )
        if new_bom_lines:
            self.conn.execute(
                insert(bom_lines),
                [
                    dict(parent_item_id=p, component_item_id=c, quantity=q)
                    for p, c, q in new_bom_lines
                ],
            )
        if new_edges:
            self.conn.execute(
                insert(supply_edges),
                [dict(id=e.id, create_time=now, **_edge_values(e)) for e in new_edges],
            )

    # --- disruptions ---------------------------------------------------------------------------

    def add_disruption(self, disruption: Disruption) -> None:
        self.conn.execute(
            insert(disruptions).values(
                id=disruption.id,
                organization_id=disruption.organization_id,
                facility_id=disruption.facility_id,
                kind=disruption.kind,
                capacity_factor=disruption.capacity_factor,
                expected_duration_days=disruption.expected_duration_days,
                description=disruption.description,
                state=disruption.state,
                affected_customers=list(disruption.affected_customers),
                create_time=disruption.create_time,
                resolve_time=disruption.resolve_time,
            )
        )

    def get_disruption(self, organization_id: str, disruption_id: str) -> Disruption | None:
        row = self.conn.execute(
            select(disruptions).where(
                disruptions.c.organization_id == organization_id,
                disruptions.c.id == disruption_id,
            )
        ).first()
        return _disruption(row) if row is not None else None

    def list_disruptions(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Disruption]]:
        rows = self.conn.execute(
            select(disruptions)
            .where(disruptions.c.organization_id == organization_id, disruptions.c.seq > after_seq)
            .order_by(disruptions.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _disruption(row)) for row in rows]

    def resolve_disruption(self, disruption_id: str, when: dt.datetime) -> None:
        self.conn.execute(
            update(disruptions)
            .where(disruptions.c.id == disruption_id)
            .values(state=RESOLVED, resolve_time=when)
        )

    def active_disruptions(self) -> list[Disruption]:
        rows = self.conn.execute(select(disruptions).where(disruptions.c.state == ACTIVE))
        return [_disruption(row) for row in rows]

    # --- the whole network, for the analytics ------------------------------------------------

    def load_records(
        self,
    ) -> tuple[
        list[FacilityRecord],
        list[CapabilityRecord],
        list[ItemRecord],
        list[BomLine],
        list[SupplyEdgeRecord],
    ]:
        """Every record of the platform's network, for SupplyNetwork.build."""
        fac = [
            FacilityRecord(
                r.id, r.organization_id, r.region, r.country_code, r.latitude, r.longitude
            )
            for r in self.conn.execute(select(facilities))
        ]
        caps = [capability_record(_capability(r)) for r in self.conn.execute(select(capabilities))]
        its = [item_record(_item(r)) for r in self.conn.execute(select(items))]
        bom = [
            BomLine(r.parent_item_id, r.component_item_id, r.quantity)
            for r in self.conn.execute(select(bom_lines))
        ]
        edges = [edge_record(_edge(r)) for r in self.conn.execute(select(supply_edges))]
        return fac, caps, its, bom, edges

    def item_owners(self, ids: Iterable[str]) -> dict[str, str]:
        """Item id -> owning organization id, for the ids that exist."""
        found: dict[str, str] = {}
        for batch in _chunks(ids):
            for row in self.conn.execute(
                select(items.c.id, items.c.organization_id).where(items.c.id.in_(batch))
            ):
                found[row.id] = row.organization_id
        return found
