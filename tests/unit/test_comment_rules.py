"""What a comment request must satisfy: body, point, face and view (all reported at once)."""

from __future__ import annotations

import math

import pytest

from services.design.comments.domain import (
    MAX_BODY,
    Anchor,
    CameraView,
    check_anchor,
    check_body,
    check_face,
    raise_if,
)
from services.shared.errors import InvalidArgument


def fields(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.field for v in violations]


@pytest.mark.parametrize("body", ["", "   \n\t"])
def test_empty_body_is_refused(body: str) -> None:
    assert fields(check_body(body)) == ["comment.body"]


def test_body_length_limit() -> None:
    assert check_body("x" * MAX_BODY) == []
    (violation,) = check_body("x" * (MAX_BODY + 1))
    assert "10,000" in violation.description


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_point_must_be_finite(bad: float) -> None:
    assert fields(check_anchor(Anchor((0.0, bad, 1.0)))) == ["comment.anchor.point"]


def test_negative_face_and_degenerate_view() -> None:
    view = CameraView((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0))
    problems = check_anchor(Anchor((0.0, 0.0, 0.0), -1, view))
    assert fields(problems) == ["comment.anchor.face_id", "comment.anchor.view"]
    nan_view = CameraView((1.0, math.nan, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    assert fields(check_anchor(Anchor((0.0, 0.0, 0.0), None, nan_view))) == ["comment.anchor.view"]


def test_good_anchor_passes() -> None:
    view = CameraView((100.0, 80.0, 60.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    assert check_anchor(Anchor((1.5, -2.0, 8.0), 3, view)) == []


def test_face_must_exist_on_the_revision() -> None:
    assert check_face(None, 12) == [] and check_face(None, None) == []
    assert check_face(0, 12) == [] and check_face(11, 12) == []
    (too_big,) = check_face(12, 12)
    assert too_big.field == "comment.anchor.face_id" and "0-11" in too_big.description
    (mesh,) = check_face(0, None)
    assert "mesh" in mesh.description


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        raise_if(check_body("") + check_anchor(Anchor((math.nan, 0.0, 0.0), -2)))
    assert fields(caught.value.violations) == [
        "comment.body",
        "comment.anchor.point",
        "comment.anchor.face_id",
    ]
    raise_if([])  # nothing to report: no error
