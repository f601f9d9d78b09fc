"""Tables owned by the supply service, on the platform's shared metadata."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from services.shared.db import SeqKey, UtcDateTime, metadata

facilities = Table(
    "facilities",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("region", String(100), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

# Network data (issue 5). Ids of capabilities, items, edges and disruptions are platform-wide
# unique, like facility ids: imports key their rows by them.
capabilities = Table(
    "capabilities",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(63), nullable=False, unique=True),
    Column("organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("facility_id", String(32), ForeignKey("facilities.id"), nullable=False, index=True),
    Column("process", String(100), nullable=False, index=True),
    Column("materials", JSON, nullable=False),
    Column("monthly_capacity", Float, nullable=False),
    Column("certifications", JSON, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(63), nullable=False, unique=True),
    Column("organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("part_number", String(100), nullable=False),
    Column("end_item", Boolean, nullable=False),
    Column("unit_revenue", Float, nullable=False),
    Column("weekly_demand", Float, nullable=False),
    Column("inventory_weeks", Float, nullable=False),
    Column("design", String(200), nullable=False),
    Column("revision", String(300), nullable=False),
    Column("process", String(100), nullable=False),
    Column("material", String(100), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

bom_lines = Table(
    "bom_lines",
    metadata,
    Column("parent_item_id", String(63), ForeignKey("items.id"), primary_key=True),
    Column("component_item_id", String(63), ForeignKey("items.id"), primary_key=True),
    Column("quantity", Float, nullable=False),
)

supply_edges = Table(
    "supply_edges",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(63), nullable=False, unique=True),
    Column("owner_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("facility_id", String(32), ForeignKey("facilities.id"), nullable=False, index=True),
    Column("supplier_id", String(63), nullable=False, index=True),
    Column("item_id", String(63), ForeignKey("items.id"), nullable=False),
    Column("item_organization_id", String(63), nullable=False),
    Column("customer_id", String(63), ForeignKey("organizations.id"), nullable=False, index=True),
    Column("lead_time_days", Float, nullable=False),
    Column("unit_price", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("monthly_volume", Float, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

# Proposals of edges between two organizations (issue 12): no edge exists until the other party
# confirms, so a proposal lives outside `supply_edges` and nothing that reads the network (the
# analytics, disruptions, the parties' views) can see it. It holds no foreign keys to the other
# party's facility or item: those are checked when that party confirms, so proposing tells the
# proposer nothing about what the other organization has. Confirming moves the row to
# `supply_edges`; declined and withdrawn proposals stay here.
supply_edge_proposals = Table(
    "supply_edge_proposals",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(63), nullable=False, unique=True),
    Column("owner_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("facility_id", String(32), nullable=False),
    Column("supplier_id", String(63), nullable=False, index=True),
    Column("item_id", String(63), nullable=False),
    Column("item_organization_id", String(63), nullable=False),
    Column("customer_id", String(63), nullable=False, index=True),
    Column("lead_time_days", Float, nullable=False),
    Column("unit_price", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("monthly_volume", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

disruptions = Table(
    "disruptions",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("facility_id", String(32), ForeignKey("facilities.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("capacity_factor", Float, nullable=False),
    Column("expected_duration_days", Float, nullable=False),
    Column("description", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("affected_customers", JSON, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("resolve_time", UtcDateTime(), nullable=True),
)

# One row (id=1): bumped in every transaction that changes network data, so each replica can
# tell, with one cheap read per analytics query, whether its in-memory network is stale.
supply_network_version = Table(
    "supply_network_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)
