"""Exact B-rep booleans for diffs and merges (OpenCascade through CadQuery)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.design.geometry.loaders import exact_bounds, tessellate, volume_and_centre
from services.design.geometry.mesh_diff import Mesh
from services.design.geometry.types import FaceChange, Failure, IngestError, Region


def solid_of(shape: Any) -> Any:
    """The shape's solids as one shape; a STEP without a solid cannot be diffed exactly."""
    import cadquery as cq

    solids = shape.Solids()
    if not solids:
        raise IngestError(Failure.PRECONDITION, "the STEP file contains no solid to diff")
    return solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)


def _checked(result: Any, what: str) -> Any:
    if result is None or result.wrapped.IsNull():
        raise IngestError(Failure.PRECONDITION, f"OpenCascade could not compute {what}")
    return result


def cut(a: Any, b: Any) -> Any:
    """A - B (OpenCascade's boolean, in parallel)."""
    return _checked(a.cut(b), "the difference of the revisions")


def fuse(shapes: Sequence[Any]) -> Any:
    first, *rest = shapes
    if not rest:
        return first
    return _checked(first.fuse(*rest).clean(), "the union")


def common(a: Any, b: Any) -> Any:
    return _checked(a.intersect(b), "the intersection")


def distance(a: Any, b: Any) -> float:
    from OCP.BRepExtrema import BRepExtrema_DistShapeShape

    measure = BRepExtrema_DistShapeShape(a.wrapped, b.wrapped)
    if not measure.IsDone():
        raise IngestError(Failure.PRECONDITION, "OpenCascade could not measure a distance")
    return float(measure.Value())


def regions(shape: Any, tolerance_mm: float) -> list[tuple[Region, Any]]:
    """The result's solids as regions, largest first, without slivers thinner than the
    tolerance (volume under half the tolerance times the area): coincident faces of the two
    revisions can leave such slivers in a boolean."""
    out = []
    for solid in shape.Solids():
        volume, centre = volume_and_centre(solid)
        if volume <= 0.5 * tolerance_mm * float(solid.Area()):
            continue
        lo, hi = exact_bounds(solid)
        out.append((Region(volume, _vec(lo), _vec(hi), centre), solid))
    out.sort(key=lambda item: -item[0].volume_mm3)
    return out


def _vec(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def mesh_of(shape: Any) -> Mesh:
    mesh, _ = tessellate(shape)
    return Mesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64))


def is_valid_solid(shape: Any) -> bool:
    return bool(shape.Solids()) and bool(shape.isValid())


Box = tuple[tuple[float, float, float], tuple[float, float, float]]


def _edge_keys(shape: Any) -> list[tuple[tuple[float, float, float], float]]:
    """Each edge's centre of mass and length: enough to tell an edge kept from one changed."""
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps

    keys = []
    for edge in shape.Edges():
        props = GProp_GProps()
        BRepGProp.LinearProperties_s(edge.wrapped, props)
        keys.append((_vec(props.CentreOfMass().Coord()), float(props.Mass())))
    return keys


def _unmatched_edges(a: Any, b: Any, tolerance: float) -> tuple[list[int], list[int]]:
    from scipy.spatial import cKDTree

    ka, kb = _edge_keys(a), _edge_keys(b)
    if not ka or not kb:
        return list(range(len(ka))), list(range(len(kb)))
    tree = cKDTree(np.array([c for c, _ in kb]))
    taken: set[int] = set()
    lost = []
    for i, (centre, length) in enumerate(ka):
        match = next(
            (
                j
                for j in sorted(tree.query_ball_point(centre, tolerance))
                if j not in taken and abs(kb[j][1] - length) <= tolerance
            ),
            None,
        )
        if match is None:
            lost.append(i)
        else:
            taken.add(match)
    return lost, [j for j in range(len(kb)) if j not in taken]


def change_boxes(a: Any, b: Any, changes: Sequence[FaceChange], tolerance: float) -> list[Box]:
    """Disjoint boxes that hold every change from A to B, one per cluster of changes.

    The boundary of A - B and of B - A lies on faces that changed. Added, removed and curved
    modified faces count whole; a modified plane (a top face whose hole moved) differs only
    inside the loops of edges it does not share, and a plane region lies within the box of its
    boundary, so its unmatched edges count instead. Boxes grown by a margin and overlapping
    are merged, so each connected change stays inside one box."""
    from services.design.geometry.loaders import exact_bounds

    faces_a, faces_b = a.Faces(), b.Faces()
    boxes: list[Box] = []
    for change in changes:
        whole = change.change != "modified" or (
            change.before is not None and change.before.surface != "plane"
        )
        if not whole:
            continue
        if change.face_a is not None:
            boxes.append(exact_bounds(faces_a[change.face_a]))
        if change.face_b is not None:
            boxes.append(exact_bounds(faces_b[change.face_b]))
    lost, new = _unmatched_edges(a, b, tolerance)
    edges_a, edges_b = a.Edges(), b.Edges()
    boxes += [exact_bounds(edges_a[i]) for i in lost] + [exact_bounds(edges_b[j]) for j in new]
    lo_a, hi_a = exact_bounds(a)
    margin = max(10 * tolerance, 1e-3 * float(np.linalg.norm(np.subtract(hi_a, lo_a))))
    grown = [
        (tuple(float(v) - margin for v in lo), tuple(float(v) + margin for v in hi))
        for lo, hi in boxes
    ]
    return _merge_overlapping(grown)  # type: ignore[arg-type]


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for lo, hi in merged:
            for k, (olo, ohi) in enumerate(out):
                if all(lo[i] <= ohi[i] and olo[i] <= hi[i] for i in range(3)):
                    out[k] = (
                        (min(lo[0], olo[0]), min(lo[1], olo[1]), min(lo[2], olo[2])),
                        (max(hi[0], ohi[0]), max(hi[1], ohi[1]), max(hi[2], ohi[2])),
                    )
                    changed = True
                    break
            else:
                out.append((lo, hi))
        merged = out
    return merged


def local_differences(
    a: Any, b: Any, changes: Sequence[FaceChange], tolerance: float
) -> tuple[Any, Any]:
    """(A - B, B - A), computed inside the boxes of the changes (a boolean of two perforated
    plates costs seconds; one of the small pieces inside the boxes, a fraction). Checked by the
    volume balance, vol(A) - vol(B) = removed - added; the whole-shape booleans otherwise."""
    import cadquery as cq

    boxes = change_boxes(a, b, changes, tolerance)
    if not boxes:
        empty = cq.Compound.makeCompound([])
        return empty, empty
    tool = cq.Compound.makeCompound(
        [
            cq.Solid.makeBox(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2], cq.Vector(*lo))
            for lo, hi in boxes
        ]
    )
    piece_a, piece_b = common(a, tool), common(b, tool)
    removed, added = cut(piece_a, piece_b), cut(piece_b, piece_a)
    balance = _volume(a) - _volume(b) - (_volume(removed) - _volume(added))
    if abs(balance) > 1e-6 * max(_volume(a), 1.0):
        return cut(a, b), cut(b, a)
    return removed, added


def _volume(shape: Any) -> float:
    return volume_and_centre(shape)[0] if shape.Solids() else 0.0
