"""The whole event path on real services: an authenticated gRPC call changes something, its
outbox event reaches Kafka through the relay, the bridge starts or signals a Temporal workflow,
the worker's activity calls the design service back, and the workflow's result is observed."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kafka import KafkaConsumer
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cofab.identity.v1 import identity_pb2 as ipb
from services.shared.db import outbox
from services.shared.events import decode_envelope, header
from services.shared.kafka import make_producer
from tests.integration.conftest import EventPipeline, Stack, event_pipeline
from tests.integration.test_design_api import create_project, invite
from workflows.bridge import EventBridge
from workflows.invitation import InvitationOutcome, workflow_id


@pytest_asyncio.fixture
async def pipeline(
    stack: Stack, kafka_bootstrap: str, workflow_env: WorkflowEnvironment
) -> AsyncIterator[EventPipeline]:
    async with event_pipeline(stack, kafka_bootstrap, workflow_env.client) as running:
        yield running


async def outcome_of(client: Client, invitation_id: str, timeout: float = 60) -> InvitationOutcome:
    """Waits for the bridge to start the invitation's workflow, then for its result."""
    handle = client.get_workflow_handle(workflow_id(invitation_id), result_type=InvitationOutcome)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
        except RPCError:
            pass  # not started yet: its event is still on its way
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"workflow for invitation {invitation_id} did not finish")
        await asyncio.sleep(0.2)
    outcome: InvitationOutcome = await handle.result()
    return outcome


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_accepted_invitation_flows_through_kafka_and_temporal(
    stack: Stack, pipeline: EventPipeline
) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex")
        handle = pipeline.client.get_workflow_handle(workflow_id(membership.invitation_id))
        # Accept only once the workflow runs, so the answer travels as a signal.
        for _ in range(300):
            try:
                await handle.describe()
                break
            except RPCError:
                await asyncio.sleep(0.1)
        globex.projects.AcceptMembership(ipb.AcceptMembershipRequest(name=membership.name))
    outcome = await outcome_of(pipeline.client, membership.invitation_id)
    assert outcome.state == "ACTIVE"
    assert outcome.membership == membership.name


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unanswered_invitation_is_expired_by_the_worker(
    stack: Stack, pipeline: EventPipeline
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex", ttl=2)
        outcome = await outcome_of(pipeline.client, membership.invitation_id)
        assert outcome.state == "EXPIRED"
        listed = acme.projects.ListMemberships(ipb.ListMembershipsRequest(parent=project.name))
    states = {m.organization: m.state for m in listed.memberships}
    assert states["organizations/globex"] == ipb.Membership.STATE_EXPIRED
    assert dt.datetime.now(dt.UTC) >= membership.invite_expire_time.ToDatetime(dt.UTC)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_malformed_events_are_dead_lettered_and_block_nothing(
    stack: Stack, pipeline: EventPipeline, kafka_bootstrap: str
) -> None:
    producer = make_producer(kafka_bootstrap)
    marker = uuid.uuid4().hex.encode()
    for partition in range(3):  # every partition gets poisoned before the real event
        producer.send(
            "cofab.identity", key=marker, value=b"\x08\x96\x01 not an envelope", partition=partition
        ).get(timeout=15)
    producer.close()
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex", ttl=1)
    outcome = await outcome_of(pipeline.client, membership.invitation_id)
    assert outcome.state == "EXPIRED"
    dead = KafkaConsumer(
        "cofab.deadletter",
        bootstrap_servers=kafka_bootstrap,
        group_id=uuid.uuid4().hex,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    reasons = [header(r.headers, "dlq_reason") for r in dead if r.key == marker]
    dead.close()
    assert len(reasons) == 3
    assert all(reason and reason.startswith("MalformedEvent") for reason in reasons)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_redelivered_invitation_event_starts_nothing_new(
    stack: Stack, pipeline: EventPipeline
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex", ttl=1)
    outcome = await outcome_of(pipeline.client, membership.invitation_id)
    assert outcome.state == "EXPIRED"
    handle = pipeline.client.get_workflow_handle(workflow_id(membership.invitation_id))
    first_run = (await handle.describe()).run_id
    with stack.engine.connect() as conn:
        payload = conn.execute(
            select(outbox.c.payload).where(outbox.c.event_type == "identity.membership.invited")
        ).scalar_one()
    # Kafka redelivers (e.g. the bridge died before committing its offset): same event again,
    # straight to the bridge, past the processed-events check.
    bridge = EventBridge(pipeline.client, pipeline.task_queue)
    await bridge.dispatch(decode_envelope(payload))
    description = await handle.describe()
    assert description.run_id == first_run
    assert description.status == WorkflowExecutionStatus.COMPLETED
