"""SQL storage of diffs and merges, on a connection inside the caller's transaction. Both are
jobs claimed under a lease (compare-and-set on the lease owner, as revisions are)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.design.adapters.revision_tables import revision_parents, revisions
from services.design.diffs.domain import MergeState, RevisionDiff, RevisionMerge
from services.design.diffs.tables import revision_diffs, revision_merges
from services.design.domain.revisions import ArtifactRef, ProcessingError, RevisionState
from services.design.geometry.codec import (
    conflict_from_json,
    diff_from_json,
)

RUNNING = "RUNNING"
PENDING = "PENDING"


def _error(row: Any) -> ProcessingError | None:
    if row.error_code is None:
        return None
    return ProcessingError(row.error_code, row.error_message or "")


def _diff(row: Any) -> RevisionDiff:
    return RevisionDiff(
        id=row.id,
        project_id=row.project_id,
        design_id=row.design_id,
        revision_a=row.revision_a,
        revision_b=row.revision_b,
        requester=row.requester,
        state=RevisionState(row.state),
        create_time=row.create_time,
        update_time=row.update_time,
        carry_comments=row.carry_comments,
        error=_error(row),
        result=diff_from_json(row.result) if row.result is not None else None,
        artifacts=tuple(ArtifactRef(**a) for a in (row.artifacts or ())),
        attempts=row.attempts,
    )


def _merge(row: Any) -> RevisionMerge:
    return RevisionMerge(
        id=row.id,
        project_id=row.project_id,
        design_id=row.design_id,
        target_branch=row.target_branch,
        base=row.base_revision,
        ours=row.ours_revision,
        source=row.source_revision,
        author=row.author,
        state=MergeState(row.state),
        create_time=row.create_time,
        update_time=row.update_time,
        merged=row.merged_revision,
        error=_error(row),
        conflict=conflict_from_json(row.conflict) if row.conflict is not None else None,
        ours_diff=diff_from_json(row.ours_diff) if row.ours_diff is not None else None,
        theirs_diff=diff_from_json(row.theirs_diff) if row.theirs_diff is not None else None,
        attempts=row.attempts,
    )


class Leases:
    """Claims of the PENDING rows of one job table (or RUNNING ones whose lease ran out)."""

    def __init__(self, conn: Connection, table: Table) -> None:
        self.conn = conn
        self.table = table

    def _claimable(self, now: dt.datetime) -> Any:
        t = self.table
        return or_(t.c.state == PENDING, and_(t.c.state == RUNNING, t.c.lease_expire_time < now))

    def waiting(self, now: dt.datetime, exclude: set[str]) -> bool:
        query = select(self.table.c.id).where(self._claimable(now))
        if exclude:
            query = query.where(self.table.c.id.not_in(exclude))
        return self.conn.execute(query.limit(1)).first() is not None

    def claim(
        self, owner: str, now: dt.datetime, lease: dt.timedelta, exclude: set[str]
    ) -> str | None:
        """The id of the oldest claimable row, now RUNNING and leased to `owner`."""
        t = self.table
        claimable = self._claimable(now)
        query = select(t.c.id, t.c.lease_owner).where(claimable)
        if exclude:
            query = query.where(t.c.id.not_in(exclude))
        for row in self.conn.execute(query.order_by(t.c.seq).limit(10)).all():
            result = self.conn.execute(
                update(t)
                .where(t.c.id == row.id, claimable)
                .where(
                    t.c.lease_owner.is_(None)
                    if row.lease_owner is None
                    else t.c.lease_owner == row.lease_owner
                )
                .values(
                    state=RUNNING,
                    lease_owner=owner,
                    lease_expire_time=now + lease,
                    attempts=t.c.attempts + 1,
                    update_time=now,
                )
            )
            if result.rowcount == 1:
                return str(row.id)
        return None

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> None:
        if ids:
            self.conn.execute(
                update(self.table)
                .where(self.table.c.id.in_(ids), self.table.c.lease_owner == owner)
                .values(lease_expire_time=until)
            )

    def unclaim(self, owner: str, job_id: str, now: dt.datetime) -> None:
        self.conn.execute(
            update(self.table)
            .where(self.table.c.id == job_id, self.table.c.lease_owner == owner)
            .values(state=PENDING, lease_owner=None, lease_expire_time=None, update_time=now)
        )

    def finish(self, owner: str, job_id: str, now: dt.datetime, **values: Any) -> bool:
        """Records the outcome if `owner` still holds the claim; False if it lost it."""
        result = self.conn.execute(
            update(self.table)
            .where(
                self.table.c.id == job_id,
                self.table.c.lease_owner == owner,
                self.table.c.state == RUNNING,
            )
            .values(lease_owner=None, lease_expire_time=None, update_time=now, **values)
        )
        return result.rowcount == 1


def _artifacts_json(artifacts: tuple[ArtifactRef, ...]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "sha256": a.sha256, "size_bytes": a.size_bytes, "media_type": a.media_type}
        for a in artifacts
    ]


def error_values(error: ProcessingError | None) -> dict[str, Any]:
    return {
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
    }


class DiffRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.leases = Leases(conn, revision_diffs)

    def add(self, diff: RevisionDiff) -> bool:
        """Inserts a PENDING diff; False if the pair has one already (a racing request)."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(revision_diffs).values(
                        id=diff.id,
                        project_id=diff.project_id,
                        design_id=diff.design_id,
                        revision_a=diff.revision_a,
                        revision_b=diff.revision_b,
                        requester=diff.requester,
                        state=diff.state.value,
                        carry_comments=diff.carry_comments,
                        create_time=diff.create_time,
                        update_time=diff.update_time,
                        attempts=0,
                    )
                )
        except IntegrityError:
            return False
        return True

    def of_pair(self, design_id: str, revision_a: str, revision_b: str) -> RevisionDiff | None:
        row = self.conn.execute(
            select(revision_diffs).where(
                revision_diffs.c.design_id == design_id,
                revision_diffs.c.revision_a == revision_a,
                revision_diffs.c.revision_b == revision_b,
            )
        ).first()
        return _diff(row) if row is not None else None

    def by_id(self, diff_id: str) -> RevisionDiff | None:
        row = self.conn.execute(
            select(revision_diffs).where(revision_diffs.c.id == diff_id)
        ).first()
        return _diff(row) if row is not None else None

    def mark_carry_comments(self, diff_id: str) -> None:
        self.conn.execute(
            update(revision_diffs).where(revision_diffs.c.id == diff_id).values(carry_comments=True)
        )

    def finish(
        self,
        owner: str,
        diff_id: str,
        now: dt.datetime,
        state: RevisionState,
        error: ProcessingError | None = None,
        result: Mapping[str, Any] | None = None,
        artifacts: tuple[ArtifactRef, ...] = (),
    ) -> bool:
        return self.leases.finish(
            owner,
            diff_id,
            now,
            state=state.value,
            result=dict(result) if result is not None else None,
            artifacts=_artifacts_json(artifacts) if artifacts else None,
            **error_values(error),
        )


class MergeRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.leases = Leases(conn, revision_merges)

    def add(self, merge: RevisionMerge) -> None:
        self.conn.execute(
            insert(revision_merges).values(
                id=merge.id,
                project_id=merge.project_id,
                design_id=merge.design_id,
                target_branch=merge.target_branch,
                base_revision=merge.base,
                ours_revision=merge.ours,
                source_revision=merge.source,
                merged_revision=merge.merged,
                author=merge.author,
                state=merge.state.value,
                create_time=merge.create_time,
                update_time=merge.update_time,
                attempts=0,
            )
        )

    def get(self, design_id: str, merge_id: str) -> RevisionMerge | None:
        row = self.conn.execute(
            select(revision_merges).where(
                revision_merges.c.design_id == design_id, revision_merges.c.id == merge_id
            )
        ).first()
        return _merge(row) if row is not None else None

    def by_id(self, merge_id: str) -> RevisionMerge | None:
        row = self.conn.execute(
            select(revision_merges).where(revision_merges.c.id == merge_id)
        ).first()
        return _merge(row) if row is not None else None

    def set_state(
        self, merge_id: str, expected: MergeState, state: MergeState, now: dt.datetime
    ) -> bool:
        """Compare-and-set of a settled merge's state (accept, decline)."""
        result = self.conn.execute(
            update(revision_merges)
            .where(revision_merges.c.id == merge_id, revision_merges.c.state == expected.value)
            .values(state=state.value, update_time=now)
        )
        return result.rowcount == 1

    def finish(
        self,
        owner: str,
        merge_id: str,
        now: dt.datetime,
        state: MergeState,
        error: ProcessingError | None = None,
        merged: str | None = None,
        conflict: Mapping[str, Any] | None = None,
        ours_diff: Mapping[str, Any] | None = None,
        theirs_diff: Mapping[str, Any] | None = None,
    ) -> bool:
        return self.leases.finish(
            owner,
            merge_id,
            now,
            state=state.value,
            merged_revision=merged,
            conflict=dict(conflict) if conflict is not None else None,
            ours_diff=dict(ours_diff) if ours_diff is not None else None,
            theirs_diff=dict(theirs_diff) if theirs_diff is not None else None,
            **error_values(error),
        )


def parent_graph(conn: Connection, design_id: str) -> dict[str, tuple[str, ...]]:
    """Every revision of a design -> its parents in order: the DAG a merge base is found in."""
    rows = conn.execute(
        select(revision_parents.c.revision_id, revision_parents.c.parent_id)
        .join(revisions, revisions.c.id == revision_parents.c.revision_id)
        .where(revisions.c.design_id == design_id)
        .order_by(revision_parents.c.revision_id, revision_parents.c.position)
    ).all()
    graph: dict[str, list[str]] = {}
    for row in rows:
        graph.setdefault(row.revision_id, []).append(row.parent_id)
    return {k: tuple(v) for k, v in graph.items()}
