"""The pictures of a diff: `diff.png` (three views) and `diff.glb` (a coloured scene).

The new revision is drawn grey, material added by the change green and material removed red.
Removed material is where the new revision is empty (a filled-in hole shows as a red plug); both
coloured kinds are drawn slightly nearer the camera than the grey surface, so a face they share
with it (the top of a boss, the rim of a new hole) shows their colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from services.design.geometry.mesh_diff import Mesh, compact
from services.design.geometry.render import LIGHT, draw

GREY = (150.0, 150.0, 150.0)
GREEN = (40.0, 185.0, 60.0)
RED = (215.0, 45.0, 45.0)
VIEWS = ((1.0, -1.0, 1.0), (-1.0, 1.0, 1.0), (1.0, 1.0, -1.0))
VIEW_SIZE = 320
_LEGEND = 22
# Above this many triangles the grey context is drawn from a vertex-clustered copy (cells of
# 1/_CELLS of its size, a few pixels): a 1M-triangle mesh would take seconds per view. The
# coloured regions, small and the point of the picture, only above _MAX_REGION_TRIANGLES.
_MAX_TRIANGLES = 50_000
_MAX_REGION_TRIANGLES = 300_000
_CELLS = 100


def simplified(mesh: Mesh, limit: int = _MAX_TRIANGLES, cells: int = _CELLS) -> tuple[Mesh, float]:
    """The mesh with its vertices merged per grid cell (mean position), degenerate triangles
    dropped, and the cell size (how far a surface may have moved)."""
    if len(mesh.faces) <= limit:
        return mesh, 0.0
    lo = mesh.vertices.min(axis=0)
    size = float(np.ptp(mesh.vertices, axis=0).max()) / cells
    cell = np.floor((mesh.vertices - lo) / size).astype(np.int64)
    key = (cell[:, 0] * (cells + 1) + cell[:, 1]) * (cells + 1) + cell[:, 2]
    _, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse).astype(np.float64)
    centre = np.stack(
        [np.bincount(inverse, weights=mesh.vertices[:, k]) / count for k in range(3)], axis=1
    )
    faces = inverse[mesh.faces]
    keep = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    )
    return Mesh(centre, faces[keep]), size * float(np.sqrt(3.0))


def _scene(
    unchanged: Mesh, added: Sequence[Mesh], removed: Sequence[Mesh]
) -> tuple[Mesh, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    parts = [(unchanged, GREY)] + [(m, GREEN) for m in added] + [(m, RED) for m in removed]
    vertices, faces, colours = [], [], []
    offset = 0
    for mesh, colour in parts:
        vertices.append(mesh.vertices)
        faces.append(mesh.faces + offset)
        colours.append(np.tile(colour, (len(mesh.faces), 1)))
        offset += len(mesh.vertices)
    return (
        Mesh(np.concatenate(vertices), np.concatenate(faces)),
        np.concatenate(colours),
        np.repeat([0.0, 1.0], [len(unchanged.faces), sum(len(f) for f in faces[1:])]),
    )


def write_png(path: Path, unchanged: Mesh, added: Sequence[Mesh], removed: Sequence[Mesh]) -> None:
    context, moved = simplified(unchanged)
    scene, colours, coloured = _scene(
        compact(context),
        [simplified(m, _MAX_REGION_TRIANGLES)[0] for m in added],
        [simplified(m, _MAX_REGION_TRIANGLES)[0] for m in removed],
    )
    span = float(np.ptp(scene.vertices, axis=0).max()) if len(scene.vertices) else 1.0
    bias = coloured * (2e-3 * span + moved)
    sheet = Image.new("RGB", (VIEW_SIZE * len(VIEWS), VIEW_SIZE + _LEGEND), (245, 246, 248))
    for i, view in enumerate(VIEWS):
        picture = draw(
            scene.vertices,
            scene.faces,
            VIEW_SIZE,
            closed=True,
            colours=colours,
            view=view,
            depth_bias=bias,
            # Lit from the camera's side of the part, so a view from below is not in shadow.
            light=(LIGHT[0], LIGHT[1], math.copysign(LIGHT[2], view[2])),
        )
        sheet.paste(picture, (i * VIEW_SIZE, 0))
    pen = ImageDraw.Draw(sheet)
    x = 8
    for label, colour in (("unchanged", GREY), ("added", GREEN), ("removed", RED)):
        pen.rectangle((x, VIEW_SIZE + 5, x + 12, VIEW_SIZE + 17), fill=_rgb(colour))
        pen.text((x + 17, VIEW_SIZE + 5), label, fill=(40, 40, 40))
        x += 110
    sheet.save(path, "PNG")


def write_glb(path: Path, unchanged: Mesh, added: Sequence[Mesh], removed: Sequence[Mesh]) -> None:
    import trimesh

    scene = trimesh.Scene()
    # Like the picture, a large grey context is vertex-clustered: the revision's own mesh.glb
    # has it in full.
    for name, meshes, colour in (
        ("unchanged", [compact(simplified(unchanged)[0])], GREY),
        ("added", added, GREEN),
        ("removed", removed, RED),
    ):
        for i, mesh in enumerate(meshes):
            if len(mesh.faces) == 0:
                continue
            rgba = np.tile(np.array([*_rgb(colour), 255], dtype=np.uint8), (len(mesh.vertices), 1))
            part = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=rgba, process=False)
            scene.add_geometry(part, geom_name=f"{name}-{i}")
    scene.export(str(path), file_type="glb")  # type: ignore[no-untyped-call]


def _rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    return (int(colour[0]), int(colour[1]), int(colour[2]))
