"""design_upload: pushing revisions to the design service.

"upload": a PushRevision of a 64 MiB binary STL streamed in 1 MiB chunks over loopback to the
real design server (authentication, the sha256 and size checks, the blob store's fsynced write,
the engine's structural check and the revision's transaction; the processor is not started, so
only the upload is timed). Baseline: the same request messages streamed to a trivial sink
servicer that only counts the bytes, on a second grpc.aio server in the same process. Rounds
alternate baseline and ours. Target: at least 100 MB/s.

"push-step": push + wait until SUCCEEDED of the 10 MB STEP that bench.geometry makes, through
the running service (worker pool warmed by a small part first). Baseline: a raw OpenCascade
STEP import of the same file in this process. Target: at most 20 s end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2

from bench.harness import Benchmark, Report, Table
from clients.sdk import connect, push_revision, wait_for
from clients.sdk.revisions import push_requests
from cofab.design.v1 import design_pb2
from services.design.adapters.geometry import EngineChecks
from services.design.app import DesignServer, build_server
from services.design.application import DesignApplication
from services.shared import accounts, audit
from services.shared.config import load_settings
from services.shared.identity import Principal
from services.shared.migrate import upgrade
from services.shared.server import BuiltServer

log = logging.getLogger(__name__)

UPLOAD_MIB = 64
CHUNK = 1 << 20
ROUNDS = 3
UPLOAD_TARGET_MB_S = 100.0
PUSH_TARGET_S = 20.0
SINK_METHOD = "/bench.Sink/Push"


def binary_stl(path: Path, mib: int) -> None:
    """A closed-form binary STL of about `mib` MiB (header, count, 50-byte triangles)."""
    triangles = mib * (1 << 20) // 50
    record = struct.pack("<12fH", 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0)
    with path.open("wb") as out:
        out.write(b"cofab benchmark".ljust(80, b" "))
        out.write(struct.pack("<I", triangles))
        block = record * 20_000
        left = triangles
        while left:
            n = min(left, 20_000)
            out.write(block if n == 20_000 else record * n)
            left -= n


class _Loop:
    """grpc.aio servers on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _sink(
    requests: AsyncIterator[design_pb2.PushRevisionRequest], context: Any
) -> empty_pb2.Empty:
    received = 0
    async for request in requests:
        received += len(request.chunk)
    return empty_pb2.Empty()


async def _start_sink() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 8 << 20)],
    )
    handler = grpc.stream_unary_rpc_method_handler(
        _sink,
        request_deserializer=design_pb2.PushRevisionRequest.FromString,
        response_serializer=empty_pb2.Empty.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("bench.Sink", {"Push": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@contextmanager
def _service(tmp: Path, processor: bool) -> Iterator[tuple[str, str, str]]:
    """(address, token, design name) of a design server on a fresh SQLite database."""
    url = f"sqlite:///{tmp / 'cofab.db'}"
    upgrade(url)
    engine = audit.audited_engine_in(url, tmp)
    accounts.create_organization(engine, "acme", "ACME")
    accounts.create_user(engine, "acme", "alice")
    token = accounts.create_token(engine, "acme", "alice").plaintext
    designs = DesignApplication(engine, geometry=EngineChecks())
    alice = Principal("acme", "alice")
    project, _ = designs.create_project(alice, "Bench", "", "")
    design = designs.create_design(alice, project.id, "Part", "", "", "")
    engine.dispose()
    settings = replace(
        load_settings({"COFAB_DATABASE_URL": url, "COFAB_STATE_DIR": str(tmp)}),
        max_upload_bytes=1 << 30,
    )
    loop = _Loop()

    async def start() -> BuiltServer:
        built = build_server(settings, listen="127.0.0.1:0")
        if not processor and isinstance(built, DesignServer):
            built.processor = None
        await built.start()
        return built

    built: BuiltServer = loop.run(start())
    try:
        yield f"127.0.0.1:{built.port}", token, design.name
    finally:
        loop.run(built.stop(1.0))
        loop.close()


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_upload() -> Report:
    with tempfile.TemporaryDirectory(prefix="cofab-bench-upload-") as tmp_name:
        tmp = Path(tmp_name)
        stl = tmp / "part.stl"
        binary_stl(stl, UPLOAD_MIB)
        size = stl.stat().st_size
        sha = hashlib.sha256(stl.read_bytes()).hexdigest()
        sink_loop = _Loop()
        sink_server, sink_port = sink_loop.run(_start_sink())
        rows: list[list[str]] = []
        ratios: list[float] = []
        ours_rates: list[float] = []
        try:
            with _service(tmp, processor=False) as (address, token, design):
                with (
                    grpc.insecure_channel(f"127.0.0.1:{sink_port}") as channel,
                    connect(token, address) as cofab,
                ):
                    sink = channel.stream_unary(
                        SINK_METHOD,
                        request_serializer=design_pb2.PushRevisionRequest.SerializeToString,
                        response_deserializer=empty_pb2.Empty.FromString,
                    )
                    for round_number in range(1, ROUNDS + 1):
                        header = design_pb2.PushRevisionHeader(
                            parent=design,
                            branch=f"b{round_number}",
                            format="stl",
                            sha256=sha,
                            size_bytes=size,
                        )
                        log.info("upload: round %d", round_number)
                        base_s = _timed(partial(sink, push_requests(header, stl, CHUNK)))
                        ours_s = _timed(
                            partial(
                                cofab.designs.PushRevision,
                                push_requests(header, stl, CHUNK),
                                timeout=300,
                            )
                        )
                        base_rate, ours_rate = size / base_s / 1e6, size / ours_s / 1e6
                        ratios.append(ours_rate / base_rate)
                        ours_rates.append(ours_rate)
                        rows.append(
                            [
                                str(round_number),
                                f"{base_rate:,.0f}",
                                f"{ours_rate:,.0f}",
                                f"{ours_rate / base_rate:.2f}x",
                            ]
                        )
        finally:
            sink_loop.run(sink_server.stop(1.0))
            sink_loop.close()
    mean = statistics.fmean(ours_rates)
    met = "MET" if mean >= UPLOAD_TARGET_MB_S else "NOT MET"
    return Report(
        name="upload",
        title=f"PushRevision of a {size / 1e6:.0f} MB STL in 1 MiB chunks vs a sink servicer",
        tables=[Table(["round", "sink MB/s", "ours MB/s", "ours/sink"], rows)],
        notes=[
            f"Target >= {UPLOAD_TARGET_MB_S:.0f} MB/s: **{met}** ({mean:,.0f} MB/s mean; "
            f"ours/sink {statistics.fmean(ratios):.2f}x, range "
            f"{min(ratios):.2f}-{max(ratios):.2f}).",
            "Both servers in this process (grpc.aio on a background loop), client a sync "
            "channel; ours includes authentication, sha256, fsync + rename into the blob "
            "store, the STL structural check and the revision's transaction (SQLite).",
        ],
    )


def run_push_step() -> Report:
    import cadquery as cq

    try:
        # The geometry benchmarks' 10 MB STEP, so both measure the same part.
        write_benchmark_step = importlib.import_module("bench.geometry").write_benchmark_step
    except ModuleNotFoundError:
        raise RuntimeError(
            "push-step needs bench.geometry.write_benchmark_step (the geometry benchmarks)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="cofab-bench-push-") as tmp_name:
        tmp = Path(tmp_name)
        step = tmp / "big.step"
        write_benchmark_step(step)
        step_mb = step.stat().st_size / 1e6
        small = tmp / "small.step"
        cq.exporters.export(cq.Workplane().box(10, 10, 10), str(small))
        log.info("push-step: raw import")
        raw_s = _timed(lambda: cq.importers.importStep(str(step)))
        with _service(tmp, processor=True) as (address, token, design):
            with connect(token, address) as cofab:
                warm = push_revision(cofab, design, small, branch="warm-up")
                wait_for(cofab, warm.name, timeout=300)
                log.info("push-step: push and wait")
                started = time.perf_counter()
                pushed = push_revision(cofab, design, step)
                done = wait_for(cofab, pushed.name, timeout=600)
                ours_s = time.perf_counter() - started
    if done.state != design_pb2.Revision.STATE_SUCCEEDED:
        raise RuntimeError(f"the benchmark STEP failed: {done.error.message}")
    met = "MET" if ours_s <= PUSH_TARGET_S else "NOT MET"
    return Report(
        name="push-step",
        title=f"push + validate a {step_mb:.1f} MB STEP "
        f"({done.properties.faces} faces) vs a raw OpenCascade import",
        tables=[
            Table(
                ["raw import s", "push to SUCCEEDED s", "ours/raw"],
                [[f"{raw_s:.2f}", f"{ours_s:.2f}", f"{ours_s / raw_s:.2f}x"]],
            )
        ],
        notes=[f"Target <= {PUSH_TARGET_S:.0f} s end to end: **{met}**."],
    )


BENCHMARK = Benchmark(
    name="upload",
    summary="streaming PushRevision of 64 MiB over loopback vs a trivial sink servicer",
    run=run_upload,
)
PUSH_STEP_BENCHMARK = Benchmark(
    name="push-step",
    summary="push + validate the 10 MB benchmark STEP vs a raw OpenCascade import",
    run=run_push_step,
)
