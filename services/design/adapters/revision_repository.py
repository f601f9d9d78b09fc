"""SQL storage of revisions and branches, on a connection inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.design.adapters.revision_tables import branches, revision_parents, revisions
from services.design.domain.revisions import (
    ArtifactRef,
    Branch,
    ProcessingError,
    Revision,
    RevisionState,
)


def _revision(row: Any, parents: tuple[str, ...]) -> Revision:
    error = (
        ProcessingError(row.error_code, row.error_message or "")
        if row.error_code is not None
        else None
    )
    return Revision(
        id=row.id,
        project_id=row.project_id,
        design_id=row.design_id,
        parents=parents,
        branch=row.branch,
        author=row.author,
        message=row.message,
        format=row.format,
        units=row.units,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        parameters=dict(row.parameters or {}),
        rule_set=row.rule_set,
        material=row.material,
        rule_overrides=dict(row.rule_overrides or {}),
        state=RevisionState(row.state),
        create_time=row.create_time,
        update_time=row.update_time,
        error=error,
        properties=row.properties,
        findings=tuple(row.findings or ()),
        artifacts=tuple(ArtifactRef(**a) for a in (row.artifacts or ())),
        released=row.released,
        release_time=row.release_time,
        attempts=row.attempts,
    )


def _artifacts_json(artifacts: tuple[ArtifactRef, ...]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "sha256": a.sha256, "size_bytes": a.size_bytes, "media_type": a.media_type}
        for a in artifacts
    ]


class RevisionRepository:
    """Revisions and branches on one connection (the caller owns the transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # revisions

    def add(self, revision: Revision) -> None:
        self.conn.execute(
            insert(revisions).values(
                id=revision.id,
                design_id=revision.design_id,
                project_id=revision.project_id,
                branch=revision.branch,
                author=revision.author,
                message=revision.message,
                format=revision.format,
                units=revision.units,
                sha256=revision.sha256,
                size_bytes=revision.size_bytes,
                parameters=dict(revision.parameters),
                rule_set=revision.rule_set,
                material=revision.material,
                rule_overrides=dict(revision.rule_overrides),
                state=revision.state.value,
                create_time=revision.create_time,
                update_time=revision.update_time,
                released=revision.released,
                attempts=0,
            )
        )
        for position, parent in enumerate(revision.parents):
            self.conn.execute(
                insert(revision_parents).values(
                    revision_id=revision.id, position=position, parent_id=parent
                )
            )

    def _parents(self, revision_ids: list[str]) -> dict[str, tuple[str, ...]]:
        if not revision_ids:
            return {}
        rows = self.conn.execute(
            select(revision_parents)
            .where(revision_parents.c.revision_id.in_(revision_ids))
            .order_by(revision_parents.c.revision_id, revision_parents.c.position)
        ).all()
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.revision_id, []).append(row.parent_id)
        return {rid: tuple(found.get(rid, ())) for rid in revision_ids}

    def get(self, design_id: str, revision_id: str) -> Revision | None:
        row = self.conn.execute(
            select(revisions).where(
                revisions.c.design_id == design_id, revisions.c.id == revision_id
            )
        ).first()
        if row is None:
            return None
        return _revision(row, self._parents([row.id])[row.id])

    def by_id(self, revision_id: str) -> Revision | None:
        row = self.conn.execute(select(revisions).where(revisions.c.id == revision_id)).first()
        if row is None:
            return None
        return _revision(row, self._parents([row.id])[row.id])

    def list_revisions(
        self, design_id: str, branch: str | None, after_seq: int, limit: int
    ) -> list[tuple[int, Revision]]:
        query = select(revisions).where(
            revisions.c.design_id == design_id, revisions.c.seq > after_seq
        )
        if branch is not None:
            query = query.where(revisions.c.branch == branch)
        rows = self.conn.execute(query.order_by(revisions.c.seq).limit(limit)).all()
        parents = self._parents([row.id for row in rows])
        return [(row.seq, _revision(row, parents[row.id])) for row in rows]

    def count(self, design_id: str) -> int:
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(revisions)
                .where(revisions.c.design_id == design_id)
            ).scalar_one()
        )

    def release(self, revision_id: str, now: dt.datetime) -> None:
        self.conn.execute(
            update(revisions)
            .where(revisions.c.id == revision_id)
            .values(released=True, release_time=now, update_time=now)
        )

    # processing claims

    @staticmethod
    def _claimable(now: dt.datetime) -> Any:
        return or_(
            revisions.c.state == RevisionState.PENDING.value,
            and_(
                revisions.c.state == RevisionState.RUNNING.value,
                revisions.c.lease_expire_time < now,
            ),
        )

    def waiting(self, now: dt.datetime, exclude: set[str]) -> bool:
        """Whether any revision can be claimed (a cheap read before a write transaction)."""
        query = select(revisions.c.id).where(self._claimable(now))
        if exclude:
            query = query.where(revisions.c.id.not_in(exclude))
        return self.conn.execute(query.limit(1)).first() is not None

    def claim(
        self,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        exclude: set[str],
        busy_organizations: frozenset[str] = frozenset(),
    ) -> Revision | None:
        """Takes the oldest revision waiting for processing (PENDING, or RUNNING under an expired
        lease): state RUNNING, leased to `owner`, attempts + 1. None when there is none.

        Revisions of organizations not in `busy_organizations` (those with a job in flight) come
        first, so one organization's queue of slow jobs delays another's revision by at most the
        time of one job."""
        claimable = self._claimable(now)
        query = select(revisions.c.id, revisions.c.lease_owner, revisions.c.author).where(claimable)
        if exclude:
            query = query.where(revisions.c.id.not_in(exclude))
        oldest = self.conn.execute(query.order_by(revisions.c.seq).limit(50)).all()
        # Stable sort: within each group the oldest first.
        rows = sorted(oldest, key=lambda row: organization_of(row.author) in busy_organizations)
        for row in rows[:10]:
            # Compare-and-set on the lease owner: of two replicas racing, one updates the row.
            result = self.conn.execute(
                update(revisions)
                .where(revisions.c.id == row.id, claimable)
                .where(
                    revisions.c.lease_owner.is_(None)
                    if row.lease_owner is None
                    else revisions.c.lease_owner == row.lease_owner
                )
                .values(
                    state=RevisionState.RUNNING.value,
                    lease_owner=owner,
                    lease_expire_time=now + lease,
                    attempts=revisions.c.attempts + 1,
                    update_time=now,
                )
            )
            if result.rowcount == 1:
                return self.by_id(row.id)
        return None

    def renew(self, owner: str, revision_ids: list[str], until: dt.datetime) -> None:
        if revision_ids:
            self.conn.execute(
                update(revisions)
                .where(revisions.c.id.in_(revision_ids), revisions.c.lease_owner == owner)
                .values(lease_expire_time=until)
            )

    def unclaim(self, owner: str, revision_id: str, now: dt.datetime) -> None:
        """Gives a claimed revision back (shutdown, worker crash): PENDING for anyone."""
        self.conn.execute(
            update(revisions)
            .where(revisions.c.id == revision_id, revisions.c.lease_owner == owner)
            .values(
                state=RevisionState.PENDING.value,
                lease_owner=None,
                lease_expire_time=None,
                update_time=now,
            )
        )

    def finish(
        self,
        owner: str,
        revision_id: str,
        now: dt.datetime,
        state: RevisionState,
        error: ProcessingError | None = None,
        properties: Mapping[str, Any] | None = None,
        findings: list[Mapping[str, Any]] | None = None,
        artifacts: tuple[ArtifactRef, ...] = (),
        parameters: Mapping[str, Any] | None = None,
    ) -> bool:
        """Records the outcome if `owner` still holds the claim; False if it lost it."""
        values: dict[str, Any] = {
            "state": state.value,
            "lease_owner": None,
            "lease_expire_time": None,
            "update_time": now,
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "properties": dict(properties) if properties is not None else None,
            "findings": list(findings) if findings is not None else None,
            "artifacts": _artifacts_json(artifacts) if artifacts else None,
        }
        if parameters is not None:
            values["parameters"] = dict(parameters)
        result = self.conn.execute(
            update(revisions)
            .where(
                revisions.c.id == revision_id,
                revisions.c.lease_owner == owner,
                revisions.c.state == RevisionState.RUNNING.value,
            )
            .values(**values)
        )
        return result.rowcount == 1

    # branches

    def get_branch(self, project_id: str, design_id: str, name: str) -> Branch | None:
        row = self.conn.execute(
            select(branches).where(branches.c.design_id == design_id, branches.c.name == name)
        ).first()
        if row is None:
            return None
        return Branch(project_id, design_id, row.name, row.head_revision_id, row.update_time)

    def list_branches(
        self, project_id: str, design_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Branch]]:
        rows = self.conn.execute(
            select(branches)
            .where(branches.c.design_id == design_id, branches.c.seq > after_seq)
            .order_by(branches.c.seq)
            .limit(limit)
        ).all()
        return [
            (
                row.seq,
                Branch(project_id, design_id, row.name, row.head_revision_id, row.update_time),
            )
            for row in rows
        ]

    def create_branch(self, design_id: str, name: str, head: str, now: dt.datetime) -> bool:
        """Creates a branch; False if it exists already (a racing push created it first)."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(branches).values(
                        design_id=design_id, name=name, head_revision_id=head, update_time=now
                    )
                )
        except IntegrityError:
            return False
        return True

    def delete_branch(self, design_id: str, name: str, expected: str) -> bool:
        """Removes a branch whose head is still `expected` (its only revision failed)."""
        result = self.conn.execute(
            delete(branches).where(
                branches.c.design_id == design_id,
                branches.c.name == name,
                branches.c.head_revision_id == expected,
            )
        )
        return result.rowcount == 1

    def move_branch(
        self, design_id: str, name: str, expected: str, head: str, now: dt.datetime
    ) -> bool:
        """Compare-and-set of a branch head: moves it only if it still is `expected`."""
        result = self.conn.execute(
            update(branches)
            .where(
                branches.c.design_id == design_id,
                branches.c.name == name,
                branches.c.head_revision_id == expected,
            )
            .values(head_revision_id=head, update_time=now)
        )
        return result.rowcount == 1


def organization_of(user: str) -> str:
    """organizations/{o} of a user's name organizations/{o}/users/{u}."""
    return "/".join(user.split("/")[:2])
