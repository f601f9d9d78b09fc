"""Headless thumbnails: an isometric, flat-shaded render by a small numpy z-buffer rasterizer.

Triangles are projected orthographically from the (+1, -1, +1) side with +Z up, scaled to fit,
and rasterized in batches grouped by their pixel bounding box size, so the work stays vectorised
whether a mesh has ten large triangles or a million sub-pixel ones. The image is drawn at twice
the output size and downsampled, which smooths the edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

SIZE = 256
_SUPERSAMPLE = 2
_MARGIN = 0.08
_BACKGROUND = (245, 246, 248)
_BASE_COLOUR = np.array([90.0, 140.0, 200.0])
_LIGHT = np.array([0.4, -0.3, 0.85])
# Candidate pixels evaluated per batch: bounds memory at a few hundred MB.
_BATCH = 4_000_000


def _camera() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    forward = -np.array([1.0, -1.0, 1.0]) / np.sqrt(3.0)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return right, up, forward


def render(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    path: Path,
    size: int = SIZE,
    closed: bool = False,
) -> None:
    """Writes a PNG of the mesh to `path`, `size` pixels square. `closed`: the mesh is a closed
    surface with outward normals, so triangles facing away from the camera are hidden and
    skipped (half the work on a large mesh)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    res = size * _SUPERSAMPLE
    image = np.empty((res, res, 3), dtype=np.float64)
    image[:] = _BACKGROUND
    if len(f) and len(v):
        _rasterize(v, f, res, image, closed)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    picture.resize((size, size), Image.Resampling.LANCZOS).save(path, "PNG")


def _rasterize(
    v: npt.NDArray[np.float64],
    f: npt.NDArray[np.int64],
    res: int,
    image: npt.NDArray[np.float64],
    closed: bool,
) -> None:
    right, up, forward = _camera()
    sx, sy, depth = v @ right, v @ up, v @ forward
    span = max(float(np.ptp(sx)), float(np.ptp(sy)), 1e-12)
    scale = res * (1 - 2 * _MARGIN) / span
    # Centre the projection; image rows grow downwards, so y is flipped.
    px = (sx - (sx.min() + sx.max()) / 2) * scale + res / 2
    py = res / 2 - (sy - (sy.min() + sy.max()) / 2) * scale
    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    normals /= np.where(length > 0, length, 1.0)[:, None]
    if closed:
        front = normals @ forward < 0
        f, normals = f[front], normals[front]
    # Two-sided Lambert shading: face normals may point either way in imported meshes.
    facing = np.where((normals @ forward) > 0, -1.0, 1.0)
    light = _LIGHT / np.linalg.norm(_LIGHT)
    shade = 0.3 + 0.7 * np.clip((normals * facing[:, None]) @ light, 0.0, 1.0)

    x, y, z = px[f], py[f], depth[f]
    x0 = np.clip(np.floor(x.min(axis=1)), 0, res - 1).astype(np.int64)
    y0 = np.clip(np.floor(y.min(axis=1)), 0, res - 1).astype(np.int64)
    x1 = np.clip(np.ceil(x.max(axis=1)), 0, res - 1).astype(np.int64)
    y1 = np.clip(np.ceil(y.max(axis=1)), 0, res - 1).astype(np.int64)
    extent = np.maximum(x1 - x0, y1 - y0) + 1
    zbuffer = np.full(res * res, np.inf)
    colour = np.zeros(res * res)
    # Group triangles by the power of two that covers their box: each group tests a square of
    # candidate pixels per triangle.
    bucket = np.ceil(np.log2(extent)).astype(np.int64)
    for b in np.unique(bucket):
        members = np.flatnonzero(bucket == b)
        side = int(2**b)
        per_batch = max(1, _BATCH // (side * side))
        for start in range(0, len(members), per_batch):
            idx = members[start : start + per_batch]
            _draw(idx, side, x, y, z, x0, y0, shade, res, zbuffer, colour)
    hit = np.isfinite(zbuffer)
    image.reshape(-1, 3)[hit] = colour[hit, None] * _BASE_COLOUR[None, :] + 30.0


def _draw(
    idx: npt.NDArray[np.int64],
    side: int,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    z: npt.NDArray[np.float64],
    x0: npt.NDArray[np.int64],
    y0: npt.NDArray[np.int64],
    shade: npt.NDArray[np.float64],
    res: int,
    zbuffer: npt.NDArray[np.float64],
    colour: npt.NDArray[np.float64],
) -> None:
    offsets = np.arange(side)
    cx = (x0[idx, None, None] + offsets[None, None, :]).astype(np.float64) + 0.5
    cy = (y0[idx, None, None] + offsets[None, :, None]).astype(np.float64) + 0.5
    ax, ay = x[idx, 0, None, None], y[idx, 0, None, None]
    bx, by = x[idx, 1, None, None], y[idx, 1, None, None]
    qx, qy = x[idx, 2, None, None], y[idx, 2, None, None]
    area = (bx - ax) * (qy - ay) - (qx - ax) * (by - ay)
    safe = np.where(np.abs(area) > 1e-12, area, np.inf)
    w1 = ((cx - ax) * (qy - ay) - (qx - ax) * (cy - ay)) / safe
    w2 = ((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / safe
    w0 = 1.0 - w1 - w2
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (cx < res) & (cy < res) & np.isfinite(safe)
    # Sub-pixel triangles cover no pixel centre: draw them at their nearest pixel instead, so
    # a dense mesh does not come out full of holes.
    tiny = np.abs(area[:, 0, 0]) < 1.0
    if tiny.any():
        inside[tiny, 0, 0] = True
        w0[tiny, 0, 0], w1[tiny, 0, 0], w2[tiny, 0, 0] = 1 / 3, 1 / 3, 1 / 3
    t, r, c = np.nonzero(inside)
    if t.size == 0:
        return
    depth = w0[t, r, c] * z[idx[t], 0] + w1[t, r, c] * z[idx[t], 1] + w2[t, r, c] * z[idx[t], 2]
    pixel = (y0[idx[t]] + r) * res + (x0[idx[t]] + c)
    order = np.lexsort((depth, pixel))
    pixel, depth, t = pixel[order], depth[order], t[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    pixel, depth, t = pixel[first], depth[first], t[first]
    nearer = depth < zbuffer[pixel]
    zbuffer[pixel[nearer]] = depth[nearer]
    colour[pixel[nearer]] = shade[idx[t[nearer]]]
