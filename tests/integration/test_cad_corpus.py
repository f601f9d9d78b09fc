"""Real CAD files made by others (tests/data/corpus, sources in tests/data/README.md) through
`ingest`, against reference values this test computes itself: OpenCascade and trimesh called
directly, never through the engine's own loaders or checks.

Asserted per file: the verdict (refused or not, and which structural findings), volume within
1e-3, bounding box, solid/face/body counts, the unit used, interference between solids.
"""

from __future__ import annotations

import itertools
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from services.design.geometry import Failure, IngestError, IngestRequest, IngestResult, ingest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
# The findings that say whether the part is a sound solid (the verdict), as opposed to whether
# a process can make it.
STRUCTURAL = {"closed-solid", "manifold", "self-intersection", "interference"}
MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}


@dataclass(frozen=True)
class Case:
    file: str
    declared: str | None  # the length unit the file names (read from its header by hand)
    errors: frozenset[str] = frozenset()  # structural rule ids expected as errors
    refused: bool = False  # FAILED_PRECONDITION: an open surface
    implausible: bool = False  # a units warning about the size is expected


STEP_CASES = [
    # An assembly of 18 solids that touch (screws in holes, nuts on screws) and share nothing.
    Case("as1-oc-214.stp", "mm"),
    # The same assembly, its header in INCH, its numbers millimetres: 5 m if the header wins.
    Case("as1_pe_203.stp", "in", implausible=True),
    Case("io1-ug-214.stp", "mm"),
    Case("eight_cyl.stp", "mm"),
    # Three shapes at the root, two of which share volume.
    Case("stp_multiple_shp_at_root.stp", "m", errors=frozenset({"interference"})),
    Case("screw.step", "mm"),
    Case("featuretype.step", "in"),
]
MESH_CASES = [
    Case("20mm-xyz-cube.stl", None),
    Case("multibody.stl", None, errors=frozenset({"closed-solid", "manifold"})),
    Case("soup.stl", None, refused=True),
    Case("featuretype.3mf", "in", refused=True),
    Case("pyramids.3mf", "mm"),
    Case("cube_and_sphere_same_name.3mf", "mm"),
    Case("box.3mf", "mm"),
    Case("cylinder.3mf", "mm"),
    Case("multiple_cylinders.3mf", "mm"),
    Case("tet.ply", None),
    Case("sphere.ply", None),
    Case("octagonal_pocket.ply", None, implausible=True),
    Case("ballA.off", None),
    Case("comments.off", None),
    Case("whitespace.off", None),
]
FORMAT = {
    ".stp": "step",
    ".step": "step",
    ".stl": "stl",
    ".3mf": "3mf",
    ".ply": "ply",
    ".off": "off",
}


def _ingest(path: Path, work: Path, units: str = "") -> IngestResult:
    work.mkdir()
    request = IngestRequest(path, FORMAT[path.suffix], units, work, "cnc-milling")
    return ingest(request)


# --- references, computed here -------------------------------------------------------------


@dataclass(frozen=True)
class StepReference:
    volume: float
    bbox: tuple[np.ndarray, np.ndarray]
    solids: list[Any]
    faces: int
    valid: list[bool]
    instances: list[int]  # per solid: how many solids are placements of the same shape


def _step_reference(path: Path) -> StepReference:
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib
    from OCP.BRepCheck import BRepCheck_Analyzer
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps
    from OCP.STEPControl import STEPControl_Reader
    from OCP.TopAbs import TopAbs_FACE, TopAbs_SOLID
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopTools import TopTools_IndexedMapOfShape

    reader = STEPControl_Reader()
    reader.ReadFile(str(path))
    reader.TransferRoots()
    shape = reader.OneShape()
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(shape, box, False, False)
    lo, hi = np.array(box.Get()[:3]), np.array(box.Get()[3:])
    solids = []
    explorer = TopExp_Explorer(shape, TopAbs_SOLID)
    while explorer.More():
        solids.append(explorer.Current())
        explorer.Next()
    faces = TopTools_IndexedMapOfShape()
    explorer = TopExp_Explorer(shape, TopAbs_FACE)
    while explorer.More():
        faces.Add(explorer.Current())
        explorer.Next()
    valid = [BRepCheck_Analyzer(s).IsValid() for s in solids]
    instances = [sum(1 for t in solids if s.IsPartner(t)) for s in solids]
    return StepReference(float(props.Mass()), (lo, hi), solids, faces.Extent(), valid, instances)


def _exact_overlaps(solids: list[Any]) -> dict[tuple[int, int], float]:
    """Common volume of every pair of solids whose boxes meet (OpenCascade's boolean)."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Common
    from OCP.BRepBndLib import BRepBndLib
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps

    boxes = []
    for s in solids:
        box = Bnd_Box()
        BRepBndLib.Add_s(s, box)
        boxes.append(box)
    out = {}
    for a, b in itertools.combinations(range(len(solids)), 2):
        if boxes[a].IsOut(boxes[b]):
            continue
        props = GProp_GProps()
        BRepGProp.VolumeProperties_s(BRepAlgoAPI_Common(solids[a], solids[b]).Shape(), props)
        if props.Mass() > 1e-6:
            out[(a, b)] = float(props.Mass())
    return out


def _mesh_reference(path: Path, format: str) -> trimesh.Trimesh:
    loaded = trimesh.load(str(path), file_type=format, force="mesh")
    assert isinstance(loaded, trimesh.Trimesh)
    return trimesh.Trimesh(loaded.vertices, loaded.faces, process=True, validate=False)


def _3mf_unit(path: Path) -> str:
    import xml.etree.ElementTree as ET

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.lower().endswith(".model"))
        root = ET.fromstring(archive.read(name))
    unit = root.attrib.get("unit", "millimeter")
    return {"millimeter": "mm", "inch": "in", "centimeter": "cm", "meter": "m"}[unit]


def _boundary_edges(mesh: trimesh.Trimesh) -> int:
    return len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1))


def _structural_errors(result: IngestResult) -> set[str]:
    return {
        f.rule_id
        for f in result.findings
        if f.rule_id in STRUCTURAL and f.severity.value == "error"
    }


def _implausible(result: IngestResult) -> bool:
    return any(f.rule_id == "units" and "implausible" in f.message for f in result.findings)


# --- the corpus ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.file)
def test_step_corpus(case: Case, tmp_path: Path) -> None:
    path = CORPUS / case.file
    reference = _step_reference(path)
    result = _ingest(path, tmp_path / "work")
    p = result.properties
    assert p.volume_mm3 == pytest.approx(abs(reference.volume), rel=1e-3)
    diagonal = float(np.linalg.norm(reference.bbox[1] - reference.bbox[0]))
    assert p.bbox_min == pytest.approx(tuple(reference.bbox[0]), abs=1e-4 * diagonal)
    assert p.bbox_max == pytest.approx(tuple(reference.bbox[1]), abs=1e-4 * diagonal)
    assert (p.solids, p.bodies, p.faces) == (
        len(reference.solids),
        len(reference.solids),
        reference.faces,
    )
    assert (p.units, p.declared_units) == (case.declared, case.declared)
    # OpenCascade calls every solid valid: so must the verdict, whatever our mesh did.
    assert all(reference.valid)
    assert _structural_errors(result) == case.errors
    assert _implausible(result) == case.implausible
    if len(reference.solids) > 1:
        assert [s.volume_mm3 for s in p.solid_properties] == pytest.approx(
            [abs(_volume(s)) for s in reference.solids], rel=1e-3
        )
        assert [s.instances for s in p.solid_properties] == reference.instances


def _volume(shape: Any) -> float:
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps

    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    return float(props.Mass())


@pytest.mark.parametrize("file", ["as1-oc-214.stp", "stp_multiple_shp_at_root.stp"])
def test_interference_matches_exact_booleans(file: str, tmp_path: Path) -> None:
    path = CORPUS / file
    expected = _exact_overlaps(_step_reference(path).solids)
    result = _ingest(path, tmp_path / "work")
    found = {}
    for f in result.findings:
        if f.rule_id == "interference":
            a, b = (int(w) - 1 for w in f.message.split(" overlap")[0].split()[1::2])
            found[(a, b)] = f.measured
    assert set(found) == set(expected)
    for pair, volume in expected.items():
        assert found[pair] == pytest.approx(volume, rel=1e-3)


def test_inch_header_on_millimetre_numbers_read_as_asked(tmp_path: Path) -> None:
    # as1_pe_203 says INCH; read in mm as the user says, it is the as1-oc-214 assembly.
    metric = _step_reference(CORPUS / "as1-oc-214.stp")
    inch = _step_reference(CORPUS / "as1_pe_203.stp")
    result = _ingest(CORPUS / "as1_pe_203.stp", tmp_path / "work", units="mm")
    p = result.properties
    assert p.volume_mm3 == pytest.approx(inch.volume / 25.4**3, rel=1e-3)
    # Another export of the same assembly (AP214, millimetres): the same part within 0.2 %.
    assert p.volume_mm3 == pytest.approx(metric.volume, rel=5e-3)
    assert (p.units, p.declared_units) == ("mm", "in")
    (notice,) = [f for f in result.findings if f.rule_id == "units"]
    assert notice.severity.value == "warning" and "declares inches" in notice.message
    assert "model.step" in result.artifacts  # the model in mm, what diffs read
    default = _ingest(CORPUS / "as1_pe_203.stp", tmp_path / "default")
    (warning,) = [f for f in default.findings if f.rule_id == "units"]
    assert "--units mm" in warning.message


@pytest.mark.parametrize("case", MESH_CASES, ids=lambda c: c.file)
def test_mesh_corpus(case: Case, tmp_path: Path) -> None:
    path = CORPUS / case.file
    format = FORMAT[path.suffix]
    reference = _mesh_reference(path, format)
    declared = _3mf_unit(path) if format == "3mf" else None
    assert declared == case.declared
    scale = MM[declared or "mm"]
    if case.refused:
        assert not reference.is_watertight
        with pytest.raises(IngestError) as caught:
            _ingest(path, tmp_path / "work")
        assert caught.value.failure is Failure.PRECONDITION
        assert f"{_boundary_edges(reference)} boundary edges" in caught.value.reason
        return
    result = _ingest(path, tmp_path / "work")
    p = result.properties
    assert p.volume_mm3 == pytest.approx(abs(reference.volume) * scale**3, rel=1e-3)
    assert p.bbox_min == pytest.approx(tuple(reference.bounds[0] * scale), abs=1e-6 * scale)
    assert p.bbox_max == pytest.approx(tuple(reference.bounds[1] * scale), abs=1e-6 * scale)
    assert p.triangles == len(reference.faces)
    assert p.bodies == len(reference.split(only_watertight=False))
    assert (p.units, p.declared_units) == (declared or "mm", declared)
    if declared is None:
        assert any("no unit in the" in f.message for f in result.findings)
    assert reference.is_watertight
    if not reference.is_winding_consistent:
        assert "manifold" in case.errors
    assert _structural_errors(result) == case.errors
    assert _implausible(result) == case.implausible


def test_3mf_unit_attribute_is_honoured(tmp_path: Path) -> None:
    # The Consortium's box with its unit changed to inch: every length 25.4 times.
    source = CORPUS / "box.3mf"
    inch = tmp_path / "box-inch.3mf"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(inch, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.lower().endswith(".model"):
                data = data.replace(b'unit="millimeter"', b'unit="inch"')
            dst.writestr(item, data)
    reference = _mesh_reference(source, "3mf")
    result = _ingest(inch, tmp_path / "work")
    assert result.properties.volume_mm3 == pytest.approx(reference.volume * 25.4**3, rel=1e-6)
    assert (result.properties.units, result.properties.declared_units) == ("in", "in")
    assert math.isclose(
        result.properties.bbox_max[0] - result.properties.bbox_min[0],
        float(reference.extents[0]) * 25.4,
        rel_tol=1e-9,
    )


def test_corpus_files_are_the_recorded_ones() -> None:
    import hashlib
    import re

    readme = (CORPUS.parent / "README.md").read_text()
    recorded = dict(re.findall(r"^\| `([^`]+)` \|[^\n]*\| `([0-9a-f]{64})` \|", readme, re.M))
    on_disk = {p.name: p for p in CORPUS.rglob("*") if p.is_file()}
    assert set(on_disk) == set(recorded)
    assert {c.file for c in STEP_CASES + MESH_CASES} == {p.name for p in CORPUS.glob("*.*")}
    for name, digest in recorded.items():
        assert hashlib.sha256(on_disk[name].read_bytes()).hexdigest() == digest, name


CONFORMANCE = CORPUS / "3mf-conformance"
# Two MUSTFAIL files the checks do not catch: a metadata name outside the well-known ones
# (the suite's MUSTPASS 3.4.1c uses another such name and must pass), and an attribute in an
# undeclared extension namespace.
NOT_CAUGHT = {
    "MUSTFAIL_Chapter3.4.1a_MissingMetadataName.3mf",
    "MUSTFAIL_Chapter2.3.2c_UndefinedNameSpaceInXDS.3mf",
}


@pytest.mark.parametrize(
    "path", sorted(CONFORMANCE.glob("MUSTPASS_*.3mf")), ids=lambda p: p.name[9:25]
)
def test_3mf_conforming_files_are_read(path: Path, tmp_path: Path) -> None:
    reference = _mesh_reference(path, "3mf")
    result = _ingest(path, tmp_path / "work")
    scale = MM[_3mf_unit(path)]
    assert result.properties.volume_mm3 == pytest.approx(reference.volume * scale**3, rel=1e-3)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CONFORMANCE.glob("MUSTFAIL_*.3mf") if p.name not in NOT_CAUGHT),
    ids=lambda p: p.name[9:30],
)
def test_3mf_non_conforming_files_are_refused_with_the_reason(path: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError) as caught:
        _ingest(path, tmp_path / "work")
    assert caught.value.failure is Failure.INVALID
    assert "3MF" in caught.value.reason and "no triangles" not in caught.value.reason


def test_3mf_build_item_without_its_object(tmp_path: Path) -> None:
    path = CONFORMANCE / "MUSTFAIL_Chapter3.4.3.1a_NotMatchingObjectIdInBuildItem.3mf"
    with pytest.raises(IngestError) as caught:
        _ingest(path, tmp_path / "work")
    assert "the build includes object 14, which is not defined" in caught.value.reason
