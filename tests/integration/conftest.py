"""Integration fixtures: real design and supply servers over real sockets, on each database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from clients.sdk import Cofab, connect
from services.design.app import DesignDeps
from services.design.app import build_server as build_design
from services.design.application import DesignApplication
from services.shared.config import Settings, load_settings
from services.shared.db import make_engine
from services.shared.identity_api import TokenAuthenticator
from services.supply.app import bootstrap as supply_bootstrap
from services.supply.app import build_server as build_supply
from tests.conftest import Account, make_account
from tests.support import ServerThread, ShiftableClock


@dataclass
class Stack:
    """Both services on one database, plus three companies: ACME (owner of projects),
    Globex (a partner) and Initech (an outsider who must never see their data)."""

    settings: Settings
    engine: Engine
    clock: ShiftableClock
    design: ServerThread
    supply: ServerThread
    acme: Account
    acme_member: Account
    globex: Account
    initech: Account

    def client(self, account: Account | None) -> Cofab:
        return connect(account.token if account else None, self.design.address, self.supply.address)


@pytest.fixture
def settings(database_url: str, tmp_path: object) -> Settings:
    # No token cache: tests revoke tokens and expect the very next call to be refused.
    return load_settings(
        {
            "COFAB_DATABASE_URL": database_url,
            "COFAB_STATE_DIR": str(tmp_path),
            "COFAB_AUTH_CACHE_SECONDS": "0",
        }
    )


@pytest.fixture
def stack(settings: Settings, engine: Engine) -> Iterator[Stack]:
    clock = ShiftableClock()
    design_engine = make_engine(settings.database_url)
    design_deps = DesignDeps(
        design_engine,
        TokenAuthenticator(design_engine, settings.auth_cache_seconds),
        DesignApplication(design_engine, clock),
    )
    supply_deps = supply_bootstrap(settings)
    design = ServerThread(lambda: build_design(settings, design_deps, "127.0.0.1:0")).start()
    supply = ServerThread(lambda: build_supply(settings, supply_deps, "127.0.0.1:0")).start()
    try:
        yield Stack(
            settings=settings,
            engine=engine,
            clock=clock,
            design=design,
            supply=supply,
            acme=make_account(engine, "acme", "alice", admin=True),
            acme_member=make_account(engine, "acme", "mark"),
            globex=make_account(engine, "globex", "gina", admin=True),
            initech=make_account(engine, "initech", "ivan", admin=True),
        )
    finally:
        design.stop()
        supply.stop()
        design_deps.engine.dispose()
        supply_deps.engine.dispose()
