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
_MESH_FILE_TYPES = {"stl": "stl", "obj": "obj", "3mf": "3mf", "gltf": "gltf", "glb": "glb"}


@dataclass
class Model:
    mesh: trimesh.Trimesh
    shape: Any = None  # a cadquery Shape for B-rep input
    triangle_face: npt.NDArray[np.int64] | None = None  # B-rep face index of each triangle
    # Measurements more than one consumer needs (e.g. holes), computed once.
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def is_brep(self) -> bool:
        return self.shape is not None


def read_step(path: Path) -> Any:
    """The shape in a STEP file (OpenCascade converts the file's units to mm)."""
    import cadquery as cq
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPControl import STEPControl_Reader

    reader = STEPControl_Reader()
    if reader.ReadFile(str(path)) != IFSelect_RetDone:
        raise IngestError(
            Failure.INVALID, "the STEP file cannot be read: it is corrupt or not STEP"
        )
    if reader.TransferRoots() == 0:
        raise IngestError(Failure.INVALID, "the STEP file contains no shape OpenCascade can read")
    shape = reader.OneShape()
    if shape.IsNull():
        raise IngestError(Failure.INVALID, "the STEP file contains no shape OpenCascade can read")
    return cq.Shape.cast(shape)


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


def tessellate(shape: Any) -> tuple[trimesh.Trimesh, npt.NDArray[np.int64]]:
    """The B-rep's triangles in mm with the index (in `shape.Faces()` order) of their face."""
    from OCP.BRep import BRep_Tool
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.IMeshTools import IMeshTools_MeshAlgoType_Delabella, IMeshTools_Parameters
    from OCP.TopAbs import TopAbs_REVERSED
    from OCP.TopLoc import TopLoc_Location

    bbox = shape.BoundingBox()
    diagonal = math.dist((bbox.xmin, bbox.ymin, bbox.zmin), (bbox.xmax, bbox.ymax, bbox.zmax))
    params = IMeshTools_Parameters()
    params.Deflection = max(diagonal * LINEAR_DEFLECTION, 1e-3)
    params.Angle = ANGULAR_DEFLECTION
    params.InParallel = True
    # Delabella triangulates a plane with a thousand holes in under a second, where the default
    # (Watson) takes ten: perforated plates are common parts.
    params.MeshAlgo = IMeshTools_MeshAlgoType_Delabella
    BRepMesh_IncrementalMesh(shape.wrapped, params)
    vertices: list[npt.NDArray[np.float64]] = []
    faces: list[npt.NDArray[np.int64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    offset = 0
    for index, face in enumerate(shape.Faces()):
        location = TopLoc_Location()
        poly = BRep_Tool.Triangulation_s(face.wrapped, location)
        if poly is None:
            continue
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
        vertices.append(nodes)
        faces.append(tris + offset)
        owners.append(np.full(len(tris), index, dtype=np.int64))
        offset += len(nodes)
    if not faces:
        raise IngestError(Failure.PRECONDITION, "the shape has no faces to mesh")
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    owner = np.concatenate(owners)
    # Faces share their boundary nodes exactly; merging makes the surface watertight. Removing
    # degenerate triangles must keep the owner array aligned, so it goes through a mask.
    mesh.merge_vertices()
    keep = mesh.nondegenerate_faces()
    if not keep.all():
        mesh.update_faces(keep)
        owner = owner[keep]
    return mesh, owner


def read_mesh(path: Path, format: str, scale: float) -> trimesh.Trimesh:
    """A mesh file as one mesh in mm (`scale` mm per file unit); scenes are flattened."""
    try:
        loaded = trimesh.load(str(path), file_type=_MESH_FILE_TYPES[format], force="mesh")
    except Exception as exc:  # trimesh raises many types for bad bytes
        raise IngestError(
            Failure.INVALID, f"the {format.upper()} file cannot be read: {exc}"
        ) from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise IngestError(Failure.PRECONDITION, f"the {format.upper()} file contains no triangles")
    mesh = trimesh.Trimesh(loaded.vertices * scale, loaded.faces, process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    if len(mesh.faces) == 0:
        raise IngestError(
            Failure.PRECONDITION, f"the {format.upper()} file has only degenerate triangles"
        )
    return mesh
