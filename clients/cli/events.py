"""`cofab events`: the partner event feed of the caller's organization."""

from __future__ import annotations

import argparse
import json

from clients.cli.common import Subcommands, client, command, format_time, to_json
from cofab.events.v1 import feed_pb2
from services.shared.config import Settings


def _load_event_types() -> None:
    """Imports every generated module, so the JSON mapping can print any payload (Any)."""
    import importlib
    import pkgutil

    import cofab

    for module in pkgutil.walk_packages(cofab.__path__, "cofab."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def cmd_events(args: argparse.Namespace, settings: Settings) -> None:
    request = feed_pb2.StreamEventsRequest(
        cursor=args.cursor, type_prefixes=args.type, follow=args.follow
    )
    if args.json:
        _load_event_types()
    # Ctrl-C ends a --follow: main() reports "interrupted" and exits 130, as for any wait.
    with client(settings) as cofab:
        for response in cofab.events.StreamEvents(request):
            if args.json:  # one StreamEventsResponse per line (JSON lines), as it arrives
                print(json.dumps(to_json(response)), flush=True)
                continue
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
        prints=True,
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
