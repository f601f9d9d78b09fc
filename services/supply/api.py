"""gRPC servicer of the supply service: proto -> use case -> proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from cofab.supply.v1 import supply_pb2, supply_pb2_grpc
from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.paging import page
from services.shared.server import current_principal
from services.supply.application import SupplyApplication
from services.supply.convert import (
    EDGE_STATE_NAMES,
    KIND_NAMES,
    capability_proto,
    disruption_proto,
    edge_proto,
    facility_proto,
    item_impact_proto,
    item_proto,
)
from services.supply.disruptions import HANDLED, NOTIFIED, DisruptionProgress
from services.supply.domain import ACTIVE, Item
from services.supply.domain.importing import CSV, JSON_LINES
from services.supply.domain.views import Hidden
from services.supply.procurement.api import caller_authorization

Context = Any
ORGANIZATION = "organizations/{organization}"
FACILITY = "organizations/{organization}/facilities/{facility}"
CAPABILITY = "organizations/{organization}/facilities/{facility}/capabilities/{capability}"
ITEM = "organizations/{organization}/items/{item}"
EDGE = "organizations/{organization}/supplyEdges/{supply_edge}"
DISRUPTION = "organizations/{organization}/disruptions/{disruption}"
# AIP-159: a read across every organization (platform service accounts only).
EVERY_ORGANIZATION = "organizations/-"
# The server's message size limit bounds each chunk; this bounds the whole upload in memory.
MAX_IMPORT_BYTES = 256 * 1024 * 1024


class SupplyServicer(supply_pb2_grpc.SupplyServiceServicer):
    def __init__(self, app: SupplyApplication) -> None:
        self._app = app

    async def CreateFacility(
        self, request: supply_pb2.CreateFacilityRequest, context: Context
    ) -> supply_pb2.Facility:
        organization_id = names.parse_one(request.parent, "organizations/{organization}", "parent")
        f = request.facility
        facility = await asyncio.to_thread(
            self._app.create_facility,
            current_principal(),
            organization_id,
            f.display_name,
            f.region,
            f.country_code,
            f.latitude,
            f.longitude,
            request.request_id,
        )
        return facility_proto(facility)

    async def GetFacility(
        self, request: supply_pb2.GetFacilityRequest, context: Context
    ) -> supply_pb2.Facility:
        organization_id, facility_id = names.parse(
            request.name, "organizations/{organization}/facilities/{facility}", "name"
        )
        facility = await asyncio.to_thread(
            self._app.get_facility, current_principal(), organization_id, facility_id
        )
        return facility_proto(facility)

    async def ListFacilities(
        self, request: supply_pb2.ListFacilitiesRequest, context: Context
    ) -> supply_pb2.ListFacilitiesResponse:
        organization_id = names.parse_one(request.parent, "organizations/{organization}", "parent")
        listed = await asyncio.to_thread(
            self._app.list_facilities,
            current_principal(),
            organization_id,
            page(request.page_size, request.page_token, f"facilities:{organization_id}"),
        )
        return supply_pb2.ListFacilitiesResponse(
            facilities=[facility_proto(f) for f in listed.items],
            next_page_token=listed.next_page_token,
        )

    # --- capabilities -----

    async def CreateCapability(
        self, request: supply_pb2.CreateCapabilityRequest, context: Context
    ) -> supply_pb2.Capability:
        organization_id, facility_id = names.parse(request.parent, FACILITY, "parent")
        c = request.capability
        capability = await asyncio.to_thread(
            self._app.create_capability,
            current_principal(),
            organization_id,
            facility_id,
            request.capability_id,
            c.process,
            list(c.materials),
            c.monthly_capacity,
            list(c.certifications),
            request.request_id,
        )
        return capability_proto(capability)

    async def GetCapability(
        self, request: supply_pb2.GetCapabilityRequest, context: Context
    ) -> supply_pb2.Capability:
        names.parse(request.name, CAPABILITY, "name")
        capability = await asyncio.to_thread(
            self._app.get_capability, current_principal(), request.name
        )
        return capability_proto(capability)

    async def ListCapabilities(
        self, request: supply_pb2.ListCapabilitiesRequest, context: Context
    ) -> supply_pb2.ListCapabilitiesResponse:
        organization_id, facility_id = names.parse(request.parent, FACILITY, "parent")
        listed = await asyncio.to_thread(
            self._app.list_capabilities,
            current_principal(),
            organization_id,
            facility_id,
            page(request.page_size, request.page_token, f"capabilities:{request.parent}"),
        )
        return supply_pb2.ListCapabilitiesResponse(
            capabilities=[capability_proto(c) for c in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def DeleteCapability(
        self, request: supply_pb2.DeleteCapabilityRequest, context: Context
    ) -> empty_pb2.Empty:
        names.parse(request.name, CAPABILITY, "name")
        await asyncio.to_thread(
            self._app.delete_capability, current_principal(), request.name, request.request_id
        )
        return empty_pb2.Empty()

    # --- items -----

    async def CreateItem(
        self, request: supply_pb2.CreateItemRequest, context: Context
    ) -> supply_pb2.Item:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        item = _item(request.item, organization_id, request.item_id)
        created = await asyncio.to_thread(
            self._app.create_item,
            current_principal(),
            item,
            request.request_id,
            caller_authorization(context),
        )
        return item_proto(created)

    async def UpdateItem(
        self, request: supply_pb2.UpdateItemRequest, context: Context
    ) -> supply_pb2.Item:
        organization_id, item_id = names.parse(request.item.name, ITEM, "item.name")
        changes = _item(request.item, organization_id, item_id)
        updated = await asyncio.to_thread(
            self._app.update_item,
            current_principal(),
            request.item.name,
            changes,
            list(request.update_mask.paths),
            request.request_id,
            caller_authorization(context),
        )
        return item_proto(updated)

    async def GetItem(
        self, request: supply_pb2.GetItemRequest, context: Context
    ) -> supply_pb2.Item:
        names.parse(request.name, ITEM, "name")
        item = await asyncio.to_thread(self._app.get_item, current_principal(), request.name)
        return item_proto(item)

    async def ListItems(
        self, request: supply_pb2.ListItemsRequest, context: Context
    ) -> supply_pb2.ListItemsResponse:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        listed = await asyncio.to_thread(
            self._app.list_items,
            current_principal(),
            organization_id,
            page(request.page_size, request.page_token, f"items:{organization_id}"),
        )
        return supply_pb2.ListItemsResponse(
            items=[item_proto(i) for i in listed.items], next_page_token=listed.next_page_token
        )

    # --- supply edges -----

    async def CreateSupplyEdge(
        self, request: supply_pb2.CreateSupplyEdgeRequest, context: Context
    ) -> supply_pb2.SupplyEdge:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        e = request.supply_edge
        names.parse(e.facility, FACILITY, "supply_edge.facility")
        names.parse(e.item, ITEM, "supply_edge.item")
        names.parse(e.customer, ORGANIZATION, "supply_edge.customer")
        edge = await asyncio.to_thread(
            self._app.create_supply_edge,
            current_principal(),
            organization_id,
            request.supply_edge_id,
            e.facility,
            e.item,
            e.customer,
            e.lead_time_days,
            e.unit_price,
            e.share,
            e.monthly_volume,
            request.request_id,
        )
        return edge_proto(edge)

    async def GetSupplyEdge(
        self, request: supply_pb2.GetSupplyEdgeRequest, context: Context
    ) -> supply_pb2.SupplyEdge:
        names.parse(request.name, EDGE, "name")
        edge = await asyncio.to_thread(self._app.get_supply_edge, current_principal(), request.name)
        return edge_proto(edge)

    async def ListSupplyEdges(
        self, request: supply_pb2.ListSupplyEdgesRequest, context: Context
    ) -> supply_pb2.ListSupplyEdgesResponse:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        listed = await asyncio.to_thread(
            self._app.list_supply_edges,
            current_principal(),
            organization_id,
            page(
                request.page_size,
                request.page_token,
                f"supplyEdges:{organization_id}:{request.state}",
            ),
            _edge_state(request.state),
        )
        return supply_pb2.ListSupplyEdgesResponse(
            supply_edges=[edge_proto(e) for e in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def DeleteSupplyEdge(
        self, request: supply_pb2.DeleteSupplyEdgeRequest, context: Context
    ) -> empty_pb2.Empty:
        names.parse(request.name, EDGE, "name")
        await asyncio.to_thread(
            self._app.delete_supply_edge, current_principal(), request.name, request.request_id
        )
        return empty_pb2.Empty()

    async def ConfirmSupplyEdge(
        self, request: supply_pb2.ConfirmSupplyEdgeRequest, context: Context
    ) -> supply_pb2.SupplyEdge:
        names.parse(request.name, EDGE, "name")
        edge = await asyncio.to_thread(
            self._app.confirm_supply_edge, current_principal(), request.name, request.request_id
        )
        return edge_proto(edge)

    async def DeclineSupplyEdge(
        self, request: supply_pb2.DeclineSupplyEdgeRequest, context: Context
    ) -> supply_pb2.SupplyEdge:
        names.parse(request.name, EDGE, "name")
        edge = await asyncio.to_thread(
            self._app.decline_supply_edge, current_principal(), request.name, request.request_id
        )
        return edge_proto(edge)

    async def WithdrawSupplyEdge(
        self, request: supply_pb2.WithdrawSupplyEdgeRequest, context: Context
    ) -> supply_pb2.SupplyEdge:
        names.parse(request.name, EDGE, "name")
        edge = await asyncio.to_thread(
            self._app.withdraw_supply_edge, current_principal(), request.name, request.request_id
        )
        return edge_proto(edge)

    # --- import and export -----

    async def ImportNetwork(
        self, request_iterator: AsyncIterator[supply_pb2.ImportNetworkRequest], context: Context
    ) -> supply_pb2.ImportNetworkResponse:
        header: supply_pb2.ImportNetworkRequest.Header | None = None
        content = bytearray()
        async for message in request_iterator:
            if header is None:
                if not message.HasField("header"):
                    raise InvalidArgument.field("header", "the first message must be the header")
                header = message.header
                continue
            if message.HasField("header"):
                raise InvalidArgument.field("header", "only the first message carries a header")
            content += message.chunk
            if len(content) > MAX_IMPORT_BYTES:
                raise InvalidArgument.field(
                    "chunk", f"an import is at most {MAX_IMPORT_BYTES} bytes; split it"
                )
        if header is None:
            raise InvalidArgument.field("header", "the stream is empty: send a header first")
        organization_id = names.parse_one(header.parent, ORGANIZATION, "header.parent")
        result = await asyncio.to_thread(
            self._app.import_network,
            current_principal(),
            organization_id,
            _format(header.format, "header.format"),
            bytes(content),
            header.request_id,
            caller_authorization(context),
        )
        return supply_pb2.ImportNetworkResponse(
            counts=[
                supply_pb2.ImportCounts(
                    kind=kind, created=c.created, updated=c.updated, unchanged=c.unchanged
                )
                for kind, c in result.counts.items()
            ],
            rows=result.rows,
        )

    async def ExportNetwork(
        self, request: supply_pb2.ExportNetworkRequest, context: Context
    ) -> AsyncIterator[supply_pb2.ExportNetworkResponse]:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        chunks = await asyncio.to_thread(
            self._app.export_network,
            current_principal(),
            organization_id,
            _format(request.format, "format"),
        )
        for chunk in chunks:
            yield supply_pb2.ExportNetworkResponse(chunk=chunk)

    # --- analytics -----

    async def TraceSupplyChain(
        self, request: supply_pb2.TraceSupplyChainRequest, context: Context
    ) -> supply_pb2.TraceSupplyChainResponse:
        if request.direction == supply_pb2.TRACE_DIRECTION_UNSPECIFIED:
            raise InvalidArgument.field("direction", "must be UPSTREAM or DOWNSTREAM")
        result = await asyncio.to_thread(
            self._app.analytics.trace,
            current_principal(),
            request.start,
            request.direction == supply_pb2.TRACE_DIRECTION_DOWNSTREAM,
            request.max_tiers,
        )
        return supply_pb2.TraceSupplyChainResponse(
            entries=[
                supply_pb2.TraceEntry(
                    tier=tier,
                    organization=f"organizations/{edge.supplier_id}",
                    facility=edge.facility_name,
                    item=edge.item_name,
                    supply_edge=edge.name,
                    customer=f"organizations/{edge.customer_id}",
                )
                for tier, edge in result.entries
            ],
            hidden=[_tier_summary(h) for h in result.hidden],
        )

    async def SearchCapableSuppliers(
        self, request: supply_pb2.SearchCapableSuppliersRequest, context: Context
    ) -> supply_pb2.SearchCapableSuppliersResponse:
        found = await asyncio.to_thread(
            self._app.search_capable,
            current_principal(),
            request.process,
            request.material,
            request.region,
            request.min_monthly_capacity,
            request.certification,
            request.page_size,
        )
        return supply_pb2.SearchCapableSuppliersResponse(
            suppliers=[
                supply_pb2.CapableSupplier(
                    organization=f"organizations/{s.organization_id}",
                    facility=f"organizations/{s.organization_id}/facilities/{s.facility_id}",
                    region=s.region,
                    country_code=s.country_code,
                    capability=capability_proto(s.capability),
                )
                for s in found
            ]
        )

    async def AnalyzeRisk(
        self, request: supply_pb2.AnalyzeRiskRequest, context: Context
    ) -> supply_pb2.AnalyzeRiskResponse:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        result = await asyncio.to_thread(
            self._app.analytics.analyze_risk, current_principal(), organization_id
        )
        own = f"organizations/{organization_id}"
        return supply_pb2.AnalyzeRiskResponse(
            single_source_items=[
                supply_pb2.SingleSourceItem(
                    item=f"organizations/{result.owners.get(s.item_id, '')}/items/{s.item_id}",
                    facility=(
                        f"organizations/{s.organization_id}/facilities/{s.facility_id}"
                        if s.facility_id
                        else ""
                    ),
                    supplier=f"organizations/{s.organization_id}" if s.organization_id else "",
                )
                for s in result.single_sources
            ],
            critical_facilities=[
                supply_pb2.CriticalFacility(
                    facility=f"organizations/{c.organization_id}/facilities/{c.facility_id}",
                    organization=f"organizations/{c.organization_id}",
                    region=c.region,
                    end_items=[f"{own}/items/{e}" for e in c.end_item_ids],
                )
                for c in result.critical
            ],
            hidden_critical_facilities=[
                supply_pb2.HiddenCount(region=h.region, count=h.facilities)
                for h in result.hidden_critical
            ],
        )

    async def ComputeDisruptionImpact(
        self, request: supply_pb2.ComputeDisruptionImpactRequest, context: Context
    ) -> supply_pb2.ComputeDisruptionImpactResponse:
        if request.parent == EVERY_ORGANIZATION:
            report, owners = await asyncio.to_thread(
                self._app.analytics.network_impact,
                current_principal(),
                list(request.facilities),
                request.region,
                request.duration_days,
                request.capacity_factor,
            )
            return supply_pb2.ComputeDisruptionImpactResponse(
                items=[item_impact_proto(owners, i) for i in report.items],
                revenue_at_risk=report.revenue_at_risk,
                affected_customers=[f"organizations/{c}" for c in report.affected_customer_ids],
            )
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        view, owners = await asyncio.to_thread(
            self._app.analytics.compute_impact,
            current_principal(),
            organization_id,
            list(request.facilities),
            request.region,
            request.duration_days,
            request.capacity_factor,
        )
        return supply_pb2.ComputeDisruptionImpactResponse(
            items=[item_impact_proto(owners, i) for i in view.items],
            revenue_at_risk=view.revenue_at_risk,
            other_items_hit=view.other_items_hit,
        )

    async def PlanAlternativeSourcing(
        self, request: supply_pb2.PlanAlternativeSourcingRequest, context: Context
    ) -> supply_pb2.PlanAlternativeSourcingResponse:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        result, owners = await asyncio.to_thread(
            self._app.analytics.plan_sourcing,
            current_principal(),
            organization_id,
            list(request.facilities),
            request.region,
            request.duration_days,
            request.capacity_factor,
        )
        return supply_pb2.PlanAlternativeSourcingResponse(
            assignments=[
                supply_pb2.SourcingAssignment(
                    item=f"organizations/{owners.get(a.item_id, '')}/items/{a.item_id}",
                    organization=f"organizations/{a.organization_id}" if a.organization_id else "",
                    facility=(
                        f"organizations/{a.organization_id}/facilities/{a.facility_id}"
                        if a.facility_id
                        else ""
                    ),
                    monthly_volume=a.monthly_volume,
                    unit_price=a.unit_price,
                )
                for a in result.assignments
            ],
            unmet=[
                supply_pb2.UnmetVolume(
                    item=f"organizations/{owners.get(u.item_id, '')}/items/{u.item_id}",
                    monthly_volume=u.monthly_volume,
                )
                for u in result.unmet
            ],
            total_cost=result.total_cost,
        )

    # --- disruptions -----

    async def ReportDisruption(
        self, request: supply_pb2.ReportDisruptionRequest, context: Context
    ) -> supply_pb2.Disruption:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        d = request.disruption
        disruption, direct = await asyncio.to_thread(
            self._app.disruptions.report_disruption,
            current_principal(),
            organization_id,
            d.facility,
            KIND_NAMES.get(d.kind, ""),
            d.capacity_factor,
            d.expected_duration_days,
            d.description,
            request.request_id,
        )
        return disruption_proto(disruption, direct)

    async def ListDisruptions(
        self, request: supply_pb2.ListDisruptionsRequest, context: Context
    ) -> supply_pb2.ListDisruptionsResponse:
        organization_id = names.parse_one(request.parent, ORGANIZATION, "parent")
        listed = await asyncio.to_thread(
            self._app.disruptions.list_disruptions,
            current_principal(),
            organization_id,
            page(request.page_size, request.page_token, f"disruptions:{organization_id}"),
        )
        return supply_pb2.ListDisruptionsResponse(
            disruptions=[disruption_proto(d, direct) for d, direct in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def ResolveDisruption(
        self, request: supply_pb2.ResolveDisruptionRequest, context: Context
    ) -> supply_pb2.Disruption:
        names.parse(request.name, DISRUPTION, "name")
        disruption, direct = await asyncio.to_thread(
            self._app.disruptions.resolve_disruption,
            current_principal(),
            request.name,
            request.request_id,
        )
        return disruption_proto(disruption, direct)

    async def PlanDisruptionResourcing(
        self, request: supply_pb2.PlanDisruptionResourcingRequest, context: Context
    ) -> supply_pb2.PlanDisruptionResourcingResponse:
        organization_id, _ = names.parse(request.name, DISRUPTION, "name")
        needs = await asyncio.to_thread(
            self._app.disruptions.plan_resourcing, current_principal(), request.name
        )
        return supply_pb2.PlanDisruptionResourcingResponse(
            needs=[
                supply_pb2.ResourcingNeed(
                    customer=f"organizations/{n.customer_id}",
                    item=n.item_name,
                    quantity=n.quantity,
                    process=n.process,
                    material=n.material,
                )
                for n in needs
            ],
            disrupted_organization=f"organizations/{organization_id}",
        )

    async def RecordDisruptionProgress(
        self, request: supply_pb2.RecordDisruptionProgressRequest, context: Context
    ) -> supply_pb2.Disruption:
        names.parse(request.name, DISRUPTION, "name")
        kinds = supply_pb2.RecordDisruptionProgressRequest
        if request.kind == kinds.KIND_NOTIFIED:
            customer = names.parse_one(request.customer, ORGANIZATION, "customer")
            progress = DisruptionProgress(NOTIFIED, customer=customer)
        elif request.kind == kinds.KIND_HANDLED:
            summary = supply_pb2.DisruptionSummary()
            summary.CopyFrom(request.summary)
            summary.disruption = request.name
            progress = DisruptionProgress(HANDLED, summary=summary)
        else:
            raise InvalidArgument.field("kind", "must be KIND_NOTIFIED or KIND_HANDLED")
        disruption, direct = await asyncio.to_thread(
            self._app.disruptions.record_progress,
            current_principal(),
            request.name,
            progress,
            request.request_id,
        )
        return disruption_proto(disruption, direct)


def _edge_state(value: supply_pb2.SupplyEdge.State.ValueType) -> str:
    """The edge state a list asks for; unset means the agreed (ACTIVE) edges."""
    if value == supply_pb2.SupplyEdge.STATE_UNSPECIFIED:
        return ACTIVE
    if value not in EDGE_STATE_NAMES:
        raise InvalidArgument.field("state", f"unknown supply edge state {value}")
    return EDGE_STATE_NAMES[value]


def _item(i: supply_pb2.Item, organization_id: str, item_id: str) -> Item:
    components: list[tuple[str, float, str]] = []
    for index, line in enumerate(i.components):
        owner, component = names.parse(line.component, ITEM, f"item.components[{index}].component")
        components.append((component, line.quantity, owner))
    return Item(
        item_id,
        organization_id,
        i.display_name,
        i.part_number,
        i.end_item,
        i.unit_revenue,
        i.weekly_demand,
        i.inventory_weeks,
        i.design,
        i.revision,
        i.process,
        i.material,
        tuple(sorted(components)),
    )


def _format(value: int, field: str) -> str:
    if value == supply_pb2.NETWORK_FORMAT_CSV:
        return CSV
    if value == supply_pb2.NETWORK_FORMAT_JSON_LINES:
        return JSON_LINES
    raise InvalidArgument.field(field, "must be NETWORK_FORMAT_CSV or NETWORK_FORMAT_JSON_LINES")


def _tier_summary(hidden: Hidden) -> supply_pb2.TierSummary:
    return supply_pb2.TierSummary(
        tier=hidden.tier,
        region=hidden.region,
        facilities=hidden.facilities,
        organizations=hidden.organizations,
    )
