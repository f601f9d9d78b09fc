"""Resource names (AIP-122): parsing `collection/{id}/...` strings into ids, with precise errors."""

from __future__ import annotations

import re

from services.shared.errors import InvalidArgument, excerpt

_SEGMENT = r"([a-z0-9][a-z0-9-]{0,62})"


def parse(name: str, pattern: str, field: str) -> tuple[str, ...]:
    """Matches `name` against a pattern like "projects/{project}/designs/{design}" and returns
    the ids in order; a mismatch is InvalidArgument naming `field` and the expected shape."""
    regex = "^" + re.sub(r"\{[a-z_]+\}", _SEGMENT, pattern) + "$"
    match = re.match(regex, name or "")
    if match is None:
        shown = excerpt(name) if name else "(empty)"
        raise InvalidArgument.field(field, f"{shown} is not a resource name of the form {pattern}")
    return match.groups()


def parse_one(name: str, pattern: str, field: str) -> str:
    (only,) = parse(name, pattern, field)
    return only
