import base64
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.identity import Principal
from services.shared.keys import ServerKeys, using_keys
from services.shared.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page, page_of
from services.shared.server import acting_as

KEYS = ServerKeys(b"k" * 32)


@pytest.fixture(autouse=True)
def in_a_call() -> Iterator[None]:
    """Page tokens are sealed with the server's key for the calling organization."""
    with using_keys(KEYS), acting_as(Principal("acme", "alice")):
        yield


def test_token_of_another_organization_or_server_is_rejected() -> None:
    token = page(10, "", "designs:p1").next_token(7, fetched=11)
    with acting_as(Principal("globex", "gina")), pytest.raises(InvalidArgument):
        page(10, token, "designs:p1")
    with using_keys(ServerKeys(b"o" * 32)), pytest.raises(InvalidArgument):
        page(10, token, "designs:p1")


def test_a_forged_token_with_a_huge_position_is_invalid_argument() -> None:
    # The old, readable format with a = 10**30: now simply not a token of ours.
    forged = base64.urlsafe_b64encode(json.dumps({"a": 10**30, "q": "x"}).encode()).decode()
    with pytest.raises(InvalidArgument, match="page_token"):
        page(10, forged, "q")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(min_value=1, max_value=2**62), query=st.text(max_size=40))
def test_page_token_round_trips(seq: int, query: str) -> None:
    first = page(10, "", query)
    token = first.next_token(seq, fetched=11)
    assert page(10, token, query).after_seq == seq


def test_no_token_on_the_last_page() -> None:
    assert page(10, "", "q").next_token(5, fetched=10) == ""


def test_token_from_another_query_is_rejected() -> None:
    token = page(10, "", "designs:p1").next_token(7, fetched=11)
    with pytest.raises(InvalidArgument) as caught:
        page(10, token, "designs:p2")
    assert caught.value.violations[0].field == "page_token"


@pytest.mark.parametrize("token", ["garbage", "e30", "!!!", "eyJhIjogIngifQ"])
def test_garbage_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        page(10, token, "q")


def test_page_size_defaults_and_caps() -> None:
    assert page(0, "", "q").limit == DEFAULT_PAGE_SIZE
    assert page(10**6, "", "q").limit == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument, match="page_size"):
        page(-1, "", "q")


def test_page_of_cuts_and_links() -> None:
    p = page(2, "", "q")
    listed = page_of(p, [(1, "a"), (2, "b"), (3, "c")])
    assert listed.items == ["a", "b"]
    assert page(2, listed.next_page_token, "q").after_seq == 2
    assert page_of(p, [(1, "a")]).next_page_token == ""


def test_names_parse_and_reject() -> None:
    assert names.parse(
        "projects/p1/designs/d-2", "projects/{project}/designs/{design}", "name"
    ) == (
        "p1",
        "d-2",
    )
    for bad in ["", "projects/", "projects/P1", "projects/a/designs", "x/a", "projects/a/../b"]:
        with pytest.raises(InvalidArgument) as caught:
            names.parse(bad, "projects/{project}/designs/{design}", "name")
        assert caught.value.violations[0].field == "name"
