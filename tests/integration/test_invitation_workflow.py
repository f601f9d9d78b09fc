"""ProjectInvitationWorkflow against a real design service: expiry after days (time skipping),
an answer before expiry, and replay of a recorded history."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from clients.sdk import Cofab, connect
from cofab.identity.v1 import identity_pb2 as ipb
from services.shared import accounts
from services.shared.db import outbox
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_project, invite
from workflows.invitation import (
    InvitationInput,
    ProjectInvitationWorkflow,
    workflow_id,
)
from workflows.worker import activities_for, build_worker

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
def service(stack: Stack) -> Iterator[Cofab]:
    """The design service as the workflow worker sees it: with the service account's token."""
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with connect(token, stack.design.address, stack.supply.address) as cofab:
        yield cofab


def invitation_input(membership: ipb.Membership) -> InvitationInput:
    return InvitationInput(
        membership=membership.name,
        invitation_id=membership.invitation_id,
        expire_unix=membership.invite_expire_time.ToNanoseconds() / 1e9,
    )


async def run_invitation(
    client: Client, service: Cofab, membership: ipb.Membership, answer: str | None = None
) -> tuple[str, WorkflowHistory]:
    task_queue = f"test-{uuid.uuid4().hex}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, task_queue, activities_for(service), executor):
            handle = await client.start_workflow(
                ProjectInvitationWorkflow.run,
                invitation_input(membership),
                id=workflow_id(membership.invitation_id),
                task_queue=task_queue,
            )
            if answer is not None:
                await handle.signal(ProjectInvitationWorkflow.answered, answer)
            outcome = await handle.result()
            history = await handle.fetch_history()
    assert outcome.membership == membership.name
    return outcome.state, history


def memberships(stack: Stack, project: str) -> dict[str, int]:
    with stack.client(stack.acme) as acme:
        listed = acme.projects.ListMemberships(ipb.ListMembershipsRequest(parent=project))
    return {m.organization: m.state for m in listed.memberships}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unanswered_invitation_expires_after_seven_days(
    stack: Stack, service: Cofab, time_skipping_env: WorkflowEnvironment
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex", ttl=7 * 86400)
    # Temporal skips the seven days; the service's clock has to agree when the worker calls it.
    stack.clock.offset = dt.timedelta(days=7, minutes=1)
    start = await time_skipping_env.get_current_time()
    state, history = await run_invitation(time_skipping_env.client, service, membership)
    assert state == "EXPIRED"
    assert await time_skipping_env.get_current_time() - start >= dt.timedelta(days=7)
    assert memberships(stack, project.name)["organizations/globex"] == (
        ipb.Membership.STATE_EXPIRED
    )
    with stack.engine.connect() as conn:
        expired = conn.execute(
            select(outbox.c.event_type).where(outbox.c.event_type == "identity.membership.expired")
        ).all()
    assert len(expired) == 1
    if os.environ.get("COFAB_RECORD_HISTORIES"):
        (HISTORIES / "invitation_expired.json").write_text(history.to_json())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_accepted_invitation_completes_without_expiring(
    stack: Stack, service: Cofab, workflow_env: WorkflowEnvironment
) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex")
        globex.projects.AcceptMembership(ipb.AcceptMembershipRequest(name=membership.name))
    state, history = await run_invitation(workflow_env.client, service, membership, "ACTIVE")
    assert state == "ACTIVE"
    assert memberships(stack, project.name)["organizations/globex"] == ipb.Membership.STATE_ACTIVE
    events = [e.WhichOneof("attributes") for e in history.events]
    assert "activity_task_scheduled_event_attributes" not in events
    if os.environ.get("COFAB_RECORD_HISTORIES"):
        (HISTORIES / "invitation_accepted.json").write_text(history.to_json())


RECORDED = ["invitation_expired", "invitation_accepted"]


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_histories_replay(name: str) -> None:
    """Histories of released workflow code (re-record with COFAB_RECORD_HISTORIES=1 only for a
    deliberate, versioned change): today's code must replay them without non-determinism."""
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    await Replayer(workflows=[ProjectInvitationWorkflow]).replay_workflow(history)
