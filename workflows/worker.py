"""`python -m workflows.worker`: the Temporal worker for cofab's workflows.

Activities call the services over gRPC as the platform's service account, whose token is read
from COFAB_SERVICE_TOKEN_FILE (written by `cofab admin ensure-service-account`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from clients.sdk import Cofab, connect
from services.shared.config import ConfigError, Settings, load_settings
from services.shared.process import mark_ready
from workflows.disruption import DisruptionActivities, DisruptionWorkflow
from workflows.invitation import InvitationActivities, ProjectInvitationWorkflow
from workflows.procurement import ProcurementActivities, ProcurementWorkflow
from workflows.review import DesignReviewWorkflow, ReviewActivities

WORKFLOWS = [
    ProjectInvitationWorkflow,
    DesignReviewWorkflow,
    ProcurementWorkflow,
    DisruptionWorkflow,
]


def service_token(settings: Settings) -> str:
    path = settings.service_token_file
    if path is None or not path.is_file():
        raise ConfigError(
            "COFAB_SERVICE_TOKEN_FILE must name the service account token file "
            "(create it with: cofab admin ensure-service-account --token-file PATH)"
        )
    return path.read_text().strip()


def activities_for(cofab: Cofab) -> list[Callable[..., Any]]:
    """Every activity, bound to the services' stubs (activities receive them, never build them)."""
    invitation = InvitationActivities(cofab.projects)
    review = ReviewActivities(cofab.reviews, cofab.designs)
    procurement = ProcurementActivities(cofab.procurement)
    disruption = DisruptionActivities(cofab.supply, cofab.procurement)
    return [
        invitation.expire_invitation,
        review.record_review_progress,
        review.release_revision,
        procurement.get_rfq,
        procurement.close_rfq,
        procurement.rank_quotes,
        procurement.propose_award,
        procurement.award_rfq,
        disruption.assess_disruption,
        disruption.notify_customer,
        disruption.open_resourcing_rfq,
        disruption.record_handled,
    ]


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    executor: concurrent.futures.Executor,
) -> Worker:
    """The worker with every workflow and the given activities; tests build it against their
    own servers."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=list(activities),
        activity_executor=executor,
    )


async def run(settings: Settings) -> None:
    cofab = connect(
        service_token(settings),
        settings.design_address,
        settings.supply_address,
        settings.tls_ca_file,
    )
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings.temporal_task_queue, activities_for(cofab), executor)
        async with worker:
            mark_ready(settings)
            logging.info("worker polling task queue %s", settings.temporal_task_queue)
            await stopping.wait()
    cofab.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    asyncio.run(run(load_settings()))


if __name__ == "__main__":
    main()
