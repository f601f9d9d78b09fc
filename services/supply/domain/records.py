"""The supplier network as plain records: what the SQL adapter loads and the analytics consume.

Ids are the resource ids used in names (`organizations/{organization}/items/{item}` ...), unique
platform-wide for facilities, items and edges. Plain Python, no I/O. Slotted, because the
analytics hold a million edges in memory and a per-instance __dict__ would double that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FacilityRecord:
    id: str
    organization_id: str
    region: str
    country_code: str
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    id: str
    facility_id: str
    process: str  # e.g. "cnc-milling", "injection-moulding"
    materials: frozenset[str]
    monthly_capacity: float  # units per month
    certifications: frozenset[str]  # e.g. {"ISO9001", "IATF16949"}


@dataclass(frozen=True, slots=True)
class ItemRecord:
    id: str
    organization_id: str  # the owner (the OEM or the supplier that defines the item)
    # An end item is a product sold to the market: the roots that disruption impact reports on.
    end_item: bool
    unit_revenue: float  # revenue per unit of an end item (0 for components)
    weekly_demand: float  # units per week
    # Stock on hand across the chain, in weeks of demand: the item's time-to-survive basis
    # (Simchi-Levi et al., "Identifying risks and mitigating disruptions in the automotive
    # supply chain", Interfaces 2015).
    inventory_weeks: float
    design: str = ""  # projects/{p}/designs/{d}, when the item is a designed part
    revision: str = ""  # the released revision it is pinned to
    # What making the item takes, matched against capabilities when re-sourcing it; empty when
    # unknown (then only its current suppliers count as alternatives).
    process: str = ""
    material: str = ""


@dataclass(frozen=True, slots=True)
class BomLine:
    parent_item_id: str
    component_item_id: str
    quantity: float  # components per parent


@dataclass(frozen=True, slots=True)
class SupplyEdgeRecord:
    """Facility `facility_id` supplies `item_id` to organization `customer_id`."""

    id: str
    facility_id: str
    item_id: str
    customer_id: str
    lead_time_days: float
    unit_price: float
    share: float  # of the customer's volume of this item, 0..1
    monthly_volume: float  # units per month on this edge


@dataclass(frozen=True, slots=True)
class FacilityOutage:
    """A facility down (capacity_factor 0) or reduced (0 < factor < 1) for `duration_days`."""

    facility_id: str
    duration_days: float
    capacity_factor: float = 0.0
