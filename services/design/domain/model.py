"""Projects, memberships and designs: values and the rules that govern them. Plain Python."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from services.shared.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
    excerpt,
)
from services.shared.identity import Role

DEFAULT_INVITE_TTL = dt.timedelta(days=7)
MAX_INVITE_TTL = dt.timedelta(days=30)
# Clocks of the workflow worker and the service may differ slightly; expiry tolerates that.
EXPIRY_CLOCK_SKEW = dt.timedelta(seconds=60)
_PART_NUMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


class MembershipState(enum.Enum):
    INVITED = "INVITED"
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    # An owner removed the organization (or withdrew its invitation); it may be invited again.
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class Project:
    id: str
    display_name: str
    description: str
    owner_organization_id: str
    create_time: dt.datetime

    @property
    def name(self) -> str:
        return f"projects/{self.id}"


@dataclass(frozen=True)
class Membership:
    project_id: str
    organization_id: str
    role: Role
    state: MembershipState
    invitation_id: str
    invited_by: str
    invite_expire_time: dt.datetime | None
    create_time: dt.datetime

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}/memberships/{self.organization_id}"


@dataclass(frozen=True)
class Design:
    id: str
    project_id: str
    display_name: str
    description: str
    part_number: str | None
    creator: str
    create_time: dt.datetime
    # Validation of its revisions: rule set id, material (None: the rule set's default) and
    # per-rule limits overriding the rule set's.
    rule_set: str = "cnc-milling"
    material: str | None = None
    rule_overrides: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.id}"


def check_display_name(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > 200:
        raise InvalidArgument.field(field, "must be at most 200 characters")
    return value


def check_description(field: str, value: str) -> str:
    if len(value) > 10_000:
        raise InvalidArgument.field(field, "must be at most 10000 characters")
    return value


def check_part_number(value: str) -> str | None:
    if not value:
        return None
    if not _PART_NUMBER_RE.match(value):
        raise InvalidArgument.field(
            "design.part_number", "must be 1-100 letters, digits or . _ / -, starting alphanumeric"
        )
    return value


_RULE_SET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_RULE_SET = "cnc-milling"
MAX_RULE_OVERRIDES = 50
# How many valid values an error lists before "...": enough to show the shape, short enough to read.
LISTED_VALUES = 5


@dataclass(frozen=True)
class ValidationCatalog:
    """What a design's validation settings may name: per rule set, the rules that have a limit
    (rule id -> unit), and the material ids."""

    rule_sets: Mapping[str, Mapping[str, str]]
    materials: Collection[str]


def valid_values(values: Collection[str], listed_by: str) -> str:
    """ "one of a, b, c, d, e, ... (12 in all; <listed_by> lists them)": short, never the lot."""
    ordered = sorted(values)
    shown = ", ".join(ordered[:LISTED_VALUES])
    if len(ordered) > LISTED_VALUES:
        shown += f", ... ({len(ordered)} in all"
        return f"one of {shown}; {listed_by} lists them)"
    return f"one of {shown} ({listed_by} lists them)"


def check_validation(
    rule_set: str, material: str, overrides: Mapping[str, float], catalog: ValidationCatalog
) -> tuple[str, str | None, dict[str, float]]:
    """A design's (rule set, material, overrides), each checked against the catalog: the rule
    set defaults to CNC milling, the material to the rule set's own (None)."""
    rule_set = rule_set or DEFAULT_RULE_SET
    rules = catalog.rule_sets.get(rule_set)
    if rules is None:
        raise InvalidArgument.field(
            "design.rule_set",
            f"{excerpt(rule_set)} is not a rule set; "
            + valid_values(catalog.rule_sets, "ListRuleSets"),
        )
    if material and material not in catalog.materials:
        raise InvalidArgument.field(
            "design.material",
            f"{excerpt(material)} is not a material; "
            + valid_values(catalog.materials, "ListMaterials"),
        )
    if len(overrides) > MAX_RULE_OVERRIDES:
        raise InvalidArgument.field(
            "design.rule_overrides", f"has {len(overrides)} entries; at most {MAX_RULE_OVERRIDES}"
        )
    violations: list[FieldViolation] = []
    checked: dict[str, float] = {}
    for rule, limit in sorted(overrides.items()):
        field = (
            f"design.rule_overrides[{rule}]"
            if _RULE_SET_RE.match(rule)
            else ("design.rule_overrides")
        )
        if rule not in rules:
            violations.append(
                FieldViolation(
                    field,
                    f"{excerpt(rule)} is not a rule of {rule_set} that has a limit; "
                    + valid_values(rules, f"GetRuleSet({rule_set})"),
                )
            )
        elif not math.isfinite(limit) or limit < 0:
            violations.append(
                FieldViolation(
                    field, f"the limit must be a finite number >= 0 (in {rules[rule] or 'units'})"
                )
            )
        else:
            checked[rule] = float(limit)
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidArgument(
            f"{first.field}: {first.description}{more}", violations[:LISTED_VALUES]
        )
    return rule_set, material or None, checked


def invite_ttl(seconds: int) -> dt.timedelta:
    if seconds < 0:
        raise InvalidArgument.field("invite_ttl_seconds", "must not be negative")
    # Compared as a number first: a timedelta of 2**62 seconds does not exist.
    if seconds > MAX_INVITE_TTL.total_seconds():
        raise InvalidArgument.field("invite_ttl_seconds", "must be at most 30 days (2592000)")
    return dt.timedelta(seconds=seconds) if seconds else DEFAULT_INVITE_TTL


def invite(
    project_id: str,
    organization_id: str,
    role: Role,
    invitation_id: str,
    invited_by: str,
    ttl: dt.timedelta,
    now: dt.datetime,
    existing: Membership | None,
) -> Membership:
    """A new invitation. Organizations that declined or let an invitation expire may be
    invited again; current members and pending invitees may not."""
    if existing is not None and existing.state in (MembershipState.ACTIVE, MembershipState.INVITED):
        raise FailedPrecondition(
            f"organizations/{organization_id} is already "
            f"{'a member' if existing.state is MembershipState.ACTIVE else 'invited'}",
            [
                PreconditionViolation(
                    "MEMBERSHIP_STATE", existing.name, f"membership is {existing.state.value}"
                )
            ],
        )
    return Membership(
        project_id=project_id,
        organization_id=organization_id,
        role=role,
        state=MembershipState.INVITED,
        invitation_id=invitation_id,
        invited_by=invited_by,
        invite_expire_time=now + ttl,
        create_time=now,
    )


def _require_invited(membership: Membership, action: str) -> None:
    if membership.state is not MembershipState.INVITED:
        raise FailedPrecondition(
            f"cannot {action} {membership.name}: it is {membership.state.value}, not INVITED",
            [
                PreconditionViolation(
                    "MEMBERSHIP_STATE", membership.name, f"membership is {membership.state.value}"
                )
            ],
        )


def _is_expired(membership: Membership, now: dt.datetime) -> bool:
    expiry = membership.invite_expire_time
    return expiry is not None and now >= expiry


def accept(membership: Membership, now: dt.datetime) -> Membership:
    _require_invited(membership, "accept")
    if _is_expired(membership, now):
        raise FailedPrecondition(
            f"the invitation to {membership.name} expired",
            [PreconditionViolation("INVITATION_EXPIRED", membership.name, "invitation expired")],
        )
    return replace(membership, state=MembershipState.ACTIVE, invite_expire_time=None)


def decline(membership: Membership) -> Membership:
    _require_invited(membership, "decline")
    return replace(membership, state=MembershipState.DECLINED)


def expire(membership: Membership, now: dt.datetime) -> Membership:
    """Expires an open invitation whose time ran out. An invitation that was already answered
    stays as it is: the expiry timer and the answer may cross, and the answer wins."""
    if membership.state is not MembershipState.INVITED:
        return membership
    expiry = membership.invite_expire_time
    if expiry is None or now + EXPIRY_CLOCK_SKEW < expiry:
        raise FailedPrecondition(
            f"the invitation to {membership.name} does not expire before {expiry}",
            [PreconditionViolation("INVITATION_OPEN", membership.name, "invitation still open")],
        )
    return replace(membership, state=MembershipState.EXPIRED)


def _last_owner(membership: Membership, action: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"cannot {action} {membership.name}: it is the project's last active owner; "
        "make another organization owner first",
        [PreconditionViolation("LAST_OWNER", membership.name, "the project's last active owner")],
    )


def _require_open(membership: Membership, action: str) -> None:
    if membership.state not in (MembershipState.ACTIVE, MembershipState.INVITED):
        raise FailedPrecondition(
            f"cannot {action} {membership.name}: it is {membership.state.value}",
            [
                PreconditionViolation(
                    "MEMBERSHIP_STATE", membership.name, f"membership is {membership.state.value}"
                )
            ],
        )


def _is_sole_owner(membership: Membership, active_owners: int) -> bool:
    return (
        membership.state is MembershipState.ACTIVE
        and membership.role is Role.OWNER
        and active_owners <= 1
    )


def remove(membership: Membership, active_owners: int) -> Membership:
    """Removes a member, or withdraws an open invitation. `active_owners` counts the project's
    active owners: a project always keeps one, so its last owner cannot remove itself."""
    _require_open(membership, "remove")
    if _is_sole_owner(membership, active_owners):
        raise _last_owner(membership, "remove")
    return replace(membership, state=MembershipState.REMOVED, invite_expire_time=None)


def change_role(membership: Membership, role: Role, active_owners: int) -> Membership:
    """Gives a member (or an open invitation) another role; the last owner cannot lower its own."""
    _require_open(membership, "change the role of")
    if role is membership.role:
        return membership
    if role < Role.OWNER and _is_sole_owner(membership, active_owners):
        raise _last_owner(membership, "lower the role of")
    return replace(membership, role=role)
