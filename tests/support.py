"""Test helpers: real gRPC servers on port 0 in a background thread, so tests can use the sync
SDK the way users do."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping

from sqlalchemy import Engine, update

from services.shared import audit
from services.shared.db import audit_head, audit_log, utcnow
from services.shared.server import BuiltServer, mark_serving


class ServerThread:
    """Runs a grpc.aio server (built inside its own event loop) until stop()."""

    def __init__(self, build: Callable[[], BuiltServer]) -> None:
        self._build = build
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        try:
            built = self._build()
            await built.start()
            await mark_serving(built)
            self.port = built.port
            self._stopping = asyncio.Event()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        await built.stop(grace=1.0)

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)


class ShiftableClock:
    """The services' clock port, moved forward when Temporal's time-skipping server skips days."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset


def forge_audit_chain(
    engine: Engine, hasher: Callable[[str], str], users: Mapping[int, str] | None = None
) -> None:
    """What an attacker with write access to the database does: changes the user of some
    entries (`users`, by seq), recomputes every hash with `hasher` over the entry format and
    moves the head row along. Without the audit key, `hasher` can only be a guess."""
    with engine.begin() as conn:
        prev = audit.GENESIS_HASH
        entries = list(audit.entries(conn))
        for entry in entries:
            user = (users or {}).get(entry.seq, entry.user_id)
            canonical = json.dumps(
                [prev, entry.seq, entry.time.isoformat(), entry.organization_id, user,
                 entry.action, entry.resource, entry.detail],
                sort_keys=True, separators=(",", ":"),
            )  # fmt: skip
            digest = hasher(canonical)
            conn.execute(
                update(audit_log)
                .where(audit_log.c.seq == entry.seq)
                .values(user_id=user, prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(update(audit_head).values(seq=len(entries), hash=prev))
