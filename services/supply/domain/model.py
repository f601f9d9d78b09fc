"""The supplier network's first resource, the facility: value and validation. Plain Python."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from services.shared.errors import FieldViolation, InvalidArgument

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


@dataclass(frozen=True)
class Facility:
    id: str
    organization_id: str
    display_name: str
    region: str
    country_code: str
    latitude: float
    longitude: float
    create_time: dt.datetime

    @property
    def name(self) -> str:
        return f"organizations/{self.organization_id}/facilities/{self.id}"


def check_facility(
    display_name: str, region: str, country_code: str, latitude: float, longitude: float
) -> None:
    """Reports every invalid field at once (AIP-193 BadRequest)."""
    problems: list[FieldViolation] = []
    if not display_name.strip() or len(display_name) > 200:
        problems.append(FieldViolation("facility.display_name", "is required, at most 200 chars"))
    if not _REGION_RE.match(region):
        problems.append(
            FieldViolation("facility.region", "is required: lower-case letters, digits, '-'")
        )
    if not _COUNTRY_RE.match(country_code):
        problems.append(
            FieldViolation("facility.country_code", "must be an ISO 3166-1 alpha-2 code like DE")
        )
    if not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
        problems.append(FieldViolation("facility.latitude", "must be within [-90, 90]"))
    if not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
        problems.append(FieldViolation("facility.longitude", "must be within [-180, 180]"))
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidArgument(summary, problems)
