"""design revisions, branches, and the designs' validation settings

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.shared.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, services.shared.db.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("designs") as batch:
        batch.add_column(
            sa.Column(
                "rule_set", sa.String(length=63), nullable=False, server_default="cnc-milling"
            )
        )
        batch.add_column(sa.Column("material", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("rule_overrides", sa.JSON(), nullable=True))
    op.create_table(
        "revisions",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("design_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("branch", sa.String(length=63), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("units", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("rule_set", sa.String(length=63), nullable=False),
        sa.Column("material", sa.String(length=63), nullable=True),
        sa.Column("rule_overrides", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=True),
        sa.Column("artifacts", sa.JSON(), nullable=True),
        _time("create_time", False),
        _time("update_time", False),
        sa.Column("released", sa.Boolean(), nullable=False),
        _time("release_time", True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        _time("lease_expire_time", True),
        sa.ForeignKeyConstraint(
            ["design_id"], ["designs.id"], name=op.f("fk_revisions_design_id_designs")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_revisions")),
        sa.UniqueConstraint("id", name=op.f("uq_revisions_id")),
    )
    op.create_index("ix_revisions_state", "revisions", ["state", "seq"])
    op.create_index("ix_revisions_design", "revisions", ["design_id", "seq"])
    op.create_table(
        "revision_parents",
        sa.Column("revision_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            name=op.f("fk_revision_parents_revision_id_revisions"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["revisions.id"], name=op.f("fk_revision_parents_parent_id_revisions")
        ),
        sa.PrimaryKeyConstraint("revision_id", "position", name=op.f("pk_revision_parents")),
    )
    op.create_table(
        "branches",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("design_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("head_revision_id", sa.String(length=32), nullable=False),
        _time("update_time", False),
        sa.ForeignKeyConstraint(
            ["design_id"], ["designs.id"], name=op.f("fk_branches_design_id_designs")
        ),
        sa.ForeignKeyConstraint(
            ["head_revision_id"],
            ["revisions.id"],
            name=op.f("fk_branches_head_revision_id_revisions"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_branches")),
        sa.UniqueConstraint("design_id", "name", name="uq_branches_design_name"),
    )


def downgrade() -> None:
    op.drop_table("branches")
    op.drop_table("revision_parents")
    op.drop_index("ix_revisions_design", table_name="revisions")
    op.drop_index("ix_revisions_state", table_name="revisions")
    op.drop_table("revisions")
    with op.batch_alter_table("designs") as batch:
        batch.drop_column("rule_overrides")
        batch.drop_column("material")
        batch.drop_column("rule_set")
