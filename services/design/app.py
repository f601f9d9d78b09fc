"""Composition root of the design service: builds every dependency and the gRPC server."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from cofab.design.v1 import design_pb2, design_pb2_grpc
from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.design.api import DesignServicer, ProjectServicer
from services.design.application import DesignApplication
from services.shared.config import Settings
from services.shared.db import make_engine
from services.shared.identity_api import TokenAuthenticator, identity_registration
from services.shared.server import BuiltServer, ServiceRegistration, create_server, read_tls


@dataclass
class DesignDeps:
    engine: Engine
    authenticator: TokenAuthenticator
    app: DesignApplication


def bootstrap(settings: Settings) -> DesignDeps:
    engine = make_engine(settings.database_url)
    return DesignDeps(
        engine=engine,
        authenticator=TokenAuthenticator(engine, settings.auth_cache_seconds),
        app=DesignApplication(engine),
    )


def registrations(deps: DesignDeps) -> list[ServiceRegistration]:
    projects = ProjectServicer(deps.app)
    designs = DesignServicer(deps.app)
    return [
        identity_registration(),
        ServiceRegistration(
            identity_pb2.DESCRIPTOR.services_by_name["ProjectService"].full_name,
            lambda s: identity_pb2_grpc.add_ProjectServiceServicer_to_server(projects, s),
        ),
        ServiceRegistration(
            design_pb2.DESCRIPTOR.services_by_name["DesignService"].full_name,
            lambda s: design_pb2_grpc.add_DesignServiceServicer_to_server(designs, s),
        ),
    ]


def build_server(
    settings: Settings, deps: DesignDeps | None = None, listen: str = ""
) -> BuiltServer:
    """The design service's server, not yet started (tests pass listen="127.0.0.1:0")."""
    deps = deps or bootstrap(settings)
    return create_server(
        listen or settings.design_listen,
        registrations(deps),
        deps.authenticator,
        tls=read_tls(settings.tls_cert_file, settings.tls_key_file),
    )
