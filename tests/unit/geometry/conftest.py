"""Real parts built with CadQuery, written once per session as STEP files, and an ingest helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.design.geometry import DiffInput, IngestRequest, IngestResult, ingest

BOX = (40.0, 30.0, 20.0)
BRACKET_HOLES = 4
BRACKET_HOLE_DIAMETER = 5.0
THIN_WALL = 0.5
DRAFT_DEG = 3.0


def _parts() -> dict[str, Any]:
    import cadquery as cq

    box = cq.Workplane().box(*BOX)
    # An L bracket: a base plate with filleted corners and four holes, and an upright.
    base = (
        cq.Workplane()
        .box(60, 40, 6)
        .edges("|Z")
        .fillet(3)
        .faces(">Z")
        .workplane()
        .rarray(40, 24, 2, 2)
        .hole(BRACKET_HOLE_DIAMETER)
    )
    bracket = base.union(cq.Workplane().box(6, 40, 40).translate((-27, 0, 23)))
    # A cup: a box shelled to a wall thinner than every process allows.
    thin = cq.Workplane().box(40, 40, 20).faces(">Z").shell(-THIN_WALL)
    # A mushroom: a stem under a wide cap, whose underside overhangs at 90 degrees.
    overhang = (
        cq.Workplane()
        .box(10, 10, 20, centered=(True, True, False))
        .faces(">Z")
        .workplane()
        .rect(40, 40)
        .extrude(5)
    )
    # A frustum with 3 degrees of draft on every side face.
    drafted = cq.Workplane().rect(40, 40).extrude(20, taper=DRAFT_DEG)
    return {"box": box, "bracket": bracket, "thin": thin, "overhang": overhang, "drafted": drafted}


@pytest.fixture(scope="session")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import cadquery as cq

    out = tmp_path_factory.mktemp("parts")
    paths = {}
    for name, part in _parts().items():
        paths[name] = out / f"{name}.step"
        cq.exporters.export(part, str(paths[name]), exportType="STEP")
    return paths


@pytest.fixture
def run_ingest(tmp_path: Path) -> Callable[..., IngestResult]:
    counter = iter(range(1000))

    def run(
        source: Path, format: str = "step", rule_set: str = "cnc-milling", **kw
    ) -> IngestResult:
        work = tmp_path / f"work{next(counter)}"
        work.mkdir()
        return ingest(IngestRequest(source, format, kw.pop("units", ""), work, rule_set, **kw))

    return run


# --- revisions for the diff and merge tests ---

PLATE = (100.0, 100.0, 10.0)
HOLE_D = 10.0


def plate(
    holes: tuple[tuple[float, float, float], ...] = ((20.0, 0.0, HOLE_D),),
    bosses: tuple[tuple[float, float, float, float], ...] = (),
    pockets: tuple[tuple[float, float, float, float, float], ...] = (),
) -> Any:
    """A 100 x 100 x 10 plate centred on the origin (top at z = 5): through holes (x, y, d),
    bosses standing on the top (x, y, d, height) and pockets from the top (x, y, w, l, depth)."""
    import cadquery as cq

    part = cq.Workplane().box(*PLATE)
    for x, y, d in holes:
        part = part.cut(cq.Workplane().cylinder(PLATE[2] + 2, d / 2).translate((x, y, 0)))
    for x, y, d, h in bosses:
        part = part.union(cq.Workplane().cylinder(h + 1, d / 2).translate((x, y, 5 + (h - 1) / 2)))
    for x, y, w, length, depth in pockets:
        part = part.cut(
            cq.Workplane().box(w, length, depth + 1).translate((x, y, 5 - depth / 2 + 0.5))
        )
    return part


@pytest.fixture
def revision(tmp_path: Path) -> Callable[..., DiffInput]:
    """A CadQuery part (or a STEP file) ingested as a revision the diff engine takes. With
    `mesh_only` the revision is a fine STL of the part, as a mesh upload would be."""
    counter = iter(range(1000))

    def make(
        part: Any,
        rule_set: str = "cnc-milling",
        mesh_only: bool = False,
        script: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> DiffInput:
        import cadquery as cq

        work = tmp_path / f"rev{next(counter)}"
        work.mkdir()
        step = work / "part.step"
        cq.exporters.export(part, str(step), exportType="STEP")
        result = ingest(IngestRequest(step, "step", "mm", work, rule_set))
        if mesh_only:
            stl = work / "part.stl"
            cq.exporters.export(
                part, str(stl), exportType="STL", tolerance=0.002, angularTolerance=0.02
            )
            return DiffInput(stl, None, tuple(result.findings), result.properties)
        return DiffInput(
            result.artifacts["mesh.glb"],
            step,
            tuple(result.findings),
            result.properties,
            parameters or {},
            script,
        )

    return make
