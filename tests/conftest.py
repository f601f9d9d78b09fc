"""Shared fixtures: tiers by directory, databases (SQLite and PostgreSQL), accounts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from services.shared import accounts
from services.shared.db import make_engine
from services.shared.errors import AlreadyExists
from services.shared.migrate import upgrade

TIERS = ("unit", "integration", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--workflow-environment",
        default="local",
        choices=("local", "time-skipping"),
        help="Temporal for workflow tests: the local dev server or the time-skipping test server",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in TIERS:
            if f"{os.sep}tests{os.sep}{tier}{os.sep}" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))


def _postgres_database() -> str:
    base = os.environ.get("COFAB_TEST_POSTGRES_BASE_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("COFAB_TEST_POSTGRES_BASE_URL is not set: run the tests with `make test`")
        pytest.skip("no PostgreSQL: run with `make test` to include it")
    name = f"cofab_{uuid.uuid4().hex[:12]}"
    server = make_url(base)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: each test runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cofab.db'}"
    else:
        url = _postgres_database()
    upgrade(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cofab.db'}"
    upgrade(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class Account:
    organization: str
    user: str
    token: str


def make_account(engine: Engine, organization: str, user: str, admin: bool = False) -> Account:
    """An organization (created if missing), one user in it and a token."""
    try:
        accounts.create_organization(engine, organization, organization.upper())
    except AlreadyExists:
        pass
    accounts.create_user(engine, organization, user, organization_admin=admin)
    token = accounts.create_token(engine, organization, user).plaintext
    return Account(organization, user, token)
