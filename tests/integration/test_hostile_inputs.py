"""Hostile input over real gRPC, on SQLite and PostgreSQL: forged cursors and page tokens, huge
numbers, strings and lists, reused request ids. Each answer is INVALID_ARGUMENT naming the field
(NOT_FOUND or OUT_OF_RANGE where that is the truth), and no answer grows with the input."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cofab.design.v1 import design_pb2, events_pb2, review_pb2
from cofab.events.v1 import feed_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from cofab.procurement.v1 import procurement_pb2
from cofab.supply.v1 import supply_pb2
from services.shared.events import make_envelope
from services.shared.feed import FeedStore
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str, list[str]]:
    """(code, ErrorInfo reason, message, violated fields) of a refused call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    details = error.details() or ""
    # Far below the 16 KiB gRPC metadata limit, whatever the input was.
    assert len(details) <= 500
    status = rpc_status.from_call(error)
    reason, fields = "", []
    for detail in status.details if status else ():
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    code: grpc.StatusCode = error.code()
    return code, reason, details, fields


def invalid(call: Callable[[], object]) -> list[str]:
    code, _, _, fields = refusal(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    return fields


def store_events(stack: Stack, organization: str, count: int) -> None:
    store = FeedStore(stack.engine)
    for _ in range(count):
        design = design_pb2.Design(name=f"projects/p/designs/{uuid.uuid4().hex[:8]}")
        store.append(
            make_envelope(
                source="//cofab/test",
                event_type="design.design.created",
                subject=design.name,
                organization=f"organizations/{organization}",
                data=events_pb2.DesignCreated(design=design),
            )
        )


def test_feed_cursors_are_sealed_and_bound_to_the_organization(stack: Stack) -> None:
    store_events(stack, "acme", 3)
    store_events(stack, "globex", 2)
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        received = list(acme.events.StreamEvents(feed_pb2.StreamEventsRequest()))
        assert len(received) == 3
        cursor = received[0].cursor
        # Opaque: neither the feed's sequence number nor the old "feed1:<seq>" shows.
        assert "feed1" not in base64.urlsafe_b64decode(cursor + "==").decode("latin-1")
        resumed = list(acme.events.StreamEvents(feed_pb2.StreamEventsRequest(cursor=cursor)))
        assert [r.event.id for r in resumed] == [r.event.id for r in received[1:]]

        def stream(account: object, cursor: str) -> Callable[[], object]:
            return lambda: list(
                account.events.StreamEvents(  # type: ignore[attr-defined]
                    feed_pb2.StreamEventsRequest(cursor=cursor)
                )
            )

        huge = base64.urlsafe_b64encode(f"feed1:{10**30}".encode()).decode().rstrip("=")
        future = base64.urlsafe_b64encode(b"feed1:99999999").decode().rstrip("=")
        altered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
        for forged in (huge, future, altered, "x" * 60, cursor + "A"):
            assert invalid(stream(acme, forged)) == ["cursor"]
        # Acme's genuine cursor means nothing in Globex's feed.
        assert invalid(stream(globex, cursor)) == ["cursor"]
        assert len(list(globex.events.StreamEvents(feed_pb2.StreamEventsRequest()))) == 2
        prefixes = feed_pb2.StreamEventsRequest(type_prefixes=["design."] * 10_000)
        assert invalid(lambda: list(acme.events.StreamEvents(prefixes))) == ["type_prefixes"]


def test_page_tokens_are_sealed_and_bound(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme).name
        for i in range(3):
            create_design(acme, project, f"Part {i}")
        first = acme.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project, page_size=2))
        token = first.next_page_token
        assert token
        rest = acme.designs.ListDesigns(
            design_pb2.ListDesignsRequest(parent=project, page_token=token)
        )
        assert len(rest.designs) == 1
        forged = base64.urlsafe_b64encode(json.dumps({"a": 10**30, "q": "x"}).encode()).decode()
        for bad in (forged, token[:-1], "!!", "a" * 5000):
            request = design_pb2.ListDesignsRequest(parent=project, page_token=bad)
            fields = invalid(functools.partial(acme.designs.ListDesigns, request))
            assert fields == ["page_token"]
        # The token is ACME's: Globex cannot use it, and it fits no other list call.
        own = create_project(globex).name
        assert invalid(
            lambda: globex.designs.ListDesigns(
                design_pb2.ListDesignsRequest(parent=own, page_token=token)
            )
        ) == ["page_token"]
        assert invalid(
            lambda: acme.projects.ListProjects(ipb.ListProjectsRequest(page_token=token))
        ) == ["page_token"]


def test_huge_numbers_strings_and_lists_name_the_field(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        ttl = ipb.CreateMembershipRequest(
            parent=project,
            membership=ipb.Membership(organization="organizations/globex", role=ipb.ROLE_VIEWER),
            invite_ttl_seconds=2**62,
        )
        assert invalid(lambda: acme.projects.CreateMembership(ttl)) == ["invite_ttl_seconds"]
        name = "projects/" + "p" * 1_000_000
        assert invalid(lambda: acme.designs.GetDesign(design_pb2.GetDesignRequest(name=name))) == [
            "name"
        ]
        long_text = "x" * 430_000
        described = design_pb2.CreateDesignRequest(
            parent=project, design=design_pb2.Design(display_name="A", description=long_text)
        )
        assert invalid(lambda: acme.designs.CreateDesign(described)) == ["design.description"]
        disruption = supply_pb2.ReportDisruptionRequest(
            parent="organizations/acme", disruption=supply_pb2.Disruption(description=long_text)
        )
        assert invalid(lambda: acme.supply.ReportDisruption(disruption)) == [
            "disruption.description"
        ]
        capability = supply_pb2.CreateCapabilityRequest(
            parent="organizations/acme/facilities/f1",
            capability=supply_pb2.Capability(
                process="cnc-milling", materials=[f"m{i}" * 20 for i in range(1000)]
            ),
        )
        assert invalid(lambda: acme.supply.CreateCapability(capability)) == ["capability.materials"]
        attachment = procurement_pb2.Attachment(file_name="drawing.pdf" * 10)
        quote = procurement_pb2.SubmitQuoteRequest(
            parent="organizations/globex/rfqs/r1",
            quote=procurement_pb2.Quote(attachments=[attachment] * 10_000),
        )
        assert invalid(lambda: acme.procurement.SubmitQuote(quote)) == ["quote.attachments"]


def test_list_reviews_of_a_design_outside_the_project_is_not_found(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        other = create_project(acme, "Other").name
        design = create_design(acme, other)
        elsewhere = f"{project}/designs/{design.name.rsplit('/', 1)[1]}"
        for parent in (elsewhere, f"{project}/designs/nosuchdesign"):
            listing = review_pb2.ListReviewsRequest(parent=parent)
            code, _, _, _ = refusal(functools.partial(acme.reviews.ListReviews, listing))
            assert code == grpc.StatusCode.NOT_FOUND
        assert acme.reviews.ListReviews(review_pb2.ListReviewsRequest(parent=design.name)) == (
            review_pb2.ListReviewsResponse()
        )


def test_a_request_id_reused_for_another_request_is_refused(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        first = create_design(acme, project, "Bracket", request_id="same-id")
        # The same request again: the first result, no second design.
        assert create_design(acme, project, "Bracket", request_id="same-id") == first
        code, reason, message, fields = refusal(
            lambda: create_design(acme, project, "Another part", request_id="same-id")
        )
        assert (code, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "REQUEST_ID_REUSED",
            ["request_id"],
        )
        assert "different CreateDesign request" in message
        listed = acme.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project))
        assert [d.display_name for d in listed.designs] == ["Bracket"]
        # Another method may use the same id: ids are per method.
        acme.projects.CreateProject(
            ipb.CreateProjectRequest(project=ipb.Project(display_name="P"), request_id="same-id")
        )
