"""`cofab` as a user runs it, a real process against real servers: --json is the proto's JSON
mapping, failures are one sentence with an exit code per kind (clients/cli/exits.py), a token
can be stored with `cofab login`, and Ctrl-C (a real SIGINT) ends a wait without a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cofab.design.v1 import events_pb2
from services.shared.events import make_envelope
from services.shared.feed import FeedStore
from tests.integration.conftest import Stack

BAD_TOKEN = "cofab_000000000000_" + "A" * 43


def cofab(
    stack: Stack,
    home: Path,
    *argv: str,
    token: str | None = None,
    design: str | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_CONFIG_HOME": str(home),
        "COFAB_DESIGN_ADDRESS": design or stack.design.address,
        "COFAB_SUPPLY_ADDRESS": stack.supply.address,
    }
    if token is not None:
        env["COFAB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "clients.cli.main", *argv],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_sentence(done: subprocess.CompletedProcess[str], start: str) -> None:
    assert done.stderr.startswith(start), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_json_is_the_proto_mapping_of_resources_and_lists(stack: Stack, tmp_path: Path) -> None:
    token = stack.acme.token
    me = json.loads(cofab(stack, tmp_path, "whoami", "--json", token=token).stdout)
    assert (me["organization"], me["user"]) == (
        "organizations/acme",
        "organizations/acme/users/alice",
    )
    created = cofab(stack, tmp_path, "project", "create", "Bracket program", "--json", token=token)
    project = json.loads(created.stdout)
    assert project["name"].startswith("projects/") and project["callerRole"] == "ROLE_OWNER"
    listed = json.loads(cofab(stack, tmp_path, "project", "list", "--json", token=token).stdout)
    assert [p["name"] for p in listed["projects"]] == [project["name"]]
    design = json.loads(
        cofab(
            stack, tmp_path, "design", "create", project["name"], "Bracket", "--json", token=token
        ).stdout
    )
    assert design["displayName"] == "Bracket" and design["ruleSet"] == "cnc-milling"
    designs = json.loads(
        cofab(stack, tmp_path, "design", "list", project["name"], "--json", token=token).stdout
    )
    assert designs == {"designs": [design]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_failures_are_one_sentence_with_their_exit_code(stack: Stack, tmp_path: Path) -> None:
    no_token = cofab(stack, tmp_path, "whoami")
    assert no_token.returncode == 4
    one_sentence(no_token, "error: no token: run `cofab login`")

    wrong = cofab(stack, tmp_path, "whoami", token=BAD_TOKEN)
    assert wrong.returncode == 4
    one_sentence(wrong, "error: UNAUTHENTICATED: unknown API token")

    unknown = cofab(
        stack, tmp_path, "project", "show", "projects/" + "0" * 32, token=stack.acme.token
    )
    assert unknown.returncode == 3
    one_sentence(unknown, "error: NOT_FOUND: ")

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
    unavailable = cofab(stack, tmp_path, "whoami", token=stack.acme.token, design=down)
    assert unavailable.returncode == 7
    one_sentence(unavailable, "error: UNAVAILABLE: the service is not reachable")

    typo = cofab(stack, tmp_path, "projetc", "list")
    assert typo.returncode == 2 and "did you mean 'project'?" in typo.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_login_checks_and_stores_the_token_for_the_user_only(stack: Stack, tmp_path: Path) -> None:
    refused = cofab(stack, tmp_path, "login", "--with-token", stdin=BAD_TOKEN + "\n")
    assert refused.returncode == 4
    stored = tmp_path / "cofab" / "token"
    assert not stored.exists()

    done = cofab(stack, tmp_path, "login", "--with-token", stdin=stack.globex.token + "\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_text().strip() == stack.globex.token
    me = json.loads(cofab(stack, tmp_path, "whoami", "--json").stdout)
    assert me["organization"] == "organizations/globex"
    # COFAB_TOKEN wins over the stored token.
    me = json.loads(cofab(stack, tmp_path, "whoami", "--json", token=stack.acme.token).stdout)
    assert me["organization"] == "organizations/acme"
    assert cofab(stack, tmp_path, "logout").returncode == 0 and not stored.exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_during_a_wait_exits_130_without_a_traceback(stack: Stack, tmp_path: Path) -> None:
    envelope = make_envelope(
        source="//cofab/test",
        event_type="design.design.created",
        subject="projects/p/designs/d",
        organization="organizations/acme",
        data=events_pb2.DesignCreated(),
    )
    FeedStore(stack.engine).append(envelope)
    # Without --follow the stream ends; with --json each event is one JSON line.
    listed = cofab(stack, tmp_path, "events", "--json", token=stack.acme.token)
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["event"]["id"], e["event"]["type"]) for e in lines] == [
        (envelope.id, "design.design.created")
    ]
    assert lines[0]["cursor"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_CONFIG_HOME": str(tmp_path),
        "COFAB_TOKEN": stack.acme.token,
        "COFAB_DESIGN_ADDRESS": stack.design.address,
        "COFAB_SUPPLY_ADDRESS": stack.supply.address,
    }
    following = subprocess.Popen(
        [sys.executable, "-m", "clients.cli.main", "events", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert following.stdout is not None
        first = following.stdout.readline()  # it is inside the wait once the event is out
        assert "design.design.created" in first
        following.send_signal(signal.SIGINT)
        _, err = following.communicate(timeout=30)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()
    assert following.returncode == 130
    assert err == "interrupted\n"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_use_project_sets_the_default_and_projects_go_by_short_names(
    stack: Stack, tmp_path: Path
) -> None:
    token = stack.acme.token
    made = json.loads(
        cofab(stack, tmp_path, "project", "create", "Bracket", "--json", token=token).stdout
    )
    cofab(stack, tmp_path, "project", "create", "Housing", token=token)
    project_id = made["name"].split("/", 1)[1]

    missing = cofab(stack, tmp_path, "design", "list", token=token)
    assert missing.returncode == 2
    one_sentence(missing, "error: no project given, and no default")

    used = cofab(stack, tmp_path, "use", "project", "Bracket", token=token)
    assert used.returncode == 0 and made["name"] in used.stdout
    created = cofab(stack, tmp_path, "design", "create", "Mount", "--json", token=token)
    design = json.loads(created.stdout)["name"]
    assert design.startswith(made["name"] + "/designs/")
    # A design of the default project by display name or id prefix.
    shown = cofab(stack, tmp_path, "design", "show", "Mount", "--json", token=token)
    assert json.loads(shown.stdout)["name"] == design
    prefix = design.rsplit("/", 1)[1][:6]
    listed = cofab(stack, tmp_path, "revision", "list", prefix, "--json", token=token)
    assert json.loads(listed.stdout) == {"revisions": []}
    by_prefix = cofab(stack, tmp_path, "project", "show", project_id[:8], "--json", token=token)
    assert json.loads(by_prefix.stdout)["name"] == made["name"]
    unknown = cofab(stack, tmp_path, "project", "show", "Nonesuch", token=token)
    assert unknown.returncode == 3
