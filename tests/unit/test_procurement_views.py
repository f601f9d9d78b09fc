"""What each party sees of an RFQ, the supply network adapter, and the procurement schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, create_engine

from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.identity import Principal
from services.shared.migrate import upgrade
from services.shared.tables_all import metadata
from services.supply.procurement.convert import rfq_proto, supplier_views
from services.supply.procurement.domain import Allocation, Rfq, RfqState, Weights
from services.supply.procurement.ports import CapabilityQuery, NetworkDirectory

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PROCUREMENT_TABLES = {"rfqs", "rfq_suppliers", "quotes", "rfq_allocations"}


def awarded_rfq() -> Rfq:
    return Rfq(
        id="r1",
        buyer_id="acme",
        display_name="Brackets",
        item="organizations/acme/items/bracket",
        quantity=100,
        due_time=NOW + dt.timedelta(days=20),
        design_revision="",
        quote_deadline=NOW + dt.timedelta(days=5),
        weights=Weights(1, 1, 0, 0),
        currency_code="EUR",
        state=RfqState.AWARDED,
        version=4,
        create_time=NOW,
        update_time=NOW,
        suppliers=("globex", "initech"),
        open_time=NOW,
        close_time=NOW,
        allocations=(Allocation("globex", 60, "qa"), Allocation("initech", 40, "qb")),
        quote_count=2,
    )


def test_the_buyer_sees_everything() -> None:
    view = rfq_proto(awarded_rfq(), "acme")
    assert list(view.invited_suppliers) == ["organizations/globex", "organizations/initech"]
    assert [a.quantity for a in view.allocations] == [60, 40]
    assert view.quote_count == 2
    assert view.state == pb.Rfq.STATE_AWARDED and view.etag == "4"
    assert view.allocations[0].quote == "organizations/acme/rfqs/r1/quotes/qa"


def test_a_supplier_sees_only_itself_and_its_allocation() -> None:
    view = rfq_proto(awarded_rfq(), "initech")
    assert list(view.invited_suppliers) == ["organizations/initech"]
    assert [(a.supplier, a.quantity) for a in view.allocations] == [("organizations/initech", 40)]
    assert view.quote_count == 0


@dataclass(frozen=True)
class Hit:
    organization_id: str


class Network:
    def __init__(self, hits: Sequence[Hit]) -> None:
        self.hits = hits
        self.asked: list[tuple[object, ...]] = []

    def get_item(self, principal: Principal, item_name: str) -> object:
        raise AssertionError("not used here")

    def search_capable(self, principal: Principal, *args: object) -> Sequence[Hit]:
        self.asked.append(args)
        return self.hits

    def supplier_risk(self, organization_id: str) -> float:
        return 0.25


def test_capable_suppliers_are_invited_once_in_match_order() -> None:
    network = Network([Hit("initech"), Hit("globex"), Hit("initech")])
    directory = NetworkDirectory(network)  # type: ignore[arg-type]
    query = CapabilityQuery("cnc-milling", "aluminium", "eu-central", 10.0, "ISO9001", 20)
    found = directory.capable_suppliers(Principal("acme", "alice"), query)
    assert found == ["initech", "globex"]
    assert network.asked == [("cnc-milling", "aluminium", "eu-central", 10.0, "ISO9001", 20)]
    assert directory.supplier_risk("globex") == 0.25


def test_the_migration_creates_the_tables_as_declared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    def tables_of(diff: Any) -> set[str]:
        # A diff is an op tuple ("add_column", schema, table, column, ...) or a list of them;
        # its table shows as a name, a Table, or the .table of a column, index or constraint.
        found: set[str] = set()
        for op in diff if isinstance(diff, list) else [diff]:
            for value in op[1:]:
                if isinstance(value, str):
                    found.add(value)
                elif isinstance(value, Table):
                    found.add(value.name)
                elif isinstance(getattr(value, "table", None), Table):
                    found.add(value.table.name)
        return found

    ours = [d for d in differences if tables_of(d) & PROCUREMENT_TABLES]
    assert ours == []


def test_each_suppliers_event_view_is_its_rpc_view() -> None:
    """The per-supplier event copies (supplier_views) are exactly rfq_proto's supplier view,
    the one GetRfq answers the supplier with."""
    rfq = awarded_rfq()
    views = dict(supplier_views(rfq))
    assert sorted(views) == sorted(rfq.suppliers)
    for supplier, view in views.items():
        assert view == rfq_proto(rfq, supplier)
        assert list(view.invited_suppliers) == [f"organizations/{supplier}"]
        assert view.quote_count == 0
