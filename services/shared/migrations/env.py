"""Alembic environment: runs the platform migrations on the URL that migrate.upgrade() sets."""

from __future__ import annotations

from alembic import context

from services.shared.db import make_engine
from services.shared.tables_all import metadata

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
