"""Concurrent edits of one design merged over real gRPC on SQLite and PostgreSQL by the real
geometry engine: disjoint edits on two branches become a PROPOSED merged revision (parents: the
head and the source) that its author accepts; overlapping edits are CONFLICTED with where they
overlap; accepting after the head moved again is ABORTED; roles and request ids."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cadquery as cq
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from clients.sdk import Cofab, push_revision, wait_for, wait_for_merge
from cofab.design.v1 import design_pb2, events_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from services.shared.db import outbox
from services.shared.events import decode_envelope, unpack
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, share
from tests.integration.test_revision_diff import plate

WAIT_S = 300
T = 8.0
SUCCEEDED = design_pb2.Revision.STATE_SUCCEEDED
Merge = design_pb2.RevisionMerge


@pytest.fixture(scope="module")
def edits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain plate and edits of it: a hole at the left, one at the right, a bigger hole at
    the left (overlapping the first edit) and a small one at the top."""
    folder = tmp_path_factory.mktemp("merge-parts")
    parts = {
        "base": plate(),
        "left": plate((-20, 0, 6)),
        "right": plate((20, 0, 6)),
        "left-big": plate((-20, 0, 10)),
        "top": plate((0, 12, 4)),
        "corner": plate((-20, 0, 6), (20, 0, 6), (25, 15, 3)),
    }
    for name, part in parts.items():
        cq.exporters.export(part, str(folder / f"{name}.step"))
    return {p.stem: p for p in folder.iterdir()}


def pushed(
    cofab: Cofab, design: str, path: Path, base: str = "", branch: str = ""
) -> design_pb2.Revision:
    revision = push_revision(cofab, design, path, base_revision=base, branch=branch)
    done = wait_for(cofab, revision.name, timeout=WAIT_S)
    assert done.state == SUCCEEDED, done.error.message
    return done


def head(cofab: Cofab, design: str, branch: str = "main") -> str:
    listed = cofab.designs.ListBranches(design_pb2.ListBranchesRequest(parent=design))
    (found,) = [b.head for b in listed.branches if b.name.endswith(f"/branches/{branch}")]
    return found


def error_of(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_disjoint_edits_merge_and_overlapping_ones_conflict(
    stack: Stack, edits: dict[str, Path]
) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        design = create_design(acme, project.name).name
        share(stack, project.name, ipb.ROLE_EDITOR)
        base = pushed(acme, design, edits["base"])
        ours = pushed(acme, design, edits["left"], base=base.name)
        # Globex started from the same base; main moved on, so its push is refused ...
        stale = error_of(
            lambda: push_revision(globex, design, edits["right"], base_revision=base.name)
        )
        assert stale.code() == grpc.StatusCode.ABORTED
        assert "another branch and merge" in (stale.details() or "")
        # ... and it pushes on a branch of its own and asks to merge that.
        theirs = pushed(globex, design, edits["right"], base=base.name, branch="globex")
        request = design_pb2.MergeRevisionsRequest(
            design=design,
            target_branch="main",
            source_revision=theirs.name,
            expected_head=ours.name,
            request_id="merge-1",
        )
        asked = globex.designs.MergeRevisions(request)
        assert asked.state in (Merge.STATE_PENDING, Merge.STATE_RUNNING)
        assert (asked.base_revision, asked.ours_revision) == (base.name, ours.name)
        assert globex.designs.MergeRevisions(request).name == asked.name  # request id
        merge = wait_for_merge(globex, asked.name, timeout=WAIT_S)
        assert merge.state == Merge.STATE_PROPOSED, (merge.error.message, merge.conflict.reason)
        hole = math.pi * 9 * T
        assert merge.ours_diff.removed_volume_mm3 == pytest.approx(hole, rel=1e-3)
        assert merge.theirs_diff.removed_volume_mm3 == pytest.approx(hole, rel=1e-3)
        merged = wait_for(globex, merge.merged_revision, timeout=WAIT_S)
        assert merged.state == SUCCEEDED, merged.error.message
        assert list(merged.parents) == [ours.name, theirs.name]
        assert merged.author == "organizations/globex/users/gina"
        assert merged.properties.volume_mm3 == pytest.approx(60 * 40 * T - 2 * hole, rel=1e-3)
        assert head(acme, design) == ours.name  # not on the branch until accepted

        # Only the author accepts.
        assert (
            error_of(
                lambda: acme.designs.AcceptMerge(design_pb2.AcceptMergeRequest(name=merge.name))
            ).code()
            == grpc.StatusCode.PERMISSION_DENIED
        )
        accept = design_pb2.AcceptMergeRequest(name=merge.name, request_id="accept-1")
        accepted = globex.designs.AcceptMerge(accept)
        assert accepted.state == Merge.STATE_ACCEPTED
        assert globex.designs.AcceptMerge(accept).state == Merge.STATE_ACCEPTED  # request id
        assert head(acme, design) == merged.name

        # A bigger hole where the head already has one: the edits overlap.
        clash = pushed(acme, design, edits["left-big"], base=base.name, branch="clash")
        conflicted = wait_for_merge(
            acme,
            acme.designs.MergeRevisions(
                design_pb2.MergeRevisionsRequest(design=design, source_revision=clash.name)
            ).name,
            timeout=WAIT_S,
        )
        assert conflicted.state == Merge.STATE_CONFLICTED, conflicted.error.message
        assert conflicted.base_revision == base.name
        assert conflicted.ours_revision == merged.name
        c = conflicted.conflict
        assert c.overlap_volume_mm3 > 0 and c.reason
        assert c.bbox_min.x <= -20 <= c.bbox_max.x and c.bbox_min.y <= 0 <= c.bbox_max.y
        assert c.bbox_max.x < 0  # the right-hand hole is not part of it
        assert conflicted.theirs_diff.removed_volume_mm3 == pytest.approx(
            math.pi * 25 * T, rel=1e-3
        )
        assert not conflicted.merged_revision
        declined = acme.designs.DeclineMerge(design_pb2.DeclineMergeRequest(name=conflicted.name))
        assert declined.state == Merge.STATE_DECLINED

    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.event_type, outbox.c.payload).where(
                outbox.c.event_type.in_(["design.merged", "design.merge.conflicted"])
            )
        ).all()
    kinds = sorted(r.event_type for r in rows)
    assert kinds == ["design.merge.conflicted", "design.merged"]
    (merged_event,) = [r for r in rows if r.event_type == "design.merged"]
    envelope = decode_envelope(merged_event.payload)
    payload = unpack(envelope, events_pb2.Merged)
    assert payload.merge.name == merge.name  # type: ignore[attr-defined]
    assert payload.revision.name == merged.name  # type: ignore[attr-defined]
    assert set(envelope.audience) == {"organizations/acme", "organizations/globex"}


def test_accepting_after_the_head_moved_again_is_aborted(
    stack: Stack, edits: dict[str, Path]
) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.globex) as globex:
        project = create_project(acme)
        design = create_design(acme, project.name).name
        base = pushed(acme, design, edits["base"])
        left = pushed(acme, design, edits["left"], base=base.name)
        top = pushed(acme, design, edits["top"], base=base.name, branch="top")
        proposal = wait_for_merge(
            acme,
            acme.designs.MergeRevisions(
                design_pb2.MergeRevisionsRequest(design=design, source_revision=top.name)
            ).name,
            timeout=WAIT_S,
        )
        assert proposal.state == Merge.STATE_PROPOSED, proposal.conflict.reason
        wait_for(acme, proposal.merged_revision, timeout=WAIT_S)
        # Someone moves main on before the author accepts.
        newer = pushed(acme, design, edits["corner"], base=left.name)
        moved = error_of(
            lambda: acme.designs.AcceptMerge(design_pb2.AcceptMergeRequest(name=proposal.name))
        )
        assert moved.code() == grpc.StatusCode.ABORTED
        assert newer.name in (moved.details() or "")
        status = rpc_status.from_call(moved)
        assert status is not None
        infos = []
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                infos.append(info)
        assert [i.metadata["current"] for i in infos] == [newer.name]
        assert head(acme, design) == newer.name
        # An etag that is no longer the head is refused at once.
        stale = error_of(
            lambda: acme.designs.MergeRevisions(
                design_pb2.MergeRevisionsRequest(
                    design=design, source_revision=top.name, expected_head=left.name
                )
            )
        )
        assert stale.code() == grpc.StatusCode.ABORTED and newer.name in (stale.details() or "")
        # The source is already on main (main's head descends from it): nothing to merge.
        already = error_of(
            lambda: acme.designs.MergeRevisions(
                design_pb2.MergeRevisionsRequest(design=design, source_revision=left.name)
            )
        )
        assert already.code() == grpc.StatusCode.FAILED_PRECONDITION
        # A source that descends from the head merges as itself (a fast-forward, no engine run).
        ahead = pushed(acme, design, edits["right"], base=newer.name, branch="ahead")
        forward = acme.designs.MergeRevisions(
            design_pb2.MergeRevisionsRequest(design=design, source_revision=ahead.name)
        )
        assert forward.state == Merge.STATE_PROPOSED
        assert (forward.base_revision, forward.merged_revision) == (newer.name, ahead.name)
        accepted = acme.designs.AcceptMerge(design_pb2.AcceptMergeRequest(name=forward.name))
        assert accepted.state == Merge.STATE_ACCEPTED and head(acme, design) == ahead.name

        # Viewers and reviewers may look, not merge; outsiders see nothing.
        share(stack, project.name, ipb.ROLE_REVIEWER)
        assert (
            error_of(
                lambda: globex.designs.MergeRevisions(
                    design_pb2.MergeRevisionsRequest(design=design, source_revision=top.name)
                )
            ).code()
            == grpc.StatusCode.PERMISSION_DENIED
        )
        got = globex.designs.GetRevisionMerge(
            design_pb2.GetRevisionMergeRequest(name=proposal.name)
        )
        assert got.name == proposal.name
        with stack.client(stack.initech) as initech:
            assert (
                error_of(
                    lambda: initech.designs.GetRevisionMerge(
                        design_pb2.GetRevisionMergeRequest(name=proposal.name)
                    )
                ).code()
                == grpc.StatusCode.NOT_FOUND
            )
