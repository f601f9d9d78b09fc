"""Projects, memberships and designs: values and the rules that govern them. Plain Python."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from services.shared.errors import FailedPrecondition, InvalidArgument, PreconditionViolation
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


def check_validation(
    rule_set: str, material: str, overrides: Mapping[str, float], known: Collection[str]
) -> tuple[str, str | None, dict[str, float]]:
    """A design's (rule set, material, overrides); the rule set defaults to CNC milling.
    `known` lists the valid rule set ids (empty: only the shape is checked)."""
    rule_set = rule_set or "cnc-milling"
    if not _RULE_SET_RE.match(rule_set) or (known and rule_set not in known):
        listed = f": one of {', '.join(sorted(known))}" if known else ""
        raise InvalidArgument.field("design.rule_set", f"{rule_set!r} is not a rule set{listed}")
    if len(material) > 63:
        raise InvalidArgument.field("design.material", "must be at most 63 characters")
    checked: dict[str, float] = {}
    for rule, limit in overrides.items():
        if not _RULE_SET_RE.match(rule) or not math.isfinite(limit):
            raise InvalidArgument.field(
                f"design.rule_overrides[{rule}]", "needs a rule id and a finite limit"
            )
        checked[rule] = limit
    return rule_set, material or None, checked


def invite_ttl(seconds: int) -> dt.timedelta:
    if seconds < 0:
        raise InvalidArgument.field("invite_ttl_seconds", "must not be negative")
    ttl = dt.timedelta(seconds=seconds) if seconds else DEFAULT_INVITE_TTL
    if ttl > MAX_INVITE_TTL:
        raise InvalidArgument.field("invite_ttl_seconds", "must be at most 30 days")
    return ttl


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
