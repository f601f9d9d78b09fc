"""The design-rule checks: each turns a Model and a Rule (with its effective limit) into findings.

Meshes are checked through their triangles; B-rep input is checked on its tessellation for
surface measures (walls, overhangs, draft), with the B-rep face each triangle came from as the
location, and on the exact B-rep for holes and small edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

from services.design.geometry.loaders import LINEAR_DEFLECTION, Model
from services.design.geometry.types import Finding, Location, Rule, Severity

# Sample sizes: enough to find a thin wall covering a few percent of the surface, bounded so a
# 1M-triangle mesh is checked in seconds.
WALL_SAMPLES = 3000
WINDING_RAYS = 200
_MAX_FACE_FINDINGS = 10
# Above this many B-rep faces the full OpenCascade shape analysis takes too long for ingest.
MAX_FACES_FULL_CHECK = 1000
# Sampled checks (walls, self-intersection) look at this many bodies, the largest first, with
# at least this many samples each.
MAX_SAMPLED_BODIES = 50
MIN_BODY_RAYS = 40
MIN_BODY_WALL_SAMPLES = 60
# Interference: pairs of solids whose boxes meet, checked by exact booleans up to this many.
MAX_INTERFERENCE_PAIRS = 300
# Tessellations of touching curved faces overlap in slivers: over the corpus's touching
# assemblies their mean thickness stayed under 0.02 deflections, real overlaps were 0.1 and up.
# Thicker shared volume goes to the exact boolean, which decides.
SLIVER_DEFLECTIONS = 0.05
# Shared volume below this fraction of the smaller solid is numerical noise of a touch.
_OVERLAP_RATIO = 1e-6
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


def _label(ctx: Context, index: int) -> str:
    """How a finding names a solid (bodies for meshes), 1-based as people count."""
    count = len(ctx.model.bodies())
    kind = "solid" if ctx.model.is_brep else "body"
    return f"{kind} {index + 1} of {count}: " if count > 1 else ""


def check_solid(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    """Each solid on its own: valid (OpenCascade's analyser, on the exact B-rep) and not
    inside out. Closed shells were required at load."""
    shape = ctx.model.shape
    out = []
    if shape is not None:
        solids = shape.Solids()
        faces = len(shape.Faces())
        if faces > MAX_FACES_FULL_CHECK:
            # OpenCascade's analyzer grows worse than linearly (minutes at 5,000 faces); the
            # shells were still checked closed on the exact geometry.
            out.append(
                _finding(
                    rule,
                    f"OpenCascade's B-rep validity check skipped: {faces} faces, over "
                    f"{MAX_FACES_FULL_CHECK}; the shells were checked closed instead",
                    severity=Severity.INFO,
                )
            )
        for i, solid in enumerate(solids):
            if faces <= MAX_FACES_FULL_CHECK and not solid.isValid():
                out.append(
                    _finding(
                        rule,
                        f"{_label(ctx, i)}the B-rep is not a valid solid (OpenCascade's check "
                        "fails)",
                        point=_centre(solid),
                    )
                )
            elif solid_volumes(ctx.model)[i] < 0:
                out.append(
                    _finding(
                        rule,
                        f"{_label(ctx, i)}the solid is inside out (its faces point inwards)",
                        point=_centre(solid),
                    )
                )
        return out
    for label, triangles in ctx.model.bodies():
        body = ctx.model.body_mesh(triangles)
        _, _, flipped = edge_counts(body)
        if flipped:
            out.append(
                _finding(
                    rule,
                    f"{_label(ctx, label)}its triangles are not consistently oriented ({flipped} "
                    "edges): the surface has no inside, so it bounds no solid",
                    point=body.centroid,
                )
            )
        elif body.volume <= 0:
            out.append(
                _finding(
                    rule,
                    f"{_label(ctx, label)}the surface's normals point inwards: the solid is "
                    "inside out",
                    point=body.centroid,
                )
            )
    return out


def _centre(shape: object) -> tuple[float, float, float]:
    centre = shape.Center()  # type: ignore[attr-defined]
    return (float(centre.x), float(centre.y), float(centre.z))


def _brep_non_manifold(solid: object) -> int:
    """Edges of one solid shared by more than two of its faces (seams count once)."""
    from OCP.TopAbs import TopAbs_EDGE, TopAbs_FACE
    from OCP.TopExp import TopExp
    from OCP.TopTools import TopTools_IndexedDataMapOfShapeListOfShape

    ancestors = TopTools_IndexedDataMapOfShapeListOfShape()
    # Unique ancestors: a seam edge lists its one face once.
    TopExp.MapShapesAndUniqueAncestors_s(
        solid.wrapped,  # type: ignore[attr-defined]
        TopAbs_EDGE,
        TopAbs_FACE,
        ancestors,
    )
    return sum(ancestors.FindFromIndex(i).Size() > 2 for i in range(1, ancestors.Extent() + 1))


def check_manifold(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    """Every edge joins two faces of its solid, consistently oriented: on the exact topology
    of each solid for B-reps, on the triangles of each body for meshes (bodies never share
    vertices, so touching solids do not make edges non-manifold)."""
    out = []
    shape = ctx.model.shape
    if shape is not None:
        for i, solid in enumerate(shape.Solids()):
            bad = _brep_non_manifold(solid)
            if bad:
                out.append(
                    _finding(
                        rule,
                        f"{_label(ctx, i)}{bad} edges join more than two faces",
                        bad,
                        point=_centre(solid),
                    )
                )
        return out
    _, non_manifold, flipped = edge_counts(ctx.mesh)
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


def _checked_bodies(ctx: Context) -> list[tuple[int, trimesh.Trimesh, npt.NDArray[np.int64]]]:
    """The bodies the sampled checks look at, each as its own mesh, largest area first: all
    of them up to MAX_SAMPLED_BODIES."""
    if "checked_bodies" not in ctx.model.cache:
        bodies = ctx.model.bodies()
        if len(bodies) == 1:
            label, triangles = bodies[0]
            chosen = [(label, ctx.mesh, triangles)]
        else:
            area = np.asarray(ctx.mesh.area_faces)
            ranked = sorted(bodies, key=lambda b: -float(area[b[1]].sum()))
            chosen = [
                (label, ctx.model.body_mesh(t), t) for label, t in ranked[:MAX_SAMPLED_BODIES]
            ]
        ctx.model.cache["checked_bodies"] = chosen
    checked: list[tuple[int, trimesh.Trimesh, npt.NDArray[np.int64]]] = ctx.model.cache[
        "checked_bodies"
    ]
    return checked


def _shares(areas: list[float], total: int, least: int) -> list[int]:
    """`total` samples split by area, at least `least` each."""
    whole = sum(areas) or 1.0
    return [max(least, int(round(total * a / whole))) for a in areas]


def _winding_bad(
    mesh: trimesh.Trimesh, rays_count: int, rng: np.random.Generator
) -> list[FloatArray]:
    # Along a ray through a closed surface that does not cross itself, the winding number
    # (entries minus exits) only ever reads 0 or 1; 2 or -1 means overlapping material.
    radius = float(np.linalg.norm(mesh.extents)) + 1.0
    directions = rng.normal(size=(rays_count, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    # Aim each ray at a random point of the box so most rays pass through material.
    targets = mesh.bounds[0] + rng.random((rays_count, 3)) * mesh.extents
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
    return bad


def check_self_intersection(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    """Each body on its own: overlapping bodies are interference, not self-intersection."""
    rng = np.random.default_rng(_SEED)
    checked = _checked_bodies(ctx)
    counts = _shares([float(m.area) for _, m, _ in checked], WINDING_RAYS, MIN_BODY_RAYS)
    out = []
    for (label, mesh, _), count in zip(checked, counts, strict=True):
        if not ctx.model.is_brep and edge_counts(mesh)[2]:
            continue  # inconsistently oriented: winding numbers mean nothing (see manifold)
        bad = _winding_bad(mesh, count, rng)
        # One odd ray can be a grazing hit; two are overlapping material.
        if len(bad) < 2:
            continue
        out.append(
            _finding(
                rule,
                f"{_label(ctx, label)}the surface intersects itself ({len(bad)} of {count} "
                "sample rays pass through overlapping material)",
                measured=float(len(bad)),
                point=bad[0],
            )
        )
    return out[:_MAX_FACE_FINDINGS]


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
    """Walls measured within each body: a face touching another solid is not a thin wall."""
    if limit is None:
        return []
    checked = _checked_bodies(ctx)
    counts = _shares([float(m.area) for _, m, _ in checked], WALL_SAMPLES, MIN_BODY_WALL_SAMPLES)
    thick: list[FloatArray] = []
    where: list[FloatArray] = []
    triangle: list[npt.NDArray[np.int64]] = []
    for (_, mesh, triangles), count in zip(checked, counts, strict=True):
        thickness, points, tris = measure_walls(mesh, count)
        thick.append(thickness)
        where.append(points)
        # Back to the model's triangle numbering (the body's mesh renumbers them).
        triangle.append(triangles[tris] if len(checked) > 1 else tris)
    thickness, points, tris = np.concatenate(thick), np.concatenate(where), np.concatenate(triangle)
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


def solid_volumes(model: Model) -> list[float]:
    """Each solid's signed exact volume (B-rep only)."""
    return [v for v, _ in solid_mass(model)]


def solid_mass(model: Model) -> list[tuple[float, tuple[float, float, float]]]:
    """Each solid's signed exact volume and centre of mass (B-rep only), computed once."""
    from services.design.geometry.loaders import volume_and_centre

    if "solid_mass" not in model.cache:
        solids = model.shape.Solids() if model.shape is not None else []
        model.cache["solid_mass"] = [volume_and_centre(s) for s in solids]
    mass: list[tuple[float, tuple[float, float, float]]] = model.cache["solid_mass"]
    return mass


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


def _body_boxes(ctx: Context) -> list[tuple[int, FloatArray, FloatArray]]:
    """(label, low, high) of each body's triangles."""
    vertices = np.asarray(ctx.mesh.vertices)
    faces = np.asarray(ctx.mesh.faces)
    out = []
    for label, triangles in ctx.model.bodies():
        corners = vertices[faces[triangles].reshape(-1)]
        out.append((label, corners.min(axis=0), corners.max(axis=0)))
    return out


def _candidate_pairs(ctx: Context, margin: float) -> list[tuple[int, int]]:
    """Pairs of bodies whose boxes (grown by `margin`) overlap with positive volume."""
    boxes = _body_boxes(ctx)
    if len(boxes) < 2:
        return []
    labels = np.array([b[0] for b in boxes])
    low = np.array([b[1] for b in boxes]) - margin
    high = np.array([b[2] for b in boxes]) + margin
    pairs = []
    for i in range(len(boxes) - 1):
        meets = np.all((low[i] < high[i + 1 :]) & (low[i + 1 :] < high[i]), axis=1)
        pairs += [(int(labels[i]), int(labels[i + 1 + j])) for j in np.flatnonzero(meets)]
    return pairs


Overlap = tuple[int, int, float, tuple[float, float, float]]


def _exact_overlaps(ctx: Context, candidates: list[Overlap]) -> list[Overlap]:
    """The exact common volume of pairs of solids (OpenCascade's boolean), where it is real."""
    import cadquery as cq
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Common

    from services.design.geometry.loaders import volume_and_centre

    solids = ctx.model.shape.Solids()
    out = []
    for a, b, _, _ in candidates:
        common = BRepAlgoAPI_Common(solids[a].wrapped, solids[b].wrapped)
        if not common.IsDone():
            continue
        volume, centre = volume_and_centre(cq.Shape.cast(common.Shape()))
        volumes = solid_volumes(ctx.model)
        smaller = min(abs(volumes[a]), abs(volumes[b]))
        if abs(volume) > _OVERLAP_RATIO * smaller:
            out.append((a, b, abs(volume), centre))
    return out


def _mesh_overlaps(ctx: Context, pairs: list[tuple[int, int]], sliver: float) -> list[Overlap]:
    """Pairs of bodies whose meshes share volume (manifold3d), thicker on average than
    `sliver` mm (tessellations of two faces that touch overlap in slivers thinner than their
    deflection)."""
    import manifold3d

    bodies = dict(ctx.model.bodies())
    solids: dict[int, Any] = {}

    def solid(label: int) -> Any:
        if label not in solids:
            body = ctx.model.body_mesh(bodies[label])
            mesh = manifold3d.Mesh(
                vert_properties=np.asarray(body.vertices, dtype=np.float32),
                tri_verts=np.asarray(body.faces, dtype=np.uint32),
            )
            made = manifold3d.Manifold(mesh)
            solids[label] = made if made.status() == manifold3d.Error.NoError else None
        return solids[label]

    out = []
    for a, b in pairs:
        first, second = solid(a), solid(b)
        if first is None or second is None:
            continue
        common = first ^ second
        volume = float(common.volume())
        smaller = min(float(first.volume()), float(second.volume()))
        if volume <= _OVERLAP_RATIO * smaller:
            continue
        # Mean thickness of the shared volume: twice the volume over its surface.
        if 2 * volume / max(float(common.surface_area()), 1e-30) < sliver:
            continue
        lo, hi = np.asarray(common.bounding_box()).reshape(2, 3)
        out.append((a, b, volume, _point((lo + hi) / 2)))
    return out


def check_interference(ctx: Context, rule: Rule, limit: float | None) -> list[Finding]:
    """Solids (bodies of a mesh) that share volume: exact booleans for B-reps, manifold3d
    for meshes, on the pairs whose boxes meet. Solids that only touch share none."""
    margin = 1e-6 * float(np.linalg.norm(ctx.mesh.extents))
    pairs = _candidate_pairs(ctx, margin)
    if not pairs:
        return []
    checked = pairs[:MAX_INTERFERENCE_PAIRS]
    if ctx.model.is_brep:
        # Exact booleans cost a second per pair of curved parts: only pairs whose meshes
        # share more than a tessellation sliver go to OpenCascade, which decides.
        sliver = SLIVER_DEFLECTIONS * LINEAR_DEFLECTION * float(np.linalg.norm(ctx.mesh.extents))
        overlaps = _exact_overlaps(ctx, _mesh_overlaps(ctx, checked, sliver))
    else:
        overlaps = _mesh_overlaps(ctx, checked, 0.0)
    overlaps.sort(key=lambda o: -o[2])
    # The thumbnail paints the solids that overlap.
    ctx.model.cache["overlapping"] = sorted({s for a, b, _, _ in overlaps for s in (a, b)})
    kind = "solids" if ctx.model.is_brep else "bodies"
    out = [
        _finding(
            rule,
            f"{kind} {a + 1} and {b + 1} overlap by {volume:.4g} mm³ at "
            f"({centre[0]:.1f}, {centre[1]:.1f}, {centre[2]:.1f})",
            measured=volume,
            point=centre,
        )
        for a, b, volume, centre in overlaps[:_MAX_FACE_FINDINGS]
    ]
    if len(pairs) > len(checked):
        out.append(
            _finding(
                rule,
                f"{len(pairs) - len(checked)} more pairs of {kind} whose boxes meet were not "
                f"checked (over {MAX_INTERFERENCE_PAIRS})",
                severity=Severity.INFO,
            )
        )
    return out


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
    "interference": check_interference,
}
