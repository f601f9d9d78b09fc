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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from clients.sdk import connect
from cofab.design.v1 import review_events_pb2 as review_events
from cofab.design.v1 import review_pb2
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.identity.v1 import events_pb2 as identity_events
from cofab.procurement.v1 import events_pb2 as procurement_events
from cofab.procurement.v1 import procurement_pb2, procurement_pb2_grpc
from cofab.supply.v1 import events_pb2 as supply_events
from services.shared.config import Settings, load_settings
from services.shared.consumer import ConsumeLoop, PermanentEventError, ProcessedEvents
from services.shared.db import make_engine
from services.shared.events import unpack
from services.shared.kafka import (
    INBOUND_QUOTES_TOPIC,
    ensure_topics,
    make_consumer,
    make_producer,
)
from services.shared.process import mark_ready
from workflows.disruption import DisruptionInput, DisruptionWorkflow
from workflows.disruption import workflow_id as disruption_workflow_id
from workflows.grpc_errors import PERMANENT
from workflows.invitation import InvitationInput, ProjectInvitationWorkflow, workflow_id
from workflows.invitation.workflows import ACTIVE, DECLINED
from workflows.procurement import ProcurementInput, ProcurementWorkflow
from workflows.procurement import workflow_id as rfq_workflow_id
from workflows.review import DecisionInput, DesignReviewWorkflow, ReviewInput
from workflows.review import workflow_id as review_workflow_id
from workflows.worker import service_token

log = logging.getLogger(__name__)

CONSUMER_GROUP = "cofab-bridge"
QUOTE_SIGNAL_INTERVAL_S = 1.0
TOPICS = [
    "cofab.identity",
    "cofab.design",
    "cofab.supply",
    "cofab.procurement",
    INBOUND_QUOTES_TOPIC,
]


class EventBridge:
    """Maps event types to workflow operations on one Temporal client."""

    def __init__(
        self,
        client: Client,
        task_queue: str,
        procurement: procurement_pb2_grpc.ProcurementServiceStub | None = None,
    ) -> None:
        """`procurement` (with the service account's token) records partners' inbound quotes;
        without it the bridge leaves them alone."""
        self._client = client
        self._task_queue = task_queue
        self._procurement = procurement
        # Per open RFQ: the quote count last signalled to its workflow, and when (in memory: a
        # restarted bridge signals the next count it sees).
        self._quote_signals: dict[str, tuple[int, float]] = {}
        self._routes: dict[str, Callable[[EventEnvelope], Awaitable[None]]] = {
            "identity.membership.invited": self._invited,
            "identity.membership.accepted": lambda e: self._answered(e, ACTIVE),
            "identity.membership.declined": lambda e: self._answered(e, DECLINED),
            "design.review.requested": self._review_requested,
            "design.review.decision_submitted": self._review_decided,
            "design.review.extended": self._review_extended,
            "design.review.cancel_requested": self._review_cancelled,
            "design.review.superseded": self._review_superseded,
            "supply.disruption.reported": self._disruption_reported,
            "supply.disruption.resolved": self._disruption_resolved,
            "procurement.rfq.published": self._rfq_published,
            "procurement.quote.received": self._quotes_changed,
            "procurement.rfq.cancelled": self._rfq_cancelled,
            "procurement.rfq.awarded": self._rfq_awarded,
        }
        if procurement is not None:
            self._routes["procurement.quote.inbound"] = self._inbound_quote

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

    # design reviews

    async def _review_requested(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, review_events.ReviewRequested)
        assert isinstance(event, review_events.ReviewRequested)
        review = event.review
        if not review.name or not review.revision or not review.reviewers:
            raise PermanentEventError("review.requested lacks name, revision or reviewers")
        try:
            await self._client.start_workflow(
                DesignReviewWorkflow.run,
                review_input(review),
                id=review_workflow_id(review.name),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info("review workflow for %s already started", review.name)

    async def _review_decided(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, review_events.ReviewDecisionSubmitted)
        assert isinstance(event, review_events.ReviewDecisionSubmitted)
        d = event.decision
        decision = DecisionInput(
            organization=d.organization.removeprefix("organizations/"),
            user=d.user,
            outcome=review_pb2.ReviewOutcome.Name(d.outcome).removeprefix("REVIEW_OUTCOME_"),
            comment=d.comment,
            revision=d.revision,
            decide_unix=d.decide_time.ToNanoseconds() / 1e9,
        )
        handle = self._client.get_workflow_handle(review_workflow_id(event.review))
        try:
            # The event id is the update id: a redelivered event is not counted twice.
            await handle.execute_update(DesignReviewWorkflow.decide, decision, id=envelope.id)
        except WorkflowUpdateFailedError as error:
            # The validator refused it (not a reviewer, decided already, review over, ...).
            raise PermanentEventError(f"decision refused: {error.cause}") from None
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            raise PermanentEventError(f"{event.review} has ended; decision not counted") from None

    async def _review_extended(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, review_events.ReviewExtended)
        assert isinstance(event, review_events.ReviewExtended)
        await self._signal_review(
            event.review, DesignReviewWorkflow.extend, event.deadline.ToNanoseconds() / 1e9
        )

    async def _review_cancelled(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, review_events.ReviewCancelRequested)
        assert isinstance(event, review_events.ReviewCancelRequested)
        await self._signal_review(event.review, DesignReviewWorkflow.cancel)

    async def _review_superseded(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, review_events.ReviewSuperseded)
        assert isinstance(event, review_events.ReviewSuperseded)
        await self._signal_review(event.review, DesignReviewWorkflow.new_revision, event.revision)

    async def _signal_review(self, review: str, signal: Any, *args: Any) -> None:
        handle = self._client.get_workflow_handle(review_workflow_id(review))
        try:
            await handle.signal(signal, *args)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("review workflow for %s already closed", review)

    # procurement

    async def _rfq_published(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, procurement_events.RfqPublished)
        assert isinstance(event, procurement_events.RfqPublished)
        if not event.rfq.name:
            raise PermanentEventError("rfq.published lacks the RFQ's name")
        try:
            await self._client.start_workflow(
                ProcurementWorkflow.run,
                ProcurementInput(rfq=event.rfq.name),
                id=rfq_workflow_id(event.rfq.name),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info("procurement workflow for %s already started", event.rfq.name)

    async def _quotes_changed(self, envelope: EventEnvelope) -> None:
        """The RFQ's workflow must learn at once that every invited supplier answered, and that
        quotes were withdrawn or invalidated; the counts in between only feed its status. So in
        a burst of quotes (1,000 suppliers answering within seconds) one signal per RFQ and
        QUOTE_SIGNAL_INTERVAL_S suffices: each signal is a Temporal round trip, and a signal for
        every quote would hold the decisive last one up behind all the others."""
        event = unpack(envelope, procurement_events.QuoteReceived)
        assert isinstance(event, procurement_events.QuoteReceived)
        count, now = event.quote_count, time.monotonic()
        last = self._quote_signals.get(event.rfq)
        if (
            last is not None
            and last[0] < count < event.invited_count
            and now - last[1] < QUOTE_SIGNAL_INTERVAL_S
        ):
            return
        await self._signal_rfq(event.rfq, ProcurementWorkflow.quotes_changed, count)
        if count >= event.invited_count:
            self._quote_signals.pop(event.rfq, None)
        else:
            self._quote_signals[event.rfq] = (count, now)

    async def _rfq_cancelled(self, envelope: EventEnvelope) -> None:
        # One event per told supplier: the first signal ends the workflow, the rest find it
        # closed (or are no-ops while it winds down).
        event = unpack(envelope, procurement_events.RfqCancelled)
        assert isinstance(event, procurement_events.RfqCancelled)
        await self._signal_rfq(event.rfq, ProcurementWorkflow.cancel)

    async def _rfq_awarded(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, procurement_events.RfqAwarded)
        assert isinstance(event, procurement_events.RfqAwarded)
        suppliers = [a.supplier.removeprefix("organizations/") for a in event.rfq.allocations]
        await self._signal_rfq(event.rfq.name, ProcurementWorkflow.awarded, suppliers)

    async def _signal_rfq(self, rfq: str, signal: Any, *args: Any) -> None:
        if not rfq:
            raise PermanentEventError("the procurement event names no RFQ")
        handle = self._client.get_workflow_handle(rfq_workflow_id(rfq))
        try:
            await handle.signal(signal, *args)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            # A draft's cancellation, or the workflow already ended: nothing to tell it.
            log.info("procurement workflow for %s not running", rfq)

    async def _inbound_quote(self, envelope: EventEnvelope) -> None:
        """A partner's quote from the inbound topic, recorded for the envelope's organization
        (Kafka ACLs bind it to the producer in production) with the event id as request id."""
        assert self._procurement is not None
        event = unpack(envelope, procurement_events.InboundQuote)
        assert isinstance(event, procurement_events.InboundQuote)
        if not event.rfq or not event.HasField("valid_until"):
            raise PermanentEventError("quote.inbound lacks rfq or valid_until")
        if event.supplier != envelope.organization:
            raise PermanentEventError(
                f"quote.inbound is for supplier {event.supplier!r} but came from "
                f"{envelope.organization!r}"
            )
        request = procurement_pb2.RecordInboundQuoteRequest(
            parent=event.rfq,
            supplier=envelope.organization,
            quote=procurement_pb2.Quote(
                unit_price=event.unit_price,
                lead_time_days=event.lead_time_days,
                capacity=event.capacity,
                valid_until=event.valid_until,
                notes=event.notes,
            ),
            request_id=envelope.id,
        )
        try:
            await asyncio.to_thread(self._procurement.RecordInboundQuote, request, timeout=20)
        except grpc.RpcError as error:
            if error.code() in PERMANENT:
                raise PermanentEventError(
                    f"quote refused: {error.code().name}: {error.details()}"
                ) from None
            raise

    # disruptions

    async def _disruption_reported(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, supply_events.DisruptionReported)
        assert isinstance(event, supply_events.DisruptionReported)
        d = event.disruption
        if not d.name or not d.facility or not d.expected_duration_days > 0:
            raise PermanentEventError(
                "disruption.reported lacks name, facility or expected duration"
            )
        if not _for_reporter(envelope, d.name):
            return  # a customer's view of the same report
        try:
            await self._client.start_workflow(
                DisruptionWorkflow.run,
                DisruptionInput(
                    disruption=d.name,
                    facility=d.facility,
                    duration_days=d.expected_duration_days,
                    capacity_factor=d.capacity_factor,
                ),
                id=disruption_workflow_id(d.name),
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info("disruption workflow for %s already started", d.name)

    async def _disruption_resolved(self, envelope: EventEnvelope) -> None:
        event = unpack(envelope, supply_events.DisruptionResolved)
        assert isinstance(event, supply_events.DisruptionResolved)
        name = event.disruption.name
        if not name:
            raise PermanentEventError("disruption.resolved lacks the disruption's name")
        if not _for_reporter(envelope, name):
            return  # a customer's view of the same change
        handle = self._client.get_workflow_handle(disruption_workflow_id(name))
        try:
            await handle.signal(DisruptionWorkflow.resolved)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("disruption workflow for %s already closed", name)


def review_input(review: review_pb2.Review) -> ReviewInput:
    """The workflow's input from the review in a `design.review.requested` event."""
    kind = review_pb2.QuorumPolicy.Kind.Name(review.policy.kind).removeprefix("KIND_")
    on_new = review_pb2.Review.OnNewRevision.Name(review.on_new_revision)
    return ReviewInput(
        review=review.name,
        revision=review.revision,
        requester=review.requester.removeprefix("organizations/"),
        reviewers=[r.removeprefix("organizations/") for r in review.reviewers],
        policy_kind=kind if kind in ("ALL", "K_OF_N") else "ALL",
        k=review.policy.k,
        required=[r.removeprefix("organizations/") for r in review.policy.required_organizations],
        deadline_unix=review.deadline.ToNanoseconds() / 1e9,
        remind_before_seconds=review.remind_before.ToTimedelta().total_seconds(),
        on_new_revision="CANCEL" if on_new == "ON_NEW_REVISION_CANCEL" else "RESTART",
    )


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
    cofab = connect(
        service_token(settings),
        settings.design_address,
        settings.supply_address,
        settings.tls_ca_file,
    )
    bridge = EventBridge(client, settings.temporal_task_queue, cofab.procurement)
    processed = ProcessedEvents(make_engine(settings.database_url), CONSUMER_GROUP)
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.to_thread(run_bridge, bridge, processed, settings, loop, stop)
    finally:
        cofab.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bridge %(levelname)s %(message)s")
    asyncio.run(run(load_settings()))


if __name__ == "__main__":
    main()


def _for_reporter(envelope: EventEnvelope, disruption: str) -> bool:
    """Whether this is the reporter's view of a disruption event: each affected customer gets
    its own view of the same change, and the workflow acts on one of them only."""
    reporter = "/".join(disruption.split("/")[:2])
    return reporter in envelope.audience
