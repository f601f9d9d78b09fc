"""The audit log against someone who controls the database, on SQLite and PostgreSQL: rewriting
an entry and recomputing the chain, cutting its tail and wiping it are each found by
`cofab admin verify-audit`, which holds the key and reads the anchor outside the database. Also:
what the services audit beyond changes (refused calls, reads of projects, RFQs, quotes, exports,
analytics and the feed), one row per call."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import Engine, select, update

from clients.cli.main import main
from cofab.design.v1 import design_pb2
from cofab.events.v1 import feed_pb2
from cofab.identity.v1 import identity_pb2 as ipb
from cofab.procurement.v1 import procurement_pb2
from cofab.supply.v1 import supply_pb2
from services.shared import audit
from services.shared.db import audit_head, audit_log
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, share
from tests.support import forge_audit_chain


def drop_append_only_triggers(engine: Engine) -> None:
    """The attacker's first step: database admin rights lift the append-only guard."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_log_append_only ON audit_log")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")


@pytest.fixture
def verify(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[object]:
    monkeypatch.setenv("COFAB_DATABASE_URL", stack.settings.database_url)
    monkeypatch.setenv("COFAB_STATE_DIR", str(stack.settings.state_dir))

    def run() -> tuple[int, str]:
        code = main(["admin", "verify-audit"])
        out, err = capsys.readouterr()
        return code, out + err

    yield run


def busy_log(stack: Stack) -> str:
    """Some real history written through the API: a shared project and a design."""
    with stack.client(stack.acme) as acme:
        project = create_project(acme)
        share(stack, project.name)
        return create_design(acme, project.name).name


def test_an_intact_log_verifies(stack: Stack, verify: object) -> None:
    busy_log(stack)
    code, out = verify()  # type: ignore[operator]
    assert code == 0 and "audit chain intact" in out and "anchored up to entry" in out


def test_a_rewritten_and_recomputed_entry_is_detected(stack: Stack, verify: object) -> None:
    busy_log(stack)
    drop_append_only_triggers(stack.engine)
    with stack.engine.connect() as conn:
        created = select(audit_log.c.seq).where(audit_log.c.action == "design.create")
        target = int(conn.scalar(created) or 0)
    # Without the key, the attacker can only recompute with a guess: a random key, or plain
    # SHA-256 (the chain before it was keyed).
    key = secrets.token_bytes(32)
    guess = lambda text: hmac.new(key, text.encode(), hashlib.sha256).hexdigest()  # noqa: E731
    forge_audit_chain(stack.engine, guess, {target: "mallory"})
    code, out = verify()  # type: ignore[operator]
    assert code == 1 and "BROKEN at entry 1" in out and "keyed hash" in out
    forge_audit_chain(stack.engine, lambda text: hashlib.sha256(text.encode()).hexdigest())
    assert verify()[0] == 1  # type: ignore[operator]


def test_a_cut_tail_is_detected_by_the_anchor(stack: Stack, verify: object) -> None:
    busy_log(stack)
    drop_append_only_triggers(stack.engine)
    with stack.engine.begin() as conn:
        total = int(conn.scalar(select(audit_head.c.seq)) or 0)
        conn.execute(audit_log.delete().where(audit_log.c.seq > total - 3))
        # The head row is moved back too: the chain itself is then intact.
        last = conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).one()
        conn.execute(update(audit_head).values(seq=last.seq, hash=last.hash))
    code, out = verify()  # type: ignore[operator]
    assert code == 1 and f"the anchor records entry {total}" in out


def test_a_wiped_log_is_detected_by_the_anchor(stack: Stack, verify: object) -> None:
    busy_log(stack)
    drop_append_only_triggers(stack.engine)
    with stack.engine.begin() as conn:
        conn.execute(audit_log.delete())
        conn.execute(update(audit_head).values(seq=0, hash=audit.GENESIS_HASH))
    code, out = verify()  # type: ignore[operator]
    assert code == 1 and "the log ends at entry 0" in out


def test_a_forged_anchor_line_or_a_lost_key_is_reported(stack: Stack, verify: object) -> None:
    busy_log(stack)
    anchor = stack.settings.audit_anchor_path
    fake = "9999 " + "0" * 64
    mac = hmac.new(b"not the key", fake.encode(), hashlib.sha256).hexdigest()
    anchor.write_text(anchor.read_text() + f"{fake} {mac}\n")
    code, out = verify()  # type: ignore[operator]
    assert code == 1 and "not valid heads" in out
    stack.settings.audit_key_path.unlink()
    code, out = verify()  # type: ignore[operator]
    # A missing key is a configuration error: the CLI's usage exit code (clients/cli/exits.py).
    assert code == 2 and "COFAB_AUDIT_KEY_FILE" in out


def actions_since(engine: Engine, seq: int) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            (e.action, e.resource, str(e.detail.get("method", "")).rsplit("/", 1)[-1])
            for e in audit.entries(conn)
            if e.seq > seq
        ]


def head(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(audit_head.c.seq)) or 0)


def test_refused_calls_and_reads_are_audited_once_per_call(stack: Stack) -> None:
    design = busy_log(stack)
    project = design.split("/designs/")[0]
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        start = head(stack.engine)
        acme.projects.GetProject(ipb.GetProjectRequest(name=project))
        acme.projects.ListProjects(ipb.ListProjectsRequest())
        acme.procurement.ListRfqs(procurement_pb2.ListRfqsRequest(parent="organizations/acme"))
        acme.supply.AnalyzeRisk(supply_pb2.AnalyzeRiskRequest(parent="organizations/acme"))
        list(
            acme.supply.ExportNetwork(
                supply_pb2.ExportNetworkRequest(
                    parent="organizations/acme", format=supply_pb2.NETWORK_FORMAT_CSV
                )
            )
        )
        list(acme.events.StreamEvents(feed_pb2.StreamEventsRequest()))
        assert actions_since(stack.engine, start) == [
            ("rpc.read", project, "GetProject"),
            ("rpc.read", "", "ListProjects"),
            ("rpc.read", "organizations/acme", "ListRfqs"),
            ("rpc.read", "organizations/acme", "AnalyzeRisk"),
            ("rpc.read", "organizations/acme", "ExportNetwork"),
            ("rpc.read", "", "StreamEvents"),
        ]
        start = head(stack.engine)
        for call in (
            lambda: initech.designs.GetDesign(design_pb2.GetDesignRequest(name=design)),
            lambda: initech.procurement.GetRfq(
                procurement_pb2.GetRfqRequest(name="organizations/acme/rfqs/r1")
            ),
            lambda: acme.designs.GetDesign(design_pb2.GetDesignRequest(name="x" * 5000)),
        ):
            with pytest.raises(grpc.RpcError):
                call()
        refused = actions_since(stack.engine, start)
        assert [(a, m) for a, _, m in refused] == [
            ("rpc.refused", "GetDesign"),
            ("rpc.refused", "GetRfq"),
            ("rpc.refused", "GetDesign"),
        ]
        with stack.engine.connect() as conn:
            codes = [e.detail["code"] for e in audit.entries(conn) if e.seq > start]
            assert audit.verify_chain(conn).ok
    assert codes == ["NOT_FOUND", "NOT_FOUND", "INVALID_ARGUMENT"]
    # The audited resource of a huge input is cut short, never stored whole.
    assert len(refused[2][1]) <= 300
