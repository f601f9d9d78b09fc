"""IdentityService, served by every cofab service: who the caller's token belongs to."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine, select

from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.shared.accounts import authenticate
from services.shared.db import organizations, users
from services.shared.errors import NotFound
from services.shared.identity import Principal
from services.shared.server import Authenticator, ServiceRegistration, current_principal


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def GetCallerIdentity(
        self, request: identity_pb2.GetCallerIdentityRequest, context: Any
    ) -> identity_pb2.CallerIdentity:
        return await asyncio.to_thread(self._describe, current_principal())

    def _describe(self, principal: Principal) -> identity_pb2.CallerIdentity:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users.c.display_name, organizations.c.display_name.label("org_name"))
                .join(organizations, organizations.c.id == users.c.organization_id)
                .where(
                    users.c.organization_id == principal.organization_id,
                    users.c.id == principal.user_id,
                )
            ).first()
        if row is None:
            raise NotFound(f"{principal.user_name} not found")
        return identity_pb2.CallerIdentity(
            organization=principal.organization_name,
            user=principal.user_name,
            user_display_name=row.display_name,
            organization_display_name=row.org_name,
            organization_admin=principal.organization_admin,
            service_account=principal.service_account,
        )


def identity_registration(engine: Engine) -> ServiceRegistration:
    servicer = IdentityServicer(engine)
    return ServiceRegistration(
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
        lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
    )


def database_authenticator(engine: Engine) -> Authenticator:
    """Token -> principal against the accounts tables (one short read per call)."""

    def _authenticate(token: str) -> Principal:
        with engine.connect() as conn:
            return authenticate(conn, token)

    return _authenticate
