"""The synthetic network generator that the benchmarks (and the service's and procurement's
own benchmarks) build on: seeded, the promised shape, and loadable."""

from __future__ import annotations

from collections import defaultdict

import networkx as nx

from bench.supply_network import generate_network, random_queries
from services.supply.domain.network import SupplyNetwork


def test_the_generator_is_seeded_and_has_the_promised_shape():
    records = generate_network(seed=7, suppliers=1_000, edges=10_000)
    assert records == generate_network(seed=7, suppliers=1_000, edges=10_000)
    assert records.edges != generate_network(seed=8, suppliers=1_000, edges=10_000).edges
    assert len(records.edges) == 10_000
    assert len({e.id for e in records.edges}) == 10_000
    assert len({f.organization_id for f in records.facilities}) == 1_000
    assert len({f.region for f in records.facilities}) == 20
    # Every reference resolves.
    facility_ids = {f.id for f in records.facilities}
    item_ids = {i.id for i in records.items}
    assert {c.facility_id for c in records.capabilities} <= facility_ids
    assert {e.facility_id for e in records.edges} <= facility_ids
    assert {e.item_id for e in records.edges} <= item_ids
    assert {b.parent_item_id for b in records.bom} | {b.component_item_id for b in records.bom} <= (
        item_ids
    )
    # Three BOM levels, acyclic: end items -> subassemblies -> components.
    bom = nx.DiGraph([(b.component_item_id, b.parent_item_id) for b in records.bom])
    assert nx.is_directed_acyclic_graph(bom)
    assert nx.dag_longest_path_length(bom) == 2
    # Some, but not most, supplied items have a single supplying facility.
    sources: defaultdict[str, set[str]] = defaultdict(set)
    for edge in records.edges:
        sources[edge.item_id].add(edge.facility_id)
    singles = sum(len(s) == 1 for s in sources.values())
    assert 0 < singles < len(sources) / 5
    # Every supplier of an item can run the item's process.
    processes: defaultdict[str, set[str]] = defaultdict(set)
    for cap in records.capabilities:
        processes[cap.facility_id].add(cap.process)
    process_of = {i.id: i.process for i in records.items}
    assert all(process_of[e.item_id] in processes[e.facility_id] for e in records.edges)


def test_the_generated_network_builds_and_answers():
    records = generate_network(seed=7, suppliers=1_000, edges=10_000)
    network = SupplyNetwork.build(
        records.facilities, records.capabilities, records.items, records.bom, records.edges
    )
    assert network.single_source_items()
    assert network.critical_nodes()
    region_of = {f.id: f.region for f in records.facilities}
    queries = random_queries(seed=1, count=20)
    answered = [query.ask(network) for query in queries]
    assert answered == [query.scan(records.capabilities, region_of) for query in queries]
    assert sum(bool(a) for a in answered) >= 10
