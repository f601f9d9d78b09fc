"""Pure rules of the supply network: row parsing, import planning, BOM cycles, visibility."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.shared.errors import InvalidArgument
from services.supply.domain import (
    ACTIVE,
    CAPACITY_DROP,
    OUTAGE,
    PROPOSED,
    Facility,
    Item,
    disruption_problems,
    find_cycle,
)
from services.supply.domain.importing import (
    CSV,
    JSON_LINES,
    Existing,
    export_records,
    parse_rows,
    plan_import,
    referenced_ids,
    render_rows,
)
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
from services.supply.domain.views import (
    Viewer,
    critical_view,
    impact_view,
    single_source_view,
    sourcing_view,
    trace_view,
)

NOW = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def jsonl(*rows: dict[str, object]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def fields_of(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


def plan(org: str, content: bytes, existing: Existing | None = None, fmt: str = JSON_LINES):
    rows, problems = parse_rows(fmt, content)
    return plan_import(org, rows, existing or Existing(), NOW, problems)


FACILITY = {
    "kind": "facility", "id": "f1", "display_name": "Plant", "region": "eu-central",
    "country_code": "DE", "latitude": 1.5, "longitude": 2.5,
}  # fmt: skip


def test_csv_and_json_lines_parse_to_the_same_rows() -> None:
    csv_rows, csv_problems = parse_rows(
        CSV,
        b"kind,id,facility,process,materials,monthly_capacity,certifications\n"
        b"capability,c1,f1,cnc-milling,steel;aluminium,100,ISO9001\n",
    )
    json_rows, json_problems = parse_rows(
        JSON_LINES,
        jsonl(
            {"kind": "capability", "id": "c1", "facility": "f1", "process": "cnc-milling",
             "materials": ["steel", "aluminium"], "monthly_capacity": 100,
             "certifications": ["ISO9001"]}
        ),
    )  # fmt: skip
    assert csv_problems == json_problems == []
    assert [r.values for r in csv_rows] == [r.values for r in json_rows]
    assert csv_rows[0].line == 2  # the CSV header is line 1
    assert json_rows[0].line == 1
    assert csv_rows[0].values["materials"] == ("aluminium", "steel")


def test_row_problems_name_line_and_column() -> None:
    rows, problems = parse_rows(
        JSON_LINES,
        b'{"kind": "facility", "id": "f1"}\nnot json\n{"kind": "gizmo"}\n'
        b'{"kind": "bom", "parent": "a", "component": "b", "quantity": "lots", "extra": 1}\n',
    )
    found = {p.field for p in problems}
    assert {"rows[1].region", "rows[1].latitude", "rows[2]", "rows[3].kind"} <= found
    assert {"rows[4].quantity", "rows[4].extra"} <= found
    assert [r.line for r in rows] == [1, 4]


def test_a_bad_header_or_format_is_refused_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_rows(CSV, b"kind,colour\n")
    assert "rows[1]" in fields_of(caught.value)
    with pytest.raises(InvalidArgument):
        parse_rows("xml", b"")
    with pytest.raises(InvalidArgument):
        parse_rows(CSV, b"\xff\xfe")


def test_plan_counts_new_changed_and_unchanged_rows() -> None:
    existing = Existing(
        facilities={"f1": Facility("f1", "acme", "Plant", "eu-central", "DE", 1.5, 2.5, NOW)},
        items={"i1": Item("i1", "acme", "Old name", "", False, 0.0, 0.0, 0.0)},
    )
    planned = plan(
        "acme",
        jsonl(
            FACILITY,
            {"kind": "item", "id": "i1", "display_name": "New name"},
            {"kind": "item", "id": "i2", "display_name": "Two"},
            {"kind": "bom", "parent": "i1", "component": "i2", "quantity": 3},
        ),
        existing,
    )
    assert (planned.counts["facility"].unchanged, planned.counts["item"].updated) == (1, 1)
    assert planned.counts["item"].created == 1
    assert planned.facilities == []  # unchanged rows are not written
    assert [(i.id, new) for i, new in planned.items] == [("i1", False), ("i2", True)]
    assert planned.bom_lines == [("i1", "i2", 3.0, True)]
    assert planned.changed


def test_references_must_resolve_and_ids_of_others_are_taken() -> None:
    existing = Existing(
        organizations={"globex"},
        facilities={"gf": Facility("gf", "globex", "G", "eu-central", "DE", 0.0, 0.0, NOW)},
        items={"gi": Item("gi", "globex", "G item", "", False, 0.0, 0.0, 0.0)},
    )
    with pytest.raises(InvalidArgument) as caught:
        plan(
            "acme",
            jsonl(
                {**FACILITY, "id": "gf"},
                {"kind": "capability", "id": "c1", "facility": "gf", "process": "x",
                 "monthly_capacity": 1},
                {"kind": "bom", "parent": "mine", "component": "gi", "quantity": 1},
                {"kind": "edge", "id": "e1", "facility": "organizations/globex/facilities/gf",
                 "item": "organizations/globex/items/gi", "customer": "initech"},
                {"kind": "edge", "id": "e2", "facility": "organizations/globex/facilities/gf",
                 "item": "organizations/globex/items/gi", "customer": "globex"},
                {"kind": "edge", "id": "e3", "facility": "gf", "item": "gi", "customer": "acme"},
            ),
            existing,
        )  # fmt: skip
    found = fields_of(caught.value)
    assert "already used" in found["rows[1].id"]
    assert "not one of your facilities" in found["rows[2].facility"]
    assert "not one of your items" in found["rows[3].parent"]
    assert "nor one you buy" in found["rows[3].component"]
    assert "not found" in found["rows[4].customer"]
    assert "not the customer" in found["rows[4].facility"]  # acme is neither party
    assert "not the customer" in found["rows[5].facility"]
    # A bare id is the importer's own: another organization's is never looked up by it.
    assert "not one of yours" in found["rows[6].facility"]
    assert "not one of yours" in found["rows[6].item"]


def test_an_edge_with_another_organization_is_only_a_proposal() -> None:
    # Nothing of globex is known to acme's import: its facility and item are named, not found.
    existing = Existing(organizations={"acme", "globex"})
    rows = (
        {"kind": "item", "id": "car", "display_name": "Car", "end_item": True},
        {"kind": "edge", "id": "e1", "facility": "organizations/globex/facilities/gf",
         "item": "organizations/globex/items/gi", "customer": "acme", "share": 1,
         "monthly_volume": 10},
    )  # fmt: skip
    planned = plan("acme", jsonl(*rows), existing)
    assert planned.edges == []
    [(proposal, new)] = planned.proposals
    assert (proposal.supplier_id, proposal.item_organization_id, proposal.owner_id) == (
        "globex",
        "globex",
        "acme",
    )
    assert (proposal.state, new, planned.counts["edge"].created) == (PROPOSED, True, 1)
    # Until globex confirms, its item is not one acme buys: no bill of materials may use it.
    with pytest.raises(InvalidArgument) as caught:
        plan(
            "acme",
            jsonl(*rows, {"kind": "bom", "parent": "car", "component": "gi", "quantity": 4}),
            existing,
        )
    assert "nor one you buy" in fields_of(caught.value)["rows[3].component"]
    # Re-importing the pending proposal changes nothing; changing the terms of an agreed edge
    # is refused.
    again = plan(
        "acme", jsonl(*rows), Existing(organizations={"globex"}, proposals={"e1": proposal})
    )
    assert (again.proposals, again.counts["edge"].unchanged) == ([], 1)
    agreed = replace(proposal, state=ACTIVE, share=0.5)
    with pytest.raises(InvalidArgument) as caught:
        plan("acme", jsonl(*rows), Existing(organizations={"globex"}, edges={"e1": agreed}))
    assert "agreed edge" in fields_of(caught.value)["rows[2].id"]


def test_bom_cycles_through_existing_lines_are_found() -> None:
    existing = Existing(
        items={k: Item(k, "acme", k, "", False, 0.0, 0.0, 0.0) for k in ("a", "b", "c")},
        bom={"a": {"b": 1.0}, "b": {"c": 1.0}},
    )
    with pytest.raises(InvalidArgument) as caught:
        plan(
            "acme", jsonl({"kind": "bom", "parent": "c", "component": "a", "quantity": 1}), existing
        )
    description = fields_of(caught.value)["rows[1].component"]
    assert "cycle" in description
    assert "a -> b -> c -> a" in description or "c -> a -> b -> c" in description


@given(
    st.dictionaries(
        st.sampled_from("abcdefg"), st.sets(st.sampled_from("abcdefg"), max_size=3), max_size=7
    )
)
def test_find_cycle_agrees_with_a_topological_sort(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    # Kahn's algorithm: the graph is acyclic iff every node can be removed.
    nodes = set(graph) | {c for cs in graph.values() for c in cs}
    indegree = {n: 0 for n in nodes}
    for children in graph.values():
        for child in children:
            indegree[child] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    removed = 0
    while ready:
        node = ready.pop()
        removed += 1
        for child in graph.get(node, ()):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    assert (cycle is None) == (removed == len(nodes))
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert all(b in graph.get(a, ()) for a, b in zip(cycle, cycle[1:], strict=False))


@pytest.mark.parametrize("fmt", [CSV, JSON_LINES])
def test_exported_rows_parse_back_to_the_same_plan(fmt: str) -> None:
    facility = Facility("f1", "acme", "Plant, main", "eu-central", "DE", 0.1 + 0.2, 2.5, NOW)
    item = Item("i1", "acme", 'Bolt "M8"', "P-1", True, 1 / 3, 7.0, 1.5, components=())
    text = "".join(render_rows(fmt, export_records([facility], [], [item], [])))
    existing = Existing(facilities={"f1": facility}, items={"i1": item})
    rows, problems = parse_rows(fmt, text.encode())
    assert problems == []
    assert referenced_ids(rows).facilities == frozenset({"f1"})
    planned = plan_import("acme", rows, existing, NOW)
    assert not planned.changed


def test_disruption_rules() -> None:
    assert disruption_problems(OUTAGE, 0.0, 7.0, "") == []
    assert disruption_problems(CAPACITY_DROP, 0.5, 7.0, "") == []
    assert {p.field for p in disruption_problems(CAPACITY_DROP, 0.0, 0.0, "")} == {
        "disruption.capacity_factor",
        "disruption.expected_duration_days",
    }
    assert {p.field for p in disruption_problems("", 0.0, 1.0, "")} == {"disruption.kind"}


VIEWER = Viewer(
    "acme",
    facilities=frozenset({"acme-plant"}),
    supplier_facilities=frozenset({"globex-plant"}),
    items=frozenset({"car"}),
    bought_items=frozenset({"bracket"}),
)
REGIONS = {"acme-plant": "eu", "globex-plant": "eu", "umbrella-plant": "asia"}


def test_a_viewer_sees_its_partners_by_name_and_deeper_tiers_as_counts() -> None:
    shown, hidden = trace_view(
        VIEWER,
        [
            TierEntry(1, "bracket", "e1", "globex-plant", "globex", "acme"),
            TierEntry(2, "steel", "e2", "umbrella-plant", "umbrella", "globex"),
            TierEntry(2, "steel", "e3", "umbrella-plant", "umbrella", "globex"),
        ],
        REGIONS.__getitem__,
    )
    assert [e.edge_id for e in shown] == ["e1"]
    assert [(h.tier, h.region, h.facilities, h.organizations) for h in hidden] == [
        (2, "asia", 1, 1)
    ]
    critical, hidden_critical = critical_view(
        VIEWER,
        [
            CriticalNode("globex-plant", "globex", ("car",), ("car", "bracket")),
            CriticalNode("umbrella-plant", "umbrella", ("car",), ("car",)),
            CriticalNode("other-plant", "other", ("truck",), ("truck",)),
        ],
        lambda f: REGIONS.get(f, "us"),
    )
    assert [c.facility_id for c in critical] == ["globex-plant"]
    assert [(h.region, h.facilities) for h in hidden_critical] == [("asia", 1)]
    singles = single_source_view(
        VIEWER,
        [
            SingleSource("bracket", "globex", ("globex-plant",), 10.0),
            SingleSource("steel", "umbrella", ("umbrella-plant",), 10.0),
            SingleSource("car", "umbrella", ("umbrella-plant",), 1.0),
        ],
    )
    assert [(s.item_id, s.facility_id) for s in singles] == [
        ("bracket", "globex-plant"),
        ("car", ""),
    ]


def test_impact_view_sums_only_the_viewers_end_items() -> None:
    report = ImpactReport(
        items=(
            ItemImpact("car", True, False, 1.0, 14, 28, 10, 1000.0),
            ItemImpact("bracket", False, True, 1.0, 7, 28, 40, 0.0),
            ItemImpact("truck", True, False, 1.0, 7, 28, 5, 500.0),
        ),
        end_item_ids=("car", "truck"),
        units_at_risk=15,
        revenue_at_risk=1500.0,
        affected_customer_ids=("acme", "other"),
    )
    view = impact_view(VIEWER, report)
    assert [i.item_id for i in view.items] == ["car", "bracket"]
    assert view.revenue_at_risk == 1000.0
    assert view.other_items_hit == 1


def test_sourcing_view_hides_incumbents_the_viewer_does_not_buy_from() -> None:
    plan = SourcingPlan(
        assignments=(
            SourcingAssignment("bracket", "globex-plant", "globex", 100, 10.0, True),
            SourcingAssignment("bracket", "umbrella-plant", "umbrella", 200, 8.0, True),
            SourcingAssignment("bracket", "initech-plant", "initech", 300, 12.0, False),
            SourcingAssignment("truck", "other-plant", "other", 50, 5.0, False),
        ),
        unmet=(UnmetVolume("bracket", 10), UnmetVolume("truck", 5)),
        lost_volume=665,
        unmet_volume=15,
        total_cost=5000.0,
    )
    assignments, unmet, total = sourcing_view(VIEWER, plan)
    assert [(a.facility_id, a.unit_price) for a in assignments] == [
        ("globex-plant", 10.0),  # its own supplier: named with its price
        ("", 0.0),  # supplies the bracket to someone else: a deeper tier, anonymous
        ("initech-plant", 12.0),  # a capability match: discoverable
    ]
    assert [u.item_id for u in unmet] == ["bracket"]
    assert total == 100 * 10.0 + 300 * 12.0
