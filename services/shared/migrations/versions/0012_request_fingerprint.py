"""Request ids remember a fingerprint of their request, so reusing one for another request is
refused instead of answered with the first result.

Revision ID: 0011_iso_request_fingerprint
Revises: 0011_supply_consent
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_iso_request_fingerprint"
down_revision = "0011_supply_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before have none: their replays are answered as before, unchecked.
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("fingerprint")
