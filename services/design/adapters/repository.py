"""SQL storage of projects, memberships and designs, on a connection inside a transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from services.design.adapters.tables import designs
from services.design.domain import Design, Membership, MembershipState, Project
from services.shared.db import memberships, organizations, projects
from services.shared.identity import Role


def _project(row: Any) -> Project:
    return Project(
        id=row.id,
        display_name=row.display_name,
        description=row.description,
        owner_organization_id=row.owner_organization_id,
        create_time=row.create_time,
    )


def _membership(row: Any) -> Membership:
    return Membership(
        project_id=row.project_id,
        organization_id=row.organization_id,
        role=Role(row.role),
        state=MembershipState(row.state),
        invitation_id=row.invitation_id,
        invited_by=row.invited_by,
        invite_expire_time=row.invite_expire_time,
        create_time=row.create_time,
    )


def _design(row: Any) -> Design:
    return Design(
        id=row.id,
        project_id=row.project_id,
        display_name=row.display_name,
        description=row.description,
        part_number=row.part_number,
        creator=row.creator,
        create_time=row.create_time,
        rule_set=row.rule_set,
        material=row.material,
        rule_overrides=dict(row.rule_overrides or {}),
    )


class SqlRepository:
    """Projects, memberships and designs on one connection (the caller owns the transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # organizations

    def organization_exists(self, organization_id: str) -> bool:
        row = self.conn.execute(
            select(organizations.c.id).where(organizations.c.id == organization_id)
        ).first()
        return row is not None

    # projects

    def add_project(self, project: Project) -> None:
        self.conn.execute(
            insert(projects).values(
                id=project.id,
                display_name=project.display_name,
                description=project.description,
                owner_organization_id=project.owner_organization_id,
                create_time=project.create_time,
            )
        )

    def get_project(self, project_id: str) -> Project | None:
        row = self.conn.execute(select(projects).where(projects.c.id == project_id)).first()
        return _project(row) if row is not None else None

    def list_member_projects(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Project, Role]]:
        rows = self.conn.execute(
            select(projects, memberships.c.role)
            .join(
                memberships,
                and_(
                    memberships.c.project_id == projects.c.id,
                    memberships.c.organization_id == organization_id,
                    memberships.c.state == MembershipState.ACTIVE.value,
                ),
            )
            .where(projects.c.seq > after_seq)
            .order_by(projects.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _project(row), Role(row.role)) for row in rows]

    # memberships

    def get_membership(self, project_id: str, organization_id: str) -> Membership | None:
        row = self.conn.execute(
            select(memberships).where(
                memberships.c.project_id == project_id,
                memberships.c.organization_id == organization_id,
            )
        ).first()
        return _membership(row) if row is not None else None

    def save_membership(self, membership: Membership) -> None:
        """Inserts the membership, or replaces the one of the same project and organization."""
        values = {
            "role": int(membership.role),
            "state": membership.state.value,
            "invitation_id": membership.invitation_id,
            "invited_by": membership.invited_by,
            "invite_expire_time": membership.invite_expire_time,
            "create_time": membership.create_time,
        }
        result = self.conn.execute(
            update(memberships)
            .where(
                memberships.c.project_id == membership.project_id,
                memberships.c.organization_id == membership.organization_id,
            )
            .values(**values)
        )
        if result.rowcount == 0:
            self.conn.execute(
                insert(memberships).values(
                    project_id=membership.project_id,
                    organization_id=membership.organization_id,
                    **values,
                )
            )

    def list_memberships(
        self, project_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Membership]]:
        rows = self.conn.execute(
            select(memberships)
            .where(memberships.c.project_id == project_id, memberships.c.seq > after_seq)
            .order_by(memberships.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _membership(row)) for row in rows]

    def list_memberships_of_organization(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Membership]]:
        rows = self.conn.execute(
            select(memberships)
            .where(memberships.c.organization_id == organization_id, memberships.c.seq > after_seq)
            .order_by(memberships.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _membership(row)) for row in rows]

    def active_owner_count(self, project_id: str) -> int:
        """How many organizations are active owners of the project (read under the row lock of
        the caller's membership change, so two owners cannot both step down at once)."""
        rows = self.conn.execute(
            select(memberships.c.organization_id)
            .where(
                memberships.c.project_id == project_id,
                memberships.c.state == MembershipState.ACTIVE.value,
                memberships.c.role == int(Role.OWNER),
            )
            .with_for_update()
        ).all()
        return len(rows)

    def active_member_organizations(self, project_id: str) -> list[str]:
        rows = self.conn.execute(
            select(memberships.c.organization_id)
            .where(
                memberships.c.project_id == project_id,
                memberships.c.state == MembershipState.ACTIVE.value,
            )
            .order_by(memberships.c.organization_id)
        ).all()
        return [f"organizations/{row.organization_id}" for row in rows]

    # designs

    def add_design(self, design: Design) -> None:
        self.conn.execute(
            insert(designs).values(
                id=design.id,
                project_id=design.project_id,
                display_name=design.display_name,
                description=design.description,
                part_number=design.part_number,
                creator=design.creator,
                create_time=design.create_time,
                rule_set=design.rule_set,
                material=design.material,
                rule_overrides=dict(design.rule_overrides),
            )
        )

    def update_design(self, design: Design) -> None:
        self.conn.execute(
            update(designs)
            .where(designs.c.id == design.id)
            .values(
                display_name=design.display_name,
                description=design.description,
                rule_set=design.rule_set,
                material=design.material,
                rule_overrides=dict(design.rule_overrides),
            )
        )

    def get_design(self, project_id: str, design_id: str) -> Design | None:
        row = self.conn.execute(
            select(designs).where(designs.c.project_id == project_id, designs.c.id == design_id)
        ).first()
        return _design(row) if row is not None else None

    def design_with_part_number(self, project_id: str, part_number: str) -> Design | None:
        row = self.conn.execute(
            select(designs).where(
                designs.c.project_id == project_id, designs.c.part_number == part_number
            )
        ).first()
        return _design(row) if row is not None else None

    def list_designs(self, project_id: str, after_seq: int, limit: int) -> list[tuple[int, Design]]:
        rows = self.conn.execute(
            select(designs)
            .where(designs.c.project_id == project_id, designs.c.seq > after_seq)
            .order_by(designs.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _design(row)) for row in rows]
