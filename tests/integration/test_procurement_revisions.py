"""RFQs for designed parts are pinned to released revisions, checked with the real design server
over gRPC with the caller's own token."""

from __future__ import annotations

from pathlib import Path

import cadquery as cq
import grpc
import pytest

from clients.sdk import push_revision, wait_for
from cofab.design.v1 import design_pb2
from cofab.procurement.v1 import events_pb2
from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.errors import NotFound, Unavailable
from services.supply.procurement.ports import GrpcDesignRevisions
from tests.integration.test_design_api import create_design, create_project
from tests.integration.test_procurement_api import (
    Procurement,
    code_of,
    create_item,
    procurement,
    quote_message,
    rfq_message,
)

__all__ = ["procurement"]  # the fixture, imported to be used here

WAIT_S = 120.0


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parts") / "block.step"
    cq.exporters.export(cq.Workplane("XY").box(30, 20, 10), str(path))
    return path


def test_rfq_needs_a_released_revision_of_the_items_design(
    procurement: Procurement, block: Path
) -> None:
    p = procurement
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        design = create_design(acme, create_project(acme).name)
        pushed = push_revision(acme, design.name, block)
        wait_for(acme, pushed.name, timeout=WAIT_S)
        item = create_item(acme, "acme", "bracket", design=design.name)

        # A designed part without a pinned revision names one, or the RFQ is refused.
        no_revision = pb.CreateRfqRequest(
            parent="organizations/acme", rfq=rfq_message(item, ["globex"])
        )
        with pytest.raises(grpc.RpcError) as caught:
            acme.procurement.CreateRfq(no_revision)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rfq.design_revision" in (caught.value.details() or "")

        unreleased = pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(item, ["globex"], design_revision=pushed.name),
        )
        with pytest.raises(grpc.RpcError) as caught:
            acme.procurement.CreateRfq(unreleased)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not released" in (caught.value.details() or "")

        other = create_design(acme, design.name.split("/designs/")[0], name="Other")
        foreign = pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(
                item, ["globex"], design_revision=other.name + "/revisions/" + "0" * 32
            ),
        )
        assert code_of(lambda: acme.procurement.CreateRfq(foreign)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )

        # Globex is no member of ACME's project: the revision does not exist for it.
        globex_item = create_item(globex, "globex", "housing")
        invisible = pb.CreateRfqRequest(
            parent="organizations/globex",
            rfq=rfq_message(globex_item, ["initech"], design_revision=pushed.name),
        )
        assert code_of(lambda: globex.procurement.CreateRfq(invisible)) == (
            grpc.StatusCode.NOT_FOUND
        )
        assert p.events("procurement.rfq.created") == []

        acme.designs.ReleaseRevision(design_pb2.ReleaseRevisionRequest(name=pushed.name))
        rfq = acme.procurement.CreateRfq(unreleased)
        assert rfq.design_revision == pushed.name
        assert rfq.state == pb.Rfq.STATE_DRAFT


def test_the_revision_port_asks_the_design_server_with_the_callers_token(
    procurement: Procurement, block: Path
) -> None:
    p = procurement
    with p.client(p.stack.acme) as acme:
        design = create_design(acme, create_project(acme).name)
        pushed = push_revision(acme, design.name, block)
        wait_for(acme, pushed.name, timeout=WAIT_S)
    port = GrpcDesignRevisions(p.stack.design.address)
    try:
        assert port.is_released(f"Bearer {p.stack.acme.token}", pushed.name) is False
        with pytest.raises(NotFound):
            port.is_released(f"Bearer {p.stack.initech.token}", pushed.name)
        with pytest.raises(NotFound):
            port.is_released(f"Bearer {p.stack.acme.token}", design.name + "/revisions/" + "0" * 32)
    finally:
        port.close()
    unreachable = GrpcDesignRevisions("127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(Unavailable):
            unreachable.is_released(f"Bearer {p.stack.acme.token}", pushed.name)
    finally:
        unreachable.close()


@pytest.fixture(scope="module")
def longer_block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parts") / "longer_block.step"
    cq.exporters.export(cq.Workplane("XY").box(40, 20, 10), str(path))
    return path


def test_a_newer_revision_invalidates_open_quotes_and_tells_suppliers(
    procurement: Procurement, block: Path, longer_block: Path
) -> None:
    p = procurement
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        design = create_design(acme, create_project(acme).name)
        first = push_revision(acme, design.name, block)
        wait_for(acme, first.name, timeout=WAIT_S)
        acme.designs.ReleaseRevision(design_pb2.ReleaseRevisionRequest(name=first.name))
        item = create_item(acme, "acme", "bracket", design=design.name)
        rfq = acme.procurement.CreateRfq(
            pb.CreateRfqRequest(
                parent="organizations/acme",
                rfq=rfq_message(item, ["globex", "initech"], design_revision=first.name),
            )
        )
        acme.procurement.OpenRfq(pb.OpenRfqRequest(name=rfq.name))
        quote = globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(4.0, 3, 100))
        )

        second = push_revision(acme, design.name, longer_block, base_revision=first.name)
        wait_for(acme, second.name, timeout=WAIT_S)
        revise = pb.ReviseRfqRequest(
            name=rfq.name, design_revision=second.name, reason="longer block"
        )
        assert code_of(lambda: acme.procurement.ReviseRfq(revise)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert code_of(lambda: globex.procurement.ReviseRfq(revise)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        acme.designs.ReleaseRevision(design_pb2.ReleaseRevisionRequest(name=second.name))
        moved = acme.procurement.ReviseRfq(revise)
        assert (moved.design_revision, moved.quote_count) == (second.name, 0)

        stale = globex.procurement.GetQuote(pb.GetQuoteRequest(name=quote.name))
        assert stale.state == pb.Quote.STATE_INVALIDATED
        again = pb.UpdateQuoteRequest(quote=quote_message(3.0, 3, 100, name=quote.name))
        assert code_of(lambda: globex.procurement.UpdateQuote(again)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        fresh = globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(4.5, 3, 100))
        )
        assert fresh.state == pb.Quote.STATE_SUBMITTED

    told = {}
    for _, key, envelope in p.events("procurement.rfq.revised"):
        payload = events_pb2.RfqRevised()
        assert envelope.data.Unpack(payload)
        assert list(envelope.audience) == [f"organizations/{key}"]
        told[key] = (list(payload.invalidated_quotes), payload.previous_revision)
    assert told == {
        "globex": ([quote.name], first.name),
        "initech": ([], first.name),
    }
