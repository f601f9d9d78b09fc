"""Three-way merge of real parts: disjoint edits merge into the solid both edits make, edits of
the same place conflict with the overlap located, scripts merge by parameters and text."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trimesh
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.design.geometry import merge
from services.design.geometry.loaders import read_step
from tests.unit.geometry.conftest import HOLE_D, PLATE, plate

HOLE = math.pi * (HOLE_D / 2) ** 2 * 10


def _symmetric_difference(path: Path, expected: Any) -> float:
    merged = read_step(path)
    solid = expected.val()
    return float(merged.cut(solid).Volume() + solid.cut(merged).Volume())


# Pockets on the left, bosses on the right clear of the base plate's hole at (20, 0).
pockets = st.tuples(st.floats(-35, -15), st.floats(-30, 30), st.floats(4, 20), st.floats(1, 8))
bosses = st.tuples(st.floats(15, 35), st.floats(15, 35), st.floats(3, 15), st.floats(1, 10))


@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking a failure would take many minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pocket=pockets, boss=bosses)
def test_disjoint_edits_merge_into_both(revision, tmp_path: Path, pocket, boss) -> None:
    """Ours adds a boss, theirs cuts a pocket: the merge is the part with both, exactly."""
    x, y, w, depth = pocket
    pocket_edit = ((x, y, w, w, depth),)
    boss_edit = (boss,)
    base = revision(plate())
    ours = revision(plate(bosses=boss_edit))
    theirs = revision(plate(pockets=pocket_edit))
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    result = merge(base, ours, theirs, work)
    assert result.conflict is None
    assert result.merged == work / "merged.step" and result.merged_format == "step"
    both = plate(bosses=boss_edit, pockets=pocket_edit)
    merged = read_step(result.merged)
    assert merged.isValid() and len(merged.Solids()) == 1
    assert merged.Volume() == pytest.approx(both.val().Volume(), rel=1e-6)
    assert _symmetric_difference(result.merged, both) < 1e-6 * both.val().Volume()
    assert result.ours.added_volume_mm3 == pytest.approx(math.pi * (boss[2] / 2) ** 2 * boss[3])
    assert result.theirs.removed_volume_mm3 == pytest.approx(w * w * depth)
    assert (work / "ours" / "diff.png").exists() and (work / "theirs" / "diff.png").exists()


def test_disjoint_mesh_edits_merge(revision, tmp_path: Path) -> None:
    base = revision(plate(), mesh_only=True)
    ours = revision(plate(bosses=((30.0, 30.0, 12.0, 8.0),)), mesh_only=True)
    theirs = revision(plate(holes=((20.0, 0.0, HOLE_D), (-30.0, -30.0, 8.0))), mesh_only=True)
    result = merge(base, ours, theirs, tmp_path)
    assert result.conflict is None and result.merged_format == "stl"
    assert result.merged == tmp_path / "merged.stl"
    mesh = trimesh.load_mesh(str(result.merged))
    assert mesh.is_watertight
    expected = plate(holes=((20.0, 0.0, HOLE_D), (-30.0, -30.0, 8.0)), bosses=((30, 30, 12, 8),))
    assert mesh.volume == pytest.approx(expected.val().Volume(), rel=1e-3)


def test_edits_of_the_same_hole_conflict(revision, tmp_path: Path) -> None:
    """Ours moves the hole at (20, 0) to (-20, 0); theirs moves it 3 mm to (23, 0). Both fill
    the part of the old hole the new one (23, 0) does not cover: that crescent is the overlap
    volume; the other crescent, which theirs cuts, touches ours' filling."""
    base = revision(plate())
    ours = revision(plate(holes=((-20.0, 0.0, HOLE_D),)))
    theirs = revision(plate(holes=((23.0, 0.0, HOLE_D),)))
    result = merge(base, ours, theirs, tmp_path)
    conflict = result.conflict
    assert conflict is not None
    assert result.merged is None and result.merged_format is None
    r, d = HOLE_D / 2, 3.0
    lens = 2 * r**2 * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r**2 - d**2)
    assert conflict.overlap_volume_mm3 == pytest.approx((math.pi * r**2 - lens) * 10, rel=1e-3)
    assert conflict.bbox_min == pytest.approx((15, -5, -PLATE[2] / 2), abs=0.1)
    assert conflict.bbox_max == pytest.approx((25, 5, PLATE[2] / 2), abs=0.1)
    assert "(20.0, 0.0, 0.0)" in conflict.reason
    assert conflict.parameters == ()
    # Theirs: the moved hole's wall is a face of C in the overlap; ours: only the top and
    # bottom faces (modified), the hole being gone there.
    theirs_cylinders = [
        c.face_b for c in result.theirs.faces if c.after and c.after.surface == "cylinder"
    ]
    assert set(theirs_cylinders) <= set(conflict.faces_theirs) and theirs_cylinders
    assert len(conflict.faces_ours) == 2


def test_touching_edits_conflict(revision, tmp_path: Path) -> None:
    """Ours fills the hole, theirs widens it: the regions only touch (no common volume), yet
    they change the same surface, so they conflict."""
    base = revision(plate())
    ours = revision(plate(holes=()))
    theirs = revision(plate(holes=((20.0, 0.0, 14.0),)))
    conflict = merge(base, ours, theirs, tmp_path).conflict
    assert conflict is not None
    assert conflict.overlap_volume_mm3 == pytest.approx(0.0, abs=1e-6)
    assert conflict.bbox_min[0] <= 15 and conflict.bbox_max[0] >= 25


SCRIPT = """import cadquery as cq


def build(width: float = 40.0, hole: float = 6.0, height: float = 10.0):
    return cq.Workplane().box(width, 30, height).faces(">Z").workplane().hole(hole)
"""
FILLETED = SCRIPT.replace(".faces(", '.edges("|Z").fillet(2).faces(')
CHAMFERED = SCRIPT.replace(".faces(", '.edges("|Z").chamfer(2).faces(')


def _script_revision(revision, text: str, **values: float):
    namespace: dict[str, Any] = {}
    exec(compile(text, "<script>", "exec"), namespace)  # the test's own script
    parameters = {"width": 40.0, "hole": 6.0, "height": 10.0, **values}
    return revision(namespace["build"](**parameters), script=text, parameters=parameters)


def test_scripts_merge_different_parameters(revision, tmp_path: Path) -> None:
    base = _script_revision(revision, SCRIPT)
    ours = _script_revision(revision, SCRIPT, width=50.0)
    theirs = _script_revision(revision, SCRIPT, hole=8.0)
    result = merge(base, ours, theirs, tmp_path)
    assert result.conflict is None
    assert result.merged_format == "cadquery" and result.merged == tmp_path / "merged.py"
    assert result.merged.read_text() == SCRIPT
    assert result.merged_parameters == {"width": 50.0, "hole": 8.0, "height": 10.0}
    assert [(d.name, d.before, d.after) for d in result.ours.parameters] == [("width", 40, 50)]


def test_scripts_conflict_on_the_same_parameter(revision, tmp_path: Path) -> None:
    base = _script_revision(revision, SCRIPT)
    ours = _script_revision(revision, SCRIPT, width=50.0, hole=8.0)
    theirs = _script_revision(revision, SCRIPT, width=60.0, hole=8.0)
    result = merge(base, ours, theirs, tmp_path)
    assert result.conflict is not None and result.merged is None
    assert result.conflict.parameters == ("width",)
    assert "width" in result.conflict.reason


def test_scripts_take_the_one_changed_text(revision, tmp_path: Path) -> None:
    base = _script_revision(revision, SCRIPT)
    ours = _script_revision(revision, FILLETED)
    theirs = _script_revision(revision, SCRIPT, height=12.0)
    result = merge(base, ours, theirs, tmp_path)
    assert result.conflict is None and result.merged is not None
    assert result.merged.read_text() == FILLETED
    assert result.merged_parameters == {"width": 40.0, "hole": 6.0, "height": 12.0}
    chamfered = _script_revision(revision, CHAMFERED)
    (tmp_path / "again").mkdir()
    again = merge(base, ours, chamfered, tmp_path / "again")
    assert again.conflict is not None and again.merged is None
    assert "script's text" in again.conflict.reason
