import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from cofab.design.v1 import design_pb2, events_pb2
from cofab.identity.v1 import events_pb2 as identity_events
from services.shared.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Unauthenticated,
)
from services.shared.events import (
    MalformedEvent,
    decode_envelope,
    header,
    kafka_headers,
    make_envelope,
    topic_for,
    unpack,
)
from services.shared.status import to_status


def _envelope() -> object:
    return make_envelope(
        source="//cofab/design",
        event_type="design.design.created",
        subject="projects/p/designs/d",
        organization="organizations/acme",
        data=events_pb2.DesignCreated(design=design_pb2.Design(name="projects/p/designs/d")),
        audience=["organizations/globex"],
    )


def test_envelope_round_trips_with_cloudevents_attributes() -> None:
    envelope = _envelope()
    decoded = decode_envelope(envelope.SerializeToString())  # type: ignore[attr-defined]
    assert decoded == envelope
    assert decoded.spec_version == "1.0"
    payload = unpack(decoded, events_pb2.DesignCreated)
    assert payload.design.name == "projects/p/designs/d"  # type: ignore[attr-defined]
    headers = kafka_headers(decoded)
    assert header(headers, "ce_type") == "design.design.created"
    assert header(headers, "ce_id") == decoded.id


def test_event_ids_are_unique() -> None:
    assert _envelope().id != _envelope().id  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [None, b"", b"\xff\xff\xff", b"not a protobuf at all \x00\x01"])
def test_garbage_is_malformed(value: bytes | None) -> None:
    with pytest.raises(MalformedEvent):
        decode_envelope(value)


def test_payload_of_another_type_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="expected cofab.identity.v1.MembershipInvited"):
        unpack(_envelope(), identity_events.MembershipInvited)  # type: ignore[arg-type]


def test_topics_by_area() -> None:
    assert topic_for("design.design.created") == "cofab.design"
    assert topic_for("identity.membership.invited") == "cofab.identity"
    with pytest.raises(ValueError):
        topic_for("nonsense.thing")


def _details(status: grpc.Status) -> status_pb2.Status:
    (key, value) = status.trailing_metadata[0]
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (Conflict("x"), grpc.StatusCode.ABORTED),
    ],
)
def test_each_domain_error_has_one_status(error: Exception, code: grpc.StatusCode) -> None:
    status = to_status(error)  # type: ignore[arg-type]
    assert status.code == code
    assert status.details == "x"
    info = error_details_pb2.ErrorInfo()
    assert _details(status).details[0].Unpack(info)
    assert info.domain == "cofab.dev"


def test_bad_request_names_the_fields() -> None:
    status = to_status(InvalidArgument.field("design.display_name", "is required"))
    bad = error_details_pb2.BadRequest()
    assert _details(status).details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("design.display_name", "is required")
    ]


def test_precondition_failure_and_conflict_details() -> None:
    status = to_status(
        FailedPrecondition("no", [PreconditionViolation("STATE", "projects/p", "closed")])
    )
    failure = error_details_pb2.PreconditionFailure()
    assert _details(status).details[1].Unpack(failure)
    assert failure.violations[0].subject == "projects/p"
    conflict = to_status(Conflict("head moved", current="revisions/r2"))
    info = error_details_pb2.ErrorInfo()
    _details(conflict).details[0].Unpack(info)
    assert info.metadata["current"] == "revisions/r2"
