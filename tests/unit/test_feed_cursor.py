"""Feed cursors and visibility: pure functions of the partner event feed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.errors import InvalidArgument
from services.shared.feed import decode_cursor, encode_cursor, visible_to


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_a_cursor_round_trips(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


def test_an_empty_cursor_starts_at_the_beginning() -> None:
    assert decode_cursor("") == 0


@pytest.mark.parametrize("cursor", ["x", "12", encode_cursor(5) + "!", "ZmVlZDE6LTE"])
def test_a_foreign_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        decode_cursor(cursor)
    assert error.value.violations[0].field == "cursor"


def test_visibility_is_the_originator_and_the_audience_once_each() -> None:
    envelope = EventEnvelope(
        organization="organizations/acme",
        audience=["organizations/globex", "organizations/acme", "projects/p1", "organizations/"],
    )
    assert visible_to(envelope) == ["acme", "globex"]
