"""Kafka clients (kafka-python) configured the one way cofab uses them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.shared.events import all_topics

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 3
# Partners produce quotes here (EventEnvelope of type `procurement.quote.inbound`); the event
# bridge records them. Not a cofab area topic: cofab's services never write to it.
INBOUND_QUOTES_TOPIC = "procurement.quotes.inbound"


def make_producer(bootstrap: str) -> KafkaProducer:
    """A producer that loses nothing it acknowledged and keeps per-key order across retries."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        retries=5,
        max_in_flight_requests_per_connection=1,
        # Neither connecting nor send() may hang the relay for long when the broker is gone.
        bootstrap_timeout_ms=5_000,
        max_block_ms=5_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=20_000,
        linger_ms=5,
    )


def make_consumer(bootstrap: str, group_id: str, topics: Sequence[str]) -> KafkaConsumer:
    """A group consumer that commits offsets only after a record was fully handled."""
    return KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        bootstrap_timeout_ms=5_000,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=100,
    )


def ensure_topics(
    bootstrap: str, topics: Sequence[str] | None = None, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Creates cofab's topics (by default every area topic, the dead-letter topic and the
    partners' inbound quote topic) if they do not exist yet (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=5_000)
    try:
        existing = set(admin.list_topics())
        wanted = topics or [*all_topics(), INBOUND_QUOTES_TOPIC]
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another process created it between our list and create
            log.info("created topics %s", missing)
    finally:
        admin.close()
