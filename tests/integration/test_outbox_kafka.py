"""Events without loss on a real Kafka broker: outbox -> relay -> Kafka -> idempotent consumer,
including a broker that is down while changes are made."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from sqlalchemy import Engine, func, select

from cofab.design.v1 import design_pb2, events_pb2
from deploy.local.processes import KafkaBroker, PythonService, free_ports
from services.shared.consumer import ProcessedEvents
from services.shared.db import outbox, processed_events
from services.shared.events import decode_envelope, header, unpack
from services.shared.kafka import ensure_topics, make_producer
from services.shared.relay import OutboxRelay
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project


def relay_for(engine: Engine, bootstrap: str) -> OutboxRelay:
    def producer() -> object:
        ensure_topics(bootstrap)
        return make_producer(bootstrap)

    return OutboxRelay(engine, producer)


def consume(bootstrap: str, topic: str, subject: str, timeout: float = 30.0) -> list[object]:
    """Every record about `subject` on `topic`, read from the beginning by a fresh group."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    found: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not found:
            for record in consumer:
                if decode_envelope(record.value).subject == subject:
                    found.append(record)
    finally:
        consumer.close()
    return found


def unsent(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.sent_time.is_(None))
        ).scalar_one()


def test_change_reaches_kafka_as_a_keyed_cloudevent(stack: Stack, kafka_bootstrap: str) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        design = create_design(acme, project.name)
    relay = relay_for(stack.engine, kafka_bootstrap)
    assert relay.publish_once() >= 1
    relay.close()
    assert unsent(stack.engine) == 0
    (record,) = consume(kafka_bootstrap, "cofab.design", design.name)
    design_id = design.name.rsplit("/", 1)[1]
    assert record.key == design_id.encode()  # type: ignore[attr-defined]
    headers = record.headers  # type: ignore[attr-defined]
    assert header(headers, "ce_type") == "design.design.created"
    assert header(headers, "ce_source") == "//cofab/design"
    envelope = decode_envelope(record.value)  # type: ignore[attr-defined]
    assert envelope.organization == "organizations/acme"
    assert list(envelope.audience) == ["organizations/acme"]
    payload = unpack(envelope, events_pb2.DesignCreated)
    assert payload.design.name == design.name  # type: ignore[attr-defined]


@pytest.fixture
def own_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[KafkaBroker]:
    """A broker of this test's own, so stopping it disturbs no other test."""
    port, controller = free_ports(2)
    broker = KafkaBroker(tmp_path / "kafka", port=port, controller_port=controller)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_broker_down_then_back_loses_nothing_and_acts_once(
    stack: Stack, own_broker: KafkaBroker
) -> None:
    bootstrap = own_broker.bootstrap_servers
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        own_broker.stop()
        # The change commits while Kafka is down; its event waits in the outbox.
        design = create_design(acme, project.name)
        listed = acme.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project.name))
        assert [d.name for d in listed.designs] == [design.name]
    relay = relay_for(stack.engine, bootstrap)
    assert relay.publish_once() == 0
    assert unsent(stack.engine) == 1
    own_broker.start()
    deadline = time.monotonic() + 60
    while unsent(stack.engine) and time.monotonic() < deadline:
        relay.publish_once()
        time.sleep(0.5)
    relay.close()
    assert unsent(stack.engine) == 0
    records = consume(bootstrap, "cofab.design", design.name)
    assert len(records) == 1
    # A consumer that sees the event twice (redelivery) acts on it once.
    processed = ProcessedEvents(stack.engine, "test-consumer")
    effects: list[str] = []
    envelope = decode_envelope(records[0].value)  # type: ignore[attr-defined]
    for _ in range(2):
        processed.handle_once(envelope.id, lambda conn: effects.append(envelope.id))
    assert effects == [envelope.id]
    with stack.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(processed_events)).scalar_one() == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_relay_process_killed_midway_loses_nothing(
    stack: Stack, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        names = {create_design(acme, project.name, name=f"part {i}").name for i in range(40)}
    env = {
        **os.environ,
        "COFAB_DATABASE_URL": stack.settings.database_url,
        "COFAB_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "COFAB_STATE_DIR": str(tmp_path),
    }
    relay = PythonService("relay", "services.shared.relay", env, tmp_path)
    relay.start()
    time.sleep(0.3)
    relay.kill()  # SIGKILL: no chance to finish a batch or mark rows sent
    relay.start()
    deadline = time.monotonic() + 60
    while unsent(stack.engine) and time.monotonic() < deadline:
        time.sleep(0.3)
    relay.stop()
    assert unsent(stack.engine) == 0
    consumer = KafkaConsumer(
        "cofab.design",
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    seen = [decode_envelope(r.value) for r in consumer]
    consumer.close()
    ours = [e for e in seen if e.subject in names]
    # At least once: every event arrived; deduplicated by id, each exactly once.
    assert {e.subject for e in ours} == names
    assert len({e.id for e in ours}) == len(names)
