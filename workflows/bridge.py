"""`python -m workflows.bridge`: turns cofab events on Kafka into Temporal workflow starts and
signals, idempotently.

Workflow ids derive from business ids and duplicate starts are rejected, so a redelivered event
starts nothing new; handled event ids are also recorded, so it is not even dispatched twice.
Records that are not cofab events go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.identity.v1 import events_pb2 as identity_events
from services.shared.config import Settings, load_settings
from services.shared.consumer import ConsumeLoop, PermanentEventError, ProcessedEvents
from services.shared.db import make_engine
from services.shared.events import unpack
from services.shared.kafka import ensure_topics, make_consumer, make_producer
from services.shared.process import mark_ready
from workflows.invitation import InvitationInput, ProjectInvitationWorkflow, workflow_id
from workflows.invitation.workflows import ACTIVE, DECLINED

log = logging.getLogger(__name__)

CONSUMER_GROUP = "cofab-bridge"
TOPICS = ["cofab.identity"]


class EventBridge:
    """Maps event types to workflow operations on one Temporal client."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._routes: dict[str, Callable[[EventEnvelope], Awaitable[None]]] = {
            "identity.membership.invited": self._invited,
            "identity.membership.accepted": lambda e: self._answered(e, ACTIVE),
            "identity.membership.declined": lambda e: self._answered(e, DECLINED),
        }

    def handles(self, event_type: str) -> bool:
        return event_type in self._routes

    async def dispatch(self, envelope: EventEnvelope) -> None:
        route = self._routes.get(envelope.type)
        if route is not None:
            await route(envelope)

    async def _invited(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, identity_events.MembershipInvited)
        assert isinstance(event, identity_events.MembershipInvited)
        membership = event.membership
        if not membership.invitation_id or not membership.HasField("invite_expire_time"):
            raise PermanentEventError("membership.invited lacks invitation_id or expiry")
        try:
            await self._client.start_workflow(
                ProjectInvitationWorkflow.run,
                InvitationInput(
                    membership=membership.name,
                    invitation_id=membership.invitation_id,
                    expire_unix=membership.invite_expire_time.ToNanoseconds() / 1e9,
                ),
                id=workflow_id(membership.invitation_id),
                task_queue=self._task_queue,
                # A redelivered event after the workflow finished must not start a second run.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info("invitation workflow %s already started", membership.invitation_id)

    async def _answered(self, envelope: EventEnvelope, state: str) -> None:
        message_type = (
            identity_events.MembershipAccepted
            if state == ACTIVE
            else identity_events.MembershipDeclined
        )
        event = unpack(envelope, message_type)
        invitation_id: str = event.membership.invitation_id  # type: ignore[attr-defined]
        if not invitation_id:
            raise PermanentEventError("membership event lacks invitation_id")
        handle: WorkflowHandle[ProjectInvitationWorkflow, object] = (
            self._client.get_workflow_handle(workflow_id(invitation_id))
        )
        try:
            await handle.signal(ProjectInvitationWorkflow.answered, state)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            # The workflow already finished (its answer or expiry came first): nothing to do.
            log.info("invitation workflow %s already closed", invitation_id)


def run_bridge(
    bridge: EventBridge,
    processed: ProcessedEvents,
    settings: Settings,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    group_id: str = CONSUMER_GROUP,
) -> None:
    """The Kafka side, in a thread: each event is dispatched on the asyncio loop and recorded."""

    def handle(envelope: EventEnvelope) -> None:
        if not bridge.handles(envelope.type) or processed.seen(envelope.id):
            return
        asyncio.run_coroutine_threadsafe(bridge.dispatch(envelope), loop).result(timeout=60)
        processed.record(envelope.id)

    ensure_topics(settings.kafka_bootstrap)
    consumer = make_consumer(settings.kafka_bootstrap, group_id, TOPICS)
    dead_letters = make_producer(settings.kafka_bootstrap)
    try:
        mark_ready(settings)
        ConsumeLoop(consumer, dead_letters, handle, group_id).run(stop)
    finally:
        consumer.close()
        dead_letters.close(timeout=5)


async def run(settings: Settings) -> None:
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    bridge = EventBridge(client, settings.temporal_task_queue)
    processed = ProcessedEvents(make_engine(settings.database_url), CONSUMER_GROUP)
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await asyncio.to_thread(run_bridge, bridge, processed, settings, loop, stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bridge %(levelname)s %(message)s")
    asyncio.run(run(load_settings()))


if __name__ == "__main__":
    main()
