"""Who awards an RFQ: the buyer (as before) or the procurement workflow, and its proposal.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing RFQs keep today's behaviour: the buyer awards.
    with op.batch_alter_table("rfqs") as batch:
        batch.add_column(
            sa.Column("award_policy", sa.String(32), nullable=False, server_default="BUYER")
        )
        batch.add_column(sa.Column("proposed_allocations", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rfqs") as batch:
        batch.drop_column("proposed_allocations")
        batch.drop_column("award_policy")
