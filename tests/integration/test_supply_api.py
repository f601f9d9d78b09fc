"""The supply service's first API over real gRPC: facilities belong to their organization."""

from __future__ import annotations

import grpc
import pytest

from cofab.supply.v1 import supply_pb2
from tests.integration.conftest import Stack


def facility(**overrides: object) -> supply_pb2.Facility:
    fields: dict[str, object] = dict(
        display_name="Plant 1",
        region="eu-central",
        country_code="DE",
        latitude=48.1,
        longitude=11.6,
    )
    fields.update(overrides)
    return supply_pb2.Facility(**fields)  # type: ignore[arg-type]


def test_facilities_are_private_to_their_organization(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        created = acme.supply.CreateFacility(
            supply_pb2.CreateFacilityRequest(parent="organizations/acme", facility=facility())
        )
        assert created.name.startswith("organizations/acme/facilities/")
        listed = acme.supply.ListFacilities(
            supply_pb2.ListFacilitiesRequest(parent="organizations/acme")
        )
        assert [f.name for f in listed.facilities] == [created.name]
        for call in (
            lambda: initech.supply.GetFacility(supply_pb2.GetFacilityRequest(name=created.name)),
            lambda: initech.supply.ListFacilities(
                supply_pb2.ListFacilitiesRequest(parent="organizations/acme")
            ),
            lambda: initech.supply.CreateFacility(
                supply_pb2.CreateFacilityRequest(parent="organizations/acme", facility=facility())
            ),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_invalid_facility_reports_every_field(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        with pytest.raises(grpc.RpcError) as caught:
            acme.supply.CreateFacility(
                supply_pb2.CreateFacilityRequest(
                    parent="organizations/acme",
                    facility=facility(
                        region="", country_code="Germany", latitude=91.0, longitude=float("nan")
                    ),
                )
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    for field in (
        "facility.region",
        "facility.country_code",
        "facility.latitude",
        "facility.longitude",
    ):
        assert field in details


def test_supply_service_authenticates_too(stack: Stack) -> None:
    with stack.client(None) as anonymous:
        with pytest.raises(grpc.RpcError) as caught:
            anonymous.supply.ListFacilities(
                supply_pb2.ListFacilitiesRequest(parent="organizations/acme")
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
