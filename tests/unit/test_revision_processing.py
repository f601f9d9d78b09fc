"""The revision processor with stand-in ingest functions (the geometry engine's port): claims,
leases, worker crashes, failures moving the branch head back, and hand-over on stop.

The database is a SQLite file; the ingest functions run in real spawned worker processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.design.adapters.blobstore import FileBlobStore
from services.design.adapters.geometry import EngineChecks
from services.design.adapters.revision_repository import RevisionRepository
from services.design.application import DesignApplication
from services.design.domain.revisions import Revision, RevisionState
from services.design.geometry.types import (
    Failure,
    Finding,
    IngestRequest,
    IngestResult,
    Location,
    Properties,
    Severity,
)
from services.design.ingest_worker import IngestOutcome
from services.design.processing import RevisionProcessor
from services.design.revisions import RevisionApplication
from services.shared import accounts, audit
from services.shared.db import outbox, utcnow
from services.shared.errors import FailedPrecondition
from services.shared.identity import Principal

ALICE = Principal("acme", "alice")


# Stand-ins for geometry.ingest: module-level, so spawned workers can import them.


def ingest_ok(request: IngestRequest) -> IngestOutcome:
    mesh = request.work_dir / "mesh.glb"
    mesh.write_bytes(b"glTF" + request.source.read_bytes()[:16])
    thumb = request.work_dir / "thumbnail.png"
    thumb.write_bytes(b"\x89PNG fake")
    return IngestOutcome(
        result=IngestResult(
            properties=Properties(
                volume_mm3=1000.0,
                area_mm2=600.0,
                bbox_min=(0.0, 0.0, 0.0),
                bbox_max=(10.0, 10.0, 10.0),
                center_of_mass=(5.0, 5.0, 5.0),
                mass_g=2.7,
                material="aluminium-6061",
                triangles=12,
                is_brep=False,
            ),
            findings=[
                Finding(
                    "min-wall",
                    Severity.WARNING,
                    "thin",
                    0.5,
                    1.0,
                    "mm",
                    Location((1.0, 2.0, 3.0), 4),
                )
            ],
            artifacts={"mesh.glb": mesh, "thumbnail.png": thumb},
        )
    )


def ingest_refuses(request: IngestRequest) -> IngestOutcome:
    return IngestOutcome(failure=Failure.PRECONDITION.value, reason="the mesh is not closed")


def ingest_crashes_on_marker(request: IngestRequest) -> IngestOutcome:
    if b"crash" in request.source.read_bytes():
        os._exit(7)
    return ingest_ok(request)


def ingest_slow(request: IngestRequest) -> IngestOutcome:
    time.sleep(60)
    return ingest_ok(request)


@dataclass
class FakeChecks:
    """The geometry engine's fast checks, accepting everything."""

    def check_upload(self, path: Path, format: str) -> None:
        return None

    def rule_sets(self) -> Mapping[str, Any]:
        return {}

    def materials(self) -> Mapping[str, Any]:
        return {}

    def script_parameters(self, source: str) -> Mapping[str, Any]:
        return {}


@dataclass
class World:
    engine: Engine
    blobs: FileBlobStore
    revisions: RevisionApplication
    design: str
    work: Path

    def processor(self, ingest: Any, attempts: int = 2, lease: float = 60.0) -> RevisionProcessor:
        return RevisionProcessor(
            self.engine,
            self.blobs,
            self.work,
            workers=1,
            attempts=attempts,
            lease_seconds=lease,
            ingest=ingest,
            poll_seconds=0.1,
        )

    def push(self, content: bytes, base: str = "", branch: str = "main") -> Revision:
        header = self.revisions.check_header(
            self.design,
            branch,
            base,
            "a change",
            "stl",
            "mm",
            hashlib.sha256(content).hexdigest(),
            len(content),
            {},
            "",
        )
        upload = self.blobs.begin()
        upload.write(content)
        header = self.revisions.check_content(header, upload)
        return self.revisions.push(ALICE, header, upload)

    def revision(self, name: str) -> Revision:
        return self.revisions.peek_revision(ALICE, name)

    def wait_finished(self, name: str, timeout: float = 120) -> Revision:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            revision = self.revision(name)
            if revision.state.finished:
                return revision
            time.sleep(0.1)
        raise AssertionError(f"{name} did not finish: {self.revision(name).state}")

    def head(self, branch: str = "main") -> str | None:
        _, project, _, design = self.design.split("/")
        with self.engine.connect() as conn:
            found = RevisionRepository(conn).get_branch(project, design, branch)
        return found.head_name if found else None


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    engine = audit.audited_engine_in(sqlite_url, tmp_path)
    accounts.create_organization(engine, "acme", "ACME")
    accounts.create_user(engine, "acme", "alice")
    designs = DesignApplication(engine, geometry=EngineChecks())
    project, _ = designs.create_project(ALICE, "Bracket program", "", "")
    design = designs.create_design(ALICE, project.id, "Bracket", "", "", "")
    blobs = FileBlobStore(tmp_path / "blobs")
    yield World(
        engine,
        blobs,
        RevisionApplication(engine, FakeChecks(), 1 << 20),
        design.name,
        tmp_path / "work",
    )
    engine.dispose()


def run_until_finished(world: World, ingest: Any, name: str, **kwargs: Any) -> Revision:
    processor = world.processor(ingest, **kwargs)
    processor.start()
    try:
        return world.wait_finished(name)
    finally:
        processor.stop()


def test_success_stores_results_artifacts_and_the_event(world: World) -> None:
    pushed = world.push(b"solid part\nendsolid part\n")
    assert pushed.state is RevisionState.PENDING
    done = run_until_finished(world, ingest_ok, pushed.name)
    assert done.state is RevisionState.SUCCEEDED
    assert done.properties is not None and done.properties["volume_mm3"] == 1000.0
    assert [f["rule_id"] for f in done.findings] == ["min-wall"]
    assert done.findings[0]["location"] == {"point": [1.0, 2.0, 3.0], "face_id": 4}
    mesh = done.artifact("mesh.glb")
    assert mesh is not None and mesh.media_type == "model/gltf-binary"
    assert b"".join(world.blobs.read(mesh.sha256)).startswith(b"glTF")
    assert world.head() == done.name
    assert list(world.work.iterdir()) == []  # the worker's files are cleaned up
    with world.engine.connect() as conn:
        types = conn.execute(select(outbox.c.event_type, outbox.c.key)).all()
    design_id = world.design.rsplit("/", 1)[1]
    assert ("design.revision.validated", design_id) in [tuple(t) for t in types]


def test_failure_keeps_the_error_and_moves_the_head_back(world: World) -> None:
    first = world.push(b"good")
    run_until_finished(world, ingest_ok, first.name)
    second = world.push(b"open mesh", base=first.name)
    assert world.head() == second.name
    failed = run_until_finished(world, ingest_refuses, second.name)
    assert failed.state is RevisionState.FAILED
    assert failed.error is not None and failed.error.code == 9  # FAILED_PRECONDITION
    assert failed.error.message == "the mesh is not closed"
    assert failed.artifacts == ()
    assert world.head() == first.name
    # The next push starts from the last good revision; the failed one is no base.
    with pytest.raises(FailedPrecondition, match="FAILED"):
        world.push(b"on top of failed", base=failed.name)
    assert world.push(b"fixed", base=first.name).parents == (first.id,)


def test_a_failed_first_revision_removes_its_branch(world: World) -> None:
    only = world.push(b"broken")
    run_until_finished(world, ingest_refuses, only.name)
    assert world.head() is None
    again = world.push(b"retry")
    assert world.head() == again.name


def test_a_crashing_worker_is_retried_then_failed_with_a_reason(world: World) -> None:
    pushed = world.push(b"crash me")
    processor = world.processor(ingest_crashes_on_marker, attempts=2)
    processor.start()
    try:
        failed = world.wait_finished(pushed.name)
        assert failed.state is RevisionState.FAILED
        assert failed.error is not None and "crashed" in failed.error.message
        assert failed.attempts == 2
        # The same processor rebuilt its pool: the next revision is processed normally.
        later = world.push(b"fine")
        assert world.wait_finished(later.name).state is RevisionState.SUCCEEDED
    finally:
        processor.stop()


def test_stop_hands_work_back_and_another_processor_completes_it(world: World) -> None:
    pushed = world.push(b"slow")
    slow = world.processor(ingest_slow)
    slow.start()
    deadline = time.monotonic() + 60
    while world.revision(pushed.name).state is not RevisionState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slow.stop()
    assert world.revision(pushed.name).state is RevisionState.PENDING
    done = run_until_finished(world, ingest_ok, pushed.name)
    assert done.state is RevisionState.SUCCEEDED


def test_an_expired_lease_is_taken_over(world: World) -> None:
    pushed = world.push(b"abandoned")
    with world.engine.begin() as conn:
        claimed = RevisionRepository(conn).claim(
            "dead-replica", utcnow() - dt.timedelta(minutes=5), dt.timedelta(seconds=1), set()
        )
    assert claimed is not None and claimed.state is RevisionState.RUNNING
    done = run_until_finished(world, ingest_ok, pushed.name)
    assert done.state is RevisionState.SUCCEEDED
    assert done.attempts == 2


def test_two_processors_never_claim_one_revision(world: World) -> None:
    world.push(b"one")
    with world.engine.begin() as conn:
        repo = RevisionRepository(conn)
        first = repo.claim("a", utcnow(), dt.timedelta(seconds=60), set())
        second = repo.claim("b", utcnow(), dt.timedelta(seconds=60), set())
    assert first is not None and second is None


def test_a_busy_organization_waits_behind_another_ones_revision(world: World) -> None:
    """One organization's queue of slow jobs (say, scripts that run to their wall clock) delays
    another organization's revision by at most one job: the claim prefers organizations with no
    job in flight, oldest first within each group."""
    from services.design.adapters.revision_tables import revisions

    queued = [world.push(f"part {i}".encode(), branch=f"b{i}") for i in range(4)]
    # The third push was Globex's (an editor of the project, as far as processing cares).
    with world.engine.begin() as conn:
        conn.execute(
            revisions.update()
            .where(revisions.c.id == queued[2].id)
            .values(author="organizations/globex/users/gina")
        )
    now, lease = utcnow(), dt.timedelta(seconds=60)
    with world.engine.begin() as conn:
        repository = RevisionRepository(conn)
        busy = frozenset({"organizations/acme"})
        first = repository.claim("p1", now, lease, set(), busy)
        second = repository.claim("p1", now, lease, {queued[2].id}, busy)
        idle = repository.claim("p1", now, lease, {queued[2].id, queued[0].id}, frozenset())
    assert first is not None and first.id == queued[2].id  # Globex's, ahead of older ACME ones
    assert second is not None and second.id == queued[0].id  # then the oldest
    assert idle is not None and idle.id == queued[1].id
