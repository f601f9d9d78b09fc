"""The supplier network in memory and its analytics, over networkx. Plain Python, no I/O.

The service keeps one `SupplyNetwork` per process and updates it as its data changes: building a
graph of a million edges takes seconds, so no query rebuilds it.

The model. A supply edge says a facility supplies an item (to a customer). A bill-of-materials
line says an item (the component) goes into another (the parent). The supply of an item is pooled
over all its edges, whatever the customer: any facility that supplies an item can stand in for
another. An item is *lost* when it has suppliers and all of them are lost, or when any one of its
components is lost (a BOM has no alternative components). An item without supply edges is made in
house by its owner and is lost only through its components.

Sources are counted by facility: a facility is the unit that burns down or floods, and two plants
of one supplier in two regions are two sources. `single_source_items(by="organization")` counts
by supplying organization instead.
"""

from __future__ import annotations

import gc
import math
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Literal

import networkx as nx

from services.shared.errors import InvalidArgument, NotFound
from services.supply.domain.network_results import (
    CapabilityMatch,
    CriticalNode,
    ImpactReport,
    ItemImpact,
    SingleSource,
    SourcingAssignment,
    SourcingPlan,
    TierEntry,
    UnmetVolume,
)
from services.supply.domain.records import (
    BomLine,
    CapabilityRecord,
    FacilityOutage,
    FacilityRecord,
    ItemRecord,
    SupplyEdgeRecord,
)

DAYS_PER_WEEK = 7.0
# A facility that does not supply an item yet quotes above the incumbents: its unit price is the
# item's mean current price times this factor, unless the caller says otherwise.
NEW_SUPPLIER_PRICE_FACTOR = 1.25

# Capability index keys, tagged so no two kinds can collide: ("p", process), ("pm", process,
# material) and ("pr", process, region). A query on material and region scans the smaller of its
# two lists and filters on the other: a (process, material, region) index would double the
# entries a build inserts, the slowest part of building a 300k-capability network.
_IndexKey = tuple[str, ...]


class SupplyNetwork:
    """Facilities, capabilities, items, BOM lines and supply edges, indexed for the analytics.

    Updates (`upsert_*`, `remove_*`) keep every index current; removing a facility removes its
    capabilities and supply edges, removing an item its edges and BOM lines. References to
    records not (yet) present are kept: the service validates them on import. Not thread-safe:
    callers take turns (networkx graphs are not safe to read while written).
    """

    def __init__(self) -> None:
        self._facilities: dict[str, FacilityRecord] = {}
        self._facilities_by_org: defaultdict[str, set[str]] = defaultdict(set)
        self._capabilities: dict[str, CapabilityRecord] = {}
        self._caps_by_facility: defaultdict[str, set[str]] = defaultdict(set)
        self._cap_index: defaultdict[_IndexKey, dict[str, CapabilityRecord]] = defaultdict(dict)
        # Per index key, capabilities by decreasing capacity; rebuilt lazily after a change.
        self._cap_sorted: dict[_IndexKey, list[CapabilityRecord]] = {}
        self._capacity: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._items: dict[str, ItemRecord] = {}
        self._items_by_owner: defaultdict[str, set[str]] = defaultdict(set)
        # Arcs run with the material: component -> parent, attribute "quantity".
        self._bom: nx.DiGraph[str] = nx.DiGraph()
        self._topo: list[str] | None = None
        self._edges: dict[str, SupplyEdgeRecord] = {}
        # Edges by item and by facility, with their records: the analytics' inner loops walk
        # these, and a lookup in `_edges` per edge would cost them a third more.
        self._edges_by_item: defaultdict[str, dict[str, SupplyEdgeRecord]] = defaultdict(dict)
        self._edges_by_facility: defaultdict[str, dict[str, SupplyEdgeRecord]] = defaultdict(dict)
        # item -> facility -> number of edges: the item's distinct sources.
        self._sources: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        # facility -> item process -> monthly volume committed on its edges.
        self._load: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._outages: dict[str, FacilityOutage] = {}

    # -- building and updating ------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        facilities: Iterable[FacilityRecord],
        capabilities: Iterable[CapabilityRecord],
        items: Iterable[ItemRecord],
        bom: Iterable[BomLine],
        edges: Iterable[SupplyEdgeRecord],
    ) -> SupplyNetwork:
        """A network of these records; InvalidArgument when the BOM lines form a cycle."""
        # A build allocates millions of containers and no cycles: with the collector running,
        # its passes over the growing heap take about half the build time.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return cls._build(facilities, capabilities, items, bom, edges)
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _build(
        cls,
        facilities: Iterable[FacilityRecord],
        capabilities: Iterable[CapabilityRecord],
        items: Iterable[ItemRecord],
        bom: Iterable[BomLine],
        edges: Iterable[SupplyEdgeRecord],
    ) -> SupplyNetwork:
        network = cls()
        for facility in facilities:
            network.upsert_facility(facility)
        for item in items:
            network.upsert_item(item)
        network._add_capabilities(capabilities)
        network._bom.add_edges_from(
            (line.component_item_id, line.parent_item_id, {"quantity": line.quantity})
            for line in bom
        )
        if not nx.is_directed_acyclic_graph(network._bom):
            cycle = [u for u, _ in nx.find_cycle(network._bom)]
            raise InvalidArgument.field(
                "bom", "bills of materials form a cycle: " + " -> ".join([*cycle, cycle[0]])
            )
        network._add_edges(edges)
        return network

    def _add_capabilities(self, capabilities: Iterable[CapabilityRecord]) -> None:
        """upsert_capability for many at once: the sorted index lists are dropped once per key
        rather than once per capability."""
        touched: set[_IndexKey] = set()
        for cap in capabilities:
            if cap.id in self._capabilities:
                self.remove_capability(cap.id)
            self._capabilities[cap.id] = cap
            self._caps_by_facility[cap.facility_id].add(cap.id)
            for key in self._index_keys(cap):
                self._cap_index[key][cap.id] = cap
                touched.add(key)
            self._capacity[cap.facility_id][cap.process] += cap.monthly_capacity
        for key in touched:
            self._cap_sorted.pop(key, None)

    def _add_edges(self, edges: Iterable[SupplyEdgeRecord]) -> None:
        """upsert_edge for many at once, with the lookups hoisted out of the loop: building a
        network of a million edges spends most of its time here."""
        known, by_item, by_facility = self._edges, self._edges_by_item, self._edges_by_facility
        sources, load, items = self._sources, self._load, self._items
        for edge in edges:
            if edge.id in known:
                self.upsert_edge(edge)
                continue
            known[edge.id] = edge
            by_item[edge.item_id][edge.id] = edge
            by_facility[edge.facility_id][edge.id] = edge
            sources[edge.item_id][edge.facility_id] += 1
            item = items.get(edge.item_id)
            load[edge.facility_id][item.process if item else ""] += edge.monthly_volume

    def upsert_facility(self, facility: FacilityRecord) -> None:
        """Adds or replaces a facility; its capabilities move with a changed region."""
        old = self._facilities.get(facility.id)
        moved = (
            []
            if old is not None and old.region == facility.region
            else [self._capabilities[c] for c in self._caps_by_facility.get(facility.id, ())]
        )
        for cap in moved:
            self._unindex_capability(cap)
        if old is not None:
            self._facilities_by_org[old.organization_id].discard(facility.id)
        self._facilities[facility.id] = facility
        self._facilities_by_org[facility.organization_id].add(facility.id)
        for cap in moved:
            self._index_capability(cap)

    def remove_facility(self, facility_id: str) -> None:
        """Removes a facility with its capabilities, supply edges and outage."""
        for cap_id in list(self._caps_by_facility.get(facility_id, ())):
            self.remove_capability(cap_id)
        for edge_id in list(self._edges_by_facility.get(facility_id, ())):
            self.remove_edge(edge_id)
        old = self._facilities.pop(facility_id, None)
        if old is not None:
            self._facilities_by_org[old.organization_id].discard(facility_id)
        self._outages.pop(facility_id, None)

    def upsert_capability(self, capability: CapabilityRecord) -> None:
        """Adds or replaces a capability."""
        self.remove_capability(capability.id)
        self._capabilities[capability.id] = capability
        self._caps_by_facility[capability.facility_id].add(capability.id)
        self._index_capability(capability)
        self._capacity[capability.facility_id][capability.process] += capability.monthly_capacity

    def remove_capability(self, capability_id: str) -> None:
        """Removes a capability (nothing when absent)."""
        old = self._capabilities.pop(capability_id, None)
        if old is None:
            return
        self._caps_by_facility[old.facility_id].discard(capability_id)
        self._unindex_capability(old)
        self._capacity[old.facility_id][old.process] -= old.monthly_capacity

    def upsert_item(self, item: ItemRecord) -> None:
        """Adds or replaces an item; its edges' load moves with a changed process."""
        old = self._items.get(item.id)
        if old is not None:
            self._items_by_owner[old.organization_id].discard(item.id)
        # Edges may have come first, their load booked under no process.
        old_process = old.process if old is not None else ""
        if old_process != item.process:
            for edge in self._edges_by_item.get(item.id, {}).values():
                self._load[edge.facility_id][old_process] -= edge.monthly_volume
                self._load[edge.facility_id][item.process] += edge.monthly_volume
        self._items[item.id] = item
        self._items_by_owner[item.organization_id].add(item.id)

    def remove_item(self, item_id: str) -> None:
        """Removes an item with its supply edges and BOM lines."""
        for edge_id in list(self._edges_by_item.get(item_id, ())):
            self.remove_edge(edge_id)
        if self._bom.has_node(item_id):
            self._bom.remove_node(item_id)
            self._topo = None
        old = self._items.pop(item_id, None)
        if old is not None:
            self._items_by_owner[old.organization_id].discard(item_id)

    def upsert_bom_line(self, line: BomLine) -> None:
        """Adds or replaces a BOM line; InvalidArgument when it would close a cycle."""
        parent, component = line.parent_item_id, line.component_item_id
        if parent == component or (
            self._bom.has_node(parent)
            and self._bom.has_node(component)
            and not self._bom.has_edge(component, parent)
            and nx.has_path(self._bom, parent, component)
        ):
            raise InvalidArgument.field(
                "bom_line",
                f"item {component!r} in {parent!r} would close a cycle: {parent!r} is already "
                f"(part of) a component of {component!r}",
            )
        if not self._bom.has_edge(component, parent):
            self._topo = None
        self._bom.add_edge(component, parent, quantity=line.quantity)

    def remove_bom_line(self, parent_item_id: str, component_item_id: str) -> None:
        """Removes a BOM line (nothing when absent)."""
        if self._bom.has_edge(component_item_id, parent_item_id):
            self._bom.remove_edge(component_item_id, parent_item_id)
            self._topo = None

    def upsert_edge(self, edge: SupplyEdgeRecord) -> None:
        """Adds or replaces a supply edge."""
        self.remove_edge(edge.id)
        self._edges[edge.id] = edge
        self._edges_by_item[edge.item_id][edge.id] = edge
        self._edges_by_facility[edge.facility_id][edge.id] = edge
        self._sources[edge.item_id][edge.facility_id] += 1
        self._load[edge.facility_id][self._process_of(edge.item_id)] += edge.monthly_volume

    def remove_edge(self, edge_id: str) -> None:
        """Removes a supply edge (nothing when absent)."""
        old = self._edges.pop(edge_id, None)
        if old is None:
            return
        del self._edges_by_item[old.item_id][edge_id]
        del self._edges_by_facility[old.facility_id][edge_id]
        sources = self._sources[old.item_id]
        sources[old.facility_id] -= 1
        if sources[old.facility_id] == 0:
            del sources[old.facility_id]
        if not sources:
            del self._sources[old.item_id]
        self._load[old.facility_id][self._process_of(old.item_id)] -= old.monthly_volume

    def upsert_outage(self, outage: FacilityOutage) -> None:
        """Records an active outage (one per facility; a new report replaces the old one)."""
        _check_outage(outage, "outage")
        self._outages[outage.facility_id] = outage

    def remove_outage(self, facility_id: str) -> None:
        """Ends a facility's active outage (nothing when there is none)."""
        self._outages.pop(facility_id, None)

    # -- lookups ---------------------------------------------------------------------------------

    def facility(self, facility_id: str) -> FacilityRecord | None:
        """The facility, or None."""
        return self._facilities.get(facility_id)

    def item(self, item_id: str) -> ItemRecord | None:
        """The item, or None."""
        return self._items.get(item_id)

    def edge(self, edge_id: str) -> SupplyEdgeRecord | None:
        """The supply edge, or None."""
        return self._edges.get(edge_id)

    def facilities_in_region(self, region: str) -> list[str]:
        """Ids of the facilities in `region`, sorted (e.g. to model a regional outage)."""
        return sorted(f.id for f in self._facilities.values() if f.region == region)

    def supplying_facilities(self, item_id: str) -> list[str]:
        """Ids of the facilities with a supply edge for the item, sorted."""
        return sorted(self._sources.get(item_id, ()))

    def components(self, item_id: str) -> list[str]:
        """Direct BOM components of the item, sorted."""
        if not self._bom.has_node(item_id):
            return []
        return sorted(self._bom.predecessors(item_id))

    @property
    def active_outages(self) -> dict[str, FacilityOutage]:
        """Active outages by facility id (a copy)."""
        return dict(self._outages)

    # -- multi-tier upstream and downstream ------------------------------------------------------

    def upstream(
        self,
        *,
        item_id: str | None = None,
        organization_id: str | None = None,
        max_tiers: int | None = None,
    ) -> list[TierEntry]:
        """The supply edges an item, or everything an organization owns or makes, depends on.

        Tier 1 supplies the start directly; the suppliers of an item's components are one tier
        further out than the item's suppliers. An item made in house (no supply edges, or only
        the start organization's own) adds no tier: for an OEM's end item, the suppliers of its
        components are tier 1. For an organization, the start is every item it owns or makes,
        entered through the edges it is the customer of; its own facilities are never listed.
        """
        starts, own = self._walk_start(item_id, organization_id, max_tiers, downstream=False)
        return self._walk(starts, own, max_tiers, downstream=False)

    def downstream(
        self,
        *,
        item_id: str | None = None,
        organization_id: str | None = None,
        max_tiers: int | None = None,
    ) -> list[TierEntry]:
        """The supply edges that carry an item, or what an organization makes, towards the market.

        Tier 1 is the start's own deliveries (every edge of the item; for an organization, its
        facilities' edges); the edges of the items it goes into are one tier further, except
        through items made in house, which add no tier.
        """
        starts, own = self._walk_start(item_id, organization_id, max_tiers, downstream=True)
        return self._walk(starts, own, max_tiers, downstream=True)

    def _walk_start(
        self,
        item_id: str | None,
        organization_id: str | None,
        max_tiers: int | None,
        *,
        downstream: bool,
    ) -> tuple[set[str], str | None]:
        if (item_id is None) == (organization_id is None):
            raise InvalidArgument.field("start", "name exactly one of an item and an organization")
        if max_tiers is not None and max_tiers < 1:
            raise InvalidArgument.field("max_tiers", "must be at least 1 (or unset: all tiers)")
        if item_id is not None:
            if item_id not in self._items and item_id not in self._sources:
                raise NotFound(f"item {item_id!r} not found")
            return {item_id}, None
        assert organization_id is not None
        made = {
            e.item_id
            for f in self._facilities_by_org.get(organization_id, ())
            for e in self._edges_by_facility.get(f, {}).values()
        }
        if downstream:
            return made, organization_id
        return made | self._items_by_owner.get(organization_id, set()), organization_id

    def _walk(
        self, starts: set[str], own: str | None, max_tiers: int | None, *, downstream: bool
    ) -> list[TierEntry]:
        # A 0-1 breadth-first search over items: a BOM step costs a tier only when the item it
        # leaves is bought, so deque-front pushes keep the pops in tier order.
        dist = dict.fromkeys(starts, 0)
        queue: deque[tuple[int, str]] = deque((0, s) for s in sorted(starts))
        entries: list[TierEntry] = []
        while queue:
            tier, item = queue.popleft()
            if dist[item] < tier:
                continue
            if max_tiers is not None and tier >= max_tiers:
                continue
            listed = self._tier_edges(item, own, start=item in starts, downstream=downstream)
            entries.extend(self._entry(tier + 1, self._edges[e]) for e in listed)
            step = 1 if listed else 0
            if not self._bom.has_node(item):
                continue
            nexts = self._bom.successors(item) if downstream else self._bom.predecessors(item)
            for other in nexts:
                if tier + step < dist.get(other, math.inf):
                    dist[other] = tier + step
                    if step:
                        queue.append((tier + step, other))
                    else:
                        queue.appendleft((tier, other))
        entries.sort(key=lambda e: (e.tier, e.item_id, e.edge_id))
        return entries

    def _tier_edges(
        self, item: str, own: str | None, *, start: bool, downstream: bool
    ) -> list[str]:
        edge_ids = self._edges_by_item.get(item, ())
        if own is None:
            return sorted(edge_ids)
        if downstream:
            # Downstream of an organization starts from its own deliveries only.
            if not start:
                return sorted(edge_ids)
            return sorted(e for e in edge_ids if self._org_of(self._edges[e].facility_id) == own)
        # Upstream never lists the organization as its own supplier, and of the items it owns
        # or makes only the edges it buys on: another supplier of what it sells is no supplier
        # of its.
        return sorted(
            e
            for e in edge_ids
            if self._org_of(self._edges[e].facility_id) != own
            and (not start or self._edges[e].customer_id == own)
        )

    def _entry(self, tier: int, edge: SupplyEdgeRecord) -> TierEntry:
        return TierEntry(
            tier=tier,
            item_id=edge.item_id,
            edge_id=edge.id,
            facility_id=edge.facility_id,
            supplier_organization_id=self._org_of(edge.facility_id),
            customer_organization_id=edge.customer_id,
        )

    # -- capable-supplier search -----------------------------------------------------------------

    def capable_facilities(
        self,
        process: str,
        material: str | None = None,
        region: str | None = None,
        min_monthly_capacity: float = 0,
        certification: str | None = None,
        limit: int = 100,
        *,
        exclude_facility_ids: Collection[str] = (),
    ) -> list[CapabilityMatch]:
        """Facilities that can run `process` (on `material`, in `region`, certified), with at
        least `min_monthly_capacity` units a month, largest capacity first, one match per
        facility. A facility in an active outage counts with its reduced capacity (none when
        down). Capacity is nominal: volume already committed is not subtracted."""
        if not process:
            raise InvalidArgument.field("process", "is required")
        if not (math.isfinite(min_monthly_capacity) and min_monthly_capacity >= 0):
            raise InvalidArgument.field("min_monthly_capacity", "must be a number >= 0")
        if limit < 1:
            raise InvalidArgument.field("limit", "must be at least 1")
        key: _IndexKey = ("p", process)
        if material and region:
            by_material, by_region = ("pm", process, material), ("pr", process, region)
            smaller = len(self._cap_index.get(by_material, ())) <= len(
                self._cap_index.get(by_region, ())
            )
            key = by_material if smaller else by_region
        elif material:
            key = ("pm", process, material)
        elif region:
            key = ("pr", process, region)
        matches: list[CapabilityMatch] = []
        seen: set[str] = set()
        for cap in self._sorted_capabilities(key):
            if cap.monthly_capacity < min_monthly_capacity:
                break
            if cap.facility_id in seen or cap.facility_id in exclude_facility_ids:
                continue
            if certification and certification not in cap.certifications:
                continue
            if material and material not in cap.materials:
                continue
            facility = self._facilities.get(cap.facility_id)
            if region and (facility is None or facility.region != region):
                continue
            outage = self._outages.get(cap.facility_id)
            available = cap.monthly_capacity * (outage.capacity_factor if outage else 1.0)
            if available < min_monthly_capacity or available <= 0:
                continue
            seen.add(cap.facility_id)
            matches.append(
                CapabilityMatch(
                    facility_id=cap.facility_id,
                    organization_id=facility.organization_id if facility else "",
                    capability_id=cap.id,
                    region=facility.region if facility else "",
                    monthly_capacity=cap.monthly_capacity,
                    available_capacity=available,
                )
            )
            if len(matches) >= limit:
                break
        return matches

    def _index_keys(self, cap: CapabilityRecord) -> Iterator[_IndexKey]:
        facility = self._facilities.get(cap.facility_id)
        yield ("p", cap.process)
        yield ("pr", cap.process, facility.region if facility else "")
        for material in cap.materials:
            yield ("pm", cap.process, material)

    def _index_capability(self, cap: CapabilityRecord) -> None:
        for key in self._index_keys(cap):
            self._cap_index[key][cap.id] = cap
            self._cap_sorted.pop(key, None)

    def _unindex_capability(self, cap: CapabilityRecord) -> None:
        for key in self._index_keys(cap):
            bucket = self._cap_index.get(key)
            if bucket is not None:
                bucket.pop(cap.id, None)
                if not bucket:
                    del self._cap_index[key]
            self._cap_sorted.pop(key, None)

    def _sorted_capabilities(self, key: _IndexKey) -> list[CapabilityRecord]:
        ordered = self._cap_sorted.get(key)
        if ordered is None:
            bucket = self._cap_index.get(key, {})
            ordered = sorted(bucket.values(), key=lambda c: (-c.monthly_capacity, c.id))
            self._cap_sorted[key] = ordered
        return ordered

    # -- single sources and critical nodes -------------------------------------------------------

    def single_source_items(
        self, by: Literal["facility", "organization"] = "facility"
    ) -> list[SingleSource]:
        """Items with supply edges from exactly one facility (by="facility"), or from facilities
        of exactly one organization (by="organization", which also lists items a supplier makes
        in several of its plants), sorted by item id."""
        found: list[SingleSource] = []
        for item_id, sources in self._sources.items():
            if by == "facility":
                if len(sources) != 1:
                    continue
                org = self._org_of(next(iter(sources)))
            else:
                orgs = {self._org_of(f) for f in sources}
                if len(orgs) != 1:
                    continue
                org = orgs.pop()
            volume = sum(e.monthly_volume for e in self._edges_by_item[item_id].values())
            found.append(SingleSource(item_id, org, tuple(sorted(sources)), volume))
        found.sort(key=lambda s: s.item_id)
        return found

    def critical_nodes(self, end_item_ids: Iterable[str] | None = None) -> list[CriticalNode]:
        """Facilities whose loss alone cuts an end item off from all its sources, most end items
        cut first (then by facility id).

        Dominator reasoning on the sourcing DAG rather than articulation points of the undirected
        graph: with "lost when all suppliers are lost, or when any component is lost", the set of
        facilities whose single loss kills an item is its sole supplier (if it has exactly one)
        united with the sets of its components. One pass in topological order computes it for
        every item, linear in the BOM plus the sizes of those sets. `end_item_ids` defaults to
        every item flagged as an end item; NotFound names the first unknown one.
        """
        if end_item_ids is None:
            ends = sorted(i.id for i in self._items.values() if i.end_item)
        else:
            ends = sorted(set(end_item_ids))
            for end in ends:
                if end not in self._items and end not in self._sources:
                    raise NotFound(f"item {end!r} not found")
        killers = self._killers(ends)
        cut_ends: defaultdict[str, list[str]] = defaultdict(list)
        cut_items: defaultdict[str, list[str]] = defaultdict(list)
        for item, facilities in killers.items():
            for facility in facilities:
                cut_items[facility].append(item)
        for end in ends:
            for facility in killers.get(end, ()):
                cut_ends[facility].append(end)
        nodes = [
            CriticalNode(
                facility_id=facility,
                organization_id=self._org_of(facility),
                end_item_ids=tuple(sorted(items)),
                item_ids=tuple(sorted(cut_items[facility])),
            )
            for facility, items in cut_ends.items()
        ]
        nodes.sort(key=lambda n: (-len(n.end_item_ids), n.facility_id))
        return nodes

    def _killers(self, ends: Sequence[str]) -> dict[str, frozenset[str]]:
        """Per item under `ends` (closed over BOM components), the facilities whose single loss
        makes it lost."""
        needed: set[str] = set()
        stack = [e for e in ends if e not in needed]
        while stack:
            item = stack.pop()
            if item in needed:
                continue
            needed.add(item)
            if self._bom.has_node(item):
                stack.extend(c for c in self._bom.predecessors(item) if c not in needed)
        empty: frozenset[str] = frozenset()
        killers: dict[str, frozenset[str]] = {}
        for item in self._topological_items(needed):
            sources = self._sources.get(item)
            own = frozenset(sources) if sources is not None and len(sources) == 1 else empty
            parts = [killers[c] for c in self._bom.predecessors(item)] if item in self._bom else []
            parts = [p for p in parts if p]
            if not parts:
                killers[item] = own
            elif len(parts) == 1 and not own:
                killers[item] = parts[0]  # share the component's set: no copy
            else:
                killers[item] = own.union(*parts)
        return killers

    def _topological_items(self, items: Collection[str]) -> list[str]:
        """`items` with every component before the items it goes into."""
        if self._topo is None:
            self._topo = list(nx.topological_sort(self._bom))
        outside = [i for i in items if not self._bom.has_node(i)]
        return [i for i in self._topo if i in items] + outside

    # -- disruption impact -----------------------------------------------------------------------

    def disruption_impact(self, outages: Sequence[FacilityOutage]) -> ImpactReport:
        """What the outages do to items and end items, by the risk-exposure approach of
        Simchi-Levi et al. (time-to-recover vs time-to-survive per node).

        For an item supplied by a facility that is down: the lost share is the volume lost on its
        edges (scaled by 1 - capacity_factor) over its total volume; its time-to-recover is the
        longest outage among them, shortened by the share of the lost volume its other suppliers'
        spare capacity can take over; its time-to-survive is its stock (inventory weeks in days).
        An item whose components are hit inherits the largest lost share and time-to-recover of
        those components, and survives on its own stock plus the shortest time-to-survive of
        them. Units at risk = daily demand x lost share x days beyond time-to-survive; revenue at
        risk is that times the unit revenue. Affected customers are the customers of every hit
        item's edges and the owners of hit end items.
        """
        down = _merge_outages(outages, self._facilities)
        direct: dict[str, tuple[float, float]] = {}  # item -> (lost share, time-to-recover)
        hit_items = {e.item_id for f in down for e in self._edges_by_facility.get(f, {}).values()}
        spare_cache: dict[tuple[str, str], float] = {}
        for item in hit_items:
            direct_hit = self._direct_hit(item, down, spare_cache)
            if direct_hit is not None:
                direct[item] = direct_hit
        # Propagate to the items the hit ones go into, components first.
        reach: set[str] = set()
        stack = [i for i in direct if self._bom.has_node(i)]
        while stack:
            item = stack.pop()
            for parent in self._bom.successors(item):
                if parent not in reach:
                    reach.add(parent)
                    stack.append(parent)
        state: dict[str, tuple[float, float, float]] = {}  # item -> (share, ttr, tts)
        for item in self._topological_items(reach | set(direct)):
            record = self._items.get(item)
            stock_days = record.inventory_weeks * DAYS_PER_WEEK if record else 0.0
            share, ttr, tts = 0.0, 0.0, math.inf
            if item in direct:
                share, ttr = direct[item]
                tts = stock_days
            if self._bom.has_node(item):
                hit_parts = [state[c] for c in self._bom.predecessors(item) if c in state]
                if hit_parts:
                    share = max(share, *(p[0] for p in hit_parts))
                    ttr = max(ttr, *(p[1] for p in hit_parts))
                    tts = min(tts, stock_days + min(p[2] for p in hit_parts))
            if share > 0:
                state[item] = (share, ttr, tts)
        impacts: list[ItemImpact] = []
        customers: set[str] = set()
        for item, (share, ttr, tts) in state.items():
            record = self._items.get(item)
            demand_per_day = record.weekly_demand / DAYS_PER_WEEK if record else 0.0
            units = demand_per_day * share * max(0.0, ttr - tts)
            is_end = bool(record and record.end_item)
            revenue = units * record.unit_revenue if record else 0.0
            impacts.append(
                ItemImpact(item, is_end, item in direct, share, tts, ttr, units, revenue)
            )
            customers.update(e.customer_id for e in self._edges_by_item.get(item, {}).values())
            if is_end and record:
                customers.add(record.organization_id)
        impacts.sort(key=lambda i: i.item_id)
        ends = [i for i in impacts if i.end_item]
        return ImpactReport(
            items=tuple(impacts),
            end_item_ids=tuple(i.item_id for i in ends),
            units_at_risk=sum(i.units_at_risk for i in ends),
            revenue_at_risk=sum(i.revenue_at_risk for i in ends),
            affected_customer_ids=tuple(sorted(c for c in customers if c)),
        )

    def _direct_hit(
        self,
        item: str,
        down: dict[str, FacilityOutage],
        spare_cache: dict[tuple[str, str], float],
    ) -> tuple[float, float] | None:
        process = self._process_of(item)
        total = lost = spare = 0.0
        lost_edges = total_edges = 0.0
        duration = 0.0
        for edge in self._edges_by_item.get(item, {}).values():
            total += edge.monthly_volume
            total_edges += 1
            outage = down.get(edge.facility_id)
            if outage is not None and outage.capacity_factor < 1.0:
                loss = 1.0 - outage.capacity_factor
                lost += edge.monthly_volume * loss
                lost_edges += loss
                duration = max(duration, outage.duration_days)
        if lost_edges == 0:
            return None
        for facility in self._sources.get(item, ()):
            if facility not in down:
                key = (facility, process)
                if key not in spare_cache:
                    spare_cache[key] = self._spare(facility, process)
                spare += spare_cache[key]
        # Without volumes on the edges every edge weighs the same.
        share = lost / total if total > 0 else lost_edges / total_edges
        covered = min(1.0, spare / lost) if lost > 0 else 0.0
        return share, duration * (1.0 - covered)

    def _spare(self, facility: str, process: str) -> float:
        """Monthly capacity left at a facility for the process (for every process when the
        item's process is unknown), reduced by an active outage."""
        capacity: Mapping[str, float] = self._capacity.get(facility) or {}
        load: Mapping[str, float] = self._load.get(facility) or {}
        if process:
            free = capacity.get(process, 0.0) - load.get(process, 0.0)
        else:
            free = sum(capacity.values()) - sum(load.values())
        outage = self._outages.get(facility)
        if outage is not None:
            free -= sum(capacity.values()) * (1.0 - outage.capacity_factor)
        return max(0.0, free)

    # -- alternative sourcing --------------------------------------------------------------------

    def alternative_sourcing(
        self,
        outages: Sequence[FacilityOutage],
        *,
        item_ids: Collection[str] | None = None,
        candidates_per_item: int = 10,
        new_supplier_price_factor: float = NEW_SUPPLIER_PRICE_FACTOR,
    ) -> SourcingPlan:
        """The cheapest way to move the monthly volume lost to `outages` (optionally only of
        `item_ids`) to facilities that are not down, under their spare monthly capacity.

        Candidates per item: its current suppliers that are not down, priced at their current
        unit price for it, and up to `candidates_per_item` capable facilities (process and
        material of the item), priced at the item's mean current price x
        `new_supplier_price_factor`. A facility's spare capacity for a process is shared by all
        items of that process. Solved as a min-cost flow (networkx network simplex) on whole
        units and cents; volume no candidate can take is reported as unmet.
        """
        if candidates_per_item < 0:
            raise InvalidArgument.field("candidates_per_item", "must be >= 0")
        if not (math.isfinite(new_supplier_price_factor) and new_supplier_price_factor > 0):
            raise InvalidArgument.field("new_supplier_price_factor", "must be a number > 0")
        down = _merge_outages(outages, self._facilities)
        excluded = set(down) | {f for f, o in self._outages.items() if o.capacity_factor <= 0}
        lost: dict[str, int] = defaultdict(int)
        for facility, outage in down.items():
            for edge in self._edges_by_facility.get(facility, {}).values():
                if item_ids is None or edge.item_id in item_ids:
                    lost[edge.item_id] += math.ceil(
                        edge.monthly_volume * (1.0 - outage.capacity_factor) - 1e-9
                    )
        lost = {i: v for i, v in lost.items() if v > 0}
        graph: nx.DiGraph[tuple[str, ...]] = nx.DiGraph()
        sink = ("sink",)
        offers: dict[tuple[str, str], tuple[float, bool]] = {}  # (item, facility) -> price
        for item, volume in sorted(lost.items()):
            node = ("item", item)
            graph.add_node(node, demand=-volume)
            for facility, price, current in self._candidates(
                item, excluded, candidates_per_item, new_supplier_price_factor
            ):
                process = self._process_of(item)
                supply = ("cap", facility, process)
                if supply not in graph:
                    spare = math.floor(self._spare(facility, process))
                    graph.add_edge(supply, sink, capacity=spare)
                graph.add_edge(node, supply, capacity=volume, weight=round(price * 100))
                offers[(item, facility)] = (price, current)
        total = sum(lost.values())
        graph.add_node(sink, demand=total)
        # Unmet volume flows straight to the sink at a cost above any real offer.
        penalty = 1 + 2 * max((round(p * 100) for p, _ in offers.values()), default=0)
        for item, volume in lost.items():
            graph.add_edge(("item", item), sink, capacity=volume, weight=penalty)
        flow = nx.min_cost_flow(graph) if total else {}
        assignments: list[SourcingAssignment] = []
        unmet: list[UnmetVolume] = []
        for item in sorted(lost):
            for target, amount in flow.get(("item", item), {}).items():
                if amount <= 0:
                    continue
                if target == sink:
                    unmet.append(UnmetVolume(item, float(amount)))
                    continue
                facility = target[1]
                price, current = offers[(item, facility)]
                assignments.append(
                    SourcingAssignment(
                        item, facility, self._org_of(facility), float(amount), price, current
                    )
                )
        assignments.sort(key=lambda a: (a.item_id, a.facility_id))
        return SourcingPlan(
            assignments=tuple(assignments),
            unmet=tuple(unmet),
            lost_volume=float(total),
            unmet_volume=sum(u.monthly_volume for u in unmet),
            total_cost=sum(a.monthly_volume * a.unit_price for a in assignments),
        )

    def _candidates(
        self, item: str, excluded: set[str], limit: int, price_factor: float
    ) -> list[tuple[str, float, bool]]:
        prices: defaultdict[str, list[float]] = defaultdict(list)
        for edge in self._edges_by_item.get(item, {}).values():
            prices[edge.facility_id].append(edge.unit_price)
        every = [p for ps in prices.values() for p in ps]
        mean = sum(every) / len(every) if every else 0.0
        found = [
            (f, sum(ps) / len(ps), True) for f, ps in sorted(prices.items()) if f not in excluded
        ]
        record = self._items.get(item)
        if record is not None and record.process and limit:
            matches = self.capable_facilities(
                record.process,
                material=record.material or None,
                limit=limit,
                exclude_facility_ids=excluded | set(prices),
            )
            found.extend((m.facility_id, mean * price_factor, False) for m in matches)
        return found

    # -- supplier risk ---------------------------------------------------------------------------

    def supplier_risk(self, organization_id: str) -> float:
        """The share, in [0, 1], of an organization's supplied monthly volume that is at risk:
        volume on edges from its facilities in an active outage (weighted by the capacity lost)
        or for which the facility is the item's only source (all of it: nothing backs it up).
        Edges without volume weigh one each; an organization that supplies nothing scores 0."""
        total = at_risk = 0.0
        count = risky = 0.0
        for facility in self._facilities_by_org.get(organization_id, ()):
            outage = self._outages.get(facility)
            outage_loss = 1.0 - outage.capacity_factor if outage else 0.0
            for edge in self._edges_by_facility.get(facility, {}).values():
                weight = 1.0 if len(self._sources[edge.item_id]) == 1 else outage_loss
                total += edge.monthly_volume
                at_risk += edge.monthly_volume * weight
                count += 1
                risky += weight
        if total > 0:
            return min(1.0, at_risk / total)
        return risky / count if count else 0.0

    # -- helpers ---------------------------------------------------------------------------------

    def _org_of(self, facility_id: str) -> str:
        facility = self._facilities.get(facility_id)
        return facility.organization_id if facility else ""

    def _process_of(self, item_id: str) -> str:
        item = self._items.get(item_id)
        return item.process if item else ""


def _check_outage(outage: FacilityOutage, field: str) -> None:
    if not (math.isfinite(outage.duration_days) and outage.duration_days >= 0):
        raise InvalidArgument.field(f"{field}.duration_days", "must be a number of days >= 0")
    if not (math.isfinite(outage.capacity_factor) and 0.0 <= outage.capacity_factor <= 1.0):
        raise InvalidArgument.field(f"{field}.capacity_factor", "must be within [0, 1]")


def _merge_outages(
    outages: Sequence[FacilityOutage], facilities: dict[str, FacilityRecord]
) -> dict[str, FacilityOutage]:
    """One outage per facility, the worst of those given (least capacity, longest)."""
    merged: dict[str, FacilityOutage] = {}
    for index, outage in enumerate(outages):
        _check_outage(outage, f"outages[{index}]")
        if outage.facility_id not in facilities:
            raise NotFound(f"facility {outage.facility_id!r} not found")
        seen = merged.get(outage.facility_id)
        if seen is not None:
            outage = FacilityOutage(
                outage.facility_id,
                max(seen.duration_days, outage.duration_days),
                min(seen.capacity_factor, outage.capacity_factor),
            )
        merged[outage.facility_id] = outage
    return merged
