"""The `cofab` command line: admin commands against the database, user commands over gRPC.

Admin commands (`cofab admin ...`) bootstrap an install: they need COFAB_DATABASE_URL (or the
default SQLite file in COFAB_STATE_DIR). User commands need COFAB_TOKEN and talk to the services
at COFAB_DESIGN_ADDRESS / COFAB_SUPPLY_ADDRESS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.cli import comments, events, network, procurement, reviews, revisions
from clients.cli.common import (
    CliError,
    client,
    command,
    every_page,
    format_time,
    organization_name,
    parse_duration,
    project_name,
    request_id,
)
from clients.sdk import Cofab
from cofab.design.v1 import design_pb2
from cofab.identity.v1 import identity_pb2
from cofab.supply.v1 import supply_pb2
from services.shared import accounts, audit
from services.shared.config import ConfigError, Settings, load_settings
from services.shared.db import make_engine
from services.shared.errors import DomainError
from services.shared.migrate import upgrade

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


# admin commands ----------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print(f"database schema is up to date ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def cmd_create_organization(args: argparse.Namespace, settings: Settings) -> None:
    accounts.create_organization(audit.audited_engine(settings), args.id, args.display_name)
    print(f"created organizations/{args.id}")


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> None:
    accounts.create_user(
        audit.audited_engine(settings),
        args.organization,
        args.user,
        args.display_name,
        organization_admin=args.admin,
    )
    role = " (organization admin)" if args.admin else ""
    print(f"created organizations/{args.organization}/users/{args.user}{role}")


def cmd_create_token(args: argparse.Namespace, settings: Settings) -> None:
    info = accounts.create_token(
        audit.audited_engine(settings),
        args.organization,
        args.user,
        dt.timedelta(seconds=args.expires_in),
        args.description,
    )
    print(f"token id {info.token_id}, expires {info.expire_time:%Y-%m-%d %H:%M} UTC")
    print("Shown once, stored only as a hash. Use it with:")
    print(f"export COFAB_TOKEN={info.plaintext}")


def cmd_revoke_token(args: argparse.Namespace, settings: Settings) -> None:
    accounts.revoke_token(audit.audited_engine(settings), args.token_id)
    print(f"revoked token {args.token_id}")


def cmd_ensure_service_account(args: argparse.Namespace, settings: Settings) -> None:
    path = Path(args.token_file)
    existing = path.read_text().strip() if path.is_file() else None
    token = accounts.ensure_service_account(audit.audited_engine(settings), existing)
    if token is None:
        print(f"service account token in {path} is valid")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    print(f"wrote a new service account token to {path}")


def cmd_verify_audit(args: argparse.Namespace, settings: Settings) -> None:
    # The key must exist already: verifying with a fresh one would only say "broken".
    config = audit.config_from(settings, create_key=False)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            report = audit.verify_chain(conn, config)
    finally:
        engine.dispose()
    if not report.ok:
        where = f" at entry {report.first_bad_seq}" if report.first_bad_seq else ""
        raise CliError(
            f"audit chain BROKEN{where}: {report.problem} ({report.entries} entries read)"
        )
    behind = f", {report.unanchored} after the last anchored head" if report.unanchored else ""
    print(
        f"audit chain intact: {report.entries} entries, anchored up to entry "
        f"{report.anchored_seq} in {config.anchor}{behind}"
    )


# user commands -----------------------------------------------------------------------------


def cmd_whoami(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
    flags = [
        f for f, on in (("admin", me.organization_admin), ("service", me.service_account)) if on
    ]
    extra = f" [{', '.join(flags)}]" if flags else ""
    print(f"{me.user} ({me.user_display_name}) of {me.organization_display_name}{extra}")


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
    _print_project(project)


def cmd_project_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.projects.ListProjects(
                identity_pb2.ListProjectsRequest(page_size=100, page_token=token)
            ),
            "projects",
        )
        for project in pages:
            _print_project(project)


def cmd_project_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        project = cofab.projects.GetProject(
            identity_pb2.GetProjectRequest(name=project_name(args.project))
        )
    _print_project(project)
    if project.description:
        print(project.description)


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
                parent=project_name(args.project),
                membership=identity_pb2.Membership(
                    organization=organization_name(args.organization), role=ROLES[args.role]
                ),
                invite_ttl_seconds=args.expires_in,
                request_id=request_id(),
            )
        )
    _print_membership(membership)


def _membership_of(project: str, organization: str) -> str:
    return f"{project_name(project)}/memberships/{organization.removeprefix('organizations/')}"


def cmd_project_set_role(args: argparse.Namespace, settings: Settings) -> None:
    name = _membership_of(args.project, args.organization)
    with client(settings) as cofab:
        membership = cofab.projects.UpdateMembership(
            identity_pb2.UpdateMembershipRequest(
                membership=identity_pb2.Membership(name=name, role=ROLES[args.role]),
                update_mask=field_mask_pb2.FieldMask(paths=["role"]),
                request_id=request_id(),
            )
        )
    _print_membership(membership)


def cmd_project_remove(args: argparse.Namespace, settings: Settings) -> None:
    name = _membership_of(args.project, args.organization)
    with client(settings) as cofab:
        membership = cofab.projects.DeleteMembership(
            identity_pb2.DeleteMembershipRequest(name=name, request_id=request_id())
        )
    _print_membership(membership)


def cmd_project_members(args: argparse.Namespace, settings: Settings) -> None:
    _list_memberships(settings, project_name(args.project))


def cmd_invitations(args: argparse.Namespace, settings: Settings) -> None:
    _list_memberships(settings, "projects/-")


def _list_memberships(settings: Settings, parent: str) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.projects.ListMemberships(
                identity_pb2.ListMembershipsRequest(parent=parent, page_size=100, page_token=token)
            ),
            "memberships",
        )
        for membership in pages:
            _print_membership(membership)


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
    _print_membership(membership)


def cmd_invitation_decline(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        membership = cofab.projects.DeclineMembership(
            identity_pb2.DeclineMembershipRequest(
                name=_own_membership(cofab, args.project), request_id=request_id()
            )
        )
    _print_membership(membership)


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
                parent=project_name(args.project),
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
    _print_design(design)


def cmd_design_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.designs.ListDesigns(
                design_pb2.ListDesignsRequest(
                    parent=project_name(args.project), page_size=100, page_token=token
                )
            ),
            "designs",
        )
        for design in pages:
            _print_design(design)


def cmd_design_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        design = cofab.designs.GetDesign(design_pb2.GetDesignRequest(name=args.design))
    _print_design(design)


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
    _print_facility(facility)


def cmd_facility_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
        response = cofab.supply.ListFacilities(
            supply_pb2.ListFacilitiesRequest(parent=me.organization, page_size=1000)
        )
    for facility in response.facilities:
        _print_facility(facility)


# parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cofab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    admin = sub.add_parser("admin", help="bootstrap and operate an install (database access)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    command(admin_sub, "migrate", cmd_migrate, "create or upgrade the database schema")
    p = command(admin_sub, "create-organization", cmd_create_organization, "add an organization")
    p.add_argument("id", help="organization id, e.g. acme")
    p.add_argument("--display-name", default="")
    p = command(admin_sub, "create-user", cmd_create_user, "add a user to an organization")
    p.add_argument("organization")
    p.add_argument("user")
    p.add_argument("--display-name", default="")
    p.add_argument("--admin", action="store_true", help="organization admin (answers invitations)")
    p = command(admin_sub, "create-token", cmd_create_token, "issue an API token (shown once)")
    p.add_argument("organization")
    p.add_argument("user")
    p.add_argument(
        "--expires-in",
        type=parse_duration,
        default=parse_duration("90d"),
        help="token lifetime, e.g. 90d (default), 12h; at most 365d",
    )
    p.add_argument("--description", default="")
    p = command(admin_sub, "revoke-token", cmd_revoke_token, "revoke an API token by its id")
    p.add_argument("token_id")
    p = command(
        admin_sub,
        "ensure-service-account",
        cmd_ensure_service_account,
        "create the workflow worker's service account and token file if needed",
    )
    p.add_argument("--token-file", required=True)
    command(admin_sub, "verify-audit", cmd_verify_audit, "check the audit log's hash chain")

    command(sub, "whoami", cmd_whoami, "show the organization and user of COFAB_TOKEN")

    project = sub.add_parser("project", help="shared projects and their member organizations")
    project_sub = project.add_subparsers(dest="project_command", required=True)
    p = command(project_sub, "create", cmd_project_create, "create a project you own")
    p.add_argument("display_name")
    p.add_argument("--description", default="")
    command(project_sub, "list", cmd_project_list, "list projects your organization is in")
    p = command(project_sub, "show", cmd_project_show, "show one project")
    p.add_argument("project")
    p = command(project_sub, "invite", cmd_project_invite, "invite an organization")
    p.add_argument("project")
    p.add_argument("organization")
    p.add_argument("--role", choices=sorted(ROLES), required=True)
    p.add_argument(
        "--expires-in",
        type=parse_duration,
        default=parse_duration("7d"),
        help="how long the invitation stays open, e.g. 7d, 12h, 30m, 45s (default 7d)",
    )
    p = command(project_sub, "members", cmd_project_members, "list a project's memberships")
    p.add_argument("project")
    p = command(
        project_sub, "set-role", cmd_project_set_role, "change a member organization's role"
    )
    p.add_argument("project")
    p.add_argument("organization")
    p.add_argument("--role", choices=sorted(ROLES), required=True)
    p = command(
        project_sub,
        "remove",
        cmd_project_remove,
        "remove an organization from a project (or withdraw its invitation)",
    )
    p.add_argument("project")
    p.add_argument("organization")

    command(sub, "invitations", cmd_invitations, "list your organization's memberships")
    invitation = sub.add_parser("invitation", help="answer an invitation (organization admins)")
    invitation_sub = invitation.add_subparsers(dest="invitation_command", required=True)
    p = command(invitation_sub, "accept", cmd_invitation_accept, "join a project")
    p.add_argument("project")
    p = command(invitation_sub, "decline", cmd_invitation_decline, "decline to join a project")
    p.add_argument("project")

    design = sub.add_parser("design", help="designs (parts) in a project")
    design_sub = design.add_subparsers(dest="design_command", required=True)
    p = command(design_sub, "create", cmd_design_create, "create a design")
    p.add_argument("project")
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
    p = command(design_sub, "list", cmd_design_list, "list a project's designs")
    p.add_argument("project")
    p = command(design_sub, "show", cmd_design_show, "show a design")
    p.add_argument("design", help="projects/{project}/designs/{design}")

    facility = sub.add_parser("facility", help="your organization's facilities")
    facility_sub = facility.add_subparsers(dest="facility_command", required=True)
    p = command(facility_sub, "create", cmd_facility_create, "register a facility")
    p.add_argument("display_name")
    p.add_argument("--region", required=True)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    command(facility_sub, "list", cmd_facility_list, "list your facilities")
    procurement.register(sub)
    network.register(sub)
    revisions.register(sub)
    comments.register(sub)
    events.register(sub)
    reviews.register(sub)
    return parser


def describe_rpc_error(error: grpc.RpcError) -> str:
    """`CODE: message` plus each field violation, from the rich status when present."""
    code = error.code().name if hasattr(error, "code") else "UNKNOWN"
    message = (error.details() if hasattr(error, "details") else None) or str(error)
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    violations: list[str] = []
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    if code == "UNAVAILABLE":
        message += "\n  is the stack running (make up) and COFAB_*_ADDRESS right?"
    if len(violations) > 1:
        return "\n".join([f"{code}: invalid request", *violations])
    return f"{code}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        args.fn(args, settings)
    except grpc.RpcError as error:
        print(f"error: {describe_rpc_error(error)}", file=sys.stderr)
        return 1
    except (CliError, ConfigError, DomainError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
