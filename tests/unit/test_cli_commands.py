"""The `cofab` parser: the lazy command table matches what the command modules register,
mistyped commands get a suggestion, and failures map to the documented exit codes."""

from __future__ import annotations

import argparse
import io
import sys

import pytest

from clients.cli import exits
from clients.cli.common import CliError
from clients.cli.main import COMMANDS, build_parser, main


def top_level(parser: argparse.ArgumentParser) -> dict[str, str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help or "" for choice in sub._choices_actions}


def test_the_command_table_is_what_the_modules_register() -> None:
    registered = top_level(build_parser(None))
    assert registered == {name: help_text for name, (_, _, help_text) in COMMANDS.items()}


def test_help_lists_every_command_without_loading_their_modules() -> None:
    assert set(top_level(build_parser(["--help"]))) == set(COMMANDS)


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["prjoect", "list"], "did you mean 'project'?"),
        (["project", "lst"], "did you mean 'list'?"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == exits.EXIT_USAGE
    assert suggestion in capsys.readouterr().err


def test_no_token_is_one_sentence_and_exit_4(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COFAB_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["whoami"]) == exits.EXIT_UNAUTHENTICATED
    err = capsys.readouterr().err
    assert err.startswith("error: no token: run `cofab login`") and err.count("\n") == 1


def test_a_stored_token_is_used_and_cofab_token_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from clients.cli.common import caller_token, token_file

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("COFAB_TOKEN", raising=False)
    token_file().parent.mkdir(parents=True)
    token_file().write_text("cofab_stored\n")
    assert caller_token() == "cofab_stored"
    monkeypatch.setenv("COFAB_TOKEN", "cofab_env")
    assert caller_token() == "cofab_env"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("NOT_FOUND", 3),
        ("UNAUTHENTICATED", 4),
        ("PERMISSION_DENIED", 5),
        ("ABORTED", 6),
        ("FAILED_PRECONDITION", 6),
        ("UNAVAILABLE", 7),
        ("INVALID_ARGUMENT", 2),
        ("RESOURCE_EXHAUSTED", 8),
        ("INTERNAL", 1),
    ],
)
def test_status_codes_map_to_distinct_exit_codes(status: str, code: int) -> None:
    assert exits.for_status(status) == code


def test_an_admin_command_without_a_database_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COFAB_DATABASE_URL", raising=False)
    monkeypatch.setenv("COFAB_STATE_DIR", str(tmp_path))
    assert main(["admin", "create-organization", "acme"]) == exits.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: no cofab database at ") and err.count("\n") == 1
    assert not list(__import__("pathlib").Path(str(tmp_path)).iterdir())  # nothing created


def test_cli_error_carries_its_exit_code() -> None:
    assert CliError("x").exit_code == exits.EXIT_ERROR


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, bool]:
    """Every runnable command, with whether it takes --json."""
    found: dict[str, bool] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(leaf_commands(sub, f"{prefix} {name}".strip()))
    if not found and prefix:
        found[prefix] = any("--json" in a.option_strings for a in parser._actions)
    return found


# Commands that print no resource or list of the API (they write files, change local settings
# or print a token or a report of their own), so --json has nothing to map.
WITHOUT_JSON = {
    "admin migrate", "admin create-organization", "admin create-user", "admin create-token",
    "admin revoke-token", "admin ensure-service-account", "admin verify-audit", "login",
    "logout", "use project", "network import", "network export", "revision download",
}  # fmt: skip


def test_every_command_that_prints_a_resource_takes_json() -> None:
    leaves = leaf_commands(build_parser(None))
    assert WITHOUT_JSON <= set(leaves)
    assert sorted(c for c, has_json in leaves.items() if not has_json) == sorted(WITHOUT_JSON)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from clients.cli.common import ProgressBar

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    bar = ProgressBar("push part.step")
    bar(1 << 20, 4 << 20)
    bar.close()
    assert piped.getvalue() == ""

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = ProgressBar("push part.step")
    for done in (1 << 20, 2 << 20, 2 << 20, 4 << 20):
        bar(done, 4 << 20)
    bar.close()
    drawn = terminal.getvalue()
    assert drawn.count("\r") == 4  # 25%, 50% (once, not redrawn), 100%, the clearing close
    assert " 25% 1.0/4.0 MiB" in drawn and "100% 4.0/4.0 MiB" in drawn
