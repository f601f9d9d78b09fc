"""Conversions between the supply domain and its protobuf messages (API and events)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from cofab.supply.v1 import events_pb2, supply_pb2
from services.supply.domain import Facility


def facility_proto(facility: Facility) -> supply_pb2.Facility:
    created = Timestamp()
    created.FromDatetime(facility.create_time)
    return supply_pb2.Facility(
        name=facility.name,
        display_name=facility.display_name,
        region=facility.region,
        country_code=facility.country_code,
        latitude=facility.latitude,
        longitude=facility.longitude,
        create_time=created,
    )


def facility_created(facility: Facility) -> events_pb2.FacilityCreated:
    return events_pb2.FacilityCreated(facility=facility_proto(facility))
