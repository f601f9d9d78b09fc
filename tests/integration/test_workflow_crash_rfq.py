"""An RFQ survives SIGKILL of the workflow worker and the event bridge.

Real processes (`python -m workflows.worker`, `python -m workflows.bridge`), a real Kafka broker and
Temporal dev server, the real supply service. Globex quotes; both processes are killed; Initech
and Umbrella quote while they are down; both restart. The RFQ must close early and be awarded
automatically with exactly one close, one award and one purchase order per awarded supplier."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from temporalio.service import RPCError

from cofab.procurement.v1 import procurement_pb2 as pb
from deploy.local import KafkaBroker
from tests.conftest import Account
from tests.integration.conftest import Stack
from tests.integration.processes import WorkflowProcesses, workflow_processes
from tests.integration.test_outbox_kafka import own_broker
from tests.integration.test_procurement_workflow import (
    AUTOMATIC,
    buyers_view,
    events_of,
    on_sqlite,
    open_rfq,
    submit,
    umbrella,
)
from workflows.procurement import ProcurementWorkflow, workflow_id

__all__ = ["own_broker", "umbrella"]  # fixtures, imported to be used here


@pytest.fixture
def processes(stack: Stack, own_broker: KafkaBroker, tmp_path: Path) -> Iterator[WorkflowProcesses]:
    with workflow_processes(stack, own_broker.bootstrap_servers, tmp_path) as running:
        yield running


def wait_until(
    stack: Stack,
    name: str,
    done: Callable[[pb.Rfq], bool],
    processes: WorkflowProcesses,
    timeout: float = 120.0,
) -> pb.Rfq:
    """The buyer's view of the RFQ once `done` holds."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.client(stack.acme) as acme:
            rfq = acme.procurement.GetRfq(pb.GetRfqRequest(name=name))
        if done(rfq):
            return rfq
        assert time.monotonic() < deadline, f"RFQ stuck: {rfq}\n{processes.logs()}"
        time.sleep(0.5)


# Its own broker, server and four process starts on a shared 2-core machine: above the default.
@pytest.mark.timeout(600)
@on_sqlite
async def test_rfq_completes_once_after_worker_and_bridge_are_killed(
    stack: Stack, umbrella: Account, processes: WorkflowProcesses
) -> None:
    rfq = open_rfq(stack, AUTOMATIC)
    submit(stack, stack.globex, rfq.name, price=4.0, capacity=60)
    client = await processes.client()
    handle = client.get_workflow_handle_for(ProcurementWorkflow.run, workflow_id(rfq.name))
    deadline = time.monotonic() + 120
    while True:  # the bridge started the workflow and signalled Globex's quote
        try:
            if (await handle.query(ProcurementWorkflow.status)).answered == 1:
                break
        except RPCError:  # not started yet: its event is still on its way
            pass
        assert time.monotonic() < deadline, processes.logs()
        await asyncio.sleep(0.5)

    processes.crash()
    submit(stack, stack.initech, rfq.name, price=5.0, capacity=100)
    submit(stack, umbrella, rfq.name, price=3.0, capacity=50)
    assert wait_until(stack, rfq.name, lambda r: True, processes).state == pb.Rfq.STATE_OPEN
    processes.start()

    done = wait_until(stack, rfq.name, lambda r: r.state == pb.Rfq.STATE_AWARDED, processes)
    assert {(a.supplier, a.quantity) for a in done.allocations} == {
        ("organizations/umbrella", 50),
        ("organizations/globex", 50),
    }
    status = await handle.result()
    assert (status.state, status.closed_early) == ("AWARDED", True)
    # Exactly one effect each, whatever was redone after the crash.
    assert len(buyers_view(events_of(stack, "procurement.rfq.closed", rfq.name))) == 1
    assert len(events_of(stack, "procurement.rfq.awarded", rfq.name)) == 1
    orders = Counter(
        e.audience[0] for e in events_of(stack, "procurement.purchase_order.issued", rfq.name)
    )
    assert orders == {"organizations/globex": 1, "organizations/umbrella": 1}
