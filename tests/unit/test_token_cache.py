"""TokenAuthenticator's cache, on a SQLite file: hits skip the database, revocation bites
within the cache time, and garbage never reaches the cache."""

import time
from pathlib import Path

import pytest

from services.shared import accounts, audit
from services.shared.errors import Unauthenticated
from services.shared.identity_api import TokenAuthenticator


def test_cache_serves_until_its_time_then_sees_revocation(sqlite_url: str, tmp_path: Path) -> None:
    engine = audit.audited_engine_in(sqlite_url, tmp_path)
    accounts.create_organization(engine, "acme", "ACME")
    accounts.create_user(engine, "acme", "alice", "Alice")
    token = accounts.create_token(engine, "acme", "alice")
    auth = TokenAuthenticator(engine, cache_seconds=0.5)
    assert auth.cached(token.plaintext) is None
    principal = auth.authenticate(token.plaintext)
    assert principal.user_display_name == "Alice"
    assert principal.organization_display_name == "ACME"
    assert auth.cached(token.plaintext) == principal
    accounts.revoke_token(engine, token.token_id)
    assert auth.cached(token.plaintext) == principal  # the documented revocation delay
    time.sleep(0.6)
    assert auth.cached(token.plaintext) is None
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.authenticate(token.plaintext)
    engine.dispose()


def test_no_cache_when_disabled(sqlite_url: str, tmp_path: Path) -> None:
    engine = audit.audited_engine_in(sqlite_url, tmp_path)
    accounts.create_organization(engine, "acme", "ACME")
    accounts.create_user(engine, "acme", "alice")
    token = accounts.create_token(engine, "acme", "alice")
    auth = TokenAuthenticator(engine, cache_seconds=0)
    auth.authenticate(token.plaintext)
    assert auth.cached(token.plaintext) is None
    with pytest.raises(Unauthenticated):
        auth.authenticate("cofab_000000000000_" + "A" * 43)
    engine.dispose()
