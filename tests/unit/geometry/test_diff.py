"""Geometric diff of real CadQuery parts: volumes, regions and faces against values computed
here, the mesh path against the exact one, the DFM delta, the pictures, and bad input."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from services.design.geometry import DiffInput, Failure, IngestError, diff, materials
from services.design.geometry.diff import findings_delta, parameter_deltas
from services.design.geometry.types import Finding, Location, Severity
from tests.unit.geometry.conftest import HOLE_D, plate

HOLE = math.pi * (HOLE_D / 2) ** 2 * 10  # a through hole in the 10 mm plate
BOSS_D, BOSS_H = 12.0, 8.0
BOSS = math.pi * (BOSS_D / 2) ** 2 * BOSS_H


@pytest.fixture
def moved_and_boss(revision):
    """A: one hole at (20, 0). B: the hole moved to (-20, 0) and a boss at (20, 30)."""
    a = revision(plate())
    b = revision(plate(holes=((-20.0, 0.0, HOLE_D),), bosses=((20.0, 30.0, BOSS_D, BOSS_H),)))
    return a, b


def test_moved_hole_and_boss_exact(moved_and_boss, tmp_path: Path) -> None:
    a, b = moved_and_boss
    result = diff(a, b, tmp_path)
    assert result.exact
    assert result.removed_volume_mm3 == pytest.approx(HOLE, rel=1e-3)
    assert result.added_volume_mm3 == pytest.approx(HOLE + BOSS, rel=1e-3)
    # Regions, largest first: the boss, then the filled old hole; the new hole is removed.
    boss, filled = result.added
    assert boss.volume_mm3 == pytest.approx(BOSS, rel=1e-3)
    assert boss.centroid == pytest.approx((20, 30, 5 + BOSS_H / 2), abs=1e-3)
    assert boss.bbox_min == pytest.approx((14, 24, 5), abs=1e-3)
    assert boss.bbox_max == pytest.approx((26, 36, 5 + BOSS_H), abs=1e-3)
    assert filled.volume_mm3 == pytest.approx(HOLE, rel=1e-3)
    assert filled.centroid == pytest.approx((20, 0, 0), abs=1e-3)
    (hole,) = result.removed
    assert hole.centroid == pytest.approx((-20, 0, 0), abs=1e-3)
    assert hole.bbox_min == pytest.approx((-25, -5, -5), abs=1e-3)
    # Faces: the four sides unchanged; top and bottom modified (other holes); the old hole
    # wall removed; the new hole wall, the boss wall and the boss top added.
    kinds = sorted((c.change, (c.before or c.after).surface) for c in result.faces)  # type: ignore[union-attr]
    assert kinds == [
        ("added", "cylinder"),
        ("added", "cylinder"),
        ("added", "plane"),
        ("modified", "plane"),
        ("modified", "plane"),
        ("removed", "cylinder"),
    ]
    assert result.unchanged_faces == 4 == len(result.face_map)
    # Deltas: B - A.
    assert result.volume_delta_mm3 == pytest.approx(BOSS, rel=1e-3)
    density = materials()[b.properties.material].density_g_cm3
    assert result.mass_delta_g == pytest.approx(BOSS / 1000 * density, rel=1e-3)
    assert result.bbox_max_delta == pytest.approx((0, 0, BOSS_H), abs=1e-3)
    assert result.bbox_min_delta == pytest.approx((0, 0, 0), abs=1e-3)
    # The boss top is 8 mm from A's surface; the filled hole's axis 5 mm from its wall.
    assert result.max_deviation_mm == pytest.approx(BOSS_H, rel=0.02)
    assert 0 < result.rms_deviation_mm < result.max_deviation_mm
    assert result.parameters == ()


def _colour_pixels(png: Path) -> tuple[int, int]:
    """Green and red pixels in the views (above the legend)."""
    with Image.open(png) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)[:320]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    green = (g > r + 60) & (g > b + 60)
    red = (r > g + 60) & (r > b + 60)
    return int(green.sum()), int(red.sum())


def test_pictures_show_added_and_removed(moved_and_boss, tmp_path: Path) -> None:
    a, b = moved_and_boss
    result = diff(a, b, tmp_path)
    png, glb = result.artifacts["diff.png"], result.artifacts["diff.glb"]
    assert png.parent == tmp_path and glb.parent == tmp_path
    with Image.open(png) as image:
        assert image.width == 3 * 320 and image.height > 320
    green, red = _colour_pixels(png)
    assert green > 500 and red > 100
    scene = trimesh.load_scene(str(glb))
    names = sorted(scene.geometry)
    assert names == ["added-0", "added-1", "removed-0", "unchanged-0"]
    added = scene.geometry["added-0"]
    assert tuple(added.visual.vertex_colors[0][:3]) == (40, 185, 60)
    assert added.volume == pytest.approx(BOSS, rel=0.02)
    # Nothing changed: no colour at all.
    same = diff(a, a, tmp_path)
    assert _colour_pixels(same.artifacts["diff.png"]) == (0, 0)


def test_mesh_path_gives_the_same_volumes(revision, tmp_path: Path) -> None:
    a = revision(plate(), mesh_only=True)
    b = revision(
        plate(holes=((-20.0, 0.0, HOLE_D),), bosses=((20.0, 30.0, BOSS_D, BOSS_H),)),
        mesh_only=True,
    )
    result = diff(a, b, tmp_path)
    assert not result.exact
    assert result.faces == () and result.face_map == {}
    assert result.removed_volume_mm3 == pytest.approx(HOLE, rel=1e-3)
    assert result.added_volume_mm3 == pytest.approx(HOLE + BOSS, rel=1e-3)
    assert [r.volume_mm3 for r in result.added] == pytest.approx([BOSS, HOLE], rel=1e-3)
    assert result.added[0].centroid == pytest.approx((20, 30, 5 + BOSS_H / 2), abs=0.01)
    assert result.removed[0].centroid == pytest.approx((-20, 0, 0), abs=0.01)
    assert result.max_deviation_mm == pytest.approx(BOSS_H, rel=0.02)


def test_mixed_inputs_use_the_mesh_path(revision, tmp_path: Path) -> None:
    a = revision(plate())
    b = revision(plate(holes=((-20.0, 0.0, HOLE_D),)), mesh_only=True)
    result = diff(a, b, tmp_path)
    assert not result.exact
    # A's mesh.glb is the ingest tessellation (coarse), so the volumes are approximate.
    assert result.removed_volume_mm3 == pytest.approx(HOLE, rel=0.03)
    assert result.added_volume_mm3 == pytest.approx(HOLE, rel=0.03)


# Pockets on the left half, bosses on the right: the edits never touch each other.
pockets = st.tuples(
    st.floats(-35, -15), st.floats(-30, 30), st.floats(4, 20), st.floats(4, 20), st.floats(1, 8)
)
bosses = st.tuples(st.floats(15, 35), st.floats(-35, 35), st.floats(3, 15), st.floats(1, 10))


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking a failure would take many minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pocket=st.one_of(st.none(), pockets), boss=st.one_of(st.none(), bosses))
def test_properties_of_random_edits(revision, tmp_path: Path, pocket, boss) -> None:
    """diff(a, a) is empty; what a -> b adds, b -> a removes; the volumes are the edits'."""
    a = revision(plate(holes=()))
    b = revision(
        plate(holes=(), pockets=(pocket,) if pocket else (), bosses=(boss,) if boss else ())
    )
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    for name in ("same", "ab", "ba"):
        (work / name).mkdir()
    same = diff(a, a, work / "same")
    assert same.added == () and same.removed == () and same.faces == ()
    assert same.max_deviation_mm == 0 and same.unchanged_faces == len(same.face_map) == 6
    forward, backward = diff(a, b, work / "ab"), diff(b, a, work / "ba")
    assert forward.added_volume_mm3 == pytest.approx(backward.removed_volume_mm3, rel=1e-6)
    assert forward.removed_volume_mm3 == pytest.approx(backward.added_volume_mm3, rel=1e-6)
    removed = pocket[2] * pocket[3] * pocket[4] if pocket else 0.0
    added = math.pi * (boss[2] / 2) ** 2 * boss[3] if boss else 0.0
    assert forward.removed_volume_mm3 == pytest.approx(removed, rel=1e-3)
    assert forward.added_volume_mm3 == pytest.approx(added, rel=1e-3)
    assert len(forward.removed) == (pocket is not None)
    assert len(forward.added) == (boss is not None)


def test_thin_wall_introduced_then_resolved(revision, tmp_path: Path) -> None:
    """A pocket leaving a 0.5 mm wall (under cnc-milling's 0.8 mm) is a finding introduced;
    widening the wall back resolves it. Unchanged findings are in neither list."""
    a = revision(plate(holes=((20.0, 0.0, 0.6),), pockets=((-30.0, 0.0, 20, 20, 4),)))
    thin = revision(plate(holes=((20.0, 0.0, 0.6),), pockets=((-30.0, 0.0, 20, 20, 9.5),)))
    fixed = revision(plate(holes=((20.0, 0.0, 0.6),), pockets=((-30.0, 0.0, 20, 20, 6),)))
    for d in ("ab", "bc"):
        (tmp_path / d).mkdir()
    forward = diff(a, thin, tmp_path / "ab")
    assert [f.rule_id for f in forward.findings_introduced] == ["min-wall"]
    assert forward.findings_resolved == ()
    # The Ø0.6 hole under min-hole (1 mm) is in both and moved nowhere: not reported.
    assert any(f.rule_id == "min-hole" for f in a.findings)
    back = diff(thin, fixed, tmp_path / "bc")
    assert [f.rule_id for f in back.findings_resolved] == ["min-wall"]
    assert back.findings_introduced == ()


def test_findings_follow_faces_and_points() -> None:
    def finding(rule: str, point, face=None) -> Finding:
        return Finding(rule, Severity.ERROR, "m", location=Location(point, face))

    a = [finding("min-hole", (0, 0, 0), 3), finding("min-wall", (5, 5, 5)), finding("x", (0, 0, 0))]
    b = [
        finding("min-hole", (9, 9, 9), 7),  # face 3 became face 7: the same finding
        finding("min-wall", (5.05, 5, 5)),  # a sampled point that moved a little
        finding("min-hole", (0, 0, 0), 8),  # a face A did not have
    ]
    b.append(Finding("mass", Severity.ERROR, "heavy"))
    introduced, resolved = findings_delta(a, b, {3: 7}, radius=0.5)
    assert [(f.rule_id, f.location and f.location.face_id) for f in introduced] == [
        ("min-hole", 8),
        ("mass", None),
    ]
    assert [f.rule_id for f in resolved] == ["x"]


def test_parameter_deltas() -> None:
    deltas = parameter_deltas({"w": 10.0, "n": 4, "old": True}, {"w": 12.0, "n": 4, "new": "a"})
    assert [(d.name, d.before, d.after) for d in deltas] == [
        ("new", None, "a"),
        ("old", True, None),
        ("w", 10.0, 12.0),
    ]


def test_open_mesh_cannot_be_diffed(revision, tmp_path: Path) -> None:
    a = revision(plate(holes=()), mesh_only=True)
    box = trimesh.creation.box((100, 100, 10))
    box.update_faces(np.arange(len(box.faces)) != 0)  # one triangle missing
    path = tmp_path / "open.stl"
    box.export(str(path))
    b = DiffInput(path, None, (), a.properties)
    (tmp_path / "w").mkdir()
    with pytest.raises(IngestError) as error:
        diff(a, b, tmp_path / "w")
    assert error.value.failure is Failure.PRECONDITION
    assert "closed" in error.value.reason


@pytest.mark.parametrize("tolerance", [0.0, -1.0, float("nan")])
def test_bad_tolerance(moved_and_boss, tmp_path: Path, tolerance: float) -> None:
    a, b = moved_and_boss
    with pytest.raises(IngestError) as error:
        diff(a, b, tmp_path, tolerance)
    assert error.value.failure is Failure.INVALID
