"""The partner event feed: events per organization allowed to see them, in store order.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.shared.db import SeqKey, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_entries",
        sa.Column("seq", SeqKey, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.String(63), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("store_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_feed_entries"),
        sa.UniqueConstraint(
            "organization_id", "event_id", name="uq_feed_entries_organization_event"
        ),
    )
    op.create_index("ix_feed_entries_organization_seq", "feed_entries", ["organization_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_feed_entries_organization_seq", table_name="feed_entries")
    op.drop_table("feed_entries")
