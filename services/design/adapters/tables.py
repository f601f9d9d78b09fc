"""Tables owned by the design service, on the platform's shared metadata."""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKey, String, Table, Text, UniqueConstraint

from services.shared.db import SeqKey, UtcDateTime, metadata

designs = Table(
    "designs",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("part_number", String(100), nullable=True),
    Column("creator", String(200), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    # Validation settings of the design's revisions (migration 0003).
    Column("rule_set", String(63), nullable=False, server_default="cnc-milling"),
    Column("material", String(63), nullable=True),
    Column("rule_overrides", JSON, nullable=True),
    UniqueConstraint("project_id", "part_number", name="uq_designs_project_part_number"),
)
