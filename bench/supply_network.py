"""supply-risk and supplier-search: the supply-network analytics on a synthetic network of
100,000 suppliers and 1,000,000 supply edges.

`generate_network` makes the network (seeded, so every run and every engineer gets the same
one): suppliers with one or two facilities each in 20 regions, capabilities, OEMs whose end
items are built from subassemblies built from components, and supply edges, with a share of
items deliberately single-sourced.

supply-risk: single-source items + critical nodes + one region's disruption impact on a built
`SupplyNetwork`; target at most 10 s and 4 GiB peak memory. Building the network is timed
separately. Baseline, measured in the same run: a plain networkx pass over the same graph (a
DiGraph of the supply edges facility -> item and the BOM lines), the descendants of the region's
facilities, i.e. the nodes an outage reaches; the DiGraph's build is timed against ours once.
All in one spawned process: ours' peak RSS is taken after its first risk run, before the
baseline's graph exists; then rounds alternate baseline pass and risk run, so load from other
work on the machine falls on both alike.

supplier-search: p50/p95 of `capable_facilities` over 1,000 random queries; target p95 at most
50 ms. Baseline: a linear scan over all capabilities with the same filters, on the first 50
queries (it answers the same; the ratio is per query).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import random
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from bench.harness import Benchmark, Report, Table, percentile
from services.supply.domain.network import SupplyNetwork
from services.supply.domain.records import (
    BomLine,
    CapabilityRecord,
    FacilityOutage,
    FacilityRecord,
    ItemRecord,
    SupplyEdgeRecord,
)

log = logging.getLogger(__name__)

SEED = 20261125
SUPPLIERS = 100_000
EDGES = 1_000_000
REGIONS = 20
PROCESSES = (
    "cnc-milling",
    "cnc-turning",
    "injection-moulding",
    "sheet-metal",
    "die-casting",
    "forging",
    "pcb-assembly",
    "3d-printing",
    "welding",
    "surface-treatment",
    "wire-harness",
    "final-assembly",
)
MATERIALS = (
    "aluminium",
    "steel",
    "stainless-steel",
    "titanium",
    "brass",
    "copper",
    "abs",
    "pa66",
    "pc",
    "pom",
    "fr4",
    "pp",
)
CERTIFICATIONS = ("ISO9001", "IATF16949", "AS9100", "ISO13485", "ISO14001")
SINGLE_SOURCE_SHARE = 0.05
RISK_TARGET_S = 10.0
MEMORY_TARGET_GIB = 4.0
SEARCH_TARGET_MS = 50.0
SEARCH_QUERIES = 1_000
SCAN_QUERIES = 50
OUTAGE_DAYS = 28.0  # "a region goes down for four weeks"
RISK_ROUNDS = 3


@dataclass(frozen=True)
class NetworkRecords:
    """A synthetic network's records, in the order SupplyNetwork.build takes them."""

    facilities: list[FacilityRecord]
    capabilities: list[CapabilityRecord]
    items: list[ItemRecord]
    bom: list[BomLine]
    edges: list[SupplyEdgeRecord]


def region_name(index: int) -> str:
    """The generator's region names: region-00, region-01, ..."""
    return f"region-{index:02d}"


def generate_network(
    seed: int = SEED, suppliers: int = SUPPLIERS, edges: int = EDGES, regions: int = REGIONS
) -> NetworkRecords:
    """A seeded synthetic supply network of `suppliers` supplier organizations and about
    `edges` supply edges (exactly that many when the items allow it).

    One OEM per 1,000 suppliers owns end items; each end item has 3-6 subassemblies, each of
    those 3-6 components (drawn from shared pools, so BOMs overlap). End items are built in house
    (no supply edges); subassemblies are supplied to the OEMs, components to subassembly
    suppliers. Every supplied item gets its edges from facilities capable of its process;
    SINGLE_SOURCE_SHARE of them from one facility only.
    """
    # Millions of new records and no cycles: the collector's passes would only slow this down.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, suppliers, edges, regions)
    finally:
        if collecting:
            gc.enable()


def _generate(seed: int, suppliers: int, edges: int, regions: int) -> NetworkRecords:
    rng = random.Random(seed)
    # Bulk draws come from numpy: a million Python random calls would make the generator, not
    # the analytics, dominate the benchmark's run time.
    draws = np.random.default_rng(seed)
    region_names = [region_name(r) for r in range(regions)]
    facilities: list[FacilityRecord] = []
    capabilities: list[CapabilityRecord] = []
    by_process: defaultdict[str, list[str]] = defaultdict(list)
    second = draws.random(suppliers) < 0.5
    n_facilities = suppliers + int(second.sum())
    region_of = draws.integers(0, regions, n_facilities).tolist()
    latitudes = draws.uniform(-60, 60, n_facilities).tolist()
    longitudes = draws.uniform(-180, 180, n_facilities).tolist()
    # Distinct processes (materials, certifications) per facility: a random start and a stride
    # coprime with the catalogue size.
    n_caps = draws.integers(1, 4, n_facilities).tolist()
    first_process = draws.integers(0, len(PROCESSES), n_facilities).tolist()
    first_material = draws.integers(0, len(MATERIALS), 3 * n_facilities).tolist()
    n_materials = draws.integers(1, 4, 3 * n_facilities).tolist()
    first_cert = draws.integers(0, len(CERTIFICATIONS), 3 * n_facilities).tolist()
    n_certs = draws.integers(0, 3, 3 * n_facilities).tolist()
    capacity = np.round(draws.lognormal(8.5, 1.0, 3 * n_facilities)).tolist()
    index = 0
    for supplier, two in enumerate(second.tolist()):
        org = f"s{supplier}"
        for k in range(1 + two):
            fid = f"f{supplier}-{k}"
            facilities.append(
                FacilityRecord(
                    fid,
                    org,
                    region_names[region_of[index]],
                    "DE",
                    latitudes[index],
                    longitudes[index],
                )
            )
            for c in range(n_caps[index]):
                process = PROCESSES[(first_process[index] + 5 * c) % len(PROCESSES)]
                j = 3 * index + c
                capabilities.append(
                    CapabilityRecord(
                        f"{fid}-c{c}",
                        fid,
                        process,
                        frozenset(
                            MATERIALS[(first_material[j] + 7 * m) % len(MATERIALS)]
                            for m in range(n_materials[j])
                        ),
                        capacity[j],
                        frozenset(
                            CERTIFICATIONS[(first_cert[j] + 2 * m) % len(CERTIFICATIONS)]
                            for m in range(n_certs[j])
                        ),
                    )
                )
                by_process[process].append(fid)
            index += 1
    oems = [f"oem{o}" for o in range(max(1, suppliers // 1000))]
    n_items = max(30, edges // 16)
    n_end = max(1, n_items // 30)
    n_sub = max(1, n_items // 6)
    n_comp = max(1, n_items - n_end - n_sub)

    def item(iid: str, owner: str, end: bool) -> ItemRecord:
        return ItemRecord(
            id=iid,
            organization_id=owner,
            end_item=end,
            unit_revenue=float(rng.randint(5_000, 50_000)) if end else 0.0,
            weekly_demand=float(rng.randint(50, 500)),
            inventory_weeks=rng.uniform(0.5, 6.0),
            process="final-assembly" if end else rng.choice(PROCESSES),
            material=rng.choice(MATERIALS),
        )

    ends = [item(f"e{i}", rng.choice(oems), True) for i in range(n_end)]
    subs = [item(f"a{i}", rng.choice(oems), False) for i in range(n_sub)]
    comps = [item(f"c{i}", rng.choice(oems), False) for i in range(n_comp)]
    bom: list[BomLine] = []
    for parents, children in ((ends, subs), (subs, comps)):
        for parent in parents:
            for child in rng.sample(children, min(len(children), rng.randint(3, 6))):
                bom.append(BomLine(parent.id, child.id, float(rng.randint(1, 4))))
    supplied = subs + comps
    top = max(1, round(2 * edges / len(supplied)) - 1)
    counts = [rng.randint(1, top) for _ in supplied]
    # Nudge random items by one edge until the total is exactly `edges` (or every item is down
    # to one edge).
    excess = min(sum(counts) - edges, sum(c - 1 for c in counts))
    while excess > 0:
        index = rng.randrange(len(counts))
        if counts[index] > 1:
            counts[index] -= 1
            excess -= 1
    while excess < 0:
        counts[rng.randrange(len(counts))] += 1
        excess += 1
    total = sum(counts)
    # Per item: its sources (one when single-sourced, else up to 8 capable facilities drawn with
    # replacement) and a base price; edge e of an item comes from source e mod #sources.
    sources: list[list[str]] = []
    base_prices: list[float] = []
    for record, count in zip(supplied, counts, strict=True):
        pool = by_process[record.process] or [facilities[0].id]
        n_sources = 1 if rng.random() < SINGLE_SOURCE_SHARE else min(count, 8)
        sources.append([rng.choice(pool) for _ in range(n_sources)])
        base_prices.append(rng.uniform(1.0, 200.0))
    item_of = np.repeat(np.arange(len(supplied)), counts)
    starts = np.cumsum([0, *counts[:-1]])
    position = (np.arange(total) - np.repeat(starts, counts)).tolist()
    item_of_list = item_of.tolist()
    n_sources_of = [len(s) for s in sources]
    item_ids = [r.id for r in supplied]
    supplier_names = [f"s{s}" for s in range(suppliers)]
    is_sub = [r.id.startswith("a") for r in supplied]
    oem_picks = draws.integers(0, len(oems), total).tolist()
    supplier_picks = draws.integers(0, suppliers, total).tolist()
    prices = np.round(np.asarray(base_prices)[item_of] * draws.uniform(0.9, 1.1, total), 2).tolist()
    shares = (1.0 / np.asarray(counts, dtype=float))[item_of].tolist()
    supply_edges = list(
        map(
            SupplyEdgeRecord,
            [f"{item_ids[i]}-{e}" for i, e in zip(item_of_list, position, strict=True)],
            [sources[i][e % n_sources_of[i]] for i, e in zip(item_of_list, position, strict=True)],
            [item_ids[i] for i in item_of_list],
            [
                oems[o] if is_sub[i] else supplier_names[s]
                for i, o, s in zip(item_of_list, oem_picks, supplier_picks, strict=True)
            ],
            draws.integers(5, 61, total).astype(float).tolist(),
            prices,
            shares,
            draws.integers(10, 501, total).astype(float).tolist(),
        )
    )
    return NetworkRecords(facilities, capabilities, ends + subs + comps, bom, supply_edges)


def _rss_gib() -> float:
    # ru_maxrss is in KiB on Linux: the peak of this (spawned, single-purpose) process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 1024**3


def _risk_run(network: SupplyNetwork, outages: list[FacilityOutage]) -> dict[str, Any]:
    """One risk run: the three analyses, timed each."""
    t0 = time.perf_counter()
    singles = network.single_source_items()
    t1 = time.perf_counter()
    critical = network.critical_nodes()
    t2 = time.perf_counter()
    impact = network.disruption_impact(outages)
    t3 = time.perf_counter()
    return {
        "single_s": t1 - t0,
        "critical_s": t2 - t1,
        "impact_s": t3 - t2,
        "risk_s": t3 - t0,
        "singles": len(singles),
        "critical": len(critical),
        "items_hit": len(impact.items),
        "ends_hit": len(impact.end_item_ids),
        "revenue_at_risk": impact.revenue_at_risk,
    }


def _descendants(graph: nx.DiGraph[str], sources: list[str]) -> int:
    """The baseline's pass: every node reachable from the region's facilities."""
    reached: set[str] = set()
    for source in sources:
        if source in graph and source not in reached:
            reached |= nx.descendants(graph, source)
    return len(reached)


def _risk_child(seed: int, suppliers: int, edges: int, rounds: int) -> dict[str, Any]:
    started = time.perf_counter()
    records = generate_network(seed, suppliers, edges)
    generated = time.perf_counter()
    rss_records = _current_rss_gib()
    network = SupplyNetwork.build(
        records.facilities, records.capabilities, records.items, records.bom, records.edges
    )
    built = time.perf_counter()
    rss_built = _current_rss_gib()
    region = region_name(0)
    down = network.facilities_in_region(region)
    outages = [FacilityOutage(f, OUTAGE_DAYS) for f in down]
    first = _risk_run(network, outages)
    # Ours' peak is taken before the baseline's graph exists.
    peak = _rss_gib()
    t0 = time.perf_counter()
    # SupplyNetwork.build pauses the garbage collector; the baseline gets the same treatment.
    gc.disable()
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_edges_from((e.facility_id, e.item_id) for e in records.edges)
    graph.add_edges_from((b.component_item_id, b.parent_item_id) for b in records.bom)
    gc.enable()
    nx_build = time.perf_counter() - t0
    # Rounds alternate baseline and ours, so that load from other work falls on both alike.
    runs, passes = [], []
    reached = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        reached = _descendants(graph, down)
        passes.append(time.perf_counter() - t0)
        runs.append(_risk_run(network, outages))
    return {
        "generate_s": generated - started,
        "build_s": built - generated,
        "nx_build_s": nx_build,
        "rss_records_gib": rss_records,
        "rss_built_gib": rss_built,
        "peak_gib": peak,
        "edges": len(records.edges),
        "facilities": len(records.facilities),
        "items": len(records.items),
        "outages": len(outages),
        "first": first,
        "runs": runs,
        "passes": passes,
        "reached": reached,
    }


@dataclass(frozen=True)
class SearchQuery:
    """One capable-supplier query of the supplier-search benchmark."""

    process: str
    material: str | None
    region: str | None
    min_monthly_capacity: float
    certification: str | None
    limit: int = 100

    def ask(self, network: SupplyNetwork) -> list[tuple[str, str]]:
        """(facility, capability) of each match, in order."""
        matches = network.capable_facilities(
            self.process,
            material=self.material,
            region=self.region,
            min_monthly_capacity=self.min_monthly_capacity,
            certification=self.certification,
            limit=self.limit,
        )
        return [(m.facility_id, m.capability_id) for m in matches]

    def scan(
        self, capabilities: list[CapabilityRecord], region_of: dict[str, str]
    ) -> list[tuple[str, str]]:
        """The same answer by filtering every capability, then sorting."""
        hits = [
            c
            for c in capabilities
            if c.process == self.process
            and (self.material is None or self.material in c.materials)
            and (self.region is None or region_of[c.facility_id] == self.region)
            and c.monthly_capacity >= self.min_monthly_capacity
            and (self.certification is None or self.certification in c.certifications)
        ]
        hits.sort(key=lambda c: (-c.monthly_capacity, c.id))
        best: dict[str, CapabilityRecord] = {}
        for c in hits:
            best.setdefault(c.facility_id, c)
            if len(best) >= self.limit:
                break
        return [(f, c.id) for f, c in best.items()]


def random_queries(seed: int, count: int) -> list[SearchQuery]:
    """Seeded queries: a process; a material 70%, a region 50%, a certification 30% of the time;
    a minimum capacity of 0, 1,000, 5,000 or 20,000 units a month."""
    rng = random.Random(seed)
    return [
        SearchQuery(
            process=rng.choice(PROCESSES),
            material=rng.choice(MATERIALS) if rng.random() < 0.7 else None,
            region=region_name(rng.randrange(REGIONS)) if rng.random() < 0.5 else None,
            min_monthly_capacity=float(rng.choice((0, 1_000, 5_000, 20_000))),
            certification=rng.choice(CERTIFICATIONS) if rng.random() < 0.3 else None,
        )
        for _ in range(count)
    ]


def _search(seed: int, suppliers: int, edges: int) -> dict[str, Any]:
    records = generate_network(seed, suppliers, edges)
    network = SupplyNetwork.build(
        records.facilities, records.capabilities, records.items, records.bom, records.edges
    )
    queries = random_queries(seed + 1, SEARCH_QUERIES)
    # The first query after the build sorts each index once; warm them as a service would.
    for query in queries:
        query.ask(network)
    ours: list[float] = []
    for query in queries:
        t0 = time.perf_counter()
        query.ask(network)
        ours.append(time.perf_counter() - t0)
    region_of = {f.id: f.region for f in records.facilities}
    scan: list[float] = []
    mismatches = 0
    for query in queries[:SCAN_QUERIES]:
        t0 = time.perf_counter()
        expected = query.scan(records.capabilities, region_of)
        scan.append(time.perf_counter() - t0)
        mismatches += query.ask(network) != expected
    return {"ours": sorted(ours), "scan": sorted(scan), "mismatches": mismatches}


def _in_child(function: Any, *args: Any) -> dict[str, Any]:
    """Runs `function(*args)` in a spawned process and returns its result, so its peak RSS is
    its own."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(function, args)
    return result


def run_risk(
    seed: int = SEED, suppliers: int = SUPPLIERS, edges: int = EDGES, rounds: int = RISK_ROUNDS
) -> Report:
    """supply-risk: our analytics against a networkx pass, in one spawned process."""
    log.info("supply-risk: generate, build, analyse (%d rounds)", rounds)
    got = _in_child(_risk_child, seed, suppliers, edges, rounds)
    runs, passes, first = got["runs"], got["passes"], got["first"]

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    risk, worst = median("risk_s"), max(r["risk_s"] for r in runs)
    ratios = [r["risk_s"] / p for r, p in zip(runs, passes, strict=True)]
    met_time = risk <= RISK_TARGET_S
    met_memory = got["peak_gib"] <= MEMORY_TARGET_GIB
    rows = [
        ["single_source_items", f"{median('single_s'):.2f}", f"{first['singles']:,} items"],
        [
            "critical_nodes",
            f"{median('critical_s'):.2f}",
            f"{first['critical']:,} facilities",
        ],
        [
            f"disruption_impact ({region_name(0)}, {got['outages']:,} facilities down)",
            f"{median('impact_s'):.2f}",
            f"{first['items_hit']:,} items hit, {first['ends_hit']:,} end items",
        ],
        ["risk run (the three)", f"{risk:.2f}", f"worst round {worst:.2f} s"],
        [
            "baseline: networkx descendants of the region's facilities",
            f"{statistics.median(passes):.2f}",
            f"{got['reached']:,} nodes",
        ],
        ["build SupplyNetwork (once, kept in memory)", f"{got['build_s']:.2f}", ""],
        ["baseline: build a networkx DiGraph of the same edges", f"{got['nx_build_s']:.2f}", ""],
        ["generate records", f"{got['generate_s']:.2f}", ""],
    ]
    ratio_rows = [
        [
            "risk run / networkx descendants pass",
            f"{statistics.fmean(ratios):.2f}x",
            f"{min(ratios):.2f}-{max(ratios):.2f}",
        ],
        [
            "SupplyNetwork build / networkx DiGraph build",
            f"{got['build_s'] / got['nx_build_s']:.2f}x",
            "one sample",
        ],
    ]
    memory_rows = [
        ["records generated (RSS)", f"{got['rss_records_gib']:.2f}"],
        ["network built (RSS)", f"{got['rss_built_gib']:.2f}"],
        ["peak RSS, ours (records + network + first risk run)", f"{got['peak_gib']:.2f}"],
    ]
    notes = [
        f"Network: {suppliers:,} suppliers, {got['facilities']:,} facilities, "
        f"{got['items']:,} items, {got['edges']:,} supply edges (seed {seed}).",
        f"Target risk run <= {RISK_TARGET_S:g} s (median of {rounds} rounds): "
        f"**{'MET' if met_time else 'NOT MET'}** ({risk:.2f} s); peak memory <= "
        f"{MEMORY_TARGET_GIB:g} GiB: **{'MET' if met_memory else 'NOT MET'}** "
        f"({got['peak_gib']:.2f} GiB).",
        f"Revenue at risk over {OUTAGE_DAYS:g} days: {first['revenue_at_risk']:,.0f}.",
        "One spawned process: generate, build ours, a first risk run (peak RSS taken here), "
        f"build the networkx graph, then {rounds} rounds of baseline pass and risk run; "
        "figures are medians over the rounds.",
    ]
    return Report(
        name="supply-risk",
        title="single sources + critical nodes + a region's disruption impact, 1M edges",
        tables=[
            Table(["step", "seconds", "result"], rows, align="lrl"),
            Table(["ratio", "mean over rounds", "range over rounds"], ratio_rows),
            Table(["memory", "GiB"], memory_rows),
        ],
        notes=notes,
    )


def run_search(seed: int = SEED, suppliers: int = SUPPLIERS, edges: int = EDGES) -> Report:
    """supplier-search: indexed capable_facilities against a linear scan."""
    log.info("supplier-search: generate, build, query")
    result = _in_child(_search, seed, suppliers, edges)
    ours, scan = result["ours"], result["scan"]
    ms = 1000.0
    p95 = percentile(ours, 0.95) * ms
    rows = [
        [
            "capable_facilities (indexed)",
            str(len(ours)),
            f"{percentile(ours, 0.5) * ms:.3f}",
            f"{p95:.3f}",
            f"{ours[-1] * ms:.3f}",
        ],
        [
            "baseline: linear scan",
            str(len(scan)),
            f"{percentile(scan, 0.5) * ms:.3f}",
            f"{percentile(scan, 0.95) * ms:.3f}",
            f"{scan[-1] * ms:.3f}",
        ],
    ]
    ratio = statistics.fmean(ours) / statistics.fmean(scan)
    return Report(
        name="supplier-search",
        title="capable_facilities over 1,000 random queries, 100k suppliers",
        tables=[Table(["search", "queries", "p50 ms", "p95 ms", "max ms"], rows)],
        notes=[
            f"Target p95 <= {SEARCH_TARGET_MS:g} ms: "
            f"**{'MET' if p95 <= SEARCH_TARGET_MS else 'NOT MET'}** ({p95:.3f} ms).",
            f"Mean time ours / linear scan: {ratio:.4f}x; the scan and ours disagreed on "
            f"{result['mismatches']} of {len(scan)} queries.",
            "Queries: a process; a material 70%, a region 50%, a certification 30% of the time; "
            "minimum capacity 0, 1,000, 5,000 or 20,000 units a month; limit 100.",
        ],
    )


BENCHMARK = Benchmark(
    name="supply-risk",
    summary="single sources + critical nodes + regional impact on 1M supply edges",
    run=run_risk,
)
SEARCH_BENCHMARK = Benchmark(
    name="supplier-search",
    summary="p50/p95 capable-supplier search on 100k suppliers",
    run=run_search,
)
