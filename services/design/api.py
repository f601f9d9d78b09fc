"""gRPC servicers of the design service: proto -> use case -> proto, nothing more.

Use cases run in a worker thread (SQLAlchemy is synchronous); domain errors become gRPC
statuses in services.shared.server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from cofab.design.v1 import design_pb2, design_pb2_grpc
from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.design.application import ANY_PROJECT, DesignApplication, check_role
from services.design.convert import (
    branch_proto,
    design_proto,
    membership_proto,
    parameter_from_proto,
    project_proto,
    revision_proto,
    rule_set_proto,
)
from services.design.diffs.api import DiffServicer
from services.design.diffs.application import DiffApplication
from services.design.domain import Design, Membership
from services.design.domain.ports import BlobStore
from services.design.downloads import download_responses
from services.design.revisions import RevisionApplication
from services.shared import idempotency, names
from services.shared.db import utcnow
from services.shared.errors import InvalidArgument, ResourceExhausted
from services.shared.identity import Principal
from services.shared.paging import Listed, Page, page, page_of
from services.shared.server import current_principal

Context = Any  # grpc.aio.ServicerContext; the handlers do not use it directly
MembershipTransition = Callable[[Principal, str, str, str], Membership]


class ProjectServicer(identity_pb2_grpc.ProjectServiceServicer):
    def __init__(self, app: DesignApplication) -> None:
        self._app = app

    async def CreateProject(
        self, request: identity_pb2.CreateProjectRequest, context: Context
    ) -> identity_pb2.Project:
        project, role = await asyncio.to_thread(
            self._app.create_project,
            current_principal(),
            request.project.display_name,
            request.project.description,
            request.request_id,
        )
        return project_proto(project, role)

    async def GetProject(
        self, request: identity_pb2.GetProjectRequest, context: Context
    ) -> identity_pb2.Project:
        project_id = names.parse_one(request.name, "projects/{project}", "name")
        project, role = await asyncio.to_thread(
            self._app.get_project, current_principal(), project_id
        )
        return project_proto(project, role)

    async def ListProjects(
        self, request: identity_pb2.ListProjectsRequest, context: Context
    ) -> identity_pb2.ListProjectsResponse:
        principal = current_principal()
        listed = await asyncio.to_thread(
            self._app.list_projects,
            principal,
            page(request.page_size, request.page_token, f"projects:{principal.organization_id}"),
        )
        return identity_pb2.ListProjectsResponse(
            projects=[project_proto(p, role) for p, role in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def CreateMembership(
        self, request: identity_pb2.CreateMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        project_id = names.parse_one(request.parent, "projects/{project}", "parent")
        organization_id = names.parse_one(
            request.membership.organization,
            "organizations/{organization}",
            "membership.organization",
        )
        if request.membership.role == identity_pb2.ROLE_UNSPECIFIED:
            raise InvalidArgument.field("membership.role", "is required")
        membership = await asyncio.to_thread(
            self._app.create_membership,
            current_principal(),
            project_id,
            organization_id,
            check_role(request.membership.role, "membership.role"),
            request.invite_ttl_seconds,
            request.request_id,
        )
        return membership_proto(membership)

    async def ListMemberships(
        self, request: identity_pb2.ListMembershipsRequest, context: Context
    ) -> identity_pb2.ListMembershipsResponse:
        principal = current_principal()
        if request.parent == f"projects/{ANY_PROJECT}":
            project_id = ANY_PROJECT
        else:
            project_id = names.parse_one(request.parent, "projects/{project}", "parent")
        listed = await asyncio.to_thread(
            self._app.list_memberships,
            principal,
            project_id,
            page(request.page_size, request.page_token, f"memberships:{request.parent}"),
        )
        return identity_pb2.ListMembershipsResponse(
            memberships=[membership_proto(m) for m in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def AcceptMembership(
        self, request: identity_pb2.AcceptMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        return await self._transition(self._app.accept_membership, request.name, request.request_id)

    async def DeclineMembership(
        self, request: identity_pb2.DeclineMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        return await self._transition(
            self._app.decline_membership, request.name, request.request_id
        )

    async def ExpireMembership(
        self, request: identity_pb2.ExpireMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        return await self._transition(self._app.expire_membership, request.name, request.request_id)

    async def UpdateMembership(
        self, request: identity_pb2.UpdateMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        project_id, organization_id = _membership_name(request.membership.name, "membership.name")
        membership = await asyncio.to_thread(
            self._app.update_membership,
            current_principal(),
            project_id,
            organization_id,
            list(request.update_mask.paths),
            check_role(request.membership.role, "membership.role"),
            request.request_id,
        )
        return membership_proto(membership)

    async def DeleteMembership(
        self, request: identity_pb2.DeleteMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        project_id, organization_id = _membership_name(request.name)
        membership = await asyncio.to_thread(
            self._app.delete_membership,
            current_principal(),
            project_id,
            organization_id,
            request.request_id,
        )
        return membership_proto(membership)

    async def _transition(
        self, use_case: MembershipTransition, name: str, request_id: str
    ) -> identity_pb2.Membership:
        """Accept, decline and expire share one shape: a membership name and a request id."""
        project_id, organization_id = _membership_name(name)
        membership = await asyncio.to_thread(
            use_case, current_principal(), project_id, organization_id, request_id
        )
        return membership_proto(membership)


def _membership_name(name: str, field: str = "name") -> tuple[str, str]:
    project_id, organization_id = names.parse(
        name, "projects/{project}/memberships/{organization}", field
    )
    return project_id, organization_id


WATCH_POLL_SECONDS = 0.2


class RevisionServicer:
    """The revision RPCs of DesignService (mixed into DesignServicer)."""

    _revisions: RevisionApplication
    _blobs: BlobStore

    async def PushRevision(
        self, request_iterator: AsyncIterator[design_pb2.PushRevisionRequest], context: Context
    ) -> design_pb2.Revision:
        principal = current_principal()
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument.field("header", "the first message of a push must be its header")
        h = first.header
        idempotency.set_fingerprint(h)
        header = self._revisions.check_header(
            h.parent,
            h.branch,
            h.base_revision,
            h.message,
            h.format,
            h.units,
            h.sha256,
            h.size_bytes,
            {k: parameter_from_proto(v, f"parameters[{k}]") for k, v in h.parameters.items()},
            h.request_id,
        )
        earlier = await asyncio.to_thread(self._revisions.authorize_push, principal, header)
        if earlier is not None:
            return revision_proto(earlier)
        upload = await asyncio.to_thread(self._blobs.begin)
        handed_over = False
        # One chunk is written (and hashed) in a thread while the next one arrives.
        writing: asyncio.Future[None] | None = None
        try:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument.field("header", "only the first message may be a header")
                received = upload.size + len(message.chunk)
                if received > self._revisions.max_upload_bytes:
                    raise ResourceExhausted(
                        f"the upload exceeds the limit of {self._revisions.max_upload_bytes} bytes"
                    )
                if received > header.size_bytes:
                    raise InvalidArgument.field(
                        "size_bytes",
                        f"declared {header.size_bytes} bytes but the upload sent more",
                    )
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(upload.write, message.chunk))
            if writing is not None:
                await writing
                writing = None
            header = await asyncio.to_thread(self._revisions.check_content, header, upload)
            handed_over = True  # push commits or aborts the upload itself
            revision = await asyncio.to_thread(self._revisions.push, principal, header, upload)
        finally:
            if writing is not None:
                # Failed or cancelled mid-chunk: let the write end before the upload is removed.
                with contextlib.suppress(Exception):
                    await asyncio.shield(writing)
            if not handed_over:
                # Also on cancellation: a cancelled upload leaves no temporary file behind.
                upload.abort()
        return revision_proto(revision)

    async def GetRevision(
        self, request: design_pb2.GetRevisionRequest, context: Context
    ) -> design_pb2.Revision:
        revision = await asyncio.to_thread(
            self._revisions.get_revision, current_principal(), request.name
        )
        return revision_proto(revision)

    async def ListRevisions(
        self, request: design_pb2.ListRevisionsRequest, context: Context
    ) -> design_pb2.ListRevisionsResponse:
        listed = await asyncio.to_thread(
            self._revisions.list_revisions,
            current_principal(),
            request.parent,
            request.branch,
            page(
                request.page_size,
                request.page_token,
                f"revisions:{request.parent}:{request.branch}",
            ),
        )
        return design_pb2.ListRevisionsResponse(
            revisions=[revision_proto(r) for r in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def ListBranches(
        self, request: design_pb2.ListBranchesRequest, context: Context
    ) -> design_pb2.ListBranchesResponse:
        listed = await asyncio.to_thread(
            self._revisions.list_branches,
            current_principal(),
            request.parent,
            page(request.page_size, request.page_token, f"branches:{request.parent}"),
        )
        return design_pb2.ListBranchesResponse(
            branches=[branch_proto(b) for b in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def DownloadRevision(
        self, request: design_pb2.DownloadRevisionRequest, context: Context
    ) -> AsyncIterator[design_pb2.DownloadRevisionResponse]:
        found = await asyncio.to_thread(
            self._revisions.download, current_principal(), request.name, request.artifact
        )
        async for response in download_responses(self._blobs, found):
            yield response

    async def WatchRevision(
        self, request: design_pb2.WatchRevisionRequest, context: Context
    ) -> AsyncIterator[design_pb2.Revision]:
        principal = current_principal()
        revision = await asyncio.to_thread(self._revisions.get_revision, principal, request.name)
        yield revision_proto(revision)
        while not revision.state.finished:
            await asyncio.sleep(WATCH_POLL_SECONDS)
            latest = await asyncio.to_thread(self._revisions.peek_revision, principal, request.name)
            if latest.state is not revision.state:
                yield revision_proto(latest)
            revision = latest

    async def ReleaseRevision(
        self, request: design_pb2.ReleaseRevisionRequest, context: Context
    ) -> design_pb2.Revision:
        revision = await asyncio.to_thread(
            self._revisions.release, current_principal(), request.name, request.request_id
        )
        return revision_proto(revision)

    async def ListRuleSets(
        self, request: design_pb2.ListRuleSetsRequest, context: Context
    ) -> design_pb2.ListRuleSetsResponse:
        current_principal()  # any authenticated caller
        wanted = page(request.page_size, request.page_token, "rule-sets")
        rule_sets = await asyncio.to_thread(self._revisions.rule_sets)
        listed = _page_of_catalog(wanted, rule_sets)
        return design_pb2.ListRuleSetsResponse(
            rule_sets=[rule_set_proto(r) for r in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def GetRuleSet(
        self, request: design_pb2.GetRuleSetRequest, context: Context
    ) -> design_pb2.RuleSet:
        current_principal()  # any authenticated caller
        return rule_set_proto(await asyncio.to_thread(self._revisions.rule_set, request.id))

    async def ListMaterials(
        self, request: design_pb2.ListMaterialsRequest, context: Context
    ) -> design_pb2.ListMaterialsResponse:
        current_principal()  # any authenticated caller
        wanted = page(request.page_size, request.page_token, "materials")
        listed = _page_of_catalog(wanted, await asyncio.to_thread(self._revisions.materials))
        return design_pb2.ListMaterialsResponse(
            materials=[
                design_pb2.Material(
                    id=m.id, display_name=m.display_name, density_g_cm3=m.density_g_cm3
                )
                for m in listed.items
            ],
            next_page_token=listed.next_page_token,
        )


T = TypeVar("T")


def _page_of_catalog(wanted: Page, items: list[T]) -> Listed[T]:
    """One page of a fixed, ordered list (rule sets, materials): positions are its sequence."""
    rows = [(i + 1, item) for i, item in enumerate(items) if i + 1 > wanted.after_seq]
    return page_of(wanted, rows[: wanted.limit + 1])


class DesignServicer(RevisionServicer, DiffServicer, design_pb2_grpc.DesignServiceServicer):
    def __init__(
        self,
        app: DesignApplication,
        revisions: RevisionApplication,
        blobs: BlobStore,
        diffs: DiffApplication,
    ) -> None:
        self._app = app
        self._revisions = revisions
        self._blobs = blobs
        self._diffs = diffs

    async def CreateDesign(
        self, request: design_pb2.CreateDesignRequest, context: Context
    ) -> design_pb2.Design:
        project_id = names.parse_one(request.parent, "projects/{project}", "parent")
        design = await asyncio.to_thread(
            self._app.create_design,
            current_principal(),
            project_id,
            request.design.display_name,
            request.design.description,
            request.design.part_number,
            request.request_id,
            request.design.rule_set,
            request.design.material,
            dict(request.design.rule_overrides),
        )
        return design_proto(design)

    async def UpdateDesign(
        self, request: design_pb2.UpdateDesignRequest, context: Context
    ) -> design_pb2.Design:
        project_id, design_id = names.parse(
            request.design.name, "projects/{project}/designs/{design}", "design.name"
        )
        d = request.design
        design = await asyncio.to_thread(
            self._app.update_design,
            current_principal(),
            project_id,
            design_id,
            list(request.update_mask.paths),
            Design(
                id=design_id,
                project_id=project_id,
                display_name=d.display_name,
                description=d.description,
                part_number=None,
                creator="",
                create_time=utcnow(),
                rule_set=d.rule_set,
                material=d.material or None,
                rule_overrides=dict(d.rule_overrides),
            ),
            request.request_id,
        )
        return design_proto(design)

    async def GetDesign(
        self, request: design_pb2.GetDesignRequest, context: Context
    ) -> design_pb2.Design:
        project_id, design_id = names.parse(
            request.name, "projects/{project}/designs/{design}", "name"
        )
        design = await asyncio.to_thread(
            self._app.get_design, current_principal(), project_id, design_id
        )
        return design_proto(design)

    async def ListDesigns(
        self, request: design_pb2.ListDesignsRequest, context: Context
    ) -> design_pb2.ListDesignsResponse:
        project_id = names.parse_one(request.parent, "projects/{project}", "parent")
        listed = await asyncio.to_thread(
            self._app.list_designs,
            current_principal(),
            project_id,
            page(request.page_size, request.page_token, f"designs:{project_id}"),
        )
        return design_pb2.ListDesignsResponse(
            designs=[design_proto(d) for d in listed.items],
            next_page_token=listed.next_page_token,
        )
