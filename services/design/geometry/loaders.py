"""Reading files into geometry the checks work on: an exact B-rep (STEP) or a triangle mesh.

Every model ends as a `Model`: a trimesh mesh in millimetres (merged vertices, so a closed
surface is watertight) plus, for B-rep input, the OpenCascade shape and the B-rep face each
triangle came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

from services.design.geometry.types import Failure, IngestError

# Tessellation tolerance relative to the part's bounding-box diagonal, and the angular one:
# fine enough for the checks and the thumbnail, coarse enough that a 2,000-face part meshes in
# about a second (DEPENDENCIES.md: tessellation is the slow step).
LINEAR_DEFLECTION = 0.002
ANGULAR_DEFLECTION = 0.5
_MESH_FILE_TYPES = {
    "stl": "stl",
    "obj": "obj",
    "3mf": "3mf",
    "gltf": "gltf",
    "glb": "glb",
    "ply": "ply",
    "off": "off",
}


@dataclass
class Model:
    mesh: trimesh.Trimesh
    shape: Any = None  # a cadquery Shape for B-rep input
    triangle_face: npt.NDArray[np.int64] | None = None  # B-rep face index of each triangle
    # The body of each triangle: its solid (B-rep, -1 for faces in no solid) or its connected
    # component (mesh). None: one body.
    triangle_body: npt.NDArray[np.int64] | None = None
    # Measurements more than one consumer needs (e.g. holes), computed once.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def is_brep(self) -> bool:
        return self.shape is not None

    def bodies(self) -> list[tuple[int, npt.NDArray[np.int64]]]:
        """(body label, its triangle indices) per body, labels ascending, -1 left out."""
        if "bodies" not in self.cache:
            label = self.triangle_body
            if label is None:
                groups = [(0, np.arange(len(self.mesh.faces), dtype=np.int64))]
            else:
                order = np.argsort(label, kind="stable")
                values, starts = np.unique(label[order], return_index=True)
                groups = [
                    (int(v), order[a:b])
                    for v, a, b in zip(values, starts, [*starts[1:], len(order)], strict=True)
                    if v >= 0
                ]
            self.cache["bodies"] = groups
        bodies: list[tuple[int, npt.NDArray[np.int64]]] = self.cache["bodies"]
        return bodies

    def body_mesh(self, triangles: npt.NDArray[np.int64]) -> trimesh.Trimesh:
        """The mesh of some triangles on its own (its vertices renumbered)."""
        faces = np.asarray(self.mesh.faces)[triangles]
        used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
        return trimesh.Trimesh(
            np.asarray(self.mesh.vertices)[used], inverse.reshape(-1, 3), process=False
        )


# Length units as STEP files name them (OpenCascade reports the name): our key, mm per unit.
_STEP_UNITS = {
    "millimetre": ("mm", 1.0),
    "millimeter": ("mm", 1.0),
    "centimetre": ("cm", 10.0),
    "centimeter": ("cm", 10.0),
    "metre": ("m", 1000.0),
    "meter": ("m", 1000.0),
    "inch": ("in", 25.4),
    "micrometre": ("um", 0.001),
    "micrometer": ("um", 0.001),
    "decimetre": ("dm", 100.0),
    "foot": ("ft", 304.8),
    "kilometre": ("km", 1e6),
}
# 3MF `unit` values (3MF core specification 3.2): our key, mm per unit.
_3MF_UNITS = {
    "micron": ("um", 0.001),
    "millimeter": ("mm", 1.0),
    "centimeter": ("cm", 10.0),
    "inch": ("in", 25.4),
    "foot": ("ft", 304.8),
    "meter": ("m", 1000.0),
}


@dataclass(frozen=True)
class DeclaredUnit:
    """The length unit a file declares: our short name and millimetres per unit."""

    name: str
    mm: float


@dataclass
class StepFile:
    shape: Any  # a cadquery Shape in millimetres (OpenCascade converted the file's unit)
    declared: DeclaredUnit | None  # the file's length unit; None when the file names none known
    declared_names: tuple[str, ...] = ()  # every length unit name the file uses


def load_step(path: Path) -> StepFile:
    """The shape in a STEP file, in mm, with the length unit its header context declares."""
    import cadquery as cq
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPControl import STEPControl_Reader
    from OCP.TColStd import TColStd_SequenceOfAsciiString

    reader = STEPControl_Reader()
    if reader.ReadFile(str(path)) != IFSelect_RetDone:
        raise IngestError(
            Failure.INVALID, "the STEP file cannot be read: it is corrupt or not STEP"
        )
    lengths, angles, solid_angles = (TColStd_SequenceOfAsciiString() for _ in range(3))
    reader.FileUnits(lengths, angles, solid_angles)
    names = tuple(
        str(lengths.Value(i).ToCString()).strip().lower() for i in range(1, lengths.Length() + 1)
    )
    if reader.TransferRoots() == 0:
        raise IngestError(Failure.INVALID, "the STEP file contains no shape OpenCascade can read")
    shape = reader.OneShape()
    if shape.IsNull():
        raise IngestError(Failure.INVALID, "the STEP file contains no shape OpenCascade can read")
    known = [_STEP_UNITS[n] for n in names if n in _STEP_UNITS]
    declared = DeclaredUnit(*known[0]) if known else None
    return StepFile(cq.Shape.cast(shape), declared, tuple(dict.fromkeys(names)))


def read_step(path: Path) -> Any:
    """The shape in a STEP file (OpenCascade converts the file's units to mm)."""
    return load_step(path).shape


def volume_and_centre(shape: Any) -> tuple[float, tuple[float, float, float]]:
    """A B-rep's exact volume (mm³) and centre of mass, from one integration."""
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps

    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape.wrapped, props)
    x, y, z = props.CentreOfMass().Coord()
    return float(props.Mass()), (float(x), float(y), float(z))


def exact_bounds(shape: Any) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The tight bounding box of a B-rep (the default one is padded by tolerances)."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(shape.wrapped, box, False, False)
    x0, y0, z0, x1, y1, z1 = box.Get()
    return (x0, y0, z0), (x1, y1, z1)


@dataclass
class BrepMesh:
    """A B-rep's tessellation in mm. Vertices are merged within each solid, never across
    solids, so solids that touch stay separate closed surfaces."""

    mesh: trimesh.Trimesh
    owner: npt.NDArray[np.int64]  # B-rep face index (in `shape.Faces()` order) per triangle
    solid: npt.NDArray[np.int64]  # solid index (in `shape.Solids()` order) per triangle, or -1
    remeshed: tuple[int, ...] = ()  # faces the fast mesher left empty, meshed by the default one
    unmeshed: tuple[int, ...] = ()  # faces neither mesher could triangulate


def _mesh_parameters(shape: Any, fast: bool) -> Any:
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib
    from OCP.IMeshTools import IMeshTools_MeshAlgoType_Delabella, IMeshTools_Parameters

    # The plain box (padded by tolerances) is enough for a deflection; the optimal one costs
    # seconds on a few hundred curved faces.
    box = Bnd_Box()
    BRepBndLib.Add_s(shape.wrapped, box, False)
    x0, y0, z0, x1, y1, z1 = box.Get()
    diagonal = math.dist((x0, y0, z0), (x1, y1, z1)) if not box.IsVoid() else 0.0
    params = IMeshTools_Parameters()
    params.Deflection = max(diagonal * LINEAR_DEFLECTION, 1e-3)
    params.Angle = ANGULAR_DEFLECTION
    params.InParallel = True
    if fast:
        # Delabella triangulates a plane with a thousand holes in under a second, where the
        # default (Watson) takes ten: perforated plates are common parts. It leaves some faces
        # empty (surfaces of extrusion, seen on real parts): then the default mesher meshes
        # the whole shape again, so neighbouring faces keep sharing their edge nodes.
        params.MeshAlgo = IMeshTools_MeshAlgoType_Delabella
    return params


def _triangles_of(face: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None:
    from OCP.BRep import BRep_Tool
    from OCP.TopAbs import TopAbs_REVERSED
    from OCP.TopLoc import TopLoc_Location

    location = TopLoc_Location()
    poly = BRep_Tool.Triangulation_s(face.wrapped, location)
    if poly is None or poly.NbTriangles() == 0:
        return None
    transform = location.Transformation()
    nodes = np.array(
        [poly.Node(i).Transformed(transform).Coord() for i in range(1, poly.NbNodes() + 1)],
        dtype=np.float64,
    )
    tris = (
        np.array(
            [poly.Triangle(i).Get() for i in range(1, poly.NbTriangles() + 1)], dtype=np.int64
        ).reshape(-1, 3)
        - 1
    )
    if face.wrapped.Orientation() == TopAbs_REVERSED:
        tris = tris[:, ::-1]
    return nodes, tris


def _face_groups(shape: Any, faces: list[Any]) -> list[tuple[int, list[int]]]:
    """(solid index, the indices of its faces) per solid, then (-1, faces in no solid)."""
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp
    from OCP.TopTools import TopTools_IndexedMapOfShape

    index = TopTools_IndexedMapOfShape()
    TopExp.MapShapes_s(shape.wrapped, TopAbs_FACE, index)
    groups: list[tuple[int, list[int]]] = []
    seen: set[int] = set()
    for s, solid in enumerate(shape.Solids()):
        members = [index.FindIndex(f.wrapped) - 1 for f in solid.Faces()]
        members = [m for m in members if m >= 0]
        groups.append((s, members))
        seen.update(members)
    loose = [i for i in range(len(faces)) if i not in seen]
    if loose:
        groups.append((-1, loose))
    return groups


def mesh_brep(shape: Any) -> BrepMesh:
    """The B-rep's triangles in mm, every face meshed (or named in `unmeshed`)."""
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.BRepTools import BRepTools

    BRepMesh_IncrementalMesh(shape.wrapped, _mesh_parameters(shape, fast=True))
    faces = shape.Faces()
    triangles = [_triangles_of(face) for face in faces]
    empty = [i for i, t in enumerate(triangles) if t is None]
    if empty:
        BRepTools.Clean_s(shape.wrapped)
        BRepMesh_IncrementalMesh(shape.wrapped, _mesh_parameters(shape, fast=False))
        triangles = [_triangles_of(face) for face in faces]
    unmeshed = tuple(i for i in empty if triangles[i] is None)
    remeshed = tuple(i for i in empty if triangles[i] is not None)
    vertices: list[npt.NDArray[np.float64]] = []
    tris_out: list[npt.NDArray[np.int64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    solid_of: list[npt.NDArray[np.int64]] = []
    offset = 0
    for solid, members in _face_groups(shape, faces):
        parts = [(i, triangles[i]) for i in members if triangles[i] is not None]
        if not parts:
            continue
        v = np.concatenate([t[0] for _, t in parts if t is not None])
        starts = np.cumsum([0] + [len(t[0]) for _, t in parts if t is not None])
        f = np.concatenate([t[1] + starts[k] for k, (_, t) in enumerate(parts) if t is not None])
        owner = np.concatenate(
            [np.full(len(t[1]), i, dtype=np.int64) for i, t in parts if t is not None]
        )
        # Faces share their boundary nodes exactly; merging makes each solid's surface
        # watertight. Removing degenerate triangles keeps the owner array aligned (a mask).
        piece = trimesh.Trimesh(v, f, process=False)
        piece.merge_vertices()
        keep = piece.nondegenerate_faces()
        if not keep.all():
            piece.update_faces(keep)
            owner = owner[keep]
        vertices.append(np.asarray(piece.vertices))
        tris_out.append(np.asarray(piece.faces, dtype=np.int64) + offset)
        owners.append(owner)
        solid_of.append(np.full(len(owner), solid, dtype=np.int64))
        offset += len(piece.vertices)
    if not tris_out:
        raise IngestError(Failure.PRECONDITION, "the shape has no faces to mesh")
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(tris_out), process=False)
    return BrepMesh(mesh, np.concatenate(owners), np.concatenate(solid_of), remeshed, unmeshed)


def tessellate(shape: Any) -> tuple[trimesh.Trimesh, npt.NDArray[np.int64]]:
    """The B-rep's triangles in mm with the index (in `shape.Faces()` order) of their face."""
    meshed = mesh_brep(shape)
    return meshed.mesh, meshed.owner


@dataclass
class MeshFile:
    """A mesh file as given: vertices merged (an STL repeats them per triangle), every
    triangle kept, in the file's own unit."""

    mesh: trimesh.Trimesh
    declared: DeclaredUnit | None  # 3MF `unit` (millimetre when absent, as the spec says)


def load_mesh(path: Path, format: str) -> MeshFile:
    """A mesh file as one mesh; scenes are flattened with their transforms. A 3MF must
    conform to the core specification first (trimesh drops what it cannot resolve)."""
    if format == "3mf":
        from services.design.geometry.threemf import check_3mf

        check_3mf(path)
    try:
        loaded = trimesh.load(str(path), file_type=_MESH_FILE_TYPES[format], force="mesh")
    except MemoryError:
        raise  # a limit, not bad bytes: the sandbox reports which
    except Exception as exc:  # trimesh raises many types for bad bytes
        raise IngestError(
            Failure.INVALID, f"the {format.upper()} file cannot be read: {exc}"
        ) from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise IngestError(Failure.PRECONDITION, f"the {format.upper()} file contains no triangles")
    declared = None
    if format == "3mf":
        unit = str(loaded.metadata.get("units") or "millimeter").lower().removesuffix("s")
        if unit not in _3MF_UNITS:
            raise IngestError(
                Failure.INVALID,
                f"the 3MF unit {unit[:20]!r} is not one of {', '.join(_3MF_UNITS)}",
            )
        declared = DeclaredUnit(*_3MF_UNITS[unit])
    # process=True merges vertices and drops non-finite ones; nothing degenerate is removed.
    mesh = trimesh.Trimesh(loaded.vertices, loaded.faces, process=True, validate=False)
    return MeshFile(mesh, declared)


def body_labels(mesh: trimesh.Trimesh) -> npt.NDArray[np.int64]:
    """The connected component (triangles joined through edges) of each triangle."""
    labels = trimesh.graph.connected_component_labels(  # type: ignore[no-untyped-call]
        mesh.face_adjacency, node_count=len(mesh.faces)
    )
    return np.asarray(labels, dtype=np.int64)
