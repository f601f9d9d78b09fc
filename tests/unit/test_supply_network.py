"""SupplyNetwork on a small network whose answers are worked out by hand below.

The network (arrows: who supplies what to whom; BOM: parent <- component x quantity):

    E  end item of oem, built in house (no supply edges)     E <- S x1
    S  subassembly, welding/steel                             S <- C1 x2, S <- C2 x1
    C1 component, cnc-milling/aluminium
    C2 component, casting/steel

    e1: fa1 (acme, eu)  -> S  for oem,  100/month at 50
    e2: fb1 (bolt, eu)  -> S  for oem,  100/month at 55
    e3: fa2 (acme, us)  -> C1 for acme, 200/month at 10
    e4: fc1 (cast, asia) -> C2 for acme,  60/month at 20
    e5: fc1 (cast, asia) -> C2 for bolt,  40/month at 20

Capabilities (monthly capacity; load = volume of the facility's edges for items of that process):
    fa1 welding {steel} 150 (load 100, spare 50)     fb1 welding {steel} 150 (load 100, spare 50)
    fa2 cnc-milling {aluminium} 300 (load 200)       fc1 casting {steel} 100 (load 100, spare 0)
    fd1 (dyna, eu) cnc-milling {aluminium, steel} 500 ISO9001; casting {steel} 30 (no edges)
    fe1 (edge, eu) welding {steel} 1000 (no edges)

Demand: every item 70 a week (10 a day). Stock: E 0.5 weeks (3.5 days), S 2 weeks (14 days),
C1 0.5 weeks, C2 1 week (7 days). E sells at 1,000 a unit.
"""

from __future__ import annotations

import pytest

from services.shared.errors import InvalidArgument, NotFound
from services.supply.domain.network import SupplyNetwork
from services.supply.domain.records import (
    BomLine,
    CapabilityRecord,
    FacilityOutage,
    FacilityRecord,
    ItemRecord,
    SupplyEdgeRecord,
)


def facility(fid: str, org: str, region: str) -> FacilityRecord:
    return FacilityRecord(fid, org, region, "DE", 0.0, 0.0)


def capability(
    cid: str,
    fid: str,
    process: str,
    materials: set[str],
    capacity: float,
    certs: tuple[str, ...] = (),
) -> CapabilityRecord:
    return CapabilityRecord(cid, fid, process, frozenset(materials), capacity, frozenset(certs))


def item(
    iid: str, owner: str, weeks: float, process: str, material: str, *, end: bool = False
) -> ItemRecord:
    return ItemRecord(
        id=iid,
        organization_id=owner,
        end_item=end,
        unit_revenue=1000.0 if end else 0.0,
        weekly_demand=70.0,
        inventory_weeks=weeks,
        process=process,
        material=material,
    )


def edge(eid: str, fid: str, iid: str, customer: str, volume: float, price: float):
    return SupplyEdgeRecord(eid, fid, iid, customer, 14.0, price, 0.5, volume)


FACILITIES = [
    facility("fa1", "acme", "eu"),
    facility("fa2", "acme", "us"),
    facility("fb1", "bolt", "eu"),
    facility("fc1", "cast", "asia"),
    facility("fd1", "dyna", "eu"),
    facility("fe1", "edge", "eu"),
]
CAPABILITIES = [
    capability("ca1", "fa1", "welding", {"steel"}, 150),
    capability("cb1", "fb1", "welding", {"steel"}, 150),
    capability("ca2", "fa2", "cnc-milling", {"aluminium"}, 300),
    capability("cc1", "fc1", "casting", {"steel"}, 100),
    capability("cd1", "fd1", "cnc-milling", {"aluminium", "steel"}, 500, ("ISO9001",)),
    capability("cd2", "fd1", "casting", {"steel"}, 30),
    capability("ce1", "fe1", "welding", {"steel"}, 1000),
]
ITEMS = [
    item("E", "oem", 0.5, "final-assembly", "", end=True),
    item("S", "oem", 2.0, "welding", "steel"),
    item("C1", "acme", 0.5, "cnc-milling", "aluminium"),
    item("C2", "acme", 1.0, "casting", "steel"),
]
BOM = [BomLine("E", "S", 1), BomLine("S", "C1", 2), BomLine("S", "C2", 1)]
EDGES = [
    edge("e1", "fa1", "S", "oem", 100, 50),
    edge("e2", "fb1", "S", "oem", 100, 55),
    edge("e3", "fa2", "C1", "acme", 200, 10),
    edge("e4", "fc1", "C2", "acme", 60, 20),
    edge("e5", "fc1", "C2", "bolt", 40, 20),
]


@pytest.fixture
def network() -> SupplyNetwork:
    return SupplyNetwork.build(FACILITIES, CAPABILITIES, ITEMS, BOM, EDGES)


def edge_ids(entries) -> list[tuple[int, str]]:
    return [(e.tier, e.edge_id) for e in entries]


# -- upstream / downstream ------------------------------------------------------------------------


def test_upstream_of_an_in_house_end_item_starts_at_its_bought_components(network):
    # E has no supply edges (made in house): its component S's suppliers are tier 1; S is
    # bought, so the suppliers of S's components C1 and C2 are tier 2.
    assert edge_ids(network.upstream(item_id="E")) == [
        (1, "e1"),
        (1, "e2"),
        (2, "e3"),
        (2, "e4"),
        (2, "e5"),
    ]
    assert edge_ids(network.upstream(item_id="E", max_tiers=1)) == [(1, "e1"), (1, "e2")]


def test_upstream_entries_name_supplier_and_customer(network):
    [first, *_] = network.upstream(item_id="S")
    assert (first.tier, first.item_id, first.facility_id) == (1, "S", "fa1")
    assert (first.supplier_organization_id, first.customer_organization_id) == ("acme", "oem")


def test_upstream_of_an_organization_lists_what_it_buys_not_itself(network):
    # acme makes S (fa1) and C1 (fa2) and owns C1 and C2. It buys only C2 (e4 is to acme; e5
    # is cast's delivery to bolt); its own edges e1, e3 and bolt's co-supply e2 are not
    # upstream of acme.
    assert edge_ids(network.upstream(organization_id="acme")) == [(1, "e4")]
    # oem owns E and S: S's suppliers are tier 1, the components' suppliers tier 2.
    assert edge_ids(network.upstream(organization_id="oem")) == edge_ids(
        network.upstream(item_id="E")
    )


def test_downstream_of_a_component_and_of_a_supplier(network):
    # C1 leaves fa2 on e3 (tier 1) and goes into S, delivered on e1 and e2 (tier 2); S goes
    # into E, which has no edges.
    assert edge_ids(network.downstream(item_id="C1")) == [(1, "e3"), (2, "e1"), (2, "e2")]
    # cast delivers C2 on e4 and e5 (tier 1); C2 goes into S (tier 2).
    assert edge_ids(network.downstream(organization_id="cast")) == [
        (1, "e4"),
        (1, "e5"),
        (2, "e1"),
        (2, "e2"),
    ]
    assert edge_ids(network.downstream(organization_id="cast", max_tiers=1)) == [
        (1, "e4"),
        (1, "e5"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({}, InvalidArgument, "exactly one"),
        ({"item_id": "E", "organization_id": "oem"}, InvalidArgument, "exactly one"),
        ({"item_id": "E", "max_tiers": 0}, InvalidArgument, "at least 1"),
        ({"item_id": "nope"}, NotFound, "'nope'"),
    ],
)
def test_walks_reject_bad_starts(network, kwargs, error, text):
    with pytest.raises(error, match=text):
        network.upstream(**kwargs)
    with pytest.raises(error, match=text):
        network.downstream(**kwargs)


# -- capable-supplier search ----------------------------------------------------------------------


def found(matches) -> list[str]:
    return [m.facility_id for m in matches]


def test_capable_facilities_filters_and_orders_by_capacity(network):
    assert found(network.capable_facilities("cnc-milling")) == ["fd1", "fa2"]  # 500, 300
    assert found(network.capable_facilities("cnc-milling", material="steel")) == ["fd1"]
    assert found(network.capable_facilities("cnc-milling", region="us")) == ["fa2"]
    assert found(network.capable_facilities("cnc-milling", material="aluminium", region="eu")) == [
        "fd1"
    ]
    assert found(network.capable_facilities("cnc-milling", min_monthly_capacity=400)) == ["fd1"]
    assert found(network.capable_facilities("cnc-milling", certification="ISO9001")) == ["fd1"]
    assert found(network.capable_facilities("cnc-milling", limit=1)) == ["fd1"]
    assert found(network.capable_facilities("welding")) == ["fe1", "fa1", "fb1"]  # ties by id
    assert network.capable_facilities("anodising") == []
    [match] = network.capable_facilities("casting", region="asia")
    assert (match.organization_id, match.capability_id, match.monthly_capacity) == (
        "cast",
        "cc1",
        100,
    )


def test_capable_facilities_counts_an_outage_with_its_reduced_capacity(network):
    network.upsert_outage(FacilityOutage("fd1", 10.0, capacity_factor=0.5))
    # fd1 has 250 of its 500 left: enough for 200, not for 300; fa2 still has 300.
    [half, full] = network.capable_facilities("cnc-milling", min_monthly_capacity=200)
    assert (half.facility_id, half.available_capacity) == ("fd1", 250.0)
    assert found(network.capable_facilities("cnc-milling", min_monthly_capacity=300)) == ["fa2"]
    network.upsert_outage(FacilityOutage("fd1", 10.0))
    assert found(network.capable_facilities("cnc-milling")) == ["fa2"]
    network.remove_outage("fd1")
    assert found(network.capable_facilities("cnc-milling")) == ["fd1", "fa2"]


def test_capable_facilities_follows_a_facility_into_another_region(network):
    network.upsert_facility(facility("fa2", "acme", "eu"))
    assert found(network.capable_facilities("cnc-milling", region="us")) == []
    assert found(network.capable_facilities("cnc-milling", region="eu")) == ["fd1", "fa2"]
    assert found(network.capable_facilities("cnc-milling", material="aluminium", region="eu")) == [
        "fd1",
        "fa2",
    ]
    # A capability that arrives before its facility is found once the facility is known.
    network.upsert_capability(capability("cx1", "fx1", "cnc-milling", {"aluminium"}, 700))
    assert found(network.capable_facilities("cnc-milling", region="asia")) == []
    network.upsert_facility(facility("fx1", "xeno", "asia"))
    assert found(network.capable_facilities("cnc-milling", region="asia")) == ["fx1"]
    assert found(network.capable_facilities("cnc-milling", material="steel", region="asia")) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"process": ""}, "process"),
        ({"process": "welding", "min_monthly_capacity": -1}, "min_monthly_capacity"),
        ({"process": "welding", "min_monthly_capacity": float("nan")}, "min_monthly_capacity"),
        ({"process": "welding", "limit": 0}, "limit"),
    ],
)
def test_capable_facilities_rejects_bad_queries(network, kwargs, field):
    with pytest.raises(InvalidArgument) as caught:
        network.capable_facilities(**kwargs)
    assert [v.field for v in caught.value.violations] == [field]


# -- single sources and critical nodes ------------------------------------------------------------


def test_single_source_items_by_facility_and_by_organization(network):
    # C1 comes only from fa2, C2 only from fc1 (two edges, one facility); S has fa1 and fb1.
    singles = network.single_source_items()
    assert [(s.item_id, s.organization_id, s.facility_ids) for s in singles] == [
        ("C1", "acme", ("fa2",)),
        ("C2", "cast", ("fc1",)),
    ]
    assert [s.monthly_volume for s in singles] == [200, 100]
    # S is supplied by acme and bolt: still two organizations.
    assert [s.item_id for s in network.single_source_items(by="organization")] == ["C1", "C2"]


def test_single_source_by_organization_spans_its_facilities(network):
    # fa1 (acme) now also supplies C1 next to fa2 (acme): two facilities, one organization.
    network.upsert_capability(capability("ca3", "fa1", "cnc-milling", {"aluminium"}, 50))
    network.upsert_edge(edge("e6", "fa1", "C1", "acme", 20, 11))
    assert [s.item_id for s in network.single_source_items()] == ["C2"]
    by_org = network.single_source_items(by="organization")
    assert [(s.item_id, s.facility_ids) for s in by_org] == [
        ("C1", ("fa1", "fa2")),
        ("C2", ("fc1",)),
    ]


def test_critical_nodes_are_the_sole_sources_under_an_end_item(network):
    # Losing fa2 loses C1 (its only source), hence S (a component without alternative), hence
    # E. Same for fc1 through C2. Losing fa1 or fb1 leaves the other for S: not critical.
    nodes = network.critical_nodes()
    assert [(n.facility_id, n.organization_id, n.end_item_ids, n.item_ids) for n in nodes] == [
        ("fa2", "acme", ("E",), ("C1", "E", "S")),
        ("fc1", "cast", ("E",), ("C2", "E", "S")),
    ]
    # Asked about S as the end product: the same facilities, cutting off S.
    assert [(n.facility_id, n.end_item_ids) for n in network.critical_nodes(["S"])] == [
        ("fa2", ("S",)),
        ("fc1", ("S",)),
    ]


def test_critical_nodes_of_an_unknown_end_item_is_not_found(network):
    with pytest.raises(NotFound, match="'nope'"):
        network.critical_nodes(["S", "nope"])


def test_critical_nodes_follow_incremental_updates(network):
    # A second source for C1 (fd1 can mill aluminium) makes fa2 uncritical...
    network.upsert_edge(edge("e6", "fd1", "C1", "acme", 50, 12))
    assert [n.facility_id for n in network.critical_nodes()] == ["fc1"]
    # ...and removing it again restores it.
    network.remove_edge("e6")
    assert [n.facility_id for n in network.critical_nodes()] == ["fa2", "fc1"]
    # Dropping the BOM line S <- C2 takes fc1 out of E's chain.
    network.remove_bom_line("S", "C2")
    assert [n.facility_id for n in network.critical_nodes()] == ["fa2"]


def test_removing_a_facility_removes_its_edges_and_capabilities(network):
    network.remove_facility("fc1")
    # C2 has no supply edge left (it counts as made in house): nothing single-sources it.
    assert [s.item_id for s in network.single_source_items()] == ["C1"]
    assert found(network.capable_facilities("casting")) == ["fd1"]
    assert network.edge("e4") is None
    assert [n.facility_id for n in network.critical_nodes()] == ["fa2"]


def test_bom_cycles_are_rejected_and_nothing_changes(network):
    # C1 is already (part of) a component of E: E inside C1 would close C1 -> S -> E -> C1.
    with pytest.raises(InvalidArgument, match="cycle"):
        network.upsert_bom_line(BomLine("C1", "E", 1))
    with pytest.raises(InvalidArgument, match="cycle"):
        network.upsert_bom_line(BomLine("S", "S", 1))
    assert network.components("C1") == []
    assert network.components("S") == ["C1", "C2"]
    with pytest.raises(InvalidArgument, match="cycle: "):
        SupplyNetwork.build(FACILITIES, CAPABILITIES, ITEMS, [*BOM, BomLine("C2", "E", 1)], EDGES)


# -- disruption impact ----------------------------------------------------------------------------


def test_impact_of_losing_the_sole_casting_plant_for_four_weeks(network):
    report = network.disruption_impact([FacilityOutage("fc1", 28.0)])
    by_item = {i.item_id: i for i in report.items}
    assert sorted(by_item) == ["C2", "E", "S"]  # C1 is untouched
    c2, s, e = by_item["C2"], by_item["S"], by_item["E"]
    # C2: all 100 of 100 units lost, no other supplier -> recovers in the full 28 days;
    # survives 1 week = 7 days; short for 21 days at 10/day -> 210 units.
    assert (c2.directly_hit, c2.lost_share, c2.time_to_recover_days) == (True, 1.0, 28.0)
    assert c2.time_to_survive_days == pytest.approx(7.0)
    assert c2.units_at_risk == pytest.approx(210.0)
    assert c2.exposed
    # S: hit through C2; survives its own 14 days plus C2's 7 = 21; short 7 days -> 70 units.
    assert (s.directly_hit, s.lost_share, s.time_to_recover_days) == (False, 1.0, 28.0)
    assert s.time_to_survive_days == pytest.approx(21.0)
    assert s.units_at_risk == pytest.approx(70.0)
    # E: 3.5 days of its own + S's 21 = 24.5; short 3.5 days -> 35 units, 35,000 revenue.
    assert e.end_item and e.time_to_survive_days == pytest.approx(24.5)
    assert e.units_at_risk == pytest.approx(35.0)
    assert e.revenue_at_risk == pytest.approx(35_000.0)
    assert report.end_item_ids == ("E",)
    assert report.units_at_risk == pytest.approx(35.0)
    assert report.revenue_at_risk == pytest.approx(35_000.0)
    # Customers of C2 (acme, bolt) and of S (oem), and E's owner (oem).
    assert report.affected_customer_ids == ("acme", "bolt", "oem")


def test_spare_capacity_of_other_suppliers_shortens_recovery(network):
    # fa1 down 28 days: S loses 100 of 200 (share 0.5). fb1's spare welding capacity is
    # 150 - 100 = 50, covering half of the lost 100 -> time-to-recover 28 x 0.5 = 14 days,
    # exactly S's 14 days of stock: no units at risk anywhere.
    report = network.disruption_impact([FacilityOutage("fa1", 28.0)])
    by_item = {i.item_id: i for i in report.items}
    assert sorted(by_item) == ["E", "S"]
    s = by_item["S"]
    assert (s.lost_share, s.time_to_recover_days, s.time_to_survive_days) == (0.5, 14.0, 14.0)
    assert not s.exposed and s.units_at_risk == 0.0
    assert by_item["E"].time_to_survive_days == pytest.approx(17.5)
    assert report.revenue_at_risk == 0.0


def test_a_partial_outage_loses_its_share(network):
    # fa1 at 40% for 60 days and fb1 down 60 days: S loses 100 x 0.6 + 100 = 160 of 200
    # (share 0.8), no unaffected supplier -> 60 days to recover vs 14 of stock: 46 days short
    # x 10/day x 0.8 = 368 units of S. E: 3.5 + 14 = 17.5 days; 42.5 x 10 x 0.8 = 340 units.
    report = network.disruption_impact(
        [FacilityOutage("fa1", 60.0, capacity_factor=0.4), FacilityOutage("fb1", 60.0)]
    )
    by_item = {i.item_id: i for i in report.items}
    assert by_item["S"].lost_share == pytest.approx(0.8)
    assert by_item["S"].units_at_risk == pytest.approx(368.0)
    assert by_item["E"].units_at_risk == pytest.approx(340.0)
    assert report.revenue_at_risk == pytest.approx(340_000.0)


def test_no_outage_no_impact(network):
    report = network.disruption_impact([])
    assert (report.items, report.units_at_risk, report.affected_customer_ids) == ((), 0, ())
    # A facility that supplies nothing (fe1) hits nothing either.
    assert network.disruption_impact([FacilityOutage("fe1", 30.0)]).items == ()


@pytest.mark.parametrize(
    ("outage", "error", "text"),
    [
        (FacilityOutage("nope", 1.0), NotFound, "'nope'"),
        (FacilityOutage("fa1", -1.0), InvalidArgument, "duration_days"),
        (FacilityOutage("fa1", float("inf")), InvalidArgument, "duration_days"),
        (FacilityOutage("fa1", 1.0, capacity_factor=1.5), InvalidArgument, "capacity_factor"),
    ],
)
def test_bad_outages_are_rejected(network, outage, error, text):
    with pytest.raises(error) as caught:
        network.disruption_impact([FacilityOutage("fc1", 1.0), outage])
    if error is InvalidArgument:
        assert [v.field for v in caught.value.violations] == [f"outages[1].{text}"]
    else:
        assert text in str(caught.value)
    with pytest.raises(error):
        network.alternative_sourcing([outage])


# -- alternative sourcing -------------------------------------------------------------------------


def test_sourcing_fills_the_cheapest_spare_capacity_first(network):
    # fa1 down: 100 units of S to re-source. fb1 already supplies S at 55 and has 50 spare;
    # fe1 can weld steel (spare 1000) at the mean current price (50+55)/2 x 1.25 = 65.625.
    plan = network.alternative_sourcing([FacilityOutage("fa1", 28.0)])
    assert [
        (a.item_id, a.facility_id, a.monthly_volume, a.unit_price, a.current_supplier)
        for a in plan.assignments
    ] == [("S", "fb1", 50.0, 55.0, True), ("S", "fe1", 50.0, 65.625, False)]
    assert plan.lost_volume == 100 and plan.unmet == () and plan.unmet_volume == 0
    assert plan.total_cost == pytest.approx(50 * 55 + 50 * 65.625)


def test_sourcing_reports_what_no_one_can_take(network):
    # fc1 down: 100 units of C2 (casting, steel). Only fd1 casts steel, 30 spare, at 20 x 1.25.
    plan = network.alternative_sourcing([FacilityOutage("fc1", 28.0)])
    assert [(a.facility_id, a.monthly_volume, a.unit_price) for a in plan.assignments] == [
        ("fd1", 30.0, 25.0)
    ]
    assert [(u.item_id, u.monthly_volume) for u in plan.unmet] == [("C2", 70.0)]
    assert (plan.lost_volume, plan.unmet_volume, plan.total_cost) == (100.0, 70.0, 750.0)


def test_sourcing_shares_a_facility_across_items_and_honours_the_filter(network):
    # fa1 and fb1 down: S loses 200. fe1 alone can weld (1000 spare) at 65.625.
    plan = network.alternative_sourcing([FacilityOutage("fa1", 7), FacilityOutage("fb1", 7)])
    assert [(a.facility_id, a.monthly_volume) for a in plan.assignments] == [("fe1", 200.0)]
    # Only C1's loss when fa2 and fc1 are down and the caller asks about C1: fd1 mills 200.
    plan = network.alternative_sourcing(
        [FacilityOutage("fa2", 7), FacilityOutage("fc1", 7)], item_ids={"C1"}
    )
    assert [(a.item_id, a.facility_id, a.monthly_volume) for a in plan.assignments] == [
        ("C1", "fd1", 200.0)
    ]
    assert plan.lost_volume == 200.0


# -- supplier risk --------------------------------------------------------------------------------


def test_supplier_risk_is_the_share_of_volume_single_sourced_or_down(network):
    # cast: all its 100 units are C2, which only it supplies -> 1.0.
    assert network.supplier_risk("cast") == 1.0
    # acme: e1 (S, two sources, 100) is safe, e3 (C1, sole source, 200) is not -> 200/300.
    assert network.supplier_risk("acme") == pytest.approx(2 / 3)
    # bolt: S has another source, no outage -> 0; dyna supplies nothing -> 0.
    assert network.supplier_risk("bolt") == 0.0
    assert network.supplier_risk("dyna") == 0.0
    # fb1 at 30% capacity: 70% of bolt's volume is at risk.
    network.upsert_outage(FacilityOutage("fb1", 14.0, capacity_factor=0.3))
    assert network.supplier_risk("bolt") == pytest.approx(0.7)


def test_an_item_arriving_after_its_edges_takes_their_load():
    # S's edges come before S itself (its process unknown until then). Once S arrives as a
    # welding part, fb1's welding load is 100 of 150: the same 14 days to recover as when S
    # came first (with the load left unbooked, fb1 would seem to have 150 spare: 0 days).
    late = SupplyNetwork.build(
        FACILITIES, CAPABILITIES, [i for i in ITEMS if i.id != "S"], BOM, EDGES
    )
    late.upsert_item(ITEMS[1])
    report = late.disruption_impact([FacilityOutage("fa1", 28.0)])
    assert [i.time_to_recover_days for i in report.items if i.item_id == "S"] == [14.0]
    # S turning into a milling part moves the load: fb1 has no milling capacity, so nothing is
    # spare for S any more and recovery takes the full 28 days.
    late.upsert_item(item("S", "oem", 2.0, "cnc-milling", "steel"))
    report = late.disruption_impact([FacilityOutage("fa1", 28.0)])
    assert [i.time_to_recover_days for i in report.items if i.item_id == "S"] == [28.0]
