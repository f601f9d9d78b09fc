"""`cofab comment ...`: comment on a revision's geometry, reply, list and resolve threads."""

from __future__ import annotations

import argparse
import math
import textwrap

from clients.cli.common import (
    Subcommands,
    client,
    command,
    emit,
    emit_list,
    every_page,
    format_time,
    request_id,
)
from cofab.design.v1 import comment_pb2 as pb
from cofab.design.v1 import design_pb2
from services.shared.config import Settings

STATES = {pb.Comment.STATE_OPEN: "open", pb.Comment.STATE_RESOLVED: "resolved"}


def _point(text: str) -> design_pb2.Vector3:
    parts = text.split(",")
    try:
        x, y, z = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,Z in millimetres") from None
    if not all(math.isfinite(c) for c in (x, y, z)):
        raise argparse.ArgumentTypeError(f"{text!r}: coordinates must be finite numbers")
    return design_pb2.Vector3(x=x, y=y, z=z)


def _where(c: pb.Comment) -> str:
    p = c.anchor.point
    face = f" face {c.anchor.face_id}" if c.anchor.HasField("face_id") else ""
    return f"at ({p.x:g}, {p.y:g}, {p.z:g}) mm{face}"


def _body(text: str, indent: str) -> str:
    return "\n".join(
        textwrap.fill(line, width=100, initial_indent=indent, subsequent_indent=indent) or indent
        for line in text.splitlines() or [""]
    )


def _in_design(name: str) -> str:
    """`revisions/{r}` of `projects/{p}/designs/{d}/revisions/{r}`: the design is the
    comment's own, already in its name."""
    return "/".join(name.split("/")[4:])


def print_comment(c: pb.Comment, replies: list[pb.Comment] | None = None) -> None:
    """A thread's first comment (or a lone reply) and, when given, its replies."""
    flags = [STATES.get(c.state, "?")]
    if c.outdated:
        flags.append("OUTDATED")
    print(f"{c.name}  [{', '.join(flags)}]  {_where(c)}")
    if c.thread:
        print(f"  reply in {c.thread}")
    print(f"  {c.author}  {format_time(c.create_time)}  on {_in_design(c.revision)}")
    if c.anchor_revision != c.revision:
        note = "the anchored geometry changed there" if c.outdated else "carried forward"
        print(f"  as on {_in_design(c.anchor_revision)}: {note}")
    if c.state == pb.Comment.STATE_RESOLVED:
        print(f"  resolved by {c.resolver}  {format_time(c.resolve_time)}")
    print(_body(c.body, "    "))
    for reply in replies or []:
        print(f"  -> {reply.author}  {format_time(reply.create_time)}  ({reply.name})")
        print(_body(reply.body, "       "))


def cmd_add(args: argparse.Namespace, settings: Settings) -> None:
    anchor = pb.CommentAnchor(point=args.point)
    if args.face is not None:
        anchor.face_id = args.face
    if args.view is not None:
        eye, target, up = args.view
        anchor.view.CopyFrom(pb.CameraView(eye=eye, target=target, up=up))
    with client(settings) as cofab:
        comment = cofab.comments.CreateComment(
            pb.CreateCommentRequest(
                parent=args.revision,
                comment=pb.Comment(body=args.body, anchor=anchor),
                request_id=request_id(),
            )
        )
    emit(args, comment, lambda: print_comment(comment))


def cmd_reply(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        revision = args.revision
        if not revision:
            # Where the comment was made: its thread is anchored there for sure.
            revision = cofab.comments.GetComment(pb.GetCommentRequest(name=args.comment)).revision
        reply = cofab.comments.CreateComment(
            pb.CreateCommentRequest(
                parent=revision,
                comment=pb.Comment(body=args.body, thread=args.comment),
                request_id=request_id(),
            )
        )
    emit(args, reply, lambda: print_comment(reply))


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        found = list(
            every_page(
                lambda token: cofab.comments.ListComments(
                    pb.ListCommentsRequest(
                        parent=args.revision,
                        page_size=200,
                        page_token=token,
                        show_resolved=args.all,
                    )
                ),
                "comments",
            )
        )
    if args.json:
        emit_list(args, "comments", found, print_comment)
        return
    threads = [c for c in found if not c.thread]
    replies: dict[str, list[pb.Comment]] = {}
    for c in found:
        if c.thread:
            replies.setdefault(c.thread, []).append(c)
    if not threads:
        print("no comments" if args.all else "no open comments (--all shows resolved ones)")
    outdated = sum(1 for t in threads if t.outdated)
    for thread in threads:
        print_comment(thread, replies.get(thread.name, []))
    if threads:
        plural = "" if len(threads) == 1 else "s"
        print(f"{len(threads)} thread{plural}, {outdated} outdated")


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        comment = cofab.comments.GetComment(pb.GetCommentRequest(name=args.comment))
    emit(args, comment, lambda: print_comment(comment))


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        comment = cofab.comments.ResolveComment(
            pb.ResolveCommentRequest(name=args.comment, request_id=request_id())
        )
    emit(args, comment, lambda: print_comment(comment))


def cmd_reopen(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        comment = cofab.comments.ReopenComment(
            pb.ReopenCommentRequest(name=args.comment, request_id=request_id())
        )
    emit(args, comment, lambda: print_comment(comment))


def _view(text: str) -> tuple[design_pb2.Vector3, ...]:
    parts = text.split(";")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not EYE;TARGET;UP (each X,Y,Z)")
    return tuple(_point(p) for p in parts)


def register(sub: Subcommands) -> None:
    """Adds `cofab comment ...` to the parser."""
    comment = sub.add_parser("comment", help="comments anchored to a revision's geometry")
    csub = comment.add_subparsers(dest="comment_command", required=True)
    p = command(csub, "add", cmd_add, "comment on a point (and face) of a revision", True)
    p.add_argument("revision", help="projects/{project}/designs/{design}/revisions/{revision}")
    p.add_argument(
        "--point",
        type=_point,
        required=True,
        help="X,Y,Z in mm (write --point=-1,2,3 when X is negative)",
    )
    p.add_argument("--face", type=int, default=None, help="B-rep face index")
    p.add_argument("--view", type=_view, default=None, help="camera EYE;TARGET;UP, each X,Y,Z")
    p.add_argument("--body", "-m", required=True)
    p = command(csub, "list", cmd_list, "list the comment threads on a revision", True)
    p.add_argument("revision")
    p.add_argument("--all", action="store_true", help="include resolved threads")
    p = command(csub, "reply", cmd_reply, "reply to a comment's thread", True)
    p.add_argument("comment", help="projects/{project}/designs/{design}/comments/{comment}")
    p.add_argument("--body", "-m", required=True)
    p.add_argument(
        "--revision", default="", help="the revision you reply on (default: the comment's)"
    )
    for name, fn, text in (
        ("show", cmd_show, "show a comment"),
        ("resolve", cmd_resolve, "resolve a thread (its author's organization or an owner)"),
        ("reopen", cmd_reopen, "reopen a resolved thread"),
    ):
        command(csub, name, fn, text, prints=True).add_argument("comment")
