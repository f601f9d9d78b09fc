"""Resources of the supplier network beyond facilities: capabilities, items with their bills of
materials, supply edges and disruptions. Values and validation rules; plain Python, no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.shared.errors import FieldViolation, InvalidArgument
from services.supply.domain.records import CapabilityRecord, ItemRecord, SupplyEdgeRecord

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Facility ids predate this module and are stored in 32 characters.
FACILITY_ID_MAX = 32
_PROCESS_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_DESIGN_RE = re.compile(r"^projects/[a-z0-9][a-z0-9-]{0,62}/designs/[a-z0-9][a-z0-9-]{0,62}$")
_TOKEN_MAX = 100

OUTAGE = "OUTAGE"
CAPACITY_DROP = "CAPACITY_DROP"
ACTIVE = "ACTIVE"
RESOLVED = "RESOLVED"
# Consent states of a supply edge between two organizations (ACTIVE as above: agreed).
PROPOSED = "PROPOSED"
DECLINED = "DECLINED"
WITHDRAWN = "WITHDRAWN"
EDGE_STATES = (PROPOSED, ACTIVE, DECLINED, WITHDRAWN)


@dataclass(frozen=True)
class Capability:
    id: str
    organization_id: str
    facility_id: str
    process: str
    materials: tuple[str, ...]
    monthly_capacity: float
    certifications: tuple[str, ...]

    @property
    def name(self) -> str:
        return (
            f"organizations/{self.organization_id}/facilities/{self.facility_id}"
            f"/capabilities/{self.id}"
        )


@dataclass(frozen=True)
class Item:
    id: str
    organization_id: str
    display_name: str
    part_number: str
    end_item: bool
    unit_revenue: float
    weekly_demand: float
    inventory_weeks: float
    design: str = ""
    revision: str = ""
    process: str = ""
    material: str = ""
    # (component item id, quantity per parent, the component's organization), sorted. A
    # component is one of the organization's own items or one it buys.
    components: tuple[tuple[str, float, str], ...] = ()

    @property
    def name(self) -> str:
        return f"organizations/{self.organization_id}/items/{self.id}"

    def without_components(self) -> Item:
        return Item(
            self.id,
            self.organization_id,
            self.display_name,
            self.part_number,
            self.end_item,
            self.unit_revenue,
            self.weekly_demand,
            self.inventory_weeks,
            self.design,
            self.revision,
            self.process,
            self.material,
        )


@dataclass(frozen=True)
class SupplyEdge:
    """Facility `facility_id` (of `supplier_id`) supplies item `item_id` to `customer_id`."""

    id: str
    owner_id: str  # the organization that created the edge: the supplier or the customer
    facility_id: str
    supplier_id: str
    item_id: str
    item_organization_id: str
    customer_id: str
    lead_time_days: float
    unit_price: float
    share: float
    monthly_volume: float
    # ACTIVE edges are the network; a PROPOSED one waits for the other party's consent.
    state: str = ACTIVE

    @property
    def name(self) -> str:
        return f"organizations/{self.owner_id}/supplyEdges/{self.id}"

    @property
    def counterparty_id(self) -> str:
        """The party that did not create the edge (the owner itself for an internal edge)."""
        return self.customer_id if self.owner_id == self.supplier_id else self.supplier_id

    @property
    def cross_organization(self) -> bool:
        """Between two organizations: it exists only once both agree."""
        return self.supplier_id != self.customer_id

    @property
    def facility_name(self) -> str:
        return f"organizations/{self.supplier_id}/facilities/{self.facility_id}"

    @property
    def item_name(self) -> str:
        return f"organizations/{self.item_organization_id}/items/{self.item_id}"

    def visible_to(self, organization_id: str) -> bool:
        return organization_id in (self.supplier_id, self.customer_id)


@dataclass(frozen=True)
class Disruption:
    id: str
    organization_id: str
    facility_id: str
    kind: str  # OUTAGE | CAPACITY_DROP
    capacity_factor: float  # remaining capacity: 0 for an outage
    expected_duration_days: float
    description: str
    state: str  # ACTIVE | RESOLVED
    create_time: dt.datetime
    resolve_time: dt.datetime | None = None
    affected_customers: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"organizations/{self.organization_id}/disruptions/{self.id}"

    @property
    def facility_name(self) -> str:
        return f"organizations/{self.organization_id}/facilities/{self.facility_id}"


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _tokens(values: Iterable[str], where: str, what: str) -> list[FieldViolation]:
    return [
        FieldViolation(where, f"{what} {v!r} must be 1-{_TOKEN_MAX} characters without ';'")
        for v in values
        if not v.strip() or len(v) > _TOKEN_MAX or ";" in v
    ]


def check_id(value: str, where: str, maximum: int = 63) -> list[FieldViolation]:
    """An id usable in a resource name: lower-case letters, digits and '-'."""
    if not ID_RE.match(value) or len(value) > maximum:
        return [
            FieldViolation(
                where,
                f"{value!r} is not an id: 1-{maximum} lower-case letters, digits, '-', "
                "starting with a letter or digit",
            )
        ]
    return []


def capability_problems(
    prefix: str,
    process: str,
    materials: Iterable[str],
    monthly_capacity: float,
    certifications: Iterable[str],
) -> list[FieldViolation]:
    """Every invalid field of a capability, named with `prefix`."""
    problems: list[FieldViolation] = []
    if not _PROCESS_RE.match(process):
        problems.append(
            FieldViolation(f"{prefix}process", "is required: lower-case letters, digits, '-'")
        )
    problems += _tokens(materials, f"{prefix}materials", "material")
    if not _finite(monthly_capacity) or monthly_capacity < 0:
        problems.append(
            FieldViolation(f"{prefix}monthly_capacity", "must be a number >= 0 (units per month)")
        )
    problems += _tokens(certifications, f"{prefix}certifications", "certification")
    return problems


def item_problems(
    prefix: str,
    display_name: str,
    part_number: str,
    unit_revenue: float,
    weekly_demand: float,
    inventory_weeks: float,
    design: str,
    revision: str,
    process: str = "",
    material: str = "",
) -> list[FieldViolation]:
    """Every invalid field of an item, named with `prefix`."""
    problems: list[FieldViolation] = []
    if process and not _PROCESS_RE.match(process):
        problems.append(FieldViolation(f"{prefix}process", "lower-case letters, digits, '-'"))
    problems += _tokens([material] if material else [], f"{prefix}material", "material")
    if not display_name.strip() or len(display_name) > 200:
        problems.append(FieldViolation(f"{prefix}display_name", "is required, at most 200 chars"))
    if len(part_number) > 100:
        problems.append(FieldViolation(f"{prefix}part_number", "must be at most 100 chars"))
    for column, value in (
        ("unit_revenue", unit_revenue),
        ("weekly_demand", weekly_demand),
        ("inventory_weeks", inventory_weeks),
    ):
        if not _finite(value) or value < 0:
            problems.append(FieldViolation(f"{prefix}{column}", "must be a number >= 0"))
    if design and not _DESIGN_RE.match(design):
        problems.append(
            FieldViolation(f"{prefix}design", "must be a name like projects/{p}/designs/{d}")
        )
    if revision and not (design and revision.startswith(design + "/revisions/")):
        problems.append(
            FieldViolation(
                f"{prefix}revision",
                "must be a revision of the item's design: {design}/revisions/{r}",
            )
        )
    return problems


def bom_line_problems(
    prefix: str, parent_id: str, component_id: str, quantity: float
) -> list[FieldViolation]:
    """Every invalid field of a bill-of-materials line, named with `prefix`."""
    problems: list[FieldViolation] = []
    if component_id == parent_id:
        problems.append(FieldViolation(f"{prefix}component", "an item cannot contain itself"))
    if not _finite(quantity) or quantity <= 0:
        problems.append(FieldViolation(f"{prefix}quantity", "must be a number > 0"))
    return problems


def edge_problems(
    prefix: str, lead_time_days: float, unit_price: float, share: float, monthly_volume: float
) -> list[FieldViolation]:
    """Every invalid figure of a supply edge, named with `prefix`."""
    problems: list[FieldViolation] = []
    for column, value in (
        ("lead_time_days", lead_time_days),
        ("unit_price", unit_price),
        ("monthly_volume", monthly_volume),
    ):
        if not _finite(value) or value < 0:
            problems.append(FieldViolation(f"{prefix}{column}", "must be a number >= 0"))
    if not _finite(share) or not 0.0 <= share <= 1.0:
        problems.append(FieldViolation(f"{prefix}share", "must be within [0, 1]"))
    return problems


def disruption_problems(
    kind: str, capacity_factor: float, expected_duration_days: float, description: str
) -> list[FieldViolation]:
    """Every invalid field of a reported disruption."""
    problems: list[FieldViolation] = []
    if kind not in (OUTAGE, CAPACITY_DROP):
        problems.append(
            FieldViolation("disruption.kind", "must be KIND_OUTAGE or KIND_CAPACITY_DROP")
        )
    elif kind == OUTAGE and capacity_factor != 0:
        problems.append(
            FieldViolation("disruption.capacity_factor", "must be 0 (or unset) for an outage")
        )
    elif kind == CAPACITY_DROP and not (_finite(capacity_factor) and 0 < capacity_factor < 1):
        problems.append(
            FieldViolation(
                "disruption.capacity_factor",
                "must be the remaining fraction of capacity, within (0, 1), for a capacity drop",
            )
        )
    if not _finite(expected_duration_days) or expected_duration_days <= 0:
        problems.append(
            FieldViolation("disruption.expected_duration_days", "must be a number of days > 0")
        )
    if len(description) > 2000:
        problems.append(FieldViolation("disruption.description", "must be at most 2000 chars"))
    return problems


def raise_if(problems: list[FieldViolation]) -> None:
    """Raises InvalidArgument carrying every problem (AIP-193 BadRequest), if there are any."""
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems[:20])
        if len(problems) > 20:
            summary += f"; and {len(problems) - 20} more"
        raise InvalidArgument(summary, problems)


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in a parent -> components graph as [a, b, ..., a], or None (iterative DFS)."""
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    for root in edges:
        if color.get(root, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        path = [root]
        color[root] = grey
        while stack:
            node, children = stack[-1]
            if not children:
                stack.pop()
                path.pop()
                color[node] = black
                continue
            child = children.pop()
            state = color.get(child, white)
            if state == grey:
                return path[path.index(child) :] + [child]
            if state == white:
                color[child] = grey
                path.append(child)
                stack.append((child, sorted(edges.get(child, ()))))
    return None


def capability_record(c: Capability) -> CapabilityRecord:
    """The analytics' view of a capability."""
    return CapabilityRecord(
        c.id,
        c.facility_id,
        c.process,
        frozenset(c.materials),
        c.monthly_capacity,
        frozenset(c.certifications),
    )


def item_record(i: Item) -> ItemRecord:
    """The analytics' view of an item (its bill of materials travels as BomLine records)."""
    return ItemRecord(
        i.id,
        i.organization_id,
        i.end_item,
        i.unit_revenue,
        i.weekly_demand,
        i.inventory_weeks,
        i.design,
        i.revision,
        i.process,
        i.material,
    )


def edge_record(e: SupplyEdge) -> SupplyEdgeRecord:
    """The analytics' view of a supply edge."""
    return SupplyEdgeRecord(
        e.id,
        e.facility_id,
        e.item_id,
        e.customer_id,
        e.lead_time_days,
        e.unit_price,
        e.share,
        e.monthly_volume,
    )
