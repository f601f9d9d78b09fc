"""A partner integrates from Go: the supplier bot in clients/partner-go, built from the Go code
generated from the contract as shipped, quotes on an RFQ it learns of from its partner feed
(outbox -> relay -> Kafka -> feed writer -> StreamEvents on the supply server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.config import load_settings
from services.shared.feed import FeedStore, run_feed_writer
from tests.conftest import make_account
from tests.integration.conftest import Stack
from tests.integration.test_outbox_kafka import relay_for
from tests.integration.test_procurement_api import create_item, rfq_message

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "partner-go"


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bot, built offline: every module it needs was downloaded by `make install`."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is needed: run `make install`")
    binary = tmp_path_factory.mktemp("partner-go") / "supplierbot"
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture
def feed_pipeline(stack: Stack, kafka_bootstrap: str, tmp_path: Path) -> Iterator[None]:
    """The stack's outbox relay and feed writer, as `make up` runs them."""
    stop = threading.Event()
    settings = load_settings(
        {"COFAB_STATE_DIR": str(tmp_path), "COFAB_KAFKA_BOOTSTRAP": kafka_bootstrap}
    )
    threads = [
        threading.Thread(
            target=relay_for(stack.engine, kafka_bootstrap).run, args=(stop,), daemon=True
        ),
        threading.Thread(
            target=run_feed_writer,
            args=(FeedStore(stack.engine), settings, stop, f"test-feed-{uuid.uuid4().hex}"),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def bot_env(stack: Stack, token: str) -> dict[str, str]:
    return {
        "COFAB_TOKEN": token,
        "COFAB_SUPPLY_ADDRESS": stack.supply.address,
        "PATH": "/usr/bin:/bin",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_go_supplier_bot_quotes_on_the_rfq_from_its_feed(
    stack: Stack, feed_pipeline: None, bot: Path, tmp_path: Path
) -> None:
    # A fresh supplier: the broker outlives tests, and older RFQ events name older suppliers.
    supplier = make_account(stack.engine, f"sup{uuid.uuid4().hex[:10]}", "sam", admin=True)
    cursor_file = tmp_path / "cursor"
    running = subprocess.Popen(
        [
            str(bot),
            "-unit-price",
            "12.4",
            "-lead-days",
            "9",
            "-max-quotes",
            "1",
            "-cursor-file",
            str(cursor_file),
        ],
        env=bot_env(stack, supplier.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with stack.client(stack.acme) as acme:
            item = create_item(acme, "acme", "bracket-go")
            rfq = acme.procurement.CreateRfq(
                pb.CreateRfqRequest(
                    parent="organizations/acme", rfq=rfq_message(item, [supplier.organization])
                )
            )
            rfq = acme.procurement.OpenRfq(pb.OpenRfqRequest(name=rfq.name, etag=rfq.etag))
            out, err = running.communicate(timeout=120)
            assert running.returncode == 0, err
            printed = [json.loads(line) for line in out.splitlines()]
            assert len(printed) == 1
            assert printed[0]["supplier"] == f"organizations/{supplier.organization}"
            assert printed[0]["name"].startswith(rfq.name + "/quotes/")

            closed = acme.procurement.CloseRfq(pb.CloseRfqRequest(name=rfq.name))
            quotes = acme.procurement.ListQuotes(pb.ListQuotesRequest(parent=closed.name)).quotes
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert [(q.supplier, q.unit_price, q.lead_time_days, q.capacity) for q in quotes] == [
        (f"organizations/{supplier.organization}", 12.4, 9, rfq.quantity)
    ]
    # It kept its place in the feed: the cursor of the event it answered.
    assert cursor_file.read_text().strip()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_go_supplier_bot_with_a_bad_token_gets_unauthenticated(stack: Stack, bot: Path) -> None:
    done = subprocess.run(
        [str(bot)],
        env=bot_env(stack, "cofab_000000000000_" + "A" * 43),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("UNAUTHENTICATED: unknown API token")
