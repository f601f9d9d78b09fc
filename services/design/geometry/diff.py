"""Geometric diff of two revisions and three-way merge of concurrent edits.

`diff(a, b)`: the volumes added and removed (exact OpenCascade booleans when both sides are
B-reps, manifold3d booleans on the mesh artifacts otherwise), faces matched by signature, the
sampled surface deviation, property and parameter deltas, the DFM delta (findings introduced and
resolved) and the pictures. `merge(base, ours, theirs)`: both diffs from the base; overlapping
changed regions are a conflict, disjoint ones are applied together.

The package imports this module at start-up (see `__init__`), so it imports OpenCascade,
trimesh and manifold3d only inside the functions: the service process loads none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.design.geometry.types import (
    Conflict,
    DiffInput,
    DiffResult,
    FaceChange,
    Failure,
    Finding,
    IngestError,
    MergeResult,
    ParameterDelta,
    ParameterValue,
    Region,
)

if TYPE_CHECKING:
    from services.design.geometry.mesh_diff import Mesh

Vector = tuple[float, float, float]
# Findings at points closer than this share of the part's diagonal are at the same place (a
# sampled measurement such as the thinnest wall moves a little between revisions).
_FINDING_RADIUS = 0.01


@dataclass
class _Geometry:
    """The geometric part of a diff, with the shapes a merge reuses: B (a cadquery Shape or a
    Mesh) and one shape per region (B-rep solids or manifold3d Manifolds)."""

    exact: bool
    added: tuple[Region, ...]
    removed: tuple[Region, ...]
    faces: tuple[FaceChange, ...]
    face_map: dict[int, int]
    head: Any
    added_shapes: list[Any]
    removed_shapes: list[Any]
    face_boxes_b: list[tuple[Vector, Vector]] = field(default_factory=list)


@dataclass
class _Computed:
    result: DiffResult
    geometry: _Geometry


def _check_tolerance(tolerance_mm: float) -> None:
    if not (isinstance(tolerance_mm, (int, float)) and math.isfinite(tolerance_mm)) or (
        tolerance_mm <= 0
    ):
        raise IngestError(Failure.INVALID, f"the tolerance must be > 0 mm, not {tolerance_mm!r}")


def diff(a: DiffInput, b: DiffInput, work_dir: Path, tolerance_mm: float = 0.01) -> DiffResult:
    """What changed from A to B; writes diff.png and diff.glb into work_dir.

    Raises IngestError(PRECONDITION) for geometry that cannot be diffed (no solid, open mesh)."""
    _check_tolerance(tolerance_mm)
    exact = a.step is not None and b.step is not None
    return _diff(a, b, work_dir, tolerance_mm, exact).result


def _diff(a: DiffInput, b: DiffInput, work_dir: Path, tolerance: float, exact: bool) -> _Computed:
    from services.design.geometry import mesh_diff

    mesh_a, mesh_b = mesh_diff.weld(mesh_diff.load_mesh(a.mesh), mesh_diff.load_mesh(b.mesh))
    if exact:
        computed, added_meshes, removed_meshes = _exact(a, b, tolerance)
    else:
        computed, added_meshes, removed_meshes = _approximate(mesh_a, mesh_b, tolerance)
    max_dev, rms_dev = mesh_diff.deviation(mesh_a, mesh_b, [*added_meshes, *removed_meshes])
    artifacts = _write_pictures(work_dir, mesh_b, added_meshes, removed_meshes)
    correspondence = {
        c.face_a: c.face_b
        for c in computed.faces
        if c.change == "modified" and c.face_a is not None and c.face_b is not None
    }
    introduced, resolved = findings_delta(
        a.findings,
        b.findings,
        {**correspondence, **computed.face_map},
        _diagonal(b) * _FINDING_RADIUS,
    )
    pa, pb = a.properties, b.properties
    result = DiffResult(
        exact=exact,
        added=computed.added,
        removed=computed.removed,
        added_volume_mm3=sum(r.volume_mm3 for r in computed.added),
        removed_volume_mm3=sum(r.volume_mm3 for r in computed.removed),
        faces=computed.faces,
        unchanged_faces=len(computed.face_map),
        face_map=computed.face_map,
        max_deviation_mm=max_dev,
        rms_deviation_mm=rms_dev,
        volume_delta_mm3=pb.volume_mm3 - pa.volume_mm3,
        area_delta_mm2=pb.area_mm2 - pa.area_mm2,
        mass_delta_g=None if pa.mass_g is None or pb.mass_g is None else pb.mass_g - pa.mass_g,
        bbox_min_delta=_sub(pb.bbox_min, pa.bbox_min),
        bbox_max_delta=_sub(pb.bbox_max, pa.bbox_max),
        parameters=parameter_deltas(a.parameters, b.parameters),
        findings_introduced=introduced,
        findings_resolved=resolved,
        artifacts=artifacts,
    )
    return _Computed(result, computed)


def _exact(
    a: DiffInput, b: DiffInput, tolerance: float
) -> tuple[_Geometry, list[Mesh], list[Mesh]]:
    from services.design.geometry import brep_diff
    from services.design.geometry.faces import match_faces, signatures
    from services.design.geometry.loaders import exact_bounds, read_step

    assert a.step is not None and b.step is not None
    shape_a = brep_diff.solid_of(read_step(a.step))
    shape_b = brep_diff.solid_of(read_step(b.step))
    matched = match_faces(signatures(shape_a), signatures(shape_b), tolerance)
    removed_shape, added_shape = brep_diff.local_differences(
        shape_a, shape_b, matched.changes, tolerance
    )
    added = brep_diff.regions(added_shape, tolerance)
    removed = brep_diff.regions(removed_shape, tolerance)
    geometry = _Geometry(
        exact=True,
        added=tuple(r for r, _ in added),
        removed=tuple(r for r, _ in removed),
        faces=matched.changes,
        face_map=matched.unchanged,
        head=shape_b,
        added_shapes=[s for _, s in added],
        removed_shapes=[s for _, s in removed],
        face_boxes_b=[exact_bounds(f) for f in shape_b.Faces()],
    )
    return (
        geometry,
        [brep_diff.mesh_of(s) for _, s in added],
        [brep_diff.mesh_of(s) for _, s in removed],
    )


def _approximate(
    mesh_a: Mesh, mesh_b: Mesh, tolerance: float
) -> tuple[_Geometry, list[Mesh], list[Mesh]]:
    from services.design.geometry import mesh_diff

    removed_solid, added_solid = mesh_diff.mesh_difference(mesh_a, mesh_b, tolerance)
    added = mesh_diff.regions(added_solid, tolerance)
    removed = mesh_diff.regions(removed_solid, tolerance)
    geometry = _Geometry(
        exact=False,
        added=tuple(r for r, _, _ in added),
        removed=tuple(r for r, _, _ in removed),
        faces=(),
        face_map={},
        head=mesh_b,
        added_shapes=[piece for _, _, piece in added],
        removed_shapes=[piece for _, _, piece in removed],
    )
    return geometry, [m for _, m, _ in added], [m for _, m, _ in removed]


def _write_pictures(
    work_dir: Path, head: Mesh, added: Sequence[Mesh], removed: Sequence[Mesh]
) -> dict[str, Path]:
    from services.design.geometry.visual_diff import write_glb, write_png

    png, glb = work_dir / "diff.png", work_dir / "diff.glb"
    write_png(png, head, added, removed)
    write_glb(glb, head, added, removed)
    return {"diff.png": png, "diff.glb": glb}


def _sub(b: Sequence[float], a: Sequence[float]) -> Vector:
    return (float(b[0] - a[0]), float(b[1] - a[1]), float(b[2] - a[2]))


def _diagonal(revision: DiffInput) -> float:
    return math.dist(revision.properties.bbox_min, revision.properties.bbox_max)


def parameter_deltas(
    a: Mapping[str, ParameterValue], b: Mapping[str, ParameterValue]
) -> tuple[ParameterDelta, ...]:
    """The script parameters whose value differs (or that only one side declares), by name."""
    return tuple(
        ParameterDelta(name, a.get(name), b.get(name))
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    )


def findings_delta(
    a: Sequence[Finding],
    b: Sequence[Finding],
    faces: Mapping[int, int],
    radius: float,
) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """(introduced, resolved): B's findings with no counterpart in A, and A's with none in B.

    Counterparts share the rule and the place: the same face (A's face maps to B's through the
    face match, unchanged or modified) when both have face ids, else points within `radius`;
    findings about the whole part (no location) are matched by rule alone."""
    unmatched = list(range(len(a)))
    introduced = []
    for finding in b:
        for k, i in enumerate(unmatched):
            if a[i].rule_id == finding.rule_id and _same_place(a[i], finding, faces, radius):
                del unmatched[k]
                break
        else:
            introduced.append(finding)
    return tuple(introduced), tuple(a[i] for i in unmatched)


def _same_place(a: Finding, b: Finding, faces: Mapping[int, int], radius: float) -> bool:
    if a.location is None or b.location is None:
        return a.location is None and b.location is None
    if a.location.face_id is not None and b.location.face_id is not None:
        return faces.get(a.location.face_id) == b.location.face_id
    return math.dist(a.location.point, b.location.point) <= radius


# --- three-way merge ---


def merge(
    base: DiffInput,
    ours: DiffInput,
    theirs: DiffInput,
    work_dir: Path,
    tolerance_mm: float = 0.05,
) -> MergeResult:
    """Merges two revisions made from the same base: `ours` (the head) and `theirs` (pushed).

    Scripts merge by parameters and text; other revisions geometrically, when the regions
    each side changed are further apart than the tolerance. Writes merged.step / merged.stl /
    merged.py and each side's diff pictures (under ours/ and theirs/) into work_dir."""
    _check_tolerance(tolerance_mm)
    exact = all(r.step is not None for r in (base, ours, theirs))
    for name in ("ours", "theirs"):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
    ours_diff = _diff(base, ours, work_dir / "ours", tolerance_mm, exact)
    theirs_diff = _diff(base, theirs, work_dir / "theirs", tolerance_mm, exact)
    if all(r.script is not None for r in (base, ours, theirs)):
        return _merge_scripts(base, ours, theirs, ours_diff.result, theirs_diff.result, work_dir)
    conflict = _conflict(ours_diff, theirs_diff, tolerance_mm)
    if conflict is not None:
        return MergeResult(ours_diff.result, theirs_diff.result, conflict, None, None)
    b, c = ours_diff.geometry, theirs_diff.geometry
    if exact:
        merged, fmt = _merge_breps(b, c, work_dir / "merged.step"), "step"
    else:
        merged, fmt = _merge_meshes(b, c, work_dir / "merged.stl"), "stl"
    return MergeResult(ours_diff.result, theirs_diff.result, None, merged, fmt)


def _merge_scripts(
    base: DiffInput,
    ours: DiffInput,
    theirs: DiffInput,
    ours_result: DiffResult,
    theirs_result: DiffResult,
    work_dir: Path,
) -> MergeResult:
    from services.design.geometry.scripts import script_parameters

    assert base.script is not None and ours.script is not None and theirs.script is not None
    clashes = []
    merged: dict[str, ParameterValue] = {}
    for name in sorted(set(base.parameters) | set(ours.parameters) | set(theirs.parameters)):
        before, mine, other = (r.parameters.get(name) for r in (base, ours, theirs))
        if mine != before and other != before and mine != other:
            clashes.append(name)
        value = mine if mine != before else other
        if value is not None:
            merged[name] = value
    reasons = []
    if clashes:
        reasons.append(f"both sides changed {', '.join(clashes)} to different values")
    text_ours, text_theirs = ours.script != base.script, theirs.script != base.script
    if text_ours and text_theirs and ours.script != theirs.script:
        reasons.append("both sides changed the script's text")
    if reasons:
        boxes = [*ours_result.added, *ours_result.removed, *theirs_result.added]
        boxes += theirs_result.removed
        lo, hi = _union_box(boxes)
        conflict = Conflict(0.0, lo, hi, (), (), tuple(clashes), "; ".join(reasons))
        return MergeResult(ours_result, theirs_result, conflict, None, None)
    text = ours.script if text_ours else theirs.script
    declared = script_parameters(text)
    path = work_dir / "merged.py"
    path.write_text(text)
    parameters = {k: v for k, v in merged.items() if k in declared}
    return MergeResult(ours_result, theirs_result, None, path, "cadquery", parameters)


def _union_box(regions: Sequence[Region]) -> tuple[Vector, Vector]:
    if not regions:
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    lo = tuple(min(r.bbox_min[i] for r in regions) for i in range(3))
    hi = tuple(max(r.bbox_max[i] for r in regions) for i in range(3))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def _boxes_meet(a: Region, b: Region, gap: float) -> bool:
    return all(
        a.bbox_min[i] - gap <= b.bbox_max[i] and b.bbox_min[i] - gap <= a.bbox_max[i]
        for i in range(3)
    )


def _conflict(ours: _Computed, theirs: _Computed, tolerance: float) -> Conflict | None:
    """Pairs of changed regions (one per side) closer than the tolerance; their common volume
    and box. Touching regions (a hole filled by one side, widened by the other) conflict with
    zero common volume."""
    b, c = ours.geometry, theirs.geometry
    side_b = list(zip([*b.added, *b.removed], [*b.added_shapes, *b.removed_shapes], strict=True))
    side_c = list(zip([*c.added, *c.removed], [*c.added_shapes, *c.removed_shapes], strict=True))
    volume = 0.0
    boxes: list[Region] = []
    for region_b, shape_b in side_b:
        for region_c, shape_c in side_c:
            if not _boxes_meet(region_b, region_c, tolerance):
                continue
            if _gap(shape_b, shape_c, tolerance, b.exact) > tolerance:
                continue
            shared, box = _overlap(shape_b, shape_c, b.exact)
            volume += shared
            boxes.append(box if box is not None else _box_overlap(region_b, region_c, tolerance))
    if not boxes:
        return None
    lo, hi = _union_box(boxes)
    centre = tuple((lo[i] + hi[i]) / 2 for i in range(3))
    return Conflict(
        overlap_volume_mm3=volume,
        bbox_min=lo,
        bbox_max=hi,
        faces_ours=_faces_in(b, lo, hi, tolerance),
        faces_theirs=_faces_in(c, lo, hi, tolerance),
        parameters=(),
        reason=(
            "both edits change the region around "
            f"({centre[0]:.1f}, {centre[1]:.1f}, {centre[2]:.1f}) mm"
        ),
    )


def _gap(a: Any, b: Any, tolerance: float, exact: bool) -> float:
    if exact:
        from services.design.geometry.brep_diff import distance

        return distance(a, b)
    return float(a.min_gap(b, 2 * tolerance))


def _overlap(a: Any, b: Any, exact: bool) -> tuple[float, Region | None]:
    if exact:
        from services.design.geometry import brep_diff

        found = brep_diff.regions(brep_diff.common(a, b), 1e-9)
        if not found:
            return 0.0, None
        volume = sum(r.volume_mm3 for r, _ in found)
        lo, hi = _union_box([r for r, _ in found])
        return volume, Region(volume, lo, hi, lo)
    shared = a ^ b
    volume = float(shared.volume())
    if volume <= 0:
        return 0.0, None
    x0, y0, z0, x1, y1, z1 = shared.bounding_box()
    return volume, Region(volume, (x0, y0, z0), (x1, y1, z1), (x0, y0, z0))


def _box_overlap(a: Region, b: Region, gap: float) -> Region:
    """Where two boxes grown by `gap` overlap: the place of a contact without common volume."""
    lo = tuple(max(a.bbox_min[i], b.bbox_min[i]) - gap for i in range(3))
    hi = tuple(min(a.bbox_max[i], b.bbox_max[i]) + gap for i in range(3))
    return Region(0.0, (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]), (lo[0], lo[1], lo[2]))


def _faces_in(side: _Geometry, lo: Vector, hi: Vector, gap: float) -> tuple[int, ...]:
    """The side's changed B-rep faces (not matched unchanged) whose box meets the conflict box."""
    unchanged = set(side.face_map.values())
    zone = Region(0.0, lo, hi, lo)
    return tuple(
        j
        for j, (flo, fhi) in enumerate(side.face_boxes_b)
        if j not in unchanged and _boxes_meet(zone, Region(0.0, flo, fhi, flo), gap)
    )


# The merges start from B: with the changed regions apart, (A - removed_B - removed_C) ∪
# added_B ∪ added_C equals (B - removed_C) ∪ added_C, since B = (A - removed_B) ∪ added_B and
# removed_C does not meet added_B. Half the booleans, each on one side's regions only.


def _merge_breps(ours: _Geometry, theirs: _Geometry, path: Path) -> Path:
    import cadquery as cq

    from services.design.geometry import brep_diff

    merged = ours.head
    if theirs.removed_shapes:
        merged = brep_diff.cut(merged, cq.Compound.makeCompound(theirs.removed_shapes))
    merged = brep_diff.fuse([merged, *theirs.added_shapes])
    if not brep_diff.is_valid_solid(merged):
        raise IngestError(Failure.PRECONDITION, "the merged model is not a valid solid")
    cq.exporters.export(merged, str(path), exportType="STEP")
    return path


def _merge_meshes(ours: _Geometry, theirs: _Geometry, path: Path) -> Path:
    import trimesh

    from services.design.geometry import mesh_diff

    merged = mesh_diff.to_manifold(ours.head)
    for tool in theirs.removed_shapes:
        merged = merged - tool
    for tool in theirs.added_shapes:
        merged = merged + tool
    mesh = mesh_diff.from_manifold(merged)
    if len(mesh.faces) == 0:
        raise IngestError(Failure.PRECONDITION, "the merged model is empty")
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(str(path), file_type="stl")
    return path
