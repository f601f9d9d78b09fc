"""DisruptionWorkflow: the platform's response to a reported facility outage or capacity drop.

Started by the bridge on `supply.disruption.reported`. It computes the impact on the whole
network, tells each affected customer organization once what it may see of it, opens a
re-sourcing RFQ for every (customer, item) the facility was the only source of (the buyer is the
customer; the capable suppliers are invited, never the disrupted facility's organization) and
starts a ProcurementWorkflow for each as a child that outlives this workflow, then announces a
summary. Every effect is an activity with a request id derived from the workflow, so retries
after a crash change nothing twice. If the disruption is resolved meanwhile (a signal), no
further RFQ is opened; notifications and the summary still go out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.disruption.activities import (
        Assessment,
        DisruptionActivities,
        DisruptionInput,
        Notification,
        RfqOrder,
        Summary,
    )
    from workflows.procurement import ProcurementInput, ProcurementWorkflow
    from workflows.procurement import workflow_id as procurement_workflow_id

TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
# Suppliers get this long to quote; the units are due this long after the deadline at the
# earliest, or when the outage is expected to end if that is later.
QUOTE_WINDOW = timedelta(days=3)
MIN_LEAD = timedelta(days=7)

ASSESSING = "ASSESSING"
NOTIFYING = "NOTIFYING"
SOURCING = "SOURCING"
HANDLED = "HANDLED"


@dataclass
class DisruptionStatus:
    disruption: str
    stage: str  # ASSESSING, NOTIFYING, SOURCING or HANDLED
    affected: list[str] = field(default_factory=list)  # organization ids
    notified: list[str] = field(default_factory=list)  # organization ids
    rfqs: list[str] = field(default_factory=list)  # RFQ names opened
    unsourced: list[str] = field(default_factory=list)  # item names left without an RFQ
    resolved: bool = False


def workflow_id(disruption_name: str) -> str:
    """One workflow per disruption: a redelivered report starts nothing new."""
    return f"disruption-{disruption_name.rsplit('/', 1)[-1]}"


def _key(*parts: str) -> str:
    """A short stable id for request ids (their limit is 100 characters; names are longer)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:20]


@workflow.defn
class DisruptionWorkflow:
    @workflow.init
    def __init__(self, disruption: DisruptionInput) -> None:
        self._input = disruption
        self._id = workflow_id(disruption.disruption)
        self._stage = ASSESSING
        self._affected: list[str] = []
        self._notified: list[str] = []
        self._rfqs: list[str] = []
        self._unsourced: list[str] = []
        self._resolved = False
        self._resolved_early = False

    @workflow.run
    async def run(self, disruption: DisruptionInput) -> DisruptionStatus:
        assessment: Assessment = await workflow.execute_activity_method(
            DisruptionActivities.assess_disruption,
            disruption,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        self._affected = list(assessment.affected)
        self._stage = NOTIFYING
        for customer in assessment.affected:
            await workflow.execute_activity_method(
                DisruptionActivities.notify_customer,
                Notification(
                    disruption.disruption, customer, f"{self._id}:notify:{_key(customer)}"
                ),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            self._notified.append(customer)
        self._stage = SOURCING
        for need in assessment.needs:
            if self._resolved:
                self._resolved_early = True
            if self._resolved or not need.suppliers:
                self._unsourced.append(need.item)
                continue
            rfq = await self._open_rfq(
                RfqOrder(
                    disruption=disruption.disruption,
                    need=need,
                    request_id=f"{self._id}:rfq:{_key(need.customer, need.item)}",
                    quote_deadline_unix=(workflow.now() + QUOTE_WINDOW).timestamp(),
                    due_unix=(
                        workflow.now()
                        + max(QUOTE_WINDOW + MIN_LEAD, timedelta(days=disruption.duration_days))
                    ).timestamp(),
                )
            )
            self._rfqs.append(rfq)
        await workflow.execute_activity_method(
            DisruptionActivities.record_handled,
            Summary(
                disruption=disruption.disruption,
                request_id=f"{self._id}:handled",
                items_hit=assessment.items_hit,
                units_at_risk=assessment.units_at_risk,
                revenue_at_risk=assessment.revenue_at_risk,
                notified=list(self._notified),
                rfqs=list(self._rfqs),
                unsourced=list(self._unsourced),
                resolved_early=self._resolved_early,
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        self._stage = HANDLED
        return self.status()

    async def _open_rfq(self, order: RfqOrder) -> str:
        """Opens the RFQ and starts its procurement workflow, which the bridge may also start
        from the RFQ's own event: whichever comes second is a no-op."""
        rfq: str = await workflow.execute_activity_method(
            DisruptionActivities.open_resourcing_rfq,
            order,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        try:
            await workflow.start_child_workflow(
                ProcurementWorkflow.run,
                ProcurementInput(rfq=rfq),
                id=procurement_workflow_id(rfq),
                # The RFQ runs to its award whatever happens to this workflow.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("procurement workflow for %s already started", rfq)
        return rfq

    @workflow.signal
    def resolved(self) -> None:
        """The disruption is over: RFQs not opened yet are not opened any more."""
        self._resolved = True

    @workflow.query
    def status(self) -> DisruptionStatus:
        return DisruptionStatus(
            disruption=self._input.disruption,
            stage=self._stage,
            affected=list(self._affected),
            notified=list(self._notified),
            rfqs=list(self._rfqs),
            unsourced=list(self._unsourced),
            resolved=self._resolved,
        )
