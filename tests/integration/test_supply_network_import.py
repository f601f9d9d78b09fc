"""Bulk import and export of network data over real gRPC streams: all or nothing, idempotent,
and an export re-imports as a no-op."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import func, select

from clients.sdk import Cofab
from cofab.supply.v1 import supply_pb2
from services.shared.db import outbox
from services.shared.identity import Principal
from services.supply.application import SupplyApplication
from tests.integration.conftest import Stack
from tests.integration.test_supply_network_api import make_facility, make_item, violations

CSV = supply_pb2.NETWORK_FORMAT_CSV
JSONL = supply_pb2.NETWORK_FORMAT_JSON_LINES


def rows_text(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def stream(
    parent: str,
    fmt: supply_pb2.NetworkFormat.ValueType,
    content: bytes,
    chunk: int = 97,
    request_id: str = "",
) -> Iterator[supply_pb2.ImportNetworkRequest]:
    yield supply_pb2.ImportNetworkRequest(
        header=supply_pb2.ImportNetworkRequest.Header(
            parent=parent, format=fmt, request_id=request_id
        )
    )
    for start in range(0, len(content), chunk):
        yield supply_pb2.ImportNetworkRequest(chunk=content[start : start + chunk])


def counts(response: supply_pb2.ImportNetworkResponse) -> dict[str, tuple[int, int, int]]:
    return {c.kind: (c.created, c.updated, c.unchanged) for c in response.counts}


def export(client: Cofab, parent: str, fmt: supply_pb2.NetworkFormat.ValueType) -> bytes:
    return b"".join(
        r.chunk
        for r in client.supply.ExportNetwork(
            supply_pb2.ExportNetworkRequest(parent=parent, format=fmt)
        )
    )


GLOBEX_ROWS: list[dict[str, object]] = [
    {"kind": "facility", "id": "gx-plant-1", "display_name": "Stuttgart", "region": "eu-central",
     "country_code": "DE", "latitude": 48.78, "longitude": 9.18},
    {"kind": "facility", "id": "gx-plant-2", "display_name": "Brno", "region": "eu-east",
     "country_code": "CZ", "latitude": 49.19, "longitude": 16.61},
    {"kind": "capability", "id": "gx-mill", "facility": "gx-plant-1", "process": "cnc-milling",
     "materials": ["steel", "aluminium"], "monthly_capacity": 4000, "certifications": ["ISO9001"]},
    {"kind": "item", "id": "gx-housing", "display_name": "Housing", "part_number": "H-1",
     "weekly_demand": 100, "inventory_weeks": 1.5, "process": "cnc-milling", "material": "steel"},
    {"kind": "item", "id": "gx-blank", "display_name": "Blank", "weekly_demand": 100},
    {"kind": "bom", "parent": "gx-housing", "component": "gx-blank", "quantity": 2},
    {"kind": "edge", "id": "gx-housing-acme", "facility": "gx-plant-1", "item": "gx-housing",
     "customer": "acme", "lead_time_days": 14, "unit_price": 9.75, "share": 0.6,
     "monthly_volume": 400},
]  # fmt: skip


def test_import_is_idempotent_and_an_export_round_trips(stack: Stack) -> None:
    parent = "organizations/globex"
    with stack.client(stack.globex) as globex, stack.client(stack.acme) as acme:
        first = globex.supply.ImportNetwork(stream(parent, JSONL, rows_text(GLOBEX_ROWS)))
        assert first.rows == len(GLOBEX_ROWS)
        assert counts(first) == {
            "facility": (2, 0, 0),
            "capability": (1, 0, 0),
            "item": (2, 0, 0),
            "bom": (1, 0, 0),
            "edge": (1, 0, 0),
        }
        first_page = globex.supply.ListItems(
            supply_pb2.ListItemsRequest(parent=parent, page_size=1)
        )
        second_page = globex.supply.ListItems(
            supply_pb2.ListItemsRequest(
                parent=parent, page_size=1, page_token=first_page.next_page_token
            )
        )
        assert [i.name for i in [*first_page.items, *second_page.items]] == [
            "organizations/globex/items/gx-housing",
            "organizations/globex/items/gx-blank",
        ]
        assert second_page.next_page_token == ""
        housing = globex.supply.GetItem(
            supply_pb2.GetItemRequest(name="organizations/globex/items/gx-housing")
        )
        assert [(c.component, c.quantity) for c in housing.components] == [
            ("organizations/globex/items/gx-blank", 2.0)
        ]
        assert housing.process == "cnc-milling"
        # An imported edge with another company is only a proposal: the customer sees it
        # among its proposals, not among its edges, until it confirms.
        edge_name = "organizations/globex/supplyEdges/gx-housing-acme"

        def acme_edges(
            state: supply_pb2.SupplyEdge.State.ValueType = supply_pb2.SupplyEdge.STATE_UNSPECIFIED,
        ) -> list[str]:
            listed = acme.supply.ListSupplyEdges(
                supply_pb2.ListSupplyEdgesRequest(parent="organizations/acme", state=state)
            )
            return [e.name for e in listed.supply_edges]

        assert acme_edges() == []
        assert acme_edges(supply_pb2.SupplyEdge.STATE_PROPOSED) == [edge_name]
        confirmed = acme.supply.ConfirmSupplyEdge(
            supply_pb2.ConfirmSupplyEdgeRequest(name=edge_name)
        )
        assert confirmed.state == supply_pb2.SupplyEdge.STATE_ACTIVE
        assert acme_edges() == [edge_name]
        assert acme_edges(supply_pb2.SupplyEdge.STATE_PROPOSED) == []

        with stack.engine.connect() as conn:
            events_before = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        again = globex.supply.ImportNetwork(stream(parent, JSONL, rows_text(GLOBEX_ROWS)))
        assert {k: v[2] for k, v in counts(again).items()} == {
            "facility": 2, "capability": 1, "item": 2, "bom": 1, "edge": 1,
        }  # fmt: skip
        assert all(v[0] == v[1] == 0 for v in counts(again).values())
        with stack.engine.connect() as conn:
            events_after = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        assert events_after == events_before  # no change, no event

        # Chunks split anywhere and join back to the whole export.
        small = SupplyApplication(stack.engine).export_network(
            Principal("globex", "gina"), "globex", "jsonl", chunk_bytes=100
        )
        assert len(small) > 3
        assert b"".join(small) == export(globex, parent, JSONL)

        for fmt in (CSV, JSONL):
            exported = export(globex, parent, fmt)
            assert b"gx-housing-acme" in exported
            back = globex.supply.ImportNetwork(stream(parent, fmt, exported, chunk=64))
            assert all(v[0] == v[1] == 0 for v in counts(back).values()), counts(back)
            assert sum(v[2] for v in counts(back).values()) == len(GLOBEX_ROWS)

        # A changed row updates in place, keyed by its id.
        changed = [dict(r) for r in GLOBEX_ROWS]
        changed[2]["monthly_capacity"] = 4500
        update = globex.supply.ImportNetwork(stream(parent, JSONL, rows_text(changed)))
        assert counts(update)["capability"] == (0, 1, 0)
        capability = globex.supply.GetCapability(
            supply_pb2.GetCapabilityRequest(
                name="organizations/globex/facilities/gx-plant-1/capabilities/gx-mill"
            )
        )
        assert capability.monthly_capacity == 4500

        # Nobody else's export shows Globex's rows; an outsider cannot export Globex's.
        assert b"gx-" not in export(acme, "organizations/acme", JSONL)
    with stack.client(stack.initech) as initech:
        with pytest.raises(grpc.RpcError) as caught:
            export(initech, parent, CSV)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_rows_reject_the_whole_import_naming_each_row(stack: Stack) -> None:
    parent = "organizations/globex"
    with stack.client(stack.globex) as globex, stack.client(stack.acme) as acme:
        acme_plant = make_facility(acme, "acme")
        make_item(acme, "acme", "acme-part")
        bad: list[dict[str, object]] = [
            *GLOBEX_ROWS,
            # line 8: negative capacity
            {"kind": "capability", "id": "gx-press", "facility": "gx-plant-2",
             "process": "stamping", "monthly_capacity": -10},
            # line 9: unknown facility
            {"kind": "capability", "id": "gx-weld", "facility": "nowhere", "process": "welding",
             "monthly_capacity": 10},
            # line 10: duplicate item id (first on line 4)
            {"kind": "item", "id": "gx-housing", "display_name": "Again"},
            # line 11: a cycle gx-blank -> gx-housing -> gx-blank
            {"kind": "bom", "parent": "gx-blank", "component": "gx-housing", "quantity": 1},
            # line 12: another company's facility is not ours to describe
            {"kind": "capability", "id": "gx-steal", "facility": acme_plant.split("/")[-1],
             "process": "cnc-milling", "monthly_capacity": 10},
            # line 13: unknown customer
            {"kind": "edge", "id": "gx-to-nobody", "facility": "gx-plant-1", "item": "gx-blank",
             "customer": "no-such-org"},
            # line 14: an item of neither party
            {"kind": "edge", "id": "gx-wrong-item", "facility": "gx-plant-1",
             "item": "acme-part-x", "customer": "acme"},
        ]  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            globex.supply.ImportNetwork(stream(parent, JSONL, rows_text(bad)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        found = violations(caught.value)
        assert "rows[8].monthly_capacity" in found
        assert "not one of your facilities" in found["rows[9].facility"]
        assert "first on line 4" in found["rows[10].id"]
        assert "cycle" in found["rows[11].component"]
        assert "not one of your facilities" in found["rows[12].facility"]
        assert "not found" in found["rows[13].customer"]
        # A bare id is the importer's own; another company's is never looked up by it.
        assert "not one of yours" in found["rows[14].item"]
        # Nothing of the valid rows was written.
        listed = globex.supply.ListItems(supply_pb2.ListItemsRequest(parent=parent))
        assert list(listed.items) == []
        facilities = globex.supply.ListFacilities(supply_pb2.ListFacilitiesRequest(parent=parent))
        assert list(facilities.facilities) == []

        # CSV: syntax problems carry the line number too; ids of other companies are taken.
        csv_rows = (
            b"kind,id,display_name,region,country_code,latitude,longitude\n"
            b"facility,gx-a,A,eu-central,DE,48,11\n"
            b"facility,gx-b,B,eu-central,Germany,not-a-number,11\n"
            b"gizmo,gx-c,C,eu-central,DE,48,11\n"
            b"facility," + acme_plant.split("/")[-1].encode() + b",Mine,eu-central,DE,1,1\n"
        )
        with pytest.raises(grpc.RpcError) as caught:
            globex.supply.ImportNetwork(stream(parent, CSV, csv_rows))
        found = violations(caught.value)
        assert set(found) >= {"rows[3].latitude", "rows[4].kind", "rows[5].id"}
        assert "already used" in found["rows[5].id"]

        for requests, field in (
            (iter([supply_pb2.ImportNetworkRequest(chunk=b"x")]), "header"),
            (stream(parent, supply_pb2.NETWORK_FORMAT_UNSPECIFIED, b""), "header.format"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                globex.supply.ImportNetwork(requests)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in violations(caught.value)
    with stack.client(stack.initech) as initech:
        with pytest.raises(grpc.RpcError) as caught:
            initech.supply.ImportNetwork(stream(parent, JSONL, rows_text(GLOBEX_ROWS)))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
