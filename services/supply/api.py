"""gRPC servicer of the supply service: proto -> use case -> proto."""

from __future__ import annotations

import asyncio
from typing import Any

from cofab.supply.v1 import supply_pb2, supply_pb2_grpc
from services.shared import names
from services.shared.paging import page
from services.shared.server import current_principal
from services.supply.application import SupplyApplication
from services.supply.convert import facility_proto

Context = Any


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
