"""gRPC servicer of comments anchored to geometry: proto -> use case -> proto."""

from __future__ import annotations

import asyncio
from typing import Any

from cofab.design.v1 import comment_pb2, comment_pb2_grpc
from services.design.comments.application import CommentApplication
from services.design.comments.convert import anchor_of, comment_proto
from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.paging import page
from services.shared.server import current_principal

Context = Any
COMMENT = "projects/{project}/designs/{design}/comments/{comment}"
REVISION = "projects/{project}/designs/{design}/revisions/{revision}"


class CommentServicer(comment_pb2_grpc.CommentServiceServicer):
    def __init__(self, app: CommentApplication) -> None:
        self._app = app

    async def CreateComment(
        self, request: comment_pb2.CreateCommentRequest, context: Context
    ) -> comment_pb2.Comment:
        project, design, revision = names.parse(request.parent, REVISION, "parent")
        c = request.comment
        thread = None
        if c.thread:
            p, d, thread = names.parse(c.thread, COMMENT, "comment.thread")
            if (p, d) != (project, design):
                raise InvalidArgument.field(
                    "comment.thread", "must be a comment of the parent's design"
                )
        elif not c.anchor.HasField("point"):
            raise InvalidArgument.field("comment.anchor.point", "is required for a new thread")
        anchored = await asyncio.to_thread(
            self._app.create_comment,
            current_principal(),
            project,
            design,
            revision,
            c.body,
            anchor_of(c.anchor) if thread is None else None,
            thread,
            request.request_id,
        )
        return comment_proto(anchored)

    async def GetComment(
        self, request: comment_pb2.GetCommentRequest, context: Context
    ) -> comment_pb2.Comment:
        project, design, comment = names.parse(request.name, COMMENT, "name")
        anchored = await asyncio.to_thread(
            self._app.get_comment, current_principal(), project, design, comment
        )
        return comment_proto(anchored)

    async def ListComments(
        self, request: comment_pb2.ListCommentsRequest, context: Context
    ) -> comment_pb2.ListCommentsResponse:
        project, design, revision = names.parse(request.parent, REVISION, "parent")
        # The token is bound to the filter too: a page of open threads must not continue
        # a listing that shows resolved ones.
        query = f"comments:{request.parent}:{int(request.show_resolved)}"
        listed = await asyncio.to_thread(
            self._app.list_comments,
            current_principal(),
            project,
            design,
            revision,
            request.show_resolved,
            page(request.page_size, request.page_token, query),
        )
        return comment_pb2.ListCommentsResponse(
            comments=[comment_proto(c) for c in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def ResolveComment(
        self, request: comment_pb2.ResolveCommentRequest, context: Context
    ) -> comment_pb2.Comment:
        project, design, comment = names.parse(request.name, COMMENT, "name")
        anchored = await asyncio.to_thread(
            self._app.resolve, current_principal(), project, design, comment, request.request_id
        )
        return comment_proto(anchored)

    async def ReopenComment(
        self, request: comment_pb2.ReopenCommentRequest, context: Context
    ) -> comment_pb2.Comment:
        project, design, comment = names.parse(request.name, COMMENT, "name")
        anchored = await asyncio.to_thread(
            self._app.reopen, current_principal(), project, design, comment, request.request_id
        )
        return comment_proto(anchored)
