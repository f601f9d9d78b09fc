"""Use cases of comments anchored to geometry. Each runs in one transaction with its audit
entry, outbox event and request-id record, like every use case of the design service.

Threads reach later revisions through `carry.carry_forward`, which the diff processor runs;
reads here only show the anchors that exist."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from cofab.design.v1 import comment_events_pb2
from services.design.adapters.repository import SqlRepository
from services.design.adapters.revision_repository import RevisionRepository
from services.design.comments.convert import comment_proto
from services.design.comments.domain import (
    Anchor,
    AnchoredComment,
    Comment,
    CommentState,
    check_anchor,
    check_body,
    check_face,
    raise_if,
)
from services.design.comments.repository import CommentRepository
from services.design.domain.revisions import Revision, RevisionState
from services.shared import audit, authz, idempotency, outbox
from services.shared.db import utcnow
from services.shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.shared.events import make_envelope
from services.shared.identity import Principal, Role
from services.shared.paging import Listed, Page, page_of

SOURCE = "//cofab/design"
Clock = Callable[[], dt.datetime]


class CommentApplication:
    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def create_comment(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        revision_id: str,
        body: str,
        anchor: Anchor | None,
        thread_id: str | None,
        request_id: str,
    ) -> AnchoredComment:
        """A new thread anchored at `anchor`, or (with `thread_id`) a reply to a thread that
        is anchored on the revision; a reply's anchor is its thread's."""
        if thread_id is None and anchor is None:
            raise InvalidArgument.field("comment.anchor", "is required for a new thread")
        raise_if(check_body(body) + (check_anchor(anchor) if thread_id is None and anchor else []))
        with self._engine.begin() as conn:
            repo = CommentRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.REVIEWER)
            earlier = idempotency.replayed(conn, principal, "CreateComment", request_id)
            if earlier is not None:
                _, _, _, _, _, comment_id = earlier.split("/")
                return self._at_origin(repo, self._comment(repo, project_id, design_id, comment_id))
            revision = self._succeeded_revision(conn, project_id, design_id, revision_id)
            now = self._clock()
            new_id = uuid.uuid4().hex
            if thread_id is None:
                assert anchor is not None
                faces = revision.properties.get("faces") if revision.properties else None
                raise_if(check_face(anchor.face_id, faces))
                thread_id = new_id
            else:
                thread = repo.get(project_id, design_id, thread_id)
                if thread is None:
                    raise InvalidArgument.field(
                        "comment.thread", f"no comment {thread_id} in this design"
                    )
                if repo.anchored(thread, revision_id) is None:
                    raise InvalidArgument.field(
                        "comment.thread",
                        f"{thread.thread_name} is not anchored on {revision.name}: reply on a "
                        "revision the thread reached",
                    )
                thread_id = thread.thread_id  # a reply to a reply joins the same thread
                anchor = None
            comment = Comment(
                id=new_id,
                project_id=project_id,
                design_id=design_id,
                revision_id=revision_id,
                thread_id=thread_id,
                organization_id=principal.organization_id,
                author=principal.user_name,
                body=body,
                state=CommentState.OPEN,
                create_time=now,
            )
            repo.add(comment, anchor.view if anchor is not None else None)
            if anchor is not None:
                repo.add_anchor(comment.id, revision_id, anchor, False, None, now)
            anchored = self._at_origin(repo, self._comment(repo, project_id, design_id, new_id))
            self._enqueue(conn, principal, anchored)
            audit.record(
                conn, principal, "comment.create", comment.name, {"revision": revision.name}
            )
            idempotency.remember(conn, principal, "CreateComment", request_id, comment.name)
        return anchored

    def get_comment(
        self, principal: Principal, project_id: str, design_id: str, comment_id: str
    ) -> AnchoredComment:
        with self._engine.begin() as conn:
            repo = CommentRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            anchored = self._at_origin(repo, self._comment(repo, project_id, design_id, comment_id))
            audit.record(conn, principal, "comment.read", anchored.comment.name)
        return anchored

    def list_comments(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        revision_id: str,
        show_resolved: bool,
        page: Page,
    ) -> Listed[AnchoredComment]:
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            revision = self._revision(conn, project_id, design_id, revision_id)
            rows = CommentRepository(conn).on_revision(
                revision.id, show_resolved, page.after_seq, page.limit + 1
            )
            audit.record(conn, principal, "comment.list", f"{revision.name}/comments")
        return page_of(page, rows)

    def resolve(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        comment_id: str,
        request_id: str,
    ) -> AnchoredComment:
        return self._set_state(
            principal, project_id, design_id, comment_id, CommentState.RESOLVED, request_id
        )

    def reopen(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        comment_id: str,
        request_id: str,
    ) -> AnchoredComment:
        return self._set_state(
            principal, project_id, design_id, comment_id, CommentState.OPEN, request_id
        )

    def _set_state(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        comment_id: str,
        state: CommentState,
        request_id: str,
    ) -> AnchoredComment:
        """Resolving a resolved thread (or reopening an open one) changes nothing and succeeds:
        the caller's intent already holds."""
        method = "ResolveComment" if state is CommentState.RESOLVED else "ReopenComment"
        with self._engine.begin() as conn:
            repo = CommentRepository(conn)
            role = authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            comment = self._comment(repo, project_id, design_id, comment_id)
            if comment.is_reply:
                raise InvalidArgument.field(
                    "name",
                    f"{comment.name} is a reply: resolve or reopen its thread "
                    f"{comment.thread_name}",
                )
            own = principal.organization_id == comment.organization_id and role >= Role.REVIEWER
            if not (own or role is Role.OWNER):
                raise PermissionDenied(
                    f"only organizations/{comment.organization_id}, which started "
                    f"{comment.name}, or a project owner can resolve or reopen it"
                )
            replayed = idempotency.replayed(conn, principal, method, request_id) is not None
            if not replayed and comment.state is not state:
                resolved = state is CommentState.RESOLVED
                repo.set_state(
                    comment.id,
                    state,
                    self._clock() if resolved else None,
                    principal.user_name if resolved else None,
                )
                audit.record(conn, principal, f"comment.{state.value.lower()}", comment.name)
                idempotency.remember(conn, principal, method, request_id, comment.name)
            anchored = self._at_origin(repo, self._comment(repo, project_id, design_id, comment_id))
        return anchored

    # helpers

    def _enqueue(self, conn: Connection, principal: Principal, anchored: AnchoredComment) -> None:
        comment = anchored.comment
        envelope = make_envelope(
            source=SOURCE,
            event_type="design.comment.added",
            subject=comment.name,
            organization=principal.organization_name,
            data=comment_events_pb2.CommentAdded(comment=comment_proto(anchored)),
            audience=SqlRepository(conn).active_member_organizations(comment.project_id),
        )
        # Keyed by design, like the design's revision events: its comments stay in order.
        outbox.enqueue(conn, envelope, key=comment.design_id)

    @staticmethod
    def _comment(
        repo: CommentRepository, project_id: str, design_id: str, comment_id: str
    ) -> Comment:
        comment = repo.get(project_id, design_id, comment_id)
        if comment is None:
            raise NotFound(
                f"projects/{project_id}/designs/{design_id}/comments/{comment_id} not found"
            )
        return comment

    @staticmethod
    def _at_origin(repo: CommentRepository, comment: Comment) -> AnchoredComment:
        """The comment with its thread's anchor on the revision it was made on."""
        anchored = repo.anchored(comment, comment.revision_id)
        assert anchored is not None, "a comment is made only where its thread is anchored"
        return anchored

    @staticmethod
    def _revision(conn: Connection, project_id: str, design_id: str, revision_id: str) -> Revision:
        revision = RevisionRepository(conn).get(design_id, revision_id)
        if revision is None or revision.project_id != project_id:
            raise NotFound(
                f"projects/{project_id}/designs/{design_id}/revisions/{revision_id} not found"
            )
        return revision

    def _succeeded_revision(
        self, conn: Connection, project_id: str, design_id: str, revision_id: str
    ) -> Revision:
        revision = self._revision(conn, project_id, design_id, revision_id)
        if revision.state is not RevisionState.SUCCEEDED:
            raise FailedPrecondition(
                f"{revision.name} is {revision.state.value}; only a SUCCEEDED revision "
                "can be commented on",
                [
                    PreconditionViolation(
                        "REVISION_STATE", revision.name, f"revision is {revision.state.value}"
                    )
                ],
            )
        return revision
