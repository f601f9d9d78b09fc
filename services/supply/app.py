"""Composition root of the supply service: builds every dependency and the gRPC server."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from cofab.supply.v1 import supply_pb2, supply_pb2_grpc
from services.shared import audit
from services.shared.config import Settings
from services.shared.feed import feed_registration
from services.shared.identity_api import TokenAuthenticator, identity_registration
from services.shared.keys import server_keys
from services.shared.server import BuiltServer, ServiceRegistration, create_server, read_tls
from services.supply.api import SupplyServicer
from services.supply.application import SupplyApplication
from services.supply.procurement import GrpcDesignRevisions, procurement_registration


@dataclass
class SupplyDeps:
    engine: Engine
    authenticator: TokenAuthenticator
    app: SupplyApplication


def bootstrap(settings: Settings) -> SupplyDeps:
    engine = audit.audited_engine(settings)
    # Items' design references are checked with the design service, with the caller's token.
    designs = GrpcDesignRevisions(settings.design_address, settings.tls_ca_file)
    app = SupplyApplication(engine, designs=designs)
    # Before the server reports SERVING: a large network takes seconds to build.
    app.load_network()
    return SupplyDeps(
        engine=engine,
        authenticator=TokenAuthenticator(engine, settings.auth_cache_seconds),
        app=app,
    )


def build_server(
    settings: Settings, deps: SupplyDeps | None = None, listen: str = ""
) -> BuiltServer:
    """The supply service's server, not yet started (tests pass listen="127.0.0.1:0")."""
    deps = deps or bootstrap(settings)
    supply = SupplyServicer(deps.app)
    return create_server(
        listen or settings.supply_listen,
        [
            identity_registration(),
            ServiceRegistration(
                supply_pb2.DESCRIPTOR.services_by_name["SupplyService"].full_name,
                lambda s: supply_pb2_grpc.add_SupplyServiceServicer_to_server(supply, s),
            ),
            procurement_registration(settings, deps.engine, deps.app),
            feed_registration(deps.engine),
        ],
        deps.authenticator,
        server_keys(settings),
        tls=read_tls(settings.tls_cert_file, settings.tls_key_file),
        auditor=audit.CallAudit(deps.engine),
    )
