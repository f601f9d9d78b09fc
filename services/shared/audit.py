"""Append-only, keyed hash chain of every change and every read of tenant data, anchored outside
the database.

Each entry's hash is an HMAC-SHA256, under the audit key, of its content and the previous
entry's hash. The key never enters the database (COFAB_AUDIT_KEY_FILE; services.shared.keys
reads it), so someone who can rewrite the database can still not recompute a valid chain after
editing, inserting or reordering entries.

A chain alone cannot show that its tail was cut off or that it was wiped, so after every commit
that appended entries the writer also appends the new head, "<seq> <hash> <mac>", to the anchor
file (COFAB_AUDIT_ANCHOR_FILE), outside the database. `verify_chain` checks the chain and that
the database still holds the highest anchored entry, unchanged. Keep the anchor on storage the
database's administrators cannot rewrite (another volume or host, `chattr +a`, a WORM bucket
synced from it); every process that writes audit entries appends to the same file.

Writers get the key and anchor from `attach(engine, AuditConfig)`, done by each composition root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, ExceptionContext, event, insert, select, update

from services.shared.config import Settings, load_settings
from services.shared.db import audit_head, audit_log, make_engine, utcnow
from services.shared.identity import Principal
from services.shared.keys import read_key

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
_CONFIG = "cofab_audit_config"
_PENDING = "cofab_audit_pending"
_COMMITTING = "cofab_audit_committing"


@dataclass(frozen=True)
class AuditConfig:
    """The audit key and the anchor file of a process that writes or verifies the log."""

    key: bytes
    anchor: Path

    def __repr__(self) -> str:  # never print the key
        return f"AuditConfig(anchor={self.anchor})"


def config_from(settings: Settings, create_key: bool = True) -> AuditConfig:
    """The audit key (created when missing and `create_key`) and anchor path of the settings."""
    return AuditConfig(
        read_key(settings.audit_key_path, "COFAB_AUDIT_KEY_FILE", create=create_key),
        settings.audit_anchor_path,
    )


def attach(engine: Engine, config: AuditConfig) -> Engine:
    """Lets `record` on this engine's connections key entries and anchor the head on commit."""

    @event.listens_for(engine, "engine_connect")
    def _configure(conn: Connection) -> None:
        conn.info[_CONFIG] = config

    # SQLAlchemy's "commit" event comes just before the database commits. The head is anchored
    # there; should the commit itself then fail, "handle_error" voids that line with a signed
    # note, so the anchor never claims an entry the database does not hold. The next "begin" on
    # the connection means the commit went through.
    @event.listens_for(engine, "commit")
    def _anchor(conn: Connection) -> None:
        pending = conn.info.pop(_PENDING, None)
        if pending is not None:
            seq, digest = pending
            append_anchor(config, seq, digest)
            conn.info[_COMMITTING] = pending

    @event.listens_for(engine, "handle_error")
    def _void(context: ExceptionContext) -> None:
        conn = context.connection
        committing = conn.info.pop(_COMMITTING, None) if conn is not None else None
        if committing is not None:
            seq, digest = committing
            append_anchor(config, seq, digest, void=True)

    @event.listens_for(engine, "begin")
    def _committed(conn: Connection) -> None:
        conn.info.pop(_COMMITTING, None)

    @event.listens_for(engine, "rollback")
    def _forget(conn: Connection) -> None:
        conn.info.pop(_PENDING, None)

    return engine


def audited_engine(settings: Settings) -> Engine:
    """An engine on the settings' database whose audit entries use the settings' key and anchor."""
    return attach(make_engine(settings.database_url), config_from(settings))


def audited_engine_in(url: str, state_dir: Path) -> Engine:
    """The same for a database used by processes whose COFAB_STATE_DIR is `state_dir` and that
    set no key or anchor file of their own (benchmarks and tests)."""
    settings = load_settings({"COFAB_DATABASE_URL": url, "COFAB_STATE_DIR": str(state_dir)})
    return audited_engine(settings)


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
    key: bytes,
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
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _config(conn: Connection) -> AuditConfig:
    config = conn.info.get(_CONFIG)
    if not isinstance(config, AuditConfig):
        raise RuntimeError(
            "this engine writes audit entries without an audit key: call audit.attach first"
        )
    return config


def record(
    conn: Connection,
    principal: Principal,
    action: str,
    resource: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Appends one entry in the caller's transaction (it commits or rolls back with the change);
    the new head is anchored once the transaction commits."""
    config = _config(conn)
    # FOR UPDATE serializes appenders on PostgreSQL; SQLite already holds the write lock.
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq = head.seq + 1
    # Microsecond precision survives every backend, so the hash can be recomputed from the row.
    time = utcnow()
    body = dict(detail or {})
    digest = entry_hash(
        config.key,
        head.hash,
        seq,
        time,
        principal.organization_id,
        principal.user_id,
        action,
        resource,
        body,
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
    conn.info[_PENDING] = (seq, digest)


def _anchor_mac(key: bytes, seq: int, digest: str, kind: str = "anchor") -> str:
    return hmac.new(key, f"{kind}\x00{seq}\x00{digest}".encode(), hashlib.sha256).hexdigest()


def append_anchor(config: AuditConfig, seq: int, digest: str, void: bool = False) -> None:
    """Appends one head line ("seq hash mac"), or with `void` the note that the commit of that
    head failed ("seq hash void mac"). O_APPEND keeps concurrent writers' lines whole; lines of
    different processes may land out of order, so readers take the highest seq."""
    if void:
        line = f"{seq} {digest} void {_anchor_mac(config.key, seq, digest, 'void')}\n".encode()
    else:
        line = f"{seq} {digest} {_anchor_mac(config.key, seq, digest)}\n".encode()
    try:
        config.anchor.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(config.anchor, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        # The entry is committed; verification will report the anchor as behind, not wrong.
        log.exception("could not append audit entry %d to the anchor %s", seq, config.anchor)


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str


def read_anchor(config: AuditConfig) -> tuple[Anchor | None, int]:
    """The highest validly signed head in the anchor file that no void note cancels, and how many
    lines were not valid."""
    try:
        lines = config.anchor.read_text().splitlines()
    except FileNotFoundError:
        return None, 0
    heads: list[Anchor] = []
    voided: set[Anchor] = set()
    bad = 0
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            bad += 1
        elif len(parts) == 3 and hmac.compare_digest(
            parts[2], _anchor_mac(config.key, int(parts[0]), parts[1])
        ):
            heads.append(Anchor(int(parts[0]), parts[1]))
        elif (
            len(parts) == 4
            and parts[2] == "void"
            and hmac.compare_digest(
                parts[3], _anchor_mac(config.key, int(parts[0]), parts[1], "void")
            )
        ):
            voided.add(Anchor(int(parts[0]), parts[1]))
        else:
            bad += 1
    valid = [head for head in heads if head not in voided]
    return max(valid, key=lambda head: head.seq, default=None), bad


@dataclass(frozen=True)
class ChainReport:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""
    # The highest anchored head, and how many entries were written after it (normally 0: a
    # writer that died between commit and anchoring leaves the anchor behind).
    anchored_seq: int = 0
    unanchored: int = 0


def entries(conn: Connection) -> Iterable[AuditEntry]:
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
        yield AuditEntry(**row._mapping)


def verify_chain(conn: Connection, config: AuditConfig | None = None) -> ChainReport:
    """Recomputes every keyed hash in order, checks the head row, then the anchor: the database
    must still hold the highest anchored entry with the anchored hash. Reports the first
    problem found."""
    config = config or _config(conn)
    anchor, bad_lines = read_anchor(config)
    anchored_seq = anchor.seq if anchor else 0
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    anchored_hash: str | None = None
    for entry in entries(conn):
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, False, expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            return ChainReport(count, False, entry.seq, "prev_hash does not match previous entry")
        recomputed = entry_hash(
            config.key,
            prev_hash,
            entry.seq,
            entry.time,
            entry.organization_id,
            entry.user_id,
            entry.action,
            entry.resource,
            entry.detail,
        )
        if not hmac.compare_digest(recomputed, entry.hash):
            return ChainReport(count, False, entry.seq, "content does not match its keyed hash")
        if entry.seq == anchored_seq:
            anchored_hash = entry.hash
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
    if head.seq != expected_seq - 1 or head.hash != prev_hash:
        return ChainReport(count, False, head.seq, "entries after the last one were removed")
    if bad_lines:
        return ChainReport(
            count, False, None, f"the anchor file has {bad_lines} lines that are not valid heads"
        )
    if anchor is not None and count < anchor.seq:
        return ChainReport(
            count,
            False,
            count + 1,
            f"the log ends at entry {count} but the anchor records entry {anchor.seq}: "
            "entries were removed (or the whole log was replaced)",
        )
    if anchor is not None and anchored_hash != anchor.hash:
        return ChainReport(
            count, False, anchor.seq, "entry differs from its anchored hash: the log was rewritten"
        )
    if anchor is None and count:
        return ChainReport(
            count, False, None, f"no anchor at {config.anchor} for a log of {count} entries"
        )
    return ChainReport(count, True, anchored_seq=anchored_seq, unanchored=count - anchored_seq)


class CallAudit:
    """services.shared.server's CallAuditor on this database: one row per refused call and per
    read in server.AUDITED_READS, actions "rpc.refused" and "rpc.read"."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def audit_call(self, principal: Principal, method: str, resource: str, outcome: str) -> None:
        action = "rpc.read" if outcome == "OK" else "rpc.refused"
        detail = {"method": method} if outcome == "OK" else {"method": method, "code": outcome}
        with self._engine.begin() as conn:
            record(conn, principal, action, resource, detail)
