"""`cofab admin ...`: bootstrap and operate an install, directly against its database.

The database is COFAB_DATABASE_URL, or the SQLite file in COFAB_STATE_DIR (default ./.state).
Every command but `migrate` refuses a SQLite file that does not exist (rather than creating an
empty one) and tells where it looked.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clients.cli.common import CliError, Command, Subcommands, command, parse_duration
from services.shared.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def _engine(settings: Settings) -> Engine:
    """The install's database; a missing SQLite file is an error that says where it looked."""
    _require_database(settings)
    from services.shared import audit

    # Audited: an admin command's changes enter the keyed, anchored audit chain too.
    return audit.audited_engine(settings)


def _require_database(settings: Settings) -> None:
    path = _sqlite_path(settings.database_url)
    if path is not None and not path.is_file():
        raise CliError(
            f"no cofab database at {path}: run this where the stack keeps its state (make up "
            "uses ./.state), or set COFAB_STATE_DIR or COFAB_DATABASE_URL; "
            "`cofab admin migrate` creates a new one"
        )


def _with_database(fn: Callable[[argparse.Namespace, Settings], None]) -> Command:
    """Runs an admin command; a database that cannot be used is one sentence, not a trace."""

    def run(args: argparse.Namespace, settings: Settings) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            fn(args, settings)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
            raise CliError(
                f"cannot use the database {_safe_url(settings.database_url)} ({reason}): "
                "is it the stack's, and is its schema migrated (cofab admin migrate)?"
            ) from None

    return run


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared.migrate import upgrade

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print(f"database schema is up to date ({_safe_url(settings.database_url)})")


def cmd_create_organization(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import accounts

    accounts.create_organization(_engine(settings), args.id, args.display_name)
    print(f"created organizations/{args.id}")


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import accounts

    accounts.create_user(
        _engine(settings),
        args.organization,
        args.user,
        args.display_name,
        organization_admin=args.admin,
    )
    role = " (organization admin)" if args.admin else ""
    print(f"created organizations/{args.organization}/users/{args.user}{role}")


def cmd_create_token(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import accounts

    info = accounts.create_token(
        _engine(settings),
        args.organization,
        args.user,
        dt.timedelta(seconds=args.expires_in),
        args.description,
    )
    print(f"token id {info.token_id}, expires {info.expire_time:%Y-%m-%d %H:%M} UTC")
    print("Shown once, stored only as a hash. Use it with `cofab login`, or:")
    print(f"export COFAB_TOKEN={info.plaintext}")


def cmd_revoke_token(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import accounts

    accounts.revoke_token(_engine(settings), args.token_id)
    print(f"revoked token {args.token_id}")


def cmd_ensure_service_account(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import accounts

    path = Path(args.token_file)
    existing = path.read_text().strip() if path.is_file() else None
    token = accounts.ensure_service_account(_engine(settings), existing)
    if token is None:
        print(f"service account token in {path} is valid")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    print(f"wrote a new service account token to {path}")


def cmd_verify_audit(args: argparse.Namespace, settings: Settings) -> None:
    from services.shared import audit
    from services.shared.db import make_engine

    _require_database(settings)
    # The key must exist already: verifying with a fresh one would only say "broken".
    config = audit.config_from(settings, create_key=False)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            report = audit.verify_chain(conn, config)
    finally:
        engine.dispose()
    if not report.ok:
        where = f" at entry {report.first_bad_seq}" if report.first_bad_seq else ""
        raise CliError(
            f"audit chain BROKEN{where}: {report.problem} ({report.entries} entries read)"
        )
    behind = f", {report.unanchored} after the last anchored head" if report.unanchored else ""
    print(
        f"audit chain intact: {report.entries} entries, anchored up to entry "
        f"{report.anchored_seq} in {config.anchor}{behind}"
    )


def register(sub: Subcommands) -> None:
    """Adds `cofab admin ...` to the parser."""
    admin = sub.add_parser("admin", help="bootstrap and operate an install (database access)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    command(
        admin_sub, "migrate", _with_database(cmd_migrate), "create or upgrade the database schema"
    )
    p = command(
        admin_sub,
        "create-organization",
        _with_database(cmd_create_organization),
        "add an organization",
    )
    p.add_argument("id", help="organization id, e.g. acme")
    p.add_argument("--display-name", default="")
    p = command(
        admin_sub, "create-user", _with_database(cmd_create_user), "add a user to an organization"
    )
    p.add_argument("organization")
    p.add_argument("user")
    p.add_argument("--display-name", default="")
    p.add_argument("--admin", action="store_true", help="organization admin (answers invitations)")
    p = command(
        admin_sub,
        "create-token",
        _with_database(cmd_create_token),
        "issue an API token (shown once)",
    )
    p.add_argument("organization")
    p.add_argument("user")
    p.add_argument(
        "--expires-in",
        type=parse_duration,
        default=parse_duration("90d"),
        help="token lifetime, e.g. 90d (default), 12h; at most 365d",
    )
    p.add_argument("--description", default="")
    p = command(
        admin_sub, "revoke-token", _with_database(cmd_revoke_token), "revoke an API token by its id"
    )
    p.add_argument("token_id")
    p = command(
        admin_sub,
        "ensure-service-account",
        _with_database(cmd_ensure_service_account),
        "create the workflow worker's service account and token file if needed",
    )
    p.add_argument("--token-file", required=True)
    command(
        admin_sub,
        "verify-audit",
        _with_database(cmd_verify_audit),
        "check the audit log's hash chain",
    )
