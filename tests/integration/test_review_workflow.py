"""DesignReviewWorkflow against the real design service: quorum and release, SLA reminders and
escalation over days (time skipping), restart on a newer revision, refusals, and replay of
recorded histories. Events go from the service's outbox through the real EventBridge."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cadquery as cq
import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from clients.sdk import Cofab, connect
from clients.sdk.revisions import push_revision, wait_for
from cofab.design.v1 import design_pb2, review_pb2
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.identity.v1 import identity_pb2 as ipb
from services.shared import accounts
from services.shared.consumer import PermanentEventError
from services.shared.db import outbox
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import code_of, create_design, create_project, invite
from workflows.bridge import EventBridge
from workflows.review import DecisionInput, DesignReviewWorkflow, ReviewStatus, workflow_id
from workflows.worker import activities_for, build_worker

HISTORIES = Path(__file__).parent / "histories"
# The workflow's logic is under test here; SQLite suffices (the API suites cover PostgreSQL).
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Setup:
    stack: Stack
    umbrella: Account
    design: str
    revision: str

    def client(self, account: Account) -> Cofab:
        return self.stack.client(account)


def step_file(tmp_path: Path, size: float) -> Path:
    path = tmp_path / f"bracket-{uuid.uuid4().hex[:6]}.step"
    cq.exporters.export(cq.Workplane().box(size, 20, 5).edges("|Z").fillet(1), str(path))
    return path


@pytest.fixture
def setup(stack: Stack, tmp_path: Path) -> Setup:
    """ACME's design with one validated revision; Globex, Initech and Umbrella are reviewers."""
    umbrella = make_account(stack.engine, "umbrella", "uma", admin=True)
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        for account in (stack.globex, stack.initech, umbrella):
            invite(acme, project.name, account.organization, ipb.ROLE_REVIEWER)
            with stack.client(account) as member:
                member.projects.AcceptMembership(
                    ipb.AcceptMembershipRequest(
                        name=f"{project.name}/memberships/{account.organization}"
                    )
                )
        design = create_design(acme, project.name)
        pushed = push_revision(acme, design.name, step_file(tmp_path, 40))
        done = wait_for(acme, pushed.name, timeout=120)
    assert done.state == design_pb2.Revision.STATE_SUCCEEDED, done.error.message
    return Setup(stack, umbrella, design.name, done.name)


@pytest.fixture
def service(stack: Stack) -> Iterator[Cofab]:
    """The services as the workflow worker sees them: with the service account's token."""
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    with connect(token, stack.design.address, stack.supply.address) as cofab:
        yield cofab


@dataclass
class Pipeline:
    env: WorkflowEnvironment
    bridge: EventBridge
    setup: Setup
    dispatched: int = 0

    async def dispatch(self) -> list[EventEnvelope]:
        """Hands every new outbox event to the bridge, in outbox order (Kafka's order per key)."""
        with self.setup.stack.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.seq, outbox.c.payload)
                .where(outbox.c.seq > self.dispatched)
                .order_by(outbox.c.seq)
            ).all()
        envelopes = []
        for row in rows:
            self.dispatched = row.seq
            envelope = EventEnvelope()
            envelope.ParseFromString(row.payload)
            envelopes.append(envelope)
            await self.bridge.dispatch(envelope)
        return envelopes

    def handle(self, review: str) -> WorkflowHandle[DesignReviewWorkflow, ReviewStatus]:
        return self.env.client.get_workflow_handle_for(
            DesignReviewWorkflow.run, workflow_id(review)
        )


async def running(
    env: WorkflowEnvironment, service: Cofab, setup: Setup
) -> AsyncIterator[Pipeline]:
    task_queue = f"test-{uuid.uuid4().hex}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(env.client, task_queue, activities_for(service), executor):
            yield Pipeline(env, EventBridge(env.client, task_queue), setup)


@pytest_asyncio.fixture
async def live(
    workflow_env: WorkflowEnvironment, service: Cofab, setup: Setup
) -> AsyncIterator[Pipeline]:
    async for pipeline in running(workflow_env, service, setup):
        yield pipeline


@pytest_asyncio.fixture
async def skipping(
    time_skipping_env: WorkflowEnvironment, service: Cofab, setup: Setup
) -> AsyncIterator[Pipeline]:
    async for pipeline in running(time_skipping_env, service, setup):
        yield pipeline


def request_review(
    setup: Setup,
    policy: review_pb2.QuorumPolicy,
    days: int = 5,
    on_new: review_pb2.Review.OnNewRevision.ValueType = review_pb2.Review.ON_NEW_REVISION_RESTART,
    now: dt.datetime | None = None,
) -> review_pb2.Review:
    """ACME asks Globex, Initech and Umbrella; the deadline is `days` after `now` (the
    workflow's clock: the time-skipping server's runs ahead once a test skipped time)."""
    deadline = Timestamp()
    deadline.FromDatetime((now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=days))
    with setup.client(setup.stack.acme) as acme:
        return acme.reviews.CreateReview(
            review_pb2.CreateReviewRequest(
                parent=setup.design,
                review=review_pb2.Review(
                    revision=setup.revision,
                    reviewers=[
                        "organizations/globex",
                        "organizations/initech",
                        "organizations/umbrella",
                    ],
                    policy=policy,
                    deadline=deadline,
                    remind_before=Duration(seconds=86400),
                    on_new_revision=on_new,
                    message="Please approve the bracket for tooling",
                ),
            )
        )


def decide(
    setup: Setup,
    account: Account,
    review: str,
    outcome: review_pb2.ReviewOutcome.ValueType,
) -> review_pb2.Review:
    with setup.client(account) as org:
        return org.reviews.DecideReview(
            review_pb2.DecideReviewRequest(name=review, outcome=outcome, comment="checked")
        )


def events_of(setup: Setup, event_type: str) -> list[EventEnvelope]:
    with setup.stack.engine.connect() as conn:
        payloads = conn.scalars(
            select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
        ).all()
    envelopes = []
    for payload in payloads:
        envelope = EventEnvelope()
        envelope.ParseFromString(payload)
        envelopes.append(envelope)
    return envelopes


async def settled(
    handle: WorkflowHandle[DesignReviewWorkflow, ReviewStatus],
    done: Callable[[ReviewStatus], bool],
    timeout: float = 30.0,
) -> ReviewStatus:
    """The workflow's status once `done` holds (a signal is applied by the next workflow task)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.query(DesignReviewWorkflow.status)
        if done(status) or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.2)


def record(history: WorkflowHistory, name: str) -> None:
    if os.environ.get("COFAB_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())


TWO_OF_THREE = review_pb2.QuorumPolicy(kind=review_pb2.QuorumPolicy.KIND_K_OF_N, k=2)
ALL = review_pb2.QuorumPolicy(kind=review_pb2.QuorumPolicy.KIND_ALL)
APPROVE = review_pb2.REVIEW_OUTCOME_APPROVE
CHANGES = review_pb2.REVIEW_OUTCOME_REQUEST_CHANGES


@on_sqlite
async def test_two_of_three_approvals_release_the_revision_once(
    live: Pipeline, setup: Setup
) -> None:
    stack = setup.stack
    review = request_review(setup, TWO_OF_THREE)
    await live.dispatch()  # design.review.requested starts the workflow
    decide(setup, stack.globex, review.name, APPROVE)
    decided = await live.dispatch()
    # A redelivered decision is the same update (its event id): it is not counted twice.
    await live.bridge.dispatch(decided[-1])
    decide(setup, setup.umbrella, review.name, CHANGES)
    decide(setup, stack.initech, review.name, APPROVE)
    await live.dispatch()
    status = await live.handle(review.name).result()
    assert status.state == "APPROVED"
    assert status.decisions == {
        "globex": "APPROVE",
        "umbrella": "REQUEST_CHANGES",
        "initech": "APPROVE",
    }

    with setup.client(stack.acme) as acme:
        revision = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=setup.revision))
        mirrored = acme.reviews.GetReview(review_pb2.GetReviewRequest(name=review.name))
    assert revision.released
    assert mirrored.state == review_pb2.Review.STATE_APPROVED
    assert sorted(d.organization for d in mirrored.decisions) == [
        "organizations/globex",
        "organizations/initech",
        "organizations/umbrella",
    ]
    assert len(events_of(setup, "design.revision.released")) == 1
    closed = events_of(setup, "design.review.closed")
    assert len(closed) == 1
    assert set(closed[0].audience) >= {"organizations/globex", "organizations/umbrella"}

    # After the end: the API refuses a second decision, and an event that slipped through
    # is dead-lettered by the bridge with the reason instead of blocking anything.
    assert code_of(lambda: decide(setup, stack.globex, review.name, APPROVE)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    late = EventEnvelope()
    late.CopyFrom(decided[-1])
    late.id = str(uuid.uuid4())
    with pytest.raises(PermanentEventError):
        await live.bridge.dispatch(late)
    record(await live.handle(review.name).fetch_history(), "review_approved")


@on_sqlite
async def test_only_reviewer_organizations_decide(live: Pipeline, setup: Setup) -> None:
    stack = setup.stack
    review = request_review(setup, ALL)
    await live.dispatch()
    # ACME asked for the review but is not a reviewer; an outsider sees nothing.
    assert code_of(lambda: decide(setup, stack.acme, review.name, APPROVE)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    outsider = make_account(stack.engine, "hooli", "hal")
    assert code_of(lambda: decide(setup, outsider, review.name, APPROVE)) == (
        grpc.StatusCode.NOT_FOUND
    )
    # Straight to the workflow, the update validator refuses it before it enters history.
    handle = live.handle(review.name)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            DesignReviewWorkflow.decide,
            DecisionInput(
                "acme", "organizations/acme/users/alice", "APPROVE", "", setup.revision, 0
            ),
        )
    assert "not a reviewer" in str(refused.value.cause)
    history = await handle.fetch_history()
    assert not any(
        e.HasField("workflow_execution_update_accepted_event_attributes") for e in history.events
    )
    status = await handle.query(DesignReviewWorkflow.status)
    assert status.state == "OPEN" and status.decisions == {}
    with setup.client(stack.acme) as acme:
        acme.reviews.CancelReview(review_pb2.CancelReviewRequest(name=review.name))
    await live.dispatch()
    assert (await handle.result()).state == "CANCELLED"


@on_sqlite
async def test_reminder_then_escalation_after_days(skipping: Pipeline, setup: Setup) -> None:
    stack = setup.stack
    # The time-skipping server's clock may be far ahead after earlier tests (years, seen in a
    # full run); the service's clock follows it, as the services run in the workflow's time.
    now = await skipping.env.get_current_time()
    stack.clock.offset = now - dt.datetime.now(dt.UTC)
    review = request_review(setup, ALL, days=5, now=now)
    await skipping.dispatch()
    decide(setup, stack.globex, review.name, APPROVE)
    await skipping.dispatch()
    handle = skipping.handle(review.name)
    # Nobody else decides. Time skipping runs the five days: a reminder one day before the
    # deadline to the two that have not decided, then escalation to ACME at the deadline.
    await skipping.env.sleep(dt.timedelta(days=5, hours=1))
    status = await settled(handle, lambda s: s.escalated)
    assert status.state == "OPEN" and status.escalated
    reminders = events_of(setup, "design.review.reminder")
    assert len(reminders) == 1
    assert sorted(reminders[0].audience) == ["organizations/initech", "organizations/umbrella"]
    escalations = events_of(setup, "design.review.escalated")
    assert len(escalations) == 1 and list(escalations[0].audience) == ["organizations/acme"]
    with setup.client(stack.acme) as acme:
        mirrored = acme.reviews.GetReview(review_pb2.GetReviewRequest(name=review.name))
        assert mirrored.escalated
        acme.reviews.CancelReview(review_pb2.CancelReviewRequest(name=review.name))
    await skipping.dispatch()
    assert (await handle.result()).state == "CANCELLED"
    record(await handle.fetch_history(), "review_escalated")


@on_sqlite
async def test_a_newer_revision_restarts_the_review(
    live: Pipeline, setup: Setup, tmp_path: Path
) -> None:
    stack = setup.stack
    review = request_review(setup, ALL)
    await live.dispatch()
    decide(setup, stack.globex, review.name, APPROVE)
    await live.dispatch()
    with setup.client(stack.acme) as acme:
        pushed = push_revision(
            acme, setup.design, step_file(tmp_path, 42), base_revision=setup.revision
        )
        newer = wait_for(acme, pushed.name, timeout=120)
    assert newer.state == design_pb2.Revision.STATE_SUCCEEDED
    superseded = await live.dispatch()
    assert [e.type for e in superseded if e.type.startswith("design.review.")] == [
        "design.review.superseded"
    ]
    handle = live.handle(review.name)
    status = await settled(handle, lambda s: s.round == 2)
    assert (status.revision, status.decisions) == (newer.name, {})
    # A decision about the superseded revision no longer counts.
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            DesignReviewWorkflow.decide,
            DecisionInput(
                "initech", "organizations/initech/users/ivan", "APPROVE", "", setup.revision, 0
            ),
        )
    for account in (stack.globex, stack.initech, setup.umbrella):
        decide(setup, account, review.name, APPROVE)
    await live.dispatch()
    assert (await handle.result()).state == "APPROVED"
    with setup.client(stack.acme) as acme:
        released = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=newer.name))
        first = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=setup.revision))
        mirrored = acme.reviews.GetReview(review_pb2.GetReviewRequest(name=review.name))
    assert released.released and not first.released
    assert mirrored.round == 2
    # History is kept: round 1's approval by Globex stays on record next to round 2's.
    assert sorted((d.round, d.organization) for d in mirrored.decisions)[0] == (
        1,
        "organizations/globex",
    )


RECORDED = ["review_approved", "review_escalated"]


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_histories_replay(name: str) -> None:
    """Histories of released workflow code: today's code must replay them deterministically."""
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(name, path.read_text())
    await Replayer(workflows=[DesignReviewWorkflow]).replay_workflow(history)
