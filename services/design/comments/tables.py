"""Tables of comments and their anchors on revisions (migration 0008)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.shared.db import SeqKey, UtcDateTime, metadata

# Every comment; a thread's first comment holds the thread's state and camera view, replies
# point at it through thread_id (a first comment's thread_id is its own id).
comments = Table(
    "comments",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("project_id", String(32), nullable=False),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("revision_id", String(32), ForeignKey("revisions.id"), nullable=False),
    Column("thread_id", String(32), nullable=False),
    Column("organization_id", String(63), nullable=False),
    Column("author", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("view", JSON, nullable=True),
    Column("state", String(16), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("resolve_time", UtcDateTime(), nullable=True),
    Column("resolver", String(200), nullable=True),
    Index("ix_comments_thread", "thread_id", "seq"),
)

# Where a thread is anchored on each revision it reached: the revision it was made on, then
# every revision it was carried forward to by a diff. One row per thread and revision.
comment_anchors = Table(
    "comment_anchors",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("comment_id", String(32), ForeignKey("comments.id"), nullable=False),
    Column("revision_id", String(32), ForeignKey("revisions.id"), nullable=False),
    Column("point_x", Float, nullable=False),
    Column("point_y", Float, nullable=False),
    Column("point_z", Float, nullable=False),
    Column("face_id", Integer, nullable=True),
    Column("outdated", Boolean, nullable=False),
    # The revision it was carried from; NULL where the thread was made.
    Column("carried_from", String(32), nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    UniqueConstraint("comment_id", "revision_id", name="uq_comment_anchors_comment_revision"),
    Index("ix_comment_anchors_revision", "revision_id", "seq"),
)
