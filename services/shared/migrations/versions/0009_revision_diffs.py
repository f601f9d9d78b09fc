"""Geometric diffs of revision pairs and three-way merges of concurrent edits.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.shared.db import SeqKey, UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _lease_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expire_time", UtcDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "revision_diffs",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("design_id", sa.String(32), nullable=False),
        sa.Column("revision_a", sa.String(32), nullable=False),
        sa.Column("revision_b", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("artifacts", sa.JSON, nullable=True),
        sa.Column("carry_comments", sa.Boolean, nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        *_lease_columns(),
        sa.PrimaryKeyConstraint("seq", name="pk_revision_diffs"),
        sa.UniqueConstraint("id", name="uq_revision_diffs_id"),
        sa.UniqueConstraint(
            "design_id", "revision_a", "revision_b", name="uq_revision_diffs_design_pair"
        ),
        sa.ForeignKeyConstraint(
            ["design_id"], ["designs.id"], name="fk_revision_diffs_design_id_designs"
        ),
    )
    op.create_index("ix_revision_diffs_state", "revision_diffs", ["state", "seq"])
    op.create_table(
        "revision_merges",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("design_id", sa.String(32), nullable=False),
        sa.Column("target_branch", sa.String(63), nullable=False),
        sa.Column("base_revision", sa.String(32), nullable=False),
        sa.Column("ours_revision", sa.String(32), nullable=False),
        sa.Column("source_revision", sa.String(32), nullable=False),
        sa.Column("merged_revision", sa.String(32), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("conflict", sa.JSON, nullable=True),
        sa.Column("ours_diff", sa.JSON, nullable=True),
        sa.Column("theirs_diff", sa.JSON, nullable=True),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        *_lease_columns(),
        sa.PrimaryKeyConstraint("seq", name="pk_revision_merges"),
        sa.UniqueConstraint("id", name="uq_revision_merges_id"),
        sa.ForeignKeyConstraint(
            ["design_id"], ["designs.id"], name="fk_revision_merges_design_id_designs"
        ),
    )
    op.create_index("ix_revision_merges_state", "revision_merges", ["state", "seq"])
    op.create_index("ix_revision_merges_design", "revision_merges", ["design_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_revision_merges_design", table_name="revision_merges")
    op.drop_index("ix_revision_merges_state", table_name="revision_merges")
    op.drop_table("revision_merges")
    op.drop_index("ix_revision_diffs_state", table_name="revision_diffs")
    op.drop_table("revision_diffs")
