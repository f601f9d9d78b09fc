"""Processing of pushed revisions, off the request path and durable across restarts.

A processor thread in each service replica claims waiting revisions from the database under a
lease (so two replicas never process one revision, and a crashed replica's claims run out),
runs the geometry engine's `ingest` in a pool of spawned worker processes, stores the artifacts
as blobs, then records the outcome, the findings and the `design.revision.validated` event in
one transaction.

When processing FAILS, the failed revision stays readable with its error and has no artifacts,
and the branch head moves back to its first parent by compare-and-set (or the branch is removed
if it was the branch's first revision): a failed revision never stays a branch head, so the next
push starts from the last good one. Nothing can have been pushed on top of it meanwhile, because
a push needs a SUCCEEDED base.

The same loop, pool and leases run the diffs and merges of services.design.diffs (JobQueue),
after the waiting revisions; jobs in flight at shutdown go back to PENDING as revisions do.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import multiprocessing
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from cofab.design.v1 import events_pb2
from services.design.adapters.blobstore import FileBlobStore
from services.design.adapters.repository import SqlRepository
from services.design.adapters.revision_repository import RevisionRepository, organization_of
from services.design.convert import revision_proto, summary_proto
from services.design.diffs.jobs import enqueue_comment_diff
from services.design.diffs.repository import Leases
from services.design.domain.revisions import (
    ARTIFACT_MEDIA_TYPES,
    CODE_INTERNAL,
    ArtifactRef,
    ProcessingError,
    Revision,
    RevisionState,
    processing_error,
)
from services.design.geometry.codec import finding_json, properties_json
from services.design.geometry.types import Failure, IngestRequest
from services.design.ingest_worker import IngestOutcome, run_ingest
from services.design.reviews import ReviewApplication
from services.shared import outbox
from services.shared.db import read_only, utcnow
from services.shared.events import make_envelope

log = logging.getLogger(__name__)

SOURCE = "//cofab/design"
SOURCE_SUFFIX = {
    "step": ".step",
    "stl": ".stl",
    "obj": ".obj",
    "3mf": ".3mf",
    "gltf": ".gltf",
    "glb": ".glb",
    "ply": ".ply",
    "off": ".off",
    "cadquery": ".py",
}
Ingest = Callable[[IngestRequest], IngestOutcome]


class Job(Protocol):
    """A claimed diff or merge (see services.design.diffs.jobs): what the loop itself reads."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def attempts(self) -> int: ...


class JobQueue(Protocol):
    """Work other than ingest that the processor claims under its lease and runs in its pool."""

    kind: str  # names the work directories of its jobs

    def leases(self, conn: Connection) -> Leases: ...

    def load(self, conn: Connection, job_id: str) -> Job | None: ...

    # The job is the one `load` returned (each queue knows its own type).
    def prepare(self, job: Any, work: Path) -> tuple[Callable[[Any], Any], Any]:
        """The module-level function a worker process runs, and its picklable argument."""
        ...

    def finish(self, owner: str, job: Any, outcome: Any) -> None:
        """Records the worker's outcome (its own transaction, with the events)."""
        ...

    def fail(self, owner: str, job: Any, error: ProcessingError) -> None: ...


class RevisionProcessor:
    """Claims and processes waiting revisions until stopped. `ingest` must be a module-level
    function (it is sent to spawned worker processes)."""

    def __init__(
        self,
        engine: Engine,
        blobs: FileBlobStore,
        work_root: Path,
        workers: int = 2,
        attempts: int = 3,
        lease_seconds: float = 60.0,
        ingest: Ingest = run_ingest,
        poll_seconds: float = 0.5,
        clock: Callable[[], dt.datetime] = utcnow,
        jobs: Sequence[JobQueue] = (),
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._work_root = work_root
        self._workers = workers
        self._attempts = attempts
        self._lease = dt.timedelta(seconds=lease_seconds)
        self._ingest = ingest
        self._poll = poll_seconds
        self._clock = clock
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: cf.ProcessPoolExecutor | None = None
        # Diffs and merges, claimed after revisions (a pushed revision is what users wait for).
        self._queues = tuple(jobs)
        self._jobs: dict[cf.Future[Any], tuple[JobQueue, Job]] = {}

    # lifecycle

    def start(self) -> None:
        self._work_root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="revision-processor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops claiming, gives in-flight revisions back (PENDING: the next process picks them
        up at once) and ends the worker processes."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    def wake(self) -> None:
        """A revision was pushed: look for work now rather than at the next poll."""
        self._wake.set()

    # the loop

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # spawn: a fork of a threaded gRPC server process is not safe.
        return cf.ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn")
        )

    def _run(self) -> None:
        self._pool = self._new_pool()
        inflight: dict[cf.Future[IngestOutcome], Revision] = {}
        try:
            while not self._stopping.is_set():
                try:
                    self._step(inflight)
                except Exception:
                    # The database may be briefly unreachable; claims are retried next round.
                    log.exception("revision processing round failed")
                    self._stopping.wait(self._poll)
        finally:
            self._shutdown(inflight)

    def _step(self, inflight: dict[cf.Future[IngestOutcome], Revision]) -> None:
        self._renew(list(inflight.values()))
        self._renew_jobs()
        while len(inflight) + len(self._jobs) < self._workers and not self._stopping.is_set():
            revision = self._claim(list(inflight.values()))
            if revision is None:
                break
            if revision.attempts > self._attempts:
                self._finish_failed(
                    revision,
                    ProcessingError(
                        CODE_INTERNAL,
                        f"processing was interrupted {revision.attempts - 1} times "
                        "(worker or service crashes); giving up",
                    ),
                )
                continue
            assert self._pool is not None
            inflight[self._pool.submit(self._ingest, self._request(revision))] = revision
        for queue in self._queues:
            while len(inflight) + len(self._jobs) < self._workers and not self._stopping.is_set():
                if not self._submit_job(queue):
                    break
        if not inflight and not self._jobs:
            self._wake.wait(self._poll)
            self._wake.clear()
            return
        done, _ = cf.wait(
            [*inflight, *self._jobs], timeout=self._poll, return_when=cf.FIRST_COMPLETED
        )
        broken = False
        for future in done:
            if future in self._jobs:
                broken = self._finish_job(future) or broken
                continue
            revision = inflight.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken = True
                self._after_crash(revision)
                continue
            except Exception as exc:
                log.exception("ingest of %s raised", revision.name)
                self._finish_failed(
                    revision, ProcessingError(CODE_INTERNAL, f"processing failed: {exc!r}")
                )
                continue
            self._finish(revision, outcome)
        if broken:
            # Every other task of a broken pool is lost too; hand them back and start afresh.
            for revision in inflight.values():
                self._after_crash(revision)
            inflight.clear()
            for queue, job in self._jobs.values():
                self._job_after_crash(queue, job)
            self._jobs.clear()
            self._terminate_pool()
            self._pool = self._new_pool()

    def _shutdown(self, inflight: dict[cf.Future[IngestOutcome], Revision]) -> None:
        for revision in inflight.values():
            try:
                with self._engine.begin() as conn:
                    RevisionRepository(conn).unclaim(self.owner, revision.id, self._clock())
            except Exception:
                log.exception("could not give %s back; its lease will run out", revision.name)
        for queue, job in self._jobs.values():
            try:
                with self._engine.begin() as conn:
                    queue.leases(conn).unclaim(self.owner, job.id, self._clock())
            except Exception:
                log.exception("could not give %s back; its lease will run out", job.name)
        self._jobs.clear()
        self._terminate_pool()

    def _terminate_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # A running task cannot be cancelled through the executor: end its process.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)

    # diffs and merges

    def _submit_job(self, queue: JobQueue) -> bool:
        """Claims one job of `queue` and sends it to the pool; False when none is waiting."""
        exclude = {job.id for q, job in self._jobs.values() if q is queue}
        with read_only(self._engine) as conn:
            if not queue.leases(conn).waiting(self._clock(), exclude):
                return False
        with self._engine.begin() as conn:
            job_id = queue.leases(conn).claim(self.owner, self._clock(), self._lease, exclude)
            job = queue.load(conn, job_id) if job_id is not None else None
        if job is None:
            return False
        if job.attempts > self._attempts:
            queue.fail(
                self.owner,
                job,
                ProcessingError(
                    CODE_INTERNAL,
                    f"processing was interrupted {job.attempts - 1} times; giving up",
                ),
            )
            return True
        work = self._job_dir(queue, job)
        shutil.rmtree(work, ignore_errors=True)
        try:
            function, argument = queue.prepare(job, work)
        except Exception as exc:
            log.exception("could not prepare %s", job.name)
            queue.fail(
                self.owner, job, ProcessingError(CODE_INTERNAL, f"preparation failed: {exc}")
            )
            shutil.rmtree(work, ignore_errors=True)
            return True
        assert self._pool is not None
        self._jobs[self._pool.submit(function, argument)] = (queue, job)
        return True

    def _finish_job(self, future: cf.Future[Any]) -> bool:
        """Records a finished job; True when the pool broke under it."""
        queue, job = self._jobs.pop(future)
        try:
            outcome = future.result()
        except BrokenProcessPool:
            self._job_after_crash(queue, job)
            return True
        except Exception as exc:
            log.exception("%s raised", job.name)
            queue.fail(
                self.owner, job, ProcessingError(CODE_INTERNAL, f"processing failed: {exc!r}")
            )
            shutil.rmtree(self._job_dir(queue, job), ignore_errors=True)
            return False
        try:
            queue.finish(self.owner, job, outcome)
        finally:
            shutil.rmtree(self._job_dir(queue, job), ignore_errors=True)
        return False

    def _job_after_crash(self, queue: JobQueue, job: Job) -> None:
        shutil.rmtree(self._job_dir(queue, job), ignore_errors=True)
        if job.attempts >= self._attempts:
            queue.fail(
                self.owner,
                job,
                ProcessingError(
                    CODE_INTERNAL,
                    f"the geometry worker process crashed on this job {job.attempts} times; "
                    "giving up",
                ),
            )
            return
        with self._engine.begin() as conn:
            queue.leases(conn).unclaim(self.owner, job.id, self._clock())

    def _renew_jobs(self) -> None:
        if not self._jobs:
            return
        until = self._clock() + self._lease
        with self._engine.begin() as conn:
            for queue in self._queues:
                ids = [job.id for q, job in self._jobs.values() if q is queue]
                queue.leases(conn).renew(self.owner, ids, until)

    def _job_dir(self, queue: JobQueue, job: Job) -> Path:
        return self._work_root / f"{queue.kind}-{job.id}"

    # database steps

    def _claim(self, inflight: list[Revision]) -> Revision | None:
        exclude = {r.id for r in inflight}
        # Polls read first: on SQLite a write transaction would take the database's lock.
        with read_only(self._engine) as conn:
            if not RevisionRepository(conn).waiting(self._clock(), exclude):
                return None
        busy = frozenset(organization_of(r.author) for r in inflight)
        with self._engine.begin() as conn:
            return RevisionRepository(conn).claim(
                self.owner, self._clock(), self._lease, exclude, busy
            )

    def _renew(self, claimed: list[Revision]) -> None:
        if claimed:
            with self._engine.begin() as conn:
                RevisionRepository(conn).renew(
                    self.owner, [r.id for r in claimed], self._clock() + self._lease
                )

    def _after_crash(self, revision: Revision) -> None:
        if revision.attempts >= self._attempts:
            self._finish_failed(
                revision,
                ProcessingError(
                    CODE_INTERNAL,
                    f"the geometry worker process crashed on this revision "
                    f"{revision.attempts} times; giving up",
                ),
            )
            return
        log.warning("worker crashed on %s (attempt %d); retrying", revision.name, revision.attempts)
        with self._engine.begin() as conn:
            RevisionRepository(conn).unclaim(self.owner, revision.id, self._clock())

    def _request(self, revision: Revision) -> IngestRequest:
        work = self._work_root / revision.id
        shutil.rmtree(work, ignore_errors=True)
        (work / "in").mkdir(parents=True)
        (work / "out").mkdir()
        source = work / "in" / f"source{SOURCE_SUFFIX[revision.format]}"
        try:
            os.link(self._blobs.path(revision.sha256), source)
        except OSError:
            shutil.copyfile(self._blobs.path(revision.sha256), source)
        return IngestRequest(
            source=source,
            format=revision.format,
            units=revision.units,
            work_dir=work / "out",
            rule_set=revision.rule_set,
            parameters=dict(revision.parameters),
            rule_overrides=dict(revision.rule_overrides),
            material=revision.material,
        )

    def _finish(self, revision: Revision, outcome: IngestOutcome) -> None:
        try:
            if outcome.result is None:
                self._finish_failed(
                    revision, processing_error(Failure(outcome.failure), outcome.reason)
                )
                return
            result = outcome.result
            artifacts = tuple(self._store(name, path) for name, path in result.artifacts.items())
            self._record(
                revision,
                RevisionState.SUCCEEDED,
                properties=properties_json(result.properties),
                findings=[finding_json(f) for f in result.findings],
                artifacts=artifacts,
                parameters=dict(result.parameters) if result.parameters else None,
            )
        finally:
            shutil.rmtree(self._work_root / revision.id, ignore_errors=True)

    def _store(self, name: str, path: Path) -> ArtifactRef:
        sha256, size = self._blobs.put_file(path)
        media_type = ARTIFACT_MEDIA_TYPES.get(name, "application/octet-stream")
        return ArtifactRef(name, sha256, size, media_type)

    def _finish_failed(self, revision: Revision, error: ProcessingError) -> None:
        self._record(revision, RevisionState.FAILED, error=error)
        shutil.rmtree(self._work_root / revision.id, ignore_errors=True)

    def _record(
        self,
        revision: Revision,
        state: RevisionState,
        error: ProcessingError | None = None,
        properties: Mapping[str, Any] | None = None,
        findings: list[Mapping[str, Any]] | None = None,
        artifacts: tuple[ArtifactRef, ...] = (),
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """The outcome, the head roll-back of a failure and the event, in one transaction."""
        now = self._clock()
        with self._engine.begin() as conn:
            revs = RevisionRepository(conn)
            if not revs.finish(
                self.owner,
                revision.id,
                now,
                state,
                error=error,
                properties=properties,
                findings=findings,
                artifacts=artifacts,
                parameters=parameters,
            ):
                log.warning("lost the claim on %s; another replica finishes it", revision.name)
                return
            if state is RevisionState.FAILED:
                branch = revs.get_branch(revision.project_id, revision.design_id, revision.branch)
                if branch is not None and branch.head == revision.id:
                    if revision.parents:
                        revs.move_branch(
                            revision.design_id,
                            revision.branch,
                            revision.id,
                            revision.parents[0],
                            now,
                        )
                    else:
                        revs.delete_branch(revision.design_id, revision.branch, revision.id)
            finished = revs.by_id(revision.id)
            assert finished is not None
            author_org = organization_of(finished.author)
            envelope = make_envelope(
                source=SOURCE,
                event_type="design.revision.validated",
                subject=finished.name,
                organization=author_org,
                data=events_pb2.RevisionValidated(
                    revision=revision_proto(finished), findings_summary=summary_proto(finished)
                ),
                audience=SqlRepository(conn).active_member_organizations(finished.project_id),
            )
            outbox.enqueue(conn, envelope, key=finished.design_id)
            if state is RevisionState.SUCCEEDED:
                branch = revs.get_branch(finished.project_id, finished.design_id, finished.branch)
                if branch is not None and branch.head == finished.id:
                    # Open reviews of the branch move to (or are cancelled by) the newer head.
                    # A proposed merge is no head until accepted (services.design.diffs).
                    ReviewApplication.supersede_open_reviews(
                        conn, finished.project_id, finished.design_id, finished.branch, finished.id
                    )
                enqueue_comment_diff(conn, finished, now)
        log.info("%s %s", finished.name, state.value)
