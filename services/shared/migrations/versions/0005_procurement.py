"""procurement: RFQs, their invited suppliers, quotes and award allocations

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.shared.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rfqs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("buyer_id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("item", sa.String(length=300), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("due_time", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("design_revision", sa.String(length=300), nullable=False),
        sa.Column("quote_deadline", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("weight_price", sa.Float(), nullable=False),
        sa.Column("weight_lead_time", sa.Float(), nullable=False),
        sa.Column("weight_supplier_risk", sa.Float(), nullable=False),
        sa.Column("weight_capacity_fit", sa.Float(), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("update_time", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("open_time", services.shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("close_time", services.shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["organizations.id"], name=op.f("fk_rfqs_buyer_id_organizations")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_rfqs")),
        sa.UniqueConstraint("id", name=op.f("uq_rfqs_id")),
    )
    op.create_index("ix_rfqs_buyer", "rfqs", ["buyer_id", "seq"], unique=False)
    op.create_table(
        "quotes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rfq_id", sa.String(length=32), nullable=False),
        sa.Column("supplier_id", sa.String(length=63), nullable=False),
        sa.Column("unit_price", sa.Float(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("create_time", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("update_time", services.shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rfq_id"], ["rfqs.id"], name=op.f("fk_quotes_rfq_id_rfqs")),
        sa.ForeignKeyConstraint(
            ["supplier_id"], ["organizations.id"], name=op.f("fk_quotes_supplier_id_organizations")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_quotes")),
        sa.UniqueConstraint("id", name=op.f("uq_quotes_id")),
    )
    op.create_index("ix_quotes_rfq", "quotes", ["rfq_id", "seq"], unique=False)
    op.create_table(
        "rfq_suppliers",
        sa.Column("rfq_id", sa.String(length=32), nullable=False),
        sa.Column("supplier_id", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["rfq_id"], ["rfqs.id"], name=op.f("fk_rfq_suppliers_rfq_id_rfqs")),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["organizations.id"],
            name=op.f("fk_rfq_suppliers_supplier_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("rfq_id", "supplier_id", name=op.f("pk_rfq_suppliers")),
    )
    op.create_index(
        "ix_rfq_suppliers_supplier", "rfq_suppliers", ["supplier_id", "rfq_id"], unique=False
    )
    op.create_table(
        "rfq_allocations",
        sa.Column("rfq_id", sa.String(length=32), nullable=False),
        sa.Column("supplier_id", sa.String(length=63), nullable=False),
        sa.Column("quote_id", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["quotes.id"], name=op.f("fk_rfq_allocations_quote_id_quotes")
        ),
        sa.ForeignKeyConstraint(
            ["rfq_id"], ["rfqs.id"], name=op.f("fk_rfq_allocations_rfq_id_rfqs")
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["organizations.id"],
            name=op.f("fk_rfq_allocations_supplier_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("rfq_id", "supplier_id", name=op.f("pk_rfq_allocations")),
        sa.UniqueConstraint("quote_id", name="uq_rfq_allocations_quote_id"),
    )


def downgrade() -> None:
    op.drop_table("rfq_allocations")
    op.drop_index("ix_rfq_suppliers_supplier", table_name="rfq_suppliers")
    op.drop_table("rfq_suppliers")
    op.drop_index("ix_quotes_rfq", table_name="quotes")
    op.drop_table("quotes")
    op.drop_index("ix_rfqs_buyer", table_name="rfqs")
    op.drop_table("rfqs")
