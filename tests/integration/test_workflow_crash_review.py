"""A design review survives SIGKILL of the workflow worker and the event bridge.

Real processes (`python -m workflows.worker`, `python -m workflows.bridge`), a real Kafka broker and
Temporal dev server, the real design service. Globex approves; both processes are killed; Initech
approves while they are down, and the reminder falls due meanwhile; both restart. The review must
end APPROVED with one release, one decision per organization and at most one reminder each."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from cofab.design.v1 import design_pb2, review_pb2
from deploy.local import KafkaBroker
from tests.integration.processes import WorkflowProcesses, workflow_processes
from tests.integration.test_outbox_kafka import own_broker
from tests.integration.test_review_workflow import Setup, decide, events_of, on_sqlite, setup
from workflows.review import DesignReviewWorkflow, workflow_id

__all__ = ["own_broker", "setup"]  # fixtures, imported to be used here

REMINDER_AFTER_S = 30
DEADLINE_AFTER_S = 600
APPROVE = review_pb2.REVIEW_OUTCOME_APPROVE


@pytest.fixture
def processes(setup: Setup, own_broker: KafkaBroker, tmp_path: Path) -> Iterator[WorkflowProcesses]:
    with workflow_processes(setup.stack, own_broker.bootstrap_servers, tmp_path) as running:
        yield running


def get_review(setup: Setup, name: str) -> review_pb2.Review:
    with setup.client(setup.stack.acme) as acme:
        return acme.reviews.GetReview(review_pb2.GetReviewRequest(name=name))


def wait_until(
    setup: Setup,
    name: str,
    done: Callable[[review_pb2.Review], bool],
    processes: WorkflowProcesses,
    timeout: float = 120.0,
) -> review_pb2.Review:
    """The mirrored review once `done` holds (the worker's activities report progress)."""
    deadline = time.monotonic() + timeout
    while True:
        review = get_review(setup, name)
        if done(review):
            return review
        assert time.monotonic() < deadline, f"review stuck: {review}\n{processes.logs()}"
        time.sleep(0.5)


# Its own broker, server and four process starts on a shared 2-core machine: above the default.
@pytest.mark.timeout(600)
@on_sqlite
async def test_review_completes_once_after_worker_and_bridge_are_killed(
    setup: Setup, processes: WorkflowProcesses
) -> None:
    stack = setup.stack
    requested_at = dt.datetime.now(dt.UTC)
    deadline = Timestamp()
    deadline.FromDatetime(requested_at + dt.timedelta(seconds=DEADLINE_AFTER_S))
    with setup.client(stack.acme) as acme:
        review = acme.reviews.CreateReview(
            review_pb2.CreateReviewRequest(
                parent=setup.design,
                review=review_pb2.Review(
                    revision=setup.revision,
                    reviewers=[
                        "organizations/globex",
                        "organizations/initech",
                        "organizations/umbrella",
                    ],
                    policy=review_pb2.QuorumPolicy(kind=review_pb2.QuorumPolicy.KIND_K_OF_N, k=2),
                    deadline=deadline,
                    # The reminder falls due REMINDER_AFTER_S after the request: while the
                    # processes are down.
                    remind_before=Duration(seconds=DEADLINE_AFTER_S - REMINDER_AFTER_S),
                ),
            )
        )
    decide(setup, stack.globex, review.name, APPROVE)
    wait_until(setup, review.name, lambda r: len(r.decisions) == 1, processes)

    processes.crash()
    decide(setup, stack.initech, review.name, APPROVE)
    remind_at = requested_at + dt.timedelta(seconds=REMINDER_AFTER_S + 2)
    await asyncio.sleep(max(0.0, (remind_at - dt.datetime.now(dt.UTC)).total_seconds()))
    assert get_review(setup, review.name).state == review_pb2.Review.STATE_OPEN
    processes.start()

    done = wait_until(
        setup, review.name, lambda r: r.state != review_pb2.Review.STATE_OPEN, processes
    )
    assert done.state == review_pb2.Review.STATE_APPROVED
    client = await processes.client()
    status = await client.get_workflow_handle_for(
        DesignReviewWorkflow.run, workflow_id(review.name)
    ).result()
    assert status.state == "APPROVED"
    assert status.decisions == {"globex": "APPROVE", "initech": "APPROVE"}

    # Exactly one effect each, whatever was redone after the crash.
    assert len(events_of(setup, "design.revision.released")) == 1
    assert len(events_of(setup, "design.review.closed")) == 1
    assert sorted(d.organization for d in done.decisions) == [
        "organizations/globex",
        "organizations/initech",
    ]
    reminded = Counter(
        org for e in events_of(setup, "design.review.reminder") for org in e.audience
    )
    assert all(count == 1 for count in reminded.values()), reminded
    assert "organizations/globex" not in reminded
    with setup.client(stack.acme) as acme:
        revision = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=setup.revision))
    assert revision.released
