"""`cofab review ...` end to end: the requester and three partner organizations run a review from
the command line against the running platform: the design service, its outbox relay, Kafka, the
Temporal dev server, and the worker and the bridge as their own processes (as `make up` runs
them)."""

from __future__ import annotations

import time

import pytest

from clients.cli.main import main
from cofab.design.v1 import design_pb2
from tests.conftest import Account
from tests.integration.processes import WorkflowProcesses
from tests.integration.test_review_workflow import Setup, events_of, on_sqlite, setup
from tests.integration.test_workflow_crash_review import own_broker, processes

__all__ = ["own_broker", "processes", "setup"]  # fixtures, imported to be used here


def cofab(
    setup: Setup,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    code: int = 0,
) -> str:
    """Runs one command as `account`; returns its output (stdout, or stderr when it fails)."""
    monkeypatch.setenv("COFAB_TOKEN", account.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", setup.stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", setup.stack.supply.address)
    exit_code = main(list(argv))
    out, err = capsys.readouterr()
    assert exit_code == code, err or out
    return out if code == 0 else err


# A broker, a Temporal server and two processes of its own: above the default timeout.
@pytest.mark.timeout(600)
@on_sqlite
def test_two_of_three_organizations_approve_from_the_command_line(
    processes: WorkflowProcesses,
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = setup.stack
    run = (setup, stack.acme, monkeypatch, capsys)

    requested = cofab(
        *run,
        "review", "request", setup.revision,
        "--reviewer", "globex", "--reviewer", "initech", "--reviewer", "umbrella",
        "--quorum", "k-of-n", "--k", "2", "--deadline", "5d", "--remind-before", "1d",
        "--message", "Bracket for tooling",
    )  # fmt: skip
    review = requested.split()[0]
    assert review.startswith(f"{setup.design}/reviews/")
    assert " OPEN  round 1 " in requested
    assert "quorum: 2 of 3 must approve" in requested
    assert "organizations/globex: pending" in requested
    assert review in cofab(*run, "review", "list", setup.design)

    for account in (stack.globex, stack.initech):
        decided = cofab(
            setup, account, monkeypatch, capsys, "review", "decide", review, "approve",
            "--comment", "fits our fixture",
        )  # fmt: skip
        assert "decision approve sent" in decided
    # The decisions travel outbox -> Kafka -> bridge -> workflow, which reports back.
    deadline = time.monotonic() + 180
    shown = cofab(*run, "review", "show", review)
    while " OPEN " in shown.splitlines()[0]:
        assert time.monotonic() < deadline, f"review still open:\n{shown}\n{processes.logs()}"
        time.sleep(1)
        shown = cofab(*run, "review", "show", review)
    assert shown.splitlines()[0].startswith(f"{review}  APPROVED  round 1")
    assert "organizations/globex: approve by organizations/globex/users/gina" in shown
    assert "organizations/initech: approve by organizations/initech/users/ivan" in shown
    assert "'fits our fixture'" in shown
    assert "organizations/umbrella: pending" in shown
    assert "closed " in shown and "ESCALATED" not in shown
    with setup.client(stack.acme) as acme:
        revision = acme.designs.GetRevision(design_pb2.GetRevisionRequest(name=setup.revision))
    assert revision.released
    assert len(events_of(setup, "design.revision.released")) == 1

    # Refusals come back as the service's status (exit code by status: clients/cli/exits.py),
    # or as a usage error before any call.
    late = cofab(
        setup, setup.umbrella, monkeypatch, capsys, "review", "decide", review, "reject", code=6
    )
    assert late.startswith("error: FAILED_PRECONDITION")
    assert "PERMISSION_DENIED" in cofab(*run, "review", "decide", review, "approve", code=5)
    no_k = cofab(
        *run, "review", "request", setup.revision, "--reviewer", "globex", "--quorum", "k-of-n",
        code=1,
    )  # fmt: skip
    assert "--quorum k-of-n needs --k N" in no_k
    too_many = cofab(
        *run, "review", "request", setup.revision, "--reviewer", "globex", "--quorum", "k-of-n",
        "--k", "2", code=2,
    )  # fmt: skip
    assert too_many.startswith("error: INVALID_ARGUMENT") and "review.policy.k" in too_many
    not_a_revision = cofab(*run, "review", "request", setup.design, "--reviewer", "globex", code=1)
    assert "is not a revision name" in not_a_revision
