"""The engine says what is true of the file: closed B-reps are closed whatever our mesher does,
touching solids are separate solids, units are said, defects are the file's own.

Reference values come from CadQuery/OpenCascade and trimesh called here, not from the engine.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from services.design.geometry import Severity, check_upload
from services.design.geometry.loaders import mesh_brep, read_step

BLADE = [(0, 0), (10, 5), (20, -3), (30, 8), (40, 0)]


def _export(shape, path: Path) -> Path:
    import cadquery as cq

    cq.exporters.export(shape, str(path), exportType="STEP")
    return path


def _spline_part():
    import cadquery as cq

    # A spline profile extruded: its side face is a surface of extrusion, which the fast
    # (Delabella) mesher leaves without triangles, as on the pythonocc ventilator.
    return cq.Workplane().spline(BLADE).lineTo(40, -20).lineTo(0, -20).close().extrude(10)


def test_faces_the_fast_mesher_leaves_empty_are_meshed_again(tmp_path, run_ingest) -> None:
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.BRepTools import BRepTools
    from OCP.IMeshTools import IMeshTools_MeshAlgoType_Delabella, IMeshTools_Parameters

    path = _export(_spline_part(), tmp_path / "spline.step")
    shape = read_step(path)
    # The failure this guards against, reproduced with OpenCascade directly.
    params = IMeshTools_Parameters()
    params.Deflection, params.Angle = 0.1, 0.5
    params.MeshAlgo = IMeshTools_MeshAlgoType_Delabella
    BRepMesh_IncrementalMesh(shape.wrapped, params)
    from OCP.BRep import BRep_Tool
    from OCP.TopLoc import TopLoc_Location

    empty = [
        f for f in shape.Faces() if BRep_Tool.Triangulation_s(f.wrapped, TopLoc_Location()) is None
    ]
    assert empty, "Delabella meshes every face now: the test no longer covers the fallback"
    BRepTools.Clean_s(shape.wrapped)

    meshed = mesh_brep(read_step(path))
    assert set(np.unique(meshed.owner)) == set(range(len(shape.Faces())))
    assert meshed.remeshed and not meshed.unmeshed
    assert meshed.mesh.is_watertight

    result = run_ingest(path)
    assert result.properties.volume_mm3 == pytest.approx(shape.Volume(), rel=1e-9)
    assert not [
        f
        for f in result.findings
        if f.severity is Severity.ERROR
        and f.rule_id in {"closed-solid", "manifold", "self-intersection"}
    ]
    (notice,) = [f for f in result.findings if f.rule_id == "tessellation"]
    assert notice.severity is Severity.INFO and "default mesher" in notice.message


def _assembly(offset: float):
    import cadquery as cq

    box = cq.Solid.makeBox(20, 20, 20)
    other = box.moved(cq.Location(cq.Vector(offset, 0, 0)))
    return cq.Compound.makeCompound([box, other])


def test_touching_solids_are_checked_one_by_one(tmp_path, run_ingest) -> None:
    # Two placements of one box, face to face: two sound solids, nothing shared.
    path = _export(_assembly(20.0), tmp_path / "touching.step")
    result = run_ingest(path)
    ids = {f.rule_id for f in result.findings if f.severity is Severity.ERROR}
    assert ids.isdisjoint(
        {"closed-solid", "manifold", "self-intersection", "interference", "min-wall"}
    )
    p = result.properties
    assert (p.solids, p.bodies) == (2, 2)
    assert [s.volume_mm3 for s in p.solid_properties] == pytest.approx([8000.0, 8000.0])
    assert [s.bbox_min[0] for s in p.solid_properties] == pytest.approx([0.0, 20.0], abs=1e-6)
    assert [(s.part, s.instances) for s in p.solid_properties] == [(0, 2), (0, 2)]


def test_overlapping_solids_are_interference_with_volume_and_place(tmp_path, run_ingest) -> None:
    path = _export(_assembly(15.0), tmp_path / "overlap.step")
    strict = run_ingest(path)
    (found,) = [f for f in strict.findings if f.rule_id == "interference"]
    # The boxes share 5 x 20 x 20 mm, centred at (17.5, 10, 10).
    assert found.measured == pytest.approx(2000.0, rel=1e-9)
    assert found.location is not None
    assert found.location.point == pytest.approx((17.5, 10.0, 10.0), abs=1e-6)
    assert found.severity is Severity.ERROR and "solids 1 and 2 overlap" in found.message
    assert "self-intersection" not in {f.rule_id for f in strict.findings}
    # The rule set decides how bad it is: a print job of overlapping bodies is a warning.
    printed = run_ingest(path, rule_set="fdm-printing")
    assert {f.severity for f in printed.findings if f.rule_id == "interference"} == {
        Severity.WARNING
    }


def test_unitless_mesh_says_mm_and_warns_when_implausible(tmp_path, run_ingest) -> None:
    # A 47 mm part exported in metres: 0.047 units across.
    box = trimesh.creation.box(extents=(0.047, 0.03, 0.02))
    path = tmp_path / "metres.stl"
    box.export(path)
    result = run_ingest(path, format="stl")
    notes = [f for f in result.findings if f.rule_id == "units"]
    assert [f.severity for f in notes] == [Severity.INFO, Severity.WARNING]
    assert "no unit in the STL file, assumed mm" in notes[0].message
    assert "--units m" in notes[1].message and notes[1].measured == pytest.approx(0.047)
    assert (result.properties.units, result.properties.declared_units) == ("mm", None)
    in_metres = run_ingest(path, format="stl", units="m")
    assert in_metres.properties.volume_mm3 == pytest.approx(47 * 30 * 20)
    assert not [f for f in in_metres.findings if f.rule_id == "units"]


def test_step_declared_units_lose_to_the_revisions(run_ingest) -> None:
    data = Path(__file__).resolve().parents[2] / "data"
    # cube-in.step: a 1 m cube written in inches (39.37 in a side).
    own = run_ingest(data / "cube-in.step")
    assert (own.properties.units, own.properties.declared_units) == ("in", "in")
    assert own.properties.volume_mm3 == pytest.approx(1e9, rel=1e-9)
    as_mm = run_ingest(data / "cube-in.step", units="mm")
    side = 1000 / 25.4
    assert as_mm.properties.volume_mm3 == pytest.approx(side**3, rel=1e-9)
    (warning,) = [f for f in as_mm.findings if f.rule_id == "units"]
    assert "declares inches" in warning.message and warning.severity is Severity.WARNING
    assert "model.step" in as_mm.artifacts
    assert read_step(as_mm.artifacts["model.step"]).Volume() == pytest.approx(side**3, rel=1e-6)


def test_a_zero_area_triangle_is_reported_not_turned_into_holes(tmp_path, run_ingest) -> None:
    # A closed box whose one edge A-B is split at its midpoint M on one side only, and closed
    # by the zero-area triangle (A, B, M): watertight as given, one degenerate triangle.
    box = trimesh.creation.box(extents=(10, 10, 10))
    vertices = np.vstack([box.vertices, [[0.0, 0.0, 0.0]]])
    faces = [list(f) for f in box.faces]
    a, b, c = faces[0]
    m = len(vertices) - 1
    vertices[m] = (vertices[a] + vertices[b]) / 2
    faces[0:1] = [[a, m, c], [m, b, c], [a, b, m][::-1]]
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    path = tmp_path / "sliver.obj"
    path.write_text(
        "".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
        + "".join(f"f {i + 1} {j + 1} {k + 1}\n" for i, j, k in faces)
    )
    result = run_ingest(path, format="obj")
    assert result.properties.volume_mm3 == pytest.approx(1000.0)
    (defect,) = [f for f in result.findings if f.rule_id == "file-defects"]
    assert "1 zero-area triangles" in defect.message and defect.severity is Severity.WARNING


def test_step_comments_before_the_header_are_accepted(tmp_path, run_ingest) -> None:
    import cadquery as cq

    plain = _export(cq.Workplane().box(20, 20, 20), tmp_path / "box.step")
    path = tmp_path / "commented.step"
    path.write_text("/* written by hand\n   before the header */\n" + plain.read_text())
    check_upload(path, "step")
    assert run_ingest(path).properties.volume_mm3 == pytest.approx(8000.0)


@pytest.mark.parametrize("format", ["ply", "off"])
def test_ply_and_off(tmp_path, run_ingest, format: str) -> None:
    path = tmp_path / f"box.{format}"
    trimesh.creation.box(extents=(40, 30, 20)).export(path)
    check_upload(path, format)
    result = run_ingest(path, format=format)
    assert result.properties.volume_mm3 == pytest.approx(math.prod((40, 30, 20)))
    assert result.properties.bodies == 1


def test_a_file_called_ply_that_is_not() -> None:
    from services.design.geometry import IngestError

    with pytest.raises(IngestError, match="does not start with the line 'ply'"):
        check_upload(Path(__file__), "ply")


def test_a_refused_open_mesh_keeps_a_picture_with_its_holes_in_red(tmp_path, run_ingest) -> None:
    from PIL import Image

    from services.design.geometry import Failure, IngestError

    mesh = trimesh.creation.box(extents=(40, 30, 20))
    # One triangle missing on a side the thumbnail's camera (from +x, -y, +z) sees.
    seen = int(np.argmax(mesh.face_normals @ np.array([1.0, -1.0, 1.0])))
    mesh.update_faces(np.arange(len(mesh.faces)) != seen)
    path = tmp_path / "open.stl"
    mesh.export(path)
    with pytest.raises(IngestError) as caught:
        run_ingest(path, format="stl")
    assert caught.value.failure is Failure.PRECONDITION
    assert set(caught.value.artifacts) == {"mesh.glb", "thumbnail.png"}
    kept = trimesh.load(caught.value.artifacts["mesh.glb"], force="mesh")
    assert isinstance(kept, trimesh.Trimesh) and len(kept.faces) == 11
    pixels = np.asarray(Image.open(caught.value.artifacts["thumbnail.png"]).convert("RGB"))
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    grey = (abs(pixels[..., 0].astype(int) - pixels[..., 2]) < 30) & (pixels[..., 0] < 230)
    assert red.sum() > 50 and grey.sum() > 50


def test_the_thumbnail_paints_overlapping_solids(tmp_path, run_ingest) -> None:
    from PIL import Image

    def reds(result) -> int:
        pixels = np.asarray(Image.open(result.artifacts["thumbnail.png"]).convert("RGB"))
        return int(((pixels[..., 0] > 150) & (pixels[..., 1] < 100)).sum())

    overlapping = run_ingest(_export(_assembly(15.0), tmp_path / "overlap.step"))
    touching = run_ingest(_export(_assembly(20.0), tmp_path / "touching.step"))
    assert reds(overlapping) > 1000 and reds(touching) == 0


def test_unit_resolution_rules() -> None:
    from services.design.geometry.loaders import DeclaredUnit
    from services.design.geometry.units import plausibility, resolve

    inch = DeclaredUnit("in", 25.4)
    assert (resolve("", inch, "step").unit, resolve("", inch, "step").notices) == ("in", ())
    asked = resolve("mm", inch, "step")
    assert (asked.unit, asked.mm) == ("mm", 1.0)
    assert "25.4 times as large" in asked.notices[0].message
    assert resolve("in", inch, "step").notices == ()
    assert resolve("", None, "ply").notices[0].severity is Severity.INFO
    # 5,080 mm read in inches is 200 in the file's numbers: 200 mm fits, so mm is suggested.
    (warning,) = plausibility(5080.0, resolve("", inch, "step"))
    assert "--units mm" in warning.message
    assert plausibility(200.0, resolve("", inch, "step")) == []
    # Nothing fits 1e9 mm in any unit: the warning names none.
    (huge,) = plausibility(1e9, resolve("", None, "stl"))
    assert "--units" not in huge.message
