"""Geometric diffs of revisions over real gRPC on SQLite and PostgreSQL, computed by the real
geometry engine in the service's worker processes: a bracket whose hole moved, the volumes
against an independent computation, caching per pair, the picture and coloured model, the
event, and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cadquery as cq
import grpc
import pytest
from sqlalchemy import select

from clients.cli.main import main
from clients.sdk import Cofab, download_diff, push_revision, wait_for, wait_for_diff
from cofab.design.v1 import comment_pb2, design_pb2, events_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from services.design.diffs.tables import revision_diffs
from services.shared import audit
from services.shared.db import outbox
from services.shared.events import decode_envelope, unpack
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, share

WAIT_S = 300
HOLE_D, PLATE_T = 6.0, 8.0
HOLE_VOLUME = math.pi * (HOLE_D / 2) ** 2 * PLATE_T  # independent of any engine


def plate(*holes: tuple[float, float, float]) -> cq.Workplane:
    """A 60 x 40 x 8 plate centred on the origin with through holes (x, y, diameter)."""
    part = cq.Workplane("XY").box(60, 40, PLATE_T)
    for x, y, d in holes:
        part = (
            part.faces(">Z").workplane(centerOption="ProjectedOrigin").pushPoints([(x, y)]).hole(d)
        )
    return part


@pytest.fixture(scope="module")
def brackets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("diff-parts")
    files = {
        "before.step": plate((-15, 0, HOLE_D)),
        "after.step": plate((15, 0, HOLE_D)),
        "extra.step": plate((-15, 0, HOLE_D), (15, 15, 4)),
    }
    for name, part in files.items():
        cq.exporters.export(part, str(folder / name))
    (folder / "broken.py").write_text(
        "import cadquery as cq\n\n\ndef build(width: float = 10.0) -> cq.Workplane:\n"
        "    raise ValueError('this part cannot be built')\n"
    )
    return {p.name: p for p in folder.iterdir()}


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def test_a_moved_hole(stack: Stack, brackets: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        design = create_design(acme, project.name)
        share(stack, project.name, ipb.ROLE_VIEWER)
        first = push_revision(acme, design.name, brackets["before.step"])
        wait_for(acme, first.name, timeout=WAIT_S)
        second = push_revision(acme, design.name, brackets["after.step"], base_revision=first.name)
        assert wait_for(acme, second.name, timeout=WAIT_S).state == (
            design_pb2.Revision.STATE_SUCCEEDED
        )

        # Any member may diff: Globex is a viewer.
        request = design_pb2.DiffRevisionsRequest(
            design=design.name, revision_a=first.name, revision_b=second.name
        )
        asked = globex.designs.DiffRevisions(request)
        a_id = first.name.rsplit("/", 1)[1]
        assert asked.name == f"{second.name}/diffs/{a_id}"
        assert asked.state in (
            design_pb2.RevisionDiff.STATE_PENDING,
            design_pb2.RevisionDiff.STATE_RUNNING,
        )
        done = wait_for_diff(globex, asked.name, timeout=WAIT_S)
        assert done.state == design_pb2.RevisionDiff.STATE_SUCCEEDED, done.error.message
        d = done.result
        assert d.exact  # both sides are B-reps
        # The old hole is filled (added), the new one cut (removed): one cylinder each.
        assert d.added_volume_mm3 == pytest.approx(HOLE_VOLUME, rel=1e-3)
        assert d.removed_volume_mm3 == pytest.approx(HOLE_VOLUME, rel=1e-3)
        assert [round(r.centroid.x) for r in d.added] == [-15]
        assert [round(r.centroid.x) for r in d.removed] == [15]
        (added,) = d.added
        assert added.bbox_min.x == pytest.approx(-15 - HOLE_D / 2, abs=0.05)
        assert added.bbox_max.x == pytest.approx(-15 + HOLE_D / 2, abs=0.05)
        assert d.volume_delta_mm3 == pytest.approx(0, abs=0.5)
        changes = {c.change for c in d.faces}
        assert design_pb2.FaceChange.CHANGE_ADDED in changes or (
            design_pb2.FaceChange.CHANGE_MODIFIED in changes
        )
        assert d.unchanged_faces >= 4  # the plate's sides did not move
        assert d.max_deviation_mm > 0
        assert {a.name for a in done.artifacts} == {"diff.png", "diff.glb"}

        # Cached per pair: the same diff again, nothing recomputed.
        again = acme.designs.DiffRevisions(request)
        assert again.name == done.name
        assert again.state == design_pb2.RevisionDiff.STATE_SUCCEEDED
        assert again.update_time == done.update_time
        assert (
            acme.designs.GetRevisionDiff(design_pb2.GetRevisionDiffRequest(name=done.name)) == again
        )

        png = stack.settings.state_dir / "diff.png"
        glb = stack.settings.state_dir / "diff.glb"
        assert download_diff(globex, done.name, png, "diff.png").media_type == "image/png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        download_diff(globex, done.name, glb, "diff.glb")
        assert glb.read_bytes()[:4] == b"glTF"
        bogus = code_of(lambda: download_diff(globex, done.name, png, "thumbnail.png"))
        assert bogus[0] == grpc.StatusCode.INVALID_ARGUMENT

        # The other direction is another diff, mirrored.
        back = wait_for_diff(
            acme,
            acme.designs.DiffRevisions(
                design_pb2.DiffRevisionsRequest(
                    design=design.name, revision_a=second.name, revision_b=first.name
                )
            ).name,
            timeout=WAIT_S,
        )
        assert back.name != done.name
        assert back.result.added_volume_mm3 == pytest.approx(d.removed_volume_mm3, rel=1e-3)
        assert [round(r.centroid.x) for r in back.result.added] == [15]

    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(revision_diffs.c.attempts).where(revision_diffs.c.revision_a == a_id)
        ).all()
        events = conn.execute(
            select(outbox.c.key, outbox.c.payload).where(
                outbox.c.event_type == "design.revision.diffed"
            )
        ).all()
        actions = [e.action for e in audit.entries(conn)]
    assert [r.attempts for r in rows] == [1]
    assert len(events) == 2
    assert {e.key for e in events} == {design.name.rsplit("/", 1)[1]}
    envelopes = [decode_envelope(e.payload) for e in events]
    payloads = [unpack(e, events_pb2.RevisionDiffed) for e in envelopes]
    assert done.name in {p.diff.name for p in payloads}  # type: ignore[attr-defined]
    assert set(envelopes[0].audience) == {"organizations/acme", "organizations/globex"}
    assert {"revision.diff", "revision.diff.read", "revision.diff.download"} <= set(actions)


def test_bad_input(stack: Stack, brackets: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        project = create_project(acme)
        design = create_design(acme, project.name)
        other = create_design(acme, project.name, name="Other")
        good = push_revision(acme, design.name, brackets["before.step"])
        elsewhere = push_revision(acme, other.name, brackets["after.step"])
        broken = push_revision(
            acme, design.name, brackets["broken.py"], branch="broken", format="cadquery"
        )

        def diff(a: str, b: str, who: Cofab = acme) -> Callable[[], object]:
            return lambda: who.designs.DiffRevisions(
                design_pb2.DiffRevisionsRequest(design=design.name, revision_a=a, revision_b=b)
            )

        # Still processing: not comparable yet.
        pending = code_of(diff(good.name, broken.name))
        assert pending[0] == grpc.StatusCode.FAILED_PRECONDITION
        wait_for(acme, good.name, timeout=WAIT_S)
        failed = wait_for(acme, broken.name, timeout=WAIT_S)
        assert failed.state == design_pb2.Revision.STATE_FAILED
        code, details = code_of(diff(good.name, broken.name))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert broken.name in details and "FAILED" in details
        assert failed.error.message in details

        # Another design's revision, or another company's view: as if it did not exist.
        assert code_of(diff(good.name, elsewhere.name))[0] == grpc.StatusCode.NOT_FOUND
        assert code_of(diff(good.name, good.name, initech))[0] == grpc.StatusCode.NOT_FOUND
        missing = f"{design.name}/revisions/{'0' * 32}"
        assert code_of(diff(good.name, missing))[0] == grpc.StatusCode.NOT_FOUND
        assert code_of(diff(good.name, "revisions/x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
        hidden = f"{good.name}/diffs/{'0' * 32}"
        assert (
            code_of(
                lambda: initech.designs.GetRevisionDiff(
                    design_pb2.GetRevisionDiffRequest(name=hidden)
                )
            )[0]
            == grpc.StatusCode.NOT_FOUND
        )
        assert (
            code_of(
                lambda: acme.designs.GetRevisionDiff(design_pb2.GetRevisionDiffRequest(name=hidden))
            )[0]
            == grpc.StatusCode.NOT_FOUND
        )


def test_the_cli_diffs_and_merges(
    stack: Stack,
    brackets: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A user's session: push two revisions, diff them with the picture, then merge a branch."""
    monkeypatch.setenv("COFAB_TOKEN", stack.acme.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", stack.supply.address)

    def cofab(*argv: str) -> str:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    with stack.client(stack.acme) as acme:
        design = create_design(acme, create_project(acme).name).name
    first = cofab("revision", "push", design, str(brackets["before.step"]), "--wait").split()[0]
    second = cofab(
        "revision", "push", design, str(brackets["after.step"]), "--base", first, "--wait"
    ).split()[0]
    png, glb = tmp_path / "moved-hole.png", tmp_path / "moved-hole.glb"
    shown = cofab(
        "revision", "diff", design, first.rsplit("/", 1)[1], second,
        "--png", str(png), "--glb", str(glb),
    )  # fmt: skip
    assert "[succeeded]" in shown and "exact B-rep booleans" in shown
    assert f"added {HOLE_VOLUME:,.3f}"[:-1] in shown  # e.g. "added 226.19"
    assert "1 region(s)" in shown and "around (-15.00, 0.00" in shown
    assert "unchanged" in shown and "deviation: max" in shown and "DFM" in shown
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and glb.read_bytes()[:4] == b"glTF"

    other = cofab(
        "revision", "push", design, str(brackets["extra.step"]),
        "--base", first, "--branch", "extra", "--wait",
    ).split()[0]  # fmt: skip
    proposed = cofab("revision", "merge", design, "--into", "main", "--from", other, "--wait")
    merge = proposed.split()[0]
    assert "[proposed]" in proposed and f"head   {second}" in proposed
    merged = next(line.split()[1] for line in proposed.splitlines() if "merged " in line)
    assert "[succeeded]" in cofab("revision", "watch", merged)
    accepted = cofab("revision", "merges", "accept", merge)
    assert "[accepted]" in accepted
    assert "main" in cofab("revision", "show", merged)


def test_open_comments_follow_a_new_revision(stack: Stack, brackets: dict[str, Path]) -> None:
    """A revision pushed on one with open threads gets its parent diff computed, and the threads
    carried across it: still anchored where the geometry stayed, outdated where it changed."""
    with stack.client(stack.acme) as acme:
        design = create_design(acme, create_project(acme).name).name
        first = wait_for(acme, push_revision(acme, design, brackets["before.step"]).name)
        top = PLATE_T / 2

        def comment(body: str, x: float, y: float) -> str:
            made = acme.comments.CreateComment(
                comment_pb2.CreateCommentRequest(
                    parent=first.name,
                    comment=comment_pb2.Comment(
                        body=body,
                        anchor=comment_pb2.CommentAnchor(point=design_pb2.Vector3(x=x, y=y, z=top)),
                    ),
                )
            )
            return made.name

        stays = comment("this corner is fine", -25, 15)
        drilled = comment("keep this spot solid", 15, 0)
        second = push_revision(acme, design, brackets["after.step"], base_revision=first.name).name
        assert wait_for(acme, second, timeout=WAIT_S).state == design_pb2.Revision.STATE_SUCCEEDED
        diff = wait_for_diff(acme, f"{second}/diffs/{first.name.rsplit('/', 1)[1]}", WAIT_S)
        assert diff.state == design_pb2.RevisionDiff.STATE_SUCCEEDED, diff.error.message
        carried = {
            c.name: c
            for c in acme.comments.ListComments(
                comment_pb2.ListCommentsRequest(parent=second)
            ).comments
        }
        assert set(carried) == {stays, drilled}
        assert {c.anchor_revision for c in carried.values()} == {second}
        assert not carried[stays].outdated
        assert carried[drilled].outdated
