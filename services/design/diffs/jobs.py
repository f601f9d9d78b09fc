"""Diff and merge jobs for the revision processor: what a claimed job sends to a geometry worker
(the revisions' files, linked from blobs into the job's work directory) and how its outcome is
recorded, with its event, in one transaction."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from cofab.design.v1 import events_pb2
from services.design.adapters.blobstore import FileBlobStore
from services.design.adapters.repository import SqlRepository
from services.design.adapters.revision_repository import RevisionRepository, organization_of
from services.design.comments.carry import carry_forward, has_open_comments
from services.design.convert import revision_proto
from services.design.diffs.convert import diff_proto, merge_proto
from services.design.diffs.domain import (
    DIFF_ARTIFACT_MEDIA_TYPES,
    MergeState,
    RevisionDiff,
    RevisionMerge,
)
from services.design.diffs.repository import DiffRepository, Leases, MergeRepository
from services.design.domain.revisions import (
    CODE_INTERNAL,
    ArtifactRef,
    ProcessingError,
    Revision,
    RevisionState,
    processing_error,
)
from services.design.geometry.codec import (
    conflict_to_json,
    diff_to_json,
    finding_from_json,
    properties_from_json,
)
from services.design.geometry.types import DiffInput, Failure
from services.design.ingest_worker import (
    DiffJob,
    DiffOutcome,
    MergeJob,
    MergeOutcome,
    run_diff,
    run_merge,
)
from services.shared import outbox
from services.shared.db import read_only
from services.shared.events import make_envelope

log = logging.getLogger(__name__)

SOURCE = "//cofab/design"
Clock = Callable[[], dt.datetime]


def _link(source: Path, target: Path) -> Path:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def emit(
    conn: Connection,
    project_id: str,
    design_id: str,
    event_type: str,
    subject: str,
    organization: str,
    data: Any,
) -> None:
    """A design event for the project's member organizations, keyed by design (in order)."""
    envelope = make_envelope(
        source=SOURCE,
        event_type=event_type,
        subject=subject,
        organization=organization,
        data=data,
        audience=SqlRepository(conn).active_member_organizations(project_id),
    )
    outbox.enqueue(conn, envelope, key=design_id)


def enqueue_comment_diff(conn: Connection, revision: Revision, now: dt.datetime) -> None:
    """Called as `revision` SUCCEEDED: when its first parent has open comment threads, the
    parent -> revision diff is queued, and the threads are carried forward when it SUCCEEDS."""
    if not revision.parents or not has_open_comments(conn, revision.parents[0]):
        return
    diffs = DiffRepository(conn)
    diff = RevisionDiff(
        id=uuid.uuid4().hex,
        project_id=revision.project_id,
        design_id=revision.design_id,
        revision_a=revision.parents[0],
        revision_b=revision.id,
        requester=revision.author,
        state=RevisionState.PENDING,
        create_time=now,
        update_time=now,
        carry_comments=True,
    )
    if not diffs.add(diff):
        existing = diffs.of_pair(revision.design_id, revision.parents[0], revision.id)
        assert existing is not None
        diffs.mark_carry_comments(existing.id)


class _Inputs:
    """Builds the engine's DiffInput of a revision from its blobs."""

    def __init__(self, blobs: FileBlobStore) -> None:
        self._blobs = blobs

    def of(self, revision: Revision, folder: Path) -> DiffInput:
        folder.mkdir(parents=True)
        mesh = revision.artifact("mesh.glb")
        if mesh is None or revision.properties is None:
            raise ValueError(f"{revision.name} has no mesh: it is {revision.state.value}")
        step: Path | None = None
        brep = revision.artifact("model.step")
        # The engine takes B-reps in millimetres: a script's model, or a STEP read in other
        # units than it declares, is stored as model.step; otherwise OpenCascade converts the
        # upload's own unit to mm.
        if brep is not None:
            step = _link(self._blobs.path(brep.sha256), folder / "model.step")
        elif revision.format == "step":
            step = _link(self._blobs.path(revision.sha256), folder / "model.step")
        script = None
        if revision.format == "cadquery":
            script = self._blobs.path(revision.sha256).read_text(encoding="utf-8")
        return DiffInput(
            mesh=_link(self._blobs.path(mesh.sha256), folder / "mesh.glb"),
            step=step,
            findings=tuple(finding_from_json(f) for f in revision.findings),
            properties=properties_from_json(revision.properties),
            parameters=dict(revision.parameters),
            script=script,
        )

    def store(self, name: str, path: Path) -> ArtifactRef:
        sha256, size = self._blobs.put_file(path)
        media_type = DIFF_ARTIFACT_MEDIA_TYPES.get(name, "application/octet-stream")
        return ArtifactRef(name, sha256, size, media_type)


class DiffJobs:
    """The revision processor's queue of diffs (see services.design.processing.JobQueue)."""

    kind = "diff"

    def __init__(self, engine: Engine, blobs: FileBlobStore, clock: Clock) -> None:
        self._engine = engine
        self._inputs = _Inputs(blobs)
        self._clock = clock

    def leases(self, conn: Connection) -> Leases:
        return DiffRepository(conn).leases

    def load(self, conn: Connection, job_id: str) -> RevisionDiff | None:
        return DiffRepository(conn).by_id(job_id)

    def prepare(self, job: RevisionDiff, work: Path) -> tuple[Callable[[DiffJob], Any], DiffJob]:
        with read_only(self._engine) as conn:
            revs = RevisionRepository(conn)
            a, b = revs.get(job.design_id, job.revision_a), revs.get(job.design_id, job.revision_b)
        assert a is not None and b is not None
        (work / "out").mkdir(parents=True)
        return run_diff, DiffJob(
            self._inputs.of(a, work / "a"), self._inputs.of(b, work / "b"), work / "out"
        )

    def finish(self, owner: str, job: RevisionDiff, outcome: DiffOutcome) -> None:
        result = outcome.result
        if result is None:
            self.fail(owner, job, processing_error(Failure(outcome.failure), outcome.reason))
            return
        artifacts = tuple(
            self._inputs.store(name, path)
            for name, path in sorted(result.artifacts.items())
            if name in DIFF_ARTIFACT_MEDIA_TYPES
        )
        now = self._clock()
        with self._engine.begin() as conn:
            diffs = DiffRepository(conn)
            if not diffs.finish(
                owner,
                job.id,
                now,
                RevisionState.SUCCEEDED,
                result=diff_to_json(result),
                artifacts=artifacts,
            ):
                log.warning("lost the claim on %s; another replica finishes it", job.name)
                return
            finished = diffs.by_id(job.id)
            assert finished is not None
            if finished.carry_comments:
                carried = carry_forward(conn, job.revision_a, job.revision_b, result, now)
                log.info("carried %d comment threads to %s", carried, job.revision_b)
            emit(
                conn,
                job.project_id,
                job.design_id,
                "design.revision.diffed",
                finished.name,
                organization_of(finished.requester),
                events_pb2.RevisionDiffed(diff=diff_proto(finished)),
            )
        log.info("%s SUCCEEDED", job.name)

    def fail(self, owner: str, job: RevisionDiff, error: ProcessingError) -> None:
        with self._engine.begin() as conn:
            DiffRepository(conn).finish(
                owner, job.id, self._clock(), RevisionState.FAILED, error=error
            )
        log.info("%s FAILED: %s", job.name, error.message)


class MergeJobs:
    """The revision processor's queue of merges: a merge without conflict becomes a PENDING
    revision (parents: the target head and the source) that the processor then ingests."""

    kind = "merge"

    def __init__(self, engine: Engine, blobs: FileBlobStore, clock: Clock) -> None:
        self._engine = engine
        self._blobs = blobs
        self._inputs = _Inputs(blobs)
        self._clock = clock

    def leases(self, conn: Connection) -> Leases:
        return MergeRepository(conn).leases

    def load(self, conn: Connection, job_id: str) -> RevisionMerge | None:
        return MergeRepository(conn).by_id(job_id)

    def prepare(self, job: RevisionMerge, work: Path) -> tuple[Callable[[MergeJob], Any], MergeJob]:
        with read_only(self._engine) as conn:
            revs = RevisionRepository(conn)
            found = [revs.get(job.design_id, r) for r in (job.base, job.ours, job.source)]
        base, ours, theirs = found
        assert base is not None and ours is not None and theirs is not None
        (work / "out").mkdir(parents=True)
        return run_merge, MergeJob(
            self._inputs.of(base, work / "base"),
            self._inputs.of(ours, work / "ours"),
            self._inputs.of(theirs, work / "theirs"),
            work / "out",
        )

    def finish(self, owner: str, job: RevisionMerge, outcome: MergeOutcome) -> None:
        result = outcome.result
        if result is None:
            self.fail(owner, job, processing_error(Failure(outcome.failure), outcome.reason))
            return
        ours_diff, theirs_diff = diff_to_json(result.ours), diff_to_json(result.theirs)
        now = self._clock()
        if result.conflict is not None:
            with self._engine.begin() as conn:
                merges = MergeRepository(conn)
                if not merges.finish(
                    owner,
                    job.id,
                    now,
                    MergeState.CONFLICTED,
                    conflict=conflict_to_json(result.conflict),
                    ours_diff=ours_diff,
                    theirs_diff=theirs_diff,
                ):
                    return
                finished = merges.by_id(job.id)
                assert finished is not None
                emit(
                    conn,
                    job.project_id,
                    job.design_id,
                    "design.merge.conflicted",
                    job.name,
                    organization_of(job.author),
                    events_pb2.MergeConflicted(merge=merge_proto(finished)),
                )
            log.info("%s CONFLICTED: %s", job.name, result.conflict.reason)
            return
        if result.merged is None or result.merged_format is None:
            missing = ProcessingError(CODE_INTERNAL, "the engine returned no merged model")
            self.fail(owner, job, missing)
            return
        sha256, size = self._blobs.put_file(result.merged)
        with self._engine.begin() as conn:
            revs = RevisionRepository(conn)
            design = SqlRepository(conn).get_design(job.project_id, job.design_id)
            assert design is not None
            revision = Revision(
                id=uuid.uuid4().hex,
                project_id=job.project_id,
                design_id=job.design_id,
                parents=(job.ours, job.source),
                # Intended for the target branch; its head moves there only when accepted.
                branch=job.target_branch,
                author=job.author,
                message=f"Merge {job.revision_name(job.source)} into {job.target_branch}",
                format=result.merged_format,
                units="mm",
                sha256=sha256,
                size_bytes=size,
                parameters=dict(result.merged_parameters),
                rule_set=design.rule_set,
                material=design.material,
                rule_overrides=dict(design.rule_overrides),
                state=RevisionState.PENDING,
                create_time=now,
                update_time=now,
            )
            merges = MergeRepository(conn)
            if not merges.finish(
                owner,
                job.id,
                now,
                MergeState.PROPOSED,
                merged=revision.id,
                ours_diff=ours_diff,
                theirs_diff=theirs_diff,
            ):
                return
            revs.add(revision)
            emit(
                conn,
                job.project_id,
                job.design_id,
                "design.revision.pushed",
                revision.name,
                organization_of(job.author),
                events_pb2.RevisionPushed(revision=revision_proto(revision)),
            )
        log.info("%s PROPOSED %s", job.name, revision.name)

    def fail(self, owner: str, job: RevisionMerge, error: ProcessingError) -> None:
        with self._engine.begin() as conn:
            MergeRepository(conn).finish(
                owner, job.id, self._clock(), MergeState.FAILED, error=error
            )
        log.info("%s FAILED: %s", job.name, error.message)
