"""OutboxRelay against a real SQLite file and a fake Kafka producer."""

import datetime as dt
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError
from sqlalchemy import select

from cofab.design.v1 import events_pb2
from services.shared.db import make_engine, outbox, utcnow
from services.shared.events import make_envelope
from services.shared.outbox import enqueue
from services.shared.relay import OutboxRelay


class Future:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def get(self, timeout: float) -> None:
        if not self.ok:
            raise KafkaError("not acknowledged")


class FakeProducer:
    def __init__(self, failing_keys: set[bytes]) -> None:
        self.failing_keys = failing_keys
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Future:
        ok = key not in self.failing_keys
        if ok:
            self.sent.append((topic, key))
        return Future(ok)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


def add_events(url: str, keys: list[str]) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for key in keys:
            enqueue(
                conn,
                make_envelope(
                    source="s",
                    event_type="design.design.created",
                    subject=f"projects/p/designs/{key}",
                    organization="organizations/o",
                    data=events_pb2.DesignCreated(),
                ),
                key,
            )


def unsent_keys(url: str) -> list[str]:
    with make_engine(url).connect() as conn:
        rows = conn.execute(
            select(outbox.c.key).where(outbox.c.sent_time.is_(None)).order_by(outbox.c.seq)
        )
        return [r.key for r in rows]


def test_publishes_and_marks_sent(sqlite_url: str) -> None:
    add_events(sqlite_url, ["a", "b", "a"])
    producer = FakeProducer(set())
    relay = OutboxRelay(make_engine(sqlite_url), lambda: producer)
    assert relay.publish_once() == 3
    assert producer.sent == [("cofab.design", b"a"), ("cofab.design", b"b"), ("cofab.design", b"a")]
    assert unsent_keys(sqlite_url) == []
    assert relay.publish_once() == 0


def test_failed_key_stays_in_outbox_and_keeps_its_order(sqlite_url: str) -> None:
    add_events(sqlite_url, ["a", "b", "a"])
    producer = FakeProducer({b"a"})
    relay = OutboxRelay(make_engine(sqlite_url), lambda: producer)
    assert relay.publish_once() == 1
    assert unsent_keys(sqlite_url) == ["a", "a"]


def test_kafka_unreachable_loses_nothing(sqlite_url: str) -> None:
    add_events(sqlite_url, ["a"])

    def no_broker() -> Any:
        raise KafkaTimeoutError("Unable to bootstrap")

    relay = OutboxRelay(make_engine(sqlite_url), no_broker)
    assert relay.publish_once() == 0
    assert unsent_keys(sqlite_url) == ["a"]


def test_sent_rows_are_pruned_after_the_retention(sqlite_url: str) -> None:
    add_events(sqlite_url, ["a", "b"])
    engine = make_engine(sqlite_url)
    relay = OutboxRelay(engine, lambda: FakeProducer(set()))
    relay.publish_once()
    add_events(sqlite_url, ["c"])  # not sent yet: never pruned
    assert relay.prune() == 0
    assert relay.prune(now=utcnow() + dt.timedelta(days=8)) == 2
    assert unsent_keys(sqlite_url) == ["c"]
