"""`cofab revision ...` and `cofab ruleset ...`: push, inspect, download, watch and release
design revisions; discover validation rule sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from clients.cli.common import (
    CliError,
    Subcommands,
    client,
    command,
    every_page,
    format_time,
    request_id,
)
from clients.sdk.revisions import FINISHED, download, format_of, push_revision
from cofab.design.v1 import design_pb2 as pb
from services.shared.config import Settings

STATES = {
    pb.Revision.STATE_PENDING: "pending",
    pb.Revision.STATE_RUNNING: "running",
    pb.Revision.STATE_SUCCEEDED: "succeeded",
    pb.Revision.STATE_FAILED: "failed",
}
SEVERITIES = {pb.SEVERITY_INFO: "info", pb.SEVERITY_WARNING: "warning", pb.SEVERITY_ERROR: "error"}


def _parameter(text: str) -> tuple[str, float | int | str | bool]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    value: float | int | str | bool
    if raw in ("true", "false"):
        value = raw == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return name, value


def _summary_line(r: pb.Revision) -> str:
    s = r.findings_summary
    findings = f"findings: {s.error} error, {s.warning} warning, {s.info} info"
    return f"{r.name}  [{STATES.get(r.state, '?')}]  {r.branch}  {r.format}  {findings}"


def print_revision(r: pb.Revision, details: bool = False) -> None:
    print(_summary_line(r))
    if r.message:
        print(f"  message: {r.message}")
    print(f"  author: {r.author}  created {format_time(r.create_time)}")
    if r.parents:
        print(f"  parents: {', '.join(r.parents)}")
    if r.released:
        print(f"  released {format_time(r.release_time)}")
    if r.state == pb.Revision.STATE_FAILED:
        print(f"  error: {r.error.message} (code {r.error.code})")
    if r.HasField("properties"):
        p = r.properties
        size = (
            p.bbox_max.x - p.bbox_min.x,
            p.bbox_max.y - p.bbox_min.y,
            p.bbox_max.z - p.bbox_min.z,
        )
        mass = f", mass {p.mass_g:.1f} g ({p.material})" if p.HasField("mass_g") else ""
        print(
            f"  volume {p.volume_mm3:,.1f} mm3, area {p.area_mm2:,.1f} mm2, "
            f"bbox {size[0]:.2f} x {size[1]:.2f} x {size[2]:.2f} mm{mass}"
        )
        if p.is_brep:
            print(f"  B-rep: {p.solids} solids, {p.faces} faces, {p.edges} edges")
    if details:
        for f in r.findings:
            measured = (
                f" (measured {f.measured:g}{f.unit}, limit {f.limit:g}{f.unit})"
                if f.HasField("measured") and f.HasField("limit")
                else ""
            )
            print(f"  {SEVERITIES.get(f.severity, '?')}: {f.rule_id}: {f.message}{measured}")
        for a in r.artifacts:
            print(f"  artifact {a.name} ({a.media_type}, {a.size_bytes} bytes)")


def cmd_push(args: argparse.Namespace, settings: Settings) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    fmt = args.format or format_of(path)
    if not fmt:
        raise CliError(f"cannot tell the format of {path.name}: pass --format")
    with client(settings) as cofab:
        revision = push_revision(
            cofab,
            args.design,
            path,
            base_revision=args.base,
            branch=args.branch,
            message=args.message,
            format=fmt,
            units=args.units,
            parameters=dict(args.param),
            request_id=request_id(),
        )
        print_revision(revision)
        if args.wait:
            for latest in cofab.designs.WatchRevision(pb.WatchRevisionRequest(name=revision.name)):
                if latest.state in FINISHED:
                    print_revision(latest, details=True)


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        for r in every_page(
            lambda token: cofab.designs.ListRevisions(
                pb.ListRevisionsRequest(parent=args.design, branch=args.branch, page_token=token)
            ),
            "revisions",
        ):
            print(_summary_line(r))


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        print_revision(
            cofab.designs.GetRevision(pb.GetRevisionRequest(name=args.revision)), details=True
        )


def cmd_download(args: argparse.Namespace, settings: Settings) -> None:
    out = Path(args.output)
    with client(settings) as cofab:
        first = download(cofab, args.revision, out, artifact=args.artifact)
    print(f"wrote {out} ({first.size_bytes} bytes, {first.media_type})")


def cmd_watch(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        for revision in cofab.designs.WatchRevision(pb.WatchRevisionRequest(name=args.revision)):
            print_revision(revision, details=revision.state in FINISHED)


def cmd_release(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        revision = cofab.designs.ReleaseRevision(
            pb.ReleaseRevisionRequest(name=args.revision, request_id=request_id())
        )
    print_revision(revision)


def cmd_ruleset_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        for r in every_page(
            lambda token: cofab.designs.ListRuleSets(pb.ListRuleSetsRequest(page_token=token)),
            "rule_sets",
        ):
            print(f"{r.id}  {r.display_name!r}  process {r.process}: {r.description}")


def register(sub: Subcommands) -> None:
    """Adds `cofab revision ...` and `cofab ruleset ...` to the parser."""
    revision = sub.add_parser("revision", help="design revisions: push, inspect, download")
    rsub = revision.add_subparsers(dest="revision_command", required=True)
    p = command(rsub, "push", cmd_push, "push a CAD file as a new revision of a design")
    p.add_argument("design", help="projects/{project}/designs/{design}")
    p.add_argument("file", help="STEP, STL, OBJ, 3MF, glTF/GLB or a CadQuery script (.py)")
    p.add_argument("--base", default="", help="the revision you started from (the branch head)")
    p.add_argument("--branch", default="", help="branch (default main)")
    p.add_argument("--message", "-m", default="")
    p.add_argument("--format", default="", help="override the format the suffix suggests")
    p.add_argument("--units", default="", help="mm (default), cm, m or in")
    p.add_argument(
        "--param", type=_parameter, action="append", default=[], help="script NAME=VALUE"
    )
    p.add_argument("--wait", action="store_true", help="wait until processed and show results")
    p = command(rsub, "list", cmd_list, "list a design's revisions")
    p.add_argument("design")
    p.add_argument("--branch", default="")
    for name, fn, text in (
        ("show", cmd_show, "show a revision: state, properties, findings, artifacts"),
        ("watch", cmd_watch, "follow a revision until it is processed"),
        ("release", cmd_release, "release a processed revision (project owners)"),
    ):
        command(rsub, name, fn, text).add_argument("revision")
    p = command(rsub, "download", cmd_download, "download a revision or one of its artifacts")
    p.add_argument("revision")
    p.add_argument("output", help="file to write")
    p.add_argument(
        "--artifact",
        default="",
        choices=["", "mesh.glb", "thumbnail.png", "report.json", "model.step"],
        help="an artifact instead of the original file",
    )

    ruleset = sub.add_parser("ruleset", help="validation rule sets")
    rs_sub = ruleset.add_subparsers(dest="ruleset_command", required=True)
    command(rs_sub, "list", cmd_ruleset_list, "list the rule sets designs can use")
