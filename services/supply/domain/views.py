"""What one organization may see of analytics computed on the whole network. Plain Python.

The rule (documented in supply.proto): a result names only the viewer's own facilities and items
and its direct partners: the facilities that supply it (edges where it is the customer) and the
customers it supplies. Anything deeper is reported as counts per tier and region, and as sums
(revenue at risk), never by identity, price or volume.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.supply.domain.network_results import (
    CriticalNode,
    ImpactReport,
    ItemImpact,
    SingleSource,
    SourcingAssignment,
    SourcingPlan,
    TierEntry,
    UnmetVolume,
)


@dataclass(frozen=True)
class Viewer:
    """An organization and what it knows first-hand."""

    organization_id: str
    facilities: frozenset[str]  # its own
    supplier_facilities: frozenset[str]  # facilities with an edge to it as the customer
    items: frozenset[str]  # its own
    bought_items: frozenset[str]  # items on edges where it is the customer

    def sees_facility(self, facility_id: str) -> bool:
        return facility_id in self.facilities or facility_id in self.supplier_facilities

    def concerned_by(self, item_id: str) -> bool:
        """Its own items and the items it buys: the ones analytics report to it by name."""
        return item_id in self.items or item_id in self.bought_items


@dataclass(frozen=True)
class Hidden:
    """Facilities and organizations of one tier (0 when tiers do not apply) and region that a
    result counts without naming."""

    tier: int
    region: str
    facilities: int
    organizations: int


def _hidden(entries: Iterable[tuple[int, str, str, str]]) -> list[Hidden]:
    """(tier, region, facility, organization) tuples -> counts per tier and region."""
    facilities: dict[tuple[int, str], set[str]] = defaultdict(set)
    organizations: dict[tuple[int, str], set[str]] = defaultdict(set)
    for tier, region, facility, organization in entries:
        facilities[(tier, region)].add(facility)
        organizations[(tier, region)].add(organization)
    return [
        Hidden(tier, region, len(facilities[(tier, region)]), len(organizations[(tier, region)]))
        for tier, region in sorted(facilities)
    ]


def trace_view(
    viewer: Viewer, entries: Iterable[TierEntry], region_of: Callable[[str], str]
) -> tuple[list[TierEntry], list[Hidden]]:
    """Entries on an edge the viewer is a party to, and counts of the others."""
    shown: list[TierEntry] = []
    hidden: list[tuple[int, str, str, str]] = []
    for entry in entries:
        if viewer.organization_id in (
            entry.supplier_organization_id,
            entry.customer_organization_id,
        ):
            shown.append(entry)
        else:
            hidden.append(
                (
                    entry.tier,
                    region_of(entry.facility_id),
                    entry.facility_id,
                    entry.supplier_organization_id,
                )
            )
    return shown, _hidden(hidden)


@dataclass(frozen=True)
class SingleSourceView:
    item_id: str
    # The one source, when the viewer may know it; else empty.
    facility_id: str
    organization_id: str


def single_source_view(viewer: Viewer, found: Iterable[SingleSource]) -> list[SingleSourceView]:
    """The viewer's single-source items; the source named only when the viewer knows it
    first-hand."""
    views: list[SingleSourceView] = []
    for single in found:
        if not viewer.concerned_by(single.item_id):
            continue
        facility = single.facility_ids[0] if len(single.facility_ids) == 1 else ""
        if facility and viewer.sees_facility(facility):
            views.append(SingleSourceView(single.item_id, facility, single.organization_id))
        else:
            views.append(SingleSourceView(single.item_id, "", ""))
    return views


@dataclass(frozen=True)
class CriticalView:
    facility_id: str
    organization_id: str
    region: str
    end_item_ids: tuple[str, ...]


def critical_view(
    viewer: Viewer, found: Iterable[CriticalNode], region_of: Callable[[str], str]
) -> tuple[list[CriticalView], list[Hidden]]:
    """Critical facilities for the viewer's end items: named when the viewer sees them, else
    counted per region."""
    shown: list[CriticalView] = []
    hidden: list[tuple[int, str, str, str]] = []
    for node in found:
        ends = tuple(e for e in node.end_item_ids if e in viewer.items)
        if not ends:
            continue
        region = region_of(node.facility_id)
        if viewer.sees_facility(node.facility_id):
            shown.append(CriticalView(node.facility_id, node.organization_id, region, ends))
        else:
            hidden.append((0, region, node.facility_id, node.organization_id))
    return shown, _hidden(hidden)


@dataclass(frozen=True)
class ImpactView:
    items: tuple[ItemImpact, ...]
    revenue_at_risk: float  # over the viewer's own end items
    other_items_hit: int


def impact_view(viewer: Viewer, report: ImpactReport) -> ImpactView:
    """The viewer's own and bought items among those hit; the rest counted."""
    mine = tuple(i for i in report.items if viewer.concerned_by(i.item_id))
    revenue = sum(i.revenue_at_risk for i in mine if i.end_item and i.item_id in viewer.items)
    return ImpactView(mine, revenue, len(report.items) - len(mine))


def sourcing_view(
    viewer: Viewer, plan: SourcingPlan
) -> tuple[list[SourcingAssignment], list[UnmetVolume], float]:
    """The viewer's items' part of a plan. A facility that already supplies the item to someone
    else, and not to the viewer, is a deeper tier of someone's chain: such an assignment keeps
    its volume but loses the facility's identity and price (empty ids, price 0). Capability
    matches are discoverable anyway and stay named. The total covers the shown prices."""
    assignments: list[SourcingAssignment] = []
    for a in plan.assignments:
        if not viewer.concerned_by(a.item_id):
            continue
        if a.current_supplier and not viewer.sees_facility(a.facility_id):
            a = SourcingAssignment(a.item_id, "", "", a.monthly_volume, 0.0, True)
        assignments.append(a)
    unmet = [u for u in plan.unmet if viewer.concerned_by(u.item_id)]
    total = sum(a.monthly_volume * a.unit_price for a in assignments)
    return assignments, unmet, total
