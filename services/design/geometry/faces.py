"""B-rep faces across revisions: a geometric signature per face and the matching of two face lists.

Face indices are positions in `shape.Faces()` (OpenCascade's TopExp map order), the same index
ingest stores as `Location.face_id`, so findings and comments can follow a face by its match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.design.geometry.types import FaceChange, FaceSignature

Vector = tuple[float, float, float]
# Directions whose angle is below this (radians) are the same direction.
_ANGLE = 1e-4


def _vector(values: Sequence[float] | npt.NDArray[np.float64]) -> Vector:
    return (float(values[0]), float(values[1]), float(values[2]))


def _canonical_axis(direction: Sequence[float]) -> Vector:
    """An axis has no sign: make its largest component positive so equal axes compare equal."""
    d = np.asarray(direction, dtype=np.float64)
    if d[int(np.argmax(np.abs(d)))] < 0:
        d = -d
    return _vector(d)


def signature(face: Any) -> FaceSignature:
    """The face's surface type, area, centroid, plane normal (outward) or axis, and radius."""
    from OCP.BRepAdaptor import BRepAdaptor_Surface
    from OCP.BRepGProp import BRepGProp
    from OCP.GeomAbs import (
        GeomAbs_BezierSurface,
        GeomAbs_BSplineSurface,
        GeomAbs_Cone,
        GeomAbs_Cylinder,
        GeomAbs_Plane,
        GeomAbs_Sphere,
        GeomAbs_Torus,
    )
    from OCP.GProp import GProp_GProps
    from OCP.TopAbs import TopAbs_REVERSED

    props = GProp_GProps()
    BRepGProp.SurfaceProperties_s(face.wrapped, props)
    centroid = _vector(props.CentreOfMass().Coord())
    surface = BRepAdaptor_Surface(face.wrapped)
    kind = surface.GetType()
    direction: Vector = (0.0, 0.0, 0.0)
    radius: float | None = None
    if kind == GeomAbs_Plane:
        name = "plane"
        normal = np.array(surface.Plane().Axis().Direction().Coord())
        if face.wrapped.Orientation() == TopAbs_REVERSED:
            normal = -normal
        direction = _vector(normal)
    elif kind == GeomAbs_Cylinder:
        name = "cylinder"
        cylinder = surface.Cylinder()
        direction = _canonical_axis(cylinder.Axis().Direction().Coord())
        radius = float(cylinder.Radius())
    elif kind == GeomAbs_Cone:
        name = "cone"
        cone = surface.Cone()
        direction = _canonical_axis(cone.Axis().Direction().Coord())
        radius = float(cone.RefRadius())
    elif kind == GeomAbs_Sphere:
        name = "sphere"
        radius = float(surface.Sphere().Radius())
    elif kind == GeomAbs_Torus:
        name = "torus"
        torus = surface.Torus()
        direction = _canonical_axis(torus.Axis().Direction().Coord())
        radius = float(torus.MajorRadius())
    elif kind in (GeomAbs_BSplineSurface, GeomAbs_BezierSurface):
        name = "bspline"
    else:
        name = "other"
    return FaceSignature(name, float(props.Mass()), direction, centroid, radius)


def signatures(shape: Any) -> list[FaceSignature]:
    return [signature(face) for face in shape.Faces()]


@dataclass(frozen=True)
class FaceMatch:
    changes: tuple[FaceChange, ...]
    unchanged: dict[int, int]  # A index -> B index


def _angle(a: Vector, b: Vector) -> float:
    dot = float(np.clip(np.dot(a, b), -1.0, 1.0))
    return math.acos(dot)


def _same(a: FaceSignature, b: FaceSignature, tolerance: float) -> bool:
    """Equal within the tolerance: same surface, direction, centroid, area and radius."""
    if a.surface != b.surface or math.dist(a.centroid, b.centroid) > tolerance:
        return False
    if _angle(a.direction, b.direction) > _ANGLE and any(a.direction):
        return False
    if (a.radius_mm is None) != (b.radius_mm is None):
        return False
    if a.radius_mm is not None and b.radius_mm is not None:
        if abs(a.radius_mm - b.radius_mm) > tolerance:
            return False
    # The area changes by about perimeter x displacement: allow the tolerance on a length scale.
    return abs(a.area_mm2 - b.area_mm2) <= tolerance * 4 * math.sqrt(max(a.area_mm2, 1e-12))


def _related(a: FaceSignature, b: FaceSignature, tolerance: float) -> bool:
    """The same surface reshaped: same type on the same plane / axis line / centre, with
    another area or radius (a face grown or cut back, a hole resized or deepened)."""
    if a.surface != b.surface:
        return False
    ca, cb = np.asarray(a.centroid), np.asarray(b.centroid)
    if a.surface == "plane":
        # Same outward normal and the same plane.
        return (
            _angle(a.direction, b.direction) <= _ANGLE
            and abs(float(np.dot(cb - ca, a.direction))) <= tolerance
        )
    if a.surface in ("cylinder", "cone", "torus"):
        # Same axis line: the centroid of a full revolution face lies on its axis.
        if _angle(a.direction, b.direction) > _ANGLE:
            return False
        return float(np.linalg.norm(np.cross(cb - ca, a.direction))) <= tolerance
    if a.surface == "sphere":
        return math.dist(a.centroid, b.centroid) <= tolerance
    return False


def match_faces(a: list[FaceSignature], b: list[FaceSignature], tolerance: float) -> FaceMatch:
    """Pairs A's faces with B's: unchanged (signatures equal within the tolerance), modified
    (`_related`, nearest centroid first), the rest removed (A only) or added (B only)."""
    from scipy.spatial import cKDTree

    unchanged: dict[int, int] = {}
    taken: set[int] = set()
    if a and b:
        tree = cKDTree(np.array([s.centroid for s in b]))
        for i, sig in enumerate(a):
            for j in sorted(tree.query_ball_point(sig.centroid, tolerance)):
                if j not in taken and _same(sig, b[j], tolerance):
                    unchanged[i] = j
                    taken.add(j)
                    break
    rest_a = [i for i in range(len(a)) if i not in unchanged]
    rest_b = [j for j in range(len(b)) if j not in taken]
    candidates = sorted(
        (math.dist(a[i].centroid, b[j].centroid), i, j)
        for i in rest_a
        for j in rest_b
        if _related(a[i], b[j], tolerance)
    )
    changes: list[FaceChange] = []
    used_a: set[int] = set()
    for _, i, j in candidates:
        if i in used_a or j in taken:
            continue
        used_a.add(i)
        taken.add(j)
        changes.append(FaceChange("modified", i, j, a[i], b[j]))
    changes += [FaceChange("removed", i, None, a[i], None) for i in rest_a if i not in used_a]
    changes += [FaceChange("added", None, j, None, b[j]) for j in rest_b if j not in taken]
    return FaceMatch(tuple(changes), unchanged)
