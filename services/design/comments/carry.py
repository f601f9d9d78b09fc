"""Carrying comment threads forward from one revision to a later one, across their diff.

The diff processor calls these inside the transaction that stores a diff, so the anchors on
the later revision commit (or roll back) with it."""

from __future__ import annotations

import datetime

from sqlalchemy import Connection

from services.design.comments.domain import carry
from services.design.comments.repository import CommentRepository
from services.design.geometry.types import DiffResult


def has_open_comments(conn: Connection, revision_id: str) -> bool:
    """Whether any unresolved thread is anchored on the revision (else a diff need not be
    computed for the comments' sake)."""
    return CommentRepository(conn).has_open_threads(revision_id)


def carry_forward(
    conn: Connection,
    from_revision_id: str,
    to_revision_id: str,
    diff: DiffResult,
    now: datetime.datetime,
) -> int:
    """Anchors every unresolved thread anchored on `from` (made there or carried there) on
    `to`, as `diff` (from -> to) says: same face when it survived, else outdated. Threads
    already anchored on `to` are left as they are, so a second call changes nothing. Returns
    how many threads it anchored on `to`, outdated ones included."""
    repo = CommentRepository(conn)
    already = repo.threads_on(to_revision_id)
    count = 0
    for thread_id, anchor, outdated in repo.open_threads(from_revision_id):
        if thread_id in already:
            continue
        carried, now_outdated = carry(anchor, outdated, diff)
        repo.add_anchor(thread_id, to_revision_id, carried, now_outdated, from_revision_id, now)
        count += 1
    return count
