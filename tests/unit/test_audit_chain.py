"""The keyed audit chain and its anchor, on a SQLite file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import DatabaseError, IntegrityError

from cofab.events.v1 import feed_pb2
from cofab.identity.v1 import identity_pb2
from cofab.procurement.v1 import procurement_pb2
from cofab.supply.v1 import supply_pb2
from services.shared import audit
from services.shared.db import audit_log, make_engine, memberships, utcnow
from services.shared.identity import Principal
from services.shared.server import AUDITED_READS
from tests.support import forge_audit_chain

ALICE = Principal("acme", "alice")


@pytest.fixture
def engine(sqlite_url: str, tmp_path: Path) -> Engine:
    return audit.audited_engine_in(sqlite_url, tmp_path)


def write(engine: Engine, n: int) -> None:
    for i in range(n):
        with engine.begin() as conn:
            audit.record(conn, ALICE, "design.read", f"projects/p/designs/d{i}", {"i": i})


def verify(engine: Engine) -> audit.ChainReport:
    with engine.connect() as conn:
        return audit.verify_chain(conn)


def test_intact_chain_verifies_and_is_anchored(engine: Engine, tmp_path: Path) -> None:
    write(engine, 5)
    report = verify(engine)
    assert report.ok and report.entries == 5
    assert (report.anchored_seq, report.unanchored) == (5, 0)
    assert len((tmp_path / "audit-anchor.log").read_text().splitlines()) == 5


def drop_append_only_triggers(engine: Engine) -> None:
    """What an attacker with database admin rights would do first."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")


def test_database_refuses_edits_and_deletes(engine: Engine) -> None:
    write(engine, 2)
    for statement in (update(audit_log).values(user_id="mallory"), audit_log.delete()):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    assert verify(engine).ok


def test_edited_entry_is_detected(engine: Engine) -> None:
    write(engine, 5)
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(user_id="mallory"))
    report = verify(engine)
    assert not report.ok and report.first_bad_seq == 3


def test_a_chain_recomputed_without_the_key_is_detected(engine: Engine) -> None:
    write(engine, 3)
    drop_append_only_triggers(engine)
    # The attacker knows the format, not the key: SHA-256 as the chain used to be.
    forge_audit_chain(engine, lambda text: hashlib.sha256(text.encode()).hexdigest(), {2: "x"})
    report = verify(engine)
    assert not report.ok and report.first_bad_seq == 1


def test_a_missing_or_forged_anchor_is_reported(engine: Engine, tmp_path: Path) -> None:
    write(engine, 2)
    anchor = tmp_path / "audit-anchor.log"
    anchor.write_text(anchor.read_text() + f"9 {'a' * 64} {'b' * 64}\n")
    assert "not valid heads" in verify(engine).problem
    anchor.unlink()
    assert "no anchor" in verify(engine).problem


def test_rolled_back_change_leaves_no_entry_and_no_anchor(
    sqlite_url: str, engine: Engine, tmp_path: Path
) -> None:
    try:
        with engine.begin() as conn:
            audit.record(conn, ALICE, "design.create", "projects/p/designs/x")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    assert verify(engine).entries == 0 and verify(engine).ok
    assert not (tmp_path / "audit-anchor.log").exists()
    # An engine without the audit key cannot write entries at all.
    with pytest.raises(RuntimeError, match="audit key"), make_engine(sqlite_url).begin() as conn:
        audit.record(conn, ALICE, "design.read", "projects/p/designs/x")


def test_every_read_the_server_audits_is_a_real_method() -> None:
    assert feed_pb2 and identity_pb2 and procurement_pb2 and supply_pb2  # loaded into the pool
    pool = descriptor_pool.Default()
    for method in AUDITED_READS:
        service, name = method.strip("/").split("/")
        assert pool.FindServiceByName(service).methods_by_name[name], method


def test_an_entry_whose_commit_fails_is_not_left_anchored(engine: Engine, tmp_path: Path) -> None:
    write(engine, 2)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        audit.record(conn, ALICE, "membership.invite", "projects/nope/memberships/x")
        # A deferred foreign key fails at COMMIT, after the head was anchored.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        conn.execute(
            insert(memberships).values(
                project_id="nope", organization_id="nope", role=1, state="ACTIVE",
                invitation_id="i", invited_by="", create_time=utcnow(),
            )
        )  # fmt: skip
    lines = (tmp_path / "audit-anchor.log").read_text().splitlines()
    assert lines[2].startswith("3 ") and " void " in lines[3]
    report = verify(engine)
    assert report.ok and (report.entries, report.anchored_seq) == (2, 2)
    write(engine, 1)  # the next writer takes seq 3 with another hash
    assert verify(engine).ok and verify(engine).anchored_seq == 3
