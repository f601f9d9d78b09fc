"""The geometry engine's contract with the design service: what goes in, what comes out.

The engine (`services.design.geometry`) is plain Python over CadQuery/OpenCascade and trimesh; it
knows nothing of gRPC, SQL or Kafka. The service runs `ingest` in worker processes, off the
request path, and stores the artifacts it writes as content-addressed blobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

# Formats a revision's content can have, as the API names them.
FORMATS = ("step", "stl", "obj", "3mf", "gltf", "glb", "ply", "off", "cadquery")
# Length units a revision can declare; the value is millimetres per unit. A request without
# units ("") takes the unit the file declares (STEP, 3MF), else millimetres.
UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}

ParameterValue = float | int | str | bool


class Severity(Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Failure(Enum):
    """How a rejected input maps onto the API: the service turns it into a gRPC status."""

    INVALID = "invalid"  # the bytes are not what they claim: INVALID_ARGUMENT
    PRECONDITION = (
        "precondition"  # well-formed but unusable (open mesh, zero volume): FAILED_PRECONDITION
    )
    TOO_LARGE = (
        "too_large"  # over a size/expansion limit (zip bomb, huge output): RESOURCE_EXHAUSTED
    )


class IngestError(Exception):
    """The input cannot become a revision; `reason` is shown to the user as is. `artifacts`:
    what could still be made of a file whose geometry was read (artifact name -> file in
    work_dir), e.g. the mesh and a thumbnail with the open edges marked."""

    def __init__(
        self, failure: Failure, reason: str, artifacts: Mapping[str, Path] | None = None
    ) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.artifacts: Mapping[str, Path] = dict(artifacts or {})


@dataclass(frozen=True)
class IngestRequest:
    source: Path  # the uploaded file (a CadQuery script for format "cadquery")
    format: str  # one of FORMATS
    units: str  # one of UNITS_MM, or "" for the file's own unit (millimetres if it has none)
    work_dir: Path  # an empty directory the engine writes its artifacts into
    rule_set: str  # a rule set id, e.g. "cnc-milling"
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)  # for scripts
    rule_overrides: Mapping[str, float] = field(default_factory=dict)  # per-design limits
    material: str | None = None  # key of the material density table; None: the rule set's default


@dataclass(frozen=True)
class Location:
    point: tuple[float, float, float]  # mm, in the part's frame
    face_id: int | None = None  # B-rep face index (order of TopExp exploration); None for meshes


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str
    measured: float | None = None
    limit: float | None = None
    unit: str = ""
    location: Location | None = None


@dataclass(frozen=True)
class SolidProperties:
    """One solid of a B-rep (or one body of a mesh), measured on its own, in millimetres."""

    index: int  # 0-based, in the order of `shape.Solids()` (bodies: of connected components)
    volume_mm3: float
    area_mm2: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    center_of_mass: tuple[float, float, float]
    faces: int | None = None  # B-rep faces (triangles for a mesh body)
    # Solids that are placements of one shape (an assembly's repeated screw) share `part`: the
    # index of the first of them; `instances` is how many there are.
    part: int = 0
    instances: int = 1


@dataclass(frozen=True)
class Properties:
    """Measured in millimetres (converted from the unit in `units`)."""

    volume_mm3: float
    area_mm2: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    center_of_mass: tuple[float, float, float]
    mass_g: float | None
    material: str | None
    triangles: int  # of the normalized mesh
    is_brep: bool
    solids: int | None = None  # B-rep only
    faces: int | None = None
    edges: int | None = None
    holes: int | None = None  # B-rep only: distinct cylindrical holes (concave cylinders)
    # Separate bodies: B-rep solids, or connected components of a mesh's triangles.
    bodies: int | None = None
    units: str = "mm"  # the unit the file's numbers were read in (a key of UNITS_MM)
    # The unit the file itself declares (STEP header, 3MF `unit`), None when it has none.
    declared_units: str | None = None
    # Per solid (per body for meshes), when there are several; empty for one.
    solid_properties: tuple[SolidProperties, ...] = ()


@dataclass(frozen=True)
class IngestResult:
    properties: Properties
    findings: list[Finding]
    # artifact name -> file in work_dir: always "mesh.glb" and "thumbnail.png"; "model.step" for
    # scripts; "report.json" (the findings, machine-readable).
    artifacts: Mapping[str, Path]
    # A script's declared parameters with the values used (defaults filled in).
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)


@dataclass(frozen=True)
class ParameterSpec:
    """A script parameter as `build()` declares it: `name: type = default`."""

    name: str
    type: str  # "float", "int", "bool" or "str"
    default: ParameterValue


@dataclass(frozen=True)
class Rule:
    """One check of a rule set; `limit` (in `unit`) is what a design may override."""

    id: str
    check: str  # which measurement: see services.design.geometry.rules.CHECKS
    severity: Severity
    description: str
    limit: float | None = None
    unit: str = ""
    axis: str | None = None  # envelope rules: "x", "y" or "z"


@dataclass(frozen=True)
class RuleSet:
    """The design rules of one manufacturing process, loaded from a data file."""

    id: str
    display_name: str
    process: str
    description: str
    default_material: str
    rules: tuple[Rule, ...]

    @property
    def limits(self) -> dict[str, float]:
        """Rule id -> limit, for the rules that have one."""
        return {r.id: r.limit for r in self.rules if r.limit is not None}


@dataclass(frozen=True)
class Material:
    id: str
    display_name: str
    density_g_cm3: float


# --- Geometry diff and three-way merge (services.design.geometry.diff) ---


@dataclass(frozen=True)
class DiffInput:
    """One revision as the diff engine sees it; every path is a file the service wrote from
    blobs."""

    mesh: Path  # the revision's mesh.glb artifact (millimetres)
    step: Path | None  # B-rep in mm: the uploaded STEP, or a script's model.step; None for meshes
    findings: tuple[Finding, ...]  # the revision's validation findings (from report.json)
    properties: Properties
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)  # scripts only
    script: str | None = None  # the CadQuery script source, for scripts only


@dataclass(frozen=True)
class Region:
    """One connected added or removed volume."""

    volume_mm3: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    centroid: tuple[float, float, float]


@dataclass(frozen=True)
class FaceSignature:
    """What identifies a B-rep face across revisions, independent of its index."""

    surface: str  # plane, cylinder, cone, sphere, torus, bspline, other
    area_mm2: float
    direction: tuple[float, float, float]  # plane normal or cylinder/cone axis; (0,0,0) otherwise
    centroid: tuple[float, float, float]
    radius_mm: float | None = None


@dataclass(frozen=True)
class FaceChange:
    change: str  # "added", "removed" or "modified"
    face_a: int | None  # B-rep face index in A (None when added)
    face_b: int | None  # in B (None when removed)
    before: FaceSignature | None
    after: FaceSignature | None


@dataclass(frozen=True)
class ParameterDelta:
    name: str
    before: ParameterValue | None  # None: not declared in A
    after: ParameterValue | None  # None: not declared in B


@dataclass(frozen=True)
class DiffResult:
    exact: bool  # True: B-rep booleans; False: manifold3d mesh booleans
    added: tuple[Region, ...]  # in B, not in A
    removed: tuple[Region, ...]  # in A, not in B
    added_volume_mm3: float
    removed_volume_mm3: float
    faces: tuple[FaceChange, ...]  # empty unless both sides are B-reps
    unchanged_faces: int
    face_map: Mapping[int, int]  # A face index -> B face index, for unchanged faces (B-reps)
    max_deviation_mm: float  # two-sided, sampled
    rms_deviation_mm: float
    volume_delta_mm3: float  # B - A, likewise below
    area_delta_mm2: float
    mass_delta_g: float | None
    bbox_min_delta: tuple[float, float, float]
    bbox_max_delta: tuple[float, float, float]
    parameters: tuple[ParameterDelta, ...]
    findings_introduced: tuple[Finding, ...]  # in B's report, not matched in A's
    findings_resolved: tuple[Finding, ...]  # in A's report, not matched in B's
    # "diff.png" (2-3 views: unchanged grey, added green, removed red) and "diff.glb" (coloured
    # the same way), written into the request's work_dir.
    artifacts: Mapping[str, Path]


@dataclass(frozen=True)
class Conflict:
    # volume where A->B and A->C changed regions overlap (tolerance-inflated)
    overlap_volume_mm3: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    faces_ours: tuple[int, ...]  # B face indices in the overlap (B-reps)
    faces_theirs: tuple[int, ...]  # C face indices in the overlap
    parameters: tuple[str, ...]  # script parameters both sides changed differently
    reason: str  # human-readable, e.g. "both edits change the region around (10, 20, 5)"


@dataclass(frozen=True)
class MergeResult:
    ours: DiffResult  # base -> B (the head)
    theirs: DiffResult  # base -> C (the pushed revision)
    conflict: Conflict | None
    # When no conflict: the merged model M = (A - removed_B - removed_C) ∪ added_B ∪ added_C
    merged: Path | None  # file in work_dir: "merged.step" (all B-rep), "merged.stl" or "merged.py"
    merged_format: str | None  # "step", "stl" or "cadquery"
    merged_parameters: Mapping[str, ParameterValue] = field(default_factory=dict)  # scripts
