"""Comments anchored to geometry over real gRPC on SQLite and PostgreSQL: threads, replies,
resolution, authorization, bad input, the `design.comment.added` event, and threads carried
forward from a revision to its successors across a diff of real CadQuery-built parts."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import time
from pathlib import Path

import cadquery as cq
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from clients.cli.main import main
from clients.sdk import Cofab, push_revision, wait_for
from cofab.design.v1 import comment_events_pb2, design_pb2
from cofab.design.v1 import comment_pb2 as pb
from cofab.identity.v1 import identity_pb2 as ipb
from services.design.adapters.blobstore import FileBlobStore
from services.design.adapters.revision_repository import RevisionRepository
from services.design.comments.carry import carry_forward, has_open_comments
from services.design.domain.revisions import Revision
from services.design.geometry import diff
from services.design.geometry.codec import finding_from_json, properties_from_json
from services.design.geometry.types import DiffInput, DiffResult
from services.shared.db import outbox
from services.shared.events import decode_envelope, unpack
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, invite, share

WAIT_S = 240
Vec = tuple[float, float, float]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """In mm: a 40 x 20 x 10 plate centred on the origin, the plate with a 6 mm hole through
    it at x = +12, then with a second one at x = -12."""
    folder = tmp_path_factory.mktemp("comment-parts")
    plate = cq.Workplane("XY").box(40, 20, 10)
    drilled = plate.faces(">Z").workplane().center(12, 0).hole(6)
    twice = drilled.faces(">Z").workplane().center(-12, 0).hole(6)
    files = {}
    for name, part in (("plate", plate), ("drilled", drilled), ("twice", twice)):
        files[name] = folder / f"{name}.step"
        cq.exporters.export(part, str(files[name]))
    files["plate.stl"] = folder / "plate.stl"
    cq.exporters.export(plate, str(files["plate.stl"]))
    return files


def faces_of(step: Path) -> list[cq.Face]:
    """In `shape.Faces()` order, which ingest numbers faces by."""
    shape = cq.importers.importStep(str(step)).val()
    assert isinstance(shape, cq.Shape)
    return shape.Faces()


def face_index(step: Path, center: Vec) -> int:
    """The index (ingest's `shape.Faces()` order) of the face of `step` centred at `center`."""
    faces = faces_of(step)
    (index,) = [i for i, f in enumerate(faces) if f.Center().sub(cq.Vector(*center)).Length < 1e-6]
    return index


def engine_diff(stack: Stack, a: str, b: str, work: Path) -> DiffResult:
    """The geometry engine's diff of two processed revisions, from their stored blobs, as the
    diff processor computes it."""
    blobs = FileBlobStore(stack.settings.blob_root)
    with stack.engine.connect() as conn:
        revisions = RevisionRepository(conn)
        found = [revisions.by_id(name.rsplit("/", 1)[1]) for name in (a, b)]

    def inputs(revision: Revision | None, folder: Path) -> DiffInput:
        assert revision is not None and revision.properties is not None
        mesh = revision.artifact("mesh.glb")
        assert mesh is not None
        folder.mkdir(parents=True)
        shutil.copyfile(blobs.path(mesh.sha256), folder / "mesh.glb")
        shutil.copyfile(blobs.path(revision.sha256), folder / "model.step")
        return DiffInput(
            mesh=folder / "mesh.glb",
            step=folder / "model.step",
            findings=tuple(finding_from_json(f) for f in revision.findings),
            properties=properties_from_json(revision.properties),
        )

    (work / "out").mkdir(parents=True)
    return diff(inputs(found[0], work / "a"), inputs(found[1], work / "b"), work / "out")


def vector(v: Vec) -> design_pb2.Vector3:
    return design_pb2.Vector3(x=v[0], y=v[1], z=v[2])


def anchor(point: Vec, face: int | None = None, view: bool = False) -> pb.CommentAnchor:
    message = pb.CommentAnchor(point=vector(point), face_id=face)
    if view:
        message.view.CopyFrom(
            pb.CameraView(
                eye=vector((120.0, -90.0, 80.0)), target=vector((0, 0, 0)), up=vector((0, 0, 1))
            )
        )
    return message


def comment(
    cofab: Cofab,
    revision: str,
    body: str,
    at: pb.CommentAnchor | None = None,
    thread: str = "",
    request_id: str = "",
) -> pb.Comment:
    return cofab.comments.CreateComment(
        pb.CreateCommentRequest(
            parent=revision,
            comment=pb.Comment(body=body, anchor=at, thread=thread),
            request_id=request_id,
        )
    )


def listed(cofab: Cofab, revision: str, show_resolved: bool = False) -> list[pb.Comment]:
    return list(
        cofab.comments.ListComments(
            pb.ListCommentsRequest(parent=revision, show_resolved=show_resolved)
        ).comments
    )


def error_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def pushed(cofab: Cofab, design: str, path: Path, base: str = "") -> design_pb2.Revision:
    revision = wait_for(
        cofab, push_revision(cofab, design, path, base_revision=base).name, timeout=WAIT_S
    )
    assert revision.state == design_pb2.Revision.STATE_SUCCEEDED, revision.error.message
    return revision


def test_threads_replies_resolution_and_who_may_do_what(
    stack: Stack, parts: dict[str, Path]
) -> None:
    hooli = make_account(stack.engine, "hooli", "hank", admin=True)
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(hooli) as viewer,
        stack.client(stack.initech) as outsider,
    ):
        project = create_project(acme)
        share(stack, project.name, ipb.ROLE_REVIEWER)
        invite(acme, project.name, "hooli", ipb.ROLE_VIEWER)
        viewer.projects.AcceptMembership(
            ipb.AcceptMembershipRequest(name=f"{project.name}/memberships/hooli")
        )
        design = create_design(acme, project.name)
        plate = pushed(acme, design.name, parts["plate"])
        side = face_index(parts["plate"], (-20, 0, 0))

        first = comment(
            acme,
            plate.name,
            "Chamfer this edge?",
            anchor((-20, 0, 0), side, True),
            request_id="c-1",
        )
        assert first.name.startswith(design.name + "/comments/")
        assert (first.revision, first.anchor_revision) == (plate.name, plate.name)
        assert first.anchor.face_id == side and first.anchor.view.eye.x == 120
        assert (first.state, first.outdated, first.thread) == (pb.Comment.STATE_OPEN, False, "")
        assert first.author == "organizations/acme/users/alice"
        # A retry with the same request id: the same comment, nothing new.
        assert (
            comment(
                acme,
                plate.name,
                "Chamfer this edge?",
                anchor((-20, 0, 0), side, True),
                request_id="c-1",
            )
            == first
        )
        # The same id for another request is refused, not answered with the first comment.
        with pytest.raises(grpc.RpcError) as reused:
            comment(acme, plate.name, "Something else", request_id="c-1")
        assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        reply = comment(globex, plate.name, "A 1 mm chamfer works for us.", thread=first.name)
        nested = comment(acme, plate.name, "Agreed.", thread=reply.name)
        assert reply.thread == nested.thread == first.name  # one thread
        assert reply.anchor == first.anchor and reply.author == "organizations/globex/users/gina"
        got = globex.comments.GetComment(pb.GetCommentRequest(name=nested.name))
        assert got.anchor == first.anchor and got.body == "Agreed."

        denied = error_of(lambda: comment(viewer, plate.name, "hi", anchor((0, 0, 0))))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [c.name for c in listed(viewer, plate.name)] == [
            first.name,
            reply.name,
            nested.name,
        ]
        for call in (
            lambda: listed(outsider, plate.name),
            lambda: outsider.comments.GetComment(pb.GetCommentRequest(name=first.name)),
            lambda: comment(outsider, plate.name, "hi", anchor((0, 0, 0))),
        ):
            assert error_of(call).code() == grpc.StatusCode.NOT_FOUND

        page = acme.comments.ListComments(pb.ListCommentsRequest(parent=plate.name, page_size=2))
        assert len(page.comments) == 2 and page.next_page_token
        rest = acme.comments.ListComments(
            pb.ListCommentsRequest(parent=plate.name, page_size=2, page_token=page.next_page_token)
        )
        assert [c.name for c in rest.comments] == [nested.name] and not rest.next_page_token

        # Resolving: the thread's organization (ACME) or an owner (ACME too), not Globex.
        resolve = pb.ResolveCommentRequest(name=first.name, request_id="r-1")
        assert (
            error_of(lambda: globex.comments.ResolveComment(resolve)).code()
            == grpc.StatusCode.PERMISSION_DENIED
        )
        on_reply = error_of(
            lambda: acme.comments.ResolveComment(pb.ResolveCommentRequest(name=reply.name))
        )
        assert on_reply.code() == grpc.StatusCode.INVALID_ARGUMENT
        resolved = acme.comments.ResolveComment(resolve)
        assert resolved.state == pb.Comment.STATE_RESOLVED
        assert resolved.resolver == "organizations/acme/users/alice"
        assert resolved.resolve_time.seconds > 0
        assert acme.comments.ResolveComment(resolve) == resolved
        assert listed(acme, plate.name) == []
        everything = listed(acme, plate.name, show_resolved=True)
        assert [c.state for c in everything] == [pb.Comment.STATE_RESOLVED] * 3
        reopened = acme.comments.ReopenComment(pb.ReopenCommentRequest(name=first.name))
        assert reopened.state == pb.Comment.STATE_OPEN and not reopened.resolver
        assert len(listed(globex, plate.name)) == 3

    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.payload)
            .where(outbox.c.event_type == "design.comment.added")
            .order_by(outbox.c.seq)
        ).all()
    assert len(rows) == 3  # the retried create added nothing
    envelopes = [decode_envelope(row.payload) for row in rows]
    assert {row.key for row in rows} == {design.name.rsplit("/", 1)[1]}
    assert set(envelopes[0].audience) == {
        "organizations/acme",
        "organizations/globex",
        "organizations/hooli",
    }
    added = unpack(envelopes[1], comment_events_pb2.CommentAdded)
    assert added.comment.name == reply.name  # type: ignore[attr-defined]
    assert envelopes[1].organization == "organizations/globex"


def test_bad_input_gets_a_precise_status(stack: Stack, parts: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme:
        design = create_design(acme, create_project(acme).name)
        plate = pushed(acme, design.name, parts["plate"])
        faces = plate.properties.faces
        assert faces == 6

        everything_wrong = error_of(
            lambda: comment(acme, plate.name, " ", anchor((math.nan, 0, 0), -1))
        )
        assert everything_wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(everything_wrong) == [
            "comment.body",
            "comment.anchor.point",
            "comment.anchor.face_id",
        ]
        cases: list[tuple[str, pb.CommentAnchor | None, str, str]] = [
            ("x" * 10_001, anchor((0, 0, 5)), "", "comment.body"),
            ("ok", anchor((0, 0, 5), faces), "", "comment.anchor.face_id"),
            ("ok", anchor((0, math.inf, 5)), "", "comment.anchor.point"),
            ("ok", None, "", "comment.anchor.point"),
            ("ok", None, f"{design.name}/comments/nosuch", "comment.thread"),
            ("ok", None, "not/a/name", "comment.thread"),
        ]
        for body, at, thread, field in cases:
            error = error_of(lambda: comment(acme, plate.name, body, at, thread))  # noqa: B023
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert violations(error) == [field]
        assert comment(acme, plate.name, "x" * 10_000, anchor((0, 0, 5), faces - 1)).body

        missing = error_of(
            lambda: comment(acme, f"{design.name}/revisions/nosuch", "hi", anchor((0, 0, 0)))
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND

        # Not processed yet (processing takes seconds; a comment right after the push is early).
        early = push_revision(acme, design.name, parts["drilled"], base_revision=plate.name)
        not_yet = error_of(lambda: comment(acme, early.name, "hi", anchor((0, 0, 0))))
        assert not_yet.code() == grpc.StatusCode.FAILED_PRECONDITION

        mesh = pushed(acme, design.name, parts["plate.stl"], base=wait_for(acme, early.name).name)
        on_mesh = error_of(lambda: comment(acme, mesh.name, "hi", anchor((0, 0, 5), 0)))
        assert violations(on_mesh) == ["comment.anchor.face_id"]
        assert not comment(acme, mesh.name, "hi", anchor((0, 0, 5))).anchor.HasField("face_id")


def test_threads_are_carried_forward_across_diffs(
    stack: Stack, parts: dict[str, Path], tmp_path: Path
) -> None:
    with stack.client(stack.acme) as acme:
        design = create_design(acme, create_project(acme).name)
        a = pushed(acme, design.name, parts["plate"])
        b = pushed(acme, design.name, parts["drilled"], base=a.name)
        c = pushed(acme, design.name, parts["twice"], base=b.name)
        ids = {rev.name: rev.name.rsplit("/", 1)[1] for rev in (a, b, c)}
        side = {
            step: face_index(parts[step], (-20, 0, 0)) for step in ("plate", "drilled", "twice")
        }
        top = face_index(parts["plate"], (0, 0, 5))

        # Made on A once B and C exist, so only the calls below carry them.
        on_side = comment(acme, a.name, "side face", anchor((-20, 0, 0), side["plate"], True))
        on_top = comment(acme, a.name, "top face", anchor((0, 0, 5), top))
        at_hole = comment(acme, a.name, "point where B drills", anchor((12.5, 0, 5)))
        far = comment(acme, a.name, "point far from it", anchor((-20, 5, 0)))
        done = comment(acme, a.name, "resolved before the diff", anchor((-20, 0, 0), side["plate"]))
        acme.comments.ResolveComment(pb.ResolveCommentRequest(name=done.name))
        early_reply = error_of(lambda: comment(acme, b.name, "here?", thread=on_side.name))
        assert violations(early_reply) == ["comment.thread"]

        now = dt.datetime.now(dt.UTC)
        diff_ab = engine_diff(stack, a.name, b.name, tmp_path / "ab")
        assert diff_ab.exact and len(diff_ab.removed) == 1 and not diff_ab.added
        with stack.engine.begin() as conn:
            assert has_open_comments(conn, ids[a.name])
            assert not has_open_comments(conn, ids[b.name])
            assert carry_forward(conn, ids[a.name], ids[b.name], diff_ab, now) == 4
        with stack.engine.begin() as conn:
            assert carry_forward(conn, ids[a.name], ids[b.name], diff_ab, now) == 0
            assert has_open_comments(conn, ids[b.name])

        on_b = {x.name: x for x in listed(acme, b.name)}
        assert list(on_b) == [on_side.name, on_top.name, at_hole.name, far.name]
        assert {x.revision for x in on_b.values()} == {a.name}
        assert {x.anchor_revision for x in on_b.values()} == {b.name}
        assert on_b[on_side.name].anchor.face_id == side["drilled"]
        assert on_b[on_side.name].anchor.view == on_side.anchor.view
        assert not on_b[on_side.name].outdated
        assert on_b[on_top.name].outdated and not on_b[on_top.name].anchor.HasField("face_id")
        assert on_b[at_hole.name].outdated
        assert not on_b[far.name].outdated and on_b[far.name].anchor == far.anchor
        # A still shows the anchors as they were made.
        assert [x.outdated for x in listed(acme, a.name)] == [False] * 4

        reply = comment(acme, b.name, "still applies on B", thread=on_side.name)
        assert (reply.revision, reply.anchor.face_id) == (b.name, side["drilled"])
        acme.comments.ResolveComment(pb.ResolveCommentRequest(name=far.name))

        diff_bc = engine_diff(stack, b.name, c.name, tmp_path / "bc")
        with stack.engine.begin() as conn:
            assert carry_forward(conn, ids[b.name], ids[c.name], diff_bc, now) == 3
        on_c = {x.name: x for x in listed(acme, c.name, show_resolved=True)}
        assert list(on_c) == [on_side.name, on_top.name, at_hole.name, reply.name]
        assert on_c[on_side.name].anchor.face_id == side["twice"]
        assert not on_c[on_side.name].outdated and not on_c[reply.name].outdated
        # Once outdated, always: the face they were about is gone.
        assert on_c[on_top.name].outdated and on_c[at_hole.name].outdated


def test_pushing_a_successor_carries_open_threads_to_it(
    stack: Stack, parts: dict[str, Path]
) -> None:
    """The whole path: a thread on A, then B pushed on A; the revision processor diffs A and B
    and carries the thread to B without anyone asking."""
    with stack.client(stack.acme) as acme:
        design = create_design(acme, create_project(acme).name)
        a = pushed(acme, design.name, parts["plate"])
        side = face_index(parts["plate"], (-20, 0, 0))
        on_side = comment(acme, a.name, "side face", anchor((-20, 0, 0), side))
        at_hole = comment(acme, a.name, "where B drills", anchor((12, 0, 5)))
        b = pushed(acme, design.name, parts["drilled"], base=a.name)
        deadline = time.monotonic() + WAIT_S
        while not (on_b := listed(acme, b.name)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [(x.name, x.outdated) for x in on_b] == [(on_side.name, False), (at_hole.name, True)]
        assert on_b[0].anchor.face_id == face_index(parts["drilled"], (-20, 0, 0))


def cofab(
    stack: Stack,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> str:
    """Runs one `cofab` command as `account`; returns its standard output, failing on an error."""
    monkeypatch.setenv("COFAB_TOKEN", account.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", stack.supply.address)
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_command_line_add_reply_list_resolve(
    stack: Stack,
    parts: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = stack.acme
    with stack.client(acme) as client:
        design = create_design(client, create_project(client).name)
        a = pushed(client, design.name, parts["plate"])
        b = pushed(client, design.name, parts["drilled"], base=a.name)
    top = face_index(parts["plate"], (0, 0, 5))

    added = cofab(
        stack, acme, monkeypatch, capsys,
        "comment", "add", a.name, "--point", "0,0,5", "--face", str(top),
        "--view", "100,-80,60;0,0,0;0,0,1", "--body", "Can this face take a logo?",
    )  # fmt: skip
    thread = added.split()[0]
    assert thread.startswith(design.name + "/comments/") and "[open]" in added
    assert f"at (0, 0, 5) mm face {top}" in added and "Can this face take a logo?" in added
    replied = cofab(
        stack, acme, monkeypatch, capsys, "comment", "reply", thread, "--body", "Yes, 20 mm wide."
    )  # fmt: skip
    assert f"reply in {thread}" in replied

    diff = engine_diff(stack, a.name, b.name, tmp_path)
    with stack.engine.begin() as conn:
        ids = (a.name.rsplit("/", 1)[1], b.name.rsplit("/", 1)[1])
        assert carry_forward(conn, *ids, diff, dt.datetime.now(dt.UTC)) == 1
    on_b = cofab(stack, acme, monkeypatch, capsys, "comment", "list", b.name)
    assert on_b.startswith(f"{thread}  [open, OUTDATED]  at (0, 0, 5) mm\n")
    assert f"as on revisions/{ids[1]}: the anchored geometry changed there" in on_b
    assert "-> organizations/acme/users/alice" in on_b and "Yes, 20 mm wide." in on_b
    assert on_b.rstrip().endswith("1 thread, 1 outdated")

    resolved = cofab(stack, acme, monkeypatch, capsys, "comment", "resolve", thread)
    assert "[resolved]" in resolved and "resolved by organizations/acme/users/alice" in resolved
    assert "no open comments" in cofab(stack, acme, monkeypatch, capsys, "comment", "list", a.name)
    assert "[resolved]" in cofab(
        stack, acme, monkeypatch, capsys, "comment", "list", a.name, "--all"
    )
