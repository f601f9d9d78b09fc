"""reviews-200: 200 concurrent design reviews, three organizations each, all decided.

Ours: the real DesignReviewWorkflow on a Temporal dev server (deploy.local's TemporalDevServer,
`temporal server start-dev` with its SQLite file, as `make up` runs it) and the real worker
(workflows.worker's `build_worker` with the real activities, which call a real design service
over gRPC as the platform's service account); the design service runs as its own process
(`python -m services.design`) on a fresh SQLite database. 200 reviews of one validated revision
are requested through the API (untimed). Timed, from the first workflow start to the last
workflow completion: the events the service wrote to its outbox (`design.review.requested`)
are handed to the real EventBridge, which starts the workflows; then each of the three reviewer
organizations (Globex, Initech, Umbrella) approves every review through DecideReview, and their
`design.review.decision_submitted` events go through the bridge as workflow updates. The quorum
is ALL, so all three decisions of every review count; each review then reports every decision
to the service, releases the revision (ReleaseRevision is idempotent: the first release
emits the event) and reports the close: five activities per review.

The bridge's events are dispatched concurrently (at most IN_FLIGHT at a time), as the bridge's
consumer group would with one member per partition; Kafka itself is left out (the Kafka path is
measured by rfq-fanout and covered by the crash tests).

Baseline: a trivial workflow defined here that completes after three signals, started and
signalled the same way (200 concurrent starts, then 3 x 200 signals, IN_FLIGHT at a time) on the
same server and an in-process worker of the same shape. Reported: wall times, reviews/s, and the
ratio of the baseline's throughput to ours. Target: at most 60 s for 200 reviews (the issue's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    # The sandbox re-imports this module for the baseline workflow: everything below it passes
    # through (none of it runs inside a workflow).
    import cadquery as cq
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp
    from sqlalchemy import Engine, select

    from bench.harness import Benchmark, Report, Table
    from clients.sdk import Cofab, connect, push_revision, wait_for
    from cofab.design.v1 import design_pb2, review_pb2
    from cofab.events.v1.envelope_pb2 import EventEnvelope
    from cofab.identity.v1 import identity_pb2 as ipb
    from deploy.local import PythonService, TemporalDevServer, free_ports
    from services.shared import accounts, audit
    from services.shared.db import outbox
    from services.shared.migrate import upgrade
    from workflows.bridge import EventBridge
    from workflows.review import DesignReviewWorkflow, ReviewStatus, workflow_id
    from workflows.worker import activities_for, build_worker

log = logging.getLogger(__name__)

REVIEWS = 200
REVIEWERS = ("globex", "initech", "umbrella")
TARGET_S = 60.0
IN_FLIGHT = 64
DECIDE_THREADS = 8
TIMEOUT_S = 300.0


@workflow.defn(name="BenchSignalAndComplete")
class SignalAndComplete:
    """The baseline: completes once it has received `expected` signals."""

    def __init__(self) -> None:
        self._signals = 0

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: self._signals >= expected)
        return self._signals

    @workflow.signal
    def decide(self, organization: str) -> None:
        self._signals += 1


@dataclass(frozen=True)
class Deployment:
    """The running service and what the reviews need: tokens, the revision, the database."""

    engine: Engine
    design_address: str
    tokens: dict[str, str]
    service_token: str
    design: str
    revision: str


async def _bounded(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Runs the calls concurrently, at most IN_FLIGHT at a time."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with limit:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _outbox_after(engine: Engine, seq: int, event_type: str) -> tuple[int, list[EventEnvelope]]:
    """Events of `event_type` written after outbox row `seq`, in order, and the last seq."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.seq, outbox.c.event_type, outbox.c.payload)
            .where(outbox.c.seq > seq)
            .order_by(outbox.c.seq)
        ).all()
    events = []
    for row in rows:
        if row.event_type == event_type:
            envelope = EventEnvelope()
            envelope.ParseFromString(row.payload)
            events.append(envelope)
    return (rows[-1].seq if rows else seq), events


@contextmanager
def _deployment(root: Path) -> Iterator[Deployment]:
    """A design service process on a fresh database with ACME's project, one validated
    revision, and the three reviewer organizations as active reviewer members."""
    url = f"sqlite:///{root / 'cofab.db'}"
    upgrade(url)
    engine = audit.audited_engine_in(url, root)
    tokens = {}
    for org in ("acme", *REVIEWERS):
        accounts.create_organization(engine, org, org.title())
        accounts.create_user(engine, org, "admin", organization_admin=True)
        tokens[org] = accounts.create_token(engine, org, "admin").plaintext
    service_token = accounts.ensure_service_account(engine, None)
    assert service_token is not None
    address = f"127.0.0.1:{free_ports(1)[0]}"
    env = {
        **os.environ,
        "COFAB_DATABASE_URL": url,
        "COFAB_STATE_DIR": str(root),
        "COFAB_DESIGN_LISTEN": address,
    }
    design_service = PythonService(
        "design", "services.design", env, root, grpc_address=address, log_path=root / "design.log"
    )
    design_service.start()
    try:
        part = root / "bracket.step"
        cq.exporters.export(cq.Workplane().box(40, 20, 5), str(part))
        with connect(tokens["acme"], address) as acme:
            project = acme.projects.CreateProject(
                ipb.CreateProjectRequest(project=ipb.Project(display_name="Bench reviews"))
            )
            for org in REVIEWERS:
                acme.projects.CreateMembership(
                    ipb.CreateMembershipRequest(
                        parent=project.name,
                        membership=ipb.Membership(
                            organization=f"organizations/{org}", role=ipb.ROLE_REVIEWER
                        ),
                    )
                )
                with connect(tokens[org], address) as member:
                    member.projects.AcceptMembership(
                        ipb.AcceptMembershipRequest(name=f"{project.name}/memberships/{org}")
                    )
            design = acme.designs.CreateDesign(
                design_pb2.CreateDesignRequest(
                    parent=project.name, design=design_pb2.Design(display_name="Bracket")
                )
            )
            done = wait_for(acme, push_revision(acme, design.name, part).name, timeout=300)
        if done.state != design_pb2.Revision.STATE_SUCCEEDED:
            raise RuntimeError(f"the benchmark part failed validation: {done.error.message}")
        yield Deployment(engine, address, tokens, service_token, design.name, done.name)
    finally:
        design_service.stop()
        engine.dispose()


def _request_reviews(deployment: Deployment, count: int) -> list[str]:
    deadline = Timestamp()
    deadline.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    with connect(deployment.tokens["acme"], deployment.design_address) as acme:
        return [
            acme.reviews.CreateReview(
                review_pb2.CreateReviewRequest(
                    parent=deployment.design,
                    review=review_pb2.Review(
                        revision=deployment.revision,
                        reviewers=[f"organizations/{org}" for org in REVIEWERS],
                        policy=review_pb2.QuorumPolicy(kind=review_pb2.QuorumPolicy.KIND_ALL),
                        deadline=deadline,
                        remind_before=Duration(seconds=86400),
                    ),
                    request_id=uuid.uuid4().hex,
                )
            ).name
            for _ in range(count)
        ]


def _decide_all(deployment: Deployment, reviews: Sequence[str]) -> None:
    """Every reviewer organization approves every review, DECIDE_THREADS calls at a time."""
    clients: dict[str, Cofab] = {
        org: connect(deployment.tokens[org], deployment.design_address) for org in REVIEWERS
    }

    def approve(org: str, review: str) -> None:
        clients[org].reviews.DecideReview(
            review_pb2.DecideReviewRequest(
                name=review,
                outcome=review_pb2.REVIEW_OUTCOME_APPROVE,
                request_id=uuid.uuid4().hex,
            )
        )

    try:
        with concurrent.futures.ThreadPoolExecutor(DECIDE_THREADS) as pool:
            for future in [
                pool.submit(approve, org, review) for review in reviews for org in REVIEWERS
            ]:
                future.result()
    finally:
        for client in clients.values():
            client.close()


@dataclass(frozen=True)
class Phases:
    """Seconds from the first start to the end of each phase of the reviews' run."""

    started: float
    decided: float
    delivered: float
    completed: float


async def _ours(client: Client, deployment: Deployment, count: int) -> Phases:
    with connect(deployment.service_token, deployment.design_address) as service:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
            task_queue = f"bench-reviews-{uuid.uuid4().hex[:8]}"
            async with build_worker(client, task_queue, activities_for(service), executor):
                bridge = EventBridge(client, task_queue)
                seq, _ = _outbox_after(deployment.engine, 0, "")  # where the outbox ends now
                reviews = _request_reviews(deployment, count)
                seq, requested = _outbox_after(deployment.engine, seq, "design.review.requested")
                started = time.perf_counter()
                await _bounded([partial(bridge.dispatch, e) for e in requested])
                starts_done = time.perf_counter() - started
                await asyncio.to_thread(_decide_all, deployment, reviews)
                decisions_done = time.perf_counter() - started
                _, decided = _outbox_after(
                    deployment.engine, seq, "design.review.decision_submitted"
                )
                await _bounded([partial(bridge.dispatch, e) for e in decided])
                delivered = time.perf_counter() - started
                results: list[ReviewStatus] = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            client.get_workflow_handle_for(
                                DesignReviewWorkflow.run, workflow_id(r)
                            ).result()
                            for r in reviews
                        )
                    ),
                    TIMEOUT_S,
                )
                elapsed = time.perf_counter() - started
    approved = sum(1 for s in results if s.state == "APPROVED" and len(s.decisions) == 3)
    if approved != count:
        raise RuntimeError(f"only {approved} of {count} reviews ended APPROVED with 3 decisions")
    return Phases(starts_done, decisions_done, delivered, elapsed)


async def _baseline(client: Client, count: int) -> float:
    task_queue = f"bench-trivial-{uuid.uuid4().hex[:8]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[SignalAndComplete],
            activity_executor=executor,
        ):
            ids = [f"trivial-{uuid.uuid4().hex}" for _ in range(count)]
            started = time.perf_counter()
            handles = await _bounded(
                [
                    partial(
                        client.start_workflow,
                        SignalAndComplete.run,
                        len(REVIEWERS),
                        id=i,
                        task_queue=task_queue,
                    )
                    for i in ids
                ]
            )
            await _bounded(
                [
                    partial(h.signal, SignalAndComplete.decide, org)
                    for h in handles
                    for org in REVIEWERS
                ]
            )
            await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), TIMEOUT_S)
            return time.perf_counter() - started


async def _measure(root: Path, count: int) -> tuple[float, Phases]:
    temporal = TemporalDevServer(
        root / "temporal", port=free_ports(1)[0], log_path=root / "temporal.log"
    )
    temporal.start()
    try:
        client = await Client.connect(temporal.address)
        with _deployment(root) as deployment:
            log.info("reviews: baseline, %d trivial workflows", count)
            baseline_s = await _baseline(client, count)
            log.info("reviews: %d design reviews", count)
            phases = await _ours(client, deployment, count)
    finally:
        temporal.stop()
    return baseline_s, phases


def run_reviews(count: int = REVIEWS) -> Report:
    """Measures `count` reviews (200 for the registered benchmark) and the baseline."""
    with tempfile.TemporaryDirectory(prefix="cofab-bench-reviews-") as tmp:
        baseline_s, phases = asyncio.run(_measure(Path(tmp), count))
    ours_s = phases.completed
    ours_rate, baseline_rate = count / ours_s, count / baseline_s
    met = "MET" if ours_s <= TARGET_S * count / REVIEWS else "NOT MET"
    return Report(
        name=f"reviews-{count}",
        title=f"{count} concurrent design reviews, 3 organizations each, all approving, "
        "vs a trivial signal-and-complete workflow",
        tables=[
            Table(
                ["workflow", "wall s", "workflows/s"],
                [
                    ["trivial: 3 signals, complete", f"{baseline_s:.2f}", f"{baseline_rate:.1f}"],
                    [
                        "DesignReviewWorkflow: 3 decisions, release",
                        f"{ours_s:.2f}",
                        f"{ours_rate:.1f}",
                    ],
                ],
            ),
            Table(["throughput trivial/ours"], [[f"{baseline_rate / ours_rate:.2f}x"]], align="r"),
            Table(
                [
                    "reviews: all started s",
                    f"{count * len(REVIEWERS)} DecideReview calls done s",
                    "all decisions delivered s",
                    "all completed s",
                ],
                [
                    [
                        f"{phases.started:.2f}",
                        f"{phases.decided:.2f}",
                        f"{phases.delivered:.2f}",
                        f"{phases.completed:.2f}",
                    ]
                ],
                align="rrrr",
            ),
        ],
        notes=[
            f"Target <= {TARGET_S * count / REVIEWS:.0f} s for {count} reviews from the first "
            f"start to the last completion: **{met}**.",
            "One round each (a round takes tens of seconds on 2 cores); the baseline ran first.",
        ],
    )


BENCHMARK = Benchmark(
    name="reviews-200",
    summary="200 concurrent 3-organization design reviews on the Temporal dev server vs a "
    "trivial signal-and-complete workflow",
    run=run_reviews,
)
