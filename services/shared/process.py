"""Helpers every cofab process uses to report readiness and stop on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from services.shared.config import Settings


def mark_ready(settings: Settings) -> None:
    """Creates the ready file the local stack waits for (COFAB_READY_FILE), if one is set."""
    if settings.ready_file is not None:
        settings.ready_file.parent.mkdir(parents=True, exist_ok=True)
        settings.ready_file.write_text(f"{time.time()}\n")


def run_until_signalled(body: Callable[[threading.Event], None]) -> None:
    """Runs `body(stop)` in this thread; SIGTERM or SIGINT sets `stop` for a clean shutdown."""
    stop = threading.Event()

    def _handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    body(stop)
