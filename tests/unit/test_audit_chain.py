"""The audit hash chain, on a SQLite file."""

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import DatabaseError

from services.shared import audit
from services.shared.db import audit_log, make_engine
from services.shared.identity import Principal

ALICE = Principal("acme", "alice")


def write(url: str, n: int) -> None:
    engine = make_engine(url)
    for i in range(n):
        with engine.begin() as conn:
            audit.record(conn, ALICE, "design.read", f"projects/p/designs/d{i}", {"i": i})


def test_intact_chain_verifies(sqlite_url: str) -> None:
    write(sqlite_url, 5)
    with make_engine(sqlite_url).connect() as conn:
        report = audit.verify_chain(conn)
    assert report.ok and report.entries == 5


def drop_append_only_triggers(engine: Engine) -> None:
    """What an attacker with database admin rights would do first."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")


def test_database_refuses_edits_and_deletes(sqlite_url: str) -> None:
    write(sqlite_url, 2)
    engine = make_engine(sqlite_url)
    for statement in (update(audit_log).values(user_id="mallory"), audit_log.delete()):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    with engine.connect() as conn:
        assert audit.verify_chain(conn).ok


def test_edited_entry_is_detected(sqlite_url: str) -> None:
    write(sqlite_url, 5)
    engine = make_engine(sqlite_url)
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(user_id="mallory"))
    with engine.connect() as conn:
        report = audit.verify_chain(conn)
    assert not report.ok and report.first_bad_seq == 3


def test_removed_last_entry_is_detected(sqlite_url: str) -> None:
    write(sqlite_url, 3)
    engine = make_engine(sqlite_url)
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 3))
    with engine.connect() as conn:
        report = audit.verify_chain(conn)
    assert not report.ok


def test_rolled_back_change_leaves_no_entry(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            audit.record(conn, ALICE, "design.create", "projects/p/designs/x")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert audit.verify_chain(conn).entries == 0
