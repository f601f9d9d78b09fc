"""Tables of procurement (RFQs, invited suppliers, quotes, awards) on the shared metadata."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.shared.db import SeqKey, UtcDateTime, metadata

rfqs = Table(
    "rfqs",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("buyer_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("item", String(300), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("due_time", UtcDateTime(), nullable=False),
    Column("design_revision", String(300), nullable=False),
    Column("quote_deadline", UtcDateTime(), nullable=False),
    Column("weight_price", Float, nullable=False),
    Column("weight_lead_time", Float, nullable=False),
    Column("weight_supplier_risk", Float, nullable=False),
    Column("weight_capacity_fit", Float, nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("open_time", UtcDateTime(), nullable=True),
    Column("close_time", UtcDateTime(), nullable=True),
    Column("award_policy", String(32), nullable=False, server_default="BUYER"),
    # [{"supplier_id", "quantity", "quote_id"}]: the workflow's proposal awaiting approval.
    Column("proposed_allocations", JSON, nullable=True),
    Index("ix_rfqs_buyer", "buyer_id", "seq"),
)

rfq_suppliers = Table(
    "rfq_suppliers",
    metadata,
    Column("rfq_id", String(32), ForeignKey("rfqs.id"), primary_key=True),
    Column("supplier_id", String(63), ForeignKey("organizations.id"), primary_key=True),
    Index("ix_rfq_suppliers_supplier", "supplier_id", "rfq_id"),
)

quotes = Table(
    "quotes",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("rfq_id", String(32), ForeignKey("rfqs.id"), nullable=False),
    Column("supplier_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("unit_price", Float, nullable=False),
    Column("lead_time_days", Integer, nullable=False),
    Column("capacity", BigInteger, nullable=False),
    Column("valid_until", UtcDateTime(), nullable=False),
    Column("notes", Text, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Index("ix_quotes_rfq", "rfq_id", "seq"),
)

rfq_allocations = Table(
    "rfq_allocations",
    metadata,
    Column("rfq_id", String(32), ForeignKey("rfqs.id"), primary_key=True),
    Column("supplier_id", String(63), ForeignKey("organizations.id"), primary_key=True),
    Column("quote_id", String(32), ForeignKey("quotes.id"), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    UniqueConstraint("quote_id", name="uq_rfq_allocations_quote_id"),
)
