"""The supply network over real gRPC: capabilities, items, supply edges, who sees what, the
analytics as each company may see them, and disruptions with their events."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from clients.sdk import Cofab, connect
from cofab.supply.v1 import events_pb2, supply_pb2
from services.shared.db import outbox
from services.shared.events import decode_envelope
from services.shared.identity import Principal
from services.supply.app import bootstrap as supply_bootstrap
from services.supply.app import build_server as build_supply
from services.supply.application import SupplyApplication
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project
from tests.support import ServerThread


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def make_facility(client: Cofab, org: str, region: str = "eu-central") -> str:
    return str(
        client.supply.CreateFacility(
            supply_pb2.CreateFacilityRequest(
                parent=f"organizations/{org}",
                facility=supply_pb2.Facility(
                    display_name=f"{org} plant",
                    region=region,
                    country_code="DE",
                    latitude=48.0,
                    longitude=11.0,
                ),
            )
        ).name
    )


def make_item(
    client: Cofab,
    org: str,
    item_id: str,
    end_item: bool = False,
    components: tuple[tuple[str, float], ...] = (),
    **fields: Any,
) -> str:
    return str(
        client.supply.CreateItem(
            supply_pb2.CreateItemRequest(
                parent=f"organizations/{org}",
                item_id=item_id,
                item=supply_pb2.Item(
                    display_name=item_id,
                    end_item=end_item,
                    components=[supply_pb2.BomLine(component=c, quantity=q) for c, q in components],
                    **fields,
                ),
            )
        ).name
    )


def make_edge(
    client: Cofab,
    owner: str,
    edge_id: str,
    facility: str,
    item: str,
    customer: str,
    confirm: Cofab | None = None,
    **fields: Any,
) -> str:
    """Proposes the edge as `owner`; `confirm`, the other party's client, agrees to it."""
    name = str(
        client.supply.CreateSupplyEdge(
            supply_pb2.CreateSupplyEdgeRequest(
                parent=f"organizations/{owner}",
                supply_edge_id=edge_id,
                supply_edge=supply_pb2.SupplyEdge(
                    facility=facility, item=item, customer=f"organizations/{customer}", **fields
                ),
            )
        ).name
    )
    if confirm is not None:
        confirm.supply.ConfirmSupplyEdge(supply_pb2.ConfirmSupplyEdgeRequest(name=name))
    return name


def report_strike(client: Cofab, facility: str) -> supply_pb2.Disruption:
    """The facility's organization reports a strike: 80% of its capacity lost for 30 days."""
    return client.supply.ReportDisruption(
        supply_pb2.ReportDisruptionRequest(
            parent="/".join(facility.split("/")[:2]),
            disruption=supply_pb2.Disruption(
                facility=facility,
                kind=supply_pb2.Disruption.KIND_CAPACITY_DROP,
                capacity_factor=0.2,
                expected_duration_days=30,
                description="strike at plant A, 80% capacity lost",
            ),
        )
    )


@dataclass
class Chain:
    """Umbrella (tier 2) -> Globex (tier 1) -> ACME (OEM); Initech stays outside.

    ACME's car contains 4 of Globex's brackets; a bracket contains 1 of Umbrella's steel blanks.
    Each item has exactly one source."""

    umbrella: Account
    umbrella_plant: str
    globex_plant: str
    steel: str
    bracket: str
    car: str
    steel_edge: str
    bracket_edge: str


def build_chain(stack: Stack) -> Chain:
    umbrella = make_account(stack.engine, "umbrella", "uma", admin=True)
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(umbrella) as umb,
    ):
        umbrella_plant = make_facility(umb, "umbrella", region="asia-east")
        globex_plant = make_facility(globex, "globex")
        steel = make_item(umb, "umbrella", "steel-blank", weekly_demand=400, inventory_weeks=1)
        steel_edge = make_edge(
            umb,
            "umbrella",
            "steel-to-globex",
            umbrella_plant,
            steel,
            "globex",
            globex,
            lead_time_days=20,
            unit_price=3,
            share=1,
            monthly_volume=1600,
        )
        bracket = make_item(
            globex,
            "globex",
            "gx-bracket",
            components=((steel, 1),),
            weekly_demand=400,
            inventory_weeks=1,
        )
        bracket_edge = make_edge(
            globex,
            "globex",
            "bracket-to-acme",
            globex_plant,
            bracket,
            "acme",
            acme,
            lead_time_days=10,
            unit_price=12.5,
            share=1,
            monthly_volume=1600,
        )
        car = make_item(
            acme,
            "acme",
            "car",
            end_item=True,
            components=((bracket, 4),),
            unit_revenue=20000,
            weekly_demand=100,
            inventory_weeks=2,
        )
    return Chain(
        umbrella, umbrella_plant, globex_plant, steel, bracket, car, steel_edge, bracket_edge
    )


def test_capabilities_items_and_edges_are_seen_only_by_their_parties(stack: Stack) -> None:
    chain = build_chain(stack)
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(stack.initech) as initech,
    ):
        capability = globex.supply.CreateCapability(
            supply_pb2.CreateCapabilityRequest(
                parent=chain.globex_plant,
                capability_id="milling",
                capability=supply_pb2.Capability(
                    process="cnc-milling",
                    materials=["steel", "aluminium"],
                    monthly_capacity=5000,
                    certifications=["ISO9001"],
                ),
            )
        )
        assert capability.name == f"{chain.globex_plant}/capabilities/milling"
        assert list(capability.materials) == ["aluminium", "steel"]
        listed = globex.supply.ListCapabilities(
            supply_pb2.ListCapabilitiesRequest(parent=chain.globex_plant)
        )
        assert [c.name for c in listed.capabilities] == [capability.name]

        car = acme.supply.GetItem(supply_pb2.GetItemRequest(name=chain.car))
        assert [(c.component, c.quantity) for c in car.components] == [(chain.bracket, 4.0)]

        # Both parties of an edge see it, whoever created it; nobody else does.
        def edges_of(party: Cofab, org: str) -> set[str]:
            listed = party.supply.ListSupplyEdges(
                supply_pb2.ListSupplyEdgesRequest(parent=f"organizations/{org}")
            )
            return {e.name for e in listed.supply_edges}

        assert edges_of(acme, "acme") == {chain.bracket_edge}
        assert edges_of(globex, "globex") == {chain.bracket_edge, chain.steel_edge}
        got = acme.supply.GetSupplyEdge(supply_pb2.GetSupplyEdgeRequest(name=chain.bracket_edge))
        assert (got.facility, got.item, got.customer) == (
            chain.globex_plant,
            chain.bracket,
            "organizations/acme",
        )
        assert (
            code_of(
                lambda: acme.supply.GetSupplyEdge(
                    supply_pb2.GetSupplyEdgeRequest(name=chain.steel_edge)
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        nothing = initech.supply.ListSupplyEdges(
            supply_pb2.ListSupplyEdgesRequest(parent="organizations/initech")
        )
        assert list(nothing.supply_edges) == []

        # Another company's ids read as absent, exactly like ids that do not exist.
        missing_edge = "organizations/globex/supplyEdges/no-such-edge"
        for name, call in (
            (
                chain.bracket_edge,
                lambda n: initech.supply.GetSupplyEdge(supply_pb2.GetSupplyEdgeRequest(name=n)),
            ),
            (
                missing_edge,
                lambda n: initech.supply.GetSupplyEdge(supply_pb2.GetSupplyEdgeRequest(name=n)),
            ),
            (chain.car, lambda n: initech.supply.GetItem(supply_pb2.GetItemRequest(name=n))),
            (chain.car, lambda n: globex.supply.GetItem(supply_pb2.GetItemRequest(name=n))),
            (
                capability.name,
                lambda n: initech.supply.GetCapability(supply_pb2.GetCapabilityRequest(name=n)),
            ),
            (
                chain.bracket_edge,
                lambda n: initech.supply.DeleteSupplyEdge(
                    supply_pb2.DeleteSupplyEdgeRequest(name=n)
                ),
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(name)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert caught.value.details() == f"{name} not found"
        assert (
            code_of(
                lambda: initech.supply.ListItems(
                    supply_pb2.ListItemsRequest(parent="organizations/acme")
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        # An outsider cannot hang an edge between two other companies.
        assert (
            code_of(
                lambda: make_edge(
                    initech, "initech", "sneaky", chain.globex_plant, chain.bracket, "acme"
                )
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        # Either party may end an agreed edge: the customer does.
        acme.supply.DeleteSupplyEdge(supply_pb2.DeleteSupplyEdgeRequest(name=chain.bracket_edge))
        assert (
            code_of(
                lambda: acme.supply.GetSupplyEdge(
                    supply_pb2.GetSupplyEdgeRequest(name=chain.bracket_edge)
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )


def test_bad_resources_are_rejected_with_every_field_named(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        plant = make_facility(acme, "acme")
        with pytest.raises(grpc.RpcError) as caught:
            acme.supply.CreateCapability(
                supply_pb2.CreateCapabilityRequest(
                    parent=plant,
                    capability_id="Bad Id",
                    capability=supply_pb2.Capability(process="", monthly_capacity=-5),
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(violations(caught.value)) == {
            "capability_id",
            "capability.process",
            "capability.monthly_capacity",
        }
        make_item(acme, "acme", "wheel")
        # An item cannot contain itself, nor an item nobody sells it.
        with pytest.raises(grpc.RpcError) as caught:
            make_item(acme, "acme", "axle", components=(("organizations/acme/items/axle", 1),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "item.components[0].component" in violations(caught.value)
        assert (
            code_of(
                lambda: make_item(
                    acme, "acme", "hub", components=(("organizations/globex/items/x", 1),)
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        with pytest.raises(grpc.RpcError) as caught:
            make_item(acme, "acme", "wheel")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        listed = acme.supply.ListItems(supply_pb2.ListItemsRequest(parent="organizations/acme"))
        assert [i.name for i in listed.items] == ["organizations/acme/items/wheel"]


def test_analytics_name_direct_partners_and_count_deeper_tiers(stack: Stack) -> None:
    chain = build_chain(stack)
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(stack.initech) as initech,
    ):
        trace = acme.supply.TraceSupplyChain(
            supply_pb2.TraceSupplyChainRequest(
                start=chain.car, direction=supply_pb2.TRACE_DIRECTION_UPSTREAM
            )
        )
        # Tier 1: Globex's bracket edge, named (ACME is its customer). Tier 2: Umbrella's plant,
        # counted in its region without its name.
        assert [(e.tier, e.supply_edge, e.facility) for e in trace.entries] == [
            (1, chain.bracket_edge, chain.globex_plant)
        ]
        assert [(h.tier, h.region, h.facilities, h.organizations) for h in trace.hidden] == [
            (2, "asia-east", 1, 1)
        ]
        assert chain.umbrella_plant not in str(trace)

        down = globex.supply.TraceSupplyChain(
            supply_pb2.TraceSupplyChainRequest(
                start="organizations/globex", direction=supply_pb2.TRACE_DIRECTION_DOWNSTREAM
            )
        )
        # Downstream of Globex: its delivery to ACME (named), then ACME's car made in house.
        assert [(e.tier, e.supply_edge, e.customer) for e in down.entries] == [
            (1, chain.bracket_edge, "organizations/acme")
        ]

        risk = acme.supply.AnalyzeRisk(supply_pb2.AnalyzeRiskRequest(parent="organizations/acme"))
        # ACME buys the bracket from one facility, its direct supplier's: named.
        assert [(s.item, s.facility) for s in risk.single_source_items] == [
            (chain.bracket, chain.globex_plant)
        ]
        # Both plants cut the car off; Globex's is named, Umbrella's only counted.
        assert [(c.facility, list(c.end_items)) for c in risk.critical_facilities] == [
            (chain.globex_plant, [chain.car])
        ]
        assert [(h.region, h.count) for h in risk.hidden_critical_facilities] == [("asia-east", 1)]

        # A six-week outage of all of asia-east. Stock lasts 1 week of steel + 1 of brackets +
        # 2 of cars = 28 days, so the car is exposed (42 days to recover > 28 to survive).
        impact = acme.supply.ComputeDisruptionImpact(
            supply_pb2.ComputeDisruptionImpactRequest(
                parent="organizations/acme", region="asia-east", duration_days=42
            )
        )
        by_item = {i.item: i for i in impact.items}
        assert set(by_item) == {chain.car, chain.bracket}
        assert by_item[chain.car].end_item
        assert by_item[chain.car].time_to_survive_days == pytest.approx(28)
        assert by_item[chain.car].time_to_recover_days == pytest.approx(42)
        assert impact.revenue_at_risk == pytest.approx(by_item[chain.car].revenue_at_risk)
        assert impact.revenue_at_risk > 0
        assert impact.other_items_hit == 1  # Umbrella's steel blank, not named
        # A facility ACME does not know first-hand cannot be named in a what-if.
        assert (
            code_of(
                lambda: acme.supply.ComputeDisruptionImpact(
                    supply_pb2.ComputeDisruptionImpactRequest(
                        parent="organizations/acme",
                        facilities=[chain.umbrella_plant],
                        duration_days=7,
                    )
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        assert (
            code_of(
                lambda: acme.supply.ComputeDisruptionImpact(
                    supply_pb2.ComputeDisruptionImpactRequest(
                        parent="organizations/acme", region="asia-east", duration_days=-1
                    )
                )
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )

        # Discovery: anyone finds the published capability, without customers or volumes.
        globex.supply.CreateCapability(
            supply_pb2.CreateCapabilityRequest(
                parent=chain.globex_plant,
                capability=supply_pb2.Capability(
                    process="stamping", materials=["steel"], monthly_capacity=8000
                ),
            )
        )
        found = initech.supply.SearchCapableSuppliers(
            supply_pb2.SearchCapableSuppliersRequest(
                process="stamping", material="steel", min_monthly_capacity=1000
            )
        )
        assert [(s.organization, s.facility, s.region) for s in found.suppliers] == [
            ("organizations/globex", chain.globex_plant, "eu-central")
        ]
        none = initech.supply.SearchCapableSuppliers(
            supply_pb2.SearchCapableSuppliersRequest(process="stamping", min_monthly_capacity=9000)
        )
        assert list(none.suppliers) == []

        # Outsiders get nothing of ACME's.
        for call in (
            lambda: initech.supply.AnalyzeRisk(
                supply_pb2.AnalyzeRiskRequest(parent="organizations/acme")
            ),
            lambda: initech.supply.TraceSupplyChain(
                supply_pb2.TraceSupplyChainRequest(
                    start=chain.car, direction=supply_pb2.TRACE_DIRECTION_UPSTREAM
                )
            ),
        ):
            assert code_of(call) == grpc.StatusCode.NOT_FOUND


def _events(stack: Stack, event_type: str) -> list[tuple[str, Any]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.payload)
            .where(outbox.c.event_type == event_type)
            .order_by(outbox.c.seq)
        ).all()
    return [(row.key, decode_envelope(row.payload)) for row in rows]


def test_a_reported_disruption_tells_each_affected_customer_what_it_may_see(stack: Stack) -> None:
    chain = build_chain(stack)
    with (
        stack.client(chain.umbrella) as umb,
        stack.client(stack.acme) as acme,
    ):
        # Only the facility's own organization reports its disruptions.
        assert (
            code_of(
                lambda: acme.supply.ReportDisruption(
                    supply_pb2.ReportDisruptionRequest(
                        parent="organizations/acme",
                        disruption=supply_pb2.Disruption(
                            facility=chain.umbrella_plant,
                            kind=supply_pb2.Disruption.KIND_OUTAGE,
                            expected_duration_days=42,
                        ),
                    )
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        with pytest.raises(grpc.RpcError) as caught:
            umb.supply.ReportDisruption(
                supply_pb2.ReportDisruptionRequest(
                    parent="organizations/umbrella",
                    disruption=supply_pb2.Disruption(
                        facility=chain.umbrella_plant,
                        kind=supply_pb2.Disruption.KIND_CAPACITY_DROP,
                        capacity_factor=1.5,
                    ),
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(violations(caught.value)) == {
            "disruption.capacity_factor",
            "disruption.expected_duration_days",
        }
        assert _events(stack, "supply.disruption.reported") == []

        disruption = umb.supply.ReportDisruption(
            supply_pb2.ReportDisruptionRequest(
                parent="organizations/umbrella",
                disruption=supply_pb2.Disruption(
                    facility=chain.umbrella_plant,
                    kind=supply_pb2.Disruption.KIND_OUTAGE,
                    expected_duration_days=42,
                    description="flood",
                ),
                request_id="flood-1",
            )
        )
        # Umbrella learns its direct customer is hit, and only how many others are.
        assert list(disruption.affected_customers) == ["organizations/globex"]
        assert disruption.other_affected_customers == 1
        assert disruption.state == supply_pb2.Disruption.STATE_ACTIVE
        again = umb.supply.ReportDisruption(
            supply_pb2.ReportDisruptionRequest(
                parent="organizations/umbrella",
                disruption=supply_pb2.Disruption(
                    facility=chain.umbrella_plant,
                    kind=supply_pb2.Disruption.KIND_OUTAGE,
                    expected_duration_days=42,
                    description="flood",
                ),
                request_id="flood-1",
            )
        )
        assert again.name == disruption.name

        # One event per organization, each with its own view: Globex, the plant's customer,
        # sees itself among the affected and nothing of the supplier's other customers.
        reported = {e.audience[0]: e for _, e in _events(stack, "supply.disruption.reported")}
        assert sorted(reported) == ["organizations/globex", "organizations/umbrella"]
        views = {}
        for org, envelope in reported.items():
            assert list(envelope.audience) == [org]
            view = events_pb2.DisruptionReported()
            assert envelope.data.Unpack(view)
            views[org] = view.disruption
        assert views["organizations/umbrella"] == disruption
        assert list(views["organizations/globex"].affected_customers) == ["organizations/globex"]
        assert views["organizations/globex"].other_affected_customers == 0
        assert views["organizations/globex"].description == "flood"

        # Customers are notified by the disruption workflow, not at report time
        # (tests/integration/test_disruption_workflow.py checks what each one sees).
        assert _events(stack, "supply.impact.computed") == []

        listed = umb.supply.ListDisruptions(
            supply_pb2.ListDisruptionsRequest(parent="organizations/umbrella")
        )
        assert [d.name for d in listed.disruptions] == [disruption.name]
        assert (
            code_of(
                lambda: acme.supply.ResolveDisruption(
                    supply_pb2.ResolveDisruptionRequest(name=disruption.name)
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        resolved = umb.supply.ResolveDisruption(
            supply_pb2.ResolveDisruptionRequest(name=disruption.name)
        )
        assert resolved.state == supply_pb2.Disruption.STATE_RESOLVED
        assert resolved.resolve_time.seconds > 0
        assert len(_events(stack, "supply.disruption.resolved")) == 2


def test_a_second_replica_sees_changes_made_through_the_first(stack: Stack) -> None:
    # Replica B builds its network at start, before any of the data below exists.
    replica_deps = supply_bootstrap(stack.settings)
    replica = ServerThread(
        lambda: build_supply(stack.settings, replica_deps, "127.0.0.1:0")
    ).start()
    try:
        with connect(stack.globex.token, stack.design.address, replica.address) as on_b:
            before = on_b.supply.SearchCapableSuppliers(
                supply_pb2.SearchCapableSuppliersRequest(process="stamping")
            )
            assert list(before.suppliers) == []
            chain = build_chain(stack)  # through replica A
            with stack.client(stack.globex) as on_a:
                on_a.supply.CreateCapability(
                    supply_pb2.CreateCapabilityRequest(
                        parent=chain.globex_plant,
                        capability=supply_pb2.Capability(process="stamping", monthly_capacity=10),
                    )
                )
            after = on_b.supply.SearchCapableSuppliers(
                supply_pb2.SearchCapableSuppliersRequest(process="stamping")
            )
            assert [s.facility for s in after.suppliers] == [chain.globex_plant]
        with connect(stack.acme.token, stack.design.address, replica.address) as acme_on_b:
            risk = acme_on_b.supply.AnalyzeRisk(
                supply_pb2.AnalyzeRiskRequest(parent="organizations/acme")
            )
            assert [c.facility for c in risk.critical_facilities] == [chain.globex_plant]
    finally:
        replica.stop()
        replica_deps.engine.dispose()


def test_own_changes_update_the_network_in_place_and_others_trigger_a_rebuild(
    stack: Stack,
) -> None:
    app = SupplyApplication(stack.engine)
    other = SupplyApplication(stack.engine)  # another replica on the same database
    app.load_network()
    with app._cache.network() as network:
        loaded = network
    principal = Principal("acme", "alice")
    facility = app.create_facility(principal, "acme", "P", "eu-central", "DE", 1.0, 2.0, "")
    with app._cache.network() as network:
        assert network is loaded  # applied incrementally, no rebuild
        assert network.facility(facility.id) is not None
    elsewhere = other.create_facility(principal, "acme", "Q", "eu-west", "FR", 1.0, 2.0, "")
    with app._cache.network() as network:
        assert network is not loaded  # the version moved past it: rebuilt from the database
        assert network.facility(elsewhere.id) is not None


def test_alternative_sourcing_names_discoverable_suppliers_only(stack: Stack) -> None:
    umbrella = make_account(stack.engine, "umbrella", "uma", admin=True)
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(umbrella) as umb,
        stack.client(stack.initech) as initech,
    ):
        globex_plant = make_facility(globex, "globex")
        umbrella_plant = make_facility(umb, "umbrella")
        initech_plant = make_facility(initech, "initech")
        bracket = make_item(globex, "globex", "gx-bracket", process="stamping", material="steel")
        # Globex sells brackets to ACME and also buys some from Umbrella (ACME cannot know).
        make_edge(
            globex, "globex", "g-to-acme", globex_plant, bracket, "acme", acme,
            unit_price=10, share=1, monthly_volume=1000,
        )  # fmt: skip
        make_edge(
            umb, "umbrella", "u-to-globex", umbrella_plant, bracket, "globex", globex,
            unit_price=8, share=1, monthly_volume=100,
        )  # fmt: skip
        for client, plant, capacity in ((umb, umbrella_plant, 300), (initech, initech_plant, 600)):
            client.supply.CreateCapability(
                supply_pb2.CreateCapabilityRequest(
                    parent=plant,
                    capability=supply_pb2.Capability(
                        process="stamping", materials=["steel"], monthly_capacity=capacity
                    ),
                )
            )
        plan = acme.supply.PlanAlternativeSourcing(
            supply_pb2.PlanAlternativeSourcingRequest(
                parent="organizations/acme", facilities=[globex_plant], duration_days=30
            )
        )
    # 1000 units a month are lost. Cheapest first: Umbrella, an incumbent at 8, has 300 - 100 =
    # 200 spare; Initech, a capability match priced at the mean incumbent price x 1.25 =
    # 9 x 1.25 = 11.25, takes its 600; 200 remain unmet.
    named = [(a.facility, a.monthly_volume, a.unit_price) for a in plan.assignments]
    assert sorted(named) == [("", 200.0, 0.0), (initech_plant, 600.0, 11.25)]
    assert [(u.item, u.monthly_volume) for u in plan.unmet] == [(bracket, 200.0)]
    assert plan.total_cost == pytest.approx(600 * 11.25)
    assert umbrella_plant not in str(plan)
    assert "umbrella" not in str(plan)


def test_update_item_replaces_its_bom_and_refuses_cycles(stack: Stack) -> None:
    chain = build_chain(stack)
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        seat = make_item(acme, "acme", "seat")
        frame = make_item(acme, "acme", "frame", components=((seat, 1),))
        # seat -> frame would close frame -> seat -> frame.
        with pytest.raises(grpc.RpcError) as caught:
            acme.supply.UpdateItem(
                supply_pb2.UpdateItemRequest(
                    item=supply_pb2.Item(
                        name=seat, components=[supply_pb2.BomLine(component=frame, quantity=2)]
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["components"]),
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cycle" in violations(caught.value)["item.components"]
        for mask in ([], ["name"], ["colour"]):
            with pytest.raises(grpc.RpcError) as caught:
                acme.supply.UpdateItem(
                    supply_pb2.UpdateItemRequest(
                        item=supply_pb2.Item(name=seat, display_name="x"),
                        update_mask=field_mask_pb2.FieldMask(paths=mask),
                    )
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "update_mask" in violations(caught.value)
        assert (
            code_of(
                lambda: initech.supply.UpdateItem(
                    supply_pb2.UpdateItemRequest(
                        item=supply_pb2.Item(name=seat, display_name="mine now"),
                        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                    )
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )

        # The car no longer needs brackets: Globex's plant stops being critical for it.
        updated = acme.supply.UpdateItem(
            supply_pb2.UpdateItemRequest(
                item=supply_pb2.Item(
                    name=chain.car,
                    display_name="ignored: not in the mask",
                    components=[supply_pb2.BomLine(component=frame, quantity=1)],
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["components"]),
                request_id="car-v2",
            )
        )
        assert [c.component for c in updated.components] == [frame]
        assert updated.display_name == "car"
        risk = acme.supply.AnalyzeRisk(supply_pb2.AnalyzeRiskRequest(parent="organizations/acme"))
        assert list(risk.critical_facilities) == []
        assert list(risk.hidden_critical_facilities) == []


def test_an_edge_between_two_companies_exists_only_once_both_agree(stack: Stack) -> None:
    """Issue 12, item 1: an outsider finds Globex's plant through discovery and claims "their
    plant supplies us". Until Globex confirms, nothing of either side reaches the other."""
    with (
        stack.client(stack.globex) as globex,
        stack.client(stack.initech) as initech,
        stack.client(stack.acme) as acme,
    ):
        plant = make_facility(globex, "globex")
        globex.supply.CreateCapability(
            supply_pb2.CreateCapabilityRequest(
                parent=plant,
                capability=supply_pb2.Capability(process="stamping", monthly_capacity=100),
            )
        )
        found = initech.supply.SearchCapableSuppliers(
            supply_pb2.SearchCapableSuppliersRequest(process="stamping")
        )
        assert [s.facility for s in found.suppliers] == [plant]
        initech_part = make_item(initech, "initech", "widget", end_item=True, weekly_demand=10)
        claim = initech.supply.CreateSupplyEdge(
            supply_pb2.CreateSupplyEdgeRequest(
                parent="organizations/initech",
                supply_edge_id="fake",
                supply_edge=supply_pb2.SupplyEdge(
                    facility=plant, item=initech_part, customer="organizations/initech", share=1
                ),
            )
        )
        assert claim.state == supply_pb2.SupplyEdge.STATE_PROPOSED
        # A proposal naming an item of Globex's that does not exist is answered the same way as
        # one that does: a proposal tells the proposer nothing about Globex's ids.
        probe = initech.supply.CreateSupplyEdge(
            supply_pb2.CreateSupplyEdgeRequest(
                parent="organizations/initech",
                supply_edge=supply_pb2.SupplyEdge(
                    facility=plant,
                    item="organizations/globex/items/no-such-item",
                    customer="organizations/initech",
                ),
            )
        )
        assert probe.state == supply_pb2.SupplyEdge.STATE_PROPOSED

        def listed(
            client: Cofab,
            org: str,
            state: supply_pb2.SupplyEdge.State.ValueType = supply_pb2.SupplyEdge.STATE_UNSPECIFIED,
        ) -> list[str]:
            response = client.supply.ListSupplyEdges(
                supply_pb2.ListSupplyEdgesRequest(parent=f"organizations/{org}", state=state)
            )
            return [e.name for e in response.supply_edges]

        proposed = supply_pb2.SupplyEdge.STATE_PROPOSED
        assert listed(globex, "globex") == [] and listed(initech, "initech") == []
        assert listed(globex, "globex", proposed) == [claim.name, probe.name]
        # Neither the proposer nor the other party can act out of turn.
        for call, code in (
            (
                lambda: initech.supply.ConfirmSupplyEdge(
                    supply_pb2.ConfirmSupplyEdgeRequest(name=claim.name)
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                lambda: globex.supply.WithdrawSupplyEdge(
                    supply_pb2.WithdrawSupplyEdgeRequest(name=claim.name)
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            (
                lambda: acme.supply.ConfirmSupplyEdge(
                    supply_pb2.ConfirmSupplyEdgeRequest(name=claim.name)
                ),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                lambda: initech.supply.DeleteSupplyEdge(
                    supply_pb2.DeleteSupplyEdgeRequest(name=claim.name)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            # Globex confirming the probe would need an item it does not have.
            (
                lambda: globex.supply.ConfirmSupplyEdge(
                    supply_pb2.ConfirmSupplyEdgeRequest(name=probe.name)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
        ):
            assert code_of(call) == code

        # Globex's disruption of the plant: Initech is no customer, sees nothing of it.
        disruption = report_strike(globex, plant)
        assert list(disruption.affected_customers) == []
        assert disruption.other_affected_customers == 0
        [(_, reported)] = _events(stack, "supply.disruption.reported")
        assert list(reported.audience) == ["organizations/globex"]
        # No analytics effect either: Initech's widget has no supplier.
        trace = initech.supply.TraceSupplyChain(
            supply_pb2.TraceSupplyChainRequest(
                start=initech_part, direction=supply_pb2.TRACE_DIRECTION_UPSTREAM
            )
        )
        assert list(trace.entries) == [] and list(trace.hidden) == []
        globex.supply.ResolveDisruption(supply_pb2.ResolveDisruptionRequest(name=disruption.name))

        declined = globex.supply.DeclineSupplyEdge(
            supply_pb2.DeclineSupplyEdgeRequest(name=claim.name)
        )
        assert declined.state == supply_pb2.SupplyEdge.STATE_DECLINED
        withdrawn = initech.supply.WithdrawSupplyEdge(
            supply_pb2.WithdrawSupplyEdgeRequest(name=probe.name)
        )
        assert withdrawn.state == supply_pb2.SupplyEdge.STATE_WITHDRAWN
        assert (
            code_of(
                lambda: globex.supply.ConfirmSupplyEdge(
                    supply_pb2.ConfirmSupplyEdgeRequest(name=claim.name)
                )
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        assert listed(initech, "initech", supply_pb2.SupplyEdge.STATE_DECLINED) == [claim.name]

        # A real customer's proposal, confirmed: now the edge is in both lists and the network.
        acme_part = make_item(acme, "acme", "panel", end_item=True, weekly_demand=10)
        real = make_edge(acme, "acme", "panels", plant, acme_part, "acme", globex, share=1)
        assert listed(globex, "globex") == [real] and listed(acme, "acme") == [real]
        consent = [
            (event_type, key, sorted(envelope.audience))
            for event_type in (
                "supply.edge.proposed",
                "supply.edge.confirmed",
                "supply.edge.declined",
                "supply.edge.withdrawn",
            )
            for key, envelope in _events(stack, event_type)
        ]
        assert consent == [
            ("supply.edge.proposed", "fake", ["organizations/globex", "organizations/initech"]),
            ("supply.edge.proposed", probe.name.split("/")[-1], [
                "organizations/globex", "organizations/initech"]),
            ("supply.edge.proposed", "panels", ["organizations/acme", "organizations/globex"]),
            ("supply.edge.confirmed", "panels", ["organizations/acme", "organizations/globex"]),
            ("supply.edge.declined", "fake", ["organizations/globex", "organizations/initech"]),
            ("supply.edge.withdrawn", probe.name.split("/")[-1], [
                "organizations/globex", "organizations/initech"]),
        ]  # fmt: skip
        trace = acme.supply.TraceSupplyChain(
            supply_pb2.TraceSupplyChainRequest(
                start=acme_part, direction=supply_pb2.TRACE_DIRECTION_UPSTREAM
            )
        )
        assert [e.facility for e in trace.entries] == [plant]


def test_an_item_names_only_designs_its_company_may_read(stack: Stack) -> None:
    """Issue 12, item 1: pinning an item to another company's design or revision is checked with
    the caller's own rights: NOT_FOUND, exactly as for a design that does not exist."""
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        design = create_design(acme, create_project(acme).name)
        revision = f"{design.name}/revisions/r1"
        mine = make_item(acme, "acme", "bracket", design=design.name)
        assert acme.supply.GetItem(supply_pb2.GetItemRequest(name=mine)).design == design.name
        missing = design.name.rsplit("/", 1)[0] + "/no-such-design"
        for name in (design.name, missing):
            with pytest.raises(grpc.RpcError) as caught:
                make_item(initech, "initech", "copy", design=name)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert caught.value.details() == f"{name} not found"
        with pytest.raises(grpc.RpcError) as caught:
            make_item(initech, "initech", "copy", design=design.name, revision=revision)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        own = make_item(initech, "initech", "plain")
        with pytest.raises(grpc.RpcError) as caught:
            initech.supply.UpdateItem(
                supply_pb2.UpdateItemRequest(
                    item=supply_pb2.Item(name=own, design=design.name),
                    update_mask=field_mask_pb2.FieldMask(paths=["design"]),
                )
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        row = {"kind": "item", "id": "copy", "display_name": "Copy", "design": design.name}
        with pytest.raises(grpc.RpcError) as caught:
            initech.supply.ImportNetwork(
                iter(
                    [
                        supply_pb2.ImportNetworkRequest(
                            header=supply_pb2.ImportNetworkRequest.Header(
                                parent="organizations/initech",
                                format=supply_pb2.NETWORK_FORMAT_JSON_LINES,
                            )
                        ),
                        supply_pb2.ImportNetworkRequest(chunk=(json.dumps(row) + "\n").encode()),
                    ]
                )
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(
            initech.supply.ListItems(
                supply_pb2.ListItemsRequest(parent="organizations/initech")
            ).items
        ) == [initech.supply.GetItem(supply_pb2.GetItemRequest(name=own))]
