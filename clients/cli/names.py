"""Short names the CLI accepts for resources, resolved against what the caller may list:
projects by id prefix or display name (or the `cofab use project` default), designs by id
prefix, display name or part number within a project, revisions by branch, `branch~N` or id
prefix within a design. Full resource names are taken as they are."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from clients.cli.common import CliError, every_page, read_config
from clients.cli.exits import EXIT_NOT_FOUND, EXIT_USAGE
from cofab.design.v1 import design_pb2 as pb
from cofab.identity.v1 import identity_pb2

if TYPE_CHECKING:
    from clients.sdk import Cofab


def _unique(matches: list[str], value: str, what: str) -> str:
    if not matches:
        raise CliError(f"{value!r} is no {what}", EXIT_NOT_FOUND)
    if len(matches) > 1:
        shown = ", ".join(m.rsplit("/", 1)[-1][:12] for m in matches[:5])
        raise CliError(f"{value!r} names more than one {what}: {shown}", EXIT_USAGE)
    return matches[0]


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def resolve_project(cofab: Cofab, value: str | None) -> str:
    """A project named as a user would: `projects/{id}` as it is; else an id, a unique id
    prefix or the exact display name of a project your organization is in; none: the default
    `cofab use project` set."""
    if not value:
        value = read_config().get("project", "")
        if not value:
            raise CliError(
                "no project given, and no default: name one, or set it with "
                "`cofab use project <name>`",
                EXIT_USAGE,
            )
    if value.startswith("projects/"):
        return value
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return f"projects/{value}"
    projects = list(
        every_page(
            lambda token: cofab.projects.ListProjects(
                identity_pb2.ListProjectsRequest(page_size=1000, page_token=token)
            ),
            "projects",
        )
    )
    by_name: list[str] = [p.name for p in projects if p.display_name == value]
    by_id: list[str] = [p.name for p in projects if p.name.split("/", 1)[1].startswith(value)]
    return _unique(by_name or by_id, value, "project of your organization's")


def resolve_design(cofab: Cofab, value: str) -> str:
    """A design: `projects/{p}/designs/{d}` as it is; else an id, a unique id prefix, the
    display name or the part number of a design of the default project (`cofab use project`)."""
    if value.startswith("projects/"):
        return value
    project = resolve_project(cofab, None)
    if _is_id(value):
        return f"{project}/designs/{value}"
    designs = list(
        every_page(
            lambda token: cofab.designs.ListDesigns(
                pb.ListDesignsRequest(parent=project, page_size=1000, page_token=token)
            ),
            "designs",
        )
    )
    named: list[str] = [d.name for d in designs if value in (d.display_name, d.part_number)]
    prefixed: list[str] = [d.name for d in designs if d.name.rsplit("/", 1)[1].startswith(value)]
    return _unique(named or prefixed, value, f"design in {project}")


_REF = re.compile(r"^(?P<branch>[a-z0-9][a-z0-9-]{0,62})(?:~(?P<back>\d{1,4}))?$")


def resolve_revision(cofab: Cofab, design: str, value: str) -> str:
    """A revision of DESIGN named as a user would: a full name as it is; a branch (`main`),
    or N revisions before its head (`main~2`, following first parents); or a unique prefix of
    a revision id, git-style. Unknown is NOT_FOUND (exit 3), an ambiguous prefix a usage error."""
    if "/" in value:
        return value
    ref = _REF.match(value)
    if ref:
        branches = {
            b.name.rsplit("/", 1)[-1]: b.head
            for b in every_page(
                lambda token: cofab.designs.ListBranches(
                    pb.ListBranchesRequest(parent=design, page_token=token)
                ),
                "branches",
            )
        }
        if ref["branch"] in branches:
            name: str = branches[ref["branch"]]
            for _ in range(int(ref["back"] or 0)):
                parents = cofab.designs.GetRevision(pb.GetRevisionRequest(name=name)).parents
                if not parents:
                    raise CliError(f"{value}: {name} has no parent", EXIT_NOT_FOUND)
                name = str(parents[0])
            return name
    matches: list[str] = [
        r.name
        for r in every_page(
            lambda token: cofab.designs.ListRevisions(
                pb.ListRevisionsRequest(parent=design, page_size=1000, page_token=token)
            ),
            "revisions",
        )
        if r.name.rsplit("/", 1)[-1].startswith(value)
    ]
    return _unique(matches, value, f"branch or revision of {design}")
