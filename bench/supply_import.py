"""supply-import: bulk import of network data (ImportNetwork's use case) against raw inserts.

Ours: `SupplyApplication.import_network` on a fresh SQLite database with N JSON-lines rows of a
synthetic organization (facilities, capabilities, items, BOM lines, supply edges to 50 customer
organizations): parse, load what the rows reference, validate everything (BOM cycles included),
write in one transaction with its audit entry and event, then update the in-memory network.
Then the same rows again (the idempotent no-op path), and an export of them.

Baseline: the same rows written by plain SQLAlchemy executemany inserts into the same tables in
one transaction on a fresh database: the cost of storing the data at all. Rounds alternate
baseline and ours, each on its own new database, so machine drift falls on both alike.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, insert

from bench.harness import Benchmark, Report, Table
from services.shared import accounts, audit
from services.shared.db import utcnow
from services.shared.identity import Principal
from services.shared.migrate import upgrade
from services.supply.adapters.tables import (
    bom_lines,
    capabilities,
    facilities,
    items,
    supply_edges,
)
from services.supply.application import SupplyApplication
from services.supply.domain.importing import JSON_LINES

ORG = "acme"
CUSTOMERS = [f"customer-{i}" for i in range(50)]
FACILITIES, CAPABILITIES, ITEMS, BOM, EDGES = 500, 1_000, 3_000, 1_500, 6_000
ROUNDS = 3


def synthetic_rows(seed: int = 7) -> list[dict[str, object]]:
    """A seeded organization's network as import rows (BOM lines only point at lower ids, so
    there is no cycle)."""
    rnd = random.Random(seed)
    regions = [f"region-{i}" for i in range(20)]
    rows: list[dict[str, object]] = []
    for f in range(FACILITIES):
        rows.append(
            {"kind": "facility", "id": f"f{f}", "display_name": f"Plant {f}",
             "region": rnd.choice(regions), "country_code": "DE",
             "latitude": rnd.uniform(-60, 60), "longitude": rnd.uniform(-170, 170)}
        )  # fmt: skip
    for c in range(CAPABILITIES):
        rows.append(
            {"kind": "capability", "id": f"c{c}", "facility": f"f{c % FACILITIES}",
             "process": rnd.choice(["cnc-milling", "stamping", "casting", "moulding"]),
             "materials": rnd.sample(["steel", "aluminium", "abs", "pa6"], 2),
             "monthly_capacity": rnd.randint(100, 10_000), "certifications": ["ISO9001"]}
        )  # fmt: skip
    for i in range(ITEMS):
        rows.append(
            {"kind": "item", "id": f"i{i}", "display_name": f"Item {i}", "part_number": f"P-{i}",
             "end_item": i < 100, "unit_revenue": rnd.uniform(1, 1000),
             "weekly_demand": rnd.uniform(1, 500), "inventory_weeks": rnd.uniform(0, 4)}
        )  # fmt: skip
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < BOM:
        parent = rnd.randrange(ITEMS - 1)
        pairs.add((parent, rnd.randrange(parent + 1, ITEMS)))
    for parent, component in sorted(pairs):
        rows.append(
            {"kind": "bom", "parent": f"i{parent}", "component": f"i{component}",
             "quantity": rnd.randint(1, 8)}
        )  # fmt: skip
    for e in range(EDGES):
        rows.append(
            {"kind": "edge", "id": f"e{e}", "facility": f"f{rnd.randrange(FACILITIES)}",
             "item": f"i{rnd.randrange(ITEMS)}", "customer": CUSTOMERS[e % len(CUSTOMERS)],
             "lead_time_days": rnd.randint(1, 60), "unit_price": rnd.uniform(1, 100),
             "share": 0.5, "monthly_volume": rnd.randint(10, 1000)}
        )  # fmt: skip
    return rows


def _fresh_engine(directory: Path, name: str) -> Engine:
    url = f"sqlite:///{directory / name}.db"
    upgrade(url)
    engine = audit.audited_engine_in(url, directory)
    for org in [ORG, *CUSTOMERS]:
        accounts.create_organization(engine, org, org.upper())
    return engine


def _raw_insert(engine: Engine, rows: list[dict[str, object]]) -> float:
    now = utcnow()
    by_kind: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_kind.setdefault(str(row["kind"]), []).append(row)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            insert(facilities),
            [
                {"id": r["id"], "organization_id": ORG, "display_name": r["display_name"],
                 "region": r["region"], "country_code": r["country_code"],
                 "latitude": r["latitude"], "longitude": r["longitude"], "create_time": now}
                for r in by_kind["facility"]
            ],
        )  # fmt: skip
        conn.execute(
            insert(items),
            [
                {"id": r["id"], "organization_id": ORG, "display_name": r["display_name"],
                 "part_number": r["part_number"], "end_item": r["end_item"],
                 "unit_revenue": r["unit_revenue"], "weekly_demand": r["weekly_demand"],
                 "inventory_weeks": r["inventory_weeks"], "design": "", "revision": "",
                 "process": "", "material": "", "create_time": now}
                for r in by_kind["item"]
            ],
        )  # fmt: skip
        conn.execute(
            insert(capabilities),
            [
                {"id": r["id"], "organization_id": ORG, "facility_id": r["facility"],
                 "process": r["process"], "materials": r["materials"],
                 "monthly_capacity": r["monthly_capacity"],
                 "certifications": r["certifications"], "create_time": now}
                for r in by_kind["capability"]
            ],
        )  # fmt: skip
        conn.execute(
            insert(bom_lines),
            [
                {"parent_item_id": r["parent"], "component_item_id": r["component"],
                 "quantity": r["quantity"]}
                for r in by_kind["bom"]
            ],
        )  # fmt: skip
        conn.execute(
            insert(supply_edges),
            [
                {"id": r["id"], "owner_id": ORG, "facility_id": r["facility"],
                 "supplier_id": ORG, "item_id": r["item"], "item_organization_id": ORG,
                 "customer_id": r["customer"], "lead_time_days": r["lead_time_days"],
                 "unit_price": r["unit_price"], "share": r["share"],
                 "monthly_volume": r["monthly_volume"], "create_time": now}
                for r in by_kind["edge"]
            ],
        )  # fmt: skip
    return time.perf_counter() - start


def _ours(engine: Engine, content: bytes) -> tuple[float, float, float]:
    app = SupplyApplication(engine)
    app.load_network()
    principal = Principal(ORG, "alice")
    start = time.perf_counter()
    first = app.import_network(principal, ORG, JSON_LINES, content, "")
    imported = time.perf_counter() - start
    assert sum(c.created for c in first.counts.values()) == first.rows
    start = time.perf_counter()
    again = app.import_network(principal, ORG, JSON_LINES, content, "")
    reimported = time.perf_counter() - start
    assert sum(c.unchanged for c in again.counts.values()) == again.rows
    start = time.perf_counter()
    exported = sum(len(chunk) for chunk in app.export_network(principal, ORG, JSON_LINES))
    exporting = time.perf_counter() - start
    assert exported > 0
    return imported, reimported, exporting


def run() -> Report:
    rows = synthetic_rows()
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    baseline: list[float] = []
    ours: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="cofab-bench-import-") as tmp:
        for round_ in range(ROUNDS):
            raw_engine = _fresh_engine(Path(tmp), f"raw{round_}")
            baseline.append(_raw_insert(raw_engine, rows))
            raw_engine.dispose()
            engine = _fresh_engine(Path(tmp), f"ours{round_}")
            ours.append(_ours(engine, content))
            engine.dispose()
    ratios = [o[0] / b for o, b in zip(ours, baseline, strict=True)]
    median_base = statistics.median(baseline)

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    table = Table(
        ["step", f"median ms ({len(rows)} rows)", "rows/s", "ratio to raw inserts",
         "range over rounds"],
        [
            ["raw inserts (baseline)", ms(median_base), f"{len(rows) / median_base:,.0f}",
             "1.00", "-"],
            ["ImportNetwork, new rows", ms(statistics.median(o[0] for o in ours)),
             f"{len(rows) / statistics.median(o[0] for o in ours):,.0f}",
             f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"],
            ["ImportNetwork, same rows again", ms(statistics.median(o[1] for o in ours)),
             f"{len(rows) / statistics.median(o[1] for o in ours):,.0f}",
             f"{statistics.median(o[1] / b for o, b in zip(ours, baseline, strict=True)):.2f}",
             "-"],
            ["ExportNetwork", ms(statistics.median(o[2] for o in ours)),
             f"{len(rows) / statistics.median(o[2] for o in ours):,.0f}",
             f"{statistics.median(o[2] / b for o, b in zip(ours, baseline, strict=True)):.2f}",
             "-"],
        ],
    )  # fmt: skip
    return Report(
        name="supply-import",
        title="Bulk network import and export (SupplyApplication, SQLite)",
        tables=[table],
        notes=[
            f"{ROUNDS} rounds, each on fresh databases; ours includes parsing, full validation, "
            "one transaction with audit and event, and the in-memory network update.",
        ],
    )


BENCHMARK = Benchmark(
    name="supply-import",
    summary="ImportNetwork/ExportNetwork use cases on a 12k-row synthetic network vs raw inserts",
    run=run,
)
