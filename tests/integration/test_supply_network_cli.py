"""The `cofab` supply-network commands against real servers, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.cli.main import main
from tests.integration.conftest import Stack
from tests.integration.test_supply_network_import import GLOBEX_ROWS


@pytest.fixture
def as_globex(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("COFAB_TOKEN", stack.globex.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", stack.supply.address)
    monkeypatch.setenv("COFAB_DATABASE_URL", stack.settings.database_url)
    return stack


def test_import_export_search_and_disruption_from_the_command_line(
    as_globex: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "network.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in GLOBEX_ROWS))
    assert main(["network", "import", str(source)]) == 0
    assert "facility   created 2, updated 0, unchanged 0" in capsys.readouterr().out

    exported = tmp_path / "export.csv"
    assert main(["network", "export", "--format", "csv", "--output", str(exported)]) == 0
    assert exported.read_text().startswith("kind,id,")
    assert main(["network", "import", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "created 1" not in out and "created 2" not in out

    assert main(["supplier", "search", "--process", "cnc-milling", "--material", "steel"]) == 0
    assert "organizations/globex/facilities/gx-plant-1" in capsys.readouterr().out

    # The imported edge to ACME is a proposal until ACME confirms it.
    edge = "organizations/globex/supplyEdges/gx-housing-acme"
    assert main(["edge", "list"]) == 0
    assert edge not in capsys.readouterr().out
    monkeypatch.setenv("COFAB_TOKEN", as_globex.acme.token)
    assert main(["edge", "list", "--state", "proposed"]) == 0
    assert f"{edge}  proposed" in capsys.readouterr().out
    assert main(["edge", "confirm", edge]) == 0
    assert f"{edge}  active" in capsys.readouterr().out
    monkeypatch.setenv("COFAB_TOKEN", as_globex.globex.token)
    assert main(["edge", "list"]) == 0
    assert f"{edge}  active" in capsys.readouterr().out

    assert main(["disruption", "report", "gx-plant-1", "--days", "10"]) == 0
    reported = capsys.readouterr().out
    assert "gx-plant-1  outage 10 days  active" in reported
    assert "organizations/acme" in reported  # the plant's direct customer
    assert main(["disruption", "list"]) == 0
    assert "active" in capsys.readouterr().out

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "capability", "id": "x", "facility": "nowhere"}) + "\n")
    assert main(["network", "import", str(bad)]) == 2  # usage: the request is invalid
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err
    assert "rows[1].facility" in err
