"""DisruptionWorkflow on the real path: a supplier reports an outage over gRPC, the outbox relay
puts the event on Kafka, the bridge starts the workflow, the worker's activities call the supply
service as the platform's service account. Each affected customer is told once, single-sourced
items get re-sourcing RFQs with child procurement workflows, a summary goes out once; a
redelivered report changes nothing; a malformed report ends in the dead-letter topic; recorded
histories replay."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from kafka import KafkaConsumer
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from clients.sdk import Cofab, connect
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.procurement.v1 import procurement_pb2
from cofab.supply.v1 import events_pb2, supply_pb2
from services.shared import accounts
from services.shared.db import outbox
from services.shared.events import decode_envelope, header, make_envelope, unpack
from services.shared.kafka import make_producer
from tests.conftest import Account, make_account
from tests.integration.conftest import EventPipeline, Stack, event_pipeline
from tests.integration.test_supply_network_api import (
    build_chain,
    code_of,
    make_edge,
    make_facility,
    make_item,
)
from workflows.bridge import EventBridge
from workflows.disruption import DisruptionStatus, DisruptionWorkflow, workflow_id
from workflows.procurement import workflow_id as procurement_workflow_id
from workflows.worker import activities_for, build_worker

HISTORIES = Path(__file__).parent / "histories"
# The workflow's logic is under test here; SQLite suffices (the API suites cover PostgreSQL).
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Network:
    """Umbrella's plant is the only source of its bracket, bought by ACME (300 a month) and
    Globex (100 a month); the bolt ACME buys also from Initech. Initech, Globex and Umbrella's
    own plant can mill steel; only Umbrella's must never be asked to re-source. The bolt is
    ACME's own item; the bracket is Umbrella's."""

    umbrella: Account
    plant: str
    bracket: str
    bolt: str


@pytest.fixture
def network(stack: Stack) -> Network:
    umbrella = make_account(stack.engine, "umbrella", "uma", admin=True)
    with (
        stack.client(umbrella) as umb,
        stack.client(stack.initech) as initech,
        stack.client(stack.globex) as globex,
    ):
        plant = make_facility(umb, "umbrella", region="asia-east")
        initech_plant = make_facility(initech, "initech")
        globex_plant = make_facility(globex, "globex")
        for client, facility in ((umb, plant), (initech, initech_plant), (globex, globex_plant)):
            client.supply.CreateCapability(
                supply_pb2.CreateCapabilityRequest(
                    parent=facility,
                    capability=supply_pb2.Capability(
                        process="cnc-milling", materials=["steel"], monthly_capacity=5000
                    ),
                )
            )
        bracket = make_item(
            umb,
            "umbrella",
            "bracket",
            process="cnc-milling",
            material="steel",
            weekly_demand=100,
            inventory_weeks=1,
        )
        with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
            bolt = make_item(acme, "acme", "bolt", process="cnc-milling", material="steel")
            make_edge(
                umb, "umbrella", "bracket-acme", plant, bracket, "acme", acme, monthly_volume=300
            )
            make_edge(
                umb, "umbrella", "bracket-globex", plant, bracket, "globex", globex,
                monthly_volume=100,
            )  # fmt: skip
            make_edge(umb, "umbrella", "bolt-acme", plant, bolt, "acme", acme, monthly_volume=50)
            make_edge(
                initech, "initech", "bolt-acme-2", initech_plant, bolt, "acme", acme,
                monthly_volume=50,
            )  # fmt: skip
    return Network(umbrella, plant, bracket, bolt)


@pytest_asyncio.fixture
async def pipeline(
    stack: Stack, kafka_bootstrap: str, workflow_env: WorkflowEnvironment
) -> AsyncIterator[EventPipeline]:
    async with event_pipeline(stack, kafka_bootstrap, workflow_env.client) as running:
        yield running


def report_outage(umb: Cofab, plant: str, days: float = 45) -> supply_pb2.Disruption:
    return umb.supply.ReportDisruption(
        supply_pb2.ReportDisruptionRequest(
            parent="organizations/umbrella",
            disruption=supply_pb2.Disruption(
                facility=plant,
                kind=supply_pb2.Disruption.KIND_OUTAGE,
                expected_duration_days=days,
                description="fire in the milling hall",
            ),
            request_id=uuid.uuid4().hex,
        )
    )


def events_of(stack: Stack, event_type: str) -> list[EventEnvelope]:
    with stack.engine.connect() as conn:
        payloads = conn.scalars(
            select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
        ).all()
    return [decode_envelope(p) for p in payloads]


async def finished(
    client: Client, disruption: str, timeout: float = 90
) -> tuple[WorkflowHandle[DisruptionWorkflow, DisruptionStatus], DisruptionStatus]:
    """Waits for the bridge to start the disruption's workflow, then for its result."""
    handle = client.get_workflow_handle_for(DisruptionWorkflow.run, workflow_id(disruption))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await handle.describe()
            break
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no workflow for {disruption}") from None
            await asyncio.sleep(0.2)  # its event is still on its way
    return handle, await asyncio.wait_for(handle.result(), timeout)


def reporters_view(stack: Stack, event_type: str, reporter: Account) -> EventEnvelope:
    """The one event of `event_type` addressed to the disruption's reporter."""
    (found,) = [
        e
        for e in events_of(stack, event_type)
        if list(e.audience) == [f"organizations/{reporter.organization}"]
    ]
    return found


def record(history: WorkflowHistory, name: str) -> None:
    if os.environ.get("COFAB_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())


@on_sqlite
async def test_outage_notifies_each_customer_once_and_resources_single_sourced_items(
    stack: Stack, network: Network, pipeline: EventPipeline
) -> None:
    with stack.client(network.umbrella) as umb:
        disruption = report_outage(umb, network.plant)
    handle, status = await finished(pipeline.client, disruption.name)

    assert status.stage == "HANDLED"
    assert sorted(status.notified) == ["acme", "globex"]
    assert status.unsourced == [] and not status.resolved
    # One notification per affected organization, for it alone, showing it its own view.
    impacts = events_of(stack, "supply.impact.computed")
    assert sorted(list(e.audience) for e in impacts) == [
        ["organizations/acme"],
        ["organizations/globex"],
    ]
    by_customer = {}
    for envelope in impacts:
        impact = unpack(envelope, events_pb2.ImpactComputed)
        assert isinstance(impact, events_pb2.ImpactComputed)
        by_customer[impact.customer] = impact
    to_acme = by_customer["organizations/acme"]
    assert to_acme.disruption == disruption.name
    # ACME sees the bracket it buys and its own bolt, and the plant it buys from.
    assert {i.item for i in to_acme.items} == {network.bracket, network.bolt}
    assert to_acme.facility == network.plant
    assert {i.item for i in by_customer["organizations/globex"].items} == {network.bracket}

    # One RFQ per (customer, single-sourced item); the bolt has a second source: none for it.
    assert len(status.rfqs) == 2
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(network.umbrella) as umb,
    ):
        rfqs = {
            rfq.buyer: rfq
            for client, own in ((acme, "acme"), (globex, "globex"))
            for rfq in client.procurement.ListRfqs(
                procurement_pb2.ListRfqsRequest(parent=f"organizations/{own}")
            ).rfqs
        }
        assert sorted(r.name for r in rfqs.values()) == sorted(status.rfqs)
        to_acme_rfq, to_globex_rfq = rfqs["organizations/acme"], rfqs["organizations/globex"]
        assert (to_acme_rfq.item, to_acme_rfq.quantity) == (network.bracket, 450)  # 300 x 1.5
        assert (to_globex_rfq.item, to_globex_rfq.quantity) == (network.bracket, 150)
        # The capable alternatives are invited; never the disrupted supplier, nor the buyer.
        assert sorted(to_acme_rfq.invited_suppliers) == [
            "organizations/globex",
            "organizations/initech",
        ]
        assert list(to_globex_rfq.invited_suppliers) == ["organizations/initech"]
        assert all(r.state != procurement_pb2.Rfq.STATE_DRAFT for r in rfqs.values())
        # Umbrella was not asked: the RFQs are invisible to it.
        assert (
            list(
                umb.procurement.ListRfqs(
                    procurement_pb2.ListRfqsRequest(parent="organizations/-")
                ).rfqs
            )
            == []
        )

    # Each RFQ has one procurement workflow. The disruption workflow starts it as a child; the
    # bridge may have started it first from the RFQ's own event, then the child start is a no-op.
    history = await handle.fetch_history()
    initiated = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert sorted(initiated) == sorted(procurement_workflow_id(r) for r in status.rfqs)
    for rfq in status.rfqs:
        child = pipeline.client.get_workflow_handle(procurement_workflow_id(rfq))
        described = await child.describe()
        assert described.parent_id in (workflow_id(disruption.name), None)

    # One summary per organization, each its own view (issue 12): a customer sees its own
    # RFQ and itself among the notified, not the other customer.
    handled = {e.audience[0]: e for e in events_of(stack, "supply.disruption.handled")}
    assert sorted(handled) == [
        "organizations/acme",
        "organizations/globex",
        "organizations/umbrella",
    ]
    assert all(len(e.audience) == 1 for e in handled.values())
    views = {}
    for org, envelope in handled.items():
        view = unpack(envelope, events_pb2.DisruptionHandled)
        assert isinstance(view, events_pb2.DisruptionHandled)
        assert view.summary.disruption == disruption.name
        assert view.summary.units_at_risk == view.summary.revenue_at_risk == 0
        assert view.summary.items_hit >= 2
        views[org] = view.summary
    for org in ("organizations/acme", "organizations/globex"):
        assert list(views[org].notified_organizations) == [org]
        assert [r for r in views[org].rfqs] == [r for r in status.rfqs if r.startswith(org + "/")]
        assert len(views[org].rfqs) == 1
    # The reporter sees its direct customers notified, not their RFQs.
    assert sorted(views["organizations/umbrella"].notified_organizations) == [
        "organizations/acme",
        "organizations/globex",
    ]
    assert list(views["organizations/umbrella"].rfqs) == []

    # Kafka redelivers the report (past the bridge's processed-events check): nothing new.
    first_run = (await handle.describe()).run_id
    reported = reporters_view(stack, "supply.disruption.reported", network.umbrella)
    await pipeline.bridge.dispatch(reported)
    assert (await handle.describe()).run_id == first_run
    assert len(events_of(stack, "supply.impact.computed")) == 2
    assert len(events_of(stack, "procurement.rfq.created")) == 2
    assert len(events_of(stack, "supply.disruption.handled")) == 3
    record(history, "disruption_handled")


@on_sqlite
async def test_only_the_platform_may_record_disruption_progress(
    stack: Stack, network: Network
) -> None:
    with stack.client(network.umbrella) as umb:
        disruption = report_outage(umb, network.plant)
        for call in (
            lambda: umb.supply.RecordDisruptionProgress(
                supply_pb2.RecordDisruptionProgressRequest(
                    name=disruption.name,
                    kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                    customer="organizations/acme",
                    request_id="r1",
                )
            ),
            lambda: umb.supply.PlanDisruptionResourcing(
                supply_pb2.PlanDisruptionResourcingRequest(name=disruption.name)
            ),
            lambda: umb.supply.ComputeDisruptionImpact(
                supply_pb2.ComputeDisruptionImpactRequest(
                    parent="organizations/-", facilities=[network.plant], duration_days=1
                )
            ),
        ):
            assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with connect(token, stack.design.address, stack.supply.address) as service:
        # Only organizations the disruption hits are told; a request id is required.
        assert (
            code_of(
                lambda: service.supply.RecordDisruptionProgress(
                    supply_pb2.RecordDisruptionProgressRequest(
                        name=disruption.name,
                        kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                        customer="organizations/initech",
                        request_id="r2",
                    )
                )
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        assert (
            code_of(
                lambda: service.supply.RecordDisruptionProgress(
                    supply_pb2.RecordDisruptionProgressRequest(
                        name=disruption.name,
                        kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                        customer="organizations/acme",
                    )
                )
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        for _ in range(2):  # a retried report emits nothing twice
            service.supply.RecordDisruptionProgress(
                supply_pb2.RecordDisruptionProgressRequest(
                    name=disruption.name,
                    kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                    customer="organizations/globex",
                    request_id="notify-globex",
                )
            )
    impacts = events_of(stack, "supply.impact.computed")
    assert [list(e.audience) for e in impacts] == [["organizations/globex"]]
    to_globex = unpack(impacts[0], events_pb2.ImpactComputed)
    assert isinstance(to_globex, events_pb2.ImpactComputed)
    # Globex buys from the plant directly: the plant is named to it.
    assert to_globex.facility == network.plant


@on_sqlite
async def test_resolved_before_sourcing_opens_no_rfq(
    stack: Stack, network: Network, workflow_env: WorkflowEnvironment
) -> None:
    task_queue = f"test-{uuid.uuid4().hex}"
    bridge = EventBridge(workflow_env.client, task_queue)
    with stack.client(network.umbrella) as umb:
        disruption = report_outage(umb, network.plant)
        for reported in events_of(stack, "supply.disruption.reported"):
            # No worker yet: the workflow waits for its first task. The customers' views of
            # the report start nothing.
            await bridge.dispatch(reported)
        umb.supply.ResolveDisruption(supply_pb2.ResolveDisruptionRequest(name=disruption.name))
    for resolved in events_of(stack, "supply.disruption.resolved"):
        await bridge.dispatch(resolved)  # the bridge signals the running workflow
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with (
        connect(token, stack.design.address, stack.supply.address) as service,
        concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor,
    ):
        async with build_worker(workflow_env.client, task_queue, activities_for(service), executor):
            handle = workflow_env.client.get_workflow_handle_for(
                DisruptionWorkflow.run, workflow_id(disruption.name)
            )
            status = await asyncio.wait_for(handle.result(), 60)
            record(await handle.fetch_history(), "disruption_resolved_early")
    # The customers are still told; the items stay unsourced; the summary says why.
    assert status.resolved and status.rfqs == []
    assert sorted(status.notified) == ["acme", "globex"]
    assert status.unsourced == [network.bracket, network.bracket]
    assert events_of(stack, "procurement.rfq.created") == []
    handled = reporters_view(stack, "supply.disruption.handled", network.umbrella)
    summary = unpack(handled, events_pb2.DisruptionHandled)
    assert isinstance(summary, events_pb2.DisruptionHandled)
    assert summary.summary.resolved_early
    assert list(summary.summary.unsourced_items) == [network.bracket, network.bracket]
    # ACME buys the bracket: it sees that item unsourced, once, not Globex's need for it.
    to_acme = [
        e for e in events_of(stack, "supply.disruption.handled")
        if list(e.audience) == ["organizations/acme"]
    ]  # fmt: skip
    acme_view = unpack(to_acme[0], events_pb2.DisruptionHandled)
    assert isinstance(acme_view, events_pb2.DisruptionHandled)
    assert list(acme_view.summary.unsourced_items) == [network.bracket]


def test_each_notification_shows_the_customer_only_what_it_may_see(stack: Stack) -> None:
    """On both databases: the per-customer views, as the workflow has the service send them."""
    chain = build_chain(stack)
    with stack.client(chain.umbrella) as umb:
        disruption = report_outage(umb, chain.umbrella_plant, days=42)
    # Reporting tells nobody by itself: the workflow does, once per organization.
    assert events_of(stack, "supply.impact.computed") == []
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with connect(token, stack.design.address, stack.supply.address) as service:
        impact = service.supply.ComputeDisruptionImpact(
            supply_pb2.ComputeDisruptionImpactRequest(
                parent="organizations/-", facilities=[chain.umbrella_plant], duration_days=42
            )
        )
        # The whole network: every hit item named, every customer hit (Umbrella itself aside).
        assert {i.item for i in impact.items} == {chain.steel, chain.bracket, chain.car}
        assert list(impact.affected_customers) == ["organizations/acme", "organizations/globex"]
        for customer in impact.affected_customers:
            service.supply.RecordDisruptionProgress(
                supply_pb2.RecordDisruptionProgressRequest(
                    name=disruption.name,
                    kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                    customer=customer,
                    request_id=f"notify-{customer.rsplit('/', 1)[-1]}",
                )
            )
    impacts = {e.audience[0]: e for e in events_of(stack, "supply.impact.computed")}
    assert set(impacts) == {"organizations/globex", "organizations/acme"}
    to_globex = unpack(impacts["organizations/globex"], events_pb2.ImpactComputed)
    to_acme = unpack(impacts["organizations/acme"], events_pb2.ImpactComputed)
    assert isinstance(to_globex, events_pb2.ImpactComputed)
    assert isinstance(to_acme, events_pb2.ImpactComputed)
    # Globex buys from the plant: it is named to Globex. ACME is two tiers away: it learns
    # the region and its own items, not Umbrella's plant.
    assert to_globex.facility == chain.umbrella_plant
    assert {i.item for i in to_globex.items} == {chain.steel, chain.bracket}
    assert to_acme.facility == ""
    assert to_acme.region == "asia-east"
    assert {i.item for i in to_acme.items} == {chain.car, chain.bracket}
    assert to_acme.revenue_at_risk > 0
    assert chain.umbrella_plant not in str(to_acme)


@on_sqlite
async def test_malformed_disruption_reports_are_dead_lettered(
    stack: Stack, pipeline: EventPipeline, kafka_bootstrap: str
) -> None:
    marker = uuid.uuid4().hex.encode()
    without_facility = make_envelope(
        source="//partner",
        event_type="supply.disruption.reported",
        subject="organizations/umbrella/disruptions/x",
        organization="organizations/umbrella",
        data=events_pb2.DisruptionReported(
            disruption=supply_pb2.Disruption(name="organizations/umbrella/disruptions/x")
        ),
    )
    wrong_payload = make_envelope(
        source="//partner",
        event_type="supply.disruption.reported",
        subject="organizations/umbrella/disruptions/y",
        organization="organizations/umbrella",
        data=events_pb2.DisruptionResolved(),
    )
    producer = make_producer(kafka_bootstrap)
    for envelope in (without_facility, wrong_payload):
        producer.send("cofab.supply", key=marker, value=envelope.SerializeToString()).get(
            timeout=15
        )
    producer.close()
    dead = KafkaConsumer(
        "cofab.deadletter",
        bootstrap_servers=kafka_bootstrap,
        group_id=uuid.uuid4().hex,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    reasons: list[str | None] = []
    deadline = asyncio.get_running_loop().time() + 60
    while len(reasons) < 2 and asyncio.get_running_loop().time() < deadline:
        batch = await asyncio.to_thread(dead.poll, 1000)
        reasons += [
            header(r.headers, "dlq_reason") for rs in batch.values() for r in rs if r.key == marker
        ]
    dead.close()
    assert reasons[0] is not None and reasons[0].startswith("PermanentEventError")
    assert "lacks name, facility or expected duration" in reasons[0]
    assert reasons[1] is not None and reasons[1].startswith("MalformedEvent")
    assert "expected cofab.supply.v1.DisruptionReported" in reasons[1]
    # Nothing was started for either.
    for name in ("x", "y"):
        with pytest.raises(RPCError):
            await pipeline.client.get_workflow_handle(
                workflow_id(f"organizations/umbrella/disruptions/{name}")
            ).describe()


RECORDED = ["disruption_handled", "disruption_resolved_early"]


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_histories_replay(name: str) -> None:
    """Histories of released workflow code: today's code must replay them deterministically."""
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text())
    await Replayer(workflows=[DisruptionWorkflow]).replay_workflow(history)
