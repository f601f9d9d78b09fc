"""Property tests of SupplyNetwork on random small networks, each checked against a plain
recomputation from the records (no use of the network's indexes)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from services.supply.domain.network import SupplyNetwork
from services.supply.domain.records import (
    BomLine,
    CapabilityRecord,
    FacilityOutage,
    FacilityRecord,
    ItemRecord,
    SupplyEdgeRecord,
)

PROCESSES = ("milling", "casting")


@dataclass(frozen=True)
class Records:
    facilities: list[FacilityRecord]
    capabilities: list[CapabilityRecord]
    items: list[ItemRecord]
    bom: list[BomLine]
    edges: list[SupplyEdgeRecord]

    def build(self) -> SupplyNetwork:
        return SupplyNetwork.build(
            self.facilities, self.capabilities, self.items, self.bom, self.edges
        )


@st.composite
def networks(draw) -> Records:
    n_facilities = draw(st.integers(1, 6))
    facilities = [
        FacilityRecord(
            f"f{i}",
            f"o{draw(st.integers(0, 2))}",
            f"r{draw(st.integers(0, 1))}",
            "DE",
            0.0,
            0.0,
        )
        for i in range(n_facilities)
    ]
    capabilities = [
        CapabilityRecord(
            f"c{i}",
            f"f{draw(st.integers(0, n_facilities - 1))}",
            draw(st.sampled_from(PROCESSES)),
            frozenset({"steel"}),
            float(draw(st.integers(0, 100))),
            frozenset(),
        )
        for i in range(draw(st.integers(0, 8)))
    ]
    n_items = draw(st.integers(1, 8))
    items = [
        ItemRecord(
            id=f"i{i}",
            organization_id=f"o{draw(st.integers(0, 2))}",
            end_item=draw(st.booleans()),
            unit_revenue=10.0,
            weekly_demand=float(draw(st.integers(0, 70))),
            inventory_weeks=float(draw(st.integers(0, 4))),
            process=draw(st.sampled_from(("", *PROCESSES))),
            material="steel",
        )
        for i in range(n_items)
    ]
    # A component always has a lower index than its parent: the BOM is acyclic.
    bom = [
        BomLine(f"i{parent}", f"i{component}", 1.0)
        for parent in range(n_items)
        for component in range(parent)
        if draw(st.booleans())
    ]
    edges = [
        SupplyEdgeRecord(
            f"e{i}",
            f"f{draw(st.integers(0, n_facilities - 1))}",
            f"i{draw(st.integers(0, n_items - 1))}",
            f"o{draw(st.integers(0, 2))}",
            7.0,
            float(draw(st.integers(1, 20))),
            1.0,
            float(draw(st.integers(0, 50))),
        )
        for i in range(draw(st.integers(0, 14)))
    ]
    return Records(facilities, capabilities, items, bom, edges)


def suppliers_of(records: Records) -> dict[str, set[str]]:
    found: defaultdict[str, set[str]] = defaultdict(set)
    for edge in records.edges:
        found[edge.item_id].add(edge.facility_id)
    return found


def components_of(records: Records) -> dict[str, set[str]]:
    found: defaultdict[str, set[str]] = defaultdict(set)
    for line in records.bom:
        found[line.parent_item_id].add(line.component_item_id)
    return found


def lost_without(records: Records, down: set[str]) -> set[str]:
    """Items lost when `down` facilities are gone, by fixpoint over the plain records: an item
    is lost when it has suppliers and all are down, or when any component is lost."""
    suppliers, components = suppliers_of(records), components_of(records)
    lost: set[str] = set()
    changed = True
    while changed:
        changed = False
        for item in records.items:
            if item.id in lost:
                continue
            sources = suppliers.get(item.id, set())
            if (sources and sources <= down) or components.get(item.id, set()) & lost:
                lost.add(item.id)
                changed = True
    return lost


def below(records: Records, starts: set[str]) -> set[str]:
    """`starts` and every item that goes into them, at any depth."""
    components = components_of(records)
    seen, stack = set(starts), list(starts)
    while stack:
        for component in components.get(stack.pop(), ()):
            if component not in seen:
                seen.add(component)
                stack.append(component)
    return seen


@settings(max_examples=300, deadline=None)
@given(networks())
def test_a_reported_critical_node_really_cuts_off_its_end_items_and_no_other_does(records):
    network = records.build()
    ends = {i.id for i in records.items if i.end_item}
    reported = {n.facility_id: n for n in network.critical_nodes()}
    for facility in records.facilities:
        lost = lost_without(records, {facility.id})
        expected_ends = sorted(lost & ends)
        node = reported.get(facility.id)
        if not expected_ends:
            assert node is None
            continue
        assert node is not None
        assert list(node.end_item_ids) == expected_ends
        assert set(node.item_ids) == lost & below(records, ends)
        assert node.organization_id == facility.organization_id


@settings(max_examples=300, deadline=None)
@given(networks())
def test_a_reported_single_source_item_really_has_one_source(records):
    network = records.build()
    suppliers = suppliers_of(records)
    reported = {s.item_id: s for s in network.single_source_items()}
    assert set(reported) == {item for item, s in suppliers.items() if len(s) == 1}
    for item, single in reported.items():
        assert set(single.facility_ids) == suppliers[item]
    org_of = {f.id: f.organization_id for f in records.facilities}
    by_org = {s.item_id for s in network.single_source_items(by="organization")}
    assert by_org == {i for i, s in suppliers.items() if len({org_of[f] for f in s}) == 1}


@settings(max_examples=200, deadline=None)
@given(networks())
def test_upstream_covers_the_items_below_and_upstream_of_downstream_holds_the_start(records):
    network = records.build()
    supplied = {e.item_id for e in records.edges}
    for item in records.items:
        up = network.upstream(item_id=item.id)
        assert {e.item_id for e in up} == below(records, {item.id}) & supplied
        assert {e.edge_id for e in up} == {
            e.id for e in records.edges if e.item_id in below(records, {item.id})
        }
        assert all(e.tier >= 1 for e in up)
        if item.id not in supplied:
            continue
        for entry in network.downstream(item_id=item.id):
            assert item.id in {e.item_id for e in network.upstream(item_id=entry.item_id)}


@settings(max_examples=300, deadline=None)
@given(networks(), st.data())
def test_the_sourcing_plan_never_exceeds_spare_capacity_and_accounts_for_all_lost_volume(
    records, data
):
    network = records.build()
    down_ids = data.draw(st.sets(st.sampled_from([f.id for f in records.facilities])))
    factors = {f: data.draw(st.sampled_from((0.0, 0.5))) for f in down_ids}
    plan = network.alternative_sourcing([FacilityOutage(f, 10.0, factors[f]) for f in down_ids])
    process_of = {i.id: i.process for i in records.items}
    capacity: defaultdict[tuple[str, str], float] = defaultdict(float)
    for cap in records.capabilities:
        capacity[(cap.facility_id, cap.process)] += cap.monthly_capacity
        capacity[(cap.facility_id, "")] += cap.monthly_capacity
    load: defaultdict[tuple[str, str], float] = defaultdict(float)
    lost: defaultdict[str, float] = defaultdict(float)
    for edge in records.edges:
        load[(edge.facility_id, process_of[edge.item_id])] += edge.monthly_volume
        if process_of[edge.item_id]:
            load[(edge.facility_id, "")] += edge.monthly_volume
        if edge.facility_id in down_ids:
            lost[edge.item_id] += math.ceil(edge.monthly_volume * (1 - factors[edge.facility_id]))
    assigned: defaultdict[tuple[str, str], float] = defaultdict(float)
    moved: defaultdict[str, float] = defaultdict(float)
    for a in plan.assignments:
        assert a.facility_id not in down_ids
        assert a.monthly_volume > 0
        assigned[(a.facility_id, process_of[a.item_id])] += a.monthly_volume
        moved[a.item_id] += a.monthly_volume
    for key, volume in assigned.items():
        assert volume <= max(0.0, capacity[key] - load[key])
    for unmet in plan.unmet:
        moved[unmet.item_id] += unmet.monthly_volume
    assert dict(moved) == {i: v for i, v in lost.items() if v > 0}
    assert plan.lost_volume == sum(lost.values())
    assert plan.total_cost == sum(a.monthly_volume * a.unit_price for a in plan.assignments)


def answers(network: SupplyNetwork, records: Records) -> tuple[object, ...]:
    region0 = [FacilityOutage(f.id, 21.0) for f in records.facilities if f.region == "r0"]
    return (
        network.single_source_items(),
        network.single_source_items(by="organization"),
        network.critical_nodes(),
        [network.capable_facilities(p) for p in PROCESSES],
        [network.supplier_risk(f"o{o}") for o in range(3)],
        [network.upstream(item_id=i.id) for i in records.items],
        [network.downstream(organization_id=f"o{o}") for o in range(3)],
        network.disruption_impact(region0),
        network.alternative_sourcing(region0),
    )


@settings(max_examples=150, deadline=None)
@given(networks(), st.data())
def test_incremental_updates_answer_like_a_fresh_build(records, data):
    # Start from an arbitrary part of the records, add the rest one by one, and add and then
    # remove some extra edges: every answer must equal that of a network built in one go.
    keep_edges = data.draw(st.integers(0, len(records.edges)))
    keep_bom = data.draw(st.integers(0, len(records.bom)))
    network = SupplyNetwork.build(
        records.facilities, [], records.items, records.bom[:keep_bom], records.edges[:keep_edges]
    )
    for cap in records.capabilities:
        network.upsert_capability(cap)
    for line in records.bom[keep_bom:]:
        network.upsert_bom_line(line)
    for edge in records.edges[keep_edges:]:
        network.upsert_edge(edge)
    extra = [
        SupplyEdgeRecord(f"x{i}", e.facility_id, e.item_id, e.customer_id, 1.0, 1.0, 1.0, 5.0)
        for i, e in enumerate(records.edges[:3])
    ]
    for edge in extra:
        network.upsert_edge(edge)
    for edge in extra:
        network.remove_edge(edge.id)
    # Re-upserting what is there changes nothing either.
    for item in records.items:
        network.upsert_item(item)
    for facility in records.facilities:
        network.upsert_facility(facility)
    assert answers(network, records) == answers(records.build(), records)
