"""gRPC servicers of the design service: proto -> use case -> proto, nothing more.

Use cases run in a worker thread (SQLAlchemy is synchronous); domain errors become gRPC
statuses in services.shared.server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cofab.design.v1 import design_pb2, design_pb2_grpc
from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.design.application import ANY_PROJECT, DesignApplication, check_role
from services.design.convert import design_proto, membership_proto, project_proto
from services.design.domain import Membership
from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.identity import Principal
from services.shared.paging import page
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

    async def _transition(
        self, use_case: MembershipTransition, name: str, request_id: str
    ) -> identity_pb2.Membership:
        """Accept, decline and expire share one shape: a membership name and a request id."""
        project_id, organization_id = _membership_name(name)
        membership = await asyncio.to_thread(
            use_case, current_principal(), project_id, organization_id, request_id
        )
        return membership_proto(membership)


def _membership_name(name: str) -> tuple[str, str]:
    project_id, organization_id = names.parse(
        name, "projects/{project}/memberships/{organization}", "name"
    )
    return project_id, organization_id


class DesignServicer(design_pb2_grpc.DesignServiceServicer):
    def __init__(self, app: DesignApplication) -> None:
        self._app = app

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
