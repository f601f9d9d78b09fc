"""Analytics use cases: the whole network is queried in memory, and each result is cut down
to what the calling organization may see (domain/views.py). Read only: no transaction writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from services.shared import authz
from services.shared.db import read_only
from services.shared.errors import FieldViolation, InvalidArgument, NotFound
from services.shared.identity import Principal
from services.supply.adapters.network_cache import NetworkCache
from services.supply.adapters.repository import NetworkRepository
from services.supply.domain import (
    Capability,
    SupplyEdge,
    raise_if,
)
from services.supply.domain.network import SupplyNetwork
from services.supply.domain.network_results import (
    ImpactReport,
    SourcingAssignment,
    UnmetVolume,
)
from services.supply.domain.records import FacilityOutage
from services.supply.domain.views import (
    CriticalView,
    Hidden,
    ImpactView,
    SingleSourceView,
    Viewer,
    critical_view,
    impact_view,
    single_source_view,
    sourcing_view,
    trace_view,
)
from services.supply.publishing import own

MAX_SEARCH_RESULTS = 1000


@dataclass(frozen=True)
class CapableSupplier:
    """A search match: the supplier organization with the matching facility and capability."""

    organization_id: str
    facility_id: str
    region: str
    country_code: str
    capability: Capability


@dataclass(frozen=True)
class TraceResult:
    entries: list[tuple[int, SupplyEdge]]
    hidden: list[Hidden]


@dataclass(frozen=True)
class RiskResult:
    single_sources: list[SingleSourceView]
    critical: list[CriticalView]
    hidden_critical: list[Hidden]
    owners: dict[str, str]  # item id -> organization id, for the items named


@dataclass(frozen=True)
class SourcingResult:
    assignments: list[SourcingAssignment]
    unmet: list[UnmetVolume]
    total_cost: float


class NetworkAnalytics:
    """Queries on the process's in-memory network (`cache`), shared with the use cases that
    change it."""

    def __init__(self, engine: Engine, cache: NetworkCache) -> None:
        self._engine = engine
        self._cache = cache

    def trace(
        self,
        principal: Principal,
        start: str,
        downstream: bool,
        max_tiers: int,
    ) -> TraceResult:
        """Multi-tier upstream/downstream of the caller's item or organization, as it may see it."""
        parts = start.split("/")
        if len(parts) == 2 and parts[0] == "organizations":
            own(principal, parts[1], start)
            kwargs = {"organization_id": parts[1]}
        elif len(parts) == 4 and parts[0] == "organizations" and parts[2] == "items":
            own(principal, parts[1], start)
            kwargs = {"item_id": parts[3]}
        else:
            raise InvalidArgument.field(
                "start",
                f"{start!r} is neither organizations/{{o}} nor organizations/{{o}}/items/{{i}}",
            )
        if max_tiers < 0:
            raise InvalidArgument.field("max_tiers", "must not be negative")
        with read_only(self._engine) as conn:
            viewer = NetworkRepository(conn).viewer(principal.organization_id)
            if "item_id" in kwargs and kwargs["item_id"] not in viewer.items:
                raise NotFound(f"{start} not found")
            with self._cache.network() as network:
                walk = network.downstream if downstream else network.upstream
                entries = walk(max_tiers=max_tiers or None, **kwargs)
                shown, hidden = trace_view(viewer, entries, _region_of(network))
            edges = NetworkRepository(conn).edges_by_id(e.edge_id for e in shown)
        return TraceResult(
            [(e.tier, edges[e.edge_id]) for e in shown if e.edge_id in edges], hidden
        )

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
        """Discovery: facilities whose published capabilities match, with their organizations.
        Any authenticated organization may search; results carry no customers or volumes."""
        if limit < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        limit = min(limit or 50, MAX_SEARCH_RESULTS)
        with self._cache.network() as network:
            matches = network.capable_facilities(
                process,
                material or None,
                region or None,
                min_capacity,
                certification or None,
                limit,
            )
            countries = {
                m.facility_id: (f.country_code if (f := network.facility(m.facility_id)) else "")
                for m in matches
            }
        with read_only(self._engine) as conn:
            found = NetworkRepository(conn).capabilities_by_id(m.capability_id for m in matches)
        return [
            CapableSupplier(
                m.organization_id,
                m.facility_id,
                m.region,
                countries[m.facility_id],
                found[m.capability_id],
            )
            for m in matches
            if m.capability_id in found
        ]

    def supplier_risk(self, organization_id: str) -> float:
        """The supplier's risk score in [0, 1] (see SupplyNetwork.supplier_risk)."""
        with self._cache.network() as network:
            return network.supplier_risk(organization_id)

    def analyze_risk(self, principal: Principal, organization_id: str) -> RiskResult:
        """Single-source items and critical facilities of the caller's network, as it may see
        them."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            viewer = NetworkRepository(conn).viewer(organization_id)
            with self._cache.network() as network:
                ends = [
                    i for i in viewer.items if (r := network.item(i)) is not None and r.end_item
                ]
                singles = single_source_view(viewer, network.single_source_items())
                critical, hidden = critical_view(
                    viewer, network.critical_nodes(ends) if ends else [], _region_of(network)
                )
            owners = NetworkRepository(conn).item_owners(s.item_id for s in singles)
        return RiskResult(singles, critical, hidden, owners)

    def _outages(
        self,
        network: SupplyNetwork,
        viewer: Viewer | None,
        facility_names: Sequence[str],
        region: str,
        duration_days: float,
        capacity_factor: float,
    ) -> list[FacilityOutage]:
        problems = []
        if not (duration_days > 0 and duration_days < float("inf")):
            problems.append(FieldViolation("duration_days", "must be a number of days > 0"))
        if not (0 <= capacity_factor < 1):
            problems.append(
                FieldViolation("capacity_factor", "must be within [0, 1): 0 is an outage")
            )
        if not facility_names and not region:
            problems.append(FieldViolation("facilities", "name facilities or a region"))
        raise_if(problems)
        ids: list[str] = []
        for index, name in enumerate(facility_names):
            parts = name.split("/")
            if len(parts) != 4 or parts[0] != "organizations" or parts[2] != "facilities":
                raise InvalidArgument.field(
                    f"facilities[{index}]", "must be organizations/{o}/facilities/{f}"
                )
            record = network.facility(parts[3])
            # Only facilities the caller knows first-hand can be named; others read as absent.
            # No viewer: the platform, which sees every facility.
            if (
                record is None
                or record.organization_id != parts[1]
                or (viewer is not None and not viewer.sees_facility(parts[3]))
            ):
                raise NotFound(f"{name} not found")
            ids.append(parts[3])
        if region:
            ids += network.facilities_in_region(region)
        return [FacilityOutage(f, duration_days, capacity_factor) for f in dict.fromkeys(ids)]

    def compute_impact(
        self,
        principal: Principal,
        organization_id: str,
        facility_names: Sequence[str],
        region: str,
        duration_days: float,
        capacity_factor: float,
    ) -> tuple[ImpactView, dict[str, str]]:
        """The caller's view of the impact, and the owners of the items it names."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            viewer = NetworkRepository(conn).viewer(organization_id)
            with self._cache.network() as network:
                outages = self._outages(
                    network, viewer, facility_names, region, duration_days, capacity_factor
                )
                report = network.disruption_impact(outages)
            view = impact_view(viewer, report)
            owners = NetworkRepository(conn).item_owners(i.item_id for i in view.items)
        return view, owners

    def network_impact(
        self,
        principal: Principal,
        facility_names: Sequence[str],
        region: str,
        duration_days: float,
        capacity_factor: float,
    ) -> tuple[ImpactReport, dict[str, str]]:
        """The impact on the whole network, every hit item named, and the owners of the items:
        for the platform's service accounts only (the disruption workflow acts for every
        affected organization)."""
        authz.require_service_account(principal, "ComputeDisruptionImpact of organizations/-")
        with read_only(self._engine) as conn:
            with self._cache.network() as network:
                outages = self._outages(
                    network, None, facility_names, region, duration_days, capacity_factor
                )
                report = network.disruption_impact(outages)
            owners = NetworkRepository(conn).item_owners(i.item_id for i in report.items)
        return report, owners

    def plan_sourcing(
        self,
        principal: Principal,
        organization_id: str,
        facility_names: Sequence[str],
        region: str,
        duration_days: float,
        capacity_factor: float,
    ) -> tuple[SourcingResult, dict[str, str]]:
        """The caller's part of the plan, and the owners of the items it names."""
        own(principal, organization_id, f"organizations/{organization_id}")
        with read_only(self._engine) as conn:
            viewer = NetworkRepository(conn).viewer(organization_id)
            with self._cache.network() as network:
                outages = self._outages(
                    network, viewer, facility_names, region, duration_days, capacity_factor
                )
                plan = network.alternative_sourcing(
                    outages, item_ids=viewer.items | viewer.bought_items
                )
            assignments, unmet, total = sourcing_view(viewer, plan)
            owners = NetworkRepository(conn).item_owners(
                [a.item_id for a in assignments] + [u.item_id for u in unmet]
            )
        return SourcingResult(assignments, unmet, total), owners


def _region_of(network: SupplyNetwork) -> Callable[[str], str]:
    def region(facility_id: str) -> str:
        record = network.facility(facility_id)
        return record.region if record is not None else ""

    return region
