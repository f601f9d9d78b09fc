"""The design service's domain: plain values and rules, no I/O."""

from services.design.domain.model import (
    Design,
    Membership,
    MembershipState,
    Project,
    accept,
    decline,
    expire,
    invite,
)

__all__ = [
    "Design",
    "Membership",
    "MembershipState",
    "Project",
    "accept",
    "decline",
    "expire",
    "invite",
]
