"""Partner feed retention: the writer's pruning deletes only rows past the retention, in small
batches, and a cursor whose event was pruned is answered OUT_OF_RANGE (never a silent gap) with
the oldest retained cursor, while a current cursor resumes as before."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import Engine, update

from cofab.design.v1 import events_pb2
from cofab.events.v1 import feed_pb2, feed_pb2_grpc
from services.shared.config import ConfigError, load_settings
from services.shared.db import feed_entries, utcnow
from services.shared.events import make_envelope
from services.shared.feed import (
    CURSOR_EXPIRED,
    FeedStore,
    feed_registration,
    prune_periodically,
)
from services.shared.identity_api import TokenAuthenticator
from services.shared.keys import ServerKeys
from services.shared.server import create_server
from tests.conftest import Account, make_account
from tests.support import ServerThread

RETENTION = dt.timedelta(days=30)


def store_event(store: FeedStore, organization: str) -> str:
    envelope = make_envelope(
        source="//cofab/test",
        event_type="design.design.created",
        subject=f"projects/p/designs/{uuid.uuid4().hex[:8]}",
        organization=f"organizations/{organization}",
        data=events_pb2.DesignCreated(),
    )
    assert store.append(envelope) == 1
    return envelope.id


def age(engine: Engine, event_ids: list[str], days: int) -> None:
    """Backdates the rows of these events, as if stored `days` ago."""
    with engine.begin() as conn:
        conn.execute(
            update(feed_entries)
            .where(feed_entries.c.event_id.in_(event_ids))
            .values(store_time=utcnow() - dt.timedelta(days=days))
        )


@pytest.fixture
def feed(engine: Engine) -> Iterator[feed_pb2_grpc.EventFeedServiceStub]:
    server = ServerThread(
        lambda: create_server(
            "127.0.0.1:0",
            [feed_registration(engine)],
            TokenAuthenticator(engine, 0),
            ServerKeys(secrets.token_bytes(32)),
        )
    ).start()
    with grpc.insecure_channel(server.address) as channel:
        yield feed_pb2_grpc.EventFeedServiceStub(channel)
    server.stop()


def stream(
    stub: feed_pb2_grpc.EventFeedServiceStub, account: Account, cursor: str = ""
) -> list[feed_pb2.StreamEventsResponse]:
    return list(
        stub.StreamEvents(
            feed_pb2.StreamEventsRequest(cursor=cursor),
            metadata=(("authorization", f"Bearer {account.token}"),),
            timeout=30,
        )
    )


def test_pruning_deletes_only_rows_past_the_retention(engine: Engine) -> None:
    store = FeedStore(engine)
    old = [store_event(store, org) for org in ("acme", "globex", "acme", "acme", "globex")]
    recent = [store_event(store, org) for org in ("acme", "globex")]
    age(engine, old, days=31)
    age(engine, recent[:1], days=29)

    # Batches of two: five old rows take three transactions and all go; none newer does.
    assert store.prune(utcnow() - RETENTION, batch=2) == 5
    kept = {e.seq for org in ("acme", "globex") for e in store.read(org, 0)}
    assert len(kept) == 2
    assert store.prune(utcnow() - RETENTION, batch=2) == 0

    # What is kept stays a suffix of the feed: a row behind a retained one waits for it.
    later = store_event(store, "acme")
    age(engine, [later], days=40)
    assert store.prune(utcnow() - RETENTION) == 0
    # The writer's pruning loop prunes with the configured retention (one pass, as stopped).
    age(engine, recent, days=31)
    stop = threading.Event()
    stop.set()
    prune_periodically(store, RETENTION, stop, interval=0)
    assert store.read("acme", 0) == store.read("globex", 0) == []


def test_an_expired_cursor_is_out_of_range_and_a_current_one_resumes(
    engine: Engine, feed: feed_pb2_grpc.EventFeedServiceStub
) -> None:
    acme = make_account(engine, "acme", "ann")
    globex = make_account(engine, "globex", "gus")
    store = FeedStore(engine)
    first, second = store_event(store, "acme"), store_event(store, "acme")
    globex_event = store_event(store, "globex")
    received = stream(feed, acme)
    assert [r.event.id for r in received] == [first, second]
    third = store_event(store, "acme")
    age(engine, [first, second], days=31)
    store.prune(utcnow() - RETENTION)

    # Acme stopped after its first event, which is gone, and the second with it: the stream
    # refuses to resume there rather than start at the third as if nothing was missed.
    with pytest.raises(grpc.RpcError) as expired:
        stream(feed, acme, cursor=received[0].cursor)
    error = expired.value
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "cursor expired" in (error.details() or "")
    assert "resume with an empty cursor" in (error.details() or "")
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == CURSOR_EXPIRED
    resumed = stream(feed, acme)
    assert [r.event.id for r in resumed] == [third]
    # Cursors are sealed afresh each time: the oldest one resumes right after that event.
    assert stream(feed, acme, cursor=info.metadata["oldest_cursor"]) == []

    # Globex's cursor still names a retained event: it resumes as before.
    globex_received = stream(feed, globex)
    assert [r.event.id for r in globex_received] == [globex_event]
    assert stream(feed, globex, cursor=globex_received[0].cursor) == []
    later = store_event(store, "globex")
    assert [r.event.id for r in stream(feed, globex, cursor=globex_received[0].cursor)] == [later]


def test_retention_setting() -> None:
    assert load_settings({}).feed_retention_days == 30
    assert load_settings({"COFAB_FEED_RETENTION_DAYS": "7"}).feed_retention_days == 7
    with pytest.raises(ConfigError, match="COFAB_FEED_RETENTION_DAYS"):
        load_settings({"COFAB_FEED_RETENTION_DAYS": "0"})
