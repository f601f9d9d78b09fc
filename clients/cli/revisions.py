"""`cofab revision ...`, `cofab ruleset ...` and `cofab material ...`: push, inspect, download,
watch and release design revisions, compare them as geometry and merge concurrent edits;
discover validation rule sets, their rules and the materials."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from clients.cli.common import (
    CliError,
    ProgressBar,
    Subcommands,
    client,
    command,
    emit,
    emit_list,
    every_page,
    format_time,
    request_id,
    to_json,
)
from clients.cli.names import resolve_design, resolve_revision
from clients.sdk.revisions import (
    FINISHED,
    download,
    download_diff,
    format_of,
    push_revision,
    wait_for_diff,
    wait_for_merge,
)
from cofab.design.v1 import design_pb2 as pb
from services.shared.config import Settings

if TYPE_CHECKING:
    pass

STATES = {
    pb.Revision.STATE_PENDING: "pending",
    pb.Revision.STATE_RUNNING: "running",
    pb.Revision.STATE_SUCCEEDED: "succeeded",
    pb.Revision.STATE_FAILED: "failed",
}
SEVERITIES = {pb.SEVERITY_INFO: "info", pb.SEVERITY_WARNING: "warning", pb.SEVERITY_ERROR: "error"}
# google.rpc.Code numbers as people read them (FAILED_PRECONDITION, not 9).
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, f"code {code}")


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
        print(f"  error: {code_name(r.error.code)}: {r.error.message}")
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
        declared = p.declared_units or "no unit"
        print(f"  units: {p.units or 'mm'} (the file declares {declared})")
        if p.is_brep:
            print(f"  B-rep: {p.solids} solids, {p.faces} faces, {p.edges} edges")
        elif p.HasField("bodies"):
            print(f"  mesh: {p.bodies} bodies, {p.triangles} triangles")
        parts = {s.part: s.instances for s in p.solid_properties}
        if parts and details:
            print(f"  {len(parts)} distinct parts in {len(p.solid_properties)} solids:")
            for s in p.solid_properties:
                if s.part == s.index:
                    print(f"    solid {s.index + 1}: {s.volume_mm3:,.1f} mm3 x {s.instances}")
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
    bar = ProgressBar(f"push {path.name}")
    with client(settings) as cofab:
        args.design = resolve_design(cofab, args.design)
        try:
            revision = push_revision(
                cofab,
                args.design,
                path,
                base_revision=resolve_revision(cofab, args.design, args.base) if args.base else "",
                branch=args.branch,
                message=args.message,
                format=fmt,
                units=args.units,
                parameters=dict(args.param),
                request_id=request_id(),
                progress=bar,
            )
        finally:
            bar.close()
        if not args.json:
            print_revision(revision)
        if args.wait:
            waiting = ProgressBar(revision.name.rsplit("/", 1)[-1][:12])
            try:
                name = revision.name
                for revision in cofab.designs.WatchRevision(pb.WatchRevisionRequest(name=name)):
                    waiting.status(STATES.get(revision.state, "?") + "...")
                    if revision.state in FINISHED:
                        break
            finally:
                waiting.close()
            if not args.json:
                print_revision(revision, details=True)
    if args.json:
        emit(args, revision, lambda: None)


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        args.design = resolve_design(cofab, args.design)
        pages = every_page(
            lambda token: cofab.designs.ListRevisions(
                pb.ListRevisionsRequest(parent=args.design, branch=args.branch, page_token=token)
            ),
            "revisions",
        )
        emit_list(args, "revisions", pages, lambda r: print(_summary_line(r)))


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        revision = cofab.designs.GetRevision(pb.GetRevisionRequest(name=args.revision))
    emit(args, revision, lambda: print_revision(revision, details=True))


def cmd_download(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        if args.output:
            out = Path(args.output)
        elif args.artifact:
            out = Path(args.artifact)
        else:
            revision = cofab.designs.GetRevision(pb.GetRevisionRequest(name=args.revision))
            out = Path(f"{revision.name.rsplit('/', 1)[-1]}.{revision.format or 'bin'}")
        bar = ProgressBar(f"download {out.name}")
        try:
            first = download(cofab, args.revision, out, artifact=args.artifact, progress=bar)
        finally:
            bar.close()
    print(f"wrote {out} ({first.size_bytes} bytes, {first.media_type})")


def cmd_watch(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        for revision in cofab.designs.WatchRevision(pb.WatchRevisionRequest(name=args.revision)):
            if args.json:
                print(json.dumps(to_json(revision)))
            else:
                print_revision(revision, details=revision.state in FINISHED)


def cmd_release(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        revision = cofab.designs.ReleaseRevision(
            pb.ReleaseRevisionRequest(name=args.revision, request_id=request_id())
        )
    emit(args, revision, lambda: print_revision(revision))


DIFF_STATES = {
    pb.RevisionDiff.STATE_PENDING: "pending",
    pb.RevisionDiff.STATE_RUNNING: "running",
    pb.RevisionDiff.STATE_SUCCEEDED: "succeeded",
    pb.RevisionDiff.STATE_FAILED: "failed",
}
MERGE_STATES = {
    pb.RevisionMerge.STATE_PENDING: "pending",
    pb.RevisionMerge.STATE_RUNNING: "running",
    pb.RevisionMerge.STATE_PROPOSED: "proposed",
    pb.RevisionMerge.STATE_CONFLICTED: "conflicted",
    pb.RevisionMerge.STATE_FAILED: "failed",
    pb.RevisionMerge.STATE_ACCEPTED: "accepted",
    pb.RevisionMerge.STATE_DECLINED: "declined",
}
CHANGES = {
    pb.FaceChange.CHANGE_ADDED: "added",
    pb.FaceChange.CHANGE_REMOVED: "removed",
    pb.FaceChange.CHANGE_MODIFIED: "modified",
}


def _point(v: pb.Vector3) -> str:
    return f"({v.x:.2f}, {v.y:.2f}, {v.z:.2f})"


def _delta(v: pb.Vector3) -> str:
    return f"({v.x:+.3f}, {v.y:+.3f}, {v.z:+.3f})"


def _value(holder: pb.ParameterDelta, side: str) -> str:
    if not holder.HasField(side):  # type: ignore[arg-type]
        return "(not declared)"
    value: pb.ParameterValue = getattr(holder, side)
    kind = value.WhichOneof("kind")
    return repr(getattr(value, kind)) if kind else "?"


def _finding_line(f: pb.Finding) -> str:
    measured = f" (measured {f.measured:g}{f.unit})" if f.HasField("measured") else ""
    return f"{SEVERITIES.get(f.severity, '?')}: {f.rule_id}: {f.message}{measured}"


def print_geometry_diff(d: pb.GeometryDiff, indent: str = "  ") -> None:
    """A person-readable summary: volumes with their regions, faces, deviation, deltas, DFM."""
    print(f"{indent}{'exact B-rep booleans' if d.exact else 'mesh booleans'}")
    for label, volume, regions in (
        ("added", d.added_volume_mm3, d.added),
        ("removed", d.removed_volume_mm3, d.removed),
    ):
        print(f"{indent}{label} {volume:,.3f} mm3 in {len(regions)} region(s)")
        for r in regions:
            print(
                f"{indent}  {r.volume_mm3:,.3f} mm3 around {_point(r.centroid)}, "
                f"bbox {_point(r.bbox_min)} - {_point(r.bbox_max)}"
            )
    counts = {name: 0 for name in CHANGES.values()}
    for face in d.faces:
        counts[CHANGES.get(face.change, "modified")] += 1
    print(
        f"{indent}faces: {counts['added']} added, {counts['removed']} removed, "
        f"{counts['modified']} modified, {d.unchanged_faces} unchanged"
    )
    print(f"{indent}deviation: max {d.max_deviation_mm:.4f} mm, rms {d.rms_deviation_mm:.4f} mm")
    mass = f", mass {d.mass_delta_g:+,.3f} g" if d.HasField("mass_delta_g") else ""
    print(
        f"{indent}delta: volume {d.volume_delta_mm3:+,.3f} mm3, area {d.area_delta_mm2:+,.3f} "
        f"mm2{mass}, bbox min {_delta(d.bbox_min_delta)} max {_delta(d.bbox_max_delta)}"
    )
    for p in d.parameters:
        print(f"{indent}parameter {p.name}: {_value(p, 'before')} -> {_value(p, 'after')}")
    for f in d.findings_introduced:
        print(f"{indent}DFM + {_finding_line(f)}")
    for f in d.findings_resolved:
        print(f"{indent}DFM - {_finding_line(f)}")
    if not d.findings_introduced and not d.findings_resolved:
        print(f"{indent}DFM: no finding introduced or resolved")


def print_diff(diff: pb.RevisionDiff) -> None:
    print(f"{diff.name}  [{DIFF_STATES.get(diff.state, '?')}]")
    print(f"  from {diff.revision_a}")
    print(f"  to   {diff.revision_b}")
    if diff.state == pb.RevisionDiff.STATE_FAILED:
        print(f"  error: {code_name(diff.error.code)}: {diff.error.message}")
    if diff.HasField("result"):
        print_geometry_diff(diff.result)
    for a in diff.artifacts:
        print(f"  artifact {a.name} ({a.media_type}, {a.size_bytes} bytes)")


def print_merge(m: pb.RevisionMerge) -> None:
    print(f"{m.name}  [{MERGE_STATES.get(m.state, '?')}]  into {m.target_branch}")
    print(f"  source {m.source_revision}")
    print(f"  head   {m.ours_revision}")
    print(f"  base   {m.base_revision}")
    print(f"  author {m.author}")
    if m.merged_revision:
        print(f"  merged {m.merged_revision}")
    if m.state == pb.RevisionMerge.STATE_FAILED:
        print(f"  error: {code_name(m.error.code)}: {m.error.message}")
    if m.HasField("conflict"):
        c = m.conflict
        print(f"  conflict: {c.reason}")
        print(
            f"    overlap {c.overlap_volume_mm3:,.3f} mm3 in bbox "
            f"{_point(c.bbox_min)} - {_point(c.bbox_max)}"
        )
        if c.faces_ours or c.faces_theirs:
            print(f"    faces: head {list(c.faces_ours)}, source {list(c.faces_theirs)}")
        if c.parameters:
            print(f"    parameters changed on both sides: {', '.join(c.parameters)}")
    for label, field in (("head", "ours_diff"), ("source", "theirs_diff")):
        if m.HasField(field):  # type: ignore[arg-type]
            print(f"  base -> {label}:")
            print_geometry_diff(getattr(m, field), indent="    ")


def cmd_diff(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        args.design = resolve_design(cofab, args.design)
        diff = cofab.designs.DiffRevisions(
            pb.DiffRevisionsRequest(
                design=args.design,
                revision_a=resolve_revision(cofab, args.design, args.a),
                revision_b=resolve_revision(cofab, args.design, args.b),
            )
        )
        if args.wait or args.png or args.glb:
            waiting = ProgressBar("diff")
            try:
                diff = wait_for_diff(
                    cofab,
                    diff.name,
                    on_state=lambda state: waiting.status(
                        pb.RevisionDiff.State.Name(state).removeprefix("STATE_").lower() + "..."
                    ),
                )
            finally:
                waiting.close()
        emit(args, diff, lambda: print_diff(diff))
        for artifact, out in (("diff.png", args.png), ("diff.glb", args.glb)):
            if out:
                if diff.state != pb.RevisionDiff.STATE_SUCCEEDED:
                    raise CliError(f"{diff.name} did not succeed: no {artifact} to download")
                first = download_diff(cofab, diff.name, Path(out), artifact)
                wrote = f"wrote {out} ({first.size_bytes} bytes, {first.media_type})"
                print(wrote, file=sys.stderr if args.json else sys.stdout)


def cmd_merge(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        args.design = resolve_design(cofab, args.design)
        merge = cofab.designs.MergeRevisions(
            pb.MergeRevisionsRequest(
                design=args.design,
                target_branch=args.into,
                source_revision=resolve_revision(cofab, args.design, args.source),
                expected_head=resolve_revision(cofab, args.design, args.expect)
                if args.expect
                else "",
                request_id=request_id(),
            )
        )
        if args.wait:
            waiting = ProgressBar("merge")
            try:
                merge = wait_for_merge(
                    cofab,
                    merge.name,
                    on_state=lambda state: waiting.status(
                        pb.RevisionMerge.State.Name(state).removeprefix("STATE_").lower() + "..."
                    ),
                )
            finally:
                waiting.close()
    emit(args, merge, lambda: print_merge(merge))


def cmd_merge_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        merge = cofab.designs.GetRevisionMerge(pb.GetRevisionMergeRequest(name=args.merge))
    emit(args, merge, lambda: print_merge(merge))


def cmd_merge_accept(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        merge = cofab.designs.AcceptMerge(
            pb.AcceptMergeRequest(name=args.merge, request_id=request_id())
        )
    emit(args, merge, lambda: print_merge(merge))


def cmd_merge_decline(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        merge = cofab.designs.DeclineMerge(
            pb.DeclineMergeRequest(name=args.merge, request_id=request_id())
        )
    emit(args, merge, lambda: print_merge(merge))


def cmd_ruleset_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.designs.ListRuleSets(pb.ListRuleSetsRequest(page_token=token)),
            "rule_sets",
        )
        emit_list(
            args,
            "ruleSets",
            pages,
            lambda r: print(f"{r.id}  {r.display_name!r}  process {r.process}: {r.description}"),
        )


DESIGN_HELP = (
    "projects/{project}/designs/{design}, or an id prefix, display name or part number of a "
    "design of the default project (cofab use project)"
)


def cmd_ruleset_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        r = cofab.designs.GetRuleSet(pb.GetRuleSetRequest(id=args.rule_set))

    def human() -> None:
        print(
            f"{r.id}  {r.display_name!r}  process {r.process}, default material "
            f"{r.default_material}"
        )
        for rule in r.rules:
            limit = f"  limit {rule.limit:g} {rule.unit}" if rule.HasField("limit") else ""
            severity = pb.Severity.Name(rule.severity).removeprefix("SEVERITY_").lower()
            print(f"  {rule.id}  {rule.check}  {severity}{limit}: {rule.description}")

    emit(args, r, human)


def cmd_material_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.designs.ListMaterials(pb.ListMaterialsRequest(page_token=token)),
            "materials",
        )
        emit_list(
            args,
            "materials",
            pages,
            lambda m: print(f"{m.id}  {m.display_name!r}  {m.density_g_cm3:g} g/cm3"),
        )


def register(sub: Subcommands) -> None:
    """Adds `cofab revision ...` and `cofab ruleset ...` to the parser."""
    revision = sub.add_parser("revision", help="design revisions: push, inspect, download")
    rsub = revision.add_subparsers(dest="revision_command", required=True)
    p = command(rsub, "push", cmd_push, "push a CAD file as a new revision of a design", True)
    p.add_argument("design", help=DESIGN_HELP)
    p.add_argument("file", help="STEP, STL, OBJ, 3MF, glTF/GLB or a CadQuery script (.py)")
    p.add_argument(
        "--base",
        default="",
        help="the revision you started from (the branch head): a name, a branch (main) or an "
        "id prefix",
    )
    p.add_argument("--branch", default="", help="branch (default main)")
    p.add_argument("--message", "-m", default="")
    p.add_argument("--format", default="", help="override the format the suffix suggests")
    p.add_argument(
        "--units",
        default="",
        help="mm, cm, m or in: what the file's numbers mean, over the unit it declares "
        "(default: the file's own unit; mm for STL, OBJ, PLY, OFF, glTF)",
    )
    p.add_argument(
        "--param", type=_parameter, action="append", default=[], help="script NAME=VALUE"
    )
    p.add_argument("--wait", action="store_true", help="wait until processed and show results")
    p = command(rsub, "list", cmd_list, "list a design's revisions", True)
    p.add_argument("design")
    p.add_argument("--branch", default="")
    for name, fn, text in (
        ("show", cmd_show, "show a revision: state, properties, findings, artifacts"),
        ("watch", cmd_watch, "follow a revision until it is processed"),
        ("release", cmd_release, "release a processed revision (project owners)"),
    ):
        command(rsub, name, fn, text, prints=True).add_argument("revision")
    p = command(rsub, "download", cmd_download, "download a revision or one of its artifacts")
    p.add_argument("revision")
    p.add_argument(
        "output",
        nargs="?",
        default="",
        help="file to write (default: the artifact's name, or <revision id>.<format>)",
    )
    p.add_argument(
        "--artifact",
        default="",
        choices=["", "mesh.glb", "thumbnail.png", "report.json", "model.step"],
        help="an artifact instead of the original file",
    )
    p = command(rsub, "diff", cmd_diff, "compare two revisions: volumes, faces, deltas, DFM", True)
    p.add_argument("design", help=DESIGN_HELP)
    p.add_argument(
        "a", help="the revision before: a name, a branch (main, main~1) or an id prefix of DESIGN"
    )
    p.add_argument("b", help="the revision after")
    p.add_argument("--wait", action="store_true", help="wait until computed and show it")
    p.add_argument("--png", default="", help="write the picture of the diff to this file")
    p.add_argument("--glb", default="", help="write the coloured model of the diff here")
    p = command(
        rsub, "merge", cmd_merge, "merge a revision into a branch whose head moved on", True
    )
    p.add_argument("design", help=DESIGN_HELP)
    p.add_argument("--into", default="", help="the target branch (default main)")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        help="the revision to merge: a name, a branch (e.g. feature) or an id prefix",
    )
    p.add_argument("--expect", default="", help="the head you expect the branch to have")
    p.add_argument("--wait", action="store_true", help="wait until proposed or conflicted")
    merges = rsub.add_parser("merges", help="show, accept or decline a proposed merge")
    msub = merges.add_subparsers(dest="merges_command", required=True)
    for name, fn, text in (
        ("show", cmd_merge_show, "show a merge: state, conflict, both diffs"),
        ("accept", cmd_merge_accept, "move the branch head to the merged revision"),
        ("decline", cmd_merge_decline, "decline a proposed or conflicted merge"),
    ):
        command(msub, name, fn, text, prints=True).add_argument(
            "merge", help="projects/{project}/designs/{design}/merges/{merge}"
        )

    ruleset = sub.add_parser("ruleset", help="validation rule sets")
    rs_sub = ruleset.add_subparsers(dest="ruleset_command", required=True)
    command(rs_sub, "list", cmd_ruleset_list, "list the rule sets designs can use", True)
    p = command(rs_sub, "show", cmd_ruleset_show, "show a rule set's rules, limits and units", True)
    p.add_argument("rule_set", help="e.g. cnc-milling")
    material = sub.add_parser("material", help="materials designs can name (for mass)")
    m_sub = material.add_subparsers(dest="material_command", required=True)
    command(m_sub, "list", cmd_material_list, "list the materials and their densities", True)
