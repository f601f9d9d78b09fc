"""ProcurementWorkflow against the real supply service: quotes over gRPC and over the partners'
Kafka topic close the RFQ early and award it automatically; the deadline closes it with what it
has (time skipping); cancellation ends it; bad inbound records are dead-lettered with the
reason; recorded histories replay. The Kafka tests run the real relay, bridge and worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from clients.sdk import Cofab, connect
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.procurement.v1 import events_pb2
from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared import accounts
from services.shared.db import outbox
from services.shared.events import DEAD_LETTER_TOPIC, header, make_envelope
from services.shared.kafka import INBOUND_QUOTES_TOPIC, make_producer
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack, event_pipeline
from tests.integration.test_procurement_api import (
    code_of,
    create_item,
    in_days,
    quote_message,
    rfq_message,
    ts,
)
from workflows.bridge import EventBridge
from workflows.procurement import ProcurementStatus, ProcurementWorkflow, workflow_id
from workflows.worker import activities_for, build_worker

HISTORIES = Path(__file__).parent / "histories"
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
AUTOMATIC = pb.Rfq.AWARD_POLICY_AUTOMATIC
SUPPLIERS = ["globex", "initech", "umbrella"]


@pytest.fixture
def umbrella(stack: Stack) -> Account:
    return make_account(stack.engine, "umbrella", "uma", admin=True)


@pytest.fixture
def service(stack: Stack) -> Iterator[Cofab]:
    """The supply service as the worker and the bridge see it: with the service account's token."""
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with connect(token, stack.design.address, stack.supply.address) as cofab:
        yield cofab


def open_rfq(stack: Stack, policy: pb.Rfq.AwardPolicy.ValueType, **overrides: object) -> pb.Rfq:
    """ACME's open RFQ for 100 brackets to Globex, Initech and Umbrella."""
    with stack.client(stack.acme) as acme:
        item = create_item(acme, "acme", f"bracket-{uuid.uuid4().hex[:8]}")
        draft = acme.procurement.CreateRfq(
            pb.CreateRfqRequest(
                parent="organizations/acme",
                rfq=rfq_message(item, SUPPLIERS, award_policy=policy, **overrides),
            )
        )
        assert draft.award_policy == policy
        return acme.procurement.OpenRfq(pb.OpenRfqRequest(name=draft.name))


def submit(stack: Stack, account: Account, rfq: str, price: float, capacity: int) -> pb.Quote:
    with stack.client(account) as supplier:
        return supplier.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq, quote=quote_message(price, 10, capacity))
        )


def events_of(stack: Stack, event_type: str, rfq: str) -> list[EventEnvelope]:
    with stack.engine.connect() as conn:
        payloads = conn.scalars(
            select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
        ).all()
    found = [EventEnvelope.FromString(p) for p in payloads]
    return [e for e in found if e.subject.startswith(rfq)]


def buyers_view(envelopes: list[EventEnvelope]) -> list[EventEnvelope]:
    """The events addressed to the RFQ's buyer (each organization gets its own view)."""
    return [e for e in envelopes if list(e.audience) == [e.subject.split("/rfqs/")[0]]]


def inbound_quote(rfq: str, supplier: str, price: float, capacity: int, **fields: object) -> bytes:
    """A partner's record for the inbound topic, as its own systems would produce it."""
    payload = events_pb2.InboundQuote(
        rfq=rfq,
        supplier=f"organizations/{supplier}",
        unit_price=price,
        lead_time_days=10,
        capacity=capacity,
        valid_until=in_days(60),
        notes="from our ERP",
    )
    for name, value in fields.items():
        setattr(payload, name, value)
    return make_envelope(
        source=f"//partners/{supplier}",
        event_type="procurement.quote.inbound",
        subject=rfq,
        organization=f"organizations/{supplier}",
        data=payload,
    ).SerializeToString()


def record(history: WorkflowHistory, name: str) -> None:
    if os.environ.get("COFAB_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())


# The whole path: outbox -> relay -> Kafka -> bridge -> Temporal -> worker -> supply service.


@dataclass
class Live:
    client: Client
    kafka_bootstrap: str

    def produce_inbound(self, key: bytes, value: bytes, timeout: float = 60) -> None:
        """Produces as a partner would; a broker that just created the topic may not have
        elected its leader yet, so this retries like a partner's producer would."""
        deadline = time.monotonic() + timeout
        while True:
            producer = make_producer(self.kafka_bootstrap)
            try:
                producer.send(INBOUND_QUOTES_TOPIC, key=key, value=value).get(timeout=15)
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                producer.close(timeout=5)

    async def started(
        self, rfq: str, timeout: float = 60
    ) -> WorkflowHandle[ProcurementWorkflow, ProcurementStatus]:
        """The RFQ's workflow once the bridge started it."""
        handle = self.client.get_workflow_handle_for(ProcurementWorkflow.run, workflow_id(rfq))
        deadline = time.monotonic() + timeout
        while True:
            try:
                await handle.describe()
                return handle
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def live(
    stack: Stack, kafka_bootstrap: str, workflow_env: WorkflowEnvironment
) -> AsyncIterator[Live]:
    async with event_pipeline(stack, kafka_bootstrap, workflow_env.client):
        yield Live(workflow_env.client, kafka_bootstrap)


@on_sqlite
async def test_quotes_over_grpc_and_kafka_close_early_and_award_automatically(
    stack: Stack, umbrella: Account, live: Live
) -> None:
    rfq = open_rfq(stack, AUTOMATIC)  # deadline in 7 days: only the answers can close it now
    handle = await live.started(rfq.name)
    submit(stack, stack.globex, rfq.name, price=4.0, capacity=60)
    submit(stack, stack.initech, rfq.name, price=5.0, capacity=100)
    record_value = inbound_quote(rfq.name, "umbrella", price=3.0, capacity=50)
    live.produce_inbound(b"umbrella", record_value)
    # A redelivered record records nothing twice (the event id is the request id).
    live.produce_inbound(b"umbrella", record_value)

    status: ProcurementStatus = await asyncio.wait_for(handle.result(), timeout=90)
    assert (status.state, status.closed_early, status.invited) == ("AWARDED", True, 3)
    # Price counts most (2:1:1:0): Umbrella (3.00, 50 units) first, then Globex for the rest.
    assert sorted(status.awarded) == ["globex", "umbrella"]
    with stack.client(stack.acme) as acme:
        final = acme.procurement.GetRfq(pb.GetRfqRequest(name=rfq.name))
        quotes = acme.procurement.ListQuotes(pb.ListQuotesRequest(parent=rfq.name)).quotes
    assert final.state == pb.Rfq.STATE_AWARDED
    assert {(a.supplier, a.quantity) for a in final.allocations} == {
        ("organizations/umbrella", 50),
        ("organizations/globex", 50),
    }
    assert sorted(q.supplier for q in quotes) == [f"organizations/{s}" for s in SUPPLIERS]
    assert len(buyers_view(events_of(stack, "procurement.rfq.closed", rfq.name))) == 1
    assert len(events_of(stack, "procurement.rfq.awarded", rfq.name)) == 1
    orders = events_of(stack, "procurement.purchase_order.issued", rfq.name)
    assert sorted(e.audience[0] for e in orders) == [
        "organizations/globex",
        "organizations/umbrella",
    ]


def dead_letters(bootstrap: str, values: set[bytes], timeout: float = 60) -> dict[bytes, str]:
    """The dead-letter reason of each of `values` found on the dead-letter topic."""
    consumer = KafkaConsumer(
        DEAD_LETTER_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    found: dict[bytes, str] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and set(found) != values:
            for r in consumer:
                if r.value in values:
                    found[r.value] = header(r.headers, "dlq_reason") or ""
    finally:
        consumer.close()
    return found


@on_sqlite
async def test_bad_inbound_records_are_dead_lettered_with_the_reason(
    stack: Stack, umbrella: Account, live: Live
) -> None:
    rfq = open_rfq(stack, AUTOMATIC)
    unknown = inbound_quote("organizations/acme/rfqs/nosuchrfq", "umbrella", 3.0, 50)
    garbage = b"\x00not an envelope " + uuid.uuid4().bytes
    spoofed = inbound_quote(rfq.name, "globex", 1.0, 100)  # claims Globex, sent by Umbrella
    envelope = EventEnvelope.FromString(spoofed)
    envelope.organization = "organizations/umbrella"
    spoofed = envelope.SerializeToString()
    negative = inbound_quote(rfq.name, "umbrella", -2.0, 50)
    good = inbound_quote(rfq.name, "umbrella", 3.0, 50)
    for value in (unknown, garbage, spoofed, negative, good):
        live.produce_inbound(b"umbrella", value)

    # Off the event loop: the bridge dispatches its events on it.
    reasons = await asyncio.to_thread(
        dead_letters, live.kafka_bootstrap, {unknown, garbage, spoofed, negative}
    )
    assert "NOT_FOUND" in reasons[unknown]
    assert reasons[garbage].startswith("MalformedEvent")
    assert "came from 'organizations/umbrella'" in reasons[spoofed]
    assert "INVALID_ARGUMENT" in reasons[negative] and "unit_price" in reasons[negative]
    # Nothing blocked the partition: the good record behind them was recorded.
    handle = await live.started(rfq.name)
    for _ in range(300):
        if (await handle.query(ProcurementWorkflow.status)).answered == 1:
            break
        await asyncio.sleep(0.2)
    assert (await handle.query(ProcurementWorkflow.status)).answered == 1
    await handle.signal(ProcurementWorkflow.cancel)


# Without Kafka: outbox events handed to the bridge in order (Kafka's order per key).


@dataclass
class Outbox:
    env: WorkflowEnvironment
    bridge: EventBridge
    stack: Stack
    dispatched: int = 0

    async def dispatch(self) -> None:
        with self.stack.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.seq, outbox.c.payload)
                .where(outbox.c.seq > self.dispatched)
                .order_by(outbox.c.seq)
            ).all()
        for row in rows:
            self.dispatched = row.seq
            await self.bridge.dispatch(EventEnvelope.FromString(row.payload))

    def handle(self, rfq: str) -> WorkflowHandle[ProcurementWorkflow, ProcurementStatus]:
        return self.env.client.get_workflow_handle_for(ProcurementWorkflow.run, workflow_id(rfq))

    async def settled(
        self, rfq: str, done: Callable[[ProcurementStatus], bool], timeout: float = 30
    ) -> ProcurementStatus:
        """The workflow's status once `done` holds (signals and activities take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.handle(rfq).query(ProcurementWorkflow.status)
            if done(status) or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)


async def outbox_pipeline(
    env: WorkflowEnvironment, service: Cofab, stack: Stack
) -> AsyncIterator[Outbox]:
    task_queue = f"test-{uuid.uuid4().hex}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(env.client, task_queue, activities_for(service), executor):
            yield Outbox(env, EventBridge(env.client, task_queue, service.procurement), stack)


@pytest_asyncio.fixture
async def local(
    workflow_env: WorkflowEnvironment, service: Cofab, stack: Stack
) -> AsyncIterator[Outbox]:
    async for pipeline in outbox_pipeline(workflow_env, service, stack):
        yield pipeline


@pytest_asyncio.fixture
async def skipping(
    time_skipping_env: WorkflowEnvironment, service: Cofab, stack: Stack
) -> AsyncIterator[Outbox]:
    async for pipeline in outbox_pipeline(time_skipping_env, service, stack):
        yield pipeline


@on_sqlite
async def test_the_deadline_closes_with_the_quotes_it_has_then_the_buyer_awards(
    stack: Stack, umbrella: Account, skipping: Outbox
) -> None:
    # The workflow times the deadline on the test server's clock, which earlier time-skipping
    # tests of the session have moved ahead of the real one: date the RFQ on that clock.
    now = await skipping.env.get_current_time()
    rfq = open_rfq(
        stack,
        pb.Rfq.AWARD_POLICY_BUYER,
        quote_deadline=ts(now + dt.timedelta(days=2)),
        due_time=ts(now + dt.timedelta(days=30)),
    )
    await skipping.dispatch()  # rfq.published starts the workflow
    submit(stack, stack.globex, rfq.name, price=4.0, capacity=100)
    await skipping.dispatch()
    handle = skipping.handle(rfq.name)
    status = await skipping.settled(rfq.name, lambda s: s.award_policy != "")
    assert (status.state, status.answered, status.award_policy) == ("COLLECTING", 1, "BUYER")
    # Two of three never answer: time skipping runs the two days to the deadline.
    await skipping.env.sleep(dt.timedelta(days=2, hours=1))
    status = await skipping.settled(rfq.name, lambda s: s.state == "AWAITING_AWARD")
    assert (status.state, status.closed_early) == ("AWAITING_AWARD", False)
    with stack.client(stack.acme) as acme:
        closed = acme.procurement.GetRfq(pb.GetRfqRequest(name=rfq.name))
        assert (closed.state, closed.quote_count) == (pb.Rfq.STATE_CLOSED, 1)
        # The buyer awards (BUYER policy); the workflow learns it from the event.
        acme.procurement.AwardRfq(
            pb.AwardRfqRequest(
                name=rfq.name,
                allocations=[pb.Allocation(supplier="organizations/globex", quantity=100)],
            )
        )
    await skipping.dispatch()
    result = await handle.result()
    assert (result.state, result.awarded) == ("AWARDED", ["globex"])
    assert len(buyers_view(events_of(stack, "procurement.rfq.closed", rfq.name))) == 1
    record(await handle.fetch_history(), "procurement_deadline")


@on_sqlite
async def test_cancelling_ends_the_workflow_without_closing_or_awarding(
    stack: Stack, umbrella: Account, local: Outbox
) -> None:
    rfq = open_rfq(stack, AUTOMATIC)
    await local.dispatch()
    submit(stack, stack.globex, rfq.name, price=4.0, capacity=100)
    await local.dispatch()
    with stack.client(stack.acme) as acme:
        acme.procurement.CancelRfq(pb.CancelRfqRequest(name=rfq.name, reason="design changed"))
    await local.dispatch()  # one cancelled event per supplier: the first ends the workflow
    result = await local.handle(rfq.name).result()
    assert result.state == "CANCELLED" and result.awarded == []
    assert events_of(stack, "procurement.rfq.closed", rfq.name) == []
    assert events_of(stack, "procurement.purchase_order.issued", rfq.name) == []
    record(await local.handle(rfq.name).fetch_history(), "procurement_cancelled")


@on_sqlite
async def test_all_answered_closes_early_and_awards_once(
    stack: Stack, umbrella: Account, local: Outbox
) -> None:
    rfq = open_rfq(stack, AUTOMATIC)
    await local.dispatch()
    for account, price in ((stack.globex, 4.0), (stack.initech, 5.0), (umbrella, 3.0)):
        submit(stack, account, rfq.name, price=price, capacity=100)
    await local.dispatch()
    result = await local.handle(rfq.name).result()
    assert (result.state, result.closed_early, result.awarded) == ("AWARDED", True, ["umbrella"])
    assert len(events_of(stack, "procurement.purchase_order.issued", rfq.name)) == 1
    record(await local.handle(rfq.name).fetch_history(), "procurement_automatic")


@on_sqlite
async def test_with_policy_buyer_all_answered_closes_early_and_leaves_the_award_to_the_buyer(
    stack: Stack, umbrella: Account, local: Outbox
) -> None:
    # The contract (CloseRfq, Rfq.AwardPolicy): every policy closes once all invited suppliers
    # quoted; BUYER only means the workflow awards nothing.
    rfq = open_rfq(stack, pb.Rfq.AWARD_POLICY_BUYER)
    await local.dispatch()
    for account, price in ((stack.globex, 4.0), (stack.initech, 5.0), (umbrella, 3.0)):
        submit(stack, account, rfq.name, price=price, capacity=100)
    await local.dispatch()
    status = await local.settled(rfq.name, lambda s: s.state == "AWAITING_AWARD")
    assert status.closed_early
    with stack.client(stack.acme) as acme:
        closed = acme.procurement.GetRfq(pb.GetRfqRequest(name=rfq.name))
    assert (closed.state, list(closed.allocations)) == (pb.Rfq.STATE_CLOSED, [])
    assert closed.close_time.ToDatetime() < closed.quote_deadline.ToDatetime()
    assert events_of(stack, "procurement.purchase_order.issued", rfq.name) == []
    await local.handle(rfq.name).cancel()


@on_sqlite
async def test_the_buyer_approves_the_proposed_award(
    stack: Stack, umbrella: Account, service: Cofab, local: Outbox
) -> None:
    rfq = open_rfq(stack, pb.Rfq.AWARD_POLICY_AUTOMATIC_AFTER_APPROVAL)
    await local.dispatch()
    for account, price in ((stack.globex, 4.0), (stack.initech, 5.0), (umbrella, 3.0)):
        submit(stack, account, rfq.name, price=price, capacity=100)
    await local.dispatch()
    status = await local.settled(rfq.name, lambda s: s.state == "AWAITING_APPROVAL")
    assert (status.state, status.closed_early) == ("AWAITING_APPROVAL", True)
    with stack.client(stack.acme) as acme:
        proposed = acme.procurement.GetRfq(pb.GetRfqRequest(name=rfq.name))
    assert proposed.state == pb.Rfq.STATE_CLOSED
    assert [(a.supplier, a.quantity) for a in proposed.proposed_allocations] == [
        ("organizations/umbrella", 100)
    ]
    assert len(events_of(stack, "procurement.award.proposed", rfq.name)) == 1
    assert events_of(stack, "procurement.purchase_order.issued", rfq.name) == []
    # The platform proposes; only the buyer's approval awards.
    award = pb.AwardRfqRequest(
        name=rfq.name, allocations=[pb.Allocation(supplier="organizations/umbrella", quantity=100)]
    )
    assert code_of(lambda: service.procurement.AwardRfq(award)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    approve = pb.ApproveAwardRequest(name=rfq.name, etag=proposed.etag)
    with stack.client(umbrella) as uma:
        assert code_of(lambda: uma.procurement.ApproveAward(approve)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    with stack.client(stack.acme) as acme:
        awarded = acme.procurement.ApproveAward(approve)
    assert awarded.state == pb.Rfq.STATE_AWARDED and not awarded.proposed_allocations
    await local.dispatch()
    result = await local.handle(rfq.name).result()
    assert (result.state, result.awarded) == ("AWARDED", ["umbrella"])
    assert len(events_of(stack, "procurement.purchase_order.issued", rfq.name)) == 1
    record(await local.handle(rfq.name).fetch_history(), "procurement_approved")


# The service's side of the workflow's and the bridge's calls.


@on_sqlite
def test_only_the_platform_records_inbound_quotes_and_awards_only_automatic_rfqs(
    stack: Stack, umbrella: Account, service: Cofab
) -> None:
    buyer_awards = open_rfq(stack, pb.Rfq.AWARD_POLICY_BUYER)
    inbound = pb.RecordInboundQuoteRequest(
        parent=buyer_awards.name,
        supplier="organizations/umbrella",
        quote=quote_message(3.0, 10, 100),
        request_id=str(uuid.uuid4()),
    )
    # A supplier cannot pass itself off as another one through this RPC.
    with stack.client(umbrella) as uma:
        assert code_of(lambda: uma.procurement.RecordInboundQuote(inbound)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    first = service.procurement.RecordInboundQuote(inbound)
    again = service.procurement.RecordInboundQuote(inbound)  # same request id: same quote
    assert first.name == again.name and first.supplier == "organizations/umbrella"
    stranger = pb.RecordInboundQuoteRequest()
    stranger.CopyFrom(inbound)
    stranger.supplier = "organizations/acme"
    stranger.request_id = str(uuid.uuid4())
    assert code_of(lambda: service.procurement.RecordInboundQuote(stranger)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    service.procurement.CloseRfq(pb.CloseRfqRequest(name=buyer_awards.name))
    # The buyer chose to award itself: the platform may neither rank nor award for it.
    evaluate = pb.EvaluateRfqRequest(name=buyer_awards.name)
    assert code_of(lambda: service.procurement.EvaluateRfq(evaluate)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    award = pb.AwardRfqRequest(
        name=buyer_awards.name,
        allocations=[pb.Allocation(supplier="organizations/umbrella", quantity=100)],
    )
    assert code_of(lambda: service.procurement.AwardRfq(award)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    late = pb.RecordInboundQuoteRequest(
        parent=buyer_awards.name,
        supplier="organizations/globex",
        quote=quote_message(3.0, 10, 100),
        request_id=str(uuid.uuid4()),
    )
    assert code_of(lambda: service.procurement.RecordInboundQuote(late)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


RECORDED = [
    "procurement_deadline",
    "procurement_cancelled",
    "procurement_automatic",
    "procurement_approved",
]


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_histories_replay(name: str) -> None:
    """Histories of released workflow code: today's code must replay them deterministically."""
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text())
    await Replayer(workflows=[ProcurementWorkflow]).replay_workflow(history)
