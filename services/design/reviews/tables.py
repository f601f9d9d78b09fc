"""Tables of design reviews (migration 0007)."""

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

reviews = Table(
    "reviews",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("project_id", String(32), nullable=False),
    Column("design_id", String(32), ForeignKey("designs.id"), nullable=False),
    Column("revision_id", String(32), nullable=False),
    Column("branch", String(63), nullable=False),
    Column("requester_id", String(63), nullable=False),
    Column("requester_user", String(200), nullable=False),
    Column("reviewers", JSON, nullable=False),
    Column("policy_kind", String(16), nullable=False),
    Column("policy_k", Integer, nullable=False),
    Column("policy_required", JSON, nullable=False),
    Column("deadline", UtcDateTime(), nullable=False),
    Column("remind_before_seconds", Float, nullable=False),
    Column("on_new_revision", String(16), nullable=False),
    Column("state", String(32), nullable=False),
    Column("escalated", Boolean, nullable=False),
    Column("round", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("close_time", UtcDateTime(), nullable=True),
    Index("ix_reviews_design", "design_id", "seq"),
)

# Decisions as submitted; `accepted` once the review's workflow counted it. One per
# organization and round.
review_decisions = Table(
    "review_decisions",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("review_id", String(32), ForeignKey("reviews.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("organization_id", String(63), nullable=False),
    Column("user", String(200), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("comment", Text, nullable=False),
    Column("revision_id", String(32), nullable=False),
    Column("decide_time", UtcDateTime(), nullable=False),
    Column("accepted", Boolean, nullable=False),
    UniqueConstraint(
        "review_id", "round", "organization_id", name="uq_review_decisions_review_round_org"
    ),
)
