"""The `cofab` command line: admin commands against the database, user commands over gRPC.

Admin commands (`cofab admin ...`) bootstrap an install: they need COFAB_DATABASE_URL (or the
default SQLite file in COFAB_STATE_DIR). User commands need a token (`cofab login`, or
COFAB_TOKEN, which wins) and talk to the services at COFAB_DESIGN_ADDRESS / COFAB_SUPPLY_ADDRESS.
Exit codes tell failures apart: see clients/cli/exits.py (and README).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from clients.cli.common import CliError
from clients.cli.exits import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_LIMIT,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION_DENIED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    for_status,
)
from services.shared import errors
from services.shared.config import ConfigError, load_settings

# Top-level command -> (module, its register function, help). Only the module of the command
# being run is imported (each pulls in its stubs; admin pulls in SQLAlchemy), so a command
# starts without loading the others; `cofab --help` imports none of them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "admin": ("admin", "register", "bootstrap and operate an install (database access)"),
    "login": ("projects", "register_login", "check a token and store it for later commands (0600)"),
    "logout": ("projects", "register_login", "remove the stored token"),
    "whoami": ("projects", "register_login", "show the organization and user of your token"),
    "use": ("projects", "register_use", "set defaults for later commands (cofab use project NAME)"),
    "project": ("projects", "register_projects", "shared projects and their member organizations"),
    "invitations": ("projects", "register_projects", "list your organization's memberships"),
    "invitation": ("projects", "register_projects", "answer an invitation (organization admins)"),
    "design": ("projects", "register_designs", "designs (parts) in a project"),
    "facility": ("projects", "register_facilities", "your organization's facilities"),
    "rfq": ("procurement", "register", "requests for quotation (as buyer or invited supplier)"),
    "quote": ("procurement", "register", "your quotes on RFQs you are invited to"),
    "network": ("network", "register", "bulk import and export of your network data"),
    "item": ("network", "register", "your items (parts, products) and their BOMs"),
    "edge": ("network", "register", "supply edges: an edge with another company needs its consent"),
    "supplier": ("network", "register", "find capable suppliers"),
    "risk": ("network", "register", "single-source items and critical facilities of your network"),
    "disruption": ("network", "register", "report and follow facility disruptions"),
    "revision": ("revisions", "register", "design revisions: push, inspect, download"),
    "ruleset": ("revisions", "register", "validation rule sets"),
    "material": ("revisions", "register", "materials designs can name (for mass)"),
    "comment": ("comments", "register", "comments anchored to a revision's geometry"),
    "events": (
        "events",
        "register",
        "list the events your organization may see, oldest first (resume with --cursor)",
    ),
    "review": ("reviews", "register", "multi-company design reviews"),
}

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped command or subcommand."""

    def error(self, message: str) -> NoReturn:
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
            message = f"unknown command '{found.group(1)}'" + (
                f": did you mean '{close[0]}'?" if close else f"; one of: {', '.join(choices)}"
            )
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print cofab's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import version

        parser.exit(message=f"cofab {version('cofab')}\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: only the module of the command it names is loaded. Without argv
    (None), every command's module (the full tree, e.g. for tests and documentation)."""
    parser = Parser(prog="cofab", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if argv is None:
        wanted = list(dict.fromkeys((m, f) for m, f, _ in COMMANDS.values()))
    elif named in COMMANDS:
        module, register, _ = COMMANDS[named]
        wanted = [(module, register)]
    else:
        # Help or a mistyped command: list every command without loading any.
        for name, (_, _, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        return parser
    for module, register in wanted:
        getattr(importlib.import_module(f"clients.cli.{module}"), register)(sub)
    return parser


def describe_rpc_error(error: Any) -> str:
    """`CODE: message` plus each field violation, from the rich status when present."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    code = error.code().name if hasattr(error, "code") else "UNKNOWN"
    message = (error.details() if hasattr(error, "details") else None) or str(error)
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    violations: list[str] = []
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    if code == "UNAVAILABLE":
        message = (
            "the service is not reachable: is the stack running (make up), and are "
            "COFAB_DESIGN_ADDRESS / COFAB_SUPPLY_ADDRESS right?"
        )
    elif code == "UNAUTHENTICATED":
        message += " (run `cofab login`, or set COFAB_TOKEN to a valid token)"
    if len(violations) > 1:
        return "\n".join([f"{code}: invalid request", *violations])
    return f"{code}: {message}"


_DOMAIN_EXITS: tuple[tuple[type[errors.DomainError], int], ...] = (
    (errors.NotFound, EXIT_NOT_FOUND),
    (errors.PermissionDenied, EXIT_PERMISSION_DENIED),
    (errors.Unauthenticated, EXIT_UNAUTHENTICATED),
    (errors.AlreadyExists, EXIT_CONFLICT),
    (errors.InvalidArgument, EXIT_USAGE),
    (errors.FailedPrecondition, EXIT_CONFLICT),
    (errors.Conflict, EXIT_CONFLICT),
    (errors.ResourceExhausted, EXIT_LIMIT),
    (errors.OutOfRange, EXIT_USAGE),
    (errors.Unavailable, EXIT_UNAVAILABLE),
)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        settings = load_settings()
        args.fn(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliError as error:
        return _fail(str(error), error.exit_code)
    except ConfigError as error:
        return _fail(str(error), EXIT_USAGE)
    except errors.DomainError as error:
        code = next((c for kind, c in _DOMAIN_EXITS if isinstance(error, kind)), EXIT_ERROR)
        return _fail(str(error), code)
    except Exception as error:
        grpc = sys.modules.get("grpc")
        if grpc is not None and isinstance(error, grpc.RpcError):
            status = error.code().name if hasattr(error, "code") else "UNKNOWN"
            return _fail(describe_rpc_error(error), for_status(status))
        if isinstance(error, OSError) and error.filename:
            return _fail(f"{error.filename}: {error.strerror}", EXIT_ERROR)
        if os.environ.get("COFAB_DEBUG"):
            raise
        return _fail(
            f"unexpected {type(error).__name__}: {error} (COFAB_DEBUG=1 shows where)", EXIT_ERROR
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
