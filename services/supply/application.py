"""Use cases of the supply service, each in one transaction with its audit entry and event.

Every change of network data also bumps the network version in its transaction and, once
committed, is applied to the process's in-memory SupplyNetwork (adapters/network_cache.py), which
the analytics query.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy import Connection, Engine

from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.supply.v1 import events_pb2, supply_pb2
from services.shared import audit, idempotency, outbox
from services.shared.db import read_only, utcnow
from services.shared.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.shared.identity import Principal
from services.shared.paging import Listed, Page, page_of
from services.supply.adapters.network_cache import NetworkCache
from services.supply.adapters.repository import NetworkRepository, SqlRepository
from services.supply.analytics import CapableSupplier, NetworkAnalytics
from services.supply.convert import (
    capability_proto,
    edge_proto,
    facility_created,
    item_proto,
)
from services.supply.disruptions import DisruptionReports
from services.supply.domain import (
    ACTIVE,
    DECLINED,
    PROPOSED,
    WITHDRAWN,
    Capability,
    Facility,
    Item,
    SupplyEdge,
    capability_problems,
    capability_record,
    check_facility,
    check_id,
    edge_problems,
    edge_record,
    find_cycle,
    item_problems,
    item_record,
    raise_if,
)
from services.supply.domain.importing import (
    Existing,
    KindCounts,
    parse_rows,
    plan_import,
    referenced_ids,
)
from services.supply.domain.importing import (
    export_records as _export_records,
)
from services.supply.domain.importing import (
    render_rows as _render_rows,
)
from services.supply.domain.network import SupplyNetwork
from services.supply.domain.records import BomLine, FacilityRecord
from services.supply.publishing import emit, envelope, own

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class ImportResult:
    counts: dict[str, KindCounts]
    rows: int


def facility_record(f: Facility) -> FacilityRecord:
    """The analytics' view of a facility."""
    return FacilityRecord(
        f.id, f.organization_id, f.region, f.country_code, f.latitude, f.longitude
    )


class DesignReferences(Protocol):
    def check_readable(self, authorization: str, name: str, field: str) -> None:
        """NotFound unless the caller may read the design or revision `name`."""
        ...


class SupplyApplication:
    """`designs` checks an item's design and revision with the caller's own rights (the design
    service's); without it, an item may name no design at all."""

    def __init__(
        self, engine: Engine, clock: Clock = utcnow, designs: DesignReferences | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._designs = designs
        self._cache = NetworkCache(engine)
        self.analytics = NetworkAnalytics(engine, self._cache)
        self.disruptions = DisruptionReports(engine, self._cache, clock)

    def load_network(self) -> None:
        """Builds the in-memory network now (at start-up) rather than at the first query."""
        with self._cache.network():
            pass

    # --- facilities -----

    def create_facility(
        self,
        principal: Principal,
        organization_id: str,
        display_name: str,
        region: str,
        country_code: str,
        latitude: float,
        longitude: float,
        request_id: str,
    ) -> Facility:
        """Registers a facility of the caller's own organization."""
        own(principal, organization_id, f"organizations/{organization_id}")
        check_facility(display_name, region, country_code, latitude, longitude)
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateFacility", request_id)
            if earlier is not None:
                return self._facility(repo, earlier.split("/")[1], earlier.split("/")[3])
            facility = Facility(
                uuid.uuid4().hex,
                organization_id,
                display_name.strip(),
                region,
                country_code,
                latitude,
                longitude,
                self._clock(),
            )
            repo.add_facility(facility)
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.facility.created",
                facility.name,
                facility_created(facility),
                facility.id,
                [organization_id],
            )
            audit.record(conn, principal, "facility.create", facility.name)
            idempotency.remember(conn, principal, "CreateFacility", request_id, facility.name)
        record = facility_record(facility)
        self._cache.committed(version, lambda n: n.upsert_facility(record))
        return facility

    def get_facility(
        self, principal: Principal, organization_id: str, facility_id: str
    ) -> Facility:
        """A facility of the caller's organization; NotFound otherwise."""
        name = f"organizations/{organization_id}/facilities/{facility_id}"
        own(principal, organization_id, name)
        with read_only(self._engine) as conn:
            return self._facility(SqlRepository(conn), organization_id, facility_id)

    def list_facilities(
        self, principal: Principal, organization_id: str, page: Page
    ) -> Listed[Facility]:
        """One page of the caller's facilities."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            rows = SqlRepository(conn).list_facilities(
                organization_id, page.after_seq, page.limit + 1
            )
        return page_of(page, rows)

    def _facility(self, repo: SqlRepository, organization_id: str, facility_id: str) -> Facility:
        facility = repo.get_facility(organization_id, facility_id)
        if facility is None:
            raise NotFound(f"organizations/{organization_id}/facilities/{facility_id} not found")
        return facility

    # --- capabilities -----

    def create_capability(
        self,
        principal: Principal,
        organization_id: str,
        facility_id: str,
        capability_id: str,
        process: str,
        materials: Sequence[str],
        monthly_capacity: float,
        certifications: Sequence[str],
        request_id: str,
    ) -> Capability:
        """Publishes a capability of one of the caller's facilities."""
        parent = f"organizations/{organization_id}/facilities/{facility_id}"
        own(principal, organization_id, parent)
        capability_id = capability_id or uuid.uuid4().hex
        problems = check_id(capability_id, "capability_id")
        problems += capability_problems(
            "capability.", process, materials, monthly_capacity, certifications
        )
        raise_if(problems)
        capability = Capability(
            capability_id,
            organization_id,
            facility_id,
            process,
            tuple(sorted(set(materials))),
            monthly_capacity,
            tuple(sorted(set(certifications))),
        )
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateCapability", request_id)
            if earlier is not None:
                return self._capability(repo, earlier)
            self._facility(repo, organization_id, facility_id)
            if repo.capabilities_by_id([capability_id]):
                raise InvalidArgument.field("capability_id", f"{capability_id!r} is already used")
            repo.put_capability(capability, True, self._clock())
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.capability.created",
                capability.name,
                events_pb2.CapabilityCreated(capability=capability_proto(capability)),
                facility_id,
                [organization_id],
            )
            audit.record(conn, principal, "capability.create", capability.name)
            idempotency.remember(conn, principal, "CreateCapability", request_id, capability.name)
        record = capability_record(capability)
        self._cache.committed(version, lambda n: n.upsert_capability(record))
        return capability

    def get_capability(self, principal: Principal, name: str) -> Capability:
        """A capability of the caller's; NotFound otherwise."""
        with read_only(self._engine) as conn:
            return self._capability(NetworkRepository(conn), name, principal)

    def _capability(
        self, repo: NetworkRepository, name: str, principal: Principal | None = None
    ) -> Capability:
        parts = name.split("/")
        organization_id, facility_id, capability_id = parts[1], parts[3], parts[5]
        if principal is not None:
            own(principal, organization_id, name)
        capability = repo.get_capability(organization_id, facility_id, capability_id)
        if capability is None:
            raise NotFound(f"{name} not found")
        return capability

    def list_capabilities(
        self, principal: Principal, organization_id: str, facility_id: str, page: Page
    ) -> Listed[Capability]:
        """One page of the capabilities of one of the caller's facilities."""
        parent = f"organizations/{organization_id}/facilities/{facility_id}"
        own(principal, organization_id, parent)
        with read_only(self._engine) as conn:
            repo = NetworkRepository(conn)
            self._facility(repo, organization_id, facility_id)
            rows = repo.list_capabilities(facility_id, page.after_seq, page.limit + 1)
        return page_of(page, rows)

    def delete_capability(self, principal: Principal, name: str, request_id: str) -> None:
        """Withdraws a capability of the caller's."""
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            if idempotency.replayed(conn, principal, "DeleteCapability", request_id):
                return
            capability = self._capability(repo, name, principal)
            repo.delete_capability(capability.id)
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.capability.deleted",
                name,
                events_pb2.NetworkResourceDeleted(name=name),
                capability.facility_id,
                [capability.organization_id],
            )
            audit.record(conn, principal, "capability.delete", name)
            idempotency.remember(conn, principal, "DeleteCapability", request_id, name)
        self._cache.committed(version, lambda n: n.remove_capability(capability.id))

    # --- items -----

    def create_item(
        self, principal: Principal, item: Item, request_id: str, authorization: str = ""
    ) -> Item:
        """Creates `item` (id may be empty: one is generated) with its bill of materials; its
        design and revision must be ones the caller may read (`authorization`, its token)."""
        own(principal, item.organization_id, f"organizations/{item.organization_id}")
        if not item.id:
            item = _with_id(item, uuid.uuid4().hex)
        raise_if(check_id(item.id, "item_id") + _item_problems(item))
        self.check_design_references(authorization, [("item.", item.design, item.revision)])
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateItem", request_id)
            if earlier is not None:
                return self._get_item(repo, principal, earlier)
            if repo.items_by_id([item.id]):
                raise InvalidArgument.field("item_id", f"{item.id!r} is already used")
            _check_components_exist(repo, item)
            # A new item has no parents yet, so its components cannot close a cycle.
            repo.put_item(item, True, self._clock())
            for component, quantity, _ in item.components:
                repo.put_bom_line(item.id, component, quantity, True)
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.item.created",
                item.name,
                events_pb2.ItemCreated(item=item_proto(item)),
                item.id,
                [item.organization_id],
            )
            audit.record(conn, principal, "item.create", item.name)
            idempotency.remember(conn, principal, "CreateItem", request_id, item.name)
        record = item_record(item)
        lines = [BomLine(item.id, c, q) for c, q, _ in item.components]

        def apply(network: SupplyNetwork) -> None:
            network.upsert_item(record)
            for line in lines:
                network.upsert_bom_line(line)

        self._cache.committed(version, apply)
        return item

    def update_item(
        self,
        principal: Principal,
        item_name: str,
        changes: Item,
        mask: Sequence[str],
        request_id: str,
        authorization: str = "",
    ) -> Item:
        """Changes the fields of the caller's item named in `mask` (AIP-134); "components"
        replaces its bill of materials, refused when it would close a cycle. A new design or
        revision must be one the caller may read."""
        unknown = sorted(set(mask) - UPDATABLE_ITEM_FIELDS)
        if not mask or unknown:
            raise InvalidArgument.field(
                "update_mask",
                f"name fields among {', '.join(sorted(UPDATABLE_ITEM_FIELDS))}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            )
        if not principal.service_account:
            own(principal, item_name.split("/")[1] if "/" in item_name else "", item_name)
        self.check_design_references(
            authorization,
            [
                (
                    "item.",
                    changes.design if "design" in mask else "",
                    changes.revision if "revision" in mask else "",
                )
            ],
        )
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            # The cycle check reads every bill of materials; no other writer may add lines
            # until this commits.
            repo.lock_version()
            current = self._get_item(repo, principal, item_name)
            if idempotency.replayed(conn, principal, "UpdateItem", request_id):
                return current
            updated = replace(current, **{f: getattr(changes, f) for f in mask})
            raise_if(_item_problems(updated))
            if "components" in mask:
                _check_components_exist(repo, updated)
                bom = repo.all_bom()
                bom[updated.id] = {c: q for c, q, _ in updated.components}
                cycle = find_cycle(bom)
                if cycle is not None:
                    raise InvalidArgument.field(
                        "item.components",
                        "would close a cycle in the bill of materials: " + " -> ".join(cycle),
                    )
                repo.replace_bom(updated.id, [(c, q) for c, q, _ in updated.components])
            repo.put_item(updated, False, self._clock())
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.item.updated",
                updated.name,
                events_pb2.ItemUpdated(item=item_proto(updated), update_mask=sorted(mask)),
                updated.id,
                [updated.organization_id],
            )
            audit.record(conn, principal, "item.update", updated.name, {"fields": sorted(mask)})
            idempotency.remember(conn, principal, "UpdateItem", request_id, updated.name)
        record = item_record(updated)
        old = [c for c, _, _ in current.components]
        new = [BomLine(updated.id, c, q) for c, q, _ in updated.components]

        def apply(network: SupplyNetwork) -> None:
            network.upsert_item(record)
            if "components" in mask:
                for component in old:
                    network.remove_bom_line(updated.id, component)
                for line in new:
                    network.upsert_bom_line(line)

        self._cache.committed(version, apply)
        return updated

    def check_design_references(
        self, authorization: str, references: Sequence[tuple[str, str, str]]
    ) -> None:
        """(field prefix, design, revision) of items: each named design and revision must be
        one the caller may read, asked of the design service with the caller's own token, so
        another company's design reads as not found whether it exists or not. Asked outside any
        transaction: the design service may share this database."""
        seen: set[str] = set()
        for prefix, design, revision in references:
            for field, name in ((f"{prefix}design", design), (f"{prefix}revision", revision)):
                if not name or name in seen:
                    continue
                seen.add(name)
                if self._designs is None:
                    raise FailedPrecondition(
                        f"{field}: no design service is configured to check {name}",
                        [PreconditionViolation("DESIGN_SERVICE", name, "not configured")],
                    )
                self._designs.check_readable(authorization, name, field)

    def get_item(self, principal: Principal, item_name: str) -> Item:
        """The item named `organizations/{o}/items/{i}`; NotFound unless it is the caller's."""
        with read_only(self._engine) as conn:
            return self._get_item(NetworkRepository(conn), principal, item_name)

    def _get_item(self, repo: NetworkRepository, principal: Principal, item_name: str) -> Item:
        parts = item_name.split("/")
        if len(parts) != 4 or parts[0] != "organizations" or parts[2] != "items":
            raise InvalidArgument.field(
                "item", f"{item_name!r} is not organizations/{{o}}/items/{{i}}"
            )
        if not principal.service_account:  # the platform re-sources items for their buyers
            own(principal, parts[1], item_name)
        item = repo.get_item(parts[1], parts[3])
        if item is None:
            raise NotFound(f"{item_name} not found")
        return item

    def list_items(self, principal: Principal, organization_id: str, page: Page) -> Listed[Item]:
        """One page of the caller's items with their bills of materials."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            rows = NetworkRepository(conn).list_items(
                organization_id, page.after_seq, page.limit + 1
            )
        return page_of(page, rows)

    # --- supply edges -----

    def create_supply_edge(
        self,
        principal: Principal,
        organization_id: str,
        edge_id: str,
        facility_name: str,
        item_name: str,
        customer_name: str,
        lead_time_days: float,
        unit_price: float,
        share: float,
        monthly_volume: float,
        request_id: str,
    ) -> SupplyEdge:
        """Records that a facility supplies an item to a customer; the caller is one of the two
        parties. Between two organizations this is only a proposal until the other confirms."""
        own(principal, organization_id, f"organizations/{organization_id}")
        edge_id = edge_id or uuid.uuid4().hex
        problems = check_id(edge_id, "supply_edge_id")
        problems += edge_problems("supply_edge.", lead_time_days, unit_price, share, monthly_volume)
        fparts, iparts, cparts = (
            facility_name.split("/"),
            item_name.split("/"),
            customer_name.split("/"),
        )
        if len(fparts) != 4 or fparts[0] != "organizations" or fparts[2] != "facilities":
            problems.append(
                FieldViolation("supply_edge.facility", "must be organizations/{o}/facilities/{f}")
            )
        if len(iparts) != 4 or iparts[0] != "organizations" or iparts[2] != "items":
            problems.append(
                FieldViolation("supply_edge.item", "must be organizations/{o}/items/{i}")
            )
        if len(cparts) != 2 or cparts[0] != "organizations":
            problems.append(FieldViolation("supply_edge.customer", "must be organizations/{o}"))
        raise_if(problems)
        supplier_id, facility_id = fparts[1], fparts[3]
        item_owner, item_id = iparts[1], iparts[3]
        customer_id = cparts[1]
        if organization_id not in (supplier_id, customer_id):
            raise InvalidArgument.field(
                "supply_edge", "you must be the supplier (own the facility) or the customer"
            )
        if item_owner not in (supplier_id, customer_id):
            raise InvalidArgument.field(
                "supply_edge.item", "must be an item of the supplier or of the customer"
            )
        edge = SupplyEdge(
            edge_id,
            organization_id,
            facility_id,
            supplier_id,
            item_id,
            item_owner,
            customer_id,
            lead_time_days,
            unit_price,
            share,
            monthly_volume,
        )
        if edge.cross_organization:
            edge = replace(edge, state=PROPOSED)
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateSupplyEdge", request_id)
            if earlier is not None:
                return self._edge(repo, principal, earlier)
            # Only the caller's own side is checked now: the other party's facility and item
            # are its to confirm, so a proposal answers nothing about them.
            if (
                supplier_id == organization_id
                and repo.get_facility(supplier_id, facility_id) is None
            ):
                raise NotFound(f"{facility_name} not found")
            if item_owner == organization_id and repo.get_item(item_owner, item_id) is None:
                raise NotFound(f"{item_name} not found")
            other = edge.counterparty_id
            if not repo.organizations_among([other]):
                raise NotFound(f"organizations/{other} not found")
            if repo.edges_by_id([edge_id]) or repo.proposals_by_id([edge_id]):
                raise InvalidArgument.field("supply_edge_id", f"{edge_id!r} is already used")
            if edge.state == PROPOSED:
                repo.add_proposals([edge], self._clock())
                _emit_consent(conn, principal, "supply.edge.proposed", edge)
                audit.record(conn, principal, "supply_edge.propose", edge.name)
                idempotency.remember(conn, principal, "CreateSupplyEdge", request_id, edge.name)
                return edge
            repo.put_edge(edge, True, self._clock())
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.edge.created",
                edge.name,
                events_pb2.SupplyEdgeCreated(supply_edge=edge_proto(edge)),
                edge.id,
                [organization_id],
            )
            audit.record(conn, principal, "supply_edge.create", edge.name)
            idempotency.remember(conn, principal, "CreateSupplyEdge", request_id, edge.name)
        record = edge_record(edge)
        self._cache.committed(version, lambda n: n.upsert_edge(record))
        return edge

    def confirm_supply_edge(self, principal: Principal, name: str, request_id: str) -> SupplyEdge:
        """The other party agrees to a proposal: the edge becomes ACTIVE and enters the network."""
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            # Answers to one proposal take turns: two concurrent confirmations must not both
            # move it (the second then finds it ACTIVE).
            repo.lock_version()
            earlier = idempotency.replayed(conn, principal, "ConfirmSupplyEdge", request_id)
            if earlier is not None:
                return self._edge(repo, principal, earlier)
            proposal = self._answerable(repo, principal, name, "confirm")
            me = principal.organization_id
            if proposal.supplier_id == me and repo.get_facility(me, proposal.facility_id) is None:
                raise FailedPrecondition(
                    f"{proposal.facility_name} is not one of your facilities",
                    [PreconditionViolation("FACILITY", proposal.facility_name, "not found")],
                )
            if proposal.item_organization_id == me and repo.get_item(me, proposal.item_id) is None:
                raise FailedPrecondition(
                    f"{proposal.item_name} is not one of your items",
                    [PreconditionViolation("ITEM", proposal.item_name, "not found")],
                )
            edge = replace(proposal, state=ACTIVE)
            repo.delete_proposal(edge.id)
            repo.put_edge(edge, True, self._clock())
            version = repo.bump_version()
            _emit_consent(conn, principal, "supply.edge.confirmed", edge)
            audit.record(conn, principal, "supply_edge.confirm", edge.name)
            idempotency.remember(conn, principal, "ConfirmSupplyEdge", request_id, edge.name)
        record = edge_record(edge)
        self._cache.committed(version, lambda n: n.upsert_edge(record))
        return edge

    def decline_supply_edge(self, principal: Principal, name: str, request_id: str) -> SupplyEdge:
        """The other party refuses a proposal (final)."""
        return self._end_proposal(principal, name, request_id, DECLINED)

    def withdraw_supply_edge(self, principal: Principal, name: str, request_id: str) -> SupplyEdge:
        """The proposer takes its proposal back (final)."""
        return self._end_proposal(principal, name, request_id, WITHDRAWN)

    def _end_proposal(
        self, principal: Principal, name: str, request_id: str, state: str
    ) -> SupplyEdge:
        method = "DeclineSupplyEdge" if state == DECLINED else "WithdrawSupplyEdge"
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            repo.lock_version()  # answers to one proposal take turns (see confirm)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._edge(repo, principal, earlier)
            action = "decline" if state == DECLINED else "withdraw"
            proposal = self._answerable(repo, principal, name, action)
            ended = replace(proposal, state=state)
            repo.update_proposal(ended, self._clock())
            event_type = "supply.edge.declined" if state == DECLINED else "supply.edge.withdrawn"
            _emit_consent(conn, principal, event_type, ended)
            audit.record(conn, principal, f"supply_edge.{action}", ended.name)
            idempotency.remember(conn, principal, method, request_id, ended.name)
        return ended

    def _answerable(
        self, repo: NetworkRepository, principal: Principal, name: str, action: str
    ) -> SupplyEdge:
        """The PROPOSED edge `name` that the caller may `action` (withdraw: the proposer; confirm
        and decline: the other party)."""
        edge = self._edge(repo, principal, name)
        if edge.state != PROPOSED:
            raise FailedPrecondition(
                f"{name} is {edge.state.lower()}: only a proposed edge can be {action}ed"
                if action != "decline"
                else f"{name} is {edge.state.lower()}: only a proposed edge can be declined",
                [PreconditionViolation("STATE", name, f"supply edge is {edge.state}")],
            )
        proposer = edge.owner_id == principal.organization_id
        if proposer != (action == "withdraw"):
            who = (
                "its proposer" if action == "withdraw" else f"organizations/{edge.counterparty_id}"
            )
            raise PermissionDenied(f"only {who} may {action} {name}")
        return edge

    def get_supply_edge(self, principal: Principal, name: str) -> SupplyEdge:
        """An edge (or proposal) the caller is the supplier or the customer of; NotFound
        otherwise."""
        with read_only(self._engine) as conn:
            return self._edge(NetworkRepository(conn), principal, name)

    def _edge(self, repo: NetworkRepository, principal: Principal, name: str) -> SupplyEdge:
        parts = name.split("/")
        edge = None
        if len(parts) == 4:
            edge = repo.get_edge(parts[3]) or repo.get_proposal(parts[3])
        if edge is None or edge.name != name or not edge.visible_to(principal.organization_id):
            raise NotFound(f"{name} not found")
        return edge

    def list_supply_edges(
        self, principal: Principal, organization_id: str, page: Page, state: str = ACTIVE
    ) -> Listed[SupplyEdge]:
        """One page of the ACTIVE edges where the caller is the supplier or the customer, or
        of its proposals (made or received) in `state`."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            repo = NetworkRepository(conn)
            if state == ACTIVE:
                rows = repo.list_visible_edges(organization_id, page.after_seq, page.limit + 1)
            else:
                rows = repo.list_visible_proposals(
                    organization_id, state, page.after_seq, page.limit + 1
                )
        return page_of(page, rows)

    def delete_supply_edge(self, principal: Principal, name: str, request_id: str) -> None:
        """Deletes an ACTIVE edge; either party may end it."""
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            if idempotency.replayed(conn, principal, "DeleteSupplyEdge", request_id):
                return
            edge = self._edge(repo, principal, name)
            if edge.state != ACTIVE:
                raise FailedPrecondition(
                    f"{name} is {edge.state.lower()}, not an edge of the network: a proposal is "
                    "withdrawn (WithdrawSupplyEdge) or declined (DeclineSupplyEdge)",
                    [PreconditionViolation("STATE", name, f"supply edge is {edge.state}")],
                )
            repo.delete_edge(edge.id)
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.edge.deleted",
                name,
                events_pb2.NetworkResourceDeleted(name=name),
                edge.id,
                [edge.supplier_id, edge.customer_id],
            )
            audit.record(conn, principal, "supply_edge.delete", name)
            idempotency.remember(conn, principal, "DeleteSupplyEdge", request_id, name)
        self._cache.committed(version, lambda n: n.remove_edge(edge.id))

    # --- import and export -----

    def import_network(
        self,
        principal: Principal,
        organization_id: str,
        fmt: str,
        content: bytes,
        request_id: str,
        authorization: str = "",
    ) -> ImportResult:
        """Validates every row, then writes all of them in one transaction (or nothing); items'
        designs and revisions are checked with the caller's token (`authorization`)."""
        own(principal, organization_id, f"organizations/{organization_id}")
        idempotency.check_request_id(request_id)
        rows, parse_problems = parse_rows(fmt, content)
        self.check_design_references(
            authorization,
            [
                (f"rows[{r.line}].", r.text("design"), r.text("revision"))
                for r in rows
                if r.kind == "item"
            ],
        )
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            # Validation reads the whole bill of materials: a concurrent import must not add
            # lines between these reads and this commit (two halves of a cycle).
            repo.lock_version()
            replayed = idempotency.replayed(conn, principal, "ImportNetwork", request_id)
            refs = referenced_ids(rows)
            existing = Existing(
                organizations=repo.organizations_among(refs.organizations),
                facilities=repo.facilities_by_id(refs.facilities),
                capabilities=repo.capabilities_by_id(refs.capabilities),
                items=repo.items_by_id(refs.items),
                edges=repo.edges_by_id(refs.edges),
                proposals=repo.proposals_by_id(refs.edges),
                bom=repo.all_bom(),
                bought=repo.bought_items(organization_id),
            )
            now = self._clock()
            plan = plan_import(organization_id, rows, existing, now, parse_problems)
            result = ImportResult(plan.counts, len(rows))
            if replayed is not None or not plan.changed:
                # A retried or repeated import: nothing to write, the counts say why.
                if replayed is None:
                    idempotency.remember(
                        conn,
                        principal,
                        "ImportNetwork",
                        request_id,
                        f"organizations/{organization_id}",
                    )
                return result
            repo.insert_many(
                [f for f, new in plan.facilities if new],
                [c for c, new in plan.capabilities if new],
                [i for i, new in plan.items if new],
                [(p, c, q) for p, c, q, new in plan.bom_lines if new],
                [e for e, new in plan.edges if new],
                now,
            )
            for facility, new in plan.facilities:
                if not new:
                    repo.update_facility(facility)
            for item, new in plan.items:
                if not new:
                    repo.put_item(item, False, now)
            for capability, new in plan.capabilities:
                if not new:
                    repo.put_capability(capability, False, now)
            for parent, component, quantity, new in plan.bom_lines:
                if not new:
                    repo.put_bom_line(parent, component, quantity, False)
            for edge, new in plan.edges:
                if not new:
                    repo.put_edge(edge, False, now)
            repo.add_proposals([p for p, new in plan.proposals if new], now)
            for proposal, new in plan.proposals:
                if not new:
                    repo.update_proposal(proposal, now)
            outbox.enqueue_many(
                conn,
                [
                    (_consent_envelope(principal, "supply.edge.proposed", p), p.id)
                    for p, _ in plan.proposals
                ],
            )
            version = repo.bump_version()
            counts = [
                supply_pb2.ImportCounts(
                    kind=kind, created=c.created, updated=c.updated, unchanged=c.unchanged
                )
                for kind, c in plan.counts.items()
            ]
            emit(
                conn,
                principal,
                "supply.network.imported",
                f"organizations/{organization_id}",
                events_pb2.NetworkImported(
                    organization=f"organizations/{organization_id}", counts=counts
                ),
                organization_id,
                # The counts are the importer's alone; partners hear of their proposals.
                [organization_id],
            )
            audit.record(
                conn,
                principal,
                "network.import",
                f"organizations/{organization_id}",
                {k: [c.created, c.updated, c.unchanged] for k, c in plan.counts.items()},
            )
            idempotency.remember(
                conn, principal, "ImportNetwork", request_id, f"organizations/{organization_id}"
            )
        facility_records = [facility_record(f) for f, _ in plan.facilities]
        item_records = [item_record(i) for i, _ in plan.items]
        capability_records = [capability_record(c) for c, _ in plan.capabilities]
        lines = [BomLine(p, c, q) for p, c, q, _ in plan.bom_lines]
        edge_records = [edge_record(e) for e, _ in plan.edges]

        def apply(network: SupplyNetwork) -> None:
            for f in facility_records:
                network.upsert_facility(f)
            for i in item_records:
                network.upsert_item(i)
            for c in capability_records:
                network.upsert_capability(c)
            for line in lines:
                network.upsert_bom_line(line)
            for e in edge_records:
                network.upsert_edge(e)

        self._cache.committed(version, apply)
        return result

    def export_network(
        self, principal: Principal, organization_id: str, fmt: str, chunk_bytes: int = 1 << 20
    ) -> list[bytes]:
        """The caller's data as import rows, read in one snapshot and rendered here (in the
        caller's worker thread, not the event loop), as chunks of about `chunk_bytes`."""
        own(principal, organization_id, f"organizations/{organization_id}")
        if fmt not in ("csv", "jsonl"):
            raise InvalidArgument.field("format", "must be NETWORK_FORMAT_CSV or _JSON_LINES")
        with read_only(self._engine) as conn:
            repo = NetworkRepository(conn)
            records = list(
                _export_records(
                    repo.all_facilities(organization_id),
                    repo.all_capabilities(organization_id),
                    repo.all_items(organization_id),
                    repo.owned_edges(organization_id) + repo.owned_proposals(organization_id),
                )
            )
        chunks: list[bytes] = []
        pending: list[str] = []
        size = 0
        for line in _render_rows(fmt, records):
            pending.append(line)
            size += len(line)
            if size >= chunk_bytes:
                chunks.append("".join(pending).encode())
                pending, size = [], 0
        if pending:
            chunks.append("".join(pending).encode())
        return chunks

    # --- for procurement and the servicer -----

    def search_capable(
        self,
        principal: Principal,
        process: str,
        material: str,
        region: str,
        min_capacity: float,
        certification: str,
        limit: int,
    ) -> list[CapableSupplier]:
        """Discovery: supplier organizations with the matching facility and capability."""
        return self.analytics.search_capable(
            principal, process, material, region, min_capacity, certification, limit
        )

    def supplier_risk(self, organization_id: str) -> float:
        """The supplier's risk score in [0, 1] (see SupplyNetwork.supplier_risk)."""
        return self.analytics.supplier_risk(organization_id)


UPDATABLE_ITEM_FIELDS = frozenset(
    {
        "display_name",
        "part_number",
        "end_item",
        "unit_revenue",
        "weekly_demand",
        "inventory_weeks",
        "design",
        "revision",
        "process",
        "material",
        "components",
    }
)


def _item_problems(item: Item) -> list[FieldViolation]:
    problems = item_problems(
        "item.",
        item.display_name,
        item.part_number,
        item.unit_revenue,
        item.weekly_demand,
        item.inventory_weeks,
        item.design,
        item.revision,
        item.process,
        item.material,
    )
    seen: set[str] = set()
    for index, (component, quantity, _) in enumerate(item.components):
        where = f"item.components[{index}]."
        if component in seen:
            problems.append(FieldViolation(where + "component", "is listed twice"))
        seen.add(component)
        if component == item.id:
            problems.append(FieldViolation(where + "component", "an item cannot contain itself"))
        if not (quantity > 0):
            problems.append(FieldViolation(where + "quantity", "must be a number > 0"))
    return problems


def _check_components_exist(repo: NetworkRepository, item: Item) -> None:
    """Components are the organization's own items or items it buys; others read as absent."""
    if not item.components:
        return
    known = repo.items_by_id(c for c, _, _ in item.components)
    bought = repo.bought_items(item.organization_id)
    for index, (component, _, owner) in enumerate(item.components):
        found = known.get(component)
        if (
            found is None
            or found.organization_id != owner
            or not (owner == item.organization_id or component in bought)
        ):
            raise NotFound(f"item.components[{index}].component: {component} not found")


def _emit_consent(
    conn: Connection, principal: Principal, event_type: str, edge: SupplyEdge
) -> None:
    """A consent step of a proposed edge, to its two parties; the payload is the proposal as its
    proposer wrote it."""
    outbox.enqueue(conn, _consent_envelope(principal, event_type, edge), edge.id)


def _consent_envelope(principal: Principal, event_type: str, edge: SupplyEdge) -> EventEnvelope:
    return envelope(
        principal,
        event_type,
        edge.name,
        events_pb2.SupplyEdgeConsent(supply_edge=edge_proto(edge)),
        [edge.supplier_id, edge.customer_id],
    )


def _with_id(item: Item, item_id: str) -> Item:
    return replace(item, id=item_id)
