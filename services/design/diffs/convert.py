"""Diffs and merges as protobuf messages (API and events)."""

from __future__ import annotations

from collections.abc import Sequence

from cofab.design.v1 import design_pb2
from services.design.convert import finding_proto, parameter_value, timestamp
from services.design.diffs.domain import MergeState, RevisionDiff, RevisionMerge
from services.design.domain.revisions import ArtifactRef, ProcessingError, RevisionState
from services.design.geometry.codec import finding_json
from services.design.geometry.types import (
    Conflict,
    DiffResult,
    FaceSignature,
    Region,
)

_DIFF_STATES = {
    RevisionState.PENDING: design_pb2.RevisionDiff.STATE_PENDING,
    RevisionState.RUNNING: design_pb2.RevisionDiff.STATE_RUNNING,
    RevisionState.SUCCEEDED: design_pb2.RevisionDiff.STATE_SUCCEEDED,
    RevisionState.FAILED: design_pb2.RevisionDiff.STATE_FAILED,
}
_MERGE_STATES = {
    MergeState.PENDING: design_pb2.RevisionMerge.STATE_PENDING,
    MergeState.RUNNING: design_pb2.RevisionMerge.STATE_RUNNING,
    MergeState.PROPOSED: design_pb2.RevisionMerge.STATE_PROPOSED,
    MergeState.CONFLICTED: design_pb2.RevisionMerge.STATE_CONFLICTED,
    MergeState.FAILED: design_pb2.RevisionMerge.STATE_FAILED,
    MergeState.ACCEPTED: design_pb2.RevisionMerge.STATE_ACCEPTED,
    MergeState.DECLINED: design_pb2.RevisionMerge.STATE_DECLINED,
}
_CHANGES = {
    "added": design_pb2.FaceChange.CHANGE_ADDED,
    "removed": design_pb2.FaceChange.CHANGE_REMOVED,
    "modified": design_pb2.FaceChange.CHANGE_MODIFIED,
}


def _vector(value: Sequence[float]) -> design_pb2.Vector3:
    x, y, z = value
    return design_pb2.Vector3(x=x, y=y, z=z)


def _region(region: Region) -> design_pb2.DiffRegion:
    return design_pb2.DiffRegion(
        volume_mm3=region.volume_mm3,
        bbox_min=_vector(region.bbox_min),
        bbox_max=_vector(region.bbox_max),
        centroid=_vector(region.centroid),
    )


def _signature(signature: FaceSignature | None) -> design_pb2.FaceSignature | None:
    if signature is None:
        return None
    message = design_pb2.FaceSignature(
        surface=signature.surface,
        area_mm2=signature.area_mm2,
        direction=_vector(signature.direction),
        centroid=_vector(signature.centroid),
    )
    if signature.radius_mm is not None:
        message.radius_mm = signature.radius_mm
    return message


def geometry_diff_proto(diff: DiffResult) -> design_pb2.GeometryDiff:
    message = design_pb2.GeometryDiff(
        exact=diff.exact,
        added=[_region(r) for r in diff.added],
        removed=[_region(r) for r in diff.removed],
        added_volume_mm3=diff.added_volume_mm3,
        removed_volume_mm3=diff.removed_volume_mm3,
        unchanged_faces=diff.unchanged_faces,
        face_map=dict(diff.face_map),
        max_deviation_mm=diff.max_deviation_mm,
        rms_deviation_mm=diff.rms_deviation_mm,
        volume_delta_mm3=diff.volume_delta_mm3,
        area_delta_mm2=diff.area_delta_mm2,
        bbox_min_delta=_vector(diff.bbox_min_delta),
        bbox_max_delta=_vector(diff.bbox_max_delta),
        findings_introduced=[finding_proto(finding_json(f)) for f in diff.findings_introduced],
        findings_resolved=[finding_proto(finding_json(f)) for f in diff.findings_resolved],
    )
    if diff.mass_delta_g is not None:
        message.mass_delta_g = diff.mass_delta_g
    for change in diff.faces:
        face = message.faces.add(change=_CHANGES.get(change.change, 0))
        if change.face_a is not None:
            face.face_a = change.face_a
        if change.face_b is not None:
            face.face_b = change.face_b
        if (before := _signature(change.before)) is not None:
            face.before.CopyFrom(before)
        if (after := _signature(change.after)) is not None:
            face.after.CopyFrom(after)
    for delta in diff.parameters:
        parameter = message.parameters.add(name=delta.name)
        if delta.before is not None:
            parameter.before.CopyFrom(parameter_value(delta.before))
        if delta.after is not None:
            parameter.after.CopyFrom(parameter_value(delta.after))
    return message


def _error(error: ProcessingError | None) -> design_pb2.ProcessingError | None:
    if error is None:
        return None
    return design_pb2.ProcessingError(code=error.code, message=error.message)


def _artifact(a: ArtifactRef) -> design_pb2.Artifact:
    return design_pb2.Artifact(
        name=a.name, sha256=a.sha256, size_bytes=a.size_bytes, media_type=a.media_type
    )


def diff_proto(diff: RevisionDiff) -> design_pb2.RevisionDiff:
    return design_pb2.RevisionDiff(
        name=diff.name,
        revision_a=diff.revision_name(diff.revision_a),
        revision_b=diff.revision_name(diff.revision_b),
        state=_DIFF_STATES[diff.state],
        error=_error(diff.error),
        result=geometry_diff_proto(diff.result) if diff.result is not None else None,
        artifacts=[_artifact(a) for a in diff.artifacts],
        create_time=timestamp(diff.create_time),
        update_time=timestamp(diff.update_time),
    )


def _conflict(conflict: Conflict) -> design_pb2.MergeConflict:
    return design_pb2.MergeConflict(
        overlap_volume_mm3=conflict.overlap_volume_mm3,
        bbox_min=_vector(conflict.bbox_min),
        bbox_max=_vector(conflict.bbox_max),
        faces_ours=list(conflict.faces_ours),
        faces_theirs=list(conflict.faces_theirs),
        parameters=list(conflict.parameters),
        reason=conflict.reason,
    )


def merge_proto(merge: RevisionMerge) -> design_pb2.RevisionMerge:
    return design_pb2.RevisionMerge(
        name=merge.name,
        target_branch=merge.target_branch,
        base_revision=merge.revision_name(merge.base),
        ours_revision=merge.revision_name(merge.ours),
        source_revision=merge.revision_name(merge.source),
        merged_revision=merge.revision_name(merge.merged),
        author=merge.author,
        state=_MERGE_STATES[merge.state],
        error=_error(merge.error),
        conflict=_conflict(merge.conflict) if merge.conflict is not None else None,
        ours_diff=geometry_diff_proto(merge.ours_diff) if merge.ours_diff is not None else None,
        theirs_diff=(
            geometry_diff_proto(merge.theirs_diff) if merge.theirs_diff is not None else None
        ),
        create_time=timestamp(merge.create_time),
        update_time=timestamp(merge.update_time),
    )
