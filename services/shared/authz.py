"""The one authorization helper every RPC calls: organization and project-role checks.

A caller whose organization is not an active member of a project gets NotFound, exactly as
if the project did not exist, so ids of other companies' projects reveal nothing.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from services.shared.db import memberships
from services.shared.errors import NotFound, PermissionDenied
from services.shared.identity import Principal, Role

ACTIVE = "ACTIVE"


def project_role(conn: Connection, principal: Principal, project_id: str) -> Role | None:
    """The caller organization's active role in a project, or None if it is not a member."""
    row = conn.execute(
        select(memberships.c.role).where(
            memberships.c.project_id == project_id,
            memberships.c.organization_id == principal.organization_id,
            memberships.c.state == ACTIVE,
        )
    ).first()
    return Role(row.role) if row is not None else None


def require_project_role(
    conn: Connection, principal: Principal, project_id: str, minimum: Role
) -> Role:
    """Returns the caller's role, or raises NotFound (not a member) / PermissionDenied (too low)."""
    role = project_role(conn, principal, project_id)
    if role is None:
        raise NotFound(f"projects/{project_id} not found")
    if role < minimum:
        raise PermissionDenied(
            f"the {role.name.lower()} role of {principal.organization_name} in "
            f"projects/{project_id} does not allow this; it needs {minimum.name.lower()}"
        )
    return role


def require_own_organization(principal: Principal, organization_id: str, what: str) -> None:
    """Resources owned by an organization are visible to that organization only."""
    if principal.organization_id != organization_id:
        raise NotFound(f"{what} not found")


def require_organization_admin(principal: Principal, action: str) -> None:
    if not principal.organization_admin:
        raise PermissionDenied(f"{action} needs an admin user of {principal.organization_name}")


def require_service_account(principal: Principal, action: str) -> None:
    if not principal.service_account:
        raise PermissionDenied(f"{action} is reserved to platform service accounts")
