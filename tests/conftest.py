"""Shared fixtures: tiers by directory, databases (SQLite and PostgreSQL), accounts."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, make_url, text
from temporalio.testing import WorkflowEnvironment

from services.shared import accounts, audit
from services.shared.config import load_settings
from services.shared.errors import AlreadyExists
from services.shared.migrate import upgrade

TIERS = ("unit", "integration", "e2e")

# Two shared cores under a full test run make per-example timing meaningless; the per-test
# timeout (pyproject) still bounds every test.
hypothesis_settings.register_profile("cofab", deadline=None)
hypothesis_settings.load_profile("cofab")


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


def audit_config(state_dir: Path) -> audit.AuditConfig:
    """The audit key and anchor a process with COFAB_STATE_DIR=state_dir uses."""
    return audit.config_from(load_settings({"COFAB_STATE_DIR": str(state_dir)}))


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = audit.audited_engine_in(database_url, tmp_path)
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


def require_env(name: str, what: str) -> str:
    """A COFAB_TEST_* variable that `make test` sets; outside CI a missing one skips the test."""
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not set: run the tests with `make test`")
        pytest.skip(f"no {what}: run with `make test` to include it")
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return require_env("COFAB_TEST_KAFKA_BOOTSTRAP", "Kafka broker")


def venv_binary(name: str) -> str:
    """A binary that a PyPI wheel installs next to the interpreter (temporal, its test server)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make install`")
    return str(path)


@pytest_asyncio.fixture(scope="session")
async def workflow_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """Temporal as chosen by --workflow-environment (ENGINEERING.md rule 10)."""
    if request.config.getoption("--workflow-environment") == "time-skipping":
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=venv_binary("temporal-test-server")
        )
    else:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=venv_binary("temporal"), ip="127.0.0.1", ui=False
        )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Always the time-skipping test server: for timers of days."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    yield env
    await env.shutdown()
