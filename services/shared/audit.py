"""Append-only, hash-chained audit log of every change and every read of design data.

Each entry's hash covers its content and the previous entry's hash, so editing, removing or
reordering any entry breaks the chain from that point on, which `verify_chain` reports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.shared.db import audit_head, audit_log, utcnow
from services.shared.identity import Principal

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: dt.datetime
    organization_id: str
    user_id: str
    action: str
    resource: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


def entry_hash(
    prev_hash: str,
    seq: int,
    time: dt.datetime,
    organization_id: str,
    user_id: str,
    action: str,
    resource: str,
    detail: Mapping[str, Any],
) -> str:
    canonical = json.dumps(
        [prev_hash, seq, time.isoformat(), organization_id, user_id, action, resource, detail],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    conn: Connection,
    principal: Principal,
    action: str,
    resource: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Appends one entry in the caller's transaction (it commits or rolls back with the change)."""
    # FOR UPDATE serializes appenders on PostgreSQL; SQLite already holds the write lock.
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq = head.seq + 1
    # Microsecond precision survives every backend, so the hash can be recomputed from the row.
    time = utcnow()
    body = dict(detail or {})
    digest = entry_hash(
        head.hash, seq, time, principal.organization_id, principal.user_id, action, resource, body
    )
    conn.execute(
        insert(audit_log).values(
            seq=seq,
            time=time,
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            action=action,
            resource=resource,
            detail=body,
            prev_hash=head.hash,
            hash=digest,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))


@dataclass(frozen=True)
class ChainReport:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""


def entries(conn: Connection) -> Iterable[AuditEntry]:
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
        yield AuditEntry(**row._mapping)


def verify_chain(conn: Connection) -> ChainReport:
    """Recomputes every hash in order and checks the head; reports the first broken entry."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for entry in entries(conn):
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, False, expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            return ChainReport(count, False, entry.seq, "prev_hash does not match previous entry")
        recomputed = entry_hash(
            prev_hash,
            entry.seq,
            entry.time,
            entry.organization_id,
            entry.user_id,
            entry.action,
            entry.resource,
            entry.detail,
        )
        if recomputed != entry.hash:
            return ChainReport(count, False, entry.seq, "content does not match its hash")
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
    if head.seq != expected_seq - 1 or head.hash != prev_hash:
        return ChainReport(count, False, head.seq, "entries after the last one were removed")
    return ChainReport(count, True)
