"""Disruption use cases: a supplier reports an outage or capacity drop of its facility, the
impact is computed on the whole network, and each affected customer is told what it may see.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine, select

from cofab.supply.v1 import events_pb2
from services.shared import audit, idempotency
from services.shared.db import read_only
from services.shared.errors import InvalidArgument, NotFound
from services.shared.identity import Principal
from services.shared.paging import Listed, Page, page_of
from services.supply.adapters.network_cache import NetworkCache
from services.supply.adapters.repository import NetworkRepository
from services.supply.adapters.tables import supply_edges
from services.supply.convert import (
    disruption_proto,
    item_impact_proto,
)
from services.supply.domain import (
    ACTIVE,
    RESOLVED,
    Disruption,
    Facility,
    disruption_problems,
    raise_if,
)
from services.supply.domain.network_results import ImpactReport
from services.supply.domain.records import FacilityOutage
from services.supply.domain.views import (
    impact_view,
)
from services.supply.publishing import emit, own

Clock = Callable[[], dt.datetime]


class DisruptionReports:
    def __init__(self, engine: Engine, cache: NetworkCache, clock: Clock) -> None:
        self._engine = engine
        self._cache = cache
        self._clock = clock

    def _facility(
        self, repo: NetworkRepository, organization_id: str, facility_id: str
    ) -> Facility:
        facility = repo.get_facility(organization_id, facility_id)
        if facility is None:
            raise NotFound(f"organizations/{organization_id}/facilities/{facility_id} not found")
        return facility

    # --- disruptions -----

    def report_disruption(
        self,
        principal: Principal,
        organization_id: str,
        facility_name: str,
        kind: str,
        capacity_factor: float,
        expected_duration_days: float,
        description: str,
        request_id: str,
    ) -> tuple[Disruption, frozenset[str]]:
        """Stores the disruption, computes its impact and tells every affected customer what it
        may see. Returns the disruption and the facility's direct customers."""
        own(principal, organization_id, f"organizations/{organization_id}")
        parts = facility_name.split("/")
        if len(parts) != 4 or parts[0] != "organizations" or parts[2] != "facilities":
            raise InvalidArgument.field(
                "disruption.facility", "must be organizations/{o}/facilities/{f}"
            )
        if parts[1] != organization_id:
            raise NotFound(f"{facility_name} not found")
        facility_id = parts[3]
        raise_if(disruption_problems(kind, capacity_factor, expected_duration_days, description))
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            earlier = idempotency.replayed(conn, principal, "ReportDisruption", request_id)
            if earlier is not None:
                found = repo.get_disruption(organization_id, earlier.split("/")[3])
                if found is None:
                    raise NotFound(f"{earlier} not found")
                return found, self._direct_customers(conn, facility_id)
            facility = self._facility(repo, organization_id, facility_id)
        outage = FacilityOutage(facility_id, expected_duration_days, capacity_factor)
        with self._cache.network() as network:
            report = network.disruption_impact([outage])
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            direct = self._direct_customers(conn, facility_id)
            affected = tuple(c for c in report.affected_customer_ids if c != organization_id)
            disruption = Disruption(
                uuid.uuid4().hex,
                organization_id,
                facility_id,
                kind,
                capacity_factor,
                expected_duration_days,
                description,
                ACTIVE,
                self._clock(),
                None,
                affected,
            )
            repo.add_disruption(disruption)
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.disruption.reported",
                disruption.name,
                events_pb2.DisruptionReported(disruption=disruption_proto(disruption, direct)),
                facility_id,
                [organization_id, *sorted(direct)],
            )
            self._emit_impacts(conn, principal, disruption, facility, report, direct)
            audit.record(
                conn,
                principal,
                "disruption.report",
                disruption.name,
                {"facility": facility_name, "kind": kind, "affected": len(affected)},
            )
            idempotency.remember(conn, principal, "ReportDisruption", request_id, disruption.name)
        self._cache.committed(version, lambda n: n.upsert_outage(outage))
        return disruption, direct

    def _direct_customers(self, conn: Connection, facility_id: str) -> frozenset[str]:
        return frozenset(
            conn.execute(
                select(supply_edges.c.customer_id)
                .where(supply_edges.c.facility_id == facility_id)
                .distinct()
            ).scalars()
        )

    def _emit_impacts(
        self,
        conn: Connection,
        principal: Principal,
        disruption: Disruption,
        facility: Facility,
        report: ImpactReport,
        direct: frozenset[str],
    ) -> None:
        """One `supply.impact.computed` per affected customer, keyed by it, showing it its own
        hit items (and the items it buys), the facility only if it is its direct supplier."""
        owners = NetworkRepository(conn).item_owners(i.item_id for i in report.items)
        for customer in disruption.affected_customers:
            viewer = NetworkRepository(conn).viewer(customer)
            view = impact_view(viewer, report)
            emit(
                conn,
                principal,
                "supply.impact.computed",
                disruption.name,
                events_pb2.ImpactComputed(
                    disruption=disruption.name,
                    customer=f"organizations/{customer}",
                    facility=facility.name if customer in direct else "",
                    region=facility.region,
                    items=[item_impact_proto(owners, i) for i in view.items],
                    revenue_at_risk=view.revenue_at_risk,
                    other_items_hit=view.other_items_hit,
                ),
                customer,
                [customer],
            )

    def list_disruptions(
        self, principal: Principal, organization_id: str, page: Page
    ) -> Listed[tuple[Disruption, frozenset[str]]]:
        """One page of the caller's reported disruptions, each with its facility's direct
        customers."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            rows = NetworkRepository(conn).list_disruptions(
                organization_id, page.after_seq, page.limit + 1
            )
            listed = page_of(page, rows)
            return Listed(
                [(d, self._direct_customers(conn, d.facility_id)) for d in listed.items],
                listed.next_page_token,
            )

    def resolve_disruption(
        self, principal: Principal, name: str, request_id: str
    ) -> tuple[Disruption, frozenset[str]]:
        """Marks the caller's disruption as over (again: no change)."""
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "organizations" or parts[2] != "disruptions":
            raise InvalidArgument.field("name", "must be organizations/{o}/disruptions/{d}")
        own(principal, parts[1], name)
        with self._engine.begin() as conn:
            repo = NetworkRepository(conn)
            disruption = repo.get_disruption(parts[1], parts[3])
            if disruption is None:
                raise NotFound(f"{name} not found")
            direct = self._direct_customers(conn, disruption.facility_id)
            if idempotency.replayed(conn, principal, "ResolveDisruption", request_id):
                return disruption, direct
            if disruption.state == RESOLVED:
                return disruption, direct
            now = self._clock()
            repo.resolve_disruption(disruption.id, now)
            resolved = Disruption(
                disruption.id,
                disruption.organization_id,
                disruption.facility_id,
                disruption.kind,
                disruption.capacity_factor,
                disruption.expected_duration_days,
                disruption.description,
                RESOLVED,
                disruption.create_time,
                now,
                disruption.affected_customers,
            )
            version = repo.bump_version()
            emit(
                conn,
                principal,
                "supply.disruption.resolved",
                name,
                events_pb2.DisruptionResolved(disruption=disruption_proto(resolved, direct)),
                disruption.facility_id,
                [disruption.organization_id, *sorted(direct)],
            )
            audit.record(conn, principal, "disruption.resolve", name)
            idempotency.remember(conn, principal, "ResolveDisruption", request_id, name)
        # Another active disruption of the facility may remain: rebuild rather than guess.
        self._cache.committed(version, None)
        return resolved, direct
