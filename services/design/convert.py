"""Conversions between the design domain and its protobuf messages (API and events)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cofab.design.v1 import design_pb2, events_pb2
from cofab.identity.v1 import events_pb2 as identity_events_pb2
from cofab.identity.v1 import identity_pb2
from services.design.domain import Design, Membership, MembershipState, Project
from services.design.domain.ports import RuleSetInfo
from services.design.domain.revisions import Branch, Revision, RevisionState, findings_summary
from services.design.geometry.types import ParameterValue
from services.shared.errors import InvalidArgument
from services.shared.identity import Role

_MEMBERSHIP_STATES = {
    MembershipState.INVITED: identity_pb2.Membership.STATE_INVITED,
    MembershipState.ACTIVE: identity_pb2.Membership.STATE_ACTIVE,
    MembershipState.DECLINED: identity_pb2.Membership.STATE_DECLINED,
    MembershipState.EXPIRED: identity_pb2.Membership.STATE_EXPIRED,
    MembershipState.REMOVED: identity_pb2.Membership.STATE_REMOVED,
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
        rule_set=design.rule_set,
        material=design.material or "",
        rule_overrides=dict(design.rule_overrides),
    )


_MEMBERSHIP_EVENTS: dict[str, type[Message]] = {
    "identity.membership.invited": identity_events_pb2.MembershipInvited,
    "identity.membership.accepted": identity_events_pb2.MembershipAccepted,
    "identity.membership.declined": identity_events_pb2.MembershipDeclined,
    "identity.membership.expired": identity_events_pb2.MembershipExpired,
    "identity.membership.removed": identity_events_pb2.MembershipRemoved,
}


def membership_event(
    event_type: str, membership: Membership, previous_role: Role | None = None
) -> Message:
    if event_type == "identity.membership.role_changed":
        assert previous_role is not None
        return identity_events_pb2.MembershipRoleChanged(
            membership=membership_proto(membership),
            previous_role=identity_pb2.Role.ValueType(int(previous_role)),
        )
    return _MEMBERSHIP_EVENTS[event_type](membership=membership_proto(membership))


def design_created(design: Design) -> events_pb2.DesignCreated:
    return events_pb2.DesignCreated(design=design_proto(design))


def design_updated(design: Design, paths: list[str]) -> events_pb2.DesignUpdated:
    return events_pb2.DesignUpdated(design=design_proto(design), paths=paths)


# revisions


_REVISION_STATES = {
    RevisionState.PENDING: design_pb2.Revision.STATE_PENDING,
    RevisionState.RUNNING: design_pb2.Revision.STATE_RUNNING,
    RevisionState.SUCCEEDED: design_pb2.Revision.STATE_SUCCEEDED,
    RevisionState.FAILED: design_pb2.Revision.STATE_FAILED,
}
_SEVERITIES = {
    "info": design_pb2.SEVERITY_INFO,
    "warning": design_pb2.SEVERITY_WARNING,
    "error": design_pb2.SEVERITY_ERROR,
}


def rule_set_proto(rule_set: RuleSetInfo) -> design_pb2.RuleSet:
    return design_pb2.RuleSet(
        id=rule_set.id,
        display_name=rule_set.display_name,
        process=rule_set.process,
        description=rule_set.description,
        default_material=rule_set.default_material,
        rules=[
            design_pb2.Rule(
                id=r.id,
                check=r.check,
                severity=_SEVERITIES.get(r.severity.value, design_pb2.SEVERITY_UNSPECIFIED),
                description=r.description,
                limit=r.limit,
                unit=r.unit,
                axis=r.axis or "",
            )
            for r in rule_set.rules
        ],
    )


def parameter_value(value: ParameterValue) -> design_pb2.ParameterValue:
    # bool before int: a bool is an int to Python.
    if isinstance(value, bool):
        return design_pb2.ParameterValue(bool_value=value)
    if isinstance(value, int):
        return design_pb2.ParameterValue(int_value=value)
    if isinstance(value, float):
        return design_pb2.ParameterValue(number_value=value)
    return design_pb2.ParameterValue(string_value=str(value))


def parameter_from_proto(value: design_pb2.ParameterValue, field: str) -> ParameterValue:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument.field(field, "has no value")
    result: ParameterValue = getattr(value, kind)
    return result


def _vector(values: Any) -> design_pb2.Vector3:
    x, y, z = (float(v) for v in values)
    return design_pb2.Vector3(x=x, y=y, z=z)


def properties_proto(props: Mapping[str, Any]) -> design_pb2.Properties:
    message = design_pb2.Properties(
        volume_mm3=float(props["volume_mm3"]),
        area_mm2=float(props["area_mm2"]),
        bbox_min=_vector(props["bbox_min"]),
        bbox_max=_vector(props["bbox_max"]),
        center_of_mass=_vector(props["center_of_mass"]),
        material=props.get("material") or "",
        triangles=int(props.get("triangles") or 0),
        is_brep=bool(props.get("is_brep")),
    )
    if props.get("mass_g") is not None:
        message.mass_g = float(props["mass_g"])
    for key in ("solids", "faces", "edges", "bodies"):
        if props.get(key) is not None:
            setattr(message, key, int(props[key]))
    # Revisions processed before units were recorded were all read in mm.
    message.units = str(props.get("units") or "mm")
    message.declared_units = str(props.get("declared_units") or "")
    for solid in props.get("solid_properties") or ():
        item = message.solid_properties.add(
            index=int(solid["index"]),
            volume_mm3=float(solid["volume_mm3"]),
            area_mm2=float(solid["area_mm2"]),
            bbox_min=_vector(solid["bbox_min"]),
            bbox_max=_vector(solid["bbox_max"]),
            center_of_mass=_vector(solid["center_of_mass"]),
            part=int(solid.get("part") or 0),
            instances=int(solid.get("instances") or 1),
        )
        if solid.get("faces") is not None:
            item.faces = int(solid["faces"])
    return message


def finding_proto(finding: Mapping[str, Any]) -> design_pb2.Finding:
    message = design_pb2.Finding(
        rule_id=str(finding.get("rule_id", "")),
        severity=_SEVERITIES.get(str(finding.get("severity")), design_pb2.SEVERITY_UNSPECIFIED),
        message=str(finding.get("message", "")),
        unit=str(finding.get("unit") or ""),
    )
    for key in ("measured", "limit"):
        if finding.get(key) is not None:
            setattr(message, key, float(finding[key]))
    location = finding.get("location")
    if location:
        message.location.point.CopyFrom(_vector(location["point"]))
        if location.get("face_id") is not None:
            message.location.face_id = int(location["face_id"])
    return message


def summary_proto(revision: Revision) -> design_pb2.FindingsSummary:
    counts = findings_summary(revision.findings)
    return design_pb2.FindingsSummary(
        info=counts["info"], warning=counts["warning"], error=counts["error"]
    )


def revision_proto(revision: Revision) -> design_pb2.Revision:
    message = design_pb2.Revision(
        name=revision.name,
        parents=revision.parent_names(),
        branch=revision.branch,
        author=revision.author,
        message=revision.message,
        format=revision.format,
        units=revision.units,
        sha256=revision.sha256,
        size_bytes=revision.size_bytes,
        parameters={k: parameter_value(v) for k, v in revision.parameters.items()},
        rule_set=revision.rule_set,
        state=_REVISION_STATES[revision.state],
        findings=[finding_proto(f) for f in revision.findings],
        artifacts=[
            design_pb2.Artifact(
                name=a.name, sha256=a.sha256, size_bytes=a.size_bytes, media_type=a.media_type
            )
            for a in revision.artifacts
        ],
        create_time=timestamp(revision.create_time),
        released=revision.released,
        release_time=timestamp(revision.release_time),
        findings_summary=summary_proto(revision),
    )
    if revision.error is not None:
        message.error.CopyFrom(
            design_pb2.ProcessingError(code=revision.error.code, message=revision.error.message)
        )
    if revision.properties is not None:
        message.properties.CopyFrom(properties_proto(revision.properties))
    return message


def branch_proto(branch: Branch) -> design_pb2.Branch:
    return design_pb2.Branch(
        name=branch.resource_name,
        head=branch.head_name,
        update_time=timestamp(branch.update_time),
    )
