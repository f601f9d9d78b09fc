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
    disruption: Disruption, direct_customers: frozenset[str] | None = None
) -> supply_pb2.Disruption:
    """The disruption as its reporter sees it: affected customers are named only when they are
    the facility's direct customers (`direct_customers`), the rest counted."""
    shown = [c for c in disruption.affected_customers if direct_customers and c in direct_customers]
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
        other_affected_customers=len(disruption.affected_customers) - len(shown),
    )
    if disruption.resolve_time is not None:
        message.resolve_time.CopyFrom(_timestamp(disruption.resolve_time))
    return message


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
