"""Use cases of the design service. Each runs in one transaction: authorization, the change,
its audit entry, its outbox event and its request-id record commit together or not at all."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.design import domain
from services.design.adapters.repository import SqlRepository
from services.design.convert import design_created, design_updated, membership_event
from services.design.domain import Design, Membership, MembershipState, Project
from services.design.domain.model import (
    ValidationCatalog,
    check_description,
    check_display_name,
    check_part_number,
    check_validation,
    invite_ttl,
)
from services.design.domain.ports import GeometryChecks
from services.shared import audit, authz, idempotency, outbox
from services.shared.db import utcnow
from services.shared.errors import AlreadyExists, InvalidArgument, NotFound
from services.shared.events import make_envelope
from services.shared.identity import Principal, Role
from services.shared.paging import Listed, Page, page_of

SOURCE = "//cofab/design"
Clock = Callable[[], dt.datetime]
# AIP-159: "projects/-" reads across all projects (used for the caller's own invitations).
ANY_PROJECT = "-"


def _new_id() -> str:
    return uuid.uuid4().hex


class DesignApplication:
    """Projects, memberships and designs, as the gRPC API exposes them."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock = utcnow,
        *,
        geometry: GeometryChecks,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._geometry = geometry
        self._catalog: ValidationCatalog | None = None

    def catalog(self) -> ValidationCatalog:
        """The rule sets and materials design settings may name (read once from the engine)."""
        if self._catalog is None:
            self._catalog = ValidationCatalog(
                rule_sets={
                    key: {r.id: r.unit for r in rule_set.rules if r.limit is not None}
                    for key, rule_set in self._geometry.rule_sets().items()
                },
                materials=frozenset(self._geometry.materials()),
            )
        return self._catalog

    @property
    def clock(self) -> Clock:
        """The service's clock (tests shift it along with Temporal's skipped time)."""
        return self._clock

    # projects

    def create_project(
        self, principal: Principal, display_name: str, description: str, request_id: str
    ) -> tuple[Project, Role]:
        display_name = check_display_name("project.display_name", display_name)
        description = check_description("project.description", description)
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateProject", request_id)
            if earlier is not None:
                return self._project_for(repo, principal, earlier.split("/")[1])
            now = self._clock()
            project = Project(_new_id(), display_name, description, principal.organization_id, now)
            repo.add_project(project)
            repo.save_membership(
                Membership(
                    project_id=project.id,
                    organization_id=principal.organization_id,
                    role=Role.OWNER,
                    state=MembershipState.ACTIVE,
                    invitation_id=_new_id(),
                    invited_by=principal.user_name,
                    invite_expire_time=None,
                    create_time=now,
                )
            )
            audit.record(conn, principal, "project.create", project.name)
            idempotency.remember(conn, principal, "CreateProject", request_id, project.name)
        return project, Role.OWNER

    def get_project(self, principal: Principal, project_id: str) -> tuple[Project, Role]:
        with self._engine.begin() as conn:
            return self._project_for(SqlRepository(conn), principal, project_id)

    def list_projects(self, principal: Principal, page: Page) -> Listed[tuple[Project, Role]]:
        with self._engine.begin() as conn:
            rows = SqlRepository(conn).list_member_projects(
                principal.organization_id, page.after_seq, page.limit + 1
            )
        return page_of(page, [(seq, (project, role)) for seq, project, role in rows])

    def _project_for(
        self, repo: SqlRepository, principal: Principal, project_id: str
    ) -> tuple[Project, Role]:
        role = authz.require_project_role(repo.conn, principal, project_id, Role.VIEWER)
        project = repo.get_project(project_id)
        if project is None:  # a membership without its project cannot exist (foreign key)
            raise NotFound(f"projects/{project_id} not found")
        return project, role

    # memberships

    def create_membership(
        self,
        principal: Principal,
        project_id: str,
        organization_id: str,
        role: Role,
        ttl_seconds: int,
        request_id: str,
    ) -> Membership:
        ttl = invite_ttl(ttl_seconds)
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.OWNER)
            earlier = idempotency.replayed(conn, principal, "CreateMembership", request_id)
            if earlier is not None:
                return self._membership(repo, earlier)
            if not repo.organization_exists(organization_id):
                raise NotFound(f"organizations/{organization_id} not found")
            membership = domain.invite(
                project_id,
                organization_id,
                role,
                _new_id(),
                principal.user_name,
                ttl,
                self._clock(),
                repo.get_membership(project_id, organization_id),
            )
            repo.save_membership(membership)
            self._emit(conn, principal, "identity.membership.invited", membership)
            audit.record(conn, principal, "membership.invite", membership.name, {"role": role.name})
            idempotency.remember(conn, principal, "CreateMembership", request_id, membership.name)
        return membership

    def list_memberships(
        self, principal: Principal, project_id: str, page: Page
    ) -> Listed[Membership]:
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            if project_id == ANY_PROJECT:
                rows = repo.list_memberships_of_organization(
                    principal.organization_id, page.after_seq, page.limit + 1
                )
            else:
                authz.require_project_role(conn, principal, project_id, Role.VIEWER)
                rows = repo.list_memberships(project_id, page.after_seq, page.limit + 1)
        return page_of(page, rows)

    def accept_membership(
        self, principal: Principal, project_id: str, organization_id: str, request_id: str
    ) -> Membership:
        return self._decide(
            principal,
            project_id,
            organization_id,
            request_id,
            "AcceptMembership",
            lambda m: domain.accept(m, self._clock()),
            "identity.membership.accepted",
        )

    def decline_membership(
        self, principal: Principal, project_id: str, organization_id: str, request_id: str
    ) -> Membership:
        return self._decide(
            principal,
            project_id,
            organization_id,
            request_id,
            "DeclineMembership",
            domain.decline,
            "identity.membership.declined",
        )

    def expire_membership(
        self, principal: Principal, project_id: str, organization_id: str, request_id: str
    ) -> Membership:
        authz.require_service_account(principal, "ExpireMembership")
        return self._transition(
            principal,
            project_id,
            organization_id,
            request_id,
            "ExpireMembership",
            lambda m: domain.expire(m, self._clock()),
            "identity.membership.expired",
        )

    def update_membership(
        self,
        principal: Principal,
        project_id: str,
        organization_id: str,
        paths: list[str],
        role: Role,
        request_id: str,
    ) -> Membership:
        """Gives a member another role (owner only); the project keeps one active owner."""
        if paths != ["role"]:
            raise InvalidArgument.field("update_mask", "must be exactly ['role']")
        previous: list[Role] = []

        def change(current: Membership, owners: int) -> Membership:
            previous.append(current.role)
            return domain.change_role(current, role, owners)

        changed = self._owner_change(
            principal,
            project_id,
            organization_id,
            request_id,
            "UpdateMembership",
            change,
            "identity.membership.role_changed",
            previous,
        )
        return changed

    def delete_membership(
        self, principal: Principal, project_id: str, organization_id: str, request_id: str
    ) -> Membership:
        """Removes a member or withdraws an invitation (owner only), effective at once: every
        RPC reads the membership from the database, and the events after it leave the removed
        organization out of their audience."""
        return self._owner_change(
            principal,
            project_id,
            organization_id,
            request_id,
            "DeleteMembership",
            domain.remove,
            "identity.membership.removed",
        )

    def _owner_change(
        self,
        principal: Principal,
        project_id: str,
        organization_id: str,
        request_id: str,
        method: str,
        change: Callable[[Membership, int], Membership],
        event_type: str,
        previous_role: list[Role] | None = None,
    ) -> Membership:
        name = f"projects/{project_id}/memberships/{organization_id}"
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.OWNER)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._membership(repo, earlier)
            owners = repo.active_owner_count(project_id)
            current = repo.get_membership(project_id, organization_id)
            if current is None:
                raise NotFound(f"{name} not found")
            changed = change(current, owners)
            if changed != current:
                repo.save_membership(changed)
                # The audience is read after the change: the project's active members, and the
                # organization concerned, which learns of its removal and of nothing after it.
                audience = {
                    *repo.active_member_organizations(project_id),
                    f"organizations/{organization_id}",
                }
                role = previous_role[0] if previous_role else None
                self._emit(conn, principal, event_type, changed, sorted(audience), role)
                detail = {"role": changed.role.name}
                if role is not None:
                    detail["previous_role"] = role.name
                audit.record(conn, principal, event_type.removeprefix("identity."), name, detail)
            idempotency.remember(conn, principal, method, request_id, name)
        return changed

    def _decide(
        self,
        principal: Principal,
        project_id: str,
        organization_id: str,
        request_id: str,
        method: str,
        change: Callable[[Membership], Membership],
        event_type: str,
    ) -> Membership:
        # Only the invited organization sees (and answers) its invitation, through an admin.
        authz.require_own_organization(
            principal, organization_id, f"projects/{project_id}/memberships/{organization_id}"
        )
        authz.require_organization_admin(principal, method)
        return self._transition(
            principal, project_id, organization_id, request_id, method, change, event_type
        )

    def _transition(
        self,
        principal: Principal,
        project_id: str,
        organization_id: str,
        request_id: str,
        method: str,
        change: Callable[[Membership], Membership],
        event_type: str,
    ) -> Membership:
        name = f"projects/{project_id}/memberships/{organization_id}"
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            earlier = idempotency.replayed(conn, principal, method, request_id)
            if earlier is not None:
                return self._membership(repo, earlier)
            current = repo.get_membership(project_id, organization_id)
            if current is None:
                raise NotFound(f"{name} not found")
            changed = change(current)
            if changed == current:
                return current  # nothing to do (e.g. expiring an invitation already answered)
            repo.save_membership(changed)
            self._emit(conn, principal, event_type, changed)
            audit.record(conn, principal, event_type.removeprefix("identity."), name)
            idempotency.remember(conn, principal, method, request_id, name)
        return changed

    def _membership(self, repo: SqlRepository, name: str) -> Membership:
        _, project_id, _, organization_id = name.split("/")
        membership = repo.get_membership(project_id, organization_id)
        if membership is None:
            raise NotFound(f"{name} not found")
        return membership

    def _emit(
        self,
        conn: Connection,
        principal: Principal,
        event_type: str,
        membership: Membership,
        audience: list[str] | None = None,
        previous_role: Role | None = None,
    ) -> None:
        payload: Message = membership_event(event_type, membership, previous_role)
        if audience is None:
            project = SqlRepository(conn).get_project(membership.project_id)
            owner = project.owner_organization_id if project is not None else ""
            audience = sorted(
                {f"organizations/{membership.organization_id}", f"organizations/{owner}"}
            )
        envelope = make_envelope(
            source=SOURCE,
            event_type=event_type,
            subject=membership.name,
            organization=principal.organization_name,
            data=payload,
            audience=audience,
        )
        # Keyed by invitation: its invited/accepted/expired events stay in order.
        outbox.enqueue(conn, envelope, key=membership.invitation_id)

    # designs

    def create_design(
        self,
        principal: Principal,
        project_id: str,
        display_name: str,
        description: str,
        part_number: str,
        request_id: str,
        rule_set: str = "",
        material: str = "",
        rule_overrides: Mapping[str, float] | None = None,
    ) -> Design:
        display_name = check_display_name("design.display_name", display_name)
        description = check_description("design.description", description)
        part = check_part_number(part_number)
        validation = check_validation(rule_set, material, rule_overrides or {}, self.catalog())
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.EDITOR)
            earlier = idempotency.replayed(conn, principal, "CreateDesign", request_id)
            if earlier is not None:
                return self._design(repo, principal, earlier)
            if part is not None and repo.design_with_part_number(project_id, part) is not None:
                raise AlreadyExists(
                    f"part number {part!r} is already used in projects/{project_id}"
                )
            design = Design(
                _new_id(),
                project_id,
                display_name,
                description,
                part,
                principal.user_name,
                self._clock(),
                *validation,
            )
            try:
                repo.add_design(design)
            except IntegrityError:
                raise AlreadyExists(f"part number {part!r} is already used") from None
            envelope = make_envelope(
                source=SOURCE,
                event_type="design.design.created",
                subject=design.name,
                organization=principal.organization_name,
                data=design_created(design),
                audience=repo.active_member_organizations(project_id),
            )
            outbox.enqueue(conn, envelope, key=design.id)
            audit.record(conn, principal, "design.create", design.name)
            idempotency.remember(conn, principal, "CreateDesign", request_id, design.name)
        return design

    def update_design(
        self,
        principal: Principal,
        project_id: str,
        design_id: str,
        paths: list[str],
        wanted: Design,
        request_id: str,
    ) -> Design:
        """Changes the named fields of a design (AIP-134); an empty mask is refused."""
        unknown = sorted(set(paths) - set(UPDATABLE_DESIGN_FIELDS))
        if not paths or unknown:
            raise InvalidArgument.field(
                "update_mask",
                f"must name some of {', '.join(UPDATABLE_DESIGN_FIELDS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            )
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            authz.require_project_role(conn, principal, project_id, Role.EDITOR)
            name = f"projects/{project_id}/designs/{design_id}"
            earlier = idempotency.replayed(conn, principal, "UpdateDesign", request_id)
            if earlier is not None:
                return self._design(repo, principal, earlier)
            current = self._design(repo, principal, name)
            changes: dict[str, object] = {}
            if "display_name" in paths:
                changes["display_name"] = check_display_name(
                    "design.display_name", wanted.display_name
                )
            if "description" in paths:
                changes["description"] = check_description("design.description", wanted.description)
            if {"rule_set", "material", "rule_overrides"} & set(paths):
                rule_set, material, overrides = check_validation(
                    wanted.rule_set if "rule_set" in paths else current.rule_set,
                    (wanted.material if "material" in paths else current.material) or "",
                    wanted.rule_overrides if "rule_overrides" in paths else current.rule_overrides,
                    self.catalog(),
                )
                changes.update(rule_set=rule_set, material=material, rule_overrides=overrides)
            updated = replace(current, **changes)  # type: ignore[arg-type]
            repo.update_design(updated)
            envelope = make_envelope(
                source=SOURCE,
                event_type="design.design.updated",
                subject=updated.name,
                organization=principal.organization_name,
                data=design_updated(updated, sorted(paths)),
                audience=repo.active_member_organizations(project_id),
            )
            outbox.enqueue(conn, envelope, key=updated.id)
            audit.record(conn, principal, "design.update", updated.name, {"paths": sorted(paths)})
            idempotency.remember(conn, principal, "UpdateDesign", request_id, updated.name)
        return updated

    def get_design(self, principal: Principal, project_id: str, design_id: str) -> Design:
        with self._engine.begin() as conn:
            design = self._design(
                SqlRepository(conn), principal, f"projects/{project_id}/designs/{design_id}"
            )
            audit.record(conn, principal, "design.read", design.name)
        return design

    def list_designs(self, principal: Principal, project_id: str, page: Page) -> Listed[Design]:
        with self._engine.begin() as conn:
            authz.require_project_role(conn, principal, project_id, Role.VIEWER)
            rows = SqlRepository(conn).list_designs(project_id, page.after_seq, page.limit + 1)
            audit.record(conn, principal, "design.list", f"projects/{project_id}/designs")
        return page_of(page, rows)

    def _design(self, repo: SqlRepository, principal: Principal, name: str) -> Design:
        _, project_id, _, design_id = name.split("/")
        authz.require_project_role(repo.conn, principal, project_id, Role.VIEWER)
        design = repo.get_design(project_id, design_id)
        if design is None:
            raise NotFound(f"{name} not found")
        return design


UPDATABLE_DESIGN_FIELDS = ("display_name", "description", "rule_set", "material", "rule_overrides")


def check_role(value: int, field: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidArgument.field(
            field, "must be one of viewer, reviewer, editor, owner"
        ) from None
