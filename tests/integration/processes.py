"""The workflow side of the local stack as real processes, for crash tests.

`make up` runs the worker and the bridge as `python -m workflows.worker|bridge` with the
environment of deploy.local's `service_env`; `workflow_processes` does the same against a test's
in-process services, a Kafka broker and a Temporal dev server of the test's own (the bridge's
consumer group and task queue are fixed names, so a shared broker or server would mix tests), and
an outbox relay thread. A test kills the processes with SIGKILL and starts them again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from deploy.local import PythonService, TemporalDevServer, free_ports
from services.shared import accounts
from tests.integration.conftest import Stack
from tests.integration.test_outbox_kafka import relay_for


@dataclass
class WorkflowProcesses:
    temporal: TemporalDevServer
    worker: PythonService
    bridge: PythonService

    def crash(self) -> None:
        """SIGKILL both, as a power cut would: no graceful shutdown, no offsets committed."""
        self.worker.kill()
        self.bridge.kill()

    def start(self) -> None:
        self.worker.start()
        self.bridge.start()

    async def client(self) -> Client:
        return await Client.connect(self.temporal.address)

    def logs(self) -> str:
        """The tails of both logs, for an assertion message."""
        return "\n".join(
            f"--- {s.name}\n{s.log_tail(40)}" for s in (self.worker, self.bridge, self.temporal)
        )


@contextmanager
def workflow_processes(
    stack: Stack, kafka_bootstrap: str, state_dir: Path
) -> Iterator[WorkflowProcesses]:
    """Temporal dev server, relay thread, worker and bridge processes, started and stopped."""
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    token_file = state_dir / "service-account.token"
    token_file.write_text(token + "\n")
    temporal = TemporalDevServer(
        state_dir / "temporal", port=free_ports(1)[0], log_path=state_dir / "temporal.log"
    )
    temporal.start()
    env = {
        **os.environ,
        "COFAB_STATE_DIR": str(state_dir),
        "COFAB_DATABASE_URL": stack.settings.database_url,
        "COFAB_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "COFAB_TEMPORAL_ADDRESS": temporal.address,
        "COFAB_DESIGN_ADDRESS": stack.design.address,
        "COFAB_SUPPLY_ADDRESS": stack.supply.address,
        "COFAB_SERVICE_TOKEN_FILE": str(token_file),
    }
    processes = WorkflowProcesses(
        temporal,
        PythonService("worker", "workflows.worker", env, state_dir),
        PythonService("bridge", "workflows.bridge", env, state_dir),
    )
    stop = threading.Event()
    relay = relay_for(stack.engine, kafka_bootstrap)
    relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relay_thread.start()
    try:
        processes.start()
        yield processes
    finally:
        processes.worker.stop()
        processes.bridge.stop()
        stop.set()
        relay_thread.join(timeout=30)
        relay.close()
        temporal.stop()
