"""IdentityService, served by every cofab service, and the token authenticator behind it."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from sqlalchemy import Engine

from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.shared.accounts import authenticate_token
from services.shared.db import read_only, utcnow
from services.shared.identity import Principal, hash_secret
from services.shared.server import ServiceRegistration, current_principal

DEFAULT_CACHE_SECONDS = 10.0
CACHE_ENTRIES = 10_000


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    async def GetCallerIdentity(
        self, request: identity_pb2.GetCallerIdentityRequest, context: Any
    ) -> identity_pb2.CallerIdentity:
        # Everything is already known from authenticating the call: no database read.
        principal = current_principal()
        return identity_pb2.CallerIdentity(
            organization=principal.organization_name,
            user=principal.user_name,
            user_display_name=principal.user_display_name,
            organization_display_name=principal.organization_display_name,
            organization_admin=principal.organization_admin,
            service_account=principal.service_account,
        )


def identity_registration() -> ServiceRegistration:
    servicer = IdentityServicer()
    return ServiceRegistration(
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
        lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
    )


class TokenAuthenticator:
    """Token -> principal against the accounts tables, with a small cache in front.

    A token found valid is trusted for `cache_seconds` (never past its expiry), so most calls
    cost no database read; the price is that a revocation takes up to that long to bite.
    bench/rpc.py measures what the cache buys (calls per second against a bare echo server)."""

    def __init__(self, engine: Engine, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: collections.OrderedDict[str, tuple[Principal, float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal if the token was found valid recently; cheap, safe on the event loop."""
        if self._cache_seconds <= 0:
            return None
        key = hash_secret(token)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            principal, valid_until = hit
            if time.monotonic() >= valid_until:
                del self._cache[key]
                return None
            return principal

    def authenticate(self, token: str) -> Principal:
        """Looks the token up in the database (blocking) and caches a valid one."""
        with read_only(self._engine) as conn:
            found = authenticate_token(conn, token)
        if self._cache_seconds > 0:
            until_expiry = (found.token_expire_time - utcnow()).total_seconds()
            valid_until = time.monotonic() + min(self._cache_seconds, until_expiry)
            with self._lock:
                self._cache[hash_secret(token)] = (found.principal, valid_until)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return found.principal
