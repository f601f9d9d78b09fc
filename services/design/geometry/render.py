"""Headless thumbnails: an isometric, flat-shaded render by a small numpy z-buffer rasterizer.

Triangles are projected orthographically (by default from the (+1, -1, +1) side) with +Z up,
scaled to fit, and rasterized by vectorised scanlines (rows of pixel centres, then the run of
pixels inside the triangle on each row), so the work follows the pixels covered whether a mesh
has ten large triangles or a million sub-pixel ones. The image is drawn at twice the output size
and downsampled, which smooths the edges.
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
LIGHT = (0.4, -0.3, 0.85)
# Candidate pixels evaluated per batch: bounds memory at a few hundred MB.
_BATCH = 4_000_000


# The side the camera looks from; +Z stays up in every view.
ISOMETRIC = (1.0, -1.0, 1.0)


def _camera(
    view: tuple[float, float, float] = ISOMETRIC,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(right, up, forward) unit vectors of a camera looking from `view` towards the origin."""
    forward = -np.asarray(view, dtype=np.float64) / np.linalg.norm(view)
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
    draw(vertices, faces, size, closed).save(path, "PNG")


def draw(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    size: int = SIZE,
    closed: bool = False,
    colours: npt.ArrayLike | None = None,
    view: tuple[float, float, float] = ISOMETRIC,
    depth_bias: npt.ArrayLike | None = None,
    light: tuple[float, float, float] = LIGHT,
) -> Image.Image:
    """The mesh drawn from `view`, `size` pixels square. `colours`: an RGB (0-255) per triangle
    (default one blue). `depth_bias`: a distance (mm) per triangle by which it is drawn nearer
    the camera, so a surface can be painted over another that coincides with it. `light`: the
    direction the light comes from."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    rgb = (
        np.broadcast_to(_BASE_COLOUR, (len(f), 3))
        if colours is None
        else np.asarray(colours, dtype=np.float64).reshape(len(f), 3)
    )
    bias = np.zeros(len(f)) if depth_bias is None else np.asarray(depth_bias, dtype=np.float64)
    res = size * _SUPERSAMPLE
    image = np.empty((res, res, 3), dtype=np.float64)
    image[:] = _BACKGROUND
    if len(f) and len(v):
        _rasterize(v, f, res, image, closed, rgb, bias, view, light)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    return picture.resize((size, size), Image.Resampling.LANCZOS)


def _rasterize(
    v: npt.NDArray[np.float64],
    f: npt.NDArray[np.int64],
    res: int,
    image: npt.NDArray[np.float64],
    closed: bool,
    rgb: npt.NDArray[np.float64],
    bias: npt.NDArray[np.float64],
    view: tuple[float, float, float],
    light_from: tuple[float, float, float],
) -> None:
    right, up, forward = _camera(view)
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
        f, normals, rgb, bias = f[front], normals[front], rgb[front], bias[front]
    # Two-sided Lambert shading: face normals may point either way in imported meshes.
    facing = np.where((normals @ forward) > 0, -1.0, 1.0)
    light = np.asarray(light_from) / np.linalg.norm(light_from)
    shade = 0.3 + 0.7 * np.clip((normals * facing[:, None]) @ light, 0.0, 1.0)

    x, y, z = px[f], py[f], depth[f] - bias[:, None]
    zbuffer = np.full(res * res, np.inf)
    # The triangle seen at each pixel (-1: none).
    seen = np.full(res * res, -1, dtype=np.int64)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    # Sub-pixel triangles may cover no pixel centre: draw them at their nearest pixel instead,
    # so a dense mesh does not come out full of holes.
    tiny = np.flatnonzero(np.abs(area) < 1.0)
    col = np.clip(np.floor(x[tiny].mean(axis=1)), 0, res - 1).astype(np.int64)
    row = np.clip(np.floor(y[tiny].mean(axis=1)), 0, res - 1).astype(np.int64)
    _keep_nearest(row * res + col, z[tiny].mean(axis=1), tiny, zbuffer, seen)
    # The others by scanline: the rows of pixel centres each triangle spans, then the run of
    # pixel centres inside it on each row, so the work follows the pixels covered.
    big = np.flatnonzero(np.abs(area) >= 1.0)
    top = np.clip(np.ceil(y[big].min(axis=1) - 0.5), 0, res).astype(np.int64)
    bottom = np.clip(np.floor(y[big].max(axis=1) - 0.5), -1, res - 1).astype(np.int64)
    rows = np.maximum(bottom - top + 1, 0)
    width = np.ceil(np.ptp(x[big], axis=1)).astype(np.int64) + 1
    # Batches of triangles bounded by their pixel count (at most rows x box width).
    budget = np.cumsum(rows * width) // _BATCH
    for b in np.unique(budget):
        members = np.flatnonzero(budget == b)
        _scan(big[members], top[members], rows[members], x, y, z, area, res, zbuffer, seen)
    hit = seen >= 0
    image.reshape(-1, 3)[hit] = shade[seen[hit], None] * rgb[seen[hit]] + 30.0


def _expand(counts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(owner, k): for each owner i, the pairs (i, 0..counts[i]-1), flattened."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(int(counts.sum())) - starts[owner]


def _scan(
    idx: npt.NDArray[np.int64],
    top: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    z: npt.NDArray[np.float64],
    area: npt.NDArray[np.float64],
    res: int,
    zbuffer: npt.NDArray[np.float64],
    seen: npt.NDArray[np.int64],
) -> None:
    owner, k = _expand(rows)
    tri = idx[owner]
    cy = (top[owner] + k).astype(np.float64) + 0.5
    left = np.full(len(tri), np.inf)
    right = np.full(len(tri), -np.inf)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        ya, yb, xa, xb = y[tri, a], y[tri, b], x[tri, a], x[tri, b]
        crosses = ((cy - ya) * (cy - yb) <= 0) & (ya != yb)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = xa + (cy - ya) * (xb - xa) / (yb - ya)
        left = np.where(crosses, np.minimum(left, at), left)
        right = np.where(crosses, np.maximum(right, at), right)
    first = np.clip(np.ceil(left - 0.5), 0, res).astype(np.int64)
    last = np.clip(np.floor(right - 0.5), -1, res - 1).astype(np.int64)
    span = np.maximum(last - first + 1, 0)
    pair, step = _expand(span)
    t = tri[pair]
    cx = (first[pair] + step).astype(np.float64) + 0.5
    py = cy[pair]
    ax, ay = x[t, 0], y[t, 0]
    w1 = ((cx - ax) * (y[t, 2] - ay) - (x[t, 2] - ax) * (py - ay)) / area[t]
    w2 = ((x[t, 1] - ax) * (py - ay) - (cx - ax) * (y[t, 1] - ay)) / area[t]
    depth = z[t, 0] + w1 * (z[t, 1] - z[t, 0]) + w2 * (z[t, 2] - z[t, 0])
    pixel = (top[owner[pair]] + k[pair]) * res + first[pair] + step
    _keep_nearest(pixel, depth, t, zbuffer, seen)


def _keep_nearest(
    pixel: npt.NDArray[np.int64],
    depth: npt.NDArray[np.float64],
    triangle: npt.NDArray[np.int64],
    zbuffer: npt.NDArray[np.float64],
    seen: npt.NDArray[np.int64],
) -> None:
    """The z-buffer test: per pixel the nearest candidate, kept where nearer than before."""
    if pixel.size == 0:
        return
    order = np.lexsort((depth, pixel))
    pixel, depth, triangle = pixel[order], depth[order], triangle[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    pixel, depth, triangle = pixel[first], depth[first], triangle[first]
    nearer = depth < zbuffer[pixel]
    zbuffer[pixel[nearer]] = depth[nearer]
    seen[pixel[nearer]] = triangle[nearer]
