"""ProcurementService over real gRPC on SQLite and PostgreSQL: the RFQ lifecycle, sealed quotes,
access of buyers, invited and uninvited suppliers, evaluation, split awards, events, retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from clients.sdk import Cofab, connect
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.procurement.v1 import events_pb2
from cofab.procurement.v1 import procurement_pb2 as pb
from cofab.supply.v1 import supply_pb2
from services.shared import accounts
from services.shared.db import outbox
from services.supply.app import bootstrap as supply_bootstrap
from services.supply.app import build_server as build_supply
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack
from tests.support import ServerThread


@dataclass
class Procurement:
    """The stack plus a supply server whose design address is the stack's design server."""

    stack: Stack
    supply: ServerThread
    hooli: Account

    def client(self, account: Account | None) -> Cofab:
        return connect(
            account.token if account else None, self.stack.design.address, self.supply.address
        )

    def events(self, event_type: str) -> list[tuple[str, str, EventEnvelope]]:
        """(topic, key, envelope) of every outbox row of one event type, oldest first."""
        with self.stack.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.topic, outbox.c.key, outbox.c.payload)
                .where(outbox.c.event_type == event_type)
                .order_by(outbox.c.seq)
            ).all()
        return [(r.topic, r.key, EventEnvelope.FromString(r.payload)) for r in rows]


@pytest.fixture
def procurement(stack: Stack) -> Iterator[Procurement]:
    # The stack's own supply server asks the default design address; this one asks the test's.
    settings = replace(stack.settings, design_address=stack.design.address)
    deps = supply_bootstrap(settings)
    server = ServerThread(lambda: build_supply(settings, deps, "127.0.0.1:0")).start()
    try:
        yield Procurement(stack, server, make_account(stack.engine, "hooli", "hank", admin=True))
    finally:
        server.stop()
        deps.engine.dispose()


def ts(value: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def in_days(days: float) -> Timestamp:
    return ts(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))


def create_item(client: Cofab, organization: str, item_id: str, **fields: str) -> str:
    item = client.supply.CreateItem(
        supply_pb2.CreateItemRequest(
            parent=f"organizations/{organization}",
            item=supply_pb2.Item(display_name=item_id, **fields),  # type: ignore[arg-type]
            item_id=item_id,
        )
    )
    return item.name


def rfq_message(item: str, suppliers: list[str], **overrides: object) -> pb.Rfq:
    fields: dict[str, object] = dict(
        display_name="Brackets, first batch",
        item=item,
        quantity=100,
        due_time=in_days(30),
        quote_deadline=in_days(7),
        invited_suppliers=[f"organizations/{s}" for s in suppliers],
        weights=pb.EvaluationWeights(price=2, lead_time=1, supplier_risk=1, capacity_fit=0),
        currency_code="EUR",
    )
    fields.update(overrides)
    return pb.Rfq(**fields)  # type: ignore[arg-type]


def quote_message(price: float, lead: int, capacity: int, **overrides: object) -> pb.Quote:
    fields: dict[str, object] = dict(
        unit_price=price,
        lead_time_days=lead,
        capacity=capacity,
        valid_until=in_days(60),
        notes="incl. packaging",
        attachments=[
            pb.Attachment(
                file_name="offer.pdf",
                sha256="a" * 64,
                size_bytes=1234,
                media_type="application/pdf",
            )
        ],
    )
    fields.update(overrides)
    return pb.Quote(**fields)  # type: ignore[arg-type]


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The status code the call fails with (and pytest fails the test if it succeeds)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def new_open_rfq(p: Procurement, suppliers: tuple[str, ...] = ("globex", "initech")) -> pb.Rfq:
    with p.client(p.stack.acme) as acme:
        item = create_item(acme, "acme", "bracket-open")
        rfq = acme.procurement.CreateRfq(
            pb.CreateRfqRequest(parent="organizations/acme", rfq=rfq_message(item, list(suppliers)))
        )
        return acme.procurement.OpenRfq(pb.OpenRfqRequest(name=rfq.name, etag=rfq.etag))


def test_lifecycle_with_sealed_quotes_evaluation_and_split_award(procurement: Procurement) -> None:
    p = procurement
    with (
        p.client(p.stack.acme) as acme,
        p.client(p.stack.globex) as globex,
        p.client(p.stack.initech) as initech,
    ):
        item = create_item(acme, "acme", "bracket")
        draft = acme.procurement.CreateRfq(
            pb.CreateRfqRequest(
                parent="organizations/acme", rfq=rfq_message(item, ["globex", "initech"])
            )
        )
        assert draft.state == pb.Rfq.STATE_DRAFT
        assert draft.name.startswith("organizations/acme/rfqs/")
        assert list(draft.invited_suppliers) == ["organizations/globex", "organizations/initech"]
        # Suppliers learn of an RFQ when it opens, not before.
        get = pb.GetRfqRequest(name=draft.name)
        assert code_of(lambda: globex.procurement.GetRfq(get)) == grpc.StatusCode.NOT_FOUND

        opened = acme.procurement.OpenRfq(pb.OpenRfqRequest(name=draft.name, etag=draft.etag))
        assert opened.state == pb.Rfq.STATE_OPEN and opened.HasField("open_time")
        seen = globex.procurement.GetRfq(get)
        assert list(seen.invited_suppliers) == ["organizations/globex"]
        invited = globex.procurement.ListRfqs(pb.ListRfqsRequest(parent="organizations/-"))
        assert [r.name for r in invited.rfqs] == [draft.name]

        qa = globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=draft.name, quote=quote_message(10.0, 10, 60))
        )
        qb = initech.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=draft.name, quote=quote_message(8.0, 40, 100))
        )
        assert (qa.state, qa.revision, qa.supplier) == (
            pb.Quote.STATE_SUBMITTED,
            1,
            "organizations/globex",
        )
        assert qa.attachments[0].sha256 == "a" * 64

        # Sealed: a supplier sees only its own quote; the buyer sees none, only how many.
        own = globex.procurement.ListQuotes(pb.ListQuotesRequest(parent=draft.name))
        assert [q.name for q in own.quotes] == [qa.name]
        other = pb.GetQuoteRequest(name=qb.name)
        assert code_of(lambda: globex.procurement.GetQuote(other)) == grpc.StatusCode.NOT_FOUND
        sealed = pb.ListQuotesRequest(parent=draft.name)
        assert (
            code_of(lambda: acme.procurement.ListQuotes(sealed))
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        assert (
            code_of(lambda: acme.procurement.GetQuote(other)) == grpc.StatusCode.FAILED_PRECONDITION
        )
        assert acme.procurement.GetRfq(get).quote_count == 2

        # Revisions are compare-and-set on the etag.
        stale = pb.UpdateQuoteRequest(quote=quote_message(9.0, 10, 60, name=qa.name), etag="7")
        assert code_of(lambda: globex.procurement.UpdateQuote(stale)) == grpc.StatusCode.ABORTED
        revised = globex.procurement.UpdateQuote(
            pb.UpdateQuoteRequest(quote=quote_message(9.0, 10, 60, name=qa.name), etag=qa.etag)
        )
        assert (revised.revision, revised.unit_price) == (2, 9.0)
        not_theirs = pb.UpdateQuoteRequest(quote=quote_message(1.0, 1, 60, name=qa.name))
        assert (
            code_of(lambda: initech.procurement.UpdateQuote(not_theirs))
            == grpc.StatusCode.NOT_FOUND
        )

        closed = acme.procurement.CloseRfq(pb.CloseRfqRequest(name=draft.name))
        assert closed.state == pb.Rfq.STATE_CLOSED
        late = pb.SubmitQuoteRequest(parent=draft.name, quote=quote_message(1.0, 1, 100))
        assert (
            code_of(lambda: globex.procurement.SubmitQuote(late))
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        withdraw = pb.WithdrawQuoteRequest(name=qa.name)
        assert (
            code_of(lambda: globex.procurement.WithdrawQuote(withdraw))
            == grpc.StatusCode.FAILED_PRECONDITION
        )

        # Unsealed at close: the buyer sees both quotes and ranks them.
        all_quotes = acme.procurement.ListQuotes(pb.ListQuotesRequest(parent=draft.name))
        assert {q.name for q in all_quotes.quotes} == {qa.name, qb.name}
        evaluation = acme.procurement.EvaluateRfq(pb.EvaluateRfqRequest(name=draft.name))
        # 30 days left: both deliver in time except initech (40 days): 29.99../40.
        # globex: price 8/9, lead 1; initech: price 1, lead ~0.75; risk 1 for both (none known).
        # weights 2:1:1:0 -> globex 0.5*0.889 + 0.25 + 0.25 = 0.944 > initech 0.5 + 0.1875 + 0.25
        assert [s.supplier for s in evaluation.scores] == [
            "organizations/globex",
            "organizations/initech",
        ]
        assert evaluation.scores[0].price == pytest.approx(8.0 / 9.0)
        assert evaluation.scores[1].lead_time == pytest.approx(0.75, abs=0.01)
        assert evaluation.weights.price == pytest.approx(0.5)
        assert code_of(
            lambda: globex.procurement.EvaluateRfq(pb.EvaluateRfqRequest(name=draft.name))
        ) == (grpc.StatusCode.PERMISSION_DENIED)

        awarded = acme.procurement.AwardRfq(
            pb.AwardRfqRequest(
                name=draft.name,
                allocations=[
                    pb.Allocation(supplier="organizations/globex", quantity=60),
                    pb.Allocation(supplier="organizations/initech", quantity=40),
                ],
            )
        )
        assert awarded.state == pb.Rfq.STATE_AWARDED
        assert {(a.supplier, a.quantity, a.quote) for a in awarded.allocations} == {
            ("organizations/globex", 60, qa.name),
            ("organizations/initech", 40, qb.name),
        }
        # Each supplier sees its own allocation only.
        mine = globex.procurement.GetRfq(get)
        assert [(a.supplier, a.quantity) for a in mine.allocations] == [
            ("organizations/globex", 60)
        ]


def test_an_uninvited_supplier_sees_nothing_and_cannot_quote(procurement: Procurement) -> None:
    p = procurement
    rfq = new_open_rfq(p)
    missing = rfq.name.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    with p.client(p.hooli) as hooli:
        answers: list[str] = []
        for name in (rfq.name, missing):
            for call in (
                lambda n=name: hooli.procurement.GetRfq(pb.GetRfqRequest(name=n)),
                lambda n=name: hooli.procurement.SubmitQuote(
                    pb.SubmitQuoteRequest(parent=n, quote=quote_message(1.0, 1, 100))
                ),
                lambda n=name: hooli.procurement.ListQuotes(pb.ListQuotesRequest(parent=n)),
            ):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
                answers.append(caught.value.details() or "")
        # The same message whether the RFQ exists or not, apart from the name asked for.
        assert answers[:3] == [a.replace(missing, rfq.name) for a in answers[3:]]
        listed = hooli.procurement.ListRfqs(pb.ListRfqsRequest(parent="organizations/-"))
        assert list(listed.rfqs) == []
        as_buyer = pb.ListRfqsRequest(parent="organizations/acme")
        assert list(hooli.procurement.ListRfqs(as_buyer).rfqs) == []
    with p.client(p.stack.globex) as globex:
        # A supplier cannot act as the buyer.
        close = pb.CloseRfqRequest(name=rfq.name)
        assert code_of(lambda: globex.procurement.CloseRfq(close)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


def test_events_are_keyed_and_addressed_per_supplier(procurement: Procurement) -> None:
    p = procurement
    rfq = new_open_rfq(p)
    rfq_id = rfq.name.rsplit("/", 1)[1]
    opened = p.events("procurement.rfq.opened")
    assert sorted(key for _, key, _ in opened) == ["globex", "initech"]
    for topic, key, envelope in opened:
        assert topic == "cofab.procurement"
        assert list(envelope.audience) == [f"organizations/{key}"]
        assert envelope.subject == rfq.name
        payload = events_pb2.RfqOpened()
        assert envelope.data.Unpack(payload)
        assert payload.supplier == f"organizations/{key}"
        # Each supplier's invitation names no competitor.
        assert list(payload.rfq.invited_suppliers) == [f"organizations/{key}"]

    with p.client(p.stack.globex) as globex, p.client(p.stack.acme) as acme:
        quote = globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(10.0, 5, 100))
        )
        ((_, key, submitted),) = p.events("procurement.quote.submitted")
        assert (key, list(submitted.audience)) == ("globex", ["organizations/globex"])
        changed = events_pb2.QuoteChanged()
        assert submitted.data.Unpack(changed) and changed.quote.unit_price == 10.0
        ((_, key, received),) = p.events("procurement.quote.received")
        # The buyer's alone: not the quoting supplier's, and it does not name who quoted.
        assert (key, list(received.audience)) == (rfq_id, ["organizations/acme"])
        assert received.organization == "organizations/acme"
        news = events_pb2.QuoteReceived()
        assert received.data.Unpack(news)
        assert (news.rfq, news.quote_count) == (rfq.name, 1)

        acme.procurement.CloseRfq(pb.CloseRfqRequest(name=rfq.name))
        closed = {key: envelope for _, key, envelope in p.events("procurement.rfq.closed")}
        assert sorted(closed) == sorted([rfq_id, "globex", "initech"])
        for key, envelope in closed.items():
            org = "acme" if key == rfq_id else key
            assert list(envelope.audience) == [f"organizations/{org}"]
            view = events_pb2.RfqClosed()
            assert envelope.data.Unpack(view)
            # Only the buyer learns how many quoted.
            assert (view.rfq, view.quote_count) == (rfq.name, 1 if org == "acme" else 0)
        acme.procurement.AwardRfq(
            pb.AwardRfqRequest(
                name=rfq.name,
                allocations=[pb.Allocation(supplier="organizations/globex", quantity=100)],
            )
        )
    ((_, key, order),) = p.events("procurement.purchase_order.issued")
    assert (key, list(order.audience)) == ("globex", ["organizations/globex"])
    issued = events_pb2.PurchaseOrderIssued()
    assert order.data.Unpack(issued)
    assert (issued.allocation.quote, issued.allocation.quantity, issued.unit_price) == (
        quote.name,
        100,
        10.0,
    )
    assert [key for _, key, _ in p.events("procurement.rfq.awarded")] == [rfq_id]


def test_cancelling_an_open_rfq_tells_each_supplier(procurement: Procurement) -> None:
    p = procurement
    rfq = new_open_rfq(p)
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        cancelled = acme.procurement.CancelRfq(
            pb.CancelRfqRequest(name=rfq.name, reason="design changed")
        )
        assert cancelled.state == pb.Rfq.STATE_CANCELLED
        late = pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(1.0, 1, 100))
        assert (
            code_of(lambda: globex.procurement.SubmitQuote(late))
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        again = pb.OpenRfqRequest(name=rfq.name)
        assert (
            code_of(lambda: acme.procurement.OpenRfq(again)) == grpc.StatusCode.FAILED_PRECONDITION
        )
    events = p.events("procurement.rfq.cancelled")
    assert sorted((key, list(e.audience)) for _, key, e in events) == [
        ("globex", ["organizations/globex"]),
        ("initech", ["organizations/initech"]),
    ]


def test_retries_with_a_request_id_have_no_second_effect(procurement: Procurement) -> None:
    p = procurement
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        item = create_item(acme, "acme", "bracket")
        create = pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(item, ["globex", "initech"]),
            request_id="create-1",
        )
        first = acme.procurement.CreateRfq(create)
        assert acme.procurement.CreateRfq(create).name == first.name
        opening = pb.OpenRfqRequest(name=first.name, request_id="open-1")
        acme.procurement.OpenRfq(opening)
        assert acme.procurement.OpenRfq(opening).state == pb.Rfq.STATE_OPEN
        submit = pb.SubmitQuoteRequest(
            parent=first.name, quote=quote_message(3.0, 2, 100), request_id="quote-1"
        )
        quote = globex.procurement.SubmitQuote(submit)
        assert globex.procurement.SubmitQuote(submit).name == quote.name
        # Without the request id, a second quote of the same supplier is refused.
        submit.request_id = ""
        assert (
            code_of(lambda: globex.procurement.SubmitQuote(submit))
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        listed = acme.procurement.ListRfqs(pb.ListRfqsRequest(parent="organizations/acme"))
        assert [r.name for r in listed.rfqs] == [first.name]
    assert len(p.events("procurement.rfq.created")) == 1
    assert len(p.events("procurement.rfq.opened")) == 2
    assert len(p.events("procurement.quote.submitted")) == 1


def test_bad_input_is_rejected_precisely_and_changes_nothing(procurement: Procurement) -> None:
    p = procurement
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        item = create_item(acme, "acme", "bracket")
        with pytest.raises(grpc.RpcError) as caught:
            acme.procurement.CreateRfq(
                pb.CreateRfqRequest(
                    parent="organizations/acme",
                    rfq=rfq_message(item, ["globex"], quantity=0, currency_code="euro"),
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rfq.quantity" in (caught.value.details() or "")
        assert "rfq.currency_code" in (caught.value.details() or "")
        for bad in (
            rfq_message(item, ["nosuchco"]),
            rfq_message(item, []),
            rfq_message(item, ["acme"]),
            rfq_message("organizations/acme/things/x", ["globex"]),
        ):
            request = pb.CreateRfqRequest(parent="organizations/acme", rfq=bad)
            assert (
                code_of(partial(acme.procurement.CreateRfq, request))
                == grpc.StatusCode.INVALID_ARGUMENT
            )
        someone_elses = pb.CreateRfqRequest(
            parent="organizations/globex", rfq=rfq_message(item, ["initech"])
        )
        assert (
            code_of(lambda: acme.procurement.CreateRfq(someone_elses)) == grpc.StatusCode.NOT_FOUND
        )
        assert (
            list(acme.procurement.ListRfqs(pb.ListRfqsRequest(parent="organizations/acme")).rfqs)
            == []
        )

    rfq = new_open_rfq(p)
    with p.client(p.stack.acme) as acme, p.client(p.stack.globex) as globex:
        bad_quote = pb.SubmitQuoteRequest(
            parent=rfq.name, quote=quote_message(-1.0, 1, 0, valid_until=None)
        )
        with pytest.raises(grpc.RpcError) as caught:
            globex.procurement.SubmitQuote(bad_quote)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "quote.valid_until" in (caught.value.details() or "")
        globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(5.0, 1, 80))
        )
        acme.procurement.CloseRfq(pb.CloseRfqRequest(name=rfq.name))
        for allocations in (
            [pb.Allocation(supplier="organizations/globex", quantity=50)],
            [pb.Allocation(supplier="organizations/globex", quantity=100)],
            [pb.Allocation(supplier="organizations/initech", quantity=100)],
        ):
            award = pb.AwardRfqRequest(name=rfq.name, allocations=allocations)
            assert (
                code_of(partial(acme.procurement.AwardRfq, award))
                == grpc.StatusCode.INVALID_ARGUMENT
            )
        assert acme.procurement.GetRfq(pb.GetRfqRequest(name=rfq.name)).state == (
            pb.Rfq.STATE_CLOSED
        )
    assert p.events("procurement.purchase_order.issued") == []


def test_the_platform_service_account_closes_at_the_deadline(procurement: Procurement) -> None:
    p = procurement
    rfq = new_open_rfq(p)
    token = accounts.ensure_service_account(p.stack.engine, None)
    assert token is not None
    with connect(token, p.stack.design.address, p.supply.address) as worker:
        closed = worker.procurement.CloseRfq(pb.CloseRfqRequest(name=rfq.name))
    assert closed.state == pb.Rfq.STATE_CLOSED


def add_capability(client: Cofab, organization: str, process: str) -> None:
    facility = client.supply.CreateFacility(
        supply_pb2.CreateFacilityRequest(
            parent=f"organizations/{organization}",
            facility=supply_pb2.Facility(
                display_name="Plant", region="eu-central", country_code="DE", latitude=48.1
            ),
        )
    )
    client.supply.CreateCapability(
        supply_pb2.CreateCapabilityRequest(
            parent=facility.name,
            capability=supply_pb2.Capability(
                process=process, materials=["aluminium"], monthly_capacity=5000
            ),
        )
    )


def test_suppliers_found_by_capability_are_invited(procurement: Procurement) -> None:
    p = procurement
    with (
        p.client(p.stack.acme) as acme,
        p.client(p.stack.globex) as globex,
        p.client(p.stack.initech) as initech,
        p.client(p.hooli) as hooli,
    ):
        add_capability(globex, "globex", "cnc-milling")
        add_capability(initech, "initech", "cnc-milling")
        add_capability(hooli, "hooli", "injection-moulding")
        add_capability(acme, "acme", "cnc-milling")  # the buyer's own plant is not invited
        item = create_item(acme, "acme", "bracket")
        rfq = acme.procurement.CreateRfq(
            pb.CreateRfqRequest(
                parent="organizations/acme",
                rfq=rfq_message(item, []),
                supplier_search=pb.SupplierSearch(process="cnc-milling", material="aluminium"),
            )
        )
        assert sorted(rfq.invited_suppliers) == ["organizations/globex", "organizations/initech"]
        nobody = pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(item, []),
            supplier_search=pb.SupplierSearch(process="sla-printing"),
        )
        assert code_of(lambda: acme.procurement.CreateRfq(nobody)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
