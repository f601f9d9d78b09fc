"""Use cases of design revisions: push (compare-and-set of the branch head), read, release.

Each runs in one transaction with its audit entry, outbox event and request-id record. The
content of a push is staged in the blob store first and made visible as the transaction's last
step, so a refused push leaves neither a revision nor a blob.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from cofab.design.v1 import events_pb2
from services.design.adapters.repository import SqlRepository
from services.design.adapters.revision_repository import RevisionRepository
from services.design.convert import revision_proto
from services.design.domain import Design
from services.design.domain.ports import BlobUpload, GeometryChecks, MaterialInfo, RuleSetInfo
from services.design.domain.revisions import (
    ARTIFACT_MEDIA_TYPES,
    MEDIA_TYPES,
    Branch,
    PushHeader,
    Revision,
    RevisionState,
    check_branch,
    check_format,
    check_message,
    check_parameters,
    check_sha256,
    check_size,
    check_units,
    ingest_failure,
    require_succeeded_base,
)
from services.design.geometry.types import IngestError, ParameterValue
from services.shared import audit, authz, idempotency, names, outbox
from services.shared.db import read_only, utcnow
from services.shared.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    excerpt,
)
from services.shared.events import make_envelope
from services.shared.identity import Principal, Role
from services.shared.paging import Listed, Page, page_of

SOURCE = "//cofab/design"
REVISION_PATTERN = "projects/{project}/designs/{design}/revisions/{revision}"
DESIGN_PATTERN = "projects/{project}/designs/{design}"
Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Download:
    """What to stream for a download: a blob, its size and media type."""

    sha256: str
    size_bytes: int
    media_type: str


def parse_revision_name(name: str, field: str = "name") -> tuple[str, str, str]:
    project_id, design_id, revision_id = names.parse(name, REVISION_PATTERN, field)
    return project_id, design_id, revision_id


class RevisionApplication:
    """Revisions and branches of designs, as the gRPC API exposes them."""

    def __init__(
        self,
        engine: Engine,
        geometry: GeometryChecks,
        max_upload_bytes: int,
        clock: Clock = utcnow,
        on_pushed: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._geometry = geometry
        self.max_upload_bytes = max_upload_bytes
        self._clock = clock
        self._on_pushed = on_pushed

    # push

    def check_header(
        self,
        parent: str,
        branch: str,
        base_revision: str,
        message: str,
        format: str,
        units: str,
        sha256: str,
        size_bytes: int,
        parameters: Mapping[str, ParameterValue],
        request_id: str,
    ) -> PushHeader:
        """Validates a push header before any byte is read (cheap, no database)."""
        project_id, design_id = names.parse(parent, DESIGN_PATTERN, "parent")
        base: str | None = None
        if base_revision:
            base_project, base_design, base = parse_revision_name(base_revision, "base_revision")
            if (base_project, base_design) != (project_id, design_id):
                raise InvalidArgument.field(
                    "base_revision", f"{base_revision!r} is not a revision of {parent}"
                )
        format = check_format(format)
        return PushHeader(
            project_id=project_id,
            design_id=design_id,
            branch=check_branch(branch),
            base_revision=base,
            message=check_message(message),
            format=format,
            units=check_units(units),
            sha256=check_sha256(sha256),
            size_bytes=check_size(size_bytes, self.max_upload_bytes),
            # A script's parameters are checked against its declarations once it has arrived.
            parameters=(
                dict(parameters)
                if format == "cadquery"
                else check_parameters(format, parameters, None)
            ),
            request_id=idempotency.check_request_id(request_id),
        )

    def authorize_push(self, principal: Principal, header: PushHeader) -> Revision | None:
        """Checks the caller may push to the design before the upload starts; returns the
        revision of an earlier push with the same request_id, if any."""
        with read_only(self._engine) as conn:
            authz.require_project_role(conn, principal, header.project_id, Role.EDITOR)
            self._design(SqlRepository(conn), header.project_id, header.design_id)
            earlier = idempotency.replayed(conn, principal, "PushRevision", header.request_id)
            if earlier is not None:
                return self._revision_named(RevisionRepository(conn), earlier)
        return None

    def check_content(self, header: PushHeader, upload: BlobUpload) -> PushHeader:
        """The received bytes against the header, then the engine's structural check (and a
        script's declared parameters). Raises the error the caller gets; commits nothing."""
        if upload.size != header.size_bytes:
            raise InvalidArgument.field(
                "size_bytes",
                f"declared {header.size_bytes} bytes but the upload had {upload.size}",
            )
        received = upload.sha256()
        if received != header.sha256:
            raise InvalidArgument.field(
                "sha256", f"declared {header.sha256} but the upload's sha256 is {received}"
            )
        try:
            self._geometry.check_upload(upload.staged_path, header.format)
            if header.format == "cadquery":
                source = upload.staged_path.read_text(encoding="utf-8", errors="replace")
                declared = self._geometry.script_parameters(source)
                checked = check_parameters(header.format, header.parameters, declared)
            else:
                checked = check_parameters(header.format, header.parameters, None)
        except IngestError as exc:
            raise ingest_failure(exc.failure, exc.reason) from None
        return PushHeader(**{**header.__dict__, "parameters": checked})

    def push(self, principal: Principal, header: PushHeader, upload: BlobUpload) -> Revision:
        """Creates the PENDING revision and moves the branch head by compare-and-set, in one
        transaction; the staged content becomes a blob as its last step. The upload is
        committed or aborted when this returns."""
        try:
            revision = self._push(principal, header, upload)
        except BaseException:
            upload.abort()
            raise
        self._on_pushed()
        return revision

    def _push(self, principal: Principal, header: PushHeader, upload: BlobUpload) -> Revision:
        with self._engine.begin() as conn:
            repo, revs = SqlRepository(conn), RevisionRepository(conn)
            authz.require_project_role(conn, principal, header.project_id, Role.EDITOR)
            earlier = idempotency.replayed(conn, principal, "PushRevision", header.request_id)
            if earlier is not None:
                upload.abort()
                return self._revision_named(revs, earlier)
            design = self._design(repo, header.project_id, header.design_id)
            now = self._clock()
            revision = Revision(
                id=uuid.uuid4().hex,
                project_id=design.project_id,
                design_id=design.id,
                parents=(header.base_revision,) if header.base_revision else (),
                branch=header.branch,
                author=principal.user_name,
                message=header.message,
                format=header.format,
                units=header.units,
                sha256=header.sha256,
                size_bytes=header.size_bytes,
                parameters=dict(header.parameters),
                rule_set=design.rule_set,
                material=design.material,
                rule_overrides=dict(design.rule_overrides),
                state=RevisionState.PENDING,
                create_time=now,
                update_time=now,
            )
            if header.base_revision is not None:
                base = revs.get(design.id, header.base_revision)
                if base is None:
                    raise NotFound(f"{design.name}/revisions/{header.base_revision} not found")
                require_succeeded_base(base)
            revs.add(revision)
            self._move_head(revs, design, header, revision.id, now)
            self._emit(
                conn,
                principal,
                "design.revision.pushed",
                revision,
                events_pb2.RevisionPushed(revision=revision_proto(revision)),
            )
            audit.record(
                conn,
                principal,
                "revision.push",
                revision.name,
                {"branch": revision.branch, "sha256": revision.sha256},
            )
            idempotency.remember(conn, principal, "PushRevision", header.request_id, revision.name)
            upload.commit()
        return revision

    def _move_head(
        self,
        revs: RevisionRepository,
        design: Design,
        header: PushHeader,
        revision_id: str,
        now: dt.datetime,
    ) -> None:
        branch = revs.get_branch(design.project_id, design.id, header.branch)
        moved = False
        if branch is None and header.base_revision is None:
            moved = revs.create_branch(design.id, header.branch, revision_id, now)
        elif branch is None and header.base_revision is not None:
            # A new branch starting at an existing revision.
            moved = revs.create_branch(design.id, header.branch, revision_id, now)
        elif branch is not None and header.base_revision is not None:
            moved = revs.move_branch(
                design.id, header.branch, header.base_revision, revision_id, now
            )
        if not moved:
            current = revs.get_branch(design.project_id, design.id, header.branch)
            head = current.head_name if current is not None else ""
            expected = (
                f"{design.name}/revisions/{header.base_revision}"
                if header.base_revision
                else "no head (a new branch)"
            )
            raise Conflict(
                f"branch {header.branch!r} of {design.name} has head {head or '(none)'}, "
                f"not {expected}: if your file builds on that head, push it with base_revision "
                f"{head or '(empty)'} (cofab revision push --base), or push to another branch and "
                f"merge that into {header.branch!r} (cofab revision merge)",
                current=head,
            )

    # reads

    def get_revision(self, principal: Principal, name: str) -> Revision:
        with self._engine.begin() as conn:
            revision = self._readable(conn, principal, name)
            audit.record(conn, principal, "revision.read", revision.name)
        return revision

    def peek_revision(self, principal: Principal, name: str) -> Revision:
        """The revision without an audit entry: the polls of a watch audited once already."""
        with read_only(self._engine) as conn:
            return self._readable(conn, principal, name)

    def list_revisions(
        self, principal: Principal, parent: str, branch: str, page: Page
    ) -> Listed[Revision]:
        project_id, design_id = names.parse(parent, DESIGN_PATTERN, "parent")
        only = check_branch(branch) if branch else None
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            self._design(SqlRepository(conn), project_id, design_id)
            rows = RevisionRepository(conn).list_revisions(
                design_id, only, page.after_seq, page.limit + 1
            )
            audit.record(conn, principal, "revision.list", f"{parent}/revisions")
        return page_of(page, rows)

    def list_branches(self, principal: Principal, parent: str, page: Page) -> Listed[Branch]:
        project_id, design_id = names.parse(parent, DESIGN_PATTERN, "parent")
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            self._design(SqlRepository(conn), project_id, design_id)
            rows = RevisionRepository(conn).list_branches(
                project_id, design_id, page.after_seq, page.limit + 1
            )
            audit.record(conn, principal, "branch.list", f"{parent}/branches")
        return page_of(page, rows)

    def download(self, principal: Principal, name: str, artifact: str) -> Download:
        """What to stream: the original content, or a named artifact of a SUCCEEDED revision."""
        with self._engine.begin() as conn:
            revision = self._readable(conn, principal, name)
            if not artifact:
                found = Download(revision.sha256, revision.size_bytes, MEDIA_TYPES[revision.format])
            else:
                if artifact not in ARTIFACT_MEDIA_TYPES:
                    raise InvalidArgument.field(
                        "artifact",
                        f"{artifact!r} is not one of {', '.join(ARTIFACT_MEDIA_TYPES)}",
                    )
                ref = revision.artifact(artifact)
                if ref is None:
                    raise FailedPrecondition(
                        f"{revision.name} has no artifact {artifact!r}: it is "
                        f"{revision.state.value}",
                        [
                            PreconditionViolation(
                                "REVISION_STATE", revision.name, f"no artifact {artifact}"
                            )
                        ],
                    )
                found = Download(ref.sha256, ref.size_bytes, ref.media_type)
            audit.record(
                conn, principal, "revision.download", revision.name, {"artifact": artifact}
            )
        return found

    @property
    def geometry(self) -> GeometryChecks:
        """The geometry engine's fast checks (its rule sets and materials too)."""
        return self._geometry

    def rule_sets(self) -> list[RuleSetInfo]:
        return [self._geometry.rule_sets()[key] for key in sorted(self._geometry.rule_sets())]

    def rule_set(self, rule_set_id: str) -> RuleSetInfo:
        found = self._geometry.rule_sets().get(rule_set_id)
        if found is None:
            raise NotFound(f"rule set {excerpt(rule_set_id)} not found; ListRuleSets lists them")
        return found

    def materials(self) -> list[MaterialInfo]:
        return [self._geometry.materials()[key] for key in sorted(self._geometry.materials())]

    # release

    def release(self, principal: Principal, name: str, request_id: str) -> Revision:
        """Releases a SUCCEEDED revision: owners, or the platform's service account (reviews)."""
        project_id, _, _ = parse_revision_name(name)
        with self._engine.begin() as conn:
            revs = RevisionRepository(conn)
            if principal.service_account:
                revision = self._revision_named(revs, name)
            else:
                role = authz.require_project_role(conn, principal, project_id, Role.VIEWER)
                revision = self._revision_named(revs, name)
                if role < Role.OWNER:
                    raise PermissionDenied(
                        f"the {role.name.lower()} role of {principal.organization_name} in "
                        f"projects/{project_id} does not allow releasing; it needs owner"
                    )
            earlier = idempotency.replayed(conn, principal, "ReleaseRevision", request_id)
            if earlier is not None or revision.released:
                return revision
            if revision.state is not RevisionState.SUCCEEDED:
                raise FailedPrecondition(
                    f"{revision.name} is {revision.state.value}; only a SUCCEEDED revision "
                    "can be released",
                    [
                        PreconditionViolation(
                            "REVISION_STATE", revision.name, f"revision is {revision.state.value}"
                        )
                    ],
                )
            now = self._clock()
            revs.release(revision.id, now)
            released = self._revision_named(revs, name)
            self._emit(
                conn,
                principal,
                "design.revision.released",
                released,
                events_pb2.RevisionReleased(revision=revision_proto(released)),
            )
            audit.record(conn, principal, "revision.release", released.name)
            idempotency.remember(conn, principal, "ReleaseRevision", request_id, released.name)
        return released

    # helpers

    def _emit(
        self,
        conn: Connection,
        principal: Principal,
        event_type: str,
        revision: Revision,
        payload: events_pb2.RevisionPushed | events_pb2.RevisionReleased,
    ) -> None:
        envelope = make_envelope(
            source=SOURCE,
            event_type=event_type,
            subject=revision.name,
            organization=principal.organization_name,
            data=payload,
            audience=SqlRepository(conn).active_member_organizations(revision.project_id),
        )
        # Keyed by design: a design's revision events stay in order.
        outbox.enqueue(conn, envelope, key=revision.design_id)

    def _readable(self, conn: Connection, principal: Principal, name: str) -> Revision:
        project_id, _, _ = parse_revision_name(name)
        authz.require_project_role(conn, principal, project_id, Role.VIEWER)
        return self._revision_named(RevisionRepository(conn), name)

    def _revision_named(self, revs: RevisionRepository, name: str) -> Revision:
        project_id, design_id, revision_id = parse_revision_name(name)
        revision = revs.get(design_id, revision_id)
        if revision is None or revision.project_id != project_id:
            raise NotFound(f"{name} not found")
        return revision

    def _design(self, repo: SqlRepository, project_id: str, design_id: str) -> Design:
        design = repo.get_design(project_id, design_id)
        if design is None:
            raise NotFound(f"projects/{project_id}/designs/{design_id} not found")
        return design
