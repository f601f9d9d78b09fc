"""`cofab events`: the partner event feed of the caller's organization."""

from __future__ import annotations

import argparse

from clients.cli.common import Subcommands, client, command, format_time
from cofab.events.v1 import feed_pb2
from services.shared.config import Settings


def cmd_events(args: argparse.Namespace, settings: Settings) -> None:
    request = feed_pb2.StreamEventsRequest(
        cursor=args.cursor, type_prefixes=args.type, follow=args.follow
    )
    # Ctrl-C ends a --follow: main() reports "interrupted" and exits 130, as for any wait.
    with client(settings) as cofab:
        for response in cofab.events.StreamEvents(request):
            event = response.event
            print(
                f"{format_time(event.time)}  {event.type}  {event.subject}  "
                f"by {event.organization}  cursor={response.cursor}",
                flush=True,
            )


def register(sub: Subcommands) -> None:
    p = command(
        sub,
        "events",
        cmd_events,
        "list the events your organization may see, oldest first (resume with --cursor)",
    )
    p.add_argument("--cursor", default="", help="resume after the event this cursor came with")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only event types starting with PREFIX, e.g. procurement.rfq. (repeatable)",
    )
    p.add_argument("--follow", action="store_true", help="keep waiting for new events")
