"""The partner event feed end to end: outbox -> relay -> Kafka -> feed writer -> StreamEvents.

Each organization receives exactly the events it caused or is in the audience of, and a
stream resumed from a cursor continues with the next event: no gap, no repeat."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine

from cofab.design.v1 import design_pb2, events_pb2
from cofab.events.v1 import feed_pb2, feed_pb2_grpc
from services.shared.config import load_settings
from services.shared.events import make_envelope
from services.shared.feed import FeedStore, feed_registration, run_feed_writer
from services.shared.identity_api import TokenAuthenticator
from services.shared.keys import ServerKeys
from services.shared.outbox import enqueue
from services.shared.server import create_server
from tests.conftest import Account, make_account
from tests.integration.test_outbox_kafka import relay_for
from tests.support import ServerThread


def publish(engine: Engine, organization: str, audience: Sequence[str] = ()) -> str:
    """Writes one design event caused by `organization` to the outbox; returns its id."""
    design = design_pb2.Design(name=f"projects/p/designs/{uuid.uuid4().hex[:8]}")
    envelope = make_envelope(
        source="//cofab/test",
        event_type="design.design.created",
        subject=design.name,
        organization=f"organizations/{organization}",
        data=events_pb2.DesignCreated(design=design),
        audience=[f"organizations/{o}" for o in audience],
    )
    with engine.begin() as conn:
        enqueue(conn, envelope, design.name)
    return envelope.id


class Feed:
    """The running pipeline: relay and feed writer threads, and a server with the feed."""

    def __init__(self, engine: Engine, bootstrap: str, tmp_path: Path) -> None:
        self.engine = engine
        self.stop = threading.Event()
        settings = load_settings(
            {"COFAB_STATE_DIR": str(tmp_path), "COFAB_KAFKA_BOOTSTRAP": bootstrap}
        )
        relay = relay_for(engine, bootstrap)
        self.threads = [
            threading.Thread(target=relay.run, args=(self.stop,), daemon=True),
            threading.Thread(
                target=run_feed_writer,
                args=(FeedStore(engine), settings, self.stop, f"test-feed-{uuid.uuid4().hex}"),
                daemon=True,
            ),
        ]
        for thread in self.threads:
            thread.start()
        self.server = ServerThread(
            lambda: create_server(
                "127.0.0.1:0",
                [feed_registration(engine)],
                TokenAuthenticator(engine, 0),
                ServerKeys(secrets.token_bytes(32)),
            )
        ).start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = feed_pb2_grpc.EventFeedServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop()
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def take(
        self, account: Account, count: int, cursor: str = "", timeout: float = 60.0
    ) -> list[feed_pb2.StreamEventsResponse]:
        """The first `count` events of a following stream after `cursor` (waits for them)."""
        stream = self.stub.StreamEvents(
            feed_pb2.StreamEventsRequest(cursor=cursor, follow=True),
            metadata=(("authorization", f"Bearer {account.token}"),),
            timeout=timeout,
        )
        received: list[feed_pb2.StreamEventsResponse] = []
        for response in stream:
            received.append(response)
            if len(received) == count:
                stream.cancel()
                break
        return received

    def drain(self, account: Account, cursor: str = "") -> list[str]:
        """Ids of every stored event after `cursor` (the stream ends when none is left)."""
        stream = self.stub.StreamEvents(
            feed_pb2.StreamEventsRequest(cursor=cursor),
            metadata=(("authorization", f"Bearer {account.token}"),),
            timeout=30,
        )
        return [r.event.id for r in stream]


@pytest.fixture
def feed(engine: Engine, kafka_bootstrap: str, tmp_path: Path) -> Iterator[Feed]:
    running = Feed(engine, kafka_bootstrap, tmp_path)
    yield running
    running.close()


def test_each_organization_gets_its_events_and_resumes_without_gap(
    feed: Feed, engine: Engine
) -> None:
    # The broker outlives a test and the writer reads topics from the start: fresh names keep
    # other tests' events out of these organizations' feeds.
    run = uuid.uuid4().hex[:6]
    acme = make_account(engine, f"acme-{run}", "ann")
    globex = make_account(engine, f"globex-{run}", "gus")
    initech = make_account(engine, f"initech-{run}", "ian")

    shared = publish(engine, acme.organization, audience=[globex.organization])
    private = publish(engine, initech.organization)
    reply = publish(engine, globex.organization, audience=[acme.organization])

    # Kafka keeps order per aggregate (record key), not across them: compare as sets here.
    assert {r.event.id for r in feed.take(acme, 2)} == {shared, reply}
    assert private not in feed.drain(acme)
    assert set(feed.drain(globex)) == {shared, reply}
    assert feed.drain(initech) == [private]

    # A partner that disconnected after its first event resumes from that event's cursor: it
    # gets exactly the rest, including one published since, and nothing before the cursor again.
    later = publish(engine, acme.organization)
    everything = feed.take(acme, 3)
    assert {r.event.id for r in everything} == {shared, reply, later}
    resumed = feed.take(acme, 2, cursor=everything[0].cursor)
    assert [r.event.id for r in resumed] == [r.event.id for r in everything[1:]]
    assert feed.drain(acme, cursor=resumed[-1].cursor) == []


def test_a_redelivered_event_is_stored_once(engine: Engine) -> None:
    make_account(engine, "acme", "ann")
    envelope = make_envelope(
        source="//cofab/test",
        event_type="design.design.created",
        subject="projects/p/designs/d",
        organization="organizations/acme",
        data=events_pb2.DesignCreated(),
        audience=["organizations/globex", "organizations/acme"],
    )
    store = FeedStore(engine)
    assert store.append(envelope) == 2
    assert store.append(envelope) == 0
    assert [e.seq for e in store.read("globex", 0)] == [store.read("globex", 0)[0].seq]


def test_bad_cursor_and_missing_token_are_refused(feed: Feed, engine: Engine) -> None:
    acme = make_account(engine, "acme", "ann")
    with pytest.raises(grpc.RpcError) as bad:
        feed.drain(acme, cursor="not-a-cursor")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cursor" in (bad.value.details() or "")
    with pytest.raises(grpc.RpcError) as anonymous:
        list(feed.stub.StreamEvents(feed_pb2.StreamEventsRequest(), timeout=10))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    started = time.monotonic()
    assert feed.drain(acme) == []
    assert time.monotonic() - started < 10
