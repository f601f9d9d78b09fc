"""Tables of design revisions and branches (migration 0003)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
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

revisions = Table(
    "revisions",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("project_id", String(32), nullable=False),
    Column("branch", String(63), nullable=False),
    Column("author", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("units", String(8), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("rule_set", String(63), nullable=False),
    Column("material", String(63), nullable=True),
    Column("rule_overrides", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("properties", JSON, nullable=True),
    Column("findings", JSON, nullable=True),
    Column("artifacts", JSON, nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("released", Boolean, nullable=False),
    Column("release_time", UtcDateTime(), nullable=True),
    # Processing claims: a replica owns a revision until lease_expire_time, then anyone may.
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expire_time", UtcDateTime(), nullable=True),
    Index("ix_revisions_state", "state", "seq"),
    Index("ix_revisions_design", "design_id", "seq"),
)

revision_parents = Table(
    "revision_parents",
    metadata,
    Column("revision_id", String(32), ForeignKey("revisions.id"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("parent_id", String(32), ForeignKey("revisions.id"), nullable=False),
)

branches = Table(
    "branches",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("head_revision_id", String(32), ForeignKey("revisions.id"), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    UniqueConstraint("design_id", "name", name="uq_branches_design_name"),
)
