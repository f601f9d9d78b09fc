"""JSON shapes of the geometry engine's values: as the service stores diffs and findings, and as
the sandbox returns results to the service (plain JSON, never pickles, across that boundary).

`diff_from_json(diff_to_json(d))` equals `d` except for `artifacts`: the service keeps those
as blobs, not as paths. Findings use the same shape as a revision's stored findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.design.geometry.types import (
    Conflict,
    DiffInput,
    DiffResult,
    FaceChange,
    FaceSignature,
    Finding,
    IngestResult,
    Location,
    MergeResult,
    ParameterDelta,
    ParameterValue,
    Properties,
    Region,
    Severity,
    SolidProperties,
)

Vec = tuple[float, float, float]


def _vec(value: Sequence[Any]) -> Vec:
    x, y, z = (float(v) for v in value)
    return (x, y, z)


def finding_json(finding: Finding) -> dict[str, Any]:
    location = None
    if finding.location is not None:
        location = {"point": list(finding.location.point), "face_id": finding.location.face_id}
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "message": finding.message,
        "measured": finding.measured,
        "limit": finding.limit,
        "unit": finding.unit,
        "location": location,
    }


def finding_from_json(value: Mapping[str, Any]) -> Finding:
    location = value.get("location")
    return Finding(
        rule_id=str(value["rule_id"]),
        severity=Severity(value["severity"]),
        message=str(value.get("message", "")),
        measured=None if value.get("measured") is None else float(value["measured"]),
        limit=None if value.get("limit") is None else float(value["limit"]),
        unit=str(value.get("unit") or ""),
        location=(
            Location(_vec(location["point"]), location.get("face_id"))
            if location is not None
            else None
        ),
    )


def _lists(value: Any) -> Any:
    # JSON has lists only: tuples (vectors, per-solid entries) become lists all the way down.
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def properties_json(properties: Properties) -> dict[str, Any]:
    data: dict[str, Any] = _lists(dataclasses.asdict(properties))
    return data


def _solid_from_json(value: Mapping[str, Any]) -> SolidProperties:
    known = {f.name for f in dataclasses.fields(SolidProperties)}
    fields = {k: v for k, v in value.items() if k in known}
    for key in ("bbox_min", "bbox_max", "center_of_mass"):
        fields[key] = _vec(fields[key])
    return SolidProperties(**fields)


def properties_from_json(value: Mapping[str, Any]) -> Properties:
    """Stored properties; those stored before a field existed get its default."""
    known = {f.name for f in dataclasses.fields(Properties)}
    fields = {k: v for k, v in value.items() if k in known}
    for key in ("bbox_min", "bbox_max", "center_of_mass"):
        fields[key] = _vec(fields[key])
    fields["solid_properties"] = tuple(
        _solid_from_json(s) for s in fields.get("solid_properties") or ()
    )
    return Properties(**fields)


def _region_json(region: Region) -> dict[str, Any]:
    return {
        "volume_mm3": region.volume_mm3,
        "bbox_min": list(region.bbox_min),
        "bbox_max": list(region.bbox_max),
        "centroid": list(region.centroid),
    }


def _region(value: Mapping[str, Any]) -> Region:
    return Region(
        float(value["volume_mm3"]),
        _vec(value["bbox_min"]),
        _vec(value["bbox_max"]),
        _vec(value["centroid"]),
    )


def _signature_json(signature: FaceSignature | None) -> dict[str, Any] | None:
    if signature is None:
        return None
    return {
        "surface": signature.surface,
        "area_mm2": signature.area_mm2,
        "direction": list(signature.direction),
        "centroid": list(signature.centroid),
        "radius_mm": signature.radius_mm,
    }


def _signature(value: Mapping[str, Any] | None) -> FaceSignature | None:
    if value is None:
        return None
    return FaceSignature(
        surface=str(value["surface"]),
        area_mm2=float(value["area_mm2"]),
        direction=_vec(value["direction"]),
        centroid=_vec(value["centroid"]),
        radius_mm=None if value.get("radius_mm") is None else float(value["radius_mm"]),
    )


def _parameter_json(value: ParameterValue | None) -> dict[str, Any] | None:
    # Tagged: JSON alone cannot tell the float 2.0 from the int 2.
    if value is None:
        return None
    kind = "bool" if isinstance(value, bool) else type(value).__name__
    return {"type": kind, "value": value}


def _parameter(value: Mapping[str, Any] | None) -> ParameterValue | None:
    if value is None:
        return None
    kinds: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
    converted: ParameterValue = kinds[str(value["type"])](value["value"])
    return converted


def diff_to_json(diff: DiffResult) -> dict[str, Any]:
    """The diff without its artifact paths."""
    return {
        "exact": diff.exact,
        "added": [_region_json(r) for r in diff.added],
        "removed": [_region_json(r) for r in diff.removed],
        "added_volume_mm3": diff.added_volume_mm3,
        "removed_volume_mm3": diff.removed_volume_mm3,
        "faces": [
            {
                "change": f.change,
                "face_a": f.face_a,
                "face_b": f.face_b,
                "before": _signature_json(f.before),
                "after": _signature_json(f.after),
            }
            for f in diff.faces
        ],
        "unchanged_faces": diff.unchanged_faces,
        # JSON object keys are strings: pairs keep the integers as they are.
        "face_map": sorted([int(a), int(b)] for a, b in diff.face_map.items()),
        "max_deviation_mm": diff.max_deviation_mm,
        "rms_deviation_mm": diff.rms_deviation_mm,
        "volume_delta_mm3": diff.volume_delta_mm3,
        "area_delta_mm2": diff.area_delta_mm2,
        "mass_delta_g": diff.mass_delta_g,
        "bbox_min_delta": list(diff.bbox_min_delta),
        "bbox_max_delta": list(diff.bbox_max_delta),
        "parameters": [
            {
                "name": p.name,
                "before": _parameter_json(p.before),
                "after": _parameter_json(p.after),
            }
            for p in diff.parameters
        ],
        "findings_introduced": [finding_json(f) for f in diff.findings_introduced],
        "findings_resolved": [finding_json(f) for f in diff.findings_resolved],
    }


def diff_from_json(value: Mapping[str, Any]) -> DiffResult:
    """A stored diff; `artifacts` is empty (they are blobs of the diff resource)."""
    return DiffResult(
        exact=bool(value["exact"]),
        added=tuple(_region(r) for r in value["added"]),
        removed=tuple(_region(r) for r in value["removed"]),
        added_volume_mm3=float(value["added_volume_mm3"]),
        removed_volume_mm3=float(value["removed_volume_mm3"]),
        faces=tuple(
            FaceChange(
                change=str(f["change"]),
                face_a=f["face_a"],
                face_b=f["face_b"],
                before=_signature(f["before"]),
                after=_signature(f["after"]),
            )
            for f in value["faces"]
        ),
        unchanged_faces=int(value["unchanged_faces"]),
        face_map={int(a): int(b) for a, b in value["face_map"]},
        max_deviation_mm=float(value["max_deviation_mm"]),
        rms_deviation_mm=float(value["rms_deviation_mm"]),
        volume_delta_mm3=float(value["volume_delta_mm3"]),
        area_delta_mm2=float(value["area_delta_mm2"]),
        mass_delta_g=None if value["mass_delta_g"] is None else float(value["mass_delta_g"]),
        bbox_min_delta=_vec(value["bbox_min_delta"]),
        bbox_max_delta=_vec(value["bbox_max_delta"]),
        parameters=tuple(
            ParameterDelta(str(p["name"]), _parameter(p["before"]), _parameter(p["after"]))
            for p in value["parameters"]
        ),
        findings_introduced=tuple(finding_from_json(f) for f in value["findings_introduced"]),
        findings_resolved=tuple(finding_from_json(f) for f in value["findings_resolved"]),
        artifacts={},
    )


def conflict_to_json(conflict: Conflict) -> dict[str, Any]:
    return {
        "overlap_volume_mm3": conflict.overlap_volume_mm3,
        "bbox_min": list(conflict.bbox_min),
        "bbox_max": list(conflict.bbox_max),
        "faces_ours": list(conflict.faces_ours),
        "faces_theirs": list(conflict.faces_theirs),
        "parameters": list(conflict.parameters),
        "reason": conflict.reason,
    }


def conflict_from_json(value: Mapping[str, Any]) -> Conflict:
    return Conflict(
        overlap_volume_mm3=float(value["overlap_volume_mm3"]),
        bbox_min=_vec(value["bbox_min"]),
        bbox_max=_vec(value["bbox_max"]),
        faces_ours=tuple(int(f) for f in value["faces_ours"]),
        faces_theirs=tuple(int(f) for f in value["faces_theirs"]),
        parameters=tuple(str(p) for p in value["parameters"]),
        reason=str(value["reason"]),
    )


def parameters_json(values: Mapping[str, ParameterValue]) -> dict[str, Any]:
    """Script parameter values, tagged with their types (see _parameter_json)."""
    return {name: _parameter_json(value) for name, value in values.items()}


def parameters_from_json(value: Mapping[str, Any]) -> dict[str, ParameterValue]:
    decoded = {str(name): _parameter(tagged) for name, tagged in value.items()}
    return {name: v for name, v in decoded.items() if v is not None}


def ingest_to_json(result: IngestResult) -> dict[str, Any]:
    """An ingest result with its artifacts by name (the files travel separately)."""
    return {
        "properties": properties_json(result.properties),
        "findings": [finding_json(f) for f in result.findings],
        "artifacts": sorted(result.artifacts),
        "parameters": parameters_json(result.parameters),
    }


def ingest_from_json(value: Mapping[str, Any], files: Mapping[str, Path]) -> IngestResult:
    """The result, its artifact names resolved to `files` (a name without a file is an error)."""
    return IngestResult(
        properties=properties_from_json(value["properties"]),
        findings=[finding_from_json(f) for f in value["findings"]],
        artifacts={str(name): files[str(name)] for name in value["artifacts"]},
        parameters=parameters_from_json(value["parameters"]),
    )


def diff_input_to_json(value: DiffInput) -> dict[str, Any]:
    """A diff input without its file paths (the sandbox sees the files at fixed places)."""
    return {
        "has_step": value.step is not None,
        "findings": [finding_json(f) for f in value.findings],
        "properties": properties_json(value.properties),
        "parameters": parameters_json(value.parameters),
        "script": value.script,
    }


def diff_input_from_json(value: Mapping[str, Any], mesh: Path, step: Path) -> DiffInput:
    return DiffInput(
        mesh=mesh,
        step=step if value["has_step"] else None,
        findings=tuple(finding_from_json(f) for f in value["findings"]),
        properties=properties_from_json(value["properties"]),
        parameters=parameters_from_json(value["parameters"]),
        script=None if value["script"] is None else str(value["script"]),
    )


def merge_to_json(result: MergeResult) -> dict[str, Any]:
    """A merge result without paths; its files are named as in `merge_files`."""
    return {
        "ours": diff_to_json(result.ours),
        "theirs": diff_to_json(result.theirs),
        "conflict": None if result.conflict is None else conflict_to_json(result.conflict),
        "merged": None if result.merged is None else result.merged.name,
        "merged_format": result.merged_format,
        "merged_parameters": parameters_json(result.merged_parameters),
    }


def merge_from_json(value: Mapping[str, Any], files: Mapping[str, Path]) -> MergeResult:
    """The merge, its pictures and merged model resolved to `files` ("ours/diff.png", ...)."""

    def side(name: str) -> DiffResult:
        diff = diff_from_json(value[name])
        prefix = f"{name}/"
        pictures = {k.removeprefix(prefix): p for k, p in files.items() if k.startswith(prefix)}
        return dataclasses.replace(diff, artifacts=pictures)

    merged = value["merged"]
    return MergeResult(
        ours=side("ours"),
        theirs=side("theirs"),
        conflict=None if value["conflict"] is None else conflict_from_json(value["conflict"]),
        merged=None if merged is None else files[str(merged)],
        merged_format=None if value["merged_format"] is None else str(value["merged_format"]),
        merged_parameters=parameters_from_json(value["merged_parameters"]),
    )
