"""supply network: capabilities, items, bills of materials, supply edges, disruptions

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.shared.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, services.shared.db.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "capabilities",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("organization_id", sa.String(length=63), nullable=False),
        sa.Column("facility_id", sa.String(length=32), nullable=False),
        sa.Column("process", sa.String(length=100), nullable=False),
        sa.Column("materials", sa.JSON(), nullable=False),
        sa.Column("monthly_capacity", sa.Float(), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        _time("create_time"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_capabilities_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_capabilities_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_capabilities")),
        sa.UniqueConstraint("id", name=op.f("uq_capabilities_id")),
    )
    op.create_index(op.f("ix_capabilities_facility_id"), "capabilities", ["facility_id"])
    op.create_index(op.f("ix_capabilities_process"), "capabilities", ["process"])
    op.create_table(
        "items",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("organization_id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("part_number", sa.String(length=100), nullable=False),
        sa.Column("end_item", sa.Boolean(), nullable=False),
        sa.Column("unit_revenue", sa.Float(), nullable=False),
        sa.Column("weekly_demand", sa.Float(), nullable=False),
        sa.Column("inventory_weeks", sa.Float(), nullable=False),
        sa.Column("design", sa.String(length=200), nullable=False),
        sa.Column("revision", sa.String(length=300), nullable=False),
        sa.Column("process", sa.String(length=100), nullable=False),
        sa.Column("material", sa.String(length=100), nullable=False),
        _time("create_time"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_items_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_items")),
        sa.UniqueConstraint("id", name=op.f("uq_items_id")),
    )
    op.create_table(
        "bom_lines",
        sa.Column("parent_item_id", sa.String(length=63), nullable=False),
        sa.Column("component_item_id", sa.String(length=63), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_item_id"], ["items.id"], name=op.f("fk_bom_lines_parent_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["component_item_id"], ["items.id"], name=op.f("fk_bom_lines_component_item_id_items")
        ),
        sa.PrimaryKeyConstraint("parent_item_id", "component_item_id", name=op.f("pk_bom_lines")),
    )
    op.create_table(
        "supply_edges",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("owner_id", sa.String(length=63), nullable=False),
        sa.Column("facility_id", sa.String(length=32), nullable=False),
        sa.Column("supplier_id", sa.String(length=63), nullable=False),
        sa.Column("item_id", sa.String(length=63), nullable=False),
        sa.Column("item_organization_id", sa.String(length=63), nullable=False),
        sa.Column("customer_id", sa.String(length=63), nullable=False),
        sa.Column("lead_time_days", sa.Float(), nullable=False),
        sa.Column("unit_price", sa.Float(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("monthly_volume", sa.Float(), nullable=False),
        _time("create_time"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["organizations.id"], name=op.f("fk_supply_edges_owner_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_supply_edges_facility_id_facilities")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_supply_edges_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["organizations.id"],
            name=op.f("fk_supply_edges_customer_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_supply_edges")),
        sa.UniqueConstraint("id", name=op.f("uq_supply_edges_id")),
    )
    op.create_index(op.f("ix_supply_edges_facility_id"), "supply_edges", ["facility_id"])
    op.create_index(op.f("ix_supply_edges_supplier_id"), "supply_edges", ["supplier_id"])
    op.create_index(op.f("ix_supply_edges_customer_id"), "supply_edges", ["customer_id"])
    op.create_table(
        "disruptions",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=63), nullable=False),
        sa.Column("facility_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("capacity_factor", sa.Float(), nullable=False),
        sa.Column("expected_duration_days", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("affected_customers", sa.JSON(), nullable=False),
        _time("create_time"),
        _time("resolve_time", nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_disruptions_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_disruptions_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_disruptions")),
        sa.UniqueConstraint("id", name=op.f("uq_disruptions_id")),
    )
    op.create_table(
        "supply_network_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supply_network_version")),
    )
    op.bulk_insert(
        sa.table("supply_network_version", sa.column("id"), sa.column("version")),
        [{"id": 1, "version": 0}],
    )


def downgrade() -> None:
    op.drop_table("supply_network_version")
    op.drop_table("disruptions")
    op.drop_index(op.f("ix_supply_edges_customer_id"), table_name="supply_edges")
    op.drop_index(op.f("ix_supply_edges_supplier_id"), table_name="supply_edges")
    op.drop_index(op.f("ix_supply_edges_facility_id"), table_name="supply_edges")
    op.drop_table("supply_edges")
    op.drop_table("bom_lines")
    op.drop_table("items")
    op.drop_index(op.f("ix_capabilities_process"), table_name="capabilities")
    op.drop_index(op.f("ix_capabilities_facility_id"), table_name="capabilities")
    op.drop_table("capabilities")
