"""Consent for supply edges between two organizations: proposals wait for the other party.

Revision ID: 0011_supply_consent
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.shared.db

revision = "0011_supply_consent"
down_revision = "0010"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, services.shared.db.UtcDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "supply_edge_proposals",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("owner_id", sa.String(63), nullable=False),
        sa.Column("facility_id", sa.String(32), nullable=False),
        sa.Column("supplier_id", sa.String(63), nullable=False),
        sa.Column("item_id", sa.String(63), nullable=False),
        sa.Column("item_organization_id", sa.String(63), nullable=False),
        sa.Column("customer_id", sa.String(63), nullable=False),
        sa.Column("lead_time_days", sa.Float, nullable=False),
        sa.Column("unit_price", sa.Float, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("monthly_volume", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _time("create_time"),
        _time("update_time"),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["organizations.id"],
            name=op.f("fk_supply_edge_proposals_owner_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_supply_edge_proposals")),
        sa.UniqueConstraint("id", name=op.f("uq_supply_edge_proposals_id")),
    )
    op.create_index(
        op.f("ix_supply_edge_proposals_supplier_id"), "supply_edge_proposals", ["supplier_id"]
    )
    op.create_index(
        op.f("ix_supply_edge_proposals_customer_id"), "supply_edge_proposals", ["customer_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_supply_edge_proposals_customer_id"), table_name="supply_edge_proposals")
    op.drop_index(op.f("ix_supply_edge_proposals_supplier_id"), table_name="supply_edge_proposals")
    op.drop_table("supply_edge_proposals")
