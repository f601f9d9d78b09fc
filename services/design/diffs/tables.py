"""Tables of revision diffs and merges (migration 0009). Both are jobs the revision processor
claims under a lease, like revisions (attempts, lease_owner, lease_expire_time)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.shared.db import SeqKey, UtcDateTime, metadata

revision_diffs = Table(
    "revision_diffs",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("project_id", String(32), nullable=False),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("revision_a", String(32), nullable=False),
    Column("revision_b", String(32), nullable=False),
    # Who asked first (organizations/{o}/users/{u}); the event names that organization.
    Column("requester", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("result", JSON, nullable=True),
    Column("artifacts", JSON, nullable=True),
    # Set when the diff was asked for to carry comments from revision_a to revision_b.
    Column("carry_comments", Boolean, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expire_time", UtcDateTime(), nullable=True),
    UniqueConstraint("design_id", "revision_a", "revision_b", name="uq_revision_diffs_design_pair"),
    Index("ix_revision_diffs_state", "state", "seq"),
)

revision_merges = Table(
    "revision_merges",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("project_id", String(32), nullable=False),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("target_branch", String(63), nullable=False),
    Column("base_revision", String(32), nullable=False),
    Column("ours_revision", String(32), nullable=False),
    Column("source_revision", String(32), nullable=False),
    Column("merged_revision", String(32), nullable=True),
    Column("author", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("conflict", JSON, nullable=True),
    Column("ours_diff", JSON, nullable=True),
    Column("theirs_diff", JSON, nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expire_time", UtcDateTime(), nullable=True),
    Index("ix_revision_merges_state", "state", "seq"),
    Index("ix_revision_merges_design", "design_id", "seq"),
)
