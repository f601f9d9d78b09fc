"""The partner event feed: each organization's events over gRPC, resumable from a cursor.

The feed writer (`python -m services.shared.feed`) consumes every area topic and stores each
event once per organization allowed to see it (the one that caused it and those in its
`audience`). Run exactly one writer per database: rows then get their `seq` in commit order, so a
reader that resumes after the last `seq` it saw can never skip a row committed later with a
smaller one. `EventFeedServicer.StreamEvents`, served by every service, reads an organization's
rows after its cursor and, with `follow`, polls for new ones. Partners need no Kafka credentials.

The writer also prunes rows older than COFAB_FEED_RETENTION_DAYS. It deletes the oldest rows in
`seq` order and stops at the first one still retained, so what is left is always a suffix of the
feed: a cursor whose own row is still there has lost nothing after it, and a cursor whose row is
gone is answered OUT_OF_RANGE instead of silently skipping what was pruned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select

from cofab.events.v1 import feed_pb2, feed_pb2_grpc
from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.config import Settings, load_settings
from services.shared.consumer import ConsumeLoop
from services.shared.db import feed_entries, make_engine, read_only, utcnow
from services.shared.errors import InvalidArgument, OutOfRange
from services.shared.events import AREAS, TOPIC_PREFIX
from services.shared.kafka import ensure_topics, make_consumer, make_producer
from services.shared.keys import current_keys, seal, unseal
from services.shared.process import mark_ready, run_until_signalled
from services.shared.server import ServiceRegistration, current_principal

log = logging.getLogger(__name__)

CONSUMER_GROUP = "cofab-feed"
_CURSOR_PURPOSE = "feed-cursor"
_ORGANIZATION_PREFIX = "organizations/"
READ_BATCH = 500
# Rows deleted per transaction: a backlog of millions is pruned in short transactions, so the
# writer's inserts and the readers never wait long behind one big delete.
PRUNE_BATCH = 1000
PRUNE_INTERVAL_S = 3600.0
CURSOR_EXPIRED = "CURSOR_EXPIRED"


@dataclass(frozen=True)
class FeedEntry:
    seq: int
    envelope: bytes


def visible_to(envelope: EventEnvelope) -> list[str]:
    """Ids of the organizations that may see `envelope`: its originator and its audience."""
    ids: list[str] = []
    for name in (envelope.organization, *envelope.audience):
        if name.startswith(_ORGANIZATION_PREFIX):
            org = name.removeprefix(_ORGANIZATION_PREFIX)
            if org and "/" not in org and org not in ids:
                ids.append(org)
    return ids


def encode_cursor(organization_id: str, seq: int) -> str:
    """An opaque cursor after `seq` in the organization's feed: sealed with the server key and
    bound to the organization, so it says nothing about the platform's event count and works
    in no other organization's feed (services.shared.keys)."""
    return seal(current_keys().sealing, _CURSOR_PURPOSE, organization_id, seq)


def decode_cursor(organization_id: str, cursor: str) -> int:
    """The feed position after which to resume; 0 for an empty cursor. A cursor this server
    did not make for this organization (forged, altered, another's) is InvalidArgument."""
    if not cursor:
        return 0
    seq = unseal(current_keys().sealing, _CURSOR_PURPOSE, organization_id, cursor)
    if seq is None:
        raise InvalidArgument.field(
            "cursor", "is not a cursor this feed returned to your organization"
        )
    return seq


class FeedStore:
    """Feed rows in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(self, envelope: EventEnvelope) -> int:
        """Stores `envelope` for every organization that may see it; returns the rows added.

        Idempotent: a redelivered event adds nothing."""
        organizations = visible_to(envelope)
        if not organizations:
            return 0
        payload = envelope.SerializeToString()
        with self._engine.begin() as conn:
            stored = set(
                conn.scalars(
                    select(feed_entries.c.organization_id).where(
                        feed_entries.c.event_id == envelope.id,
                        feed_entries.c.organization_id.in_(organizations),
                    )
                )
            )
            rows = [
                {
                    "organization_id": org,
                    "event_id": envelope.id,
                    "event_type": envelope.type,
                    "envelope": payload,
                    "store_time": utcnow(),
                }
                for org in organizations
                if org not in stored
            ]
            if rows:
                conn.execute(insert(feed_entries), rows)
        return len(rows)

    def read(
        self,
        organization_id: str,
        after_seq: int,
        type_prefixes: Sequence[str] = (),
        limit: int = READ_BATCH,
    ) -> list[FeedEntry]:
        """The organization's entries after `after_seq`, oldest first."""
        query = (
            select(feed_entries.c.seq, feed_entries.c.envelope)
            .where(
                feed_entries.c.organization_id == organization_id,
                feed_entries.c.seq > after_seq,
            )
            .order_by(feed_entries.c.seq)
            .limit(limit)
        )
        if type_prefixes:
            query = query.where(
                or_(*(feed_entries.c.event_type.startswith(p) for p in type_prefixes))
            )
        with read_only(self._engine) as conn:
            return [FeedEntry(row.seq, row.envelope) for row in conn.execute(query)]

    def prune(self, before: dt.datetime, batch: int = PRUNE_BATCH) -> int:
        """Deletes the rows stored before `before`, oldest first, `batch` rows per transaction;
        returns how many. It stops at the first row still retained (see the module docstring)."""
        deleted = 0
        while True:
            with self._engine.begin() as conn:
                oldest = conn.execute(
                    select(feed_entries.c.seq, feed_entries.c.store_time)
                    .order_by(feed_entries.c.seq)
                    .limit(batch)
                ).all()
                expired = [
                    row.seq for row in itertools.takewhile(lambda r: r.store_time < before, oldest)
                ]
                if expired:
                    conn.execute(delete(feed_entries).where(feed_entries.c.seq.in_(expired)))
            deleted += len(expired)
            if len(expired) < batch:
                return deleted

    def retains(self, organization_id: str, seq: int) -> bool:
        """Whether the organization's row at `seq` (a cursor's event) is still stored."""
        with read_only(self._engine) as conn:
            found = conn.scalar(
                select(feed_entries.c.seq).where(
                    feed_entries.c.organization_id == organization_id, feed_entries.c.seq == seq
                )
            )
        return found is not None

    def oldest(self, organization_id: str) -> int | None:
        """The `seq` of the organization's oldest retained row, None when it has none."""
        with read_only(self._engine) as conn:
            return conn.scalar(
                select(feed_entries.c.seq)
                .where(feed_entries.c.organization_id == organization_id)
                .order_by(feed_entries.c.seq)
                .limit(1)
            )


def expired_cursor(organization_id: str, oldest: int | None) -> OutOfRange:
    """The error for a cursor whose event was pruned, with how to resume: from the start of what
    is retained (an empty cursor); ErrorInfo carries the oldest retained event's cursor."""
    return OutOfRange(
        "cursor expired: its event is older than the feed's retention period and was removed, "
        "so events after it may be missing; resume with an empty cursor to stream from the "
        "oldest retained event (its cursor is ErrorInfo metadata oldest_cursor)",
        reason=CURSOR_EXPIRED,
        metadata={
            "oldest_cursor": encode_cursor(organization_id, oldest) if oldest is not None else ""
        },
    )


class EventFeedServicer(feed_pb2_grpc.EventFeedServiceServicer):
    def __init__(self, store: FeedStore, poll_interval: float = 0.2) -> None:
        self._store = store
        self._poll_interval = poll_interval

    async def StreamEvents(
        self, request: feed_pb2.StreamEventsRequest, context: Any
    ) -> AsyncIterator[feed_pb2.StreamEventsResponse]:
        organization_id = current_principal().organization_id
        after = decode_cursor(organization_id, request.cursor)
        # The cursor is genuinely this organization's, so its row existed: gone means pruned.
        if after and not await asyncio.to_thread(self._store.retains, organization_id, after):
            oldest = await asyncio.to_thread(self._store.oldest, organization_id)
            raise expired_cursor(organization_id, oldest)
        prefixes = [p for p in request.type_prefixes if p]
        while True:
            entries = await asyncio.to_thread(
                self._store.read, organization_id, after, prefixes, READ_BATCH
            )
            for entry in entries:
                event = EventEnvelope()
                event.ParseFromString(entry.envelope)
                yield feed_pb2.StreamEventsResponse(
                    event=event, cursor=encode_cursor(organization_id, entry.seq)
                )
                after = entry.seq
            if len(entries) == READ_BATCH:
                continue
            if not request.follow:
                return
            await asyncio.sleep(self._poll_interval)


def feed_registration(engine: Engine) -> ServiceRegistration:
    """The EventFeedService, for a service's list of registrations."""
    servicer = EventFeedServicer(FeedStore(engine))
    return ServiceRegistration(
        feed_pb2.DESCRIPTOR.services_by_name["EventFeedService"].full_name,
        lambda server: feed_pb2_grpc.add_EventFeedServiceServicer_to_server(servicer, server),
    )


def feed_topics() -> list[str]:
    return [TOPIC_PREFIX + area for area in AREAS]


def prune_periodically(
    store: FeedStore,
    retention: dt.timedelta,
    stop: threading.Event,
    interval: float = PRUNE_INTERVAL_S,
) -> None:
    """Prunes rows older than `retention` now and every `interval` seconds until `stop`."""
    while True:
        try:
            pruned = store.prune(utcnow() - retention)
            if pruned:
                log.info("pruned %d feed rows older than %s", pruned, retention)
        except Exception:
            # A failed pass (database briefly down) is retried at the next interval.
            log.exception("feed pruning failed")
        if stop.wait(interval):
            return


def run_feed_writer(
    store: FeedStore, settings: Settings, stop: threading.Event, group_id: str = CONSUMER_GROUP
) -> None:
    """Consumes every area topic into the feed, and prunes it, until `stop` is set."""

    def handle(envelope: EventEnvelope) -> None:
        store.append(envelope)

    # Each prune batch is its own transaction: the daemon thread may die with the process at any
    # point without leaving anything half done.
    retention = dt.timedelta(days=settings.feed_retention_days)
    threading.Thread(
        target=prune_periodically, args=(store, retention, stop), name="feed-pruner", daemon=True
    ).start()
    ensure_topics(settings.kafka_bootstrap)
    consumer = make_consumer(settings.kafka_bootstrap, group_id, feed_topics())
    dead_letters = make_producer(settings.kafka_bootstrap)
    try:
        mark_ready(settings)
        ConsumeLoop(consumer, dead_letters, handle, group_id).run(stop)
    finally:
        consumer.close()
        dead_letters.close(timeout=5)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s feed %(levelname)s %(message)s")
    settings = load_settings()
    store = FeedStore(make_engine(settings.database_url))
    run_until_signalled(lambda stop: run_feed_writer(store, settings, stop))


if __name__ == "__main__":
    main()
