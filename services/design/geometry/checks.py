"""The design-rule checks: each turns a Model and a Rule (with its effective limit) into findings.

Meshes are checked through their triangles; B-rep input is checked on its tessellation for
surface measures (walls, overhangs, draft), with the B-rep face each triangle came from as the
location, and on the exact B-rep for holes and small edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trimesh

from services.design.geometry.loaders import Model
from services.design.geometry.types import Finding, Location, Rule, Severity

# Sample sizes: enough to find a thin wall covering a few percent of the surface, bounded so a
# 1M-triangle mesh is checked in seconds.
WALL_SAMPLES = 3000
WINDING_RAYS = 200
_MAX_FACE_FINDINGS = 10
# Above this many B-rep faces the full OpenCascade shape analysis takes too long for ingest.
MAX_FACES_FULL_CHECK = 1000
_SEED = 1234

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Context:
    """What the checks share: the model, the mass, and the ray caster (built once)."""

    model: Model
    mass_g: float | None

    @property
    def mesh(self) -> trimesh.Trimesh:
        return self.model.mesh


def _point(p: Sequence[float] | FloatArray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


def _finding(
    rule: Rule,
    message: str,
    measured: float | None = None,
    limit: float | None = None,
    point: Sequence[float] | FloatArray | None = None,
    face_id: int | None = None,
    severity: Severity | None = None,
) -> Finding:
    return Finding(
        rule_id=rule.id,
        severity=severity or rule.severity,
        message=message,
        measured=measured,
        limit=limit,
        unit=rule.unit,
        location=Location(_point(point), face_id) if point is not None else None,
    )


def edge_counts(mesh: trimesh.Trimesh) -> tuple[int, int, int]:
    """(boundary edges, non-manifold edges, edges used twice in the same direction)."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    n = int(len(mesh.vertices))
    directed = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected[:, 0] * n + undirected[:, 1], return_counts=True)
    _, dcounts = np.unique(directed[:, 0] * n + directed[:, 1], return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum()), int((dcounts > 1).sum())


def check_solid(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    shape = ctx.model.shape
    out = []
    if shape is not None:
        faces = len(shape.Faces())
        if faces > MAX_FACES_FULL_CHECK:
            # OpenCascade's analyzer grows worse than linearly (minutes at 5,000 faces); the
            # mesh of a large part is still checked closed and manifold.
            out.append(
                _finding(
                    rule,
                    f"OpenCascade's B-rep validity check skipped: {faces} faces, over "
                    f"{MAX_FACES_FULL_CHECK}; the tessellated surface was checked closed instead",
                    severity=Severity.INFO,
                )
            )
        elif not shape.isValid():
            return [_finding(rule, "the B-rep is not a valid solid (OpenCascade's check fails)")]
    if ctx.mesh.volume <= 0:
        return [_finding(rule, "the surface's normals point inwards: the solid is inside out")]
    return out


def check_manifold(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    _, non_manifold, flipped = edge_counts(ctx.mesh)
    out = []
    if non_manifold:
        out.append(_finding(rule, f"{non_manifold} edges join more than two faces", non_manifold))
    if flipped:
        out.append(_finding(rule, f"{flipped} edges join faces of opposite orientation", flipped))
    return out


def _ray_hits(
    mesh: trimesh.Trimesh, origins: FloatArray, directions: FloatArray, multiple: bool
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    locations, rays, tris = mesh.ray.intersects_location(
        origins, directions, multiple_hits=multiple
    )
    return np.asarray(locations), np.asarray(rays, dtype=np.int64), np.asarray(tris, dtype=np.int64)


def check_self_intersection(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    # Along a ray through a closed surface that does not cross itself, the winding number
    # (entries minus exits) only ever reads 0 or 1; 2 or -1 means overlapping material.
    mesh = ctx.mesh
    rng = np.random.default_rng(_SEED)
    radius = float(np.linalg.norm(mesh.extents)) + 1.0
    directions = rng.normal(size=(WINDING_RAYS, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    # Aim each ray at a random point of the box so most rays pass through material.
    targets = mesh.bounds[0] + rng.random((WINDING_RAYS, 3)) * mesh.extents
    origins = targets - directions * radius
    locations, rays, tris = _ray_hits(mesh, origins, directions, multiple=True)
    if len(rays) == 0:
        return []
    distance = np.einsum("ij,ij->i", locations - origins[rays], directions[rays])
    sign = -np.sign(np.einsum("ij,ij->i", mesh.face_normals[tris], directions[rays]))
    order = np.lexsort((distance, rays))
    rays, distance, sign, locations = rays[order], distance[order], sign[order], locations[order]
    bad: list[FloatArray] = []
    tolerance = 1e-7 * radius
    for ray in np.unique(rays):
        mask = rays == ray
        d, s = distance[mask], sign[mask]
        # A ray through an edge or vertex hits each adjacent triangle: count it once.
        keep = np.ones(len(d), dtype=bool)
        keep[1:] = (np.diff(d) > tolerance) | (s[1:] != s[:-1])
        winding = np.cumsum(s[keep])
        if winding.size and (winding.max() > 1 or winding.min() < 0):
            bad.append(locations[mask][keep][int(np.argmax(winding > 1))])
    # One odd ray can be a grazing hit; two are overlapping material.
    if len(bad) < 2:
        return []
    return [
        _finding(
            rule,
            f"the surface intersects itself ({len(bad)} of {WINDING_RAYS} sample rays pass "
            "through overlapping material)",
            measured=float(len(bad)),
            point=bad[0],
        )
    ]


def check_envelope(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    axis = "xyz".index(rule.axis or "x")
    extent = float(ctx.mesh.extents[axis])
    if limit is None or extent <= limit:
        return []
    return [
        _finding(
            rule,
            f"the part is {extent:.1f} mm along {rule.axis}, more than the {limit:g} mm available",
            extent,
            limit,
            ctx.mesh.bounds[1],
        )
    ]


def check_mass(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    if ctx.mass_g is None or limit is None or ctx.mass_g <= limit:
        return []
    return [
        _finding(
            rule,
            f"the part weighs {ctx.mass_g:.0f} g, more than {limit:g} g",
            ctx.mass_g,
            limit,
            ctx.mesh.center_mass,
        )
    ]


def measure_walls(
    mesh: trimesh.Trimesh, samples: int = WALL_SAMPLES
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Wall thickness at sampled surface points: (thickness, points, triangle of each point).

    From each point a ray goes inwards along the face normal; the distance to the first surface
    it meets is the wall's thickness there."""
    points, tris = trimesh.sample.sample_surface(mesh, samples, seed=_SEED)
    points = np.asarray(points)
    tris = np.asarray(tris, dtype=np.int64)
    normals = np.asarray(mesh.face_normals)[tris]
    epsilon = 1e-6 * float(np.linalg.norm(mesh.extents))
    origins = points - normals * epsilon
    locations, rays, _ = _ray_hits(mesh, origins, -normals, multiple=False)
    thickness = np.full(len(points), np.inf)
    thickness[rays] = np.linalg.norm(locations - origins[rays], axis=1) + epsilon
    return thickness, points, tris


def check_min_wall(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    if limit is None:
        return []
    thickness, points, tris = measure_walls(ctx.mesh)
    thin = thickness < limit
    if not thin.any():
        return []
    worst = int(np.argmin(thickness))
    face = _face_of(ctx, int(tris[worst]))
    return [
        _finding(
            rule,
            f"walls are {thickness[worst]:.2f} mm thick, thinner than {limit:g} mm "
            f"({int(thin.sum())} of {len(thickness)} surface samples)",
            float(thickness[worst]),
            limit,
            points[worst],
            face,
        )
    ]


def _face_of(ctx: Context, triangle: int) -> int | None:
    owner = ctx.model.triangle_face
    return int(owner[triangle]) if owner is not None else None


def _by_face(
    ctx: Context,
    rule: Rule,
    flagged: npt.NDArray[np.bool_],
    measure: FloatArray,
    worst_is_max: bool,
    describe: Callable[[float, float, int], str],
    limit: float,
) -> list[Finding]:
    """One finding per offending B-rep face (the worst first, at most a few), or one for a mesh."""
    idx = np.flatnonzero(flagged)
    if idx.size == 0:
        return []
    area = np.asarray(ctx.mesh.area_faces)
    centroids = np.asarray(ctx.mesh.triangles_center)
    owner = ctx.model.triangle_face
    groups = [idx] if owner is None else [idx[owner[idx] == f] for f in np.unique(owner[idx])]
    ranked = []
    for group in groups:
        pick = (
            group[np.argmax(measure[group])] if worst_is_max else group[np.argmin(measure[group])]
        )
        ranked.append((float(measure[pick]), int(pick), float(area[group].sum())))
    ranked.sort(key=lambda r: -r[0] if worst_is_max else r[0])
    return [
        _finding(
            rule,
            describe(value, group_area, len(groups)),
            value,
            limit,
            centroids[tri],
            _face_of(ctx, tri),
        )
        for value, tri, group_area in ranked[:_MAX_FACE_FINDINGS]
    ]


def check_overhang(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    if limit is None:
        return []
    mesh = ctx.mesh
    nz = np.clip(np.asarray(mesh.face_normals)[:, 2], -1.0, 1.0)
    # Degrees from vertical of a downward-facing face: a wall 0, a flat ceiling 90.
    angle = np.degrees(np.arcsin(np.clip(-nz, 0.0, 1.0)))
    z = np.asarray(mesh.triangles)[:, :, 2]
    on_plate = z.max(axis=1) <= mesh.bounds[0][2] + 1e-6 * float(np.linalg.norm(mesh.extents))
    flagged = (angle > limit + 1e-6) & ~on_plate & (np.asarray(mesh.area_faces) > 0)
    return _by_face(
        ctx,
        rule,
        flagged,
        angle,
        True,
        lambda v, a, n: (
            f"downward face at {v:.0f}° from vertical needs support ({a:.1f} mm² above the "
            f"{limit:g}° limit; build direction +Z)"
        ),
        limit,
    )


def check_draft(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    if limit is None:
        return []
    nz = np.abs(np.clip(np.asarray(ctx.mesh.face_normals)[:, 2], -1.0, 1.0))
    draft = np.degrees(np.arcsin(nz))
    flagged = (draft < limit - 1e-6) & (np.asarray(ctx.mesh.area_faces) > 0)
    return _by_face(
        ctx,
        rule,
        flagged,
        draft,
        False,
        lambda v, a, n: (
            f"side face with {v:.1f}° draft against the pull direction +Z, under {limit:g}° "
            f"({a:.1f} mm²)"
        ),
        limit,
    )


@dataclass(frozen=True)
class Hole:
    diameter: float
    point: tuple[float, float, float]
    face_id: int


def find_holes(shape: object) -> list[Hole]:
    """Distinct cylindrical holes of a B-rep: concave cylindrical faces grouped by axis and
    radius (a hole split into several faces counts once)."""
    from OCP.BRepAdaptor import BRepAdaptor_Surface
    from OCP.BRepGProp import BRepGProp_Face
    from OCP.BRepTools import BRepTools
    from OCP.GeomAbs import GeomAbs_Cylinder
    from OCP.gp import gp_Pnt, gp_Vec

    holes: dict[tuple[float, ...], Hole] = {}
    for index, face in enumerate(shape.Faces()):  # type: ignore[attr-defined]
        surface = BRepAdaptor_Surface(face.wrapped)
        if surface.GetType() != GeomAbs_Cylinder:
            continue
        cylinder = surface.Cylinder()
        axis = cylinder.Axis()
        origin = np.array(axis.Location().Coord())
        direction = np.array(axis.Direction().Coord())
        # A point inside the face's parameter range and the face's outward normal there
        # (BRepGProp_Face follows the face's orientation).
        umin, umax, vmin, vmax = BRepTools.UVBounds_s(face.wrapped)
        at, normal = gp_Pnt(), gp_Vec()
        BRepGProp_Face(face.wrapped).Normal((umin + umax) / 2, (vmin + vmax) / 2, at, normal)
        p = np.array(at.Coord())
        radial = (p - origin) - np.dot(p - origin, direction) * direction
        if np.dot(radial, normal.Coord()) >= 0:
            continue  # convex: a boss or fillet, not a hole
        if direction[np.argmax(np.abs(direction))] < 0:
            direction = -direction
        foot = origin - np.dot(origin, direction) * direction
        key = tuple(np.round(np.concatenate([direction, foot, [cylinder.Radius()]]), 4))
        holes.setdefault(key, Hole(2 * cylinder.Radius(), _point(p), index))
    return list(holes.values())


def holes_of(model: Model) -> list[Hole]:
    """The model's holes (B-rep only), measured once per model."""
    if "holes" not in model.cache:
        model.cache["holes"] = find_holes(model.shape) if model.shape is not None else []
    holes: list[Hole] = model.cache["holes"]
    return holes


def check_min_hole(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    shape = ctx.model.shape
    if shape is None:
        return [
            _finding(
                rule,
                "hole diameters are measured on B-rep input (STEP, scripts) only",
                severity=Severity.INFO,
            )
        ]
    if limit is None:
        return []
    small = sorted((h for h in holes_of(ctx.model) if h.diameter < limit), key=lambda h: h.diameter)
    return [
        _finding(
            rule,
            f"hole of Ø{h.diameter:.2f} mm, smaller than Ø{limit:g} mm",
            h.diameter,
            limit,
            h.point,
            h.face_id,
        )
        for h in small[:_MAX_FACE_FINDINGS]
    ]


def check_small_feature(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    shape = ctx.model.shape
    if shape is None:
        return [
            _finding(
                rule,
                "small features are measured on B-rep input (STEP, scripts) only",
                severity=Severity.INFO,
            )
        ]
    if limit is None:
        return []
    from OCP.BRep import BRep_Tool

    short = []
    for edge in shape.Edges():
        if BRep_Tool.Degenerated_s(edge.wrapped):
            continue
        length = edge.Length()
        if length < limit:
            short.append((length, edge))
    if not short:
        return []
    short.sort(key=lambda item: item[0])
    length, edge = short[0]
    centre = edge.Center()
    return [
        _finding(
            rule,
            f"{len(short)} edges are shorter than {limit:g} mm (shortest {length:.3f} mm): too "
            "small for the process",
            length,
            limit,
            (centre.x, centre.y, centre.z),
        )
    ]


CheckFn = Callable[[Context, Rule, float | None], list[Finding]]
CHECK_FUNCTIONS: dict[str, CheckFn] = {
    "solid": check_solid,
    "manifold": check_manifold,
    "self_intersection": check_self_intersection,
    "envelope": check_envelope,
    "mass": check_mass,
    "min_wall": check_min_wall,
    "overhang": check_overhang,
    "draft": check_draft,
    "min_hole": check_min_hole,
    "small_feature": check_small_feature,
}
