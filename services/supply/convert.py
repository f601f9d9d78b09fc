"""Conversions between the supply domain and its protobuf messages (API and events)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from cofab.supply.v1 import events_pb2, supply_pb2
from services.supply.domain import (
    ACTIVE,
    CAPACITY_DROP,
    DECLINED,
    OUTAGE,
    PROPOSED,
    RESOLVED,
    WITHDRAWN,
    Capability,
    Disruption,
    Facility,
    Item,
    SupplyEdge,
)
from services.supply.domain.network_results import ItemImpact
from services.supply.domain.views import Viewer

KINDS = {
    OUTAGE: supply_pb2.Disruption.KIND_OUTAGE,
    CAPACITY_DROP: supply_pb2.Disruption.KIND_CAPACITY_DROP,
}
KIND_NAMES = {value: key for key, value in KINDS.items()}
EDGE_STATES = {
    PROPOSED: supply_pb2.SupplyEdge.STATE_PROPOSED,
    ACTIVE: supply_pb2.SupplyEdge.STATE_ACTIVE,
    DECLINED: supply_pb2.SupplyEdge.STATE_DECLINED,
    WITHDRAWN: supply_pb2.SupplyEdge.STATE_WITHDRAWN,
}
EDGE_STATE_NAMES = {value: key for key, value in EDGE_STATES.items()}


def _timestamp(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def facility_proto(facility: Facility) -> supply_pb2.Facility:
    return supply_pb2.Facility(
        name=facility.name,
        display_name=facility.display_name,
        region=facility.region,
        country_code=facility.country_code,
        latitude=facility.latitude,
        longitude=facility.longitude,
        create_time=_timestamp(facility.create_time),
    )


def facility_created(facility: Facility) -> events_pb2.FacilityCreated:
    return events_pb2.FacilityCreated(facility=facility_proto(facility))


def capability_proto(capability: Capability) -> supply_pb2.Capability:
    return supply_pb2.Capability(
        name=capability.name,
        process=capability.process,
        materials=list(capability.materials),
        monthly_capacity=capability.monthly_capacity,
        certifications=list(capability.certifications),
    )


def item_proto(item: Item) -> supply_pb2.Item:
    return supply_pb2.Item(
        name=item.name,
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
        components=[
            supply_pb2.BomLine(
                component=f"organizations/{owner}/items/{component}", quantity=quantity
            )
            for component, quantity, owner in item.components
        ],
    )


def edge_proto(edge: SupplyEdge) -> supply_pb2.SupplyEdge:
    return supply_pb2.SupplyEdge(
        name=edge.name,
        facility=edge.facility_name,
        item=edge.item_name,
        customer=f"organizations/{edge.customer_id}",
        lead_time_days=edge.lead_time_days,
        unit_price=edge.unit_price,
        share=edge.share,
        monthly_volume=edge.monthly_volume,
        state=EDGE_STATES[edge.state],
    )


def disruption_proto(
    disruption: Disruption,
    direct_customers: frozenset[str] | None = None,
    viewer_id: str | None = None,
) -> supply_pb2.Disruption:
    """The disruption as `viewer_id` may see it: the one rule for the RPCs and for every event
    about it. Its reporter (and the platform, viewer None) sees the hit customers that are the
    facility's direct customers (`direct_customers`) by name and the rest counted; a direct
    customer sees itself among them (when hit) and nothing of the supplier's other customers."""
    affected = disruption.affected_customers
    if viewer_id is None or viewer_id == disruption.organization_id:
        shown = [c for c in affected if direct_customers and c in direct_customers]
        others = len(affected) - len(shown)
    else:
        shown, others = [c for c in affected if c == viewer_id], 0
    message = supply_pb2.Disruption(
        name=disruption.name,
        facility=disruption.facility_name,
        kind=KINDS[disruption.kind],
        capacity_factor=disruption.capacity_factor,
        expected_duration_days=disruption.expected_duration_days,
        description=disruption.description,
        state=(
            supply_pb2.Disruption.STATE_RESOLVED
            if disruption.state == RESOLVED
            else supply_pb2.Disruption.STATE_ACTIVE
        ),
        create_time=_timestamp(disruption.create_time),
        affected_customers=[f"organizations/{c}" for c in shown],
        other_affected_customers=others,
    )
    if disruption.resolve_time is not None:
        message.resolve_time.CopyFrom(_timestamp(disruption.resolve_time))
    return message


def summary_view(
    summary: supply_pb2.DisruptionSummary,
    reporter_id: str,
    direct_customers: frozenset[str],
    viewer: Viewer | None,
) -> supply_pb2.DisruptionSummary:
    """What the platform did about a disruption, as `viewer` may see it: the platform (None)
    all of it; an organization its own RFQs, the unsourced items it is concerned by (its own
    and those it buys, each once to a customer), the count of items hit and no network-wide
    volumes or revenue (ComputeDisruptionImpact counts others' items only). Among the notified
    organizations the reporter sees its direct customers, a customer itself."""
    if viewer is None:
        return summary
    me = f"organizations/{viewer.organization_id}"
    unsourced = [i for i in summary.unsourced_items if viewer.concerned_by(i.rsplit("/", 1)[-1])]
    if viewer.organization_id == reporter_id:
        notified = [
            n for n in summary.notified_organizations
            if n.removeprefix("organizations/") in direct_customers
        ]  # fmt: skip
    else:
        notified = [n for n in summary.notified_organizations if n == me]
        unsourced = list(dict.fromkeys(unsourced))
    return supply_pb2.DisruptionSummary(
        disruption=summary.disruption,
        items_hit=summary.items_hit,
        notified_organizations=notified,
        rfqs=[r for r in summary.rfqs if r.startswith(me + "/")],
        unsourced_items=unsourced,
        resolved_early=summary.resolved_early,
    )


def item_impact_proto(owners: Mapping[str, str], impact: ItemImpact) -> supply_pb2.ItemImpact:
    """`owners` maps item ids to their organizations, to name the item."""
    return supply_pb2.ItemImpact(
        item=f"organizations/{owners.get(impact.item_id, '')}/items/{impact.item_id}",
        end_item=impact.end_item,
        units_at_risk=impact.units_at_risk,
        revenue_at_risk=impact.revenue_at_risk,
        time_to_survive_days=_finite(impact.time_to_survive_days),
        time_to_recover_days=_finite(impact.time_to_recover_days),
    )


def _finite(days: float) -> float:
    # An item with no stock limit survives "forever"; proto doubles carry inf, but JSON
    # clients do not, so the API caps it at a century.
    return min(days, 36500.0)
