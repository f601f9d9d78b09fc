"""Design revisions over real gRPC on SQLite and PostgreSQL: push (client streaming) of
CadQuery-built STEP and STL, processing by the real geometry engine in worker processes, reads,
downloads, watch, release, the branch-head compare-and-set, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cadquery as cq
import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import Engine, select

from clients.sdk import Cofab, connect, download, push_revision, wait_for
from clients.sdk.revisions import file_sha256
from cofab.design.v1 import design_pb2, events_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from services.design.app import bootstrap, build_server
from services.shared import audit
from services.shared.config import Settings
from services.shared.db import outbox
from services.shared.events import decode_envelope, unpack
from tests.conftest import make_account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, share
from tests.support import ServerThread

WAIT_S = 240


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real CAD files: a bracket with holes and fillets (STEP and STL), and a plain block."""
    folder = tmp_path_factory.mktemp("parts")
    bracket = (
        cq.Workplane("XY")
        .box(60, 40, 8)
        .edges("|Z")
        .fillet(4)
        .faces(">Z")
        .workplane()
        .rarray(40, 20, 2, 2)
        .hole(6)
    )
    block = cq.Workplane("XY").box(30, 20, 10)
    cq.exporters.export(bracket, str(folder / "bracket.step"))
    cq.exporters.export(bracket, str(folder / "bracket.stl"))
    cq.exporters.export(block, str(folder / "block.step"))
    return {p.stem + p.suffix: p for p in folder.iterdir()}


@contextmanager
def another_server(settings: Settings) -> Iterator[ServerThread]:
    """A second design server (own engine, processor and blob store settings)."""
    deps = bootstrap(settings)
    server = ServerThread(lambda: build_server(settings, deps, "127.0.0.1:0")).start()
    try:
        yield server
    finally:
        server.stop()
        assert deps.revisions is not None
        deps.revisions.processor.stop()
        deps.engine.dispose()


def blob_files(stack: Stack) -> list[Path]:
    root = stack.settings.blob_root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def code_or_none(call: object) -> grpc.StatusCode | None:
    """The status code a call failed with, or None when it succeeded."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return None


def error_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def details_of(error: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(error)
    assert status is not None
    found: list[object] = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            message = kind()
            if detail.Unpack(message):
                found.append(message)
    return found


def new_design(cofab: Cofab) -> design_pb2.Design:
    project = create_project(cofab)
    return create_design(cofab, project.name)


# the happy path ------------------------------------------------------------------------------


def test_push_step_then_read_watch_and_download(stack: Stack, parts: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme:
        design = new_design(acme)
        started = time.monotonic()
        pushed = push_revision(
            acme, design.name, parts["bracket.step"], message="first cut", request_id="push-1"
        )
        assert time.monotonic() - started < 30  # returns before processing
        assert pushed.state == design_pb2.Revision.STATE_PENDING
        assert pushed.name.startswith(design.name + "/revisions/")
        # No units pushed: the STEP file's own unit is used (properties.units, below).
        assert (pushed.branch, pushed.units, pushed.format) == ("main", "", "step")
        assert pushed.sha256 == file_sha256(parts["bracket.step"])
        assert pushed.author == "organizations/acme/users/alice"
        assert list(pushed.parents) == []

        states = [
            r.state
            for r in acme.designs.WatchRevision(
                design_pb2.WatchRevisionRequest(name=pushed.name), timeout=WAIT_S
            )
        ]
        assert states[-1] == design_pb2.Revision.STATE_SUCCEEDED, states
        assert len(states) == len(set(states))  # one message per state change

        got = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=pushed.name))
        assert got.state == design_pb2.Revision.STATE_SUCCEEDED
        bbox = (got.properties.bbox_max.x - got.properties.bbox_min.x,)
        assert bbox[0] == pytest.approx(60, abs=1e-3)
        # 60x40x8 box, minus four corner fillets (r4) and four 6 mm holes.
        expected = 60 * 40 * 8 - 4 * (16 - 3.14159265 * 4) * 8 - 4 * 3.14159265 * 9 * 8
        assert got.properties.volume_mm3 == pytest.approx(expected, rel=1e-3)
        assert got.properties.is_brep and got.properties.faces > 6
        assert (got.properties.units, got.properties.declared_units) == ("mm", "mm")
        assert got.properties.bodies == 1
        assert got.rule_set == "cnc-milling"
        assert {a.name for a in got.artifacts} >= {"mesh.glb", "thumbnail.png"}

        # The same request id again: the first result, no second revision.
        again = push_revision(
            acme, design.name, parts["bracket.step"], message="first cut", request_id="push-1"
        )
        assert again.name == pushed.name

        listed = acme.designs.ListRevisions(design_pb2.ListRevisionsRequest(parent=design.name))
        assert [r.name for r in listed.revisions] == [pushed.name]
        branches = acme.designs.ListBranches(design_pb2.ListBranchesRequest(parent=design.name))
        assert [(b.name, b.head) for b in branches.branches] == [
            (design.name + "/branches/main", pushed.name)
        ]

        original = download(acme, pushed.name, stack.settings.state_dir / "copy.step")
        assert original.media_type == "model/step"
        copy = (stack.settings.state_dir / "copy.step").read_bytes()
        assert copy == parts["bracket.step"].read_bytes()
        download(acme, pushed.name, stack.settings.state_dir / "mesh.glb", artifact="mesh.glb")
        assert (stack.settings.state_dir / "mesh.glb").read_bytes()[:4] == b"glTF"
        download(acme, pushed.name, stack.settings.state_dir / "t.png", artifact="thumbnail.png")
        bogus = error_of(
            lambda: download(acme, pushed.name, stack.settings.state_dir / "x", artifact="x.bin")
        )
        assert bogus.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not (stack.settings.state_dir / "x").exists()
        assert (stack.settings.state_dir / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.key, outbox.c.event_type, outbox.c.payload).where(
                outbox.c.event_type == "design.revision.validated"
            )
        ).all()
        actions = [e.action for e in audit.entries(conn)]
        assert audit.verify_chain(conn).ok
    assert len(rows) == 1
    assert rows[0].key == design.name.rsplit("/", 1)[1]
    validated = unpack(decode_envelope(rows[0].payload), events_pb2.RevisionValidated)
    assert validated.revision.state == design_pb2.Revision.STATE_SUCCEEDED  # type: ignore[attr-defined]
    assert {"revision.push", "revision.read", "revision.download", "revision.list"} <= set(actions)


def test_stl_on_a_base_and_a_stale_base_is_aborted(stack: Stack, parts: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme:
        design = new_design(acme)
        first = push_revision(acme, design.name, parts["block.step"])
        # A base that is still processing is no base yet.
        early = error_of(
            lambda: push_revision(acme, design.name, parts["bracket.stl"], base_revision=first.name)
        )
        if early.code() != grpc.StatusCode.FAILED_PRECONDITION:
            # Processing won the race with this push; then the push went through.
            assert early.code() is None
        wait_for(acme, first.name, timeout=WAIT_S)
        second = push_revision(
            acme, design.name, parts["bracket.stl"], base_revision=first.name, units="mm"
        )
        assert list(second.parents) == [first.name]
        no_mesh_yet = error_of(
            lambda: download(acme, second.name, stack.settings.state_dir / "m", artifact="mesh.glb")
        )
        assert no_mesh_yet.code() == grpc.StatusCode.FAILED_PRECONDITION
        stale = error_of(
            lambda: push_revision(
                acme, design.name, parts["bracket.step"], base_revision=first.name
            )
        )
        assert stale.code() == grpc.StatusCode.ABORTED
        assert second.name in (stale.details() or "")
        (info,) = [d for d in details_of(stale) if isinstance(d, error_details_pb2.ErrorInfo)]
        assert info.metadata["current"] == second.name
        # A first revision on a branch that exists is stale too.
        assert (
            error_of(lambda: push_revision(acme, design.name, parts["block.step"])).code()
            == grpc.StatusCode.ABORTED
        )
        done = wait_for(acme, second.name, timeout=WAIT_S)
        assert done.state == design_pb2.Revision.STATE_SUCCEEDED
        assert not done.properties.is_brep
        assert done.properties.triangles > 0
        by_branch = acme.designs.ListRevisions(
            design_pb2.ListRevisionsRequest(parent=design.name, branch="other")
        )
        assert list(by_branch.revisions) == []


# bad input -----------------------------------------------------------------------------------


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.step", "ISO-10303-21;")
    return buffer.getvalue()


def raw_push(cofab: Cofab, design: str, content: bytes, **header: object) -> design_pb2.Revision:
    fields: dict[str, Any] = {
        "parent": design,
        "format": "step",
        "sha256": hashlib.sha256(content).hexdigest(),
        "size_bytes": len(content),
    }
    fields.update(header)
    requests = [design_pb2.PushRevisionRequest(header=design_pb2.PushRevisionHeader(**fields))]
    requests += [
        design_pb2.PushRevisionRequest(chunk=content[i : i + 4096])
        for i in range(0, len(content), 4096)
    ]
    revision: design_pb2.Revision = cofab.designs.PushRevision(iter(requests), timeout=60)
    return revision


def test_bad_uploads_get_a_precise_status_and_leave_nothing(
    stack: Stack, parts: dict[str, Path]
) -> None:
    step = parts["block.step"].read_bytes()
    cases: list[tuple[str, bytes, dict[str, object], grpc.StatusCode, str]] = [
        (
            "corrupt",
            b"this is not a STEP file at all\n" * 20,
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
        ),
        ("truncated", step[: len(step) // 2], {}, grpc.StatusCode.INVALID_ARGUMENT, ""),
        ("zip as step", zip_bytes(), {}, grpc.StatusCode.INVALID_ARGUMENT, ""),
        ("empty", b"", {}, grpc.StatusCode.INVALID_ARGUMENT, "size_bytes"),
        (
            "sha256 mismatch",
            step,
            {"sha256": "0" * 64},
            grpc.StatusCode.INVALID_ARGUMENT,
            "sha256",
        ),
        (
            "fewer bytes than declared",
            step,
            {"size_bytes": len(step) + 10},
            grpc.StatusCode.INVALID_ARGUMENT,
            "size_bytes",
        ),
        (
            "more bytes than declared",
            step,
            {"size_bytes": len(step) - 10},
            grpc.StatusCode.INVALID_ARGUMENT,
            "size_bytes",
        ),
        ("unknown units", step, {"units": "furlong"}, grpc.StatusCode.INVALID_ARGUMENT, "units"),
        ("unknown format", step, {"format": "dwg"}, grpc.StatusCode.INVALID_ARGUMENT, "format"),
        (
            "bad base",
            step,
            {"base_revision": "projects/x/designs/y/revisions/z"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "base_revision",
        ),
        (
            "parameters on a mesh",
            step,
            {"parameters": {"width": design_pb2.ParameterValue(number_value=3.0)}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "parameters",
        ),
    ]
    with stack.client(stack.acme) as acme:
        design = new_design(acme)
        for label, content, header, code, field in cases:
            error = error_of(lambda c=content, h=header: raw_push(acme, design.name, c, **h))
            assert error.code() == code, (label, error.details())
            assert error.details(), label
            if field:
                bad = [d for d in details_of(error) if isinstance(d, error_details_pb2.BadRequest)]
                assert bad and bad[0].field_violations[0].field == field, label
        headless = error_of(
            lambda: acme.designs.PushRevision(
                iter([design_pb2.PushRevisionRequest(chunk=step)]), timeout=60
            )
        )
        assert headless.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header" in (headless.details() or "")
        listed = acme.designs.ListRevisions(design_pb2.ListRevisionsRequest(parent=design.name))
        assert list(listed.revisions) == []
    assert blob_files(stack) == []


def test_the_size_limit_is_enforced(stack: Stack, parts: dict[str, Path]) -> None:
    settings = dataclasses.replace(stack.settings, max_upload_bytes=1000)
    content = parts["block.step"].read_bytes()
    assert len(content) > 1000
    with stack.client(stack.acme) as acme:
        design = new_design(acme)
    with another_server(settings) as server, connect(stack.acme.token, server.address) as small:
        declared = error_of(lambda: raw_push(small, design.name, content))
        assert declared.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1000" in (declared.details() or "")
        # A client that declares less than it sends is stopped as the bytes arrive.
        lying = error_of(lambda: raw_push(small, design.name, content, size_bytes=900))
        assert lying.code() in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert blob_files(stack) == []


def test_a_cancelled_upload_leaves_no_blob_and_no_temporary_file(
    stack: Stack, parts: dict[str, Path]
) -> None:
    content = parts["bracket.step"].read_bytes()
    sent_some = threading.Event()
    release = threading.Event()

    with stack.client(stack.acme) as acme:
        design = new_design(acme)

        def requests() -> Iterator[design_pb2.PushRevisionRequest]:
            yield design_pb2.PushRevisionRequest(
                header=design_pb2.PushRevisionHeader(
                    parent=design.name,
                    format="step",
                    sha256=hashlib.sha256(content).hexdigest(),
                    size_bytes=len(content),
                )
            )
            yield design_pb2.PushRevisionRequest(chunk=content[:1000])
            sent_some.set()
            release.wait(30)  # the rest never comes: the client cancels first

        future = acme.designs.PushRevision.future(requests(), timeout=60)
        assert sent_some.wait(30)
        deadline = time.monotonic() + 30
        tmp_dir = stack.settings.blob_root / ".tmp"
        while not (tmp_dir.exists() and any(tmp_dir.iterdir())):
            assert time.monotonic() < deadline, "the upload never started on the server"
            time.sleep(0.02)
        future.cancel()
        release.set()
        assert future.cancelled()
        deadline = time.monotonic() + 30
        while blob_files(stack):
            assert time.monotonic() < deadline, blob_files(stack)
            time.sleep(0.05)
        listed = acme.designs.ListRevisions(design_pb2.ListRevisionsRequest(parent=design.name))
        assert list(listed.revisions) == []


# who may do what -----------------------------------------------------------------------------


def test_viewer_cannot_push_and_outsider_sees_nothing(stack: Stack, parts: dict[str, Path]) -> None:
    with (
        stack.client(stack.acme) as acme,
        stack.client(stack.globex) as globex,
        stack.client(stack.initech) as initech,
    ):
        design = new_design(acme)
        project = design.name.split("/designs/")[0]
        share(stack, project, ipb.ROLE_VIEWER)
        denied = error_of(lambda: push_revision(globex, design.name, parts["block.step"]))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "viewer" in (denied.details() or "")
        pushed = push_revision(acme, design.name, parts["block.step"])
        assert globex.designs.GetRevision(design_pb2.GetRevisionRequest(name=pushed.name)).name
        missing = pushed.name.rsplit("/", 1)[0] + "/" + "0" * 32
        for name in (pushed.name, missing):
            hidden = error_of(
                lambda name=name: initech.designs.GetRevision(
                    design_pb2.GetRevisionRequest(name=name)
                )
            )
            assert hidden.code() == grpc.StatusCode.NOT_FOUND
            assert hidden.details() == f"{project} not found"
        calls = [
            lambda: push_revision(initech, design.name, parts["block.step"]),
            lambda: initech.designs.ListRevisions(
                design_pb2.ListRevisionsRequest(parent=design.name)
            ),
            lambda: download(initech, pushed.name, stack.settings.state_dir / "x"),
            lambda: list(
                initech.designs.WatchRevision(design_pb2.WatchRevisionRequest(name=pushed.name))
            ),
            lambda: initech.designs.ReleaseRevision(
                design_pb2.ReleaseRevisionRequest(name=pushed.name)
            ),
        ]
        for call in calls:
            assert error_of(call).code() == grpc.StatusCode.NOT_FOUND
        assert not (stack.settings.state_dir / "x").exists()


def test_release_needs_an_owner_and_a_succeeded_revision(
    stack: Stack, parts: dict[str, Path]
) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        design = new_design(acme)
        share(stack, design.name.split("/designs/")[0], ipb.ROLE_EDITOR)
        pushed = push_revision(globex, design.name, parts["block.step"])
        release = design_pb2.ReleaseRevisionRequest(name=pushed.name, request_id="rel-1")
        early = error_of(lambda: acme.designs.ReleaseRevision(release))
        assert early.code() == grpc.StatusCode.FAILED_PRECONDITION
        wait_for(acme, pushed.name, timeout=WAIT_S)
        editor = error_of(lambda: globex.designs.ReleaseRevision(release))
        assert editor.code() == grpc.StatusCode.PERMISSION_DENIED
        released = acme.designs.ReleaseRevision(release)
        assert released.released and released.release_time.seconds > 0
        assert acme.designs.ReleaseRevision(release) == released
        rule_sets = acme.designs.ListRuleSets(design_pb2.ListRuleSetsRequest())
        assert {"cnc-milling", "fdm-printing", "sla-printing", "injection-moulding"} <= {
            r.id for r in rule_sets.rule_sets
        }
    with stack.engine.connect() as conn:
        count = conn.execute(
            select(outbox.c.event_id).where(outbox.c.event_type == "design.revision.released")
        ).all()
    assert len(count) == 1


def test_processing_survives_a_restart(
    settings: Settings, engine: Engine, parts: dict[str, Path]
) -> None:
    """No stack here: its server's processor would finish the work. One server at a time."""
    alice = make_account(engine, "acme", "alice", admin=True)
    with another_server(settings) as first, connect(alice.token, first.address) as cofab:
        design = new_design(cofab)
        pushed = push_revision(cofab, design.name, parts["bracket.step"])
        deadline = time.monotonic() + WAIT_S
        while (
            cofab.designs.GetRevision(design_pb2.GetRevisionRequest(name=pushed.name)).state
            == design_pb2.Revision.STATE_PENDING
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with another_server(settings) as second, connect(alice.token, second.address) as cofab:
        interrupted = cofab.designs.GetRevision(design_pb2.GetRevisionRequest(name=pushed.name))
        if interrupted.state != design_pb2.Revision.STATE_SUCCEEDED:
            # The stopped server handed its claim back (or this one has taken it already).
            assert interrupted.state in (
                design_pb2.Revision.STATE_PENDING,
                design_pb2.Revision.STATE_RUNNING,
            )
        done = wait_for(cofab, pushed.name, timeout=WAIT_S)
    assert done.state == design_pb2.Revision.STATE_SUCCEEDED


SCRIPT = """import cadquery as cq


def build(width: float = 40.0, holes: int = 2) -> cq.Workplane:
    return (
        cq.Workplane("XY")
        .box(width, 20, 5)
        .faces(">Z")
        .workplane()
        .rarray(width / (holes + 1), 1, holes, 1)
        .hole(3)
    )
"""


def test_parametric_script_parameters_are_checked_at_push(stack: Stack) -> None:
    script = stack.settings.state_dir / "plate.py"
    script.write_text(SCRIPT)
    with stack.client(stack.acme) as acme:
        design = new_design(acme)
        unknown = error_of(
            lambda: push_revision(acme, design.name, script, parameters={"depth": 3.0})
        )
        assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "declares no parameter 'depth'" in (unknown.details() or "")
        wrong_type = error_of(
            lambda: push_revision(acme, design.name, script, parameters={"holes": "many"})
        )
        assert wrong_type.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            list(
                acme.designs.ListRevisions(
                    design_pb2.ListRevisionsRequest(parent=design.name)
                ).revisions
            )
            == []
        )
        pushed = push_revision(acme, design.name, script, parameters={"width": 60.0, "holes": 3})
        assert pushed.format == "cadquery"
        done = wait_for(acme, pushed.name, timeout=WAIT_S)
        assert done.state == design_pb2.Revision.STATE_SUCCEEDED, done.error.message
        assert done.properties.bbox_max.x - done.properties.bbox_min.x == pytest.approx(60, 1e-3)
        assert done.parameters["width"].number_value == 60.0
        assert done.parameters["holes"].int_value == 3
        assert "model.step" in {a.name for a in done.artifacts}


def test_update_design_validation_settings(stack: Stack, parts: dict[str, Path]) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        design = new_design(acme)
        assert design.rule_set == "cnc-milling"
        share(stack, design.name.split("/designs/")[0], ipb.ROLE_VIEWER)
        change = design_pb2.Design(
            name=design.name, rule_set="fdm-printing", material="", rule_overrides={"min-wall": 1.0}
        )
        mask = field_mask_pb2.FieldMask(paths=["rule_set", "material", "rule_overrides"])
        request = design_pb2.UpdateDesignRequest(design=change, update_mask=mask)
        denied = error_of(lambda: globex.designs.UpdateDesign(request))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        for paths, field in ((["part_number"], "update_mask"), ([], "update_mask")):
            bad = error_of(
                lambda p=paths: acme.designs.UpdateDesign(
                    design_pb2.UpdateDesignRequest(
                        design=change, update_mask=field_mask_pb2.FieldMask(paths=p)
                    )
                )
            )
            assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
            violations = [d for d in details_of(bad) if isinstance(d, error_details_pb2.BadRequest)]
            assert violations[0].field_violations[0].field == field
        updated = acme.designs.UpdateDesign(request)
        assert (updated.rule_set, dict(updated.rule_overrides)) == (
            "fdm-printing",
            {"min-wall": 1.0},
        )
        assert updated.display_name == design.display_name  # not in the mask: unchanged
        pushed = push_revision(acme, design.name, parts["block.step"])
        assert pushed.rule_set == "fdm-printing"
