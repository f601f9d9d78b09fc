import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.shared.errors import Unauthenticated
from services.shared.identity import hash_secret, issue_token, parse_bearer, parse_token


def test_issued_token_parses_to_its_id_and_stored_hash() -> None:
    issued = issue_token()
    token_id, secret_hash = parse_token(issued.plaintext)
    assert token_id == issued.token_id
    assert secret_hash == issued.secret_hash
    # The stored hash is not the secret itself.
    assert issued.secret_hash not in issued.plaintext


def test_tokens_are_unique() -> None:
    assert len({issue_token().plaintext for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "token",
    ["", "cofab", "cofab_123_abc", "Bearer x", "cofab_zzzzzzzzzzzz_" + "a" * 43, "x" * 500],
)
def test_malformed_tokens_are_unauthenticated(token: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        parse_token(token)


@given(st.text(max_size=80))
def test_parse_token_never_raises_anything_but_unauthenticated(text: str) -> None:
    try:
        parse_token(text)
    except Unauthenticated:
        pass


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_bad_authorization_headers(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        parse_bearer(header)


def test_bearer_header_yields_token() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer("bearer abc ") == "abc"


def test_hash_is_deterministic_and_distinct() -> None:
    assert hash_secret("a") == hash_secret("a")
    assert hash_secret("a") != hash_secret("b")
