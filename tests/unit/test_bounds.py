"""The one size check every RPC passes through (services.shared.bounds), and its documentation
in the proto files' header comments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

from cofab.design.v1 import comment_pb2, design_pb2, review_pb2
from cofab.events.v1 import feed_pb2
from cofab.identity.v1 import identity_pb2
from cofab.procurement.v1 import procurement_pb2
from cofab.supply.v1 import supply_pb2
from services.shared.bounds import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ITEMS,
    FIELD_LIMITS,
    check_request,
)
from services.shared.errors import FieldViolation, InvalidArgument, excerpt
from services.shared.status import to_status

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def field_of(request: object) -> str:
    with pytest.raises(InvalidArgument) as caught:
        check_request(request)  # type: ignore[arg-type]
    assert len(caught.value.message) < 200
    return caught.value.violations[0].field


def test_strings_and_lists_at_any_depth_are_bounded() -> None:
    assert field_of(design_pb2.GetDesignRequest(name="x" * 1_000_000)) == "name"
    big = design_pb2.Design(display_name="b", description="d" * 10_001)
    assert field_of(design_pb2.CreateDesignRequest(design=big)) == "design.description"
    check_request(
        design_pb2.CreateDesignRequest(design=design_pb2.Design(description="d" * 10_000))
    )
    prefixes = feed_pb2.StreamEventsRequest(type_prefixes=["design."] * 10_000)
    assert field_of(prefixes) == "type_prefixes"
    capability = supply_pb2.Capability(materials=["steel"] * 1000)
    request = supply_pb2.CreateCapabilityRequest(capability=capability)
    assert field_of(request) == "capability.materials"
    quote = procurement_pb2.Quote(
        attachments=[procurement_pb2.Attachment(file_name="a.pdf")] * 10_000
    )
    assert field_of(procurement_pb2.SubmitQuoteRequest(quote=quote)) == "quote.attachments"
    deep = procurement_pb2.Quote(attachments=[procurement_pb2.Attachment(file_name="f" * 2000)])
    assert field_of(procurement_pb2.SubmitQuoteRequest(quote=deep)) == (
        "quote.attachments[0].file_name"
    )
    review = review_pb2.Review(reviewers=[f"organizations/o{i}" for i in range(51)])
    assert field_of(review_pb2.CreateReviewRequest(review=review)) == "review.reviewers"
    overrides = design_pb2.Design(rule_overrides={f"r{i}": 1.0 for i in range(51)})
    assert field_of(design_pb2.CreateDesignRequest(design=overrides)) == "design.rule_overrides"
    # Within every limit: nothing to say.
    check_request(feed_pb2.StreamEventsRequest(type_prefixes=["procurement.quote.received"] * 20))
    long_prefix = feed_pb2.StreamEventsRequest(type_prefixes=["p" * 1001])
    assert field_of(long_prefix) == "type_prefixes[0]"
    check_request(design_pb2.GetDesignRequest(name="n" * DEFAULT_MAX_CHARS))
    assert DEFAULT_MAX_ITEMS == 100


def test_no_status_text_grows_with_the_input() -> None:
    assert excerpt("x" * 1_000_000).endswith("(1000000 characters)")
    assert len(excerpt("x" * 1_000_000)) < 80
    status = to_status(InvalidArgument.field("name", "y" * 100_000))
    assert len(status.details) < 2_000
    assert len(status.trailing_metadata[0][1]) < 2_000
    # The worst a use case can build: a huge message and a thousand huge violations.
    many = [FieldViolation("f" * 10_000, "d" * 10_000) for _ in range(1000)]
    worst = to_status(InvalidArgument("m" * 100_000, many))
    assert len(worst.details) + len(worst.trailing_metadata[0][1]) < 10 * 1024


def _header_comment(path: Path) -> str:
    """The comment lines after `package` in a proto file, joined."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("package "))
    comment: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("//"):
            comment.append(line.removeprefix("//").strip())
        elif comment:
            break
    return " ".join(comment)


def test_every_limit_is_documented_in_its_proto_file() -> None:
    assert identity_pb2.DESCRIPTOR and comment_pb2.DESCRIPTOR  # every area's messages loaded
    pool = descriptor_pool.Default()
    files: dict[str, str] = {}
    for full, limit in FIELD_LIMITS.items():
        field = pool.FindFieldByName(full)  # an entry for a field that does not exist fails here
        assert field.containing_type is not None
        file = field.containing_type.file.name
        files.setdefault(file, _header_comment(PROTO_DIR / file))
        short = full.split(".", 3)[3]
        assert f"{short} {limit}" in files[file], f"{file} does not document {short} {limit}"
    for file, comment in files.items():
        assert f"at most {DEFAULT_MAX_CHARS} characters" in comment, file
        assert f"at most {DEFAULT_MAX_ITEMS} entries" in comment, file
    # Every proto file with a service states the defaults.
    for path in PROTO_DIR.glob("cofab/*/v1/*.proto"):
        if re.search(r"^service ", path.read_text(), re.M):
            assert f"at most {DEFAULT_MAX_CHARS} characters" in _header_comment(path), path
