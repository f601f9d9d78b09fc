"""Feed cursors and visibility: pure functions of the partner event feed."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.errors import InvalidArgument
from services.shared.feed import decode_cursor, encode_cursor, visible_to
from services.shared.keys import ServerKeys, using_keys

KEYS = ServerKeys(b"k" * 32)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_a_cursor_round_trips(seq: int) -> None:
    with using_keys(KEYS):
        assert decode_cursor("acme", encode_cursor("acme", seq)) == seq


def test_an_empty_cursor_starts_at_the_beginning() -> None:
    with using_keys(KEYS):
        assert decode_cursor("acme", "") == 0


def test_cursors_hide_the_position_and_differ_each_time() -> None:
    seq = 123_456_789
    with using_keys(KEYS):
        first, second = encode_cursor("acme", seq), encode_cursor("acme", seq)
    assert first != second
    for cursor in (first, second):
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        assert seq.to_bytes(8, "big") not in raw and str(seq).encode() not in raw


def _forgeries() -> list[str]:
    with using_keys(KEYS):
        real = encode_cursor("acme", 5)
    flipped = real[:-1] + ("A" if real[-1] != "A" else "B")
    return ["x", "12", real + "!", flipped, "ZmVlZDE6MTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"]


@pytest.mark.parametrize("cursor", _forgeries())
def test_a_forged_or_altered_cursor_is_invalid(cursor: str) -> None:
    with using_keys(KEYS), pytest.raises(InvalidArgument) as error:
        decode_cursor("acme", cursor)
    assert error.value.violations[0].field == "cursor"


def test_a_cursor_works_for_its_organization_and_key_only() -> None:
    with using_keys(KEYS):
        cursor = encode_cursor("acme", 7)
        with pytest.raises(InvalidArgument):
            decode_cursor("globex", cursor)
    with using_keys(ServerKeys(b"o" * 32)), pytest.raises(InvalidArgument):
        decode_cursor("acme", cursor)


def test_visibility_is_the_originator_and_the_audience_once_each() -> None:
    envelope = EventEnvelope(
        organization="organizations/acme",
        audience=["organizations/globex", "organizations/acme", "projects/p1", "organizations/"],
    )
    assert visible_to(envelope) == ["acme", "globex"]
