"""What the supply-network analytics answer: plain frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TierEntry:
    """One supply edge met walking the network up (towards raw material) or down (towards the
    market). `tier` counts supplier hops from the start: tier 1 supplies the start directly."""

    tier: int
    item_id: str
    edge_id: str
    facility_id: str
    supplier_organization_id: str
    customer_organization_id: str


@dataclass(frozen=True, slots=True)
class CapabilityMatch:
    """A facility able to run `process` (its best-fitting capability); `available_capacity` is
    the monthly capacity left while the facility is in an active outage (else the nominal)."""

    facility_id: str
    organization_id: str
    capability_id: str
    region: str
    monthly_capacity: float
    available_capacity: float


@dataclass(frozen=True, slots=True)
class SingleSource:
    """An item whose whole supply comes from one source (see SupplyNetwork.single_source_items)."""

    item_id: str
    organization_id: str  # the supplying organization
    facility_ids: tuple[str, ...]  # one facility when sources are counted by facility
    monthly_volume: float


@dataclass(frozen=True, slots=True)
class CriticalNode:
    """A facility whose loss alone cuts `end_item_ids` off from every source; `item_ids` are all
    items it cuts off among those the end items asked about are built from (end items,
    subassemblies, components)."""

    facility_id: str
    organization_id: str
    end_item_ids: tuple[str, ...]
    item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ItemImpact:
    """One item hit by an outage, in the terms of the risk-exposure model: the item is exposed
    when its time-to-recover exceeds its time-to-survive."""

    item_id: str
    end_item: bool
    directly_hit: bool  # supplied by a facility that is down (else hit through its components)
    lost_share: float  # share of the item's supply lost while the outage lasts, 0..1
    time_to_survive_days: float
    time_to_recover_days: float
    units_at_risk: float
    revenue_at_risk: float

    @property
    def exposed(self) -> bool:
        """True when stock runs out before supply recovers."""
        return self.time_to_recover_days > self.time_to_survive_days


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """The impact of a set of outages; totals are summed over end items (the market-facing
    revenue), per-item figures are in `items`."""

    items: tuple[ItemImpact, ...]
    end_item_ids: tuple[str, ...]
    units_at_risk: float
    revenue_at_risk: float
    affected_customer_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SourcingAssignment:
    """Lost volume of `item_id` moved to `facility_id` at `unit_price`."""

    item_id: str
    facility_id: str
    organization_id: str
    monthly_volume: float
    unit_price: float
    current_supplier: bool  # the facility already supplies the item (else a capability match)


@dataclass(frozen=True, slots=True)
class UnmetVolume:
    item_id: str
    monthly_volume: float


@dataclass(frozen=True, slots=True)
class SourcingPlan:
    """The cheapest re-sourcing of the volume lost to outages under the candidates' spare monthly
    capacity, and what no candidate can take."""

    assignments: tuple[SourcingAssignment, ...]
    unmet: tuple[UnmetVolume, ...]
    lost_volume: float
    unmet_volume: float
    total_cost: float  # per month, over the assignments
