"""Size limits of every request, checked once for every RPC before its handler runs.

Unless FIELD_LIMITS says otherwise, a string field holds at most DEFAULT_MAX_CHARS characters
and a repeated or map field at most DEFAULT_MAX_ITEMS entries, at any depth of the request.
Each proto file's header comment states these defaults and its own exceptions
(tests/unit/test_bounds.py keeps the comments and this table the same). A request over a limit is
INVALID_ARGUMENT naming the field: before any database work, so a huge list cannot turn into a
huge query, and the error quotes none of the input. Bytes fields are bounded by the server's
message size only (uploads come in chunks).
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.shared.errors import InvalidArgument

DEFAULT_MAX_CHARS = 1_000
DEFAULT_MAX_ITEMS = 100

# Full proto field name -> its limit (characters for strings, entries for repeated and map
# fields). Where a use case has its own, stricter rule, that rule still applies after this one.
FIELD_LIMITS: dict[str, int] = {
    # Free text.
    "cofab.identity.v1.Project.description": 10_000,
    "cofab.design.v1.Design.description": 10_000,
    "cofab.design.v1.PushRevisionHeader.message": 10_000,
    "cofab.design.v1.Review.message": 10_000,
    "cofab.design.v1.ReviewDecision.comment": 10_000,
    "cofab.design.v1.DecideReviewRequest.comment": 10_000,
    "cofab.design.v1.Comment.body": 10_000,
    "cofab.supply.v1.Disruption.description": 2_000,
    "cofab.procurement.v1.Quote.notes": 10_000,
    # Lists.
    "cofab.design.v1.Design.rule_overrides": 50,
    "cofab.design.v1.Review.reviewers": 50,
    "cofab.supply.v1.Capability.materials": 50,
    "cofab.supply.v1.Capability.certifications": 50,
    "cofab.supply.v1.Item.components": 1_000,
    "cofab.supply.v1.ComputeDisruptionImpactRequest.facilities": 1_000,
    "cofab.supply.v1.PlanAlternativeSourcingRequest.facilities": 1_000,
    "cofab.supply.v1.DisruptionSummary.notified_organizations": 10_000,
    "cofab.supply.v1.DisruptionSummary.rfqs": 10_000,
    "cofab.supply.v1.DisruptionSummary.unsourced_items": 10_000,
    "cofab.procurement.v1.Rfq.invited_suppliers": 5_000,
    "cofab.procurement.v1.Rfq.allocations": 1_000,
    "cofab.procurement.v1.Rfq.proposed_allocations": 1_000,
    "cofab.procurement.v1.AwardRfqRequest.allocations": 1_000,
    "cofab.procurement.v1.ProposeAwardRequest.allocations": 1_000,
    "cofab.procurement.v1.Quote.attachments": 20,
    "cofab.events.v1.StreamEventsRequest.type_prefixes": 20,
}


def limit_of(field: FieldDescriptor) -> int:
    """The field's limit: its FIELD_LIMITS entry or the default of its kind."""
    default = DEFAULT_MAX_ITEMS if _is_repeated(field) else DEFAULT_MAX_CHARS
    return FIELD_LIMITS.get(field.full_name, default)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and bool(entry.GetOptions().map_entry)


def check_request(message: Message, prefix: str = "") -> None:
    """Raises InvalidArgument naming the first field of `message` over its limit."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if _is_repeated(field):
            limit = limit_of(field)
            if len(value) > limit:
                raise InvalidArgument.field(
                    path, f"has {len(value)} entries; at most {limit} are allowed"
                )
            if _is_map(field):
                _check_map(field, value, path)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for i, item in enumerate(value):
                    check_request(item, f"{path}[{i}].")
            elif field.type == FieldDescriptor.TYPE_STRING:
                # A list's limit counts its entries; each entry is a string of the default size.
                for i, item in enumerate(value):
                    _check_string(item, f"{path}[{i}]", DEFAULT_MAX_CHARS)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            check_request(value, f"{path}.")
        elif field.type == FieldDescriptor.TYPE_STRING:
            _check_string(value, path, limit_of(field))


def _check_map(field: FieldDescriptor, value: object, path: str) -> None:
    assert field.message_type is not None  # a map field's entry type
    value_field = field.message_type.fields_by_name["value"]
    for key in value:  # type: ignore[attr-defined]
        if isinstance(key, str) and len(key) > DEFAULT_MAX_CHARS:
            raise InvalidArgument.field(path, f"a key is over {DEFAULT_MAX_CHARS} characters")
        item = value[key]  # type: ignore[index]
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            check_request(item, f"{path}[{key if len(str(key)) <= 40 else '...'}].")
        elif value_field.type == FieldDescriptor.TYPE_STRING:
            _check_string(item, path, DEFAULT_MAX_CHARS)


def _check_string(value: str, path: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument.field(
            path, f"is {len(value)} characters long; at most {limit} are allowed"
        )
