"""Racing pushes on one base over real gRPC: exactly one wins the branch-head compare-and-set,
every other gets ABORTED naming the winner; and the validated event reaching Kafka."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cadquery as cq
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.sdk import push_revision, wait_for
from cofab.design.v1 import design_pb2, events_pb2
from services.shared.events import decode_envelope, header, unpack
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project
from tests.integration.test_outbox_kafka import consume, relay_for

WAIT_S = 240


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("race") / "block.step"
    cq.exporters.export(cq.Workplane("XY").box(30, 20, 10), str(path))
    return path


def race(stack: Stack, design: str, base: str, branch: str, content: list[bytes]) -> list[object]:
    """Pushes each content from its own thread and channel at the same moment."""
    start = threading.Barrier(len(content))
    results: list[object] = [None] * len(content)

    def push(i: int) -> None:
        request = [
            design_pb2.PushRevisionRequest(
                header=design_pb2.PushRevisionHeader(
                    parent=design,
                    branch=branch,
                    base_revision=base,
                    format="step",
                    sha256=hashlib.sha256(content[i]).hexdigest(),
                    size_bytes=len(content[i]),
                )
            ),
            design_pb2.PushRevisionRequest(chunk=content[i]),
        ]
        with stack.client(stack.acme) as cofab:
            start.wait()
            try:
                results[i] = cofab.designs.PushRevision(iter(request), timeout=120)
            except grpc.RpcError as error:
                results[i] = error

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(content))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_one_winner(results: list[object]) -> None:
    winners = [r for r in results if isinstance(r, design_pb2.Revision)]
    losers = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(winners) == 1, results
    assert len(losers) == len(results) - 1
    for error in losers:
        assert error.code() == grpc.StatusCode.ABORTED, error.details()
        assert winners[0].name in (error.details() or "")
        status = rpc_status.from_call(error)
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert any(d.Unpack(info) for d in status.details)
        assert info.metadata["current"] == winners[0].name


@settings(
    max_examples=3,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pushers=st.integers(min_value=2, max_value=6), salt=st.binary(min_size=1, max_size=8))
def test_exactly_one_of_n_racing_pushes_wins(
    stack: Stack, block: Path, pushers: int, salt: bytes
) -> None:
    step = block.read_bytes()
    # Different content per pusher (a trailing STEP comment), so no two are one blob.
    content = [step + b"/* " + salt.hex().encode() + b" %d */\n" % i for i in range(pushers)]
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        design = create_design(acme, project.name)
        # Racing for the first revision of a branch: one creates it.
        assert_one_winner(race(stack, design.name, "", "main", content))
        (head,) = acme.designs.ListBranches(
            design_pb2.ListBranchesRequest(parent=design.name)
        ).branches
        assert wait_for(acme, head.head, timeout=WAIT_S).state == (
            design_pb2.Revision.STATE_SUCCEEDED
        )
        # Racing to move an existing head from the same base: one moves it.
        results = race(stack, design.name, head.head, "main", content)
        assert_one_winner(results)
        listed = acme.designs.ListRevisions(design_pb2.ListRevisionsRequest(parent=design.name))
        assert len(listed.revisions) == 2


def test_validated_event_reaches_kafka(stack: Stack, block: Path, kafka_bootstrap: str) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        design = create_design(acme, project.name)
        pushed = push_revision(acme, design.name, block)
        wait_for(acme, pushed.name, timeout=WAIT_S)
    relay = relay_for(stack.engine, kafka_bootstrap)
    assert relay.publish_once() >= 1
    relay.close()
    records = consume(kafka_bootstrap, "cofab.design", pushed.name)
    by_type = {header(r.headers, "ce_type"): r for r in records}  # type: ignore[attr-defined]
    assert {"design.revision.pushed", "design.revision.validated"} <= set(by_type)
    record = by_type["design.revision.validated"]
    assert record.key == design.name.rsplit("/", 1)[1].encode()  # type: ignore[attr-defined]
    payload = unpack(decode_envelope(record.value), events_pb2.RevisionValidated)  # type: ignore[attr-defined]
    assert payload.revision.name == pushed.name  # type: ignore[attr-defined]
    assert payload.revision.state == design_pb2.Revision.STATE_SUCCEEDED  # type: ignore[attr-defined]
