"""Integration fixtures: real design and supply servers over real sockets, on each database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine
from temporalio.client import Client

from clients.sdk import Cofab, connect
from services.design.adapters.geometry import EngineChecks
from services.design.app import DesignDeps
from services.design.app import build_server as build_design
from services.design.application import DesignApplication
from services.shared import accounts, audit
from services.shared.config import Settings, load_settings
from services.shared.consumer import ProcessedEvents
from services.shared.identity_api import TokenAuthenticator
from services.shared.kafka import ensure_topics, make_producer
from services.shared.relay import OutboxRelay
from services.supply.app import bootstrap as supply_bootstrap
from services.supply.app import build_server as build_supply
from tests.conftest import Account, make_account
from tests.support import ServerThread, ShiftableClock
from workflows.bridge import EventBridge, run_bridge
from workflows.worker import activities_for, build_worker


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
    design_engine = audit.audited_engine(settings)
    design_deps = DesignDeps(
        design_engine,
        TokenAuthenticator(design_engine, settings.auth_cache_seconds),
        DesignApplication(design_engine, clock, geometry=EngineChecks()),
    )
    design = ServerThread(lambda: build_design(settings, design_deps, "127.0.0.1:0")).start()
    # The supply service asks this design server (items' designs, RFQs' revisions).
    settings = dataclasses.replace(settings, design_address=design.address)
    supply_deps = supply_bootstrap(settings)
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


@dataclass
class EventPipeline:
    """The event path around a Stack, as `make up` runs it: outbox relay -> Kafka -> bridge ->
    Temporal, whose worker's activities call the stack's services as the service account."""

    client: Client
    task_queue: str
    bridge: EventBridge


@asynccontextmanager
async def event_pipeline(
    stack: Stack, kafka_bootstrap: str, client: Client
) -> AsyncIterator[EventPipeline]:
    """Relay, bridge and worker on their own task queue and consumer group, stopped on exit."""
    task_queue = f"cofab-{uuid.uuid4().hex}"
    settings = dataclasses.replace(
        stack.settings, kafka_bootstrap=kafka_bootstrap, temporal_task_queue=task_queue
    )
    stop = threading.Event()

    def producer() -> object:
        ensure_topics(kafka_bootstrap)
        return make_producer(kafka_bootstrap)

    relay = OutboxRelay(stack.engine, producer)
    relay_thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_wait": 0.1})
    relay_thread.start()
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    service = connect(token, stack.design.address, stack.supply.address)
    bridge = EventBridge(client, task_queue, service.procurement)
    group = f"bridge-{task_queue}"
    loop = asyncio.get_running_loop()
    bridge_task = asyncio.create_task(
        asyncio.to_thread(
            run_bridge,
            bridge,
            ProcessedEvents(stack.engine, group),
            settings,
            loop,
            stop,
            group_id=group,
        )
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, task_queue, activities_for(service), executor):
                yield EventPipeline(client, task_queue, bridge)
    finally:
        stop.set()
        await bridge_task
        relay_thread.join(timeout=10)
        relay.close()
        service.close()
