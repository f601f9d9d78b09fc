"""Comments anchored to geometry: threads on revisions, carried forward across diffs."""

from services.design.comments.api import CommentServicer
from services.design.comments.application import CommentApplication
from services.design.comments.carry import carry_forward, has_open_comments
from services.design.comments.domain import (
    Anchor,
    AnchoredComment,
    CameraView,
    Comment,
    CommentState,
    carry,
)

__all__ = [
    "Anchor",
    "AnchoredComment",
    "CameraView",
    "Comment",
    "CommentApplication",
    "CommentServicer",
    "CommentState",
    "carry",
    "carry_forward",
    "has_open_comments",
]
