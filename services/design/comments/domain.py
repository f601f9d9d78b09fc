"""Comments anchored to geometry, as plain Python: values, input rules, and how an anchor is
carried from one revision to the next across a geometric diff."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from services.design.geometry.types import DiffResult, Region
from services.shared.errors import FieldViolation, InvalidArgument

MAX_BODY = 10_000
# A mesh anchor whose point is this close to a changed region is about geometry that changed.
NEAR_CHANGE_MM = 1.0

Vec = tuple[float, float, float]


class CommentState(Enum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True)
class CameraView:
    eye: Vec
    target: Vec
    up: Vec


@dataclass(frozen=True)
class Anchor:
    """A place on the part of one revision (mm). `face_id` is a B-rep face index of that
    revision; None for meshes and for anchors whose face did not survive."""

    point: Vec
    face_id: int | None = None
    view: CameraView | None = None


@dataclass(frozen=True)
class Comment:
    id: str
    project_id: str
    design_id: str
    revision_id: str  # where it was made
    thread_id: str  # the thread's first comment; its own id for a first comment
    organization_id: str
    author: str  # organizations/{o}/users/{u}
    body: str
    # The thread's state: replies share their first comment's.
    state: CommentState
    create_time: dt.datetime
    resolve_time: dt.datetime | None = None
    resolver: str | None = None

    @property
    def design_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}"

    @property
    def name(self) -> str:
        return f"{self.design_name}/comments/{self.id}"

    @property
    def thread_name(self) -> str:
        return f"{self.design_name}/comments/{self.thread_id}"

    @property
    def revision_name(self) -> str:
        return f"{self.design_name}/revisions/{self.revision_id}"

    @property
    def is_reply(self) -> bool:
        return self.thread_id != self.id


@dataclass(frozen=True)
class AnchoredComment:
    """A comment as seen on one revision: its thread's anchor there, and whether that anchor
    is outdated (the geometry it pointed at changed on the way to this revision)."""

    comment: Comment
    revision_id: str
    anchor: Anchor
    outdated: bool

    @property
    def revision_name(self) -> str:
        return f"{self.comment.design_name}/revisions/{self.revision_id}"


def _finite(vector: Vec) -> bool:
    return all(math.isfinite(c) for c in vector)


def check_body(body: str, field: str = "comment.body") -> list[FieldViolation]:
    if not body.strip():
        return [FieldViolation(field, "must not be empty")]
    if len(body) > MAX_BODY:
        return [FieldViolation(field, f"at most {MAX_BODY:,} characters, got {len(body):,}")]
    return []


def check_anchor(anchor: Anchor) -> list[FieldViolation]:
    """What can be checked without the revision (see check_face for the rest)."""
    problems: list[FieldViolation] = []
    if not _finite(anchor.point):
        problems.append(FieldViolation("comment.anchor.point", "every coordinate must be finite"))
    if anchor.face_id is not None and anchor.face_id < 0:
        problems.append(FieldViolation("comment.anchor.face_id", "must not be negative"))
    view = anchor.view
    if view is not None:
        if not all(_finite(v) for v in (view.eye, view.target, view.up)):
            problems.append(
                FieldViolation("comment.anchor.view", "every coordinate must be finite")
            )
        elif view.eye == view.target or view.up == (0.0, 0.0, 0.0):
            problems.append(
                FieldViolation(
                    "comment.anchor.view", "eye and target must differ and up must not be zero"
                )
            )
    return problems


def check_face(face_id: int | None, faces: int | None) -> list[FieldViolation]:
    """`faces`: the revision's B-rep face count (Properties.faces), None for a mesh."""
    if face_id is None or face_id < 0:
        return []
    if faces is None:
        return [FieldViolation("comment.anchor.face_id", "the revision is a mesh: it has no faces")]
    if face_id >= faces:
        return [
            FieldViolation(
                "comment.anchor.face_id",
                f"{face_id} is not a face of the revision (it has {faces}: 0-{faces - 1})",
            )
        ]
    return []


def raise_if(problems: list[FieldViolation]) -> None:
    """Reports every problem of a request at once (AIP-193 BadRequest)."""
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), problems)


def distance_to_box(point: Vec, low: Vec, high: Vec) -> float:
    """0 inside the box, else the Euclidean distance to its nearest point."""
    gaps = (max(lo - p, 0.0, p - hi) for p, lo, hi in zip(point, low, high, strict=True))
    return math.sqrt(sum(g * g for g in gaps))


def near_change(point: Vec, regions: Iterable[Region]) -> bool:
    return any(distance_to_box(point, r.bbox_min, r.bbox_max) <= NEAR_CHANGE_MM for r in regions)


def carry(anchor: Anchor, outdated: bool, diff: DiffResult) -> tuple[Anchor, bool]:
    """The anchor on the diff's revision B of an anchor on its revision A, and whether it is
    outdated there.

    A face anchor follows its face when the face survived unchanged (`face_map`); otherwise the
    comment is about geometry that is gone. A mesh anchor has only its point: it is outdated
    when the point lies in or near an added or removed region. Once outdated, always outdated:
    the face it was about no longer exists to be matched."""
    if outdated:
        return Anchor(anchor.point, None, anchor.view), True
    if anchor.face_id is not None:
        face = diff.face_map.get(anchor.face_id)
        return Anchor(anchor.point, face, anchor.view), face is None
    changed = near_change(anchor.point, (*diff.added, *diff.removed))
    return anchor, changed
