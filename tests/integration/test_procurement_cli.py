"""`cofab rfq ...` and `cofab quote ...` against the real services, as a buyer and a supplier."""

from __future__ import annotations

import pytest

from clients.cli.main import main
from tests.conftest import Account
from tests.integration.test_procurement_api import Procurement, create_item, procurement

__all__ = ["procurement"]  # the fixture, imported to be used here


def cofab(
    p: Procurement,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> str:
    """Runs one command as `account`; returns its standard output, failing on an error."""
    monkeypatch.setenv("COFAB_TOKEN", account.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", p.stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", p.supply.address)
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_buyer_and_supplier_run_an_rfq_from_the_command_line(
    procurement: Procurement, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p = procurement
    acme, globex = p.stack.acme, p.stack.globex
    with p.client(acme) as client:
        item = create_item(client, "acme", "bracket")
    created = cofab(
        p, acme, monkeypatch, capsys,
        "rfq", "create", item, "--quantity", "100", "--due", "30d", "--deadline", "7d",
        "--supplier", "globex", "--supplier", "initech", "--weights", "price=2,lead_time=1",
    )  # fmt: skip
    rfq = created.split()[0]
    assert rfq.startswith("organizations/acme/rfqs/") and " draft " in created
    assert " open " in cofab(p, acme, monkeypatch, capsys, "rfq", "open", rfq)
    assert rfq in cofab(p, globex, monkeypatch, capsys, "rfq", "list", "--invited")
    submitted = cofab(
        p, globex, monkeypatch, capsys,
        "quote", "submit", rfq, "--price", "4.5", "--lead-days", "5", "--capacity", "100",
        "--attach", "offer.pdf:" + "b" * 64 + ":2048:application/pdf",
    )  # fmt: skip
    assert "submitted" in submitted and "organizations/globex" in submitted
    assert "attachment offer.pdf" in submitted
    assert " closed " in cofab(p, acme, monkeypatch, capsys, "rfq", "close", rfq)
    ranking = cofab(p, acme, monkeypatch, capsys, "rfq", "evaluate", rfq)
    assert "1. organizations/globex" in ranking
    assert "4.5/unit" in cofab(p, acme, monkeypatch, capsys, "quote", "list", rfq)
    awarded = cofab(p, acme, monkeypatch, capsys, "rfq", "award", rfq, "globex=100")
    assert " awarded " in awarded and "awarded 100 to organizations/globex" in awarded

    # A bad award is reported with the field at fault, and the CLI exits 6 (precondition).
    monkeypatch.setenv("COFAB_TOKEN", acme.token)
    assert main(["rfq", "award", rfq, "globex=5"]) == 6
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
