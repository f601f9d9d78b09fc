"""A partner integrates from another language: the Node.js example, loading the .proto contract
with @grpc/grpc-js, against a real design server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_project

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "partner-node"


def run_example(stack: Stack, token: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("Node.js and the example's packages are needed: run `make install`")
    return subprocess.run(
        [node, str(EXAMPLE / "index.js")],
        env={
            "COFAB_TOKEN": token,
            "COFAB_DESIGN_ADDRESS": stack.design.address,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_node_partner_sees_its_projects_only(stack: Stack) -> None:
    with stack.client(stack.acme) as acme, stack.client(stack.initech) as initech:
        project = create_project(acme, "Shared with nobody")
        create_project(initech, "Initech's own")
    done = run_example(stack, stack.acme.token)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["organization"] == "organizations/acme"
    assert seen["projects"] == [
        {"name": project.name, "displayName": "Shared with nobody", "role": "ROLE_OWNER"}
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_node_partner_with_a_bad_token_gets_unauthenticated(stack: Stack) -> None:
    done = run_example(stack, "cofab_000000000000_" + "A" * 43)
    assert done.returncode == 1
    assert done.stderr.startswith("UNAUTHENTICATED: unknown API token")
