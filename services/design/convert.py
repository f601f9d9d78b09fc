"""Conversions between the design domain and its protobuf messages (API and events)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cofab.design.v1 import design_pb2, events_pb2
from cofab.identity.v1 import events_pb2 as identity_events_pb2
from cofab.identity.v1 import identity_pb2
from services.design.domain import Design, Membership, MembershipState, Project
from services.shared.identity import Role

_MEMBERSHIP_STATES = {
    MembershipState.INVITED: identity_pb2.Membership.STATE_INVITED,
    MembershipState.ACTIVE: identity_pb2.Membership.STATE_ACTIVE,
    MembershipState.DECLINED: identity_pb2.Membership.STATE_DECLINED,
    MembershipState.EXPIRED: identity_pb2.Membership.STATE_EXPIRED,
}


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def project_proto(project: Project, caller_role: Role) -> identity_pb2.Project:
    return identity_pb2.Project(
        name=project.name,
        display_name=project.display_name,
        description=project.description,
        owner_organization=f"organizations/{project.owner_organization_id}",
        create_time=timestamp(project.create_time),
        caller_role=identity_pb2.Role.ValueType(int(caller_role)),
    )


def membership_proto(membership: Membership) -> identity_pb2.Membership:
    return identity_pb2.Membership(
        name=membership.name,
        organization=f"organizations/{membership.organization_id}",
        role=identity_pb2.Role.ValueType(int(membership.role)),
        state=_MEMBERSHIP_STATES[membership.state],
        invite_expire_time=timestamp(membership.invite_expire_time),
        create_time=timestamp(membership.create_time),
        invited_by=membership.invited_by,
        invitation_id=membership.invitation_id,
    )


def design_proto(design: Design) -> design_pb2.Design:
    return design_pb2.Design(
        name=design.name,
        display_name=design.display_name,
        description=design.description,
        part_number=design.part_number or "",
        creator=design.creator,
        create_time=timestamp(design.create_time),
    )


_MEMBERSHIP_EVENTS: dict[str, type[Message]] = {
    "identity.membership.invited": identity_events_pb2.MembershipInvited,
    "identity.membership.accepted": identity_events_pb2.MembershipAccepted,
    "identity.membership.declined": identity_events_pb2.MembershipDeclined,
    "identity.membership.expired": identity_events_pb2.MembershipExpired,
}


def membership_event(event_type: str, membership: Membership) -> Message:
    return _MEMBERSHIP_EVENTS[event_type](membership=membership_proto(membership))


def design_created(design: Design) -> events_pb2.DesignCreated:
    return events_pb2.DesignCreated(design=design_proto(design))
