"""The whole local stack as a user runs it: `python -m deploy.local up` (what `make up` runs),
driven with the `cofab` CLI, stopped with Ctrl-C, started again on the same data."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cadquery as cq
import pytest

from deploy.local.cli import PORTS
from deploy.local.processes import free_ports
from tests.integration.test_design_api import served_services

REPO = Path(__file__).resolve().parents[2]
COFAB = str(Path(sys.executable).parent / "cofab")


class LocalStack:
    def __init__(self, state_dir: Path) -> None:
        ports = free_ports(len(PORTS))
        self.env = {
            **os.environ,
            **{p.env_var: str(port) for p, port in zip(PORTS, ports, strict=True)},
            "COFAB_STATE_DIR": str(state_dir),
        }
        self.env.pop("COFAB_DATABASE_URL", None)
        design, supply = self.env["COFAB_DESIGN_PORT"], self.env["COFAB_SUPPLY_PORT"]
        self.env["COFAB_DESIGN_ADDRESS"] = f"127.0.0.1:{design}"
        self.env["COFAB_SUPPLY_ADDRESS"] = f"127.0.0.1:{supply}"
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def up(self, timeout: float = 240) -> None:
        self.output = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.local", "up"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("cofab is up."):
                return
            if time.monotonic() > deadline:
                break
        self.interrupt()
        pytest.fail("the stack did not come up:\n" + "".join(self.output))

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops `make up`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=120)
        self.output.append(rest)
        return self.process.returncode

    def cofab(self, *args: str, token: str = "", code: int = 0) -> str:
        """Runs `cofab`; `code` is the exit code expected (clients/cli/exits.py)."""
        done = subprocess.run(
            [COFAB, *args],
            env={**self.env, "COFAB_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == code and "Traceback" not in done.stderr, done.stderr
        return done.stdout + done.stderr


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path / "state")
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.interrupt()


def token_of(output: str) -> str:
    match = re.search(r"export COFAB_TOKEN=(\S+)", output)
    assert match is not None, output
    return match.group(1)


def test_make_up_story_and_restart(local_stack: LocalStack, tmp_path: Path) -> None:
    local_stack.up()
    assert served_services(local_stack.env["COFAB_DESIGN_ADDRESS"]) >= {
        "cofab.design.v1.DesignService"
    }
    assert served_services(local_stack.env["COFAB_SUPPLY_ADDRESS"]) >= {
        "cofab.supply.v1.SupplyService"
    }
    cofab = local_stack.cofab
    for org in ("acme", "globex"):
        cofab("admin", "create-organization", org)
        cofab("admin", "create-user", org, "admin", "--admin")
    acme = token_of(cofab("admin", "create-token", "acme", "admin"))
    globex = token_of(cofab("admin", "create-token", "globex", "admin"))
    assert "organizations/acme/users/admin" in cofab("whoami", token=acme)
    project = cofab("project", "create", "Bracket", token=acme).split()[0]
    design = cofab("design", "create", project, "Bracket", "--part-number", "BR-1", token=acme)
    design = design.split()[0]
    cofab(
        "project", "invite", project, "globex", "--role", "viewer", "--expires-in", "3s", token=acme
    )
    assert "NOT_FOUND" in cofab("design", "list", project, token=globex, code=3)
    # The relay, Kafka, the bridge, Temporal and the worker expire the invitation.
    deadline = time.monotonic() + 90
    while "expired" not in (members := cofab("project", "members", project, token=acme)):
        assert time.monotonic() < deadline, members
        time.sleep(1)
    assert "UNAUTHENTICATED" in cofab("whoami", token="cofab_nope", code=4)

    # A revision is uploaded, converted and validated by the design service's workers.
    step = tmp_path / "bracket.step"
    cq.exporters.export(cq.Workplane().box(60, 30, 8).faces(">Z").hole(6), str(step))
    pushed = cofab("revision", "push", design, str(step), "--wait", token=acme)
    assert "[succeeded]" in pushed, pushed
    # ...and the events reach ACME's partner feed through Kafka and the feed writer.
    deadline = time.monotonic() + 60
    while "design.revision.validated" not in (feed := cofab("events", token=acme)):
        assert time.monotonic() < deadline, feed
        time.sleep(1)
    assert "identity.membership.invited" in feed

    assert local_stack.interrupt() == 0
    assert "cofab stopped" in "".join(local_stack.output)

    local_stack.up()
    assert "BR-1" in cofab("design", "list", project, token=acme)
    assert "intact" in cofab("admin", "verify-audit")


def test_port_in_use_is_a_clear_message(local_stack: LocalStack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**local_stack.env, "COFAB_DESIGN_PORT": str(port)}
        done = subprocess.run(
            [sys.executable, "-m", "deploy.local", "up"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"port {port} (design service) is already in use" in done.stderr
    assert "COFAB_DESIGN_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_java_is_a_clear_message(local_stack: LocalStack) -> None:
    # A PATH with Python's tools but no java, and no JAVA_HOME.
    env = {**local_stack.env, "PATH": str(Path(sys.executable).parent)}
    env.pop("JAVA_HOME", None)
    done = subprocess.run(
        [sys.executable, "-m", "deploy.local", "up"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Java 17+ is needed to run Kafka" in done.stderr
    assert "Traceback" not in done.stderr
