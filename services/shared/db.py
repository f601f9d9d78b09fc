"""Database engine and the tables both services share (identity, audit, outbox, idempotency).

One database holds the whole platform's schema, with one Alembic history (migrations/).
Each service keeps its own tables in its adapters package, on the same `metadata`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Autoincrementing integer keys that also work on SQLite (which only autoincrements INTEGER).
SeqKey = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


organizations = Table(
    "organizations",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("organization_id", String(63), ForeignKey("organizations.id"), primary_key=True),
    Column("id", String(63), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("organization_admin", Boolean, nullable=False, default=False),
    Column("service_account", Boolean, nullable=False, default=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("organization_id", String(63), nullable=False),
    Column("user_id", String(63), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("expire_time", UtcDateTime(), nullable=False),
    Column("revoke_time", UtcDateTime(), nullable=True),
    Column("description", String(200), nullable=False, default=""),
)

projects = Table(
    "projects",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("owner_organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("project_id", String(32), ForeignKey("projects.id"), nullable=False),
    Column("organization_id", String(63), ForeignKey("organizations.id"), nullable=False),
    Column("role", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("invitation_id", String(32), nullable=False),
    Column("invited_by", String(200), nullable=False, default=""),
    Column("invite_expire_time", UtcDateTime(), nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    UniqueConstraint("project_id", "organization_id", name="uq_memberships_project_org"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", UtcDateTime(), nullable=False),
    Column("organization_id", String(63), nullable=False),
    Column("user_id", String(63), nullable=False),
    Column("action", String(100), nullable=False),
    Column("resource", String(500), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id=1): the chain's last sequence number and hash. Appends lock it, so concurrent
# writers from several processes extend one chain instead of forking it.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(300), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("sent_time", UtcDateTime(), nullable=True),
    Index("ix_outbox_unsent", "sent_time", "seq"),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("process_time", UtcDateTime(), nullable=False),
)

# The partner event feed: one row per (organization allowed to see it, event), in the order the
# single feed writer stored them. `seq` is the organization's resume cursor.
feed_entries = Table(
    "feed_entries",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("organization_id", String(63), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("store_time", UtcDateTime(), nullable=False),
    UniqueConstraint("organization_id", "event_id", name="uq_feed_entries_organization_event"),
    Index("ix_feed_entries_organization_seq", "organization_id", "seq"),
)

# AIP-155: a mutating call retried with the same request_id returns the first call's resource.
request_log = Table(
    "request_log",
    metadata,
    Column("organization_id", String(63), primary_key=True),
    Column("user_id", String(63), primary_key=True),
    Column("method", String(100), primary_key=True),
    Column("request_id", String(100), primary_key=True),
    Column("resource", String(500), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    # SHA-256 of the request without its request_id (services.shared.idempotency).
    Column("fingerprint", String(64), nullable=True),
)


READ_ONLY = "cofab_read_only"


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite its transaction does not take the write lock."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        yield conn


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Creates the engine; SQLite gets WAL, foreign keys and write transactions that take the
    write lock up front (BEGIN IMMEDIATE), so concurrent writers queue instead of failing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            # Reads (see read_only) need no write lock; taking it would queue them behind writers.
            readonly = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)
