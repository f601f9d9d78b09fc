"""How a comment's anchor is carried across a diff, with hand-built DiffResult values."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.design.comments.domain import (
    NEAR_CHANGE_MM,
    Anchor,
    CameraView,
    carry,
    distance_to_box,
)
from services.design.geometry.types import DiffResult, Region

Vec = tuple[float, float, float]
Box = tuple[Vec, Vec]
VIEW = CameraView((100.0, 100.0, 100.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))


def region(low: Vec, high: Vec) -> Region:
    volume = math.prod(h - lo for lo, h in zip(low, high, strict=True))
    centroid = ((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, (low[2] + high[2]) / 2)
    return Region(volume, low, high, centroid)


def diff_of(
    face_map: Mapping[int, int] | None = None,
    added: tuple[Region, ...] = (),
    removed: tuple[Region, ...] = (),
) -> DiffResult:
    return DiffResult(
        exact=face_map is not None,
        added=added,
        removed=removed,
        added_volume_mm3=sum(r.volume_mm3 for r in added),
        removed_volume_mm3=sum(r.volume_mm3 for r in removed),
        faces=(),
        unchanged_faces=len(face_map or {}),
        face_map=face_map or {},
        max_deviation_mm=0.0,
        rms_deviation_mm=0.0,
        volume_delta_mm3=0.0,
        area_delta_mm2=0.0,
        mass_delta_g=None,
        bbox_min_delta=(0.0, 0.0, 0.0),
        bbox_max_delta=(0.0, 0.0, 0.0),
        parameters=(),
        findings_introduced=(),
        findings_resolved=(),
        artifacts={},
    )


# B-rep anchors follow their face ---------------------------------------------------------------


def test_face_that_survived_unchanged_is_renumbered() -> None:
    anchor = Anchor((5.0, 0.0, 4.0), face_id=3, view=VIEW)
    carried, outdated = carry(anchor, False, diff_of({0: 0, 3: 7, 4: 2}))
    assert (carried, outdated) == (Anchor((5.0, 0.0, 4.0), 7, VIEW), False)


def test_face_that_was_removed_or_modified_makes_the_comment_outdated() -> None:
    # Face 3 is not in the map: removed, or modified (a modified face is no longer the face
    # the comment was about).
    anchor = Anchor((5.0, 0.0, 4.0), face_id=3, view=VIEW)
    carried, outdated = carry(anchor, False, diff_of({0: 0, 4: 2}))
    assert outdated
    assert carried == Anchor((5.0, 0.0, 4.0), None, VIEW)  # the point stays for context


def test_face_anchor_across_a_mesh_diff_is_outdated() -> None:
    # No face map (a side is a mesh): the face cannot be followed, whatever the regions say.
    _, outdated = carry(Anchor((500.0, 0.0, 0.0), face_id=1), False, diff_of(None))
    assert outdated


def test_face_anchor_ignores_regions_when_its_face_survived() -> None:
    near = (region((0, 0, 0), (10, 10, 10)),)
    carried, outdated = carry(Anchor((5.0, 5.0, 5.0), 1), False, diff_of({1: 1}, added=near))
    assert (carried.face_id, outdated) == (1, False)


# Mesh anchors: the point against changed regions -------------------------------------------------


@pytest.mark.parametrize(
    ("point", "outdated"),
    [
        ((5.0, 5.0, 5.0), True),  # inside an added region
        ((10.9, 5.0, 5.0), True),  # 0.9 mm outside its face
        ((11.0, 5.0, 5.0), True),  # exactly 1 mm: still near
        ((11.2, 5.0, 5.0), False),  # beyond 1 mm
        ((10.8, 10.8, 10.8), False),  # 0.8 mm per axis off a corner: sqrt(3)*0.8 = 1.39 mm
        ((10.5, 10.5, 10.0), True),  # 0.71 mm off an edge
        ((-20.5, 0.0, 0.0), True),  # near the removed region
        ((50.0, 50.0, 50.0), False),  # far from both
    ],
)
def test_mesh_point_near_a_changed_region_is_outdated(
    point: tuple[float, float, float], outdated: bool
) -> None:
    diff = diff_of(
        None,
        added=(region((0, 0, 0), (10, 10, 10)),),
        removed=(region((-30, -5, -5), (-21, 5, 5)),),
    )
    carried, now_outdated = carry(Anchor(point, None, VIEW), False, diff)
    assert now_outdated is outdated
    assert carried == Anchor(point, None, VIEW)


def test_mesh_point_with_no_change_is_carried_as_is() -> None:
    anchor = Anchor((1.0, 2.0, 3.0))
    assert carry(anchor, False, diff_of(None)) == (anchor, False)


def test_an_outdated_anchor_stays_outdated_even_where_nothing_changed() -> None:
    carried, outdated = carry(Anchor((1.0, 2.0, 3.0), None, VIEW), True, diff_of({0: 0}))
    assert outdated and carried == Anchor((1.0, 2.0, 3.0), None, VIEW)


# Properties --------------------------------------------------------------------------------------

# Micrometre steps: squared sub-normal gaps would underflow to a distance of exactly 0.
coordinate = st.integers(-(10**7), 10**7).map(lambda v: v / 1000)
points = st.tuples(coordinate, coordinate, coordinate)


def _box(p: Vec, q: Vec) -> Box:
    low = (min(p[0], q[0]), min(p[1], q[1]), min(p[2], q[2]))
    return low, (max(p[0], q[0]), max(p[1], q[1]), max(p[2], q[2]))


boxes = st.builds(_box, points, points)


@given(points, boxes)
def test_distance_is_zero_exactly_inside_the_box(point: Vec, box: Box) -> None:
    low, high = box
    inside = all(lo <= p <= hi for p, lo, hi in zip(point, low, high, strict=True))
    distance = distance_to_box(point, low, high)
    assert (distance == 0.0) is inside
    assert distance >= 0.0


@given(points, st.lists(boxes, max_size=4), st.booleans())
def test_carrying_never_revives_an_outdated_anchor_and_keeps_the_point(
    point: Vec, regions: list[Box], outdated: bool
) -> None:
    diff = diff_of(None, added=tuple(region(lo, hi) for lo, hi in regions))
    carried, now_outdated = carry(Anchor(point, None, VIEW), outdated, diff)
    assert carried.point == point and carried.view == VIEW
    assert now_outdated >= outdated
    near = any(distance_to_box(point, lo, hi) <= NEAR_CHANGE_MM for lo, hi in regions)
    assert now_outdated == (outdated or near)
