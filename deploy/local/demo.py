"""`make demo`: the local stack, and the story it exists for, told with the `cofab` CLI.

ACME opens a shared project and a design, invites two partner companies, Globex accepts and
Initech lets its invitation run out. Every step is a real gRPC call; the invitation events go
through the outbox, the relay and Kafka to the event bridge, which runs one Temporal workflow per
invitation; the worker expires Initech's invitation by calling the design service back. ACME then
pushes a CAD revision of the bracket, which the design service converts, measures, validates and
renders, and Globex reads what happened from its partner event feed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from kafka import KafkaConsumer
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from deploy.local.cli import (
    PORTS,
    Stack,
    Terminated,
    UpConfig,
    service_env,
    signals_ignored,
    start_up_stack,
    stop_signals_raise,
)
from deploy.local.processes import REPO_ROOT, StackError, free_ports
from services.shared.events import decode_envelope
from workflows.invitation import InvitationOutcome, workflow_id

EXPIRY_SECONDS = 8


def say(text: str = "") -> None:
    print(text, flush=True)


class Cli:
    """Runs `cofab ...` as a user would, echoing the command and what it prints."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._cofab = shutil.which("cofab", path=os.path.dirname(sys.executable)) or "cofab"

    def __call__(self, *args: str, token: str | None = None, who: str = "admin") -> str:
        env = {**self._env, "COFAB_TOKEN": token or ""}
        say(f"[{who}] $ cofab {' '.join(args)}")
        done = subprocess.run(
            [self._cofab, *args], env=env, capture_output=True, text=True, timeout=60
        )
        output = (done.stdout + done.stderr).strip()
        for line in output.splitlines():
            say(f"    {line}")
        if done.returncode != 0:
            raise StackError(f"`cofab {' '.join(args)}` failed:\n{output}")
        return output


def _token(output: str) -> str:
    match = re.search(r"export COFAB_TOKEN=(\S+)", output)
    if match is None:
        raise StackError("create-token printed no token")
    return match.group(1)


def _invitation_id(output: str) -> str:
    match = re.search(r"invitation ([0-9a-f]{32})", output)
    if match is None:
        raise StackError("invite printed no invitation id")
    return match.group(1)


async def _outcome(address: str, invitation_id: str, timeout: float) -> InvitationOutcome:
    client = await Client.connect(address)
    handle = client.get_workflow_handle(workflow_id(invitation_id), result_type=InvitationOutcome)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                outcome: InvitationOutcome = await handle.result()
                return outcome
        except RPCError:
            pass  # the bridge has not started it yet
        await asyncio.sleep(0.5)
    raise StackError(f"workflow {workflow_id(invitation_id)} did not finish in {timeout:.0f} s")


def _print_events(bootstrap: str) -> None:
    consumer = KafkaConsumer(
        "cofab.identity",
        "cofab.design",
        "cofab.supply",
        bootstrap_servers=bootstrap,
        group_id=f"demo-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        for record in consumer:
            event = decode_envelope(record.value)
            say(
                f"    {record.topic:<15} key {record.key.decode()[:12]:<12}  {event.type:<30}"
                f" {event.subject}"
            )
    finally:
        consumer.close()


def _write_bracket(path: Path, hole_spacing: float = 50) -> None:
    """A mounting bracket: a plate with four holes and a filleted upright, as STEP."""
    import cadquery as cq  # seconds to import; only the demo's CAD step needs it

    plate = (
        cq.Workplane().box(80, 40, 6).faces(">Z").workplane().rarray(hole_spacing, 20, 2, 2).hole(6)
    )
    upright = cq.Workplane().center(0, -17).box(80, 6, 30).translate((0, 0, 15))
    cq.exporters.export(plate.union(upright).edges("|X").fillet(1.5), str(path))


def _wait_for(what: str, check: Callable[[], str], expected: str, timeout: float = 120) -> str:
    """Runs `check` until its output contains `expected` (a workflow finishing its work)."""
    deadline = time.monotonic() + timeout
    while expected not in (output := check()):
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not happen within {timeout:.0f} s:\n{output}")
        time.sleep(1)
    return output


def _story(config: UpConfig, env: Mapping[str, str]) -> None:
    cofab = Cli(env)
    say("\n== 1. An admin bootstraps three companies (database commands) ==")
    for org, user, name in (
        ("acme", "alice", "ACME Corp"),
        ("globex", "gina", "Globex"),
        ("initech", "ivan", "Initech"),
    ):
        cofab("admin", "create-organization", org, "--display-name", name)
        cofab("admin", "create-user", org, user, "--admin")
    alice = _token(cofab("admin", "create-token", "acme", "alice"))
    gina = _token(cofab("admin", "create-token", "globex", "gina"))

    say("\n== 2. ACME opens a shared project and a design (gRPC, bearer token) ==")
    cofab("whoami", token=alice, who="alice@acme")
    project = cofab("project", "create", "Bracket program", token=alice, who="alice@acme").split()[
        0
    ]
    design = cofab(
        "design",
        "create",
        project,
        "Mounting bracket",
        "--part-number",
        "BR-100",
        token=alice,
        who="alice@acme",
    ).split()[0]

    say(f"\n== 3. ACME invites Globex (7 days) and Initech (expires in {EXPIRY_SECONDS} s) ==")
    globex_invitation = _invitation_id(
        cofab(
            "project",
            "invite",
            project,
            "globex",
            "--role",
            "reviewer",
            token=alice,
            who="alice@acme",
        )
    )
    initech_invitation = _invitation_id(
        cofab(
            "project",
            "invite",
            project,
            "initech",
            "--role",
            "viewer",
            "--expires-in",
            f"{EXPIRY_SECONDS}s",
            token=alice,
            who="alice@acme",
        )
    )

    say("\n== 4. Globex sees nothing of the project until its admin accepts ==")
    try:
        cofab("design", "list", project, token=gina, who="gina@globex")
    except StackError:
        say("    (refused as expected: Globex is not a member yet)")
    cofab("invitations", token=gina, who="gina@globex")
    cofab("invitation", "accept", project, token=gina, who="gina@globex")
    cofab("design", "list", project, token=gina, who="gina@globex")

    temporal = config.address("COFAB_TEMPORAL_PORT")
    say("\n== 5. Each invitation is a Temporal workflow, started by the Kafka event bridge ==")
    accepted = asyncio.run(_outcome(temporal, globex_invitation, 60))
    say(f"    workflow {workflow_id(globex_invitation)}: {accepted.state}")
    say(f"    waiting for Initech's invitation to run out ({EXPIRY_SECONDS} s) ...")
    expired = asyncio.run(_outcome(temporal, initech_invitation, EXPIRY_SECONDS + 60))
    say(
        f"    workflow {workflow_id(initech_invitation)}: {expired.state} "
        "(the worker called ExpireMembership as the platform service account)"
    )
    cofab("project", "members", project, token=alice, who="alice@acme")

    say("\n== 6. ACME pushes a revision: uploaded, converted, measured, checked for CNC milling ==")
    step = config.state_dir / "bracket.step"
    _write_bracket(step)
    pushed = cofab(
        "revision",
        "push",
        design,
        str(step),
        "--wait",
        "-m",
        "first cut",
        token=alice,
        who="alice@acme",
    )
    revision = pushed.split()[0]
    thumbnail = config.state_dir / "bracket.png"
    cofab(
        "revision",
        "download",
        revision,
        str(thumbnail),
        "--artifact",
        "thumbnail.png",
        token=gina,
        who="gina@globex",
    )
    say(f"    (Globex, a member, downloaded the rendered thumbnail to {thumbnail})")

    say("\n== 7. ACME moves the holes apart; Globex sees exactly what changed ==")
    wider = config.state_dir / "bracket-wider.step"
    _write_bracket(wider, hole_spacing=60)
    second = cofab(
        "revision",
        "push",
        design,
        str(wider),
        "--base",
        revision,
        "--wait",
        "-m",
        "holes 60 mm apart",
        token=alice,
        who="alice@acme",
    ).split()[0]
    picture = config.state_dir / "bracket-diff.png"
    cofab(
        "revision",
        "diff",
        design,
        revision,
        second,
        "--wait",
        "--png",
        str(picture),
        token=gina,
        who="gina@globex",
    )
    say(f"    (the picture: unchanged grey, added green, removed red: {picture})")
    cofab(
        "comment",
        "add",
        second,
        "--point=30,10,3",
        "--body",
        "edge distance of the moved hole is now 7 mm: enough?",
        token=gina,
        who="gina@globex",
    )

    say("\n== 8. ACME asks Globex to approve it: a review workflow; approval releases it ==")
    review = cofab(
        "review",
        "request",
        second,
        "--reviewer",
        "globex",
        "--deadline",
        "5d",
        token=alice,
        who="alice@acme",
    ).split()[0]
    cofab("review", "decide", review, "approve", "--comment", "ok", token=gina, who="gina@globex")
    _wait_for(
        "the approval",
        lambda: cofab("review", "show", review, token=alice, who="alice@acme"),
        "APPROVED",
    )
    _wait_for(
        "the release",
        lambda: cofab("revision", "show", second, token=alice, who="alice@acme"),
        "released",
    )

    say("\n== 9. The events as partners see them on Kafka ==")
    _print_events(config.address("COFAB_KAFKA_PORT"))
    say("\n   ... and as Globex reads them over gRPC, from its partner feed (no Kafka credentials)")
    deadline = time.monotonic() + 30
    while "design.revision.validated" not in (
        feed := cofab("events", token=gina, who="gina@globex")
    ):
        if time.monotonic() > deadline:
            raise StackError(f"Globex's feed lacks the validated revision:\n{feed}")
        time.sleep(1)

    say("\n== 10. Every change and every read of design data is in a hash-chained audit log ==")
    cofab("admin", "verify-audit")
    if (accepted.state, expired.state) != ("ACTIVE", "EXPIRED"):
        raise StackError(f"unexpected outcomes {accepted.state}, {expired.state}")


def run_demo(environ: Mapping[str, str]) -> int:
    """Start a fresh stack on free ports, tell the story, stop the stack; 0 on success."""
    state_dir = REPO_ROOT / ".state" / "demo"
    shutil.rmtree(state_dir, ignore_errors=True)
    ports = dict(zip((p.env_var for p in PORTS), map(str, free_ports(len(PORTS))), strict=True))
    environ = {**environ, **ports, "COFAB_STATE_DIR": str(state_dir)}
    environ.pop("COFAB_DATABASE_URL", None)
    config = UpConfig.from_env(environ)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    with stop_signals_raise():
        try:
            start_up_stack(stack, config, environ)
            _story(config, service_env(config, environ))
            say("\nDemo complete: every step above ran against the real services.")
            return 0
        except (KeyboardInterrupt, Terminated):
            return 130
        except StackError as exc:
            print(f"demo failed: {exc}\nlogs: {config.logs_dir}", file=sys.stderr)
            return 1
        finally:
            say("\nstopping the stack")
            with signals_ignored():
                stack.stop_all()
