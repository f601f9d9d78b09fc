"""What every `cofab` command module shares: errors, the gRPC client, paging and formatting.

Each area's user commands live in their own module of this package and are added to the parser
by `main.build_parser`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from clients.cli.exits import EXIT_ERROR, EXIT_UNAUTHENTICATED
from services.shared.config import Settings

if TYPE_CHECKING:  # the SDK (grpc, every stub) is imported only by commands that call a service
    from google.protobuf.message import Message

    from clients.sdk import Cofab

Command = Callable[[argparse.Namespace, Settings], None]
# argparse's subparsers type is generic only to type checkers.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A problem the user can fix; printed as one sentence without a traceback, exiting with
    `exit_code` (clients.cli.exits)."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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


def command(
    group: Subcommands, name: str, fn: Command, help_text: str, prints: bool = False
) -> argparse.ArgumentParser:
    """Adds subcommand `name` running `fn` to `group`. `prints`: the command prints a resource
    or a list, and takes --json for the proto's JSON mapping instead of the human form."""
    p: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(fn=fn, json=False)
    if prints:
        p.add_argument(
            "--json", action="store_true", help="print the proto's JSON mapping (stable)"
        )
    return p


def to_json(message: Message) -> dict[str, Any]:
    """A message in the proto3 JSON mapping (lowerCamelCase names, enums by name)."""
    from google.protobuf import json_format

    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def emit(args: argparse.Namespace, message: Message, human: Callable[[], None]) -> None:
    """Prints one resource: its JSON with --json, else the human form."""
    if args.json:
        import json

        print(json.dumps(to_json(message), indent=2))
    else:
        human()


def emit_list(
    args: argparse.Namespace, field: str, items: Iterable[Message], human: Callable[[Any], None]
) -> None:
    """Prints a list: with --json one document {field: [...]}, the shape of the List
    response with every page in it; else one human line per item, as each arrives."""
    if args.json:
        import json

        print(json.dumps({field: [to_json(item) for item in items]}, indent=2))
    else:
        for item in items:
            human(item)


def token_file() -> Path:
    """Where `cofab login` keeps the token: $XDG_CONFIG_HOME/cofab/token (~/.config/...)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cofab" / "token"


def config_file() -> Path:
    """Settings `cofab use` keeps (the default project), next to the token."""
    return token_file().parent / "config.json"


def read_config() -> dict[str, str]:
    import json

    try:
        data = json.loads(config_file().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def write_config(config: dict[str, str]) -> None:
    import json

    path = config_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def caller_token() -> str:
    """COFAB_TOKEN when set, else the token `cofab login` stored."""
    token = os.environ.get("COFAB_TOKEN", "").strip()
    if token:
        return token
    try:
        token = token_file().read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise CliError(
            "no token: run `cofab login` or set COFAB_TOKEN "
            "(an admin issues one with `cofab admin create-token`)",
            EXIT_UNAUTHENTICATED,
        )
    return token


def client(settings: Settings) -> Cofab:
    from clients.sdk import connect

    return connect(
        caller_token(), settings.design_address, settings.supply_address, settings.tls_ca_file
    )


class ProgressBar:
    """A one-line progress bar on standard error, drawn only on a terminal (a pipe or a log
    file gets nothing). Call it with (done, total) bytes; `close()` ends the line."""

    def __init__(self, label: str) -> None:
        import sys

        self._out = sys.stderr
        self._on = self._out.isatty()
        self._label = label
        self._drawn = -1

    def __call__(self, done: int, total: int) -> None:
        if not self._on or total <= 0:
            return
        percent = min(100, done * 100 // total)
        if percent == self._drawn:
            return
        self._drawn = percent
        filled = percent * 30 // 100
        self._out.write(
            f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% "
            f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB"
        )
        self._out.flush()

    def status(self, text: str) -> None:
        """Replaces the line with a status (e.g. the state a --wait is in)."""
        if self._on:
            self._out.write(f"\r{self._label} {text}\033[K")
            self._out.flush()

    def close(self) -> None:
        if self._on:
            self._out.write("\r\033[K")
            self._out.flush()
