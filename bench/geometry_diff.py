"""Geometry diff and merge benchmarks.

diff-mesh-1m: `diff` of two 1.31M-triangle meshes (an icosphere of radius 50 mm and the same
with a smooth bump pushed out around its north pole, about 5% of the triangles moved), given as
mesh.glb files (no B-rep), end to end: loading both GLBs, finding the changed triangles, the
local manifold3d booleans, regions, sampled deviation, diff.png and diff.glb. Baseline, in the
same process: raw manifold3d on the same meshes already in memory, building both Manifolds and
evaluating A - B and B - A (volumes). Target: at most 2 s, ratio at most 1.5x.

diff-plate: `diff` (exact B-rep booleans, face matching, deviation, pictures) of a 200 x 200 x 10
plate with 144 holes of 8 mm against a revision that moves one hole, removes one and adds a boss,
both ingested first (outside the timing); best of two rounds. Target: at most 5 s.

merge-plate: `merge` of that plate with a second revision making a disjoint edit (a pocket in a
far corner and one more hole): both diffs, the conflict check and the merged STEP; best of two
rounds. Target: at most 10 s.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Benchmark, Report, Table

log = logging.getLogger(__name__)

SUBDIVISIONS = 8  # 20 * 4**8 = 1,310,720 triangles
MESH_TARGET_S = 2.0
MESH_TARGET_RATIO = 1.5
PLATE_TARGET_S = 5.0
MERGE_TARGET_S = 10.0
ROUNDS = 1  # the baseline alone takes 5-15 s at 1.3M triangles
PLATE_ROUNDS = 2


def _properties(mesh: Any) -> Any:
    from services.design.geometry.types import Properties

    lo, hi = mesh.bounds
    return Properties(
        volume_mm3=float(mesh.volume),
        area_mm2=float(mesh.area),
        bbox_min=(float(lo[0]), float(lo[1]), float(lo[2])),
        bbox_max=(float(hi[0]), float(hi[1]), float(hi[2])),
        center_of_mass=(0.0, 0.0, 0.0),
        mass_g=None,
        material=None,
        triangles=len(mesh.faces),
        is_brep=False,
    )


def _spheres() -> tuple[Any, Any]:
    import trimesh

    a = trimesh.creation.icosphere(subdivisions=SUBDIVISIONS, radius=50.0)
    v = np.array(a.vertices)
    # A smooth radial bump over the cap z > 0.9 R: still star-shaped, so still a valid solid.
    lift = np.clip((v[:, 2] / 50.0 - 0.9) / 0.1, 0.0, 1.0)
    b = trimesh.Trimesh(v * (1.0 + 0.05 * lift**2)[:, None], a.faces, process=False)
    return a, b


def _preload() -> None:
    """Imports the engine's libraries outside the timings (seconds on a cold start)."""
    import cadquery  # noqa: F401
    import manifold3d  # noqa: F401
    import scipy.spatial  # noqa: F401
    import trimesh  # noqa: F401


def run_diff_mesh() -> Report:
    import manifold3d

    _preload()
    from services.design.geometry import DiffInput, diff

    a, b = _spheres()
    ours: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for name, mesh in (("a", a), ("b", b)):
            path = Path(tmp) / f"{name}.glb"
            mesh.export(str(path), file_type="glb")
            inputs.append(DiffInput(path, None, (), _properties(mesh)))
        for round_ in range(ROUNDS):
            work = Path(tmp) / f"work{round_}"
            work.mkdir()
            start = time.perf_counter()
            result = diff(inputs[0], inputs[1], work)
            ours.append(time.perf_counter() - start)
            if round_ == 0:
                start = time.perf_counter()
                solids = [
                    manifold3d.Manifold(
                        manifold3d.Mesh(
                            vert_properties=np.array(m.vertices, dtype=np.float32),
                            tri_verts=np.array(m.faces, dtype=np.uint32),
                        )
                    )
                    for m in (a, b)
                ]
                raw_volumes = ((solids[0] - solids[1]).volume(), (solids[1] - solids[0]).volume())
                raw.append(time.perf_counter() - start)
            log.info("diff-mesh-1m round %d: diff %.2f s", round_ + 1, ours[-1])
    best, baseline = min(ours), min(raw)
    ratio = best / baseline
    return Report(
        name="diff-mesh-1m",
        title=f"diff of two {len(a.faces):,}-triangle meshes (a local bump)",
        tables=[
            Table(
                ["subject", "best s", "all rounds s"],
                [
                    [
                        "raw manifold3d: build both, A-B and B-A (baseline, in memory)",
                        f"{baseline:.2f}",
                        _fmt(raw),
                    ],
                    [
                        "diff (GLB load, local booleans, deviation, PNG, GLB)",
                        f"{best:.2f}",
                        _fmt(ours),
                    ],
                ],
            ),
            Table(["ratio", "best"], [["diff / raw manifold3d", f"{ratio:.2f}x"]]),
            Table(
                ["volume mm³", "diff", "raw manifold3d"],
                [
                    ["removed", f"{result.removed_volume_mm3:.1f}", f"{raw_volumes[0]:.1f}"],
                    ["added", f"{result.added_volume_mm3:.1f}", f"{raw_volumes[1]:.1f}"],
                ],
            ),
        ],
        notes=[
            f"target <= {MESH_TARGET_S:g} s: {'met' if best <= MESH_TARGET_S else 'NOT met'}"
            f" ({best:.2f} s)",
            f"target ratio <= {MESH_TARGET_RATIO:g}x: "
            f"{'met' if ratio <= MESH_TARGET_RATIO else 'NOT met'} ({ratio:.2f}x)",
        ],
    )


def plates() -> dict[str, Any]:
    """The base plate (200 x 200 x 10, a 12 x 12 grid of 8 mm holes), "ours" (one hole moved,
    one removed, a boss added) and "theirs" (a corner pocket and one more hole, disjoint)."""
    import cadquery as cq

    pitch = 15.0
    centres = [(pitch * (i - 5.5), pitch * (j - 5.5)) for i in range(12) for j in range(12)]

    def plate(holes: list[tuple[float, float]]) -> Any:
        return cq.Workplane().box(200, 200, 10).faces(">Z").workplane().pushPoints(holes).hole(8)

    base = plate(centres)
    moved = [c for c in centres if c not in ((-82.5, -82.5), (-82.5, -67.5))]
    ours = plate([*moved, (-75.0, -75.0)]).union(
        cq.Workplane().cylinder(10, 6).translate((0.0, 0.0, 10.0))
    )
    theirs = plate([*centres, (75.0, 75.0)]).cut(
        cq.Workplane().box(8, 8, 4).translate((95.0, -95.0, 4.0))
    )
    return {"base": base, "ours": ours, "theirs": theirs}


def _ingested(tmp: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The named plates ingested (outside the timings), as the diff engine's inputs."""
    import cadquery as cq

    from services.design.geometry import DiffInput, IngestRequest, ingest

    out = {}
    parts = plates()
    for name in names:
        part = parts[name]
        work = tmp / name
        work.mkdir()
        step = work / "part.step"
        cq.exporters.export(part, str(step), exportType="STEP")
        result = ingest(IngestRequest(step, "step", "mm", work, "cnc-milling"))
        out[name] = DiffInput(
            result.artifacts["mesh.glb"], step, tuple(result.findings), result.properties
        )
    return out


def run_diff_plate() -> Report:
    from services.design.geometry import diff

    _preload()
    with tempfile.TemporaryDirectory() as tmp:
        revisions = _ingested(Path(tmp), ("base", "ours"))
        times = []
        for round_ in range(PLATE_ROUNDS):
            work = Path(tmp) / f"diff{round_}"
            work.mkdir()
            start = time.perf_counter()
            result = diff(revisions["base"], revisions["ours"], work)
            times.append(time.perf_counter() - start)
    seconds = min(times)
    changes = (
        f"{len(result.added)} added / {len(result.removed)} removed regions, "
        f"{len(result.faces)} face changes, {result.unchanged_faces} faces unchanged"
    )
    return Report(
        name="diff-plate",
        title="B-rep diff of a 200 x 200 x 10 plate with 144 holes: one moved, one removed, a boss",
        tables=[
            Table(
                ["subject", "best s", "all rounds s", "result"],
                [["diff", f"{seconds:.2f}", _fmt(times), changes]],
            )
        ],
        notes=[
            f"target <= {PLATE_TARGET_S:g} s: {'met' if seconds <= PLATE_TARGET_S else 'NOT met'}"
        ],
    )


def run_merge_plate() -> Report:
    from services.design.geometry import merge

    _preload()
    with tempfile.TemporaryDirectory() as tmp:
        revisions = _ingested(Path(tmp), ("base", "ours", "theirs"))
        times = []
        for round_ in range(PLATE_ROUNDS):
            work = Path(tmp) / f"merge{round_}"
            work.mkdir()
            start = time.perf_counter()
            merged = merge(revisions["base"], revisions["ours"], revisions["theirs"], work)
            times.append(time.perf_counter() - start)
    seconds = min(times)
    outcome = "conflict" if merged.conflict else f"merged ({merged.merged_format})"
    return Report(
        name="merge-plate",
        title="three-way merge of that plate with a disjoint edit (pocket, extra hole)",
        tables=[
            Table(
                ["subject", "best s", "all rounds s", "result"],
                [["merge", f"{seconds:.2f}", _fmt(times), outcome]],
            )
        ],
        notes=[
            f"target <= {MERGE_TARGET_S:g} s: "
            f"{'met' if seconds <= MERGE_TARGET_S and not merged.conflict else 'NOT met'}"
        ],
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


MESH_BENCHMARK = Benchmark(
    name="diff-mesh-1m",
    summary="diff of two 1.3M-triangle meshes vs raw manifold3d differences both ways",
    run=run_diff_mesh,
)
PLATE_BENCHMARK = Benchmark(
    name="diff-plate",
    summary="B-rep diff of a 144-hole plate against a three-change revision",
    run=run_diff_plate,
)
MERGE_BENCHMARK = Benchmark(
    name="merge-plate",
    summary="three-way merge of the 144-hole plate with a disjoint edit",
    run=run_merge_plate,
)
