"""Ingest of real parts: measured values against independently computed ones, rule findings
present where the geometry breaks a rule and absent where it does not, bad input refused."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from services.design.geometry import (
    Failure,
    IngestError,
    IngestRequest,
    Severity,
    check_upload,
    ingest,
)
from services.design.geometry.checks import _winding_bad, measure_walls
from tests.unit.geometry.conftest import (
    BOX,
    BRACKET_HOLE_DIAMETER,
    BRACKET_HOLES,
    DRAFT_DEG,
    THIN_WALL,
)

DATA = Path(__file__).parents[2] / "data"


def _ids(result) -> set[str]:
    return {f.rule_id for f in result.findings}


def test_box_properties_are_exact(parts, run_ingest) -> None:
    result = run_ingest(parts["box"], material="steel-1018")
    p = result.properties
    x, y, z = BOX
    assert p.volume_mm3 == pytest.approx(x * y * z, rel=1e-9)
    assert p.area_mm2 == pytest.approx(2 * (x * y + y * z + x * z), rel=1e-9)
    assert p.bbox_min == pytest.approx((-x / 2, -y / 2, -z / 2), abs=1e-6)
    assert p.bbox_max == pytest.approx((x / 2, y / 2, z / 2), abs=1e-6)
    assert p.center_of_mass == pytest.approx((0, 0, 0), abs=1e-6)
    assert (p.solids, p.faces, p.edges, p.holes) == (1, 6, 12, 0)
    assert p.is_brep and p.triangles == 12
    assert p.mass_g == pytest.approx(x * y * z / 1000 * 7.87)
    assert p.material == "steel-1018"
    assert result.findings == []
    # Worker processes hand the result back pickled.
    assert pickle.loads(pickle.dumps(result)) == result
    assert set(result.artifacts) == {"mesh.glb", "thumbnail.png", "report.json"}
    mesh = trimesh.load_mesh(result.artifacts["mesh.glb"])
    assert mesh.is_watertight and mesh.volume == pytest.approx(x * y * z)
    report = json.loads(result.artifacts["report.json"].read_text())
    assert report["rule_set"] == "cnc-milling" and report["findings"] == []
    assert report["properties"]["volume_mm3"] == pytest.approx(x * y * z)


def test_bracket_holes_and_hole_rule(parts, run_ingest) -> None:
    result = run_ingest(parts["bracket"])
    assert result.properties.holes == BRACKET_HOLES
    assert result.properties.faces is not None and result.properties.faces > 12
    assert "min-hole" not in _ids(result)
    # Raising the limit above the holes' diameter makes each of them a finding on its face.
    tight = run_ingest(parts["bracket"], rule_overrides={"min-hole": 6.0})
    holes = [f for f in tight.findings if f.rule_id == "min-hole"]
    assert len(holes) == BRACKET_HOLES
    for f in holes:
        assert f.measured == pytest.approx(BRACKET_HOLE_DIAMETER)
        assert f.limit == 6.0 and f.unit == "mm" and f.severity is Severity.WARNING
        assert f.location is not None and f.location.face_id is not None


def test_thin_wall_is_measured_and_flagged(parts, run_ingest) -> None:
    result = run_ingest(parts["thin"], rule_set="injection-moulding")
    walls = [f for f in result.findings if f.rule_id == "min-wall"]
    assert len(walls) == 1
    wall = walls[0]
    assert wall.measured == pytest.approx(THIN_WALL, rel=0.02)
    assert wall.limit == 1.0 and wall.severity is Severity.ERROR and wall.unit == "mm"
    assert wall.location is not None and wall.location.face_id is not None
    # The override lowers the limit below the wall: no finding.
    relaxed = run_ingest(
        parts["thin"], rule_set="injection-moulding", rule_overrides={"min-wall": 0.4}
    )
    assert "min-wall" not in _ids(relaxed)


def test_thick_part_has_no_wall_finding(parts, run_ingest) -> None:
    result = run_ingest(parts["bracket"], rule_set="injection-moulding")
    assert "min-wall" not in _ids(result)


def test_wall_measure_on_a_known_slab() -> None:
    slab = trimesh.creation.box(extents=(50, 50, 1.5))
    thickness, _, _ = measure_walls(slab, samples=500)
    assert float(np.min(thickness)) == pytest.approx(1.5, rel=1e-3)


def test_overhang_present_and_absent(parts, run_ingest) -> None:
    mushroom = run_ingest(parts["overhang"], rule_set="fdm-printing")
    overhangs = [f for f in mushroom.findings if f.rule_id == "max-overhang"]
    assert len(overhangs) == 1  # one B-rep face: the cap's underside
    f = overhangs[0]
    assert f.measured == pytest.approx(90.0)
    assert f.limit == 45.0 and f.unit == "deg"
    assert f.location is not None and f.location.point[2] == pytest.approx(20.0)
    assert f.location.face_id is not None
    # A box stands on its bottom face and the bracket's faces are vertical or horizontal
    # on the plate: nothing overhangs.
    assert "max-overhang" not in _ids(run_ingest(parts["box"], rule_set="fdm-printing"))
    # A cap at 45 degrees is at the limit of fdm-printing, not over it: the frustum upside down.
    assert "max-overhang" not in _ids(run_ingest(parts["drafted"], rule_set="fdm-printing"))


def test_draft_for_moulding(parts, run_ingest) -> None:
    box = run_ingest(parts["box"], rule_set="injection-moulding")
    drafts = [f for f in box.findings if f.rule_id == "min-draft"]
    assert len(drafts) == 4  # the four vertical sides
    assert all(f.measured == pytest.approx(0.0, abs=1e-6) for f in drafts)
    assert len({f.location.face_id for f in drafts if f.location}) == 4
    drafted = run_ingest(parts["drafted"], rule_set="injection-moulding")
    assert "min-draft" not in _ids(drafted)
    strict = run_ingest(
        parts["drafted"], rule_set="injection-moulding", rule_overrides={"min-draft": 5.0}
    )
    measured = [f.measured for f in strict.findings if f.rule_id == "min-draft"]
    assert len(measured) == 4 and all(m == pytest.approx(DRAFT_DEG) for m in measured)


def test_envelope_and_units(parts, run_ingest) -> None:
    # The box declared in cm is 400 x 300 x 200 mm: too long for an SLA vat.
    stl = parts["box"].with_suffix(".stl")
    trimesh.creation.box(extents=BOX).export(stl)
    result = run_ingest(stl, format="stl", units="cm", rule_set="sla-printing")
    assert result.properties.volume_mm3 == pytest.approx(math.prod(BOX) * 1000)
    envelope = {f.rule_id: f for f in result.findings if f.rule_id.startswith("envelope")}
    assert set(envelope) == {"envelope-x", "envelope-y", "envelope-z"}
    assert envelope["envelope-x"].measured == pytest.approx(400.0)
    assert envelope["envelope-x"].limit == 145.0


def test_real_step_files(run_ingest) -> None:
    mm = run_ingest(DATA / "cube-mm.step")
    inch = run_ingest(DATA / "cube-in.step", units="in")
    # STEP carries its units: both files are the same 1 m cube, whatever the declared units.
    for result in (mm, inch):
        assert result.properties.volume_mm3 == pytest.approx(1e9, rel=1e-9)
        assert result.properties.faces == 6
        assert result.properties.bbox_max[0] - result.properties.bbox_min[0] == pytest.approx(1000)
    rounded = run_ingest(DATA / "rounded-cube.step")
    assert rounded.properties.volume_mm3 == pytest.approx(1000 - (1 - math.pi / 4) * 250, rel=1e-6)
    assert rounded.properties.faces == 7


def test_real_stl_files(run_ingest) -> None:
    cube = run_ingest(DATA / "Cube-binary.stl", format="stl", units="cm")
    assert cube.properties.volume_mm3 == pytest.approx(8000.0)
    assert cube.properties.triangles == 12 and not cube.properties.is_brep
    assert cube.properties.faces is None
    donut = run_ingest(DATA / "HalfDonut-ascii.stl", format="stl", rule_set="sla-printing")
    assert donut.properties.triangles == 288
    reference = trimesh.load_mesh(DATA / "HalfDonut-ascii.stl", file_type="stl")
    assert donut.properties.volume_mm3 == pytest.approx(reference.volume)
    hole_info = [f for f in donut.findings if f.rule_id == "min-hole"]
    assert len(hole_info) == 1 and hole_info[0].severity is Severity.INFO


@pytest.mark.parametrize("format", ["obj", "3mf", "glb", "gltf"])
def test_mesh_formats(tmp_path, run_ingest, format: str) -> None:
    path = tmp_path / f"box.{format}"
    mesh = trimesh.creation.box(extents=BOX)
    if format == "gltf":
        # A single-file glTF carries its buffers as data URIs.
        files = trimesh.Scene(mesh).export(file_type="gltf", embed_buffers=True)
        path.write_bytes(files["model.gltf"])
    else:
        mesh.export(path)
    check_upload(path, format)
    result = run_ingest(path, format=format)
    assert result.properties.volume_mm3 == pytest.approx(math.prod(BOX))
    assert result.properties.triangles == 12


def test_open_mesh_is_refused(tmp_path, run_ingest) -> None:
    mesh = trimesh.creation.box(extents=BOX)
    mesh.update_faces(np.arange(len(mesh.faces)) != 0)  # one triangle missing: 3 boundary edges
    path = tmp_path / "open.stl"
    mesh.export(path)
    with pytest.raises(IngestError) as caught:
        run_ingest(path, format="stl")
    assert caught.value.failure is Failure.PRECONDITION
    assert "3 boundary edges" in caught.value.reason


def test_zero_volume_is_refused(tmp_path, run_ingest) -> None:
    # A closed but flat surface: a box squashed to zero height.
    mesh = trimesh.creation.box(extents=(10, 10, 1))
    vertices = mesh.vertices.copy()
    vertices[:, 2] = 0.0
    path = tmp_path / "flat.obj"
    path.write_text(
        "".join(f"v {a} {b} {c}\n" for a, b, c in vertices)
        + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in mesh.faces)
    )
    with pytest.raises(IngestError) as caught:
        ingest(IngestRequest(path, "obj", "mm", tmp_path, "cnc-milling"))
    assert caught.value.failure is Failure.PRECONDITION


def test_overlapping_bodies_are_interference_not_self_intersection(tmp_path, run_ingest) -> None:
    # Two overlapping boxes in one file, not unioned: each body is closed and fine on its own;
    # they share a 10 mm cube.
    a = trimesh.creation.box(extents=(20, 20, 20))
    b = trimesh.creation.box(extents=(20, 20, 20))
    b.apply_translation((10, 10, 10))
    path = tmp_path / "overlap.stl"
    trimesh.util.concatenate([a, b]).export(path)
    result = run_ingest(path, format="stl")
    assert "self-intersection" not in _ids(result)
    (found,) = [f for f in result.findings if f.rule_id == "interference"]
    assert found.severity is Severity.ERROR and found.measured == pytest.approx(1000.0, rel=1e-4)
    assert found.location is not None
    assert found.location.point == pytest.approx((5.0, 5.0, 5.0), abs=1e-3)
    assert result.properties.bodies == 2
    assert [p.volume_mm3 for p in result.properties.solid_properties] == pytest.approx([8000] * 2)
    single = tmp_path / "single.stl"
    a.export(single)
    assert {"self-intersection", "interference"}.isdisjoint(_ids(run_ingest(single, format="stl")))


def test_winding_numbers_find_overlapping_material() -> None:
    # The same two boxes taken as one surface: rays through the shared cube read winding 2.
    a = trimesh.creation.box(extents=(20, 20, 20))
    b = trimesh.creation.box(extents=(20, 20, 20))
    b.apply_translation((10, 10, 10))
    both = trimesh.Trimesh(np.vstack([a.vertices, b.vertices]), np.vstack([a.faces, b.faces + 8]))
    assert len(_winding_bad(both, 200, np.random.default_rng(1))) >= 2
    assert _winding_bad(a, 200, np.random.default_rng(1)) == []


def test_corrupt_step_is_refused(tmp_path, run_ingest) -> None:
    path = tmp_path / "bad.step"
    path.write_bytes(b"ISO-10303-21;\nHEADER;\nthis is not step\nEND-ISO-10303-21;\n")
    with pytest.raises(IngestError) as caught:
        run_ingest(path)
    assert caught.value.failure is Failure.INVALID
    assert "STEP" in caught.value.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"units": "furlong"}, "unknown units 'furlong'"),
        ({"rule_set": "welding"}, "unknown rule set 'welding'"),
        ({"material": "unobtainium"}, "unknown material 'unobtainium'"),
        ({"rule_overrides": {"max-overhang": 30.0}}, "max-overhang"),
        ({"rule_overrides": {"min-wall": -1.0}}, "min-wall"),
    ],
)
def test_bad_requests(parts, tmp_path, change, words) -> None:
    request = {"units": "mm", "rule_set": "cnc-milling", **change}
    with pytest.raises(IngestError) as caught:
        ingest(IngestRequest(parts["box"], "step", work_dir=tmp_path, **request))
    assert caught.value.failure is Failure.INVALID
    assert words in caught.value.reason
    assert list(tmp_path.iterdir()) == []


def test_thumbnail_shows_the_part_centred(parts, run_ingest) -> None:
    result = run_ingest(parts["bracket"])
    image = np.asarray(Image.open(result.artifacts["thumbnail.png"]).convert("RGB")).astype(int)
    assert image.shape == (256, 256, 3)
    background = np.array([245, 246, 248])
    part = np.abs(image - background).sum(axis=2) > 30
    assert 0.1 < part.mean() < 0.8
    rows, cols = np.nonzero(part)
    assert abs(rows.mean() - 128) < 40 and abs(cols.mean() - 128) < 40
    # Lambert shading: the faces of the part are not one flat colour.
    assert len(np.unique(image[part].sum(axis=1) // 8)) > 5


def test_step_without_a_solid_is_refused(tmp_path, run_ingest) -> None:
    import cadquery as cq

    path = tmp_path / "sheet.step"
    face = cq.Face.makeFromWires(
        cq.Wire.makePolygon([(0, 0, 0), (10, 0, 0), (10, 10, 0)], close=True)
    )
    cq.exporters.export(face, str(path), exportType="STEP")
    with pytest.raises(IngestError) as caught:
        run_ingest(path)
    assert caught.value.failure is Failure.PRECONDITION
    assert "no solid" in caught.value.reason and "1 loose faces" in caught.value.reason
