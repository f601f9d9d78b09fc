"""Composition of procurement inside the supply service: its application and gRPC service."""

from __future__ import annotations

from sqlalchemy import Engine

from cofab.procurement.v1 import procurement_pb2, procurement_pb2_grpc
from services.shared.config import Settings
from services.shared.server import ServiceRegistration
from services.supply.procurement.api import ProcurementServicer
from services.supply.procurement.application import ProcurementApplication
from services.supply.procurement.ports import GrpcDesignRevisions, NetworkDirectory, SupplyNetwork


def procurement_registration(
    settings: Settings, engine: Engine, network: SupplyNetwork
) -> ServiceRegistration:
    """ProcurementService on the supply server; revisions are checked with the design service
    at settings.design_address (the channel connects on first use)."""
    app = ProcurementApplication(
        engine,
        GrpcDesignRevisions(settings.design_address, settings.tls_ca_file),
        NetworkDirectory(network),
    )
    servicer = ProcurementServicer(app)
    return ServiceRegistration(
        procurement_pb2.DESCRIPTOR.services_by_name["ProcurementService"].full_name,
        lambda s: procurement_pb2_grpc.add_ProcurementServiceServicer_to_server(servicer, s),
    )
