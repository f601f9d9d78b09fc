"""Use cases of diffs and merges: ask for a diff (computed once per pair, off the request path),
read it and its pictures; propose a merge of a revision into a branch, accept or decline it.

Each runs in one transaction with its audit entry, outbox event and request-id record. The
geometry work itself happens in the revision processor (services.design.diffs.jobs).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from cofab.design.v1 import events_pb2
from services.design.adapters.repository import SqlRepository
from services.design.adapters.revision_repository import RevisionRepository
from services.design.convert import revision_proto
from services.design.diffs.convert import merge_proto
from services.design.diffs.domain import (
    DESIGN_PATTERN,
    DIFF_ARTIFACT_MEDIA_TYPES,
    DIFF_PATTERN,
    MERGE_PATTERN,
    MergeState,
    RevisionDiff,
    RevisionMerge,
    merge_base,
    require_comparable,
)
from services.design.diffs.jobs import emit
from services.design.diffs.repository import DiffRepository, MergeRepository, parent_graph
from services.design.domain import Design
from services.design.domain.revisions import Revision, RevisionState, check_branch
from services.design.reviews import ReviewApplication
from services.design.revisions import Download, parse_revision_name
from services.shared import audit, authz, idempotency, names
from services.shared.db import read_only, utcnow
from services.shared.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.shared.identity import Principal, Role

Clock = Callable[[], dt.datetime]


class DiffApplication:
    """Diffs and merges of a design's revisions, as the gRPC API exposes them."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock = utcnow,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._on_queued = on_queued

    # diffs

    def request_diff(
        self, principal: Principal, design: str, revision_a: str, revision_b: str
    ) -> RevisionDiff:
        """The diff of the pair: the existing one, or a new PENDING one the processor computes.
        A read for authorization (any member) and audit."""
        project_id, design_id = names.parse(design, DESIGN_PATTERN, "design")
        ids = []
        for field, name in (("revision_a", revision_a), ("revision_b", revision_b)):
            p, d, r = parse_revision_name(name, field)
            if (p, d) != (project_id, design_id):
                # Another design's revision is as unknown here as a missing one.
                raise NotFound(f"{name} not found in {design}")
            ids.append(r)
        a_id, b_id = ids
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            _design(conn, project_id, design_id)
            revs, diffs = RevisionRepository(conn), DiffRepository(conn)
            a = _revision(revs, project_id, design_id, a_id)
            b = _revision(revs, project_id, design_id, b_id)
            diff = diffs.of_pair(design_id, a_id, b_id)
            if diff is None:
                require_comparable(a, "revision_a")
                require_comparable(b, "revision_b")
                now = self._clock()
                diff = RevisionDiff(
                    id=uuid.uuid4().hex,
                    project_id=project_id,
                    design_id=design_id,
                    revision_a=a_id,
                    revision_b=b_id,
                    requester=principal.user_name,
                    state=RevisionState.PENDING,
                    create_time=now,
                    update_time=now,
                )
                if not diffs.add(diff):
                    diff = diffs.of_pair(design_id, a_id, b_id)
                    assert diff is not None
            audit.record(conn, principal, "revision.diff", diff.name)
        if diff.state is RevisionState.PENDING:
            self._on_queued()
        return diff

    def get_diff(self, principal: Principal, name: str) -> RevisionDiff:
        with self._engine.begin() as conn:
            diff = self._readable_diff(conn, principal, name)
            audit.record(conn, principal, "revision.diff.read", diff.name)
        return diff

    def peek_diff(self, principal: Principal, name: str) -> RevisionDiff:
        """The diff without an audit entry: the polls of a watch audited once already."""
        with read_only(self._engine) as conn:
            return self._readable_diff(conn, principal, name)

    def download_diff(self, principal: Principal, name: str, artifact: str) -> Download:
        if artifact not in DIFF_ARTIFACT_MEDIA_TYPES:
            raise InvalidArgument.field(
                "artifact", f"{artifact!r} is not one of {', '.join(DIFF_ARTIFACT_MEDIA_TYPES)}"
            )
        with self._engine.begin() as conn:
            diff = self._readable_diff(conn, principal, name)
            ref = diff.artifact(artifact)
            if ref is None:
                raise FailedPrecondition(
                    f"{diff.name} has no artifact {artifact!r}: it is {diff.state.value}",
                    [PreconditionViolation("DIFF_STATE", diff.name, f"no artifact {artifact}")],
                )
            audit.record(
                conn, principal, "revision.diff.download", diff.name, {"artifact": artifact}
            )
        return Download(ref.sha256, ref.size_bytes, ref.media_type)

    def _readable_diff(self, conn: Connection, principal: Principal, name: str) -> RevisionDiff:
        project_id, design_id, b_id, a_id = names.parse(name, DIFF_PATTERN, "name")
        authz.require_project_role(conn, principal, project_id, Role.VIEWER)
        diff = DiffRepository(conn).of_pair(design_id, a_id, b_id)
        if diff is None or diff.project_id != project_id:
            raise NotFound(f"{name} not found")
        return diff

    # merges

    def merge(
        self,
        principal: Principal,
        design: str,
        target_branch: str,
        source_revision: str,
        expected_head: str,
        request_id: str,
    ) -> RevisionMerge:
        """Proposes merging `source_revision` into `target_branch` (editors). The engine runs
        later, unless the source already descends from the head (a fast-forward: the source
        itself is the proposal)."""
        project_id, design_id = names.parse(design, DESIGN_PATTERN, "design")
        branch_name = check_branch(target_branch, "target_branch")
        p, d, source_id = parse_revision_name(source_revision, "source_revision")
        if (p, d) != (project_id, design_id):
            raise NotFound(f"{source_revision} not found in {design}")
        expected: str | None = None
        if expected_head:
            p, d, expected = parse_revision_name(expected_head, "expected_head")
            if (p, d) != (project_id, design_id):
                raise InvalidArgument.field(
                    "expected_head", f"{expected_head!r} is not a revision of {design}"
                )
        request_id = idempotency.check_request_id(request_id)
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.EDITOR)
            earlier = idempotency.replayed(conn, principal, "MergeRevisions", request_id)
            if earlier is not None:
                return self._merge_named(conn, earlier)
            design_obj = _design(conn, project_id, design_id)
            revs = RevisionRepository(conn)
            branch = revs.get_branch(project_id, design_id, branch_name)
            if branch is None:
                raise NotFound(f"{design_obj.name}/branches/{branch_name} not found")
            if expected is not None and branch.head != expected:
                raise Conflict(
                    f"branch {branch_name!r} of {design} has head {branch.head_name}, not "
                    f"{expected_head}: look at {branch.head_name} and merge again",
                    current=branch.head_name,
                )
            head = _revision(revs, project_id, design_id, branch.head)
            source = _revision(revs, project_id, design_id, source_id)
            require_comparable(head, "the head of the target branch")
            require_comparable(source, "source_revision")
            base = merge_base(parent_graph(conn, design_id), head.id, source.id)
            if base is None:
                raise FailedPrecondition(
                    f"{source.name} and {head.name} share no ancestor: nothing to merge from",
                    [PreconditionViolation("MERGE_BASE", source.name, "no common ancestor")],
                )
            if base == source.id:
                raise FailedPrecondition(
                    f"{source.name} is already part of branch {branch_name!r} (head {head.name})",
                    [PreconditionViolation("MERGE_BASE", source.name, "already merged")],
                )
            now = self._clock()
            fast_forward = base == head.id
            merge = RevisionMerge(
                id=uuid.uuid4().hex,
                project_id=project_id,
                design_id=design_id,
                target_branch=branch_name,
                base=base,
                ours=head.id,
                source=source.id,
                author=principal.user_name,
                state=MergeState.PROPOSED if fast_forward else MergeState.PENDING,
                create_time=now,
                update_time=now,
                merged=source.id if fast_forward else None,
            )
            MergeRepository(conn).add(merge)
            audit.record(
                conn,
                principal,
                "revision.merge",
                merge.name,
                {"branch": branch_name, "source": source.name, "head": head.name},
            )
            idempotency.remember(conn, principal, "MergeRevisions", request_id, merge.name)
        if not fast_forward:
            self._on_queued()
        return merge

    def get_merge(self, principal: Principal, name: str) -> RevisionMerge:
        with self._engine.begin() as conn:
            merge = self._readable_merge(conn, principal, name, Role.VIEWER)
            audit.record(conn, principal, "revision.merge.read", merge.name)
        return merge

    def peek_merge(self, principal: Principal, name: str) -> RevisionMerge:
        with read_only(self._engine) as conn:
            return self._readable_merge(conn, principal, name, Role.VIEWER)

    def accept(self, principal: Principal, name: str, request_id: str) -> RevisionMerge:
        """Moves the target branch head from the merge's `ours` to the merged revision by
        compare-and-set (its author, once the merged revision SUCCEEDED)."""
        request_id = idempotency.check_request_id(request_id)
        with self._engine.begin() as conn:
            merge = self._readable_merge(conn, principal, name, Role.EDITOR)
            if idempotency.replayed(conn, principal, "AcceptMerge", request_id) is not None:
                return merge
            if merge.author != principal.user_name:
                raise PermissionDenied(
                    f"only {merge.author}, who asked for {merge.name}, may accept it"
                )
            _require_state(merge, MergeState.PROPOSED, "accepted")
            assert merge.merged is not None
            revs = RevisionRepository(conn)
            merged = _revision(revs, merge.project_id, merge.design_id, merge.merged)
            require_comparable(merged, "merged_revision")
            now = self._clock()
            if not revs.move_branch(
                merge.design_id, merge.target_branch, merge.ours, merged.id, now
            ):
                branch = revs.get_branch(merge.project_id, merge.design_id, merge.target_branch)
                head = branch.head_name if branch is not None else "(none: it was removed)"
                raise Conflict(
                    f"branch {merge.target_branch!r} moved on to {head} since {merge.name} was "
                    f"proposed on {merge.revision_name(merge.ours)}: merge again onto the new head",
                    current=head if branch is not None else "",
                )
            MergeRepository(conn).set_state(merge.id, MergeState.PROPOSED, MergeState.ACCEPTED, now)
            accepted = self._merge_named(conn, merge.name)
            ReviewApplication.supersede_open_reviews(
                conn, merge.project_id, merge.design_id, merge.target_branch, merged.id
            )
            emit(
                conn,
                merge.project_id,
                merge.design_id,
                "design.merged",
                merge.name,
                principal.organization_name,
                events_pb2.Merged(merge=merge_proto(accepted), revision=revision_proto(merged)),
            )
            audit.record(
                conn, principal, "revision.merge.accept", merge.name, {"head": merged.name}
            )
            idempotency.remember(conn, principal, "AcceptMerge", request_id, merge.name)
        return accepted

    def decline(self, principal: Principal, name: str, request_id: str) -> RevisionMerge:
        """Marks a PROPOSED or CONFLICTED merge declined (its author or a project owner)."""
        request_id = idempotency.check_request_id(request_id)
        with self._engine.begin() as conn:
            merge = self._readable_merge(conn, principal, name, Role.EDITOR)
            if idempotency.replayed(conn, principal, "DeclineMerge", request_id) is not None:
                return merge
            role = authz.project_role(conn, principal, merge.project_id)
            if merge.author != principal.user_name and role is not Role.OWNER:
                raise PermissionDenied(
                    f"only {merge.author}, who asked for {merge.name}, or a project owner may "
                    "decline it"
                )
            if merge.state not in (MergeState.PROPOSED, MergeState.CONFLICTED):
                _require_state(merge, MergeState.PROPOSED, "declined")
            if not MergeRepository(conn).set_state(
                merge.id, merge.state, MergeState.DECLINED, self._clock()
            ):
                raise Conflict(f"{merge.name} changed meanwhile; read it again", current=merge.name)
            audit.record(conn, principal, "revision.merge.decline", merge.name)
            idempotency.remember(conn, principal, "DeclineMerge", request_id, merge.name)
            return self._merge_named(conn, merge.name)

    def _readable_merge(
        self, conn: Connection, principal: Principal, name: str, minimum: Role
    ) -> RevisionMerge:
        project_id, _, _ = names.parse(name, MERGE_PATTERN, "name")
        authz.require_project_role(conn, principal, project_id, minimum)
        return self._merge_named(conn, name)

    def _merge_named(self, conn: Connection, name: str) -> RevisionMerge:
        project_id, design_id, merge_id = names.parse(name, MERGE_PATTERN, "name")
        merge = MergeRepository(conn).get(design_id, merge_id)
        if merge is None or merge.project_id != project_id:
            raise NotFound(f"{name} not found")
        return merge


def _require_state(merge: RevisionMerge, wanted: MergeState, action: str) -> None:
    if merge.state is not wanted:
        raise FailedPrecondition(
            f"{merge.name} is {merge.state.value}; only a {wanted.value} merge can be {action}",
            [PreconditionViolation("MERGE_STATE", merge.name, f"merge is {merge.state.value}")],
        )


def _design(conn: Connection, project_id: str, design_id: str) -> Design:
    design = SqlRepository(conn).get_design(project_id, design_id)
    if design is None:
        raise NotFound(f"projects/{project_id}/designs/{design_id} not found")
    return design


def _revision(
    revs: RevisionRepository, project_id: str, design_id: str, revision_id: str
) -> Revision:
    revision = revs.get(design_id, revision_id)
    if revision is None or revision.project_id != project_id:
        raise NotFound(
            f"projects/{project_id}/designs/{design_id}/revisions/{revision_id} not found"
        )
    return revision
