"""Diffs in the revision processor, with stand-in engine functions (run in real spawned worker
processes): the outcome, its artifacts and event recorded together; an engine refusal as a
FAILED diff; a diff in flight at shutdown handed back PENDING and finished by the next one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.design.diffs import DiffApplication, DiffJobs, RevisionDiff
from services.design.diffs.tables import revision_diffs
from services.design.domain.revisions import RevisionState
from services.design.geometry.types import DiffResult, Failure, Region
from services.design.ingest_worker import DiffJob, DiffOutcome
from services.design.processing import RevisionProcessor
from services.shared.db import outbox, utcnow
from services.shared.events import decode_envelope
from tests.unit.test_revision_processing import ALICE, World, ingest_ok, run_until_finished, world

__all__ = ["world"]  # the fixture, imported to be used here


def diff_ok(job: DiffJob) -> DiffOutcome:
    picture = job.work_dir / "diff.png"
    picture.write_bytes(b"\x89PNG stand-in")
    added = Region(10.0, (0.0, 0.0, 0.0), (1.0, 2.0, 5.0), (0.5, 1.0, 2.5))
    return DiffOutcome(
        result=DiffResult(
            exact=job.a.step is not None and job.b.step is not None,
            added=(added,), removed=(), added_volume_mm3=10.0, removed_volume_mm3=0.0,
            faces=(), unchanged_faces=0, face_map={}, max_deviation_mm=1.0,
            rms_deviation_mm=0.1, volume_delta_mm3=10.0, area_delta_mm2=4.0, mass_delta_g=None,
            bbox_min_delta=(0.0, 0.0, 0.0), bbox_max_delta=(0.0, 0.0, 0.0), parameters=(),
            findings_introduced=(), findings_resolved=job.a.findings,
            artifacts={"diff.png": picture},
        )
    )  # fmt: skip


def diff_refuses(job: DiffJob) -> DiffOutcome:
    return DiffOutcome(failure=Failure.PRECONDITION.value, reason="the mesh is not closed")


def diff_slow(job: DiffJob) -> DiffOutcome:
    time.sleep(60)
    return diff_ok(job)


class StandInDiffs(DiffJobs):
    """The service's diff queue with another function in the worker."""

    def __init__(self, world: World, run: Callable[[DiffJob], DiffOutcome]) -> None:
        super().__init__(world.engine, world.blobs, utcnow)
        self._run = run

    def prepare(self, job: RevisionDiff, work: Path) -> tuple[Callable[[DiffJob], Any], DiffJob]:
        _, argument = super().prepare(job, work)
        return self._run, argument


def two_revisions(world: World) -> tuple[str, str]:
    first = world.push(b"solid a\nendsolid a\n")
    run_until_finished(world, ingest_ok, first.name)
    second = world.push(b"solid b\nendsolid b\n", base=first.name)
    run_until_finished(world, ingest_ok, second.name)
    return first.name, second.name


def processor(world: World, run: Callable[[DiffJob], DiffOutcome]) -> RevisionProcessor:
    return RevisionProcessor(
        world.engine, world.blobs, world.work, workers=1, poll_seconds=0.1,
        jobs=(StandInDiffs(world, run),),
    )  # fmt: skip


def wait_state(app: DiffApplication, name: str, wanted: set[RevisionState]) -> RevisionDiff:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        diff = app.peek_diff(ALICE, name)
        if diff.state in wanted:
            return diff
        time.sleep(0.1)
    raise AssertionError(f"{name} is still {app.peek_diff(ALICE, name).state}")


def test_a_diff_is_stored_with_its_picture_and_event(world: World) -> None:
    a, b = two_revisions(world)
    app = DiffApplication(world.engine)
    asked = app.request_diff(ALICE, world.design, a, b)
    assert asked.state is RevisionState.PENDING
    assert app.request_diff(ALICE, world.design, a, b).id == asked.id
    worker = processor(world, diff_ok)
    worker.start()
    try:
        done = wait_state(app, asked.name, {RevisionState.SUCCEEDED, RevisionState.FAILED})
    finally:
        worker.stop()
    assert done.state is RevisionState.SUCCEEDED
    assert done.result is not None and done.result.added_volume_mm3 == 10.0
    assert not done.result.exact  # STL revisions have no B-rep
    assert [f.rule_id for f in done.result.findings_resolved] == ["min-wall"]  # from A's report
    (picture,) = done.artifacts
    assert world.blobs.path(picture.sha256).read_bytes() == b"\x89PNG stand-in"
    with world.engine.connect() as conn:
        events = conn.execute(
            select(outbox.c.payload).where(outbox.c.event_type == "design.revision.diffed")
        ).all()
    assert [decode_envelope(e.payload).subject for e in events] == [done.name]
    assert not list(world.work.iterdir())  # work directories are removed


def test_an_engine_refusal_fails_the_diff_with_the_reason(world: World) -> None:
    a, b = two_revisions(world)
    app = DiffApplication(world.engine)
    name = app.request_diff(ALICE, world.design, b, a).name
    worker = processor(world, diff_refuses)
    worker.start()
    try:
        failed = wait_state(app, name, {RevisionState.SUCCEEDED, RevisionState.FAILED})
    finally:
        worker.stop()
    assert failed.state is RevisionState.FAILED
    assert failed.error is not None and failed.error.message == "the mesh is not closed"
    assert failed.result is None and failed.artifacts == ()


def test_stop_hands_a_diff_back_and_the_next_processor_finishes_it(world: World) -> None:
    a, b = two_revisions(world)
    app = DiffApplication(world.engine)
    name = app.request_diff(ALICE, world.design, a, b).name
    slow = processor(world, diff_slow)
    slow.start()
    try:
        wait_state(app, name, {RevisionState.RUNNING})
    finally:
        slow.stop()
    with world.engine.connect() as conn:
        row = conn.execute(select(revision_diffs)).one()
    assert (row.state, row.lease_owner, row.attempts) == ("PENDING", None, 1)
    worker = processor(world, diff_ok)
    worker.start()
    try:
        done = wait_state(app, name, {RevisionState.SUCCEEDED})
    finally:
        worker.stop()
    assert done.attempts == 2
