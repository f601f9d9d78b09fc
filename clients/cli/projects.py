"""`cofab login|logout|whoami`, `cofab project ...`, `cofab invitation(s) ...`, `cofab design ...`
and `cofab facility ...`: who you are, shared projects and their members, designs, facilities."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from clients.cli.common import (
    CliError,
    Subcommands,
    client,
    command,
    emit,
    emit_list,
    every_page,
    format_time,
    organization_name,
    parse_duration,
    project_name,
    read_config,
    request_id,
    token_file,
    write_config,
)
from clients.cli.names import resolve_design, resolve_project
from cofab.design.v1 import design_pb2
from cofab.identity.v1 import identity_pb2
from cofab.supply.v1 import supply_pb2
from services.shared.config import Settings

if TYPE_CHECKING:
    from clients.sdk import Cofab

ROLES = {
    "viewer": identity_pb2.ROLE_VIEWER,
    "reviewer": identity_pb2.ROLE_REVIEWER,
    "editor": identity_pb2.ROLE_EDITOR,
    "owner": identity_pb2.ROLE_OWNER,
}
ROLE_NAMES = {value: name for name, value in ROLES.items()}
STATE_NAMES = {
    identity_pb2.Membership.STATE_INVITED: "invited",
    identity_pb2.Membership.STATE_ACTIVE: "active",
    identity_pb2.Membership.STATE_DECLINED: "declined",
    identity_pb2.Membership.STATE_EXPIRED: "expired",
    identity_pb2.Membership.STATE_REMOVED: "removed",
}


def _print_identity(me: identity_pb2.CallerIdentity) -> None:
    flags = [
        f for f, on in (("admin", me.organization_admin), ("service", me.service_account)) if on
    ]
    extra = f" [{', '.join(flags)}]" if flags else ""
    print(f"{me.user} ({me.user_display_name}) of {me.organization_display_name}{extra}")


def cmd_whoami(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
    emit(args, me, lambda: _print_identity(me))


def cmd_login(args: argparse.Namespace, settings: Settings) -> None:
    if args.with_token:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        import getpass

        token = getpass.getpass("token (cofab_...): ").strip()
    else:
        raise CliError("no terminal to ask for the token on: pipe it in with --with-token")
    if not token:
        raise CliError("no token given")
    from clients.sdk import connect

    # Checked before it is stored: a wrong token is refused here, not on the next command.
    with connect(
        token, settings.design_address, settings.supply_address, settings.tls_ca_file
    ) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
    path = token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    print(f"logged in as {me.user} of {me.organization_display_name}; token in {path}")
    if os.environ.get("COFAB_TOKEN"):
        print("COFAB_TOKEN is set and wins over the stored token while it is")


def cmd_logout(args: argparse.Namespace, settings: Settings) -> None:
    path = token_file()
    try:
        path.unlink()
    except FileNotFoundError:
        print(f"no stored token ({path})")
        return
    print(f"removed {path}")


def cmd_use_project(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        name = resolve_project(cofab, args.project)
        project = cofab.projects.GetProject(identity_pb2.GetProjectRequest(name=name))
    config = read_config()
    config["project"] = project.name
    write_config(config)
    print(f"default project: {project.name} {project.display_name!r}")


def _print_project(p: identity_pb2.Project) -> None:
    print(
        f"{p.name}  {p.display_name!r}  owner {p.owner_organization}  "
        f"your role {ROLE_NAMES.get(p.caller_role, '?')}"
    )


def cmd_project_create(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        project = cofab.projects.CreateProject(
            identity_pb2.CreateProjectRequest(
                project=identity_pb2.Project(
                    display_name=args.display_name, description=args.description
                ),
                request_id=request_id(),
            )
        )
    emit(args, project, lambda: _print_project(project))


def cmd_project_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.projects.ListProjects(
                identity_pb2.ListProjectsRequest(page_size=100, page_token=token)
            ),
            "projects",
        )
        emit_list(args, "projects", pages, _print_project)


def cmd_project_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        project = cofab.projects.GetProject(
            identity_pb2.GetProjectRequest(name=resolve_project(cofab, args.project))
        )

    def human() -> None:
        _print_project(project)
        if project.description:
            print(project.description)

    emit(args, project, human)


def _print_membership(m: identity_pb2.Membership) -> None:
    expiry = ""
    if m.HasField("invite_expire_time"):
        expiry = f"  expires {format_time(m.invite_expire_time)}"
    print(
        f"{m.name}  {ROLE_NAMES.get(m.role, '?')}  {STATE_NAMES.get(m.state, '?')}{expiry}"
        f"  invitation {m.invitation_id}"
    )


def cmd_project_invite(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        membership = cofab.projects.CreateMembership(
            identity_pb2.CreateMembershipRequest(
                parent=resolve_project(cofab, args.project),
                membership=identity_pb2.Membership(
                    organization=organization_name(args.organization), role=ROLES[args.role]
                ),
                invite_ttl_seconds=args.expires_in,
                request_id=request_id(),
            )
        )
    emit(args, membership, lambda: _print_membership(membership))


def _membership_of(cofab: Cofab, project: str | None, organization: str) -> str:
    return (
        f"{resolve_project(cofab, project)}/memberships/"
        f"{organization.removeprefix('organizations/')}"
    )


def cmd_project_set_role(args: argparse.Namespace, settings: Settings) -> None:
    from google.protobuf import field_mask_pb2

    with client(settings) as cofab:
        membership = cofab.projects.UpdateMembership(
            identity_pb2.UpdateMembershipRequest(
                membership=identity_pb2.Membership(
                    name=_membership_of(cofab, args.project, args.organization),
                    role=ROLES[args.role],
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["role"]),
                request_id=request_id(),
            )
        )
    emit(args, membership, lambda: _print_membership(membership))


def cmd_project_remove(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        membership = cofab.projects.DeleteMembership(
            identity_pb2.DeleteMembershipRequest(
                name=_membership_of(cofab, args.project, args.organization),
                request_id=request_id(),
            )
        )
    emit(args, membership, lambda: _print_membership(membership))


def cmd_project_members(args: argparse.Namespace, settings: Settings) -> None:
    _list_memberships(args, settings, args.project, resolve=True)


def cmd_invitations(args: argparse.Namespace, settings: Settings) -> None:
    _list_memberships(args, settings, "projects/-")


def _list_memberships(
    args: argparse.Namespace, settings: Settings, parent: str, resolve: bool = False
) -> None:
    with client(settings) as cofab:
        if resolve:
            parent = resolve_project(cofab, parent)
        pages = every_page(
            lambda token: cofab.projects.ListMemberships(
                identity_pb2.ListMembershipsRequest(parent=parent, page_size=100, page_token=token)
            ),
            "memberships",
        )
        emit_list(args, "memberships", pages, _print_membership)


def _own_membership(cofab: Cofab, project: str) -> str:
    me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
    return f"{project_name(project)}/memberships/{me.organization.split('/', 1)[1]}"


def cmd_invitation_accept(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        membership = cofab.projects.AcceptMembership(
            identity_pb2.AcceptMembershipRequest(
                name=_own_membership(cofab, args.project), request_id=request_id()
            )
        )
    emit(args, membership, lambda: _print_membership(membership))


def cmd_invitation_decline(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        membership = cofab.projects.DeclineMembership(
            identity_pb2.DeclineMembershipRequest(
                name=_own_membership(cofab, args.project), request_id=request_id()
            )
        )
    emit(args, membership, lambda: _print_membership(membership))


def _print_design(d: design_pb2.Design) -> None:
    part = f"  part {d.part_number}" if d.part_number else ""
    print(f"{d.name}  {d.display_name!r}{part}  by {d.creator}  {format_time(d.create_time)}")


def _override(text: str) -> tuple[str, float]:
    rule, sep, limit = text.partition("=")
    try:
        if sep and rule:
            return rule, float(limit)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not RULE=LIMIT, e.g. min-wall=1.5")


def cmd_design_create(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        design = cofab.designs.CreateDesign(
            design_pb2.CreateDesignRequest(
                parent=resolve_project(cofab, args.project),
                design=design_pb2.Design(
                    display_name=args.display_name,
                    description=args.description,
                    part_number=args.part_number,
                    rule_set=args.rule_set,
                    material=args.material,
                    rule_overrides=dict(args.override),
                ),
                request_id=request_id(),
            )
        )
    emit(args, design, lambda: _print_design(design))


def cmd_design_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        parent = resolve_project(cofab, args.project)
        pages = every_page(
            lambda token: cofab.designs.ListDesigns(
                design_pb2.ListDesignsRequest(parent=parent, page_size=100, page_token=token)
            ),
            "designs",
        )
        emit_list(args, "designs", pages, _print_design)


def cmd_design_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        design = cofab.designs.GetDesign(
            design_pb2.GetDesignRequest(name=resolve_design(cofab, args.design))
        )
    emit(args, design, lambda: _print_design(design))


def _print_facility(f: supply_pb2.Facility) -> None:
    print(
        f"{f.name}  {f.display_name!r}  {f.region} {f.country_code} "
        f"({f.latitude:.4f}, {f.longitude:.4f})"
    )


def cmd_facility_create(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
        facility = cofab.supply.CreateFacility(
            supply_pb2.CreateFacilityRequest(
                parent=me.organization,
                facility=supply_pb2.Facility(
                    display_name=args.display_name,
                    region=args.region,
                    country_code=args.country,
                    latitude=args.lat,
                    longitude=args.lon,
                ),
                request_id=request_id(),
            )
        )
    emit(args, facility, lambda: _print_facility(facility))


def cmd_facility_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
        pages = every_page(
            lambda token: cofab.supply.ListFacilities(
                supply_pb2.ListFacilitiesRequest(
                    parent=me.organization, page_size=1000, page_token=token
                )
            ),
            "facilities",
        )
        emit_list(args, "facilities", pages, _print_facility)


PROJECT_HELP = "projects/{id}, an id prefix or the display name (default: `cofab use project`)"


def register_use(sub: Subcommands) -> None:
    """Adds `cofab use project NAME`."""
    use = sub.add_parser("use", help="set defaults for later commands (cofab use project NAME)")
    use_sub = use.add_subparsers(dest="use_command", required=True)
    p = command(use_sub, "project", cmd_use_project, "the project commands use when none is named")
    p.add_argument("project", help="projects/{id}, an id prefix or the display name")


def register_login(sub: Subcommands) -> None:
    """Adds `cofab login`, `cofab logout` and `cofab whoami`."""
    p = command(sub, "login", cmd_login, "check a token and store it for later commands (0600)")
    p.add_argument("--with-token", action="store_true", help="read the token from standard input")
    command(sub, "logout", cmd_logout, "remove the stored token")
    command(sub, "whoami", cmd_whoami, "show the organization and user of your token", prints=True)


def register_projects(sub: Subcommands) -> None:
    """Adds `cofab project ...`, `cofab invitations` and `cofab invitation ...`."""
    project = sub.add_parser("project", help="shared projects and their member organizations")
    project_sub = project.add_subparsers(dest="project_command", required=True)
    p = command(project_sub, "create", cmd_project_create, "create a project you own", True)
    p.add_argument("display_name")
    p.add_argument("--description", default="")
    command(project_sub, "list", cmd_project_list, "list projects your organization is in", True)
    p = command(project_sub, "show", cmd_project_show, "show one project", True)
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p = command(project_sub, "invite", cmd_project_invite, "invite an organization", True)
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p.add_argument("organization")
    p.add_argument("--role", choices=sorted(ROLES), required=True)
    p.add_argument(
        "--expires-in",
        type=parse_duration,
        default=parse_duration("7d"),
        help="how long the invitation stays open, e.g. 7d, 12h, 30m, 45s (default 7d)",
    )
    p = command(project_sub, "members", cmd_project_members, "list a project's memberships", True)
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p = command(
        project_sub, "set-role", cmd_project_set_role, "change a member organization's role", True
    )
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p.add_argument("organization")
    p.add_argument("--role", choices=sorted(ROLES), required=True)
    p = command(
        project_sub,
        "remove",
        cmd_project_remove,
        "remove an organization from a project (or withdraw its invitation)",
        True,
    )
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p.add_argument("organization")

    command(sub, "invitations", cmd_invitations, "list your organization's memberships", True)
    invitation = sub.add_parser("invitation", help="answer an invitation (organization admins)")
    invitation_sub = invitation.add_subparsers(dest="invitation_command", required=True)
    p = command(invitation_sub, "accept", cmd_invitation_accept, "join a project", True)
    p.add_argument("project")
    p = command(
        invitation_sub, "decline", cmd_invitation_decline, "decline to join a project", True
    )
    p.add_argument("project")


def register_designs(sub: Subcommands) -> None:
    """Adds `cofab design ...`."""
    design = sub.add_parser("design", help="designs (parts) in a project")
    design_sub = design.add_subparsers(dest="design_command", required=True)
    p = command(design_sub, "create", cmd_design_create, "create a design", True)
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p.add_argument("display_name")
    p.add_argument("--part-number", default="")
    p.add_argument("--description", default="")
    p.add_argument("--rule-set", default="", help="validation rule set (cofab ruleset list)")
    p.add_argument("--material", default="", help="material for mass (cofab material list)")
    p.add_argument(
        "--override",
        type=_override,
        action="append",
        default=[],
        metavar="RULE=LIMIT",
        help="override a rule's limit (cofab ruleset show RULE_SET), repeatable",
    )
    p = command(design_sub, "list", cmd_design_list, "list a project's designs", True)
    p.add_argument("project", nargs="?", help=PROJECT_HELP)
    p = command(design_sub, "show", cmd_design_show, "show a design", True)
    p.add_argument(
        "design",
        help="projects/{project}/designs/{design}, or an id prefix, display name or "
        "part number in the default project",
    )


def register_facilities(sub: Subcommands) -> None:
    """Adds `cofab facility ...`."""
    facility = sub.add_parser("facility", help="your organization's facilities")
    facility_sub = facility.add_subparsers(dest="facility_command", required=True)
    p = command(facility_sub, "create", cmd_facility_create, "register a facility", True)
    p.add_argument("display_name")
    p.add_argument("--region", required=True)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    command(facility_sub, "list", cmd_facility_list, "list your facilities", True)
