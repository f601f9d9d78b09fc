"""Tables owned by the supply service, on the platform's shared metadata."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, String, Table

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
