"""Removing an organization from a project and lowering its role, over real gRPC on SQLite and
PostgreSQL, with the token cache ON: the change bites on the member's very next call, and no
event of the project after its removal reaches the removed organization's feed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import Engine, select

from clients.cli.exits import EXIT_CONFLICT
from clients.cli.main import main
from clients.sdk import Cofab
from cofab.design.v1 import design_pb2, review_pb2
from cofab.events.v1 import feed_pb2
from cofab.identity.v1 import events_pb2 as ievents
from cofab.identity.v1 import identity_pb2 as ipb
from services.shared.config import Settings, load_settings
from services.shared.db import audit_log
from tests.conftest import Account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import code_of, create_design, create_project, share
from tests.integration.test_event_feed import Feed


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The token cache is on (a minute): a membership change must not wait for it to expire.
    return load_settings(
        {
            "COFAB_DATABASE_URL": database_url,
            "COFAB_STATE_DIR": str(tmp_path),
            "COFAB_AUTH_CACHE_SECONDS": "60",
        }
    )


def set_role(
    cofab: Cofab, name: str, role: ipb.Role.ValueType, request_id: str = ""
) -> ipb.Membership:
    membership: ipb.Membership = cofab.projects.UpdateMembership(
        ipb.UpdateMembershipRequest(
            membership=ipb.Membership(name=name, role=role),
            update_mask=field_mask_pb2.FieldMask(paths=["role"]),
            request_id=request_id,
        )
    )
    return membership


def remove(cofab: Cofab, name: str, request_id: str = "") -> ipb.Membership:
    membership: ipb.Membership = cofab.projects.DeleteMembership(
        ipb.DeleteMembershipRequest(name=name, request_id=request_id)
    )
    return membership


def precondition_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    status = rpc_status.from_call(caught.value)
    types: list[str] = []
    for detail in status.details if status else ():
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            types += [v.type for v in failure.violations]
    return caught.value.code(), types


def test_lowered_then_removed_partner_loses_access_at_once(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_EDITOR)
        name = f"{project.name}/memberships/globex"
        # Globex works as an editor; its token is now in the cache of both services.
        design = create_design(globex, project.name, "Globex bracket")

        lowered = set_role(acme, name, ipb.ROLE_VIEWER)
        assert lowered.role == ipb.ROLE_VIEWER and lowered.state == ipb.Membership.STATE_ACTIVE
        assert code_of(lambda: create_design(globex, project.name)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        got = globex.projects.GetProject(ipb.GetProjectRequest(name=project.name))
        assert got.caller_role == ipb.ROLE_VIEWER

        removed = remove(acme, name)
        assert removed.state == ipb.Membership.STATE_REMOVED
        # From the very next call, the project is as unknown to Globex as to any outsider.
        for call in (
            lambda: globex.projects.GetProject(ipb.GetProjectRequest(name=project.name)),
            lambda: globex.designs.GetDesign(design_pb2.GetDesignRequest(name=design.name)),
            lambda: globex.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project.name)),
            lambda: globex.projects.ListMemberships(
                ipb.ListMembershipsRequest(parent=project.name)
            ),
            lambda: globex.reviews.ListReviews(review_pb2.ListReviewsRequest(parent=design.name)),
        ):
            assert code_of(call) == grpc.StatusCode.NOT_FOUND
        listed = globex.projects.ListProjects(ipb.ListProjectsRequest())
        assert project.name not in [p.name for p in listed.projects]
        members = acme.projects.ListMemberships(ipb.ListMembershipsRequest(parent=project.name))
        states = {m.organization: m.state for m in members.memberships}
        assert states["organizations/globex"] == ipb.Membership.STATE_REMOVED
        # Removed is not banned: ACME may invite Globex again.
        again = acme.projects.CreateMembership(
            ipb.CreateMembershipRequest(
                parent=project.name,
                membership=ipb.Membership(
                    organization="organizations/globex", role=ipb.ROLE_VIEWER
                ),
            )
        )
        assert again.state == ipb.Membership.STATE_INVITED
    with stack.engine.connect() as conn:
        actions = list(conn.scalars(select(audit_log.c.action).order_by(audit_log.c.seq)))
    assert "membership.role_changed" in actions and "membership.removed" in actions


def test_only_owners_change_memberships(stack: Stack) -> None:
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(stack.initech) as initech,
    ):
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_EDITOR)
        acme_name = f"{project.name}/memberships/acme"
        globex_name = f"{project.name}/memberships/globex"
        assert code_of(lambda: remove(globex, acme_name)) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: set_role(globex, globex_name, ipb.ROLE_OWNER)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert code_of(lambda: remove(initech, globex_name)) == grpc.StatusCode.NOT_FOUND
        missing = f"{project.name}/memberships/initech"
        assert code_of(lambda: remove(acme, missing)) == grpc.StatusCode.NOT_FOUND
        bad_mask = ipb.UpdateMembershipRequest(
            membership=ipb.Membership(name=globex_name, role=ipb.ROLE_VIEWER),
            update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        )
        assert code_of(lambda: acme.projects.UpdateMembership(bad_mask)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # Removing twice: the second finds nothing to remove.
        remove(acme, globex_name)
        assert code_of(lambda: remove(acme, globex_name)) == grpc.StatusCode.FAILED_PRECONDITION


def test_the_last_owner_cannot_remove_or_demote_itself(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_EDITOR)
        acme_name = f"{project.name}/memberships/acme"
        globex_name = f"{project.name}/memberships/globex"
        for call in (
            lambda: remove(acme, acme_name),
            lambda: set_role(acme, acme_name, ipb.ROLE_EDITOR),
        ):
            assert precondition_of(call) == (grpc.StatusCode.FAILED_PRECONDITION, ["LAST_OWNER"])
        # With a second owner, ACME may step down; then Globex is the last owner.
        set_role(acme, globex_name, ipb.ROLE_OWNER)
        assert set_role(acme, acme_name, ipb.ROLE_VIEWER).role == ipb.ROLE_VIEWER
        assert code_of(lambda: remove(acme, globex_name)) == grpc.StatusCode.PERMISSION_DENIED
        assert precondition_of(lambda: remove(globex, globex_name)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            ["LAST_OWNER"],
        )
        assert remove(globex, acme_name).state == ipb.Membership.STATE_REMOVED


def _feed_events(feed: Feed, account: Account) -> list[tuple[str, str]]:
    stream = feed.stub.StreamEvents(
        feed_pb2.StreamEventsRequest(),
        metadata=(("authorization", f"Bearer {account.token}"),),
        timeout=30,
    )
    return [(r.event.type, r.event.subject) for r in stream]


def _wait_for(
    feed: Feed, account: Account, subject: str, event_type: str = ""
) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = _feed_events(feed, account)
        if any(s == subject and t.startswith(event_type) for t, s in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"{subject} never reached the feed of {account.organization}")


def test_removed_organization_gets_its_removal_and_nothing_after(
    stack: Stack, engine: Engine, kafka_bootstrap: str, tmp_path: Path
) -> None:
    feed = Feed(engine, kafka_bootstrap, tmp_path)
    try:
        with stack.client(stack.acme) as acme:
            project = create_project(acme)
            share(stack, project.name, ipb.ROLE_EDITOR)
            before = create_design(acme, project.name, "Before")
            name = f"{project.name}/memberships/globex"
            set_role(acme, name, ipb.ROLE_REVIEWER, request_id="lower-1")
            # A retried call (same request id) changes nothing and emits nothing again.
            set_role(acme, name, ipb.ROLE_REVIEWER, request_id="lower-1")
            remove(acme, name, request_id="remove-1")
            remove(acme, name, request_id="remove-1")
            after = create_design(acme, project.name, "After")
        # Events of different aggregates arrive in any order: wait for both ends. The feed
        # stores an event for its whole audience at once, so once ACME has `after`, Globex
        # would have it too if it were in the audience.
        _wait_for(feed, stack.acme, after.name)
        _wait_for(feed, stack.globex, name, "identity.membership.removed")
        # The broker outlives the test: keep this project's events only.
        globex = [e for e in _feed_events(feed, stack.globex) if e[1].startswith(project.name)]
        types = [t for t, _ in globex]
        assert (
            "design.design.created",
            before.name,
        ) in globex
        assert types.count("identity.membership.role_changed") == 1
        assert types.count("identity.membership.removed") == 1
        assert after.name not in [s for _, s in globex]
        # The payload tells Globex what changed, with the previous role.
        stream = feed.stub.StreamEvents(
            feed_pb2.StreamEventsRequest(type_prefixes=["identity.membership.role_changed"]),
            metadata=(("authorization", f"Bearer {stack.globex.token}"),),
            timeout=30,
        )
        (changed,) = [r for r in stream if r.event.subject.startswith(project.name)]
        payload = ievents.MembershipRoleChanged()
        assert changed.event.data.Unpack(payload)
        assert (payload.previous_role, payload.membership.role) == (
            ipb.ROLE_EDITOR,
            ipb.ROLE_REVIEWER,
        )
    finally:
        feed.close()


def test_cli_sets_a_role_and_removes_a_member(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
    share(stack, project.name, ipb.ROLE_EDITOR)
    monkeypatch.setenv("COFAB_TOKEN", stack.acme.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", stack.supply.address)
    assert main(["project", "set-role", project.name, "globex", "--role", "viewer"]) == 0
    assert "globex  viewer  active" in capsys.readouterr().out
    # FAILED_PRECONDITION: the CLI's conflict exit code (clients/cli/exits.py).
    assert main(["project", "remove", project.name, "acme"]) == EXIT_CONFLICT
    assert "last active owner" in capsys.readouterr().err
    assert main(["project", "remove", project.name, "organizations/globex"]) == 0
    assert "globex  viewer  removed" in capsys.readouterr().out
