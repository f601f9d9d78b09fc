"""What every `cofab` command module shares: errors, the gRPC client, paging and formatting.

Each area's user commands live in their own module of this package and are added to the parser
by `main.build_parser`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

from clients.sdk import Cofab, connect
from services.shared.config import Settings

Command = Callable[[argparse.Namespace, Settings], None]
# argparse's subparsers type is generic only to type checkers.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def project_name(value: str) -> str:
    return value if value.startswith("projects/") else f"projects/{value}"


def organization_name(value: str) -> str:
    return value if value.startswith("organizations/") else f"organizations/{value}"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'7d', '12h', '30m', '45s' -> seconds."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 7d, 12h, 30m or 45s")
    return int(number) * _UNITS[unit]


def request_id() -> str:
    # A fresh id per command; the SDK's retries resend it, so a retried call has no second effect.
    return uuid.uuid4().hex


def every_page(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    """The items of every page of a List call: fetch(page_token) returns one response."""
    token = ""
    while True:
        response = fetch(token)
        yield from getattr(response, field)
        token = response.next_page_token
        if not token:
            return


def format_time(ts: object) -> str:
    seconds = getattr(ts, "seconds", 0)
    if not seconds:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def command(group: Subcommands, name: str, fn: Command, help_text: str) -> argparse.ArgumentParser:
    """Adds subcommand `name` running `fn` to `group`."""
    p: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(fn=fn)
    return p


def client(settings: Settings) -> Cofab:
    token = os.environ.get("COFAB_TOKEN", "").strip()
    if not token:
        raise CliError(
            "COFAB_TOKEN is not set: ask an admin for a token (cofab admin create-token)"
        )
    return connect(token, settings.design_address, settings.supply_address, settings.tls_ca_file)
