"""The design service's API over real gRPC, on SQLite and PostgreSQL: identity, projects,
invitations, designs, errors, idempotency and audit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import select, update
from sqlalchemy.exc import DatabaseError

from clients.sdk import Cofab, connect
from cofab.design.v1 import design_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from services.design.app import build_server
from services.shared import accounts, audit
from services.shared.config import load_settings
from services.shared.db import api_tokens, audit_log, outbox
from tests.conftest import make_account
from tests.integration.conftest import Stack
from tests.support import ServerThread


def create_project(cofab: Cofab, name: str = "Bracket program") -> ipb.Project:
    return cofab.projects.CreateProject(
        ipb.CreateProjectRequest(project=ipb.Project(display_name=name))
    )


def invite(
    cofab: Cofab,
    project: str,
    org: str,
    role: ipb.Role.ValueType = ipb.ROLE_EDITOR,
    ttl: int = 0,
) -> ipb.Membership:
    return cofab.projects.CreateMembership(
        ipb.CreateMembershipRequest(
            parent=project,
            membership=ipb.Membership(organization=f"organizations/{org}", role=role),
            invite_ttl_seconds=ttl,
        )
    )


def share(stack: Stack, project: str, role: ipb.Role.ValueType = ipb.ROLE_EDITOR) -> None:
    """ACME invites Globex and Globex's admin accepts."""
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        invite(acme, project, "globex", role)
        globex.projects.AcceptMembership(
            ipb.AcceptMembershipRequest(name=f"{project}/memberships/globex")
        )


def create_design(
    cofab: Cofab, project: str, name: str = "Bracket", part: str = "", request_id: str = ""
) -> design_pb2.Design:
    return cofab.designs.CreateDesign(
        design_pb2.CreateDesignRequest(
            parent=project,
            design=design_pb2.Design(display_name=name, part_number=part),
            request_id=request_id,
        )
    )


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


# authentication ----------------------------------------------------------------------------


def test_caller_identity(stack: Stack) -> None:
    with stack.client(stack.acme) as cofab:
        me = cofab.identity.GetCallerIdentity(ipb.GetCallerIdentityRequest())
    assert me.organization == "organizations/acme"
    assert me.user == "organizations/acme/users/alice"
    assert me.organization_admin


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer"),),
        (("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"),),
        (("authorization", "Bearer cofab_000000000000_" + "A" * 43),),
        (("authorization", "Bearer not-a-token"),),
    ],
)
def test_missing_or_bad_tokens_are_unauthenticated(
    stack: Stack, metadata: tuple[tuple[str, str], ...]
) -> None:
    with connect(None, stack.design.address, stack.supply.address) as anonymous:
        with pytest.raises(grpc.RpcError) as caught:
            anonymous.projects.ListProjects(ipb.ListProjectsRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_expired_and_revoked_tokens_are_unauthenticated(stack: Stack) -> None:
    expired = accounts.create_token(stack.engine, "acme", "alice")
    with stack.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == expired.token_id)
            .values(expire_time=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    revoked = accounts.create_token(stack.engine, "acme", "alice")
    with connect(revoked.plaintext, stack.design.address) as cofab:
        assert cofab.projects.ListProjects(ipb.ListProjectsRequest()) is not None
    accounts.revoke_token(stack.engine, revoked.token_id)
    for token, word in ((expired.plaintext, "expired"), (revoked.plaintext, "revoked")):
        with connect(token, stack.design.address) as cofab:
            with pytest.raises(grpc.RpcError) as caught:
                cofab.projects.ListProjects(ipb.ListProjectsRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert word in (caught.value.details() or "")


def test_token_is_stored_only_as_a_hash(stack: Stack) -> None:
    with stack.engine.connect() as conn:
        stored = {row.secret_sha256 for row in conn.execute(select(api_tokens))}
    assert all(stack.acme.token.split("_")[2] not in value for value in stored)


def served_services(address: str) -> set[str]:
    """Asks a server, without a token, whether it is healthy and which services it has."""
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        return {s.name for r in responses for s in r.list_services_response.service}


def test_health_and_reflection_answer_without_a_token(stack: Stack) -> None:
    design = {"cofab.design.v1.DesignService", "cofab.identity.v1.ProjectService"}
    supply = {"cofab.supply.v1.SupplyService"}
    common = {"cofab.identity.v1.IdentityService", "grpc.health.v1.Health"}
    assert design | common <= served_services(stack.design.address)
    assert supply | common <= served_services(stack.supply.address)


# projects and invitations -------------------------------------------------------------------


def test_owner_creates_and_lists_projects(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        assert project.caller_role == ipb.ROLE_OWNER
        assert project.owner_organization == "organizations/acme"
        listed = acme.projects.ListProjects(ipb.ListProjectsRequest())
        assert [p.name for p in listed.projects] == [project.name]


def test_outsider_sees_nothing_and_learns_nothing(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        project = create_project(acme)
        design = create_design(acme, project.name)
        assert not initech.projects.ListProjects(ipb.ListProjectsRequest()).projects
        missing = f"projects/{uuid.uuid4().hex}"
        for name in (project.name, missing):
            with pytest.raises(grpc.RpcError) as caught:
                initech.projects.GetProject(ipb.GetProjectRequest(name=name))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            # The same message shape whether the project exists or not.
            assert caught.value.details() == f"{name} not found"
        calls = [
            lambda: initech.designs.GetDesign(design_pb2.GetDesignRequest(name=design.name)),
            lambda: initech.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project.name)),
            lambda: create_design(initech, project.name),
            lambda: initech.projects.ListMemberships(
                ipb.ListMembershipsRequest(parent=project.name)
            ),
            lambda: invite(initech, project.name, "initech"),
        ]
        for call in calls:
            assert code_of(call) == grpc.StatusCode.NOT_FOUND


def test_invitation_lifecycle(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        membership = invite(acme, project.name, "globex", ipb.ROLE_REVIEWER)
        assert membership.state == ipb.Membership.STATE_INVITED
        assert membership.invitation_id
        # Invited is not yet a member.
        assert (
            code_of(lambda: globex.projects.GetProject(ipb.GetProjectRequest(name=project.name)))
            == grpc.StatusCode.NOT_FOUND
        )
        mine = globex.projects.ListMemberships(ipb.ListMembershipsRequest(parent="projects/-"))
        assert [m.name for m in mine.memberships] == [membership.name]
        accepted = globex.projects.AcceptMembership(
            ipb.AcceptMembershipRequest(name=membership.name)
        )
        assert accepted.state == ipb.Membership.STATE_ACTIVE
        seen = globex.projects.GetProject(ipb.GetProjectRequest(name=project.name))
        assert seen.caller_role == ipb.ROLE_REVIEWER
        assert code_of(
            lambda: globex.projects.AcceptMembership(
                ipb.AcceptMembershipRequest(name=membership.name)
            )
        ) == (grpc.StatusCode.FAILED_PRECONDITION)
        assert code_of(lambda: invite(acme, project.name, "globex")) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )


def test_only_the_invited_organizations_admin_answers(stack: Stack) -> None:
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.initech) as initech,
        stack.client(stack.acme_member) as member,
    ):
        project = create_project(acme)
        membership = invite(acme, project.name, "globex")
        assert (
            code_of(
                lambda: initech.projects.AcceptMembership(
                    ipb.AcceptMembershipRequest(name=membership.name)
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        other = invite(acme, project.name, "initech")
        assert other.state == ipb.Membership.STATE_INVITED
    plain = make_account(stack.engine, "initech", "ian")
    with stack.client(plain) as initech_user:
        assert (
            code_of(
                lambda: initech_user.projects.AcceptMembership(
                    ipb.AcceptMembershipRequest(name=other.name)
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
    with stack.client(stack.acme_member) as member:
        # Only platform service accounts expire invitations.
        assert code_of(
            lambda: member.projects.ExpireMembership(
                ipb.ExpireMembershipRequest(name=membership.name)
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED)


def test_only_owners_invite(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_EDITOR)
        assert code_of(lambda: invite(globex, project.name, "initech")) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


def test_unknown_organization_and_bad_role(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        assert code_of(lambda: invite(acme, project.name, "nobody")) == grpc.StatusCode.NOT_FOUND
        assert code_of(
            lambda: invite(acme, project.name, "globex", role=ipb.Role.ValueType(0))
        ) == (grpc.StatusCode.INVALID_ARGUMENT)
        assert code_of(
            lambda: invite(acme, project.name, "globex", role=ipb.Role.ValueType(99))
        ) == (grpc.StatusCode.INVALID_ARGUMENT)
        assert code_of(lambda: invite(acme, project.name, "globex", ttl=-1)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


# designs ------------------------------------------------------------------------------------


def test_editor_creates_viewer_reads_but_cannot_create(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_VIEWER)
        design = create_design(acme, project.name, part="BR-100")
        assert design.creator == "organizations/acme/users/alice"
        got = globex.designs.GetDesign(design_pb2.GetDesignRequest(name=design.name))
        assert got == design
        with pytest.raises(grpc.RpcError) as caught:
            create_design(globex, project.name)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "viewer" in (caught.value.details() or "")


def test_malformed_requests_name_the_field(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        cases = {
            "design.display_name": lambda: create_design(acme, project.name, name="  "),
            "design.part_number": lambda: create_design(acme, project.name, part="bad part!"),
            "parent": lambda: create_design(acme, "projects/UPPER"),
            "name": lambda: acme.designs.GetDesign(design_pb2.GetDesignRequest(name="designs/x")),
            "page_token": lambda: acme.designs.ListDesigns(
                design_pb2.ListDesignsRequest(parent=project.name, page_token="junk")
            ),
            "request_id": lambda: create_design(
                acme, project.name, request_id="bad id with spaces"
            ),
        }
        for field, call in cases.items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            status = rpc_status.from_call(caught.value)
            assert status is not None
            bad = error_details_pb2.BadRequest()
            assert any(d.Unpack(bad) for d in status.details), field
            assert bad.field_violations[0].field == field


def test_duplicate_part_number_already_exists(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        create_design(acme, project.name, part="BR-100")
        assert code_of(lambda: create_design(acme, project.name, part="BR-100")) == (
            grpc.StatusCode.ALREADY_EXISTS
        )


def test_retried_request_id_has_no_second_effect(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        first = create_design(acme, project.name, request_id="req-1")
        again = create_design(acme, project.name, request_id="req-1")
        assert again == first
        listed = acme.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project.name))
        assert len(listed.designs) == 1
    with stack.engine.connect() as conn:
        created = conn.execute(
            select(outbox.c.event_id).where(outbox.c.event_type == "design.design.created")
        ).all()
    assert len(created) == 1


def test_designs_are_paginated(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        made = [create_design(acme, project.name, name=f"part {i}").name for i in range(7)]
        seen, token, pages = [], "", 0
        while True:
            page = acme.designs.ListDesigns(
                design_pb2.ListDesignsRequest(parent=project.name, page_size=3, page_token=token)
            )
            seen += [d.name for d in page.designs]
            pages += 1
            token = page.next_page_token
            if not token:
                break
    assert seen == made
    assert pages == 3


def test_changes_and_reads_are_audited_in_an_intact_chain(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        share(stack, project.name)
        design = create_design(acme, project.name)
        globex.designs.GetDesign(design_pb2.GetDesignRequest(name=design.name))
    with stack.engine.connect() as conn:
        entries = list(audit.entries(conn))
        assert audit.verify_chain(conn).ok
    reads = [e for e in entries if e.action == "design.read"]
    assert [(e.organization_id, e.user_id, e.resource) for e in reads] == [
        ("globex", "gina", design.name)
    ]
    assert {"project.create", "membership.invite", "membership.accepted", "design.create"} <= {
        e.action for e in entries
    }


def test_change_and_its_event_commit_together(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        design = create_design(acme, project.name)
        with pytest.raises(grpc.RpcError):
            create_design(acme, project.name, name="")
    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.topic, outbox.c.event_type).where(
                outbox.c.topic == "cofab.design"
            )
        ).all()
    assert [(r.key, r.event_type) for r in rows] == [
        (design.name.rsplit("/", 1)[1], "design.design.created")
    ]


def test_audit_log_is_append_only_in_the_database(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        create_project(acme)
    for statement in (update(audit_log).values(user_id="mallory"), audit_log.delete()):
        with pytest.raises(DatabaseError, match="append-only"), stack.engine.begin() as conn:
            conn.execute(statement)
    with stack.engine.connect() as conn:
        assert audit.verify_chain(conn).ok


def test_database_down_is_unavailable_and_the_server_stays_up(tmp_path: object) -> None:
    settings = load_settings(
        {
            "COFAB_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/cofab",
            "COFAB_STATE_DIR": str(tmp_path),
        }
    )
    server = ServerThread(lambda: build_server(settings, listen="127.0.0.1:0")).start()
    try:
        with connect("cofab_000000000000_" + "A" * 43, server.address) as cofab:
            for _ in range(2):  # the server answers again after the failure
                with pytest.raises(grpc.RpcError) as caught:
                    cofab.projects.ListProjects(ipb.ListProjectsRequest(), timeout=20)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "database is unavailable" in (caught.value.details() or "")
        assert "cofab.design.v1.DesignService" in served_services(server.address)
    finally:
        server.stop()
