"""Design reviews and their decisions.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.shared.db import SeqKey, UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("design_id", sa.String(32), nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("branch", sa.String(63), nullable=False),
        sa.Column("requester_id", sa.String(63), nullable=False),
        sa.Column("requester_user", sa.String(200), nullable=False),
        sa.Column("reviewers", sa.JSON, nullable=False),
        sa.Column("policy_kind", sa.String(16), nullable=False),
        sa.Column("policy_k", sa.Integer, nullable=False),
        sa.Column("policy_required", sa.JSON, nullable=False),
        sa.Column("deadline", UtcDateTime(), nullable=False),
        sa.Column("remind_before_seconds", sa.Float, nullable=False),
        sa.Column("on_new_revision", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("escalated", sa.Boolean, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("close_time", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_reviews"),
        sa.UniqueConstraint("id", name="uq_reviews_id"),
        sa.ForeignKeyConstraint(["design_id"], ["designs.id"], name="fk_reviews_design_id_designs"),
    )
    op.create_index("ix_reviews_design", "reviews", ["design_id", "seq"])
    op.create_table(
        "review_decisions",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("review_id", sa.String(32), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("organization_id", sa.String(63), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("decide_time", UtcDateTime(), nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_review_decisions"),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name="fk_review_decisions_review_id_reviews"
        ),
        sa.UniqueConstraint(
            "review_id", "round", "organization_id", name="uq_review_decisions_review_round_org"
        ),
    )


def downgrade() -> None:
    op.drop_table("review_decisions")
    op.drop_index("ix_reviews_design", table_name="reviews")
    op.drop_table("reviews")
