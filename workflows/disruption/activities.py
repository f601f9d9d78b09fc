"""Activities of the disruption workflow: calls to the supply service (network analytics,
disruption reports, RFQs) as the platform's service account. Every mutating call carries a
request id the workflow derived, so a retry after a crash has no second effect (one
notification per organization, one RFQ per customer and item, one summary)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import activity

from cofab.procurement.v1 import procurement_pb2, procurement_pb2_grpc
from cofab.supply.v1 import supply_pb2, supply_pb2_grpc
from workflows.grpc_errors import permanent_or_retry

EVERY_ORGANIZATION = "organizations/-"
# Capable suppliers invited per re-sourcing RFQ, at most (SearchCapableSuppliers' page size).
MAX_INVITED = 100


@dataclass
class DisruptionInput:
    # organizations/{organization}/disruptions/{disruption}
    disruption: str
    # organizations/{organization}/facilities/{facility}
    facility: str
    duration_days: float
    capacity_factor: float


@dataclass
class Need:
    """An RFQ to open: `customer` bought `item` only from the disrupted facility."""

    customer: str  # organization id, the buyer
    item: str  # organizations/{o}/items/{i}
    quantity: int
    suppliers: list[str] = field(default_factory=list)  # organization ids to invite


@dataclass
class Assessment:
    affected: list[str]  # organization ids of the customers to notify
    items_hit: int
    units_at_risk: float
    revenue_at_risk: float
    needs: list[Need] = field(default_factory=list)


@dataclass
class Notification:
    disruption: str
    customer: str  # organization id
    request_id: str


@dataclass
class RfqOrder:
    disruption: str
    need: Need
    request_id: str
    quote_deadline_unix: float
    due_unix: float


@dataclass
class Summary:
    disruption: str
    request_id: str
    items_hit: int
    units_at_risk: float
    revenue_at_risk: float
    notified: list[str]  # organization ids
    rfqs: list[str]  # RFQ names
    unsourced: list[str]  # item names, per need left without an RFQ
    resolved_early: bool


def _timestamp(unix: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(unix * 1e9))
    return stamp


class DisruptionActivities:
    def __init__(
        self,
        supply: supply_pb2_grpc.SupplyServiceStub,
        procurement: procurement_pb2_grpc.ProcurementServiceStub,
    ) -> None:
        self._supply = supply
        self._procurement = procurement

    @activity.defn
    def assess_disruption(self, disruption: DisruptionInput) -> Assessment:
        """The impact on the whole network, and the re-sourcing RFQs it calls for with the
        capable suppliers to invite (never the disrupted facility's organization nor the
        buyer). Reads only: safe to repeat."""
        try:
            impact = self._supply.ComputeDisruptionImpact(
                supply_pb2.ComputeDisruptionImpactRequest(
                    parent=EVERY_ORGANIZATION,
                    facilities=[disruption.facility],
                    duration_days=disruption.duration_days,
                    capacity_factor=disruption.capacity_factor,
                ),
                timeout=30,
            )
            plan = self._supply.PlanDisruptionResourcing(
                supply_pb2.PlanDisruptionResourcingRequest(name=disruption.disruption),
                timeout=30,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(f"assess {disruption.disruption}", error) from None
        reporter = disruption.disruption.split("/")[1]
        found: dict[tuple[str, str], list[str]] = {}
        needs = []
        for need in plan.needs:
            key = (need.process, need.material)
            if key not in found:
                found[key] = self._capable(need.process, need.material) if need.process else []
            buyer = need.customer.removeprefix("organizations/")
            excluded = {reporter, buyer}
            needs.append(
                Need(
                    customer=buyer,
                    item=need.item,
                    quantity=need.quantity,
                    suppliers=[s for s in found[key] if s not in excluded],
                )
            )
        return Assessment(
            affected=[
                o
                for c in impact.affected_customers
                if (o := c.removeprefix("organizations/")) != reporter
            ],
            items_hit=len(impact.items),
            units_at_risk=sum(i.units_at_risk for i in impact.items if i.end_item),
            revenue_at_risk=impact.revenue_at_risk,
            needs=needs,
        )

    def _capable(self, process: str, material: str) -> list[str]:
        try:
            found = self._supply.SearchCapableSuppliers(
                supply_pb2.SearchCapableSuppliersRequest(
                    process=process, material=material, page_size=MAX_INVITED
                ),
                timeout=30,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(f"SearchCapableSuppliers {process}", error) from None
        # One organization may match with several facilities: invite it once.
        return list(
            dict.fromkeys(s.organization.removeprefix("organizations/") for s in found.suppliers)
        )

    @activity.defn
    def notify_customer(self, notification: Notification) -> None:
        """Tells one affected customer what it may see of the impact (`supply.impact.computed`)."""
        try:
            self._supply.RecordDisruptionProgress(
                supply_pb2.RecordDisruptionProgressRequest(
                    name=notification.disruption,
                    kind=supply_pb2.RecordDisruptionProgressRequest.KIND_NOTIFIED,
                    customer=f"organizations/{notification.customer}",
                    request_id=notification.request_id,
                ),
                timeout=30,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(
                f"notify organizations/{notification.customer} of {notification.disruption}",
                error,
            ) from None

    @activity.defn
    def open_resourcing_rfq(self, order: RfqOrder) -> str:
        """Creates the RFQ for the buyer and opens it; returns its name. Both calls are
        idempotent by request id, so a retry after either one succeeded does nothing twice."""
        need = order.need
        disruption_id = order.disruption.rsplit("/", 1)[-1]
        try:
            rfq = self._procurement.CreateRfq(
                procurement_pb2.CreateRfqRequest(
                    parent=f"organizations/{need.customer}",
                    rfq=procurement_pb2.Rfq(
                        display_name=f"Re-sourcing {need.item} (disruption {disruption_id})",
                        item=need.item,
                        quantity=need.quantity,
                        due_time=_timestamp(order.due_unix),
                        quote_deadline=_timestamp(order.quote_deadline_unix),
                        invited_suppliers=[f"organizations/{s}" for s in need.suppliers],
                    ),
                    request_id=f"{order.request_id}:create",
                ),
                timeout=30,
            )
            self._procurement.OpenRfq(
                procurement_pb2.OpenRfqRequest(
                    name=rfq.name, request_id=f"{order.request_id}:open"
                ),
                timeout=30,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(f"re-sourcing RFQ for {need.item}", error) from None
        return rfq.name

    @activity.defn
    def record_handled(self, summary: Summary) -> None:
        """Announces what the platform did (`supply.disruption.handled`), once."""
        try:
            self._supply.RecordDisruptionProgress(
                supply_pb2.RecordDisruptionProgressRequest(
                    name=summary.disruption,
                    kind=supply_pb2.RecordDisruptionProgressRequest.KIND_HANDLED,
                    summary=supply_pb2.DisruptionSummary(
                        items_hit=summary.items_hit,
                        units_at_risk=summary.units_at_risk,
                        revenue_at_risk=summary.revenue_at_risk,
                        notified_organizations=[f"organizations/{o}" for o in summary.notified],
                        rfqs=summary.rfqs,
                        unsourced_items=summary.unsourced,
                        resolved_early=summary.resolved_early,
                    ),
                    request_id=summary.request_id,
                ),
                timeout=30,
            )
        except grpc.RpcError as error:
            raise permanent_or_retry(
                f"RecordDisruptionProgress {summary.disruption}", error
            ) from None
