"""Concurrent writers extend one audit chain instead of forking it (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from services.shared import audit
from services.shared.identity import Principal


def test_concurrent_appends_keep_one_intact_chain(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    writers, per_writer = 6, 15
    errors: list[BaseException] = []

    def write(n: int) -> None:
        # Each writer has its own engine, as separate service processes would.
        own = audit.audited_engine_in(database_url, tmp_path)
        try:
            for i in range(per_writer):
                with own.begin() as conn:
                    audit.record(conn, Principal("acme", f"user{n}"), "design.read", f"d/{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    with engine.connect() as conn:
        report = audit.verify_chain(conn)
    assert report.ok, report
    assert report.entries == writers * per_writer
    # Every writer anchored its heads: the anchor ends at the last entry.
    assert report.anchored_seq == writers * per_writer
