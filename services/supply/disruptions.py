"""Disruption use cases: a supplier reports an outage or capacity drop of its facility and the
impact is computed on the whole network. The disruption workflow then tells each affected
customer what it may see, plans the re-sourcing of single-sourced items and reports that it is
done, through the service-account-only calls below (each idempotent by request id).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select

from cofab.supply.v1 import events_pb2, supply_pb2
from services.shared import audit, authz, idempotency
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
    summary_view,
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
from services.supply.publishing import emit, emit_views, own

Clock = Callable[[], dt.datetime]
DAYS_PER_MONTH = 30.0
NOTIFIED = "NOTIFIED"
HANDLED = "HANDLED"


@dataclass(frozen=True)
class ResourcingNeed:
    """A customer bought `item_id` only from the disrupted facility: it needs `quantity` units
    from elsewhere (its monthly volume there x capacity lost x outage months, rounded up)."""

    customer_id: str
    item_organization_id: str
    item_id: str
    quantity: int
    process: str
    material: str

    @property
    def item_name(self) -> str:
        return f"organizations/{self.item_organization_id}/items/{self.item_id}"


@dataclass(frozen=True)
class DisruptionProgress:
    kind: str  # NOTIFIED or HANDLED
    customer: str = ""  # organization id, for NOTIFIED
    summary: supply_pb2.DisruptionSummary | None = None  # for HANDLED


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
        """Stores the disruption and computes which customers it hits; telling them is the
        disruption workflow's job (`record_progress`), so that a crash or a redelivered event
        never tells one twice. Returns the disruption and the facility's direct customers."""
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
            self._facility(repo, organization_id, facility_id)  # NotFound before any work
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
            emit_views(
                conn,
                principal,
                "supply.disruption.reported",
                disruption.name,
                facility_id,
                [organization_id, *sorted(direct)],
                lambda viewer: events_pb2.DisruptionReported(
                    disruption=disruption_proto(disruption, direct, viewer)
                ),
            )
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
            emit_views(
                conn,
                principal,
                "supply.disruption.resolved",
                name,
                disruption.facility_id,
                [disruption.organization_id, *sorted(direct)],
                lambda viewer: events_pb2.DisruptionResolved(
                    disruption=disruption_proto(resolved, direct, viewer)
                ),
            )
            audit.record(conn, principal, "disruption.resolve", name)
            idempotency.remember(conn, principal, "ResolveDisruption", request_id, name)
        # Another active disruption of the facility may remain: rebuild rather than guess.
        self._cache.committed(version, None)
        return resolved, direct

    # --- the disruption workflow's calls (platform service accounts only) -----

    def _any_disruption(self, repo: NetworkRepository, name: str) -> Disruption:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "organizations" or parts[2] != "disruptions":
            raise InvalidArgument.field("name", "must be organizations/{o}/disruptions/{d}")
        disruption = repo.get_disruption(parts[1], parts[3])
        if disruption is None:
            raise NotFound(f"{name} not found")
        return disruption

    def plan_resourcing(self, principal: Principal, name: str) -> list[ResourcingNeed]:
        """One need per (customer, item) that the disrupted facility was the only source of,
        sized to what the customer loses over the outage (see ResourcingNeed)."""
        authz.require_service_account(principal, "PlanDisruptionResourcing")
        with read_only(self._engine) as conn:
            disruption = self._any_disruption(NetworkRepository(conn), name)
            lost = conn.execute(
                select(
                    supply_edges.c.customer_id,
                    supply_edges.c.item_id,
                    func.sum(supply_edges.c.monthly_volume).label("monthly_volume"),
                )
                .where(supply_edges.c.facility_id == disruption.facility_id)
                .group_by(supply_edges.c.customer_id, supply_edges.c.item_id)
                .order_by(supply_edges.c.customer_id, supply_edges.c.item_id)
            ).all()
        months = disruption.expected_duration_days / DAYS_PER_MONTH
        needs: list[ResourcingNeed] = []
        with self._cache.network() as network:
            for row in lost:
                item = network.item(row.item_id)
                sources = network.supplying_facilities(row.item_id)
                if item is None or sources != [disruption.facility_id]:
                    continue
                if row.customer_id == disruption.organization_id:
                    continue  # the supplier's own captive supply is its own to re-plan
                units = row.monthly_volume * (1.0 - disruption.capacity_factor) * months
                needs.append(
                    ResourcingNeed(
                        row.customer_id,
                        item.organization_id,
                        item.id,
                        max(1, math.ceil(units - 1e-9)),
                        item.process,
                        item.material,
                    )
                )
        return needs

    def record_progress(
        self,
        principal: Principal,
        name: str,
        progress: DisruptionProgress,
        request_id: str,
    ) -> tuple[Disruption, frozenset[str]]:
        """The workflow's report, idempotent by request id (activities retry): NOTIFIED tells
        one affected customer its impact, HANDLED announces the summary."""
        authz.require_service_account(principal, "RecordDisruptionProgress")
        if not request_id:
            raise InvalidArgument.field("request_id", "is required for progress reports")
        idempotency.check_request_id(request_id)
        with read_only(self._engine) as conn:
            repo = NetworkRepository(conn)
            disruption = self._any_disruption(repo, name)
            direct = self._direct_customers(conn, disruption.facility_id)
            facility = self._facility(repo, disruption.organization_id, disruption.facility_id)
            # A retry returns before the checks below, which a changed network could fail.
            if idempotency.replayed(conn, principal, "RecordDisruptionProgress", request_id):
                return disruption, direct
        report = None
        if progress.kind == NOTIFIED:
            outage = FacilityOutage(
                disruption.facility_id,
                disruption.expected_duration_days,
                disruption.capacity_factor,
            )
            with self._cache.network() as network:
                report = network.disruption_impact([outage])
            # Checked against the network as it is now, as the workflow computed it.
            hit = set(report.affected_customer_ids) - {disruption.organization_id}
            if progress.customer not in hit:
                raise InvalidArgument.field(
                    "customer", f"organizations/{progress.customer} is not hit by {name}"
                )
        with self._engine.begin() as conn:
            if idempotency.replayed(conn, principal, "RecordDisruptionProgress", request_id):
                return disruption, direct
            if report is not None:  # NOTIFIED
                self._emit_impact(conn, principal, disruption, facility, report, direct, progress)
            else:
                summary = progress.summary or supply_pb2.DisruptionSummary()
                reporter = disruption.organization_id
                emit_views(
                    conn,
                    principal,
                    "supply.disruption.handled",
                    name,
                    disruption.facility_id,
                    [
                        reporter,
                        *(n.removeprefix("organizations/") for n in summary.notified_organizations),
                    ],
                    lambda viewer: events_pb2.DisruptionHandled(
                        summary=summary_view(
                            summary, reporter, direct, NetworkRepository(conn).viewer(viewer)
                        )
                    ),
                )
            audit.record(conn, principal, "disruption.progress", name, {"kind": progress.kind})
            idempotency.remember(conn, principal, "RecordDisruptionProgress", request_id, name)
        return disruption, direct

    def _emit_impact(
        self,
        conn: Connection,
        principal: Principal,
        disruption: Disruption,
        facility: Facility,
        report: ImpactReport,
        direct: frozenset[str],
        progress: DisruptionProgress,
    ) -> None:
        """`supply.impact.computed` for one customer, keyed by it, showing it its own hit items
        (and the items it buys), the facility only if it is its direct supplier."""
        customer = progress.customer
        repo = NetworkRepository(conn)
        view = impact_view(repo.viewer(customer), report)
        owners = repo.item_owners(i.item_id for i in view.items)
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
