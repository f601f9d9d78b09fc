"""Conversions between comments and their protobuf messages (API and events)."""

from __future__ import annotations

from cofab.design.v1 import comment_pb2, design_pb2
from services.design.comments.domain import Anchor, AnchoredComment, CameraView, CommentState, Vec
from services.design.convert import timestamp

STATES = {
    CommentState.OPEN: comment_pb2.Comment.STATE_OPEN,
    CommentState.RESOLVED: comment_pb2.Comment.STATE_RESOLVED,
}


def vector(value: Vec) -> design_pb2.Vector3:
    x, y, z = value
    return design_pb2.Vector3(x=x, y=y, z=z)


def vec(message: design_pb2.Vector3) -> Vec:
    return (message.x, message.y, message.z)


def anchor_proto(anchor: Anchor) -> comment_pb2.CommentAnchor:
    message = comment_pb2.CommentAnchor(point=vector(anchor.point), face_id=anchor.face_id)
    if anchor.view is not None:
        message.view.CopyFrom(
            comment_pb2.CameraView(
                eye=vector(anchor.view.eye),
                target=vector(anchor.view.target),
                up=vector(anchor.view.up),
            )
        )
    return message


def anchor_of(message: comment_pb2.CommentAnchor) -> Anchor:
    view = None
    if message.HasField("view"):
        v = message.view
        view = CameraView(vec(v.eye), vec(v.target), vec(v.up))
    face_id = message.face_id if message.HasField("face_id") else None
    return Anchor(vec(message.point), face_id, view)


def comment_proto(anchored: AnchoredComment) -> comment_pb2.Comment:
    c = anchored.comment
    return comment_pb2.Comment(
        name=c.name,
        revision=c.revision_name,
        thread=c.thread_name if c.is_reply else "",
        body=c.body,
        anchor=anchor_proto(anchored.anchor),
        anchor_revision=anchored.revision_name,
        outdated=anchored.outdated,
        author=c.author,
        state=STATES[c.state],
        create_time=timestamp(c.create_time),
        resolve_time=timestamp(c.resolve_time),
        resolver=c.resolver or "",
    )
