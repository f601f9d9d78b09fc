"""SQL access to comments and their per-revision anchors, on the caller's connection."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Select, exists, insert, select, update

from services.design.comments.domain import (
    Anchor,
    AnchoredComment,
    CameraView,
    Comment,
    CommentState,
)
from services.design.comments.tables import comment_anchors, comments

# A comment's thread state and camera view live on the thread's first comment.
_root = comments.alias("root")


def _view_json(view: CameraView | None) -> dict[str, list[float]] | None:
    if view is None:
        return None
    return {"eye": list(view.eye), "target": list(view.target), "up": list(view.up)}


def _vec(value: Any) -> tuple[float, float, float]:
    x, y, z = value
    return (float(x), float(y), float(z))


def _view(value: Any) -> CameraView | None:
    if value is None:
        return None
    return CameraView(_vec(value["eye"]), _vec(value["target"]), _vec(value["up"]))


def _with_thread() -> Select[Any]:
    return select(
        comments,
        _root.c.state.label("thread_state"),
        _root.c.resolve_time.label("thread_resolve_time"),
        _root.c.resolver.label("thread_resolver"),
        _root.c.view.label("thread_view"),
    ).join(_root, _root.c.id == comments.c.thread_id)


def _comment(row: Any) -> Comment:
    return Comment(
        id=row.id,
        project_id=row.project_id,
        design_id=row.design_id,
        revision_id=row.revision_id,
        thread_id=row.thread_id,
        organization_id=row.organization_id,
        author=row.author,
        body=row.body,
        state=CommentState(row.thread_state),
        create_time=row.create_time,
        resolve_time=row.thread_resolve_time,
        resolver=row.thread_resolver,
    )


def _anchor(row: Any, view: Any) -> Anchor:
    return Anchor((row.point_x, row.point_y, row.point_z), row.face_id, _view(view))


class CommentRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, comment: Comment, view: CameraView | None) -> None:
        """`view` is kept for a thread's first comment; replies use their thread's."""
        self.conn.execute(
            insert(comments).values(
                id=comment.id,
                project_id=comment.project_id,
                design_id=comment.design_id,
                revision_id=comment.revision_id,
                thread_id=comment.thread_id,
                organization_id=comment.organization_id,
                author=comment.author,
                body=comment.body,
                view=_view_json(view),
                state=comment.state.value,
                create_time=comment.create_time,
            )
        )

    def add_anchor(
        self,
        thread_id: str,
        revision_id: str,
        anchor: Anchor,
        outdated: bool,
        carried_from: str | None,
        now: dt.datetime,
    ) -> None:
        x, y, z = anchor.point
        self.conn.execute(
            insert(comment_anchors).values(
                comment_id=thread_id,
                revision_id=revision_id,
                point_x=x,
                point_y=y,
                point_z=z,
                face_id=anchor.face_id,
                outdated=outdated,
                carried_from=carried_from,
                create_time=now,
            )
        )

    def get(self, project_id: str, design_id: str, comment_id: str) -> Comment | None:
        row = self.conn.execute(
            _with_thread().where(
                comments.c.id == comment_id,
                comments.c.project_id == project_id,
                comments.c.design_id == design_id,
            )
        ).first()
        return _comment(row) if row is not None else None

    def anchored(self, comment: Comment, revision_id: str) -> AnchoredComment | None:
        """The comment with its thread's anchor on `revision_id`, if the thread reached it."""
        row = self.conn.execute(
            select(comment_anchors, _root.c.view)
            .join(_root, _root.c.id == comment_anchors.c.comment_id)
            .where(
                comment_anchors.c.comment_id == comment.thread_id,
                comment_anchors.c.revision_id == revision_id,
            )
        ).first()
        if row is None:
            return None
        return AnchoredComment(comment, revision_id, _anchor(row, row.view), row.outdated)

    def on_revision(
        self, revision_id: str, show_resolved: bool, after_seq: int, limit: int
    ) -> list[tuple[int, AnchoredComment]]:
        """Comments whose thread is anchored on the revision, oldest first, after `after_seq`."""
        query = (
            _with_thread()
            .add_columns(
                comment_anchors.c.point_x,
                comment_anchors.c.point_y,
                comment_anchors.c.point_z,
                comment_anchors.c.face_id,
                comment_anchors.c.outdated,
            )
            .join(comment_anchors, comment_anchors.c.comment_id == comments.c.thread_id)
            .where(comment_anchors.c.revision_id == revision_id, comments.c.seq > after_seq)
        )
        if not show_resolved:
            query = query.where(_root.c.state == CommentState.OPEN.value)
        rows = self.conn.execute(query.order_by(comments.c.seq).limit(limit)).all()
        return [
            (
                row.seq,
                AnchoredComment(
                    _comment(row), revision_id, _anchor(row, row.thread_view), row.outdated
                ),
            )
            for row in rows
        ]

    def open_threads(self, revision_id: str) -> list[tuple[str, Anchor, bool]]:
        """(thread id, anchor, outdated) of every open thread anchored on the revision."""
        rows = self.conn.execute(
            select(comment_anchors)
            .join(comments, comments.c.id == comment_anchors.c.comment_id)
            .where(
                comment_anchors.c.revision_id == revision_id,
                comments.c.state == CommentState.OPEN.value,
            )
            .order_by(comment_anchors.c.seq)
        ).all()
        # The view stays on the thread's first comment; carrying never changes it.
        return [(row.comment_id, _anchor(row, None), row.outdated) for row in rows]

    def has_open_threads(self, revision_id: str) -> bool:
        found = self.conn.execute(
            select(
                exists().where(
                    comment_anchors.c.revision_id == revision_id,
                    comment_anchors.c.comment_id == comments.c.id,
                    comments.c.state == CommentState.OPEN.value,
                )
            )
        ).scalar()
        return bool(found)

    def threads_on(self, revision_id: str) -> set[str]:
        rows = self.conn.execute(
            select(comment_anchors.c.comment_id).where(comment_anchors.c.revision_id == revision_id)
        ).all()
        return {row.comment_id for row in rows}

    def set_state(
        self,
        thread_id: str,
        state: CommentState,
        resolve_time: dt.datetime | None,
        resolver: str | None,
    ) -> None:
        self.conn.execute(
            update(comments)
            .where(comments.c.id == thread_id)
            .values(state=state.value, resolve_time=resolve_time, resolver=resolver)
        )
