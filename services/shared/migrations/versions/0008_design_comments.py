"""Comments anchored to geometry, and their anchors on the revisions they reached.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.shared.db import SeqKey, UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comments",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("design_id", sa.String(32), nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("thread_id", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.String(63), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("view", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("resolve_time", UtcDateTime(), nullable=True),
        sa.Column("resolver", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_comments"),
        sa.UniqueConstraint("id", name="uq_comments_id"),
        sa.ForeignKeyConstraint(
            ["design_id"], ["designs.id"], name="fk_comments_design_id_designs"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"], ["revisions.id"], name="fk_comments_revision_id_revisions"
        ),
    )
    op.create_index("ix_comments_thread", "comments", ["thread_id", "seq"])
    op.create_table(
        "comment_anchors",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.String(32), nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("point_x", sa.Float, nullable=False),
        sa.Column("point_y", sa.Float, nullable=False),
        sa.Column("point_z", sa.Float, nullable=False),
        sa.Column("face_id", sa.Integer, nullable=True),
        sa.Column("outdated", sa.Boolean, nullable=False),
        sa.Column("carried_from", sa.String(32), nullable=True),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_comment_anchors"),
        sa.ForeignKeyConstraint(
            ["comment_id"], ["comments.id"], name="fk_comment_anchors_comment_id_comments"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"], ["revisions.id"], name="fk_comment_anchors_revision_id_revisions"
        ),
        sa.UniqueConstraint(
            "comment_id", "revision_id", name="uq_comment_anchors_comment_revision"
        ),
    )
    op.create_index("ix_comment_anchors_revision", "comment_anchors", ["revision_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_comment_anchors_revision", table_name="comment_anchors")
    op.drop_table("comment_anchors")
    op.drop_index("ix_comments_thread", table_name="comments")
    op.drop_table("comments")
